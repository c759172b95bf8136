"""The recipes in recipes/ run on their real datasets: preparation, the first steps, one
validation, the end of the run and a model that answers.

Each recipe runs through the `attn train` CLI with its own file (`--config`), its dataset
read from shared/data (`--data`, which replaces the file's dataset name) and its time
budget joined by a step count that ends the run first. A recipe that starts from another
recipe's model (`init`) gets that recipe's run, made once for the module. A recipe that
trains on synthetic pairs too (`synthetic`, back-translations) gets a small directory of
them made from the dataset's own first pairs (`SYNTHETIC_PAIRS`), as `--synthetic`.

Validation reads the first examples of the real validation split (`VAL_EXAMPLES`), not
all of it: translation and summarization decode greedily, and an untrained model decodes
every example to the length limit (DialogSum's 500 dialogues take minutes on 2 cores), and
IMDB's 2,527 reviews of up to 512 pieces take over a minute to classify. The first 256 of
them include reviews with U+0085, which once broke the prepared validation file.

The datasets are not part of the repository: without them these tests skip, unless
ATTN_REQUIRE_SHARED_DATA=1 (CI sets it), where they fail.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import ATTN

from attn.cli.commands.train import parse_duration
from attn.data.catalog import DATASETS
from attn.model.evaluation.metrics import PRIMARY_METRIC
from attn.model.nn.config import preset
from attn.model.training.metrics_log import read_metrics

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

pytestmark = pytest.mark.slow

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
# Each dataset a recipe names (`data`) -> its directory under shared/data. A recipe on a
# dataset missing here fails until it is added.
SHARED_DIRS = {
    "multi30k": "translation/multi30k",
    "dialogsum": "summarization/dialogsum",
    "imdb": "sentiment/imdb",
    "sst2": "sentiment/sst2",
}
STEPS = 4
# Synthetic pairs made for a recipe with `synthetic`: stand-ins for back-translations.
SYNTHETIC_PAIRS = 64
# Validation examples read, of each split's first (see the module's doc).
VAL_EXAMPLES = {"translate": 48, "summarize": 48, "sentiment": 256}
# Recipe keys the test replaces, or that are paths: checked apart from the other settings.
_NOT_SETTINGS = {"data", "model_dir", "init", "synthetic", "time_budget", "val_every", "set"}


def _recipe(name: str) -> dict[str, Any]:
    text = (RECIPES / name).read_text(encoding="utf-8")
    return {key.replace("-", "_"): value for key, value in tomllib.loads(text).items()}


@dataclass
class Run:
    """One recipe's `attn train` run."""

    recipe: str
    task: str
    shared: Path  # the dataset's directory under shared/data
    data: Path  # what --data names: links to its files
    model_dir: Path
    init: Run | None
    synthetic: Path | None  # what --synthetic names
    reused: bool  # started with the data another recipe prepared alike
    returncode: int
    stderr: str

    def check_success(self) -> None:
        assert self.returncode == 0, f"{self.recipe} failed:\n{self.stderr[-3000:]}"


