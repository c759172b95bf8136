"""Faults and untrusted files: kill -9 inside each checkpoint write, Ctrl-C and a closed
pipe during translation, a full or read-only disk, and model directories tampered with to
run code or to allocate absurd sizes.

(tests/test_train_faults.py kills training at fixed delays and covers Ctrl-C in training;
here the kill lands inside a chosen write, which delays alone rarely hit.)
"""

from __future__ import annotations

import ast
import contextlib
import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ATTN, sigint_default, slice_translate

from attn.model.storage.checkpoint import ModelError, load_model, save_weights
from attn.model.training.metrics_log import read_metrics
from attn.model.training.state import find_last

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ROOT = Path(__file__).resolve().parents[1]


def train_args(data: Path, model_dir: Path, *extra: str) -> list[str]:
    return [
        "train", "translate", "--data", str(data), "--model-dir", str(model_dir),
        "--preset", "tiny", "--vocab-size", "400", "--batch-tokens", "512", "--warmup", "10",
        "--threads", "1", *extra,
    ]  # fmt: skip


def resume(model_dir: Path, steps: int, *, cwd: Path | None = None):
    return subprocess.run(
        [ATTN, "train", "translate", "--model-dir", str(model_dir), "--resume", "--threads", "1",
         "--max-steps", str(steps), "--val-every", "1"],
        capture_output=True, text=True, env=ENV, timeout=300, cwd=cwd,
    )  # fmt: skip


def state_step(model_dir: Path) -> int:
    last = find_last(model_dir)
    assert last is not None
    return torch.load(last / "trainer_state.pt", weights_only=True)["step"]


