"""`attn train` under faults: Ctrl-C, kill -9 at any moment, and two processes under torchrun.

These run the installed `attn` script in a subprocess, as a user (or a cluster) would; each
trains until it is stopped, ten seconds or more on two CPU cores: the module is slow.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import ATTN, BIN, slice_translate
from safetensors.torch import load_file

from attn.model.storage.checkpoint import ModelError, load_model
from attn.model.training.metrics_log import read_metrics
from attn.model.training.state import find_last

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def args(data: Path, model_dir: Path, *extra: str) -> list[str]:
    return [
        ATTN, "train", "translate", "--data", str(data), "--model-dir", str(model_dir),
        "--preset", "tiny", "--vocab-size", "400", "--batch-tokens", "512", "--warmup", "10",
        "--threads", "1", *extra,
    ]  # fmt: skip


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_ctrl_c_saves_a_resumable_checkpoint(tmp_path):
    data, model = slice_translate(tmp_path, n_val=4), tmp_path / "m"
    proc = start(args(data, model, "--max-steps", "100000", "--val-every", "2"))
    wait_for(model / "metrics.jsonl", proc)  # the validation of step 2: training is under way
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"attn train translate --resume --model-dir {model}" in err
    assert "Traceback" not in err

    state = torch.load(model / "last" / "trainer_state.pt", weights_only=True)
    assert state["step"] >= 2
    load_model(model, task="translate")

    resumed = subprocess.run(
        [ATTN, "train", "translate", "--model-dir", str(model), "--resume", "--threads", "1",
         "--max-steps", str(state["step"] + 3)],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed at step {state['step']}" in resumed.stderr
    final = torch.load(model / "last" / "trainer_state.pt", weights_only=True)
    assert final["step"] == state["step"] + 3


# Runs `attn ARGS` until it is about to write config.json (the first file that promises a
# model), touches MARK there and waits to be killed.
STALL_BEFORE_CONFIG = r"""
import sys, time
from pathlib import Path

import attn.atomic as io

mark, real = Path(sys.argv[1]), io.atomic_write

def atomic_write(path, write):
    if Path(path).name == "config.json":
        mark.touch()
        time.sleep(600)
    return real(path, write)