class Runs:
    """Runs recipes on demand, each once; a recipe with `init` runs the recipe whose
    model_dir that is first.

    A recipe on the dataset of an earlier run (sst2-imdb.toml after imdb.toml) starts with
    a copy of that run's prepared data: attn train reuses it only where its key (data,
    vocabulary, length cut, seed...) matches, and prepares anew otherwise.
    """

    def __init__(self, shared: Path, tmp: Path) -> None:
        self.shared, self.tmp = shared, tmp
        self.done: dict[str, Run] = {}
        self.prepared: dict[str, Path] = {}  # dataset -> a model dir that prepared it

    def get(self, name: str) -> Run:
        if name not in self.done:
            self.done[name] = self._run(name)
        return self.done[name]

    def _run(self, name: str) -> Run:
        recipe = _recipe(name)
        dataset = recipe["data"]
        assert dataset in SHARED_DIRS, (
            f"recipes/{name} trains on {dataset!r}: add its directory under shared/data "
            "to SHARED_DIRS in tests/test_recipes.py"
        )
        task = DATASETS[dataset].task
        shared = self.shared / SHARED_DIRS[dataset]
        data = self._data(task, shared, dataset)
        model_dir = self.tmp / "runs" / name.removesuffix(".toml")
        cmd = [ATTN, "train", task, "--config", str(RECIPES / name), "--data", str(data)]
        cmd += ["--model-dir", str(model_dir), "--max-steps", str(STEPS)]
        cmd += ["--val-every", str(STEPS)]
        init = None
        if "init" in recipe:
            init = self.get(_recipe_writing(recipe["init"]))
            init.check_success()
            cmd += ["--init", str(init.model_dir)]
        synthetic = None
        if "synthetic" in recipe:
            synthetic = self._synthetic(shared, name, recipe["src"], recipe["tgt"])
            cmd += ["--synthetic", str(synthetic)]
        # Data prepared with synthetic pairs fits no other recipe, nor other data this one.
        reused = init is None and synthetic is None and dataset in self.prepared
        if reused:
            shutil.copytree(self.prepared[dataset] / "prepared", model_dir / "prepared")
        # An empty attn home: nothing fetched there stands in for the shared data.
        env = {**os.environ, "ATTN_HOME": str(self.tmp / "home")}
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if result.returncode == 0 and init is None and synthetic is None:
            self.prepared.setdefault(dataset, model_dir)
        return Run(
            name,
            task,
            shared,
            data,
            model_dir,
            init,
            synthetic,
            reused,
            result.returncode,
            result.stderr,
        )

    def _synthetic(self, shared: Path, name: str, src: str, tgt: str) -> Path:
        """Synthetic pairs for recipe `name`: the first SYNTHETIC_PAIRS pairs of the dataset."""
        directory = self.tmp / "synthetic" / name.removesuffix(".toml")
        directory.mkdir(parents=True)
        for lang in (src, tgt):
            with (shared / f"train.{lang}").open(encoding="utf-8", newline="") as f:
                head = "".join(line for _, line in zip(range(SYNTHETIC_PAIRS), f, strict=False))
            (directory / f"train.{lang}").write_text(head, encoding="utf-8", newline="")
        return directory

    def _data(self, task: str, shared: Path, dataset: str) -> Path:
        """A directory of links to the files of `shared`, but with validation files that
        hold their first VAL_EXAMPLES[task] examples (made once per dataset)."""
        directory = self.tmp / "data" / dataset
        if directory.is_dir():
            return directory
        directory.mkdir(parents=True)
        for path in sorted(shared.iterdir()):
            if path.name.startswith(("val.", "dev.")):
                header = path.suffix in (".tsv", ".csv")
                with path.open(encoding="utf-8", newline="") as f:
                    lines = range(VAL_EXAMPLES[task] + header)
                    head = "".join(line for _, line in zip(lines, f, strict=False))
                (directory / path.name).write_text(head, encoding="utf-8", newline="")
            else:
                (directory / path.name).symlink_to(path)
        return directory


def _recipe_writing(init: str) -> str:
    """The recipe whose model_dir is `init` (both relative to recipes/)."""
    target = (RECIPES / init).resolve()
    for path in sorted(RECIPES.glob("*.toml")):
        model_dir = _recipe(path.name).get("model_dir")
        if model_dir is not None and (RECIPES / model_dir).resolve() == target:
            return path.name
    raise AssertionError(f"no recipe writes the model that init = {init!r} names")


@pytest.fixture(scope="module")
def runs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return Runs(shared_data, tmp_path_factory.mktemp("recipes"))


