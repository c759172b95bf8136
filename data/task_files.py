"""Task datasets: find and read the training and validation data of a task.

A data directory is read by convention (``train.*``, and ``val.*`` or ``dev.*``); test
splits are never read for training. Without data, the built-in demo corpus of the task is
used. ``load_split`` reads one named split (``val``, ``test2016``, ...) for evaluation.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from attn.data.readers import (
    LABEL_FIELDS,
    TEXT_FIELDS,
    DataError,
    jsonl_keys,
    read_jsonl_numbered,
    read_parallel,
    read_table_numbered,
)


class Task(str, Enum):
    """The jobs attn trains models for. A `str` enum: Typer offers its values as the
    choices of an argument, and `Task.translate == "translate"`."""

    translate = "translate"
    summarize = "summarize"
    sentiment = "sentiment"


# The task names, in the order commands list them.
TASKS = tuple(task.value for task in Task)

# Field names guessed in JSONL records, in order of preference.
SRC_FIELDS = ("dialogue", "document", "text", "source", "src")
TGT_FIELDS = ("summary", "target", "tgt")

# Suffixes of train.* files that are formats, not languages.
_FORMAT_SUFFIXES = {"src", "tgt", "jsonl", "tsv", "csv", "json", "txt", "md", "gz", "zip"}
_VAL_STEMS = ("val", "dev")
# The tag before every synthetic source (tagged back-translation, Caswell et al. 2019): the
# model learns to tell machine-made sources from real ones, and real inputs never carry it.
# A tokenizer trained with synthetic data holds it as one piece.
BT_TAG = "<BT>"
_TABLE_SUFFIXES = (".tsv", ".csv", ".jsonl")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One example: ``src`` is the input text; ``tgt`` the target text or, for sentiment,
    the label name."""

    src: str
    tgt: str


@dataclass
class TaskData:
    """Training and validation examples of a task, and where they came from.

    Attributes:
        train: training examples (without the held-out slice when ``val_from_train``).
        val: validation examples.
        labels: sentiment only: the sorted label names; a label's index is its class id.
        train_files: the files read for training.
        val_files: the files read for validation (empty when ``val_from_train``).
        val_from_train: the validation examples are a seeded slice of the training files.
    """

    train: list[Example]
    val: list[Example]
    labels: list[str] | None
    train_files: list[Path]
    val_files: list[Path]
    val_from_train: bool


