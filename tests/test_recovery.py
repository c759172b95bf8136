"""Faults after `attn train` starts, injected in-process on a slice of the demo corpus: a metric
that cannot be imported (pre-flight), an exception inside validation and inside a checkpoint
write, out-of-memory batches, non-finite losses, and the model directory such a run leaves
(an untrained model warns).

Each run is a few seconds with one thread; resumed runs are compared with uninterrupted ones
weight for weight.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import helpers
import pytest
import torch
from helpers import ATTN, last_weights, slice_translate, train_cli

from attn.model.storage.layout import TRAIN_LOG as LOG
from attn.model.training.faults import NONFINITE_STREAK, OOM_STREAK, TrainingFailed
from attn.model.training.metrics_log import read_metrics
from attn.model.training.objective import Objective
from attn.model.training.train import train
from attn.model.training.validation import Validator


def quick(data: Path, **extra) -> dict:
    """15 steps, validating every 5."""
    return helpers.quick(data, **{"max_steps": 15, "val_every": 5, **extra})


def run(model_dir: Path, options: dict, events: list | None = None, **kwargs):
    return train(
        "translate",
        model_dir,
        options,
        threads=1,
        device="cpu",
        on_event=None if events is None else events.append,
        **kwargs,
    )


def last_step(model_dir: Path) -> int:
    return torch.load(model_dir / "last" / "trainer_state.pt", weights_only=True)["step"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = last_weights(a), last_weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return slice_translate(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data) -> Path:
    """15 steps without a fault, validating every 5."""
    model = tmp_path_factory.mktemp("whole") / "m"
    run(model, quick(data))
    return model


def calls_of(monkeypatch, cls, name: str, fault):
    """Wrap `cls.name`: `fault(n, *args)` runs before the n-th call (from 1) and may raise
    or return a replacement result (None: call the original)."""
    original = getattr(cls, name)
    count = {"n": 0}

    def wrapper(self, *args, **kwargs):
        count["n"] += 1
        replaced = fault(count["n"], self, *args, **kwargs)
        return original(self, *args, **kwargs) if replaced is None else replaced

    monkeypatch.setattr(cls, name, wrapper)
    return count


# --- pre-flight ----------------------------------------------------------------------------


def test_a_metric_library_that_fails_to_import_stops_before_reading_data(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rouge_score", None)  # `import rouge_score` fails
    model = tmp_path / "m"
    result = train_cli("summarize", "--model-dir", str(model), "--max-steps", "5")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: cannot compute the validation metrics of summarize")
    assert "pip install rouge-score" in lines[0]
    # Nothing read, trained or written.
    assert "reading data" not in result.output
    assert not model.exists()


def test_a_device_that_cannot_train_stops_before_reading_data(tmp_path, monkeypatch, data):
    def broken(self, x):
        raise RuntimeError("CUDA error: no kernel image is available for execution\nmore")

    monkeypatch.setattr(torch.nn.Linear, "forward", broken)
    events: list = []
    with pytest.raises(ValueError) as info:
        run(tmp_path / "m", quick(data), events)
    assert str(info.value) == (
        "cannot train on cpu: RuntimeError: CUDA error: no kernel image is available for execution"
    )
    assert events == []  # not even "reading data"


def test_validation_that_fails_on_its_data_stops_before_the_first_step(tmp_path, monkeypatch, data):
    def broken(n, self, model, limit=None):
        raise UnicodeError("the validation references cannot be scored")

    calls_of(monkeypatch, Validator, "scores", broken)
    events: list = []
    with pytest.raises(ValueError, match="validation fails before training: UnicodeError"):
        run(tmp_path / "m", quick(data), events)
    assert not [e for e in events if e["event"] in ("start", "progress")]
    assert not (tmp_path / "m" / "last").exists()


# --- exceptions during training ------------------------------------------------------------


def test_an_exception_in_validation_saves_last_and_resume_matches(
    tmp_path, monkeypatch, data, uninterrupted
):
    def fail_second(n, self, model, limit=None):
        # Call 1 is the pre-flight's (with a limit); 2 validates step 5, 3 step 10.
        if n == 3:
            raise RuntimeError("injected validation fault")

    calls_of(monkeypatch, Validator, "scores", fail_second)
    model = tmp_path / "m"
    with pytest.raises(TrainingFailed) as info:
        run(model, quick(data))
    failure = info.value
    assert (failure.step, failure.saved_step) == (10, 10)
    assert "validating failed at step 10: RuntimeError: injected validation fault" in str(failure)
    assert last_step(model) == 10
    log = (model / LOG).read_text(encoding="utf-8")
    assert failure.log == model / LOG
    assert "Traceback" in log and "RuntimeError: injected validation fault" in log

    monkeypatch.undo()
    result = run(model, {"max_steps": 15}, resume=True)
    assert result.step == 15
    assert_same_weights(model, uninterrupted)
    # The failed validation of step 10 was redone on resume.
    assert [r["step"] for r in read_metrics(model)] == [5, 10, 15]


def test_a_checkpoint_write_that_keeps_failing_leaves_the_previous_last(
    tmp_path, monkeypatch, data, uninterrupted
):
    import attn.model.training.checkpointer as checkpointer

    original = checkpointer.save_last

    def disk_full(model_dir, model, state):
        if state["step"] >= 10:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(model_dir / "last"))
        return original(model_dir, model, state)

    monkeypatch.setattr(checkpointer, "save_last", disk_full)
    model = tmp_path / "m"
    result = train_cli("translate", "--model-dir", str(model), *_flags(quick(data)))
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert result.output.count("Error:") == 1 and "Traceback" not in result.output
    assert line.startswith("Error: saving failed at step 10: ")
    assert "No space left on device" in line
    assert f"{model / 'last'} holds step 5" in line
    assert f"traceback in {model / LOG}" in line
    assert line.endswith(f"resume with: attn train translate --resume --model-dir {model}")
    assert last_step(model) == 5

    monkeypatch.undo()
    assert run(model, {"max_steps": 15}, resume=True).step == 15
    assert_same_weights(model, uninterrupted)


def test_an_exception_inside_a_step_saves_the_state_before_it(
    tmp_path, monkeypatch, data, uninterrupted
):
    """A fault in the 8th forward pass: last/ holds step 7 and its random generators, so the
    resumed run draws the same dropout masks as the uninterrupted one."""

    def fault(n, self, src, tgt_in, target):
        if n == 9:  # the pre-flight forward is the first call
            raise RuntimeError("injected step fault")

    calls_of(monkeypatch, Objective, "forward", fault)
    model = tmp_path / "m"
    with pytest.raises(TrainingFailed) as info:
        run(model, quick(data))
    assert (info.value.step, info.value.saved_step) == (7, 7)
    assert "training failed at step 7: RuntimeError: injected step fault" in str(info.value)
    monkeypatch.undo()
    assert run(model, {"max_steps": 15}, resume=True).step == 15
    assert_same_weights(model, uninterrupted)


def _flags(options: dict) -> list[str]:
    return [
        arg for key, value in options.items() for arg in (f"--{key.replace('_', '-')}", str(value))
    ]


# --- out of memory -------------------------------------------------------------------------


def oom_when(rows_over: int, on_step_calls=None):
    """A forward fault: out of memory for batches of more than `rows_over` examples (on the
    calls in `on_step_calls`, or always)."""

    def fault(n, self, src, tgt_in, target):
        if src.shape[0] > rows_over and (on_step_calls is None or n in on_step_calls):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    return fault


def test_an_out_of_memory_batch_is_split_and_training_goes_on(tmp_path, monkeypatch, data):
    seen: list[int] = []

    def fault(n, self, src, tgt_in, target):
        seen.append(src.shape[0])
        # The third step's batch, and its halves while they are over 8 examples.
        if len([r for r in seen if r > 1]) >= 3 and fault.active and src.shape[0] > 8:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        if len([r for r in seen if r > 1]) >= 3 and src.shape[0] <= 8:
            fault.active = False

    fault.active = True
    calls_of(monkeypatch, Objective, "forward", fault)
    events: list = []
    result = run(tmp_path / "m", quick(data, max_steps=6, val_every=100), events)
    assert (result.step, result.oom_split, result.oom_skipped) == (6, 1, 0)
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert len(warnings) == 1 and "out of memory" in warnings[0] and "pieces" in warnings[0]
    # The split batch trained as pieces of at most 8 examples, then whole batches again.
    assert max(seen[-3:]) > 8
    assert all(torch.isfinite(w).all() for w in last_weights(tmp_path / "m").values())


def test_a_batch_that_never_fits_is_skipped_and_counted(tmp_path, monkeypatch, data):
    # Calls 1 (pre-flight), 2 and 3 are whole batches; the third step's batch (call 4) and
    # its 3 splits (the first piece of each: calls 5-7) run out of memory: it is skipped.
    calls_of(monkeypatch, Objective, "forward", oom_when(0, on_step_calls={4, 5, 6, 7}))
    events: list = []
    result = run(tmp_path / "m", quick(data, max_steps=6, val_every=100), events)
    assert (result.step, result.oom_skipped) == (6, 1)
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any("skipped it (1 skipped so far)" in w for w in warnings), warnings


def test_out_of_memory_on_every_step_stops_with_advice(tmp_path, monkeypatch, data):
    calls_of(monkeypatch, Objective, "forward", oom_when(1))
    model = tmp_path / "m"
    with pytest.raises(TrainingFailed) as info:
        run(model, quick(data))
    failure = info.value
    assert failure.reason == f"out of memory on {OOM_STREAK} steps in a row"
    assert "--batch-tokens 256" in failure.advice
    assert (failure.step, failure.saved_step, last_step(model)) == (0, 0, 0)
    assert failure.log is None  # a stop the run chose, not a crash


# --- non-finite losses ---------------------------------------------------------------------


def poisoned_forward(monkeypatch, from_call: int, to_call: int | None = None):
    """Forward calls from `from_call` (to `to_call`) return a NaN loss."""
    original = Objective.forward
    count = {"n": 0}

    def forward(self, src, tgt_in, target):
        count["n"] += 1
        loss = original(self, src, tgt_in, target)
        if count["n"] >= from_call and (to_call is None or count["n"] <= to_call):
            return loss * float("nan")
        return loss

    monkeypatch.setattr(Objective, "forward", forward)


def test_a_nan_loss_skips_that_update(tmp_path, monkeypatch, data):
    poisoned_forward(monkeypatch, 4, 4)  # the third step (call 1 is the pre-flight)
    events: list = []
    model = tmp_path / "m"
    result = run(model, quick(data, max_steps=6, val_every=100), events)
    assert (result.step, result.nonfinite_skipped) == (6, 1)
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert warnings == [
        "the loss or the gradients are not finite after step 2: skipped the update "
        "(1 skipped so far)"
    ]
    assert all(torch.isfinite(w).all() for w in last_weights(model).values())
    # The loss logged for the run stays a number.
    assert all(r["train_loss"] == r["train_loss"] for r in read_metrics(model))


def test_nan_on_every_step_stops_with_the_last_good_weights(tmp_path, monkeypatch, data):
    clean = tmp_path / "clean"
    run(clean, quick(data, max_steps=3, val_every=100))
    poisoned_forward(monkeypatch, 5)  # steps 1-3 are clean
    model = tmp_path / "m"
    with pytest.raises(TrainingFailed) as info:
        run(model, quick(data, val_every=100))
    failure = info.value
    assert f"not finite on {NONFINITE_STREAK} steps in a row after step 3" in failure.reason
    assert "lower --lr" in failure.advice
    assert (failure.step, failure.saved_step) == (3, 3)
    assert_same_weights(model, clean)


# --- an untrained model directory ----------------------------------------------------------


@pytest.fixture(scope="module")
def untrained(tmp_path_factory, data) -> Path:
    """A run that failed at its first validation: only the initial weights."""
    model = tmp_path_factory.mktemp("untrained") / "m"
    with pytest.MonkeyPatch.context() as patch:

        def fail_full(n, self, model, limit=None):
            if limit is None:
                raise RuntimeError("injected")

        calls_of(patch, Validator, "scores", fail_full)
        with pytest.raises(TrainingFailed):
            run(model, quick(data))
    return model


def test_an_untrained_model_warns_on_stderr_and_its_output_is_unchanged(untrained):
    assert json.loads((untrained / "config.json").read_text())["untrained"] is True
    text = "A man is walking.\nTwo dogs play.\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [ATTN, "translate", "-m", str(untrained), "--beam", "1"],
        input=text, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (
        f"Warning: {untrained} was never validated: its outputs are from untrained weights"
    )
    assert len(result.stdout.splitlines()) == 2

    from attn.model.inference.pipeline import Translator

    with pytest.MonkeyPatch.context():
        translator = Translator.load(untrained, device="cpu")
    outputs = translator.translate(text.splitlines(), beam=1)
    assert [o.text for o in outputs] == result.stdout.splitlines()


def test_the_python_api_and_info_say_a_model_is_untrained(untrained, caplog):
    from attn.model.inference.pipeline import Translator

    with caplog.at_level("WARNING", logger="attn"):
        Translator.load(untrained, device="cpu")
    assert [r.getMessage() for r in caplog.records] == [
        f"{untrained} was never validated: its outputs are from untrained weights"
    ]
    info = subprocess.run(
        [ATTN, "info", "-m", str(untrained)], capture_output=True, text=True, timeout=60
    )
    assert info.returncode == 0, info.stderr
    assert "trained       no: never validated, the weights are the initial ones" in info.stdout
    about = subprocess.run(
        [ATTN, "info", "-m", str(untrained), "--format", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert json.loads(about.stdout)["untrained"] is True


def test_a_validated_model_does_not_warn(uninterrupted, caplog):
    from attn.model.inference.pipeline import Translator

    assert json.loads((uninterrupted / "config.json").read_text())["untrained"] is False
    with caplog.at_level("WARNING", logger="attn"):
        Translator.load(uninterrupted, device="cpu")
    assert caplog.records == []