def _check_settings(run: Run, recipe: dict[str, Any], config: dict[str, Any]) -> None:
    """config.json holds the recipe's settings, the test's step count and the shared data."""
    train, model = config["train"], config["model"]
    for key, value in recipe.items():
        if key not in _NOT_SETTINGS:
            assert train[key] == value, (key, train[key], value)
    assert train["time_budget"] == parse_duration(recipe["time_budget"])
    assert (train["max_steps"], train["val_every"]) == (STEPS, STEPS)
    for key, value in recipe.get("set", {}).items():
        assert model[key] == value, (key, model[key], value)
    assert Path(train["data"]) == run.data.resolve()
    if run.synthetic is not None:
        assert Path(train["synthetic"]) == run.synthetic.resolve()
        assert {Path(f).parent for f in config["data"]["synthetic"]} == {run.synthetic.resolve()}
    read = {Path(f["file"]).resolve().parent for f in config["data"]["train"]}
    assert read == {run.shared.resolve()}
    if run.init is None:
        assert train["overrides"] == recipe.get("set", {})
        assert {k: model[k] for k in preset(recipe["preset"])} == preset(recipe["preset"])
        assert model["vocab_size"] == recipe["vocab_size"]
        return
    # Fine-tuning: the size and the tokenizer are the init model's (the labels the data's).
    assert Path(train["init"]) == run.init.model_dir.resolve()
    before = json.loads((run.init.model_dir / "config.json").read_text(encoding="utf-8"))
    assert train["overrides"] == {**before["train"]["overrides"], **recipe.get("set", {})}
    expected = {**before["model"], **recipe.get("set", {}), "labels": model["labels"]}
    assert model == expected
    tokenizer = "tokenizer.model"
    assert (run.model_dir / tokenizer).read_bytes() == (run.init.model_dir / tokenizer).read_bytes()


def _first_source(run: Run) -> str:
    """The first validation text the run read (the source side)."""
    val = json.loads((run.model_dir / "config.json").read_text(encoding="utf-8"))["data"]["val"]
    path = Path(val[0])
    with path.open(encoding="utf-8", newline="") as f:
        lines = [f.readline().rstrip("\r\n") for _ in range(2)]
    if path.suffix in (".tsv", ".csv"):  # a header, then text<TAB>label
        return lines[1].rsplit("\t" if path.suffix == ".tsv" else ",", 1)[0].strip()
    assert path.suffix != ".jsonl", f"{path}: which field is the source?"
    return lines[0]


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.glob("*.toml")))
def test_recipe_runs_on_its_dataset(name: str, runs: Runs) -> None:
    run = runs.get(name)
    run.check_success()
    recipe = _recipe(name)
    metric = PRIMARY_METRIC[run.task]

    # Prepared (or started with what a recipe on the same data prepared), trained for the
    # step count, validated once, ended with the summary.
    assert ("Using the data prepared in" if run.reused else "Prepared ") in run.stderr
    assert f"Done (reached --max-steps): {STEPS} steps" in run.stderr
    validations = [r for r in read_metrics(run.model_dir) if "val_loss" in r]
    assert [r["step"] for r in validations] == [STEPS]
    assert math.isfinite(validations[0]["val_loss"])
    assert 0 <= validations[0][metric] <= 100

    config = json.loads((run.model_dir / "config.json").read_text(encoding="utf-8"))
    assert config["best"]["metric"] == metric and config["best"]["step"] == STEPS
    _check_settings(run, recipe, config)
    if run.synthetic is not None:
        # The synthetic pairs were trained on, tagged; validation holds real pairs only.
        manifest = json.loads((run.model_dir / "prepared" / "manifest.json").read_text("utf-8"))
        assert manifest["counts"]["synthetic"] == SYNTHETIC_PAIRS
        assert f" tokens; {SYNTHETIC_PAIRS} pairs synthetic) and " in run.stderr
        assert config["data"]["val"] and not config["data"]["val_from_train"]

    # The model answers: one line out for one line in.
    source = _first_source(run)
    result = subprocess.run(
        [ATTN, run.task, "-m", str(run.model_dir)],
        input=source + "\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.split("\n")
    assert len(lines) == 2 and lines[1] == "", result.stdout
    if run.task == "sentiment":
        assert lines[0].split("\t")[0] in config["model"]["labels"]