def check_task(task: str) -> None:
    """Check a task name.

    Raises:
        ValueError: ``task`` is not one of `TASKS`.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


def demo_dir(task: str) -> Path:
    """The directory of the built-in demo corpus of ``task``.

    Raises:
        ValueError: unknown task.
    """
    check_task(task)
    return Path(__file__).resolve().parent / "demo" / task


def _guess_field(path: Path, wanted: str | None, guesses: Sequence[str], kind: str) -> str:
    if wanted is not None:
        return wanted
    keys = jsonl_keys(path)
    for guess in guesses:
        if guess in keys:
            return guess
    raise DataError(
        path,
        f"cannot tell which field holds the {kind} (fields: {', '.join(keys)}); "
        f"name it with --{kind}-field",
        1,
    )


@dataclass
class _Fields:
    """The JSONL field (or table column) names to read; None = guessed."""

    src: str | None
    tgt: str | None
    text: str | None
    label: str | None

    @classmethod
    def of(
        cls,
        task: str,
        src: str | None,
        tgt: str | None,
        src_field: str | None,
        tgt_field: str | None,
        text_field: str | None,
        label_field: str | None,
    ) -> _Fields:
        if task == "translate":
            # A translation JSONL file names its fields after the languages: {"en": .., "de": ..}.
            src_field, tgt_field = src_field or src, tgt_field or tgt
        return cls(src_field, tgt_field, text_field, label_field)


def _not_data(path: Path) -> DataError:
    """The error for a data path that is neither a data directory nor a data file."""
    if not path.exists():
        return DataError(path, "no such file or directory")
    return DataError(path, "expected a data directory, a .jsonl file or (sentiment) a table")


def _read_all(task: str, files: Sequence[Path], fields: _Fields, empty: str) -> list[Example]:
    """The examples of one split given as files.

    Raises:
        DataError: bad rows, or no example (with the message `empty`).
    """
    examples = [ex for _, _, ex in _read_examples(task, files, fields)]
    if not examples:
        raise DataError(", ".join(str(f) for f in files), empty)
    return examples


def _read_examples(
    task: str, files: Sequence[Path], fields: _Fields, empty: str = "error"
) -> Iterator[tuple[Path, int, Example]]:
    """Yield ``(file, line, example)`` from one split given as files; ``empty="keep"`` yields
    examples with an empty side instead of raising (see the readers)."""
    if task == "sentiment":
        for path in files:
            if path.suffix == ".jsonl":
                text = _guess_field(path, fields.text, TEXT_FIELDS, "text")
                label = _guess_field(path, fields.label, LABEL_FIELDS, "label")
                for line, (src, tgt) in read_jsonl_numbered(path, (text, label), empty=empty):
                    yield path, line, Example(src.strip(), tgt.strip())
            else:
                for line, src, tgt in read_table_numbered(
                    path, text_field=fields.text, label_field=fields.label, empty=empty
                ):
                    yield path, line, Example(src, tgt)
    elif len(files) == 1 and files[0].suffix == ".jsonl":
        path = files[0]
        src_field = _guess_field(path, fields.src, SRC_FIELDS, "src")
        tgt_field = _guess_field(path, fields.tgt, TGT_FIELDS, "tgt")
        for line, (src, tgt) in read_jsonl_numbered(path, (src_field, tgt_field), empty=empty):
            yield path, line, Example(src, tgt)
    elif len(files) == 2:
        pairs = read_parallel(files[0], files[1], empty=empty)
        for line, (src, tgt) in enumerate(pairs, start=1):
            yield files[0], line, Example(src, tgt)
    else:
        names = ", ".join(str(f) for f in files) or "none"
        raise ValueError(
            f"{task} data is two line-aligned files (source, target) or one .jsonl file; "
            f"got {names}"
        )


def _language_pair(
    directory: Path, src: str | None, tgt: str | None, stem: str = "train"
) -> tuple[str, str]:
    """The (source, target) suffixes of a translation directory's ``{stem}.*`` files."""
    found = sorted(
        p.suffix[1:]
        for p in directory.glob(f"{stem}.*")
        if p.is_file() and p.suffix[1:].lower() not in _FORMAT_SUFFIXES
    )
    listed = ", ".join(found) or "none"
    for lang in (src, tgt):
        if lang is not None and lang not in found:
            raise DataError(directory, f"no {stem}.{lang} (languages found: {listed})")
    if src is not None and tgt is not None:
        return src, tgt
    others = [lang for lang in found if lang not in (src, tgt)]
    if src is not None and len(others) == 1:
        return src, others[0]
    if tgt is not None and len(others) == 1:
        return others[0], tgt
    if src is None and tgt is None and len(found) == 2 and "en" in found:
        # Two languages and no choice made: translating out of English is the usual case.
        other = found[0] if found[1] == "en" else found[1]
        logger.info("translating en -> %s (pass --src/--tgt to choose)", other)
        return "en", other
    raise DataError(
        directory, f"found languages {listed}; choose the direction with --src and --tgt"
    )


def _split_files(
    task: str, directory: Path, stem: str, src: str | None, tgt: str | None
) -> list[Path]:
    """The files of split ``stem`` (train, val or dev) in ``directory``; [] if none."""

    def present(*names: str) -> list[Path] | None:
        paths = [directory / name for name in names]
        return paths if all(p.is_file() for p in paths) else None

    if task == "translate":
        if src is not None and tgt is not None:
            return present(f"{stem}.{src}", f"{stem}.{tgt}") or []
        return present(f"{stem}.src", f"{stem}.tgt") or []
    if task == "summarize":
        return present(f"{stem}.src", f"{stem}.tgt") or present(f"{stem}.jsonl") or []
    for suffix in _TABLE_SUFFIXES:
        found = present(f"{stem}{suffix}")
        if found:
            return found
    return []


