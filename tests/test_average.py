"""`attn train --keep-checkpoints` and `attn average`: kept step checkpoints, their mean."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import ATTN
from safetensors.torch import load_file
from typer.testing import CliRunner

from attn.cli.main import app
from attn.data import demo_dir

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A 40-step run validated every 10 steps, keeping 3 checkpoints. A slice of the demo
    corpus keeps the validations (greedy decoding of an untrained model) short."""
    root = tmp_path_factory.mktemp("average")
    data = root / "data"
    data.mkdir()
    demo = demo_dir("translate")
    for split, n in (("train", 400), ("val", 20)):
        for lang in ("en", "de"):
            lines = (demo / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()[:n]
            (data / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    model_dir = root / "model"
    cmd = [ATTN, "train", "translate", "--data", str(data), "--model-dir", str(model_dir)]
    cmd += ["--preset", "tiny", "--vocab-size", "400", "--batch-tokens", "512"]
    cmd += ["--max-steps", "40", "--val-every", "10", "--keep-checkpoints", "3", "--threads", "1"]
    cmd += ["--ema", "0"]  # the checkpoints are the trained weights (with --ema, their average)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return model_dir


def test_training_keeps_the_last_checkpoints(run_dir: Path) -> None:
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert kept == [f"step-0000{s}.safetensors" for s in (20, 30, 40)]
    # The last validation's checkpoint is the weights `last/` holds.
    last = load_file(str(run_dir / "last" / "model.safetensors"))
    newest = load_file(str(run_dir / "checkpoints" / "step-000040.safetensors"))
    assert all(torch.equal(last[k], newest[k]) for k in last)
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["train"]["keep_checkpoints"] == 3


def test_average_into_a_new_directory_loads_and_translates(run_dir: Path, tmp_path) -> None:
    out = tmp_path / "averaged"
    result = runner.invoke(app, ["average", "-m", str(run_dir), "--last", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "steps 20, 30, 40" in result.output
    states = [load_file(str(p)) for p in sorted((run_dir / "checkpoints").iterdir())]
    averaged = load_file(str(out / "model.safetensors"))
    assert set(averaged) == set(states[0])
    for name, tensor in averaged.items():
        mean = sum(s[name].float() for s in states) / 3
        torch.testing.assert_close(tensor, mean, rtol=0, atol=1e-6)
    # The mean is not just the newest checkpoint.
    assert any(not torch.equal(averaged[k], states[-1][k]) for k in averaged)
    meta = json.loads((out / "config.json").read_text())
    assert meta["averaged"]["steps"] == [20, 30, 40]
    # The source is named by its directory, not by a path of this machine.
    assert meta["averaged"]["from"] == run_dir.name

    from attn import Translator

    translator = Translator.load(out, device="cpu")
    assert (out / "shortlist.safetensors").read_bytes() == (
        run_dir / "shortlist.safetensors"
    ).read_bytes()
    assert translator.shortlist is not None
    results = list(translator.translate(["A dog runs.", "", "The red car."], beam=2))
    assert [r.source for r in results] == ["A dog runs.", "", "The red car."]
    assert results[1].text == ""
    assert results[0].score is not None


def test_average_in_place_keeps_the_first_backup(run_dir: Path, tmp_path) -> None:
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(run_dir, model_dir)
    best = (model_dir / "model.safetensors").read_bytes()
    result = runner.invoke(app, ["average", "-m", str(model_dir), "--last", "2"])
    assert result.exit_code == 0, result.output
    assert (model_dir / "model.before-average.safetensors").read_bytes() == best
    result = runner.invoke(app, ["average", "-m", str(model_dir)])
    assert result.exit_code == 0, result.output
    assert "Averaged 3 checkpoints" in result.output
    # A second average leaves the backup of the trained weights alone.
    assert (model_dir / "model.before-average.safetensors").read_bytes() == best


def test_average_errors_are_one_line(run_dir: Path, tmp_path) -> None:
    result = runner.invoke(app, ["average", "-m", str(run_dir), "--last", "5"])
    assert result.exit_code == 1
    assert "holds 3 step checkpoint(s), need 5" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["average", "-m", str(tmp_path)])
    assert result.exit_code == 1
    assert "not an attn model directory" in result.output
    result = runner.invoke(app, ["average", "-m", str(run_dir), "-o", str(run_dir)])
    assert result.exit_code == 1


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run_dir, tmp_path / "model"))


def test_average_in_place_is_the_mean_and_attn_info_reports_it(run_dir: Path, tmp_path) -> None:
    from attn.model.storage.checkpoint import load_model

    model_dir = _copy(run_dir, tmp_path)
    result = runner.invoke(app, ["average", "-m", str(model_dir), "--last", "2"])
    assert result.exit_code == 0, result.output
    kept = sorted((model_dir / "checkpoints").iterdir())
    states = [load_file(str(p)) for p in kept[-2:]]  # steps 30 and 40
    averaged = load_file(str(model_dir / "model.safetensors"))
    for name, tensor in averaged.items():
        torch.testing.assert_close(tensor, (states[0][name] + states[1][name]) / 2)
    loaded = load_model(model_dir, task="translate")
    assert all(torch.equal(p, averaged[n]) for n, p in loaded.model.state_dict().items())

    about = runner.invoke(app, ["info", "-m", str(model_dir), "--format", "json"])
    assert about.exit_code == 0, about.output
    fields = json.loads(about.output)
    assert fields["averaged"]["steps"] == [30, 40]
    assert fields["checkpoints"] == [20, 30, 40]
    text = runner.invoke(app, ["info", "-m", str(model_dir)]).output.splitlines()
    assert "averaged      weights are the mean of steps 30, 40" in text
    assert "checkpoints   step 20, step 30, step 40" in text


def _one_error(result, *parts: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    for part in parts:
        assert part in result.output


def test_average_refuses_bad_checkpoints_and_leaves_the_weights(run_dir: Path, tmp_path) -> None:
    from safetensors.torch import save_file

    model_dir = _copy(run_dir, tmp_path)
    weights = (model_dir / "model.safetensors").read_bytes()
    newest = sorted((model_dir / "checkpoints").iterdir())[-1]
    state = load_file(str(newest))
    # A checkpoint of another architecture: one matrix of the wrong shape.
    name = next(n for n, t in state.items() if t.dim() == 2)
    save_file({**state, name: torch.zeros(3, 3)}, str(newest))
    _one_error(runner.invoke(app, ["average", "-m", str(model_dir), "--last", "2"]), name)
    # A truncated checkpoint file.
    newest.write_bytes(newest.read_bytes()[:100])
    _one_error(runner.invoke(app, ["average", "-m", str(model_dir)]), newest.name)
    assert (model_dir / "model.safetensors").read_bytes() == weights
    assert not (model_dir / "model.before-average.safetensors").exists()


def test_average_of_a_run_that_kept_no_checkpoints(run_dir: Path, tmp_path) -> None:
    import shutil

    model_dir = _copy(run_dir, tmp_path)
    shutil.rmtree(model_dir / "checkpoints")
    _one_error(runner.invoke(app, ["average", "-m", str(model_dir)]), "--keep-checkpoints")