def assert_one_error(err: str, *parts: str) -> str:
    assert "Traceback" not in err, err
    assert err.count("Error:") == 1, err
    line = err.splitlines()[-1]
    assert line.startswith("Error: "), err
    for part in parts:
        assert part in line, err
    return line


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """A 2-step translate model with best weights, last/ and two validations."""
    tmp = tmp_path_factory.mktemp("small")
    model = tmp / "m"
    result = subprocess.run(
        [ATTN, *train_args(slice_translate(tmp, n_val=4), model, "--max-steps", "2",
                           "--val-every", "1")],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return model


# --- kill -9 inside a checkpoint write --------------------------------------------------

# Runs `attn` with one write slowed down: at its n-th call the write stops halfway, touches
# FAULT_MARK and sleeps until the test kills the process.
FAULT_RUNNER = r"""
import os, sys, time
from pathlib import Path

point, nth, mark = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
calls = 0

def hit():
    global calls
    calls += 1
    return calls == nth

def stall():
    mark.touch()
    time.sleep(600)

if point == "weights":
    import safetensors.torch as st
    real = st.save_file
    def save_file(tensors, filename, metadata=None):
        if "last" not in str(filename) and hit():
            real(tensors, filename, metadata)
            with open(filename, "r+b") as f:
                f.truncate(os.path.getsize(filename) // 2)
            stall()
        real(tensors, filename, metadata)
    st.save_file = save_file
elif point == "state":
    import torch
    real = torch.save
    def save(obj, f, *args, **kwargs):
        if hit():
            f.write(b"PK\x03\x04 half a zip archive")
            f.flush()
            stall()
        real(obj, f, *args, **kwargs)
    torch.save = save
elif point == "swap":
    real = os.replace
    def replace(src, dst):
        real(src, dst)
        if Path(src).name == "last" and hit():
            stall()
    os.replace = replace
elif point == "config":
    import attn.atomic as io
    real = io.atomic_write
    def atomic_write(path, write):
        if Path(path).name == "config.json" and hit():
            def half(tmp):
                write(tmp)
                tmp.write_bytes(tmp.read_bytes()[:100])
                stall()
            return real(path, half)
        return real(path, write)
    io.atomic_write = atomic_write
elif point == "metrics":
    import json
    from attn.model.training.metrics_log import MetricsLog
    real = MetricsLog.append
    def append(self, record):
        if hit():
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record)[:20])
            stall()
        real(self, record)
    MetricsLog.append = append

sys.argv = ["attn", *sys.argv[4:]]
from attn.cli.main import main
main()
"""


@pytest.mark.slow  # each trains until the write it kills: about ten seconds on two cores
@pytest.mark.parametrize(
    ("point", "nth"),
    [
        ("weights", 2),  # the best weights of the first validation (1 is the initial write)
        ("state", 2),  # last/trainer_state.pt of the first validation
        ("swap", 1),  # between moving last/ aside and moving the new one in
        ("config", 2),  # config.json after the first validation
        ("metrics", 1),  # the first line of metrics.jsonl
    ],
)
def test_kill_9_inside_a_checkpoint_write(tmp_path, point, nth):
    data, model, mark = slice_translate(tmp_path, n_val=4), tmp_path / "m", tmp_path / "mark"
    cmd = [sys.executable, "-c", FAULT_RUNNER, point, str(nth), str(mark)]
    cmd += train_args(data, model, "--max-steps", "100000", "--val-every", "2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.monotonic() + 240
        while not mark.exists():
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "the write was never reached"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.communicate()

    load_model(model, task="translate")
    step = state_step(model)
    resumed = resume(model, step + 2)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed at step {step}" in resumed.stderr
    assert state_step(model) == step + 2
    assert list(model.rglob("*.tmp")) == []  # the killed write's temp file is gone
    load_model(model, task="translate")
    # Every metrics line is whole, and the validations after the resume are all there.
    raw = (model / "metrics.jsonl").read_text(encoding="utf-8")
    assert [json.loads(line)["step"] for line in raw.splitlines()] == [
        r["step"] for r in read_metrics(model)
    ]
    assert [r["step"] for r in read_metrics(model)][-2:] == [step + 1, step + 2]


# --- signals during inference ------------------------------------------------------------


def test_ctrl_c_during_translation_exits_130_without_traceback(tmp_path, translate_model):
    source = tmp_path / "in.txt"
    source.write_text("".join(f"A young bird likes the letter {i}.\n" for i in range(3000)))
    proc = subprocess.Popen(
        [ATTN, "translate", "-m", str(translate_model), "--threads", "1", "--beam", "1",
         "--max-length", "12", str(source)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, preexec_fn=sigint_default,
    )  # fmt: skip
    first = proc.stdout.readline()  # the first chunk is done: translation is under way
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert err == b""
    out = first + rest
    assert out.endswith(b"\n")
    assert 1 <= out.count(b"\n") < 3000


@pytest.mark.parametrize("delay", [0.2, 0.5, 0.8, 1.2])
def test_ctrl_c_while_starting_up_exits_130(tmp_path, translate_model, delay):
    """Ctrl-C while torch and the model load (imports that swallow KeyboardInterrupt)."""
    source = tmp_path / "in.txt"
    source.write_text("A young bird likes the letter.\n" * 3000)  # far more than 1.2 s of work
    proc = subprocess.Popen(
        [ATTN, "translate", "-m", str(translate_model), "--threads", "1", str(source)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, preexec_fn=sigint_default,
    )  # fmt: skip
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err
    assert out.count(b"\n") < 3000


def test_ctrl_c_while_starting_up_on_a_document_exits_130(tmp_path, translate_model):
    """The same for a document (subtitles): parsed first, then the model loads."""
    source = tmp_path / "talk.srt"
    source.write_text(
        "".join(
            f"{i}\n00:00:{i % 60:02d},000 --> 00:00:{i % 60:02d},500\nA young bird.\n\n"
            for i in range(1, 3001)
        )
    )
    proc = subprocess.Popen(
        [ATTN, "translate", "-m", str(translate_model), "--threads", "1", str(source)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, preexec_fn=sigint_default,
    )  # fmt: skip
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err
    assert out == b""  # a document is written whole or not at all


def test_closed_pipe_exits_quietly(tmp_path, translate_model):
    source = tmp_path / "in.txt"
    source.write_text("A dog runs.\n" * 2500)
    proc = subprocess.Popen(
        [ATTN, "translate", "-m", str(translate_model), "--threads", "1", "--beam", "1",
         "--max-length", "8", str(source)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
    )  # fmt: skip
    assert proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert (proc.returncode, err) == (141, b"")


# --- full or read-only disk ----------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size_kb: int):
    """A small RAM disk at `path`, or a skip where mounting is not allowed."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def snapshot(model: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(model)): p.read_bytes()
        for p in sorted(model.rglob("*"))
        # config.json is rewritten (atomically) when a run resumes, with its new settings;
        # train.log keeps the traceback of a failed run.
        if p.is_file() and p.name not in ("config.json", "metrics.jsonl", "train.log")
    }


def du_kb(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) // 1024


def test_disk_full_keeps_the_last_checkpoint(tmp_path, small_model):
    # Room for the model and a little more: the next validation's writes do not fit.
    with tmpfs(tmp_path / "disk", du_kb(small_model) + 1500) as disk:
        model = shutil.copytree(small_model, disk / "m")
        before = snapshot(model)
        result = resume(model, 6)
        assert result.returncode == 1
        assert_one_error(result.stderr, "No space left on device")
        assert snapshot(model) == before
        assert sorted(p.name for p in model.iterdir() if p.name.startswith(".")) == []
        load_model(model, task="translate")
        saved = shutil.copytree(model, tmp_path / "m")
    # The same directory, with room again, resumes.
    resumed = resume(saved, 3)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at step 2" in resumed.stderr


def test_read_only_model_dir(tmp_path, small_model):
    with tmpfs(tmp_path / "disk", du_kb(small_model) + 4000) as disk:
        model = shutil.copytree(small_model, disk / "m")
        before = snapshot(model)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        result = resume(model, 4)
        assert result.returncode == 1
        assert_one_error(result.stderr, "Read-only file system")
        assert snapshot(model) == before


def test_failed_atomic_write_keeps_the_old_file(tmp_path, small_model, monkeypatch):
    """ENOSPC at the last moment (fsync) leaves the old weights and no temp file."""
    loaded = load_model(small_model)
    path = tmp_path / "model.safetensors"
    shutil.copy(small_model / "model.safetensors", path)
    old = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("attn.atomic.os.fsync", full)
    with torch.no_grad():
        for p in loaded.model.parameters():
            p.add_(1.0)
    with pytest.raises(OSError) as info:
        save_weights(loaded.model, path)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


# --- untrusted files -------------------------------------------------------------------------

SOURCE_DIRS = ("attn", "cli", "model", "tokenizer", "data")
UNPICKLERS = {"load", "loads", "Unpickler"}


def test_no_code_runs_from_files():
    """No eval/exec, no unpickling, and torch.load only with weights_only=True."""
    found = []
    for directory in SOURCE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                    if isinstance(node, ast.ImportFrom):
                        modules = [node.module or ""]
                        if (
                            node.module in ("pickle", "_pickle")
                            and {a.name for a in node.names} & UNPICKLERS
                        ):
                            found.append(f"{where}: imports an unpickler")
                    for name in modules:
                        if name.split(".")[0] in ("dill", "cloudpickle", "marshal", "shelve"):
                            found.append(f"{where}: imports {name}")
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                owner = func.value if isinstance(func, ast.Attribute) else None
                owner_name = owner.id if isinstance(owner, ast.Name) else None
                if isinstance(func, ast.Name) and name in ("eval", "exec", "__import__"):
                    found.append(f"{where}: {name}()")
                if owner_name in ("pickle", "_pickle") and name in UNPICKLERS:
                    found.append(f"{where}: pickle.{name}()")
                if owner_name == "torch" and name == "load":
                    safe = any(
                        k.arg == "weights_only"
                        and isinstance(k.value, ast.Constant)
                        and k.value.value is True
                        for k in node.keywords
                    )
                    if not safe:
                        found.append(f"{where}: torch.load without weights_only=True")
    assert found == []


class Payload:
    """Unpickling this runs `touch MARKER`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_trainer_state_is_refused(tmp_path, small_model):
    model = shutil.copytree(small_model, tmp_path / "m")
    marker = tmp_path / "PWNED"
    torch.save({"step": 2, "version": 1, "x": Payload(marker)}, model / "last" / "trainer_state.pt")
    result = resume(model, 4)
    assert result.returncode == 1
    assert_one_error(
        result.stderr,
        f"{model}/last/trainer_state.pt: refused: it holds Python objects",
        "could run code",
    )
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.model"])
def test_pickle_in_place_of_weights_or_tokenizer(tmp_path, small_model, name):
    import pickle

    model = shutil.copytree(small_model, tmp_path / "m")
    marker = tmp_path / "PWNED"
    (model / name).write_bytes(pickle.dumps(Payload(marker)))
    result = subprocess.run(
        [ATTN, "translate", "-m", str(model)], input=b"A dog.\n", capture_output=True, env=ENV
    )
    assert result.returncode == 1
    kind = "safetensors file" if name.endswith("safetensors") else "SentencePiece model"
    assert_one_error(result.stderr.decode(), f"{model}/{name}: not a", kind)
    assert not marker.exists()
    with pytest.raises(ModelError):
        load_model(model)


def limited_memory() -> None:
    # 8 GB of address space: an attempt to build a huge model fails fast instead of
    # taking the machine's memory.
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


HUGE = {
    # Each value in range, together about 140 billion parameters.
    "d_model": 8192, "n_heads": 8, "d_ff": 65536, "n_encoder_layers": 48, "n_decoder_layers": 48,
}  # fmt: skip


@pytest.mark.parametrize(
    ("command", "fields", "message"),
    [
        ("translate", {"d_model": 10**9}, "d_model must be between 8 and 8192, got 1000000000"),
        ("translate", {"max_length": 10**12}, "max_length must be between 8 and 16384, got "),
        ("translate", {"d_model": "128"}, "d_model must be an integer, got '128'"),
        ("translate", {"dropout": float("nan")}, "dropout must be a number in [0, 1), got nan"),
        ("translate", {"labels": None}, "labels must be a list of strings, got None"),
        ("translate", HUGE, "model.safetensors: weights do not match the config"),
        ("resume", {"d_model": 10**9}, "d_model must be between 8 and 8192, got 1000000000"),
        ("resume", HUGE, "last/model.safetensors: weights do not match the config"),
    ],
    ids=["d_model", "max_length", "type", "nan", "labels", "huge", "resume", "resume-huge"],
)
def test_absurd_config_values_are_refused(tmp_path, small_model, fields, message, command):
    model = shutil.copytree(small_model, tmp_path / "m")
    path = model / "config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["model"].update(fields)
    path.write_text(json.dumps(data), encoding="utf-8")
    if command == "translate":
        cmd = [ATTN, "translate", "-m", str(model)]
    else:
        cmd = [ATTN, "train", "translate", "--model-dir", str(model), "--resume", "--threads", "1"]
    result = subprocess.run(
        cmd, input=b"A dog.\n", capture_output=True, env=ENV, preexec_fn=limited_memory,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    assert_one_error(result.stderr.decode(), message)