def _directory_files(
    task: str, directory: Path, src: str | None, tgt: str | None
) -> tuple[list[Path], list[Path]]:
    """Train and validation files of a data directory, found by convention."""
    if task == "translate" and not (
        src is None and tgt is None and (directory / "train.src").is_file()
    ):
        src, tgt = _language_pair(directory, src, tgt)
    train = _split_files(task, directory, "train", src, tgt)
    if not train:
        expected = {
            "translate": "train.SRC and train.TGT (e.g. train.en, train.de) or train.src "
            "and train.tgt",
            "summarize": "train.src and train.tgt, or train.jsonl",
            "sentiment": "train.tsv, train.csv or train.jsonl",
        }[task]
        raise DataError(directory, f"no training data found; expected {expected}")
    for stem in _VAL_STEMS:
        val = _split_files(task, directory, stem, src, tgt)
        if val:
            return train, val
    return train, []


@dataclass(frozen=True)
class TaskFiles:
    """The files of a task's training and validation splits and the fields to read, found
    but not read yet (see `find_task_files`); `examples` streams them."""

    task: str
    train: list[Path]
    val: list[Path]
    fields: _Fields
    synthetic: list[Path] = field(default_factory=list)

    def examples(self, split: str, empty: str = "error") -> Iterator[tuple[Path, int, Example]]:
        """Yield ``(file, line, example)`` of ``split`` ("train" or "val"), streaming. The
        training split ends with the synthetic pairs, their sources tagged with `BT_TAG`
        (an empty source stays empty).

        Args:
            empty: ``"error"`` raises on an empty side; ``"keep"`` yields it (as ``""``).

        Raises:
            DataError: unreadable files or bad rows, with file and line.
        """
        if split != "train":
            return _read_examples(self.task, self.val, self.fields, empty)
        return self._training_examples(empty)

    def _training_examples(self, empty: str) -> Iterator[tuple[Path, int, Example]]:
        yield from _read_examples(self.task, self.train, self.fields, empty)
        if self.synthetic:
            for path, line, ex in _read_examples(self.task, self.synthetic, self.fields, empty):
                src = f"{BT_TAG} {ex.src}" if ex.src.strip() else ex.src
                yield path, line, Example(src, ex.tgt)


def find_task_files(
    task: str,
    data: str | Path | None = None,
    *,
    src: str | None = None,
    tgt: str | None = None,
    train: Sequence[Path] | None = None,
    val: Sequence[Path] | None = None,
    text_field: str | None = None,
    label_field: str | None = None,
    src_field: str | None = None,
    tgt_field: str | None = None,
    synthetic: str | Path | None = None,
) -> TaskFiles:
    """The training and validation files of a task, found by the conventions of
    `load_task_data` (whose arguments these are), without reading them.

    Args:
        synthetic: translation only: a directory of synthetic training pairs (e.g.
            back-translations) named as the training files are (``train.SRC`` and
            ``train.TGT``); `TaskFiles.examples` tags their sources with `BT_TAG`.

    Raises:
        DataError: no data directory or file there, no training files in it, or no
            synthetic pairs in `synthetic`.
        ValueError: unknown task, bad arguments.
    """
    check_task(task)
    if data is not None and train is not None:
        raise ValueError("give either a data directory or train files, not both")
    if train is None and val is not None:
        raise ValueError("validation files need training files too")
    if train is not None:
        train_files, val_files = [Path(p) for p in train], [Path(p) for p in val or []]
    else:
        directory = demo_dir(task) if data is None else Path(data)
        if directory.is_dir():
            train_files, val_files = _directory_files(task, directory, src, tgt)
        elif directory.suffix in _TABLE_SUFFIXES and directory.is_file():
            train_files, val_files = [directory], []
        else:
            raise _not_data(directory)
    fields = _Fields.of(task, src, tgt, src_field, tgt_field, text_field, label_field)
    extra = [] if synthetic is None else _synthetic_files(task, Path(synthetic), train_files)
    return TaskFiles(task, train_files, val_files, fields, extra)