io.atomic_write = atomic_write
sys.argv = ["attn", *sys.argv[2:]]
from attn.cli.main import main
main()
"""


def test_kill_9_before_the_first_checkpoint_leaves_no_model(tmp_path):
    """Killed after the data and tokenizer are prepared, just before config.json: nothing
    was promised, the directory holds no model, and a new run may use it."""
    data, model, mark = slice_translate(tmp_path, n_val=4), tmp_path / "m", tmp_path / "mark"
    cmd = [sys.executable, "-c", STALL_BEFORE_CONFIG, str(mark)]
    proc = start(cmd + args(data, model, "--max-steps", "100000")[1:])
    try:
        wait_for(mark, proc)
    finally:
        proc.kill()
        proc.communicate()
    assert not (model / "config.json").exists()
    with pytest.raises(ModelError):
        load_model(model, task="translate")
    fresh = subprocess.run(
        args(data, model, "--max-steps", "2"), capture_output=True, text=True, env=ENV
    )
    assert fresh.returncode == 0, fresh.stderr
    load_model(model, task="translate")


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.5])
def test_kill_9_never_leaves_a_broken_model_dir(tmp_path, delay):
    """Killed that long after the first checkpoint, with a validation (best + last + config
    writes) every other step: wherever the kill lands, the model loads and resumes. (The
    kill lands inside a chosen write in tests/test_faults.py.)"""
    data, model = slice_translate(tmp_path, n_val=4), tmp_path / "m"
    proc = start(args(data, model, "--max-steps", "100000", "--val-every", "2"))
    wait_for(model / "config.json", proc)
    time.sleep(delay)
    proc.kill()
    proc.communicate()
    load_model(model, task="translate")
    assert find_last(model) is not None
    resumed = subprocess.run(
        [ATTN, "train", "translate", "--model-dir", str(model), "--resume", "--threads",
         "1", "--max-steps", "1000000", "--time-budget", "0.5s"],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    load_model(model, task="translate")


def test_save_every_bounds_what_a_kill_9_loses(tmp_path):
    """No validation for 100,000 steps, last/ every second: a kill -9 loses about a second
    of training, and --resume continues from the step last/ holds."""
    data, model = slice_translate(tmp_path, n_val=4), tmp_path / "m"
    proc = start(args(data, model, "--max-steps", "100000", "--val-every", "100000",
                      "--save-every", "1s"))  # fmt: skip
    wait_for(model / "config.json", proc)
    deadline = time.monotonic() + 60
    steps: set[int] = set()
    while len(steps - {0}) < 2:  # the first checkpoint holds step 0; wait for two more
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"last/ held only steps {steps}"
        last = find_last(model)
        with contextlib.suppress(Exception):  # last/ replaced while it is read
            steps.add(torch.load(last / "trainer_state.pt", weights_only=True)["step"])
        time.sleep(0.2)
    proc.kill()
    proc.communicate()
    step = torch.load(find_last(model) / "trainer_state.pt", weights_only=True)["step"]
    assert step > 0
    resumed = subprocess.run(
        [ATTN, "train", "translate", "--model-dir", str(model), "--resume", "--threads", "1",
         "--max-steps", str(step + 2)],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed at step {step}" in resumed.stderr


def torchrun(*attn_args: str, watch: Callable[[], None] | None = None) -> str:
    """`attn ...` as two gloo processes under torchrun; returns its stderr. `watch` is
    called every 20 ms while it runs."""
    cmd = [
        str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "attn", *attn_args
    ]  # fmt: skip
    # Its own process group, so that a hang cannot leave orphaned workers behind.
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while watch is not None and proc.poll() is None and time.monotonic() < deadline:
            watch()
            time.sleep(0.02)
        _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    return err


def test_torchrun_two_processes_gloo(tmp_path):
    data, model = slice_translate(tmp_path), tmp_path / "m"
    err = torchrun(
        *args(data, model, "--device", "cpu", "--max-steps", "30", "--val-every", "10")[1:]
    )
    # One writer: one summary, one line per validation, one set of files, no leftovers.
    assert err.count("Done (") == 1, err
    assert " x2" in err
    records = read_metrics(model)
    assert [r["step"] for r in records] == [10, 20, 30]
    assert records[-1]["val_loss"] < records[0]["val_loss"]
    names = sorted(p.name for p in model.iterdir())
    assert names == [
        "config.json", "last", "metrics.jsonl", "model.safetensors", "prepared",
        "shortlist.safetensors", "tokenizer.model", "training.png",
    ]  # fmt: skip
    assert sorted(p.name for p in (model / "last").iterdir()) == [
        "model.safetensors",
        "trainer_state.pt",
    ]
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    assert config["best"]["step"] is not None
    load_model(model, task="translate")


def test_torchrun_resume_continues_every_rank_exactly(tmp_path):
    """Each rank's dropout stream is saved: 6 + 6 steps give the weights of 12 in one run."""
    data = slice_translate(tmp_path)
    whole, split = tmp_path / "whole", tmp_path / "split"
    common = ("--device", "cpu", "--val-every", "6")
    torchrun(*args(data, whole, *common, "--max-steps", "12")[1:])
    torchrun(*args(data, split, *common, "--max-steps", "6")[1:])
    state = torch.load(split / "last" / "trainer_state.pt", weights_only=True)
    assert len(state["rng_ranks"]) == 2
    assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])
    torchrun("train", "translate", "--model-dir", str(split), "--resume", "--max-steps", "12",
             "--threads", "1", "--device", "cpu")  # fmt: skip
    a = load_file(whole / "last" / "model.safetensors")
    b = load_file(split / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_torchrun_ranks_read_one_prepared_copy(tmp_path):
    """Prepared once (--prepare-only), then both ranks read the same files: no second
    preparation, and the page cache holds the corpus once for both processes."""
    data, model = slice_translate(tmp_path), tmp_path / "m"
    prepared = subprocess.run(
        args(data, model, "--prepare-only"), capture_output=True, text=True, env=ENV
    )
    assert prepared.returncode == 0, prepared.stderr
    manifest = model / "prepared" / "manifest.json"
    written = manifest.stat().st_mtime_ns
    tokens = str((model / "prepared" / "src_tokens.bin").resolve())
    reading: set[int] = set()

    def watch() -> None:  # the processes that hold the prepared token file open
        for fd in Path("/proc").glob("[0-9]*/fd/*"):
            try:
                if os.readlink(fd) == tokens:
                    reading.add(int(fd.parent.parent.name))
            except OSError:
                continue

    err = torchrun(
        *args(data, model, "--device", "cpu", "--max-steps", "20", "--val-every", "10")[1:],
        watch=watch,
    )
    assert "Using the data prepared in" in err and "Prepared " not in err
    assert manifest.stat().st_mtime_ns == written
    assert len(reading) == 2, reading  # both ranks, one file