def _synthetic_files(task: str, directory: Path, train: list[Path]) -> list[Path]:
    """The synthetic pairs' files in `directory`: named as the training files are."""
    if task != "translate":
        raise ValueError(f"synthetic pairs (--synthetic) are for translate, not {task}")
    if len(train) != 2 or any(p.suffix in _TABLE_SUFFIXES for p in train):
        raise ValueError(
            "synthetic pairs (--synthetic) need training data as two line-aligned files "
            "(train.SRC and train.TGT)"
        )
    names = [f"train{p.suffix}" for p in train]
    if not directory.is_dir():
        raise DataError(
            directory, f"no such directory (--synthetic names one holding {' and '.join(names)})"
        )
    files = [directory / name for name in names]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise DataError(
            directory,
            f"no {' or '.join(missing)}: synthetic pairs are {' and '.join(names)}, "
            "as in the training data",
        )
    return files


def check_val_label(path: Path, line: int, label: str, labels: list[str] | None) -> None:
    """Refuse a validation row whose sentiment label the training data lacks (`labels`;
    None: not a sentiment task).

    Raises:
        DataError: with the file and line.
    """
    if labels is not None and label not in labels:
        raise DataError(
            path,
            f"label {label!r} does not occur in the training data (labels: {', '.join(labels)})",
            line,
        )


def training_labels(found: set[str], files: Sequence[Path]) -> list[str]:
    """The sentiment labels `found` in the training `files`, in class-id order.

    Raises:
        DataError: fewer than two labels.
    """
    ordered = sort_labels(found)
    if len(ordered) < 2:
        raise DataError(
            ", ".join(str(f) for f in files),
            f"only one label ({ordered[0]!r}) in the training data; sentiment needs at least two",
        )
    return ordered


def held_out(n: int, fraction: float, max_val: int, seed: int) -> list[int]:
    """Which of `n` training examples are held out for validation when there are no
    validation files: a seeded `fraction` of them, at least one and at most `max_val`; none
    of fewer than two. Positions in an order the seed fixes (the same for every reader)."""
    if n <= 1 or fraction <= 0:
        return []
    n_val = min(max_val, max(1, round(n * fraction)))
    return random.Random(seed).sample(range(n), n_val)


def sort_labels(labels: set[str]) -> list[str]:
    """Label names in class-id order: numerically when all are integers, else by name."""
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


# Over 80 lines: a third is the docstring of its arguments; the body is the reading steps.
def load_task_data(
    task: str,
    data: str | Path | None = None,
    *,
    src: str | None = None,
    tgt: str | None = None,
    train: Sequence[Path] | None = None,
    val: Sequence[Path] | None = None,
    text_field: str | None = None,
    label_field: str | None = None,
    src_field: str | None = None,
    tgt_field: str | None = None,
    val_fraction: float = 0.05,
    max_val: int = 2000,
    seed: int = 0,
) -> TaskData:
    """Load the training and validation examples of a task.

    Args:
        task: ``"translate"``, ``"summarize"`` or ``"sentiment"``.
        data: a data directory read by convention, or a single ``.jsonl`` (any task) or
            ``.tsv``/``.csv`` (sentiment) training file. None (and no ``train``): the
            built-in demo corpus.
        src, tgt: translation languages, the suffixes of ``train.SRC``/``train.TGT``.
        train, val: explicit files instead of ``data``: two line-aligned files (source,
            target) or one ``.jsonl`` for translate/summarize; table or JSONL files for
            sentiment.
        text_field, label_field: sentiment column/field names (guessed when None).
        src_field, tgt_field: JSONL field names for translate/summarize (guessed when None).
        val_fraction: without validation files, this fraction of train is held out...
        max_val: ...but at most this many examples.
        seed: seeds the held-out slice.

    Raises:
        DataError: bad or missing data files, no training examples, a sentiment label
            found only in validation, or fewer than two sentiment labels.
        ValueError: unknown task, bad arguments.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    files = find_task_files(
        task,
        data,
        src=src,
        tgt=tgt,
        train=train,
        val=val,
        text_field=text_field,
        label_field=label_field,
        src_field=src_field,
        tgt_field=tgt_field,
    )
    train_files, val_files, fields = files.train, files.val, files.fields
    train_examples = _read_all(task, train_files, fields, "no training examples")

    labels = None
    if task == "sentiment":
        labels = training_labels({ex.tgt for ex in train_examples}, train_files)

    val_examples: list[Example] = []
    if val_files:
        for path, line, ex in _read_examples(task, val_files, fields):
            check_val_label(path, line, ex.tgt, labels)
            val_examples.append(ex)

    held = set() if val_files else set(held_out(len(train_examples), val_fraction, max_val, seed))
    val_from_train = bool(held)
    if val_from_train:
        val_examples = [ex for i, ex in enumerate(train_examples) if i in held]
        train_examples = [ex for i, ex in enumerate(train_examples) if i not in held]

    return TaskData(
        train=train_examples,
        val=val_examples,
        labels=labels,
        train_files=train_files,
        val_files=val_files,
        val_from_train=val_from_train,
    )


def load_split(
    task: str,
    data: str | Path,
    *,
    split: str | None = None,
    src: str | None = None,
    tgt: str | None = None,
    text_field: str | None = None,
    label_field: str | None = None,
    src_field: str | None = None,
    tgt_field: str | None = None,
) -> tuple[list[Example], list[Path]]:
    """The examples of one split, for evaluation, and the files they were read from.

    Args:
        task: ``"translate"``, ``"summarize"`` or ``"sentiment"``.
        data: a data directory, where the split's files are found by the training
            convention (``{split}.SRC``/``{split}.TGT`` or ``{split}.src``/``{split}.tgt``,
            ``{split}.jsonl``, ``{split}.tsv``/``.csv``); or a single ``.jsonl`` (any task)
            or ``.tsv``/``.csv`` (sentiment) file, which is the whole split.
        split: the file stem of the split in a directory; None = ``val``, else ``dev``.
        src, tgt: translation languages; guessed from the split's files when None.
        text_field, label_field, src_field, tgt_field: as for `load_task_data`.

    Raises:
        DataError: no such split or file, bad rows, or an empty split.
        ValueError: unknown task.
    """
    check_task(task)
    path = Path(data)
    if path.is_dir():
        files = _named_split_files(task, path, split, src, tgt)
    elif path.is_file() and path.suffix in _TABLE_SUFFIXES:
        files = [path]
    else:
        raise _not_data(path)
    fields = _Fields.of(task, src, tgt, src_field, tgt_field, text_field, label_field)
    return _read_all(task, files, fields, "no examples"), files


def _named_split_files(
    task: str, directory: Path, split: str | None, src: str | None, tgt: str | None
) -> list[Path]:
    """The files of `split` (None: val, else dev) in a data directory."""
    stems = [split] if split is not None else list(_VAL_STEMS)
    for stem in stems:
        if task == "translate" and not (
            src is None and tgt is None and (directory / f"{stem}.src").is_file()
        ):
            if not any(directory.glob(f"{stem}.*")):
                continue
            pair = _language_pair(directory, src, tgt, stem)
            files = _split_files(task, directory, stem, *pair)
        else:
            files = _split_files(task, directory, stem, src, tgt)
        if files:
            return files
    found = sorted({p.name.split(".", 1)[0] for p in directory.iterdir() if "." in p.name})
    wanted = split if split is not None else "val or dev"
    raise DataError(
        directory,
        f"no {wanted} split for {task} (splits here: {', '.join(found) or 'none'}); "
        "name one with --split",
    )
