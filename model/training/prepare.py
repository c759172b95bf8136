"""Everything before the first step: find the data, clear the directory for --overwrite,
prepare the data once (train or copy the tokenizer, encode the corpus into flat arrays on
disk, count the lexical shortlist), or open the data a run prepared before; choose the
model config.

The prepared data lives in MODEL_DIR/prepared/ (`attn.data.prepared`), keyed by what it was
made from: the data files' SHA-256, the task's fields, the tokenizer, the model's length cut
(given, or chosen from the corpus within a cap: `attn.model.training.lengths`), the seed and
--dedup. A later run in the same directory (--resume, --overwrite, a run after
--prepare-only) whose key matches maps it instead of reading the text again; under torchrun
rank 0 prepares while the others wait, then every rank maps the same files.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from attn.atomic import atomic_write_bytes
from attn.model.decoding.shortlist import Shortlist
from attn.model.nn.config import ConfigError, ModelConfig, preset
from attn.model.storage.checkpoint import ModelError, copy_tokenizer, tokenizer_digest
from attn.model.storage.layout import SHORTLIST, TOKENIZER, ModelDir
from attn.model.training.corpus import Split
from attn.model.training.distributed import Dist
from attn.model.training.finetune import InitModel
from attn.model.training.lengths import choose_from_sample, length_cap
from attn.model.training.model_dir import clear_model_dir
from attn.model.training.settings import TrainError, TrainSettings
from attn.model.training.tokenizer_choice import check_synthetic_tag, train_tokenizer

Event = dict[str, Any]

# At most this many texts (half sources, half targets) train the tokenizer: a seeded
# reservoir sample of a larger corpus. SentencePiece needs about 1.5 KB of memory and 25 us
# per text: 500,000 texts take about 0.8 GB and 15 s on one core.
TOKENIZER_SAMPLE = 500_000
_VAL_FILE = "val.jsonl"

# ModelConfig's smallest vocabulary: every check that depends on the size passes with a larger
# one whenever it passes with this (ngram_buckets >= 2 x vocab_size, special ids < vocab_size).
_SMALLEST_VOCAB = 8

# (source piece, target piece) keys counted per batch while building the shortlist (memory:
# 8 bytes and a few masks each).
_SHORTLIST_KEYS = 1 << 22
# The shortlist counts at most this many pairs, evenly spread over a larger corpus: its
# lists are frequencies, settled long before (it counts about 8,000 pairs/s on one core).
SHORTLIST_PAIRS = 100_000


@dataclass
class DataInfo:
    """What a run reports and records of its data (config.json lists the files).

    val: the validation examples as text (references and labels for the metrics);
    train_digests: name, size and SHA-256 of each training file; synthetic_digests: the
    same of each synthetic one; counts: the prepared data's counts (pairs, tokens, what was
    dropped or cut).
    """

    train_files: list[Path]
    val_files: list[Path]
    val_from_train: bool
    labels: list[str] | None
    val: list[Any]
    train_digests: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    synthetic_files: list[Path] = field(default_factory=list)
    synthetic_digests: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Prepared:
    """What training needs from the data: what it was, the tokenizer, the model config and
    the encoded splits (train read in place from `directory`)."""

    data: DataInfo
    tokenizer: Any  # attn.tokenizer.Tokenizer
    config: ModelConfig
    train: Split
    val: Split
    directory: Path


class Preparation:
    """The setup of one run in `model_dir`, on every rank (rank 0 prepares and writes).

    `saved_config`: the config of the model a resumed run continues; `init`: the model a new
    run starts from (--init); neither: a new model of `settings.preset`.
    """

    def __init__(
        self,
        task: str,
        model_dir: Path,
        settings: TrainSettings,
        dist: Dist,
        emit: Callable[[Event], None],
        *,
        saved_config: ModelConfig | None = None,
        init: InitModel | None = None,
    ) -> None:
        self.task, self.dir, self.settings, self.dist, self.emit = (
            task, model_dir, settings, dist, emit,
        )  # fmt: skip
        self.saved_config, self.init = saved_config, init
        self.prepared_dir = ModelDir(model_dir).prepared
        # The max_length chosen from the corpus (`lengths`); None: given, or not yet chosen.
        self.chosen_length: int | None = None

    @property
    def resume(self) -> bool:
        return self.saved_config is not None

    def run(self) -> Prepared:
        """Prepare the data (rank 0), or find it prepared, then map it (every rank).

        Raises:
            TrainError: no validation examples, a bad model config, a tokenizer that cannot
                be trained or does not fit the model.
            attn.data.DataError: unreadable data or no examples (file:line).
        """
        if self.dist.main:
            self._ensure_prepared()
        self.dist.barrier()
        return self._open()

    def _ensure_prepared(self) -> None:
        """Reuse the prepared data whose key matches, else prepare it (rank 0)."""
        from attn.data.prepared import open_prepared

        files = self._files()
        previous = open_prepared(self.prepared_dir)
        digests = _digests(files.train + files.synthetic + files.val, previous)
        key = self._key(files, digests)
        resumed = self.saved_config.max_length if self.saved_config is not None else None
        if previous is not None and resumed is not None and _chosen(previous.manifest) == resumed:
            # Data cut at the length it chose is cut at the resumed model's length.
            key["max_length"] = previous.manifest["key"].get("max_length")
        given = self._given_tokenizer()
        if previous is not None and _reusable(previous.manifest, key, given):
            self.chosen_length = _chosen(previous.manifest)
            self.model_config(_SMALLEST_VOCAB, previous.manifest["labels"])
            self._clear()
            self._install_tokenizer(previous.directory / TOKENIZER)
            self.emit({"event": "prepared", "reused": True, **_summary(previous)})
            return
        self._prepare(files, key, digests)

    def model_config(self, vocab_size: int, labels: list[str] | None) -> ModelConfig:
        """The saved config (resume), the --init model's under the overrides, or the
        preset's under the overrides."""
        if self.saved_config is not None:
            return self.saved_config
        if self.init is not None:
            return self.init.model_config(self.settings.overrides, labels)
        s = self.settings
        fields = {**preset(s.preset), **s.overrides}
        if self.chosen_length is not None and "max_length" not in fields:
            fields["max_length"] = self.chosen_length
        try:
            return ModelConfig(
                task=self.task, vocab_size=vocab_size, labels=tuple(labels or ()), **fields
            )
        except (ConfigError, TypeError) as e:
            raise TrainError(f"bad model config: {e}") from None

    def _files(self) -> Any:
        return task_files(self.task, vars(self.settings))

    def _key(self, files: Any, digests: list[dict[str, Any]]) -> dict[str, Any]:
        """What the prepared data depends on: equal keys, equal data."""
        s = self.settings
        max_length, keep = self._length_cut()
        n_train, n_synthetic = len(files.train), len(files.synthetic)
        key = {
            "task": self.task,
            "train": [d["sha256"] for d in digests[:n_train]],
            "val": [d["sha256"] for d in digests[n_train + n_synthetic :]],
            "fields": [s.text_field, s.label_field, s.src_field, s.tgt_field],
            "vocab_size": s.vocab_size,
            "seed": s.seed,
            "dedup": s.dedup,
            # Given, or chosen from the data within the cap (a function of the key's inputs).
            "max_length": max_length if max_length is not None else {"cap": self._cap()},
            "keep": keep,
            "tokenizer_sample": TOKENIZER_SAMPLE,
        }
        if files.synthetic:  # (absent without: the data prepared before --synthetic matches)
            key["synthetic"] = [d["sha256"] for d in digests[n_train : n_train + n_synthetic]]
        return key

    def _length_cut(self) -> tuple[int | None, str]:
        """The model's `max_length` and `keep`, the config fields encoding depends on (the
        config itself is checked once the labels are known); max_length None: a new model's
        that none gave, chosen from the data (`_choose_length`)."""
        if self.saved_config is not None:
            return self.saved_config.max_length, self.saved_config.keep
        base = dataclasses.asdict(self.init.config) if self.init else preset(self.settings.preset)
        fields = {**base, **self.settings.overrides}
        default = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
        return fields.get("max_length"), fields.get("keep", default["keep"])

    def _cap(self) -> int:
        return length_cap(self.settings.preset, self.settings.batch_tokens)

    def _given_tokenizer(self) -> str | None:
        """The SHA-256 of the tokenizer the run must use (resume, --init); None: trained."""
        if self.resume:
            return tokenizer_digest(self.dir)
        if self.init is not None:
            try:
                return tokenizer_digest(self.init.dir)
            except ModelError as e:
                raise TrainError(f"cannot start from {self.init.dir}: {e}") from None
        return None

    def _clear(self) -> None:
        """Only read and checked data may replace a model (--overwrite): bad data keeps it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.resume:
            clear_model_dir(self.dir)

    def _install_tokenizer(self, prepared: Path) -> None:
        """The model directory's tokenizer: kept (resume), copied (--init) or the prepared
        data's (trained on it)."""
        if self.resume:
            return
        if self.init is not None:
            self.init.copy_tokenizer(self.dir, self.emit)
        else:
            atomic_write_bytes(self.dir / TOKENIZER, prepared.read_bytes())

    def _prepare(self, files: Any, key: dict[str, Any], digests: list[dict[str, Any]]) -> None:
        """Read the corpus twice, streaming: scan it (roles, labels, the tokenizer's sample),
        then encode it into the prepared arrays; build the shortlist; publish."""
        from attn.data.prepared import open_prepared, start_preparation, write_manifest
        from attn.data.scan import read_validation, scan_training_data
        from attn.model.training.binarize import Encoding, encode_training_rows

        started = time.monotonic()
        s = self.settings
        scan = scan_training_data(
            files, dedup=s.dedup, sample_size=TOKENIZER_SAMPLE, seed=s.seed, emit=self.emit
        )
        val, val_empty = read_validation(files, scan.labels) if files.val else ([], 0)
        if not files.val and not scan.val_from_train:
            raise TrainError("no validation examples: give validation files or more training data")
        # A config that fails with the smallest vocabulary fails with any: say so before the
        # tokenizer is trained (minutes on a large corpus). The real size is checked below.
        self.model_config(_SMALLEST_VOCAB, scan.labels)
        if files.synthetic:
            given = self.dir if self.resume else self.init.dir if self.init is not None else None
            check_synthetic_tag(given)
        self._clear()
        start_preparation(self.prepared_dir)
        tokenizer = self._tokenizer(scan.sample, bool(files.synthetic))
        if self._length_cut()[0] is None:  # a new model's, chosen from the sampled rows
            self.chosen_length = choose_from_sample(tokenizer, scan, self.task, self._cap())
        scan.sample.clear()  # before the encoding workers fork
        config = self.model_config(tokenizer.vocab_size, scan.labels)
        if tokenizer.vocab_size != config.vocab_size:
            raise TrainError(
                f"{self.dir / TOKENIZER} has {tokenizer.vocab_size} pieces but the model "
                f"expects {config.vocab_size}; the directory is inconsistent"
            )
        encoding = Encoding(tokenizer, self.task, config.max_length, config.keep, config.labels)
        arrays, counts = encode_training_rows(
            files, scan, encoding, config.vocab_size, self.prepared_dir, self.emit
        )
        val = val or counts.val
        if not val:
            raise TrainError("no validation examples: give validation files or more training data")
        _write_val(self.prepared_dir / _VAL_FILE, val)
        copy_tokenizer(self.dir, self.prepared_dir)
        tokenizer_files = ModelDir(self.prepared_dir).tokenizer_files()
        extra = [*(p.name for p in tokenizer_files if p.is_file()), _VAL_FILE]
        manifest = {
            "key": key,
            "tokenizer_sha256": tokenizer_digest(self.dir),
            "tokenizer_trained": self._given_tokenizer() is None,
            "labels": scan.labels,
            **_file_entries(files, digests),
            "val_from_train": scan.val_from_train,
            "counts": {
                "rows": scan.rows,
                "pairs": counts.pairs,
                "synthetic": counts.synthetic,
                "val": len(val),
                "src_tokens": counts.src_tokens,
                "tgt_tokens": counts.tgt_tokens,
                "empty": scan.empty + val_empty,
                "duplicates": scan.duplicates,
                "dedup": s.dedup,
                "ratio_skipped": counts.ratio_skipped,
                "src_cut": counts.src_cut,
                "tgt_cut": counts.tgt_cut,
                "max_length": config.max_length,
                "lengths": _lengths(counts, config.max_length, self.chosen_length, self._cap()),
            },
            "arrays": arrays,
        }
        if self.task == "translate":
            from attn.data.prepared import PreparedData

            train = Split.open(PreparedData(self.prepared_dir, {**manifest, "files": {}}))
            build_shortlist(self.prepared_dir / SHORTLIST, train, config, self.emit)
            extra.append(SHORTLIST)
        manifest["seconds"] = round(time.monotonic() - started, 1)
        write_manifest(self.prepared_dir, manifest, tuple(extra))
        published = open_prepared(self.prepared_dir)
        assert published is not None
        self.emit({"event": "prepared", "reused": False, **_summary(published)})

    def _tokenizer(self, sample: list[str], synthetic: bool) -> Any:
        """The model directory's tokenizer: kept (resume), copied (--init) or trained on
        `sample`; with `synthetic` pairs, one that holds their tag as one piece."""
        from attn.model.storage.checkpoint import load_tokenizer

        path = self.dir / TOKENIZER
        if self.resume:
            return load_tokenizer(self.dir)
        if self.init is not None:
            self.init.copy_tokenizer(self.dir, self.emit)
            try:
                return load_tokenizer(self.dir)
            except ValueError as e:
                raise TrainError(f"cannot start from {self.init.dir}: {e}") from None
        s = self.settings
        return train_tokenizer(
            sample, path, s.vocab_size, seed=s.seed, synthetic=synthetic, emit=self.emit
        )

    def _open(self) -> Prepared:
        """Map the prepared data (every rank) and load what goes with it."""
        from attn.data.prepared import open_prepared
        from attn.data.task_files import Example
        from attn.model.storage.checkpoint import load_tokenizer

        prepared = open_prepared(self.prepared_dir)
        if prepared is None:
            raise TrainError(f"{self.prepared_dir} holds no complete prepared data")
        m = prepared.manifest
        self.chosen_length = _chosen(m)
        tokenizer = load_tokenizer(self.dir)
        config = self.model_config(tokenizer.vocab_size, m["labels"])
        val = _read_val(self.prepared_dir / _VAL_FILE, Example)
        data = DataInfo(
            train_files=[Path(p) for p in m["train_files"]],
            val_files=[Path(p) for p in m["val_files"]],
            val_from_train=m["val_from_train"],
            labels=m["labels"],
            val=val,
            train_digests=m["train_digests"] if self.dist.main else [],
            counts=m["counts"],
            synthetic_files=[Path(p) for p in m.get("synthetic_files", [])],
            synthetic_digests=m.get("synthetic_digests", []) if self.dist.main else [],
        )
        return Prepared(
            data,
            tokenizer,
            config,
            Split.open(prepared),
            Split.encode(tokenizer, val, config),
            self.prepared_dir,
        )


def _lengths(counts: Any, max_length: int, chosen: int | None, cap: int) -> dict[str, Any]:
    """The length distribution of the training rows before the cut (median, p99, max and
    how many are longer than max_length, per side) and whether max_length was chosen."""
    from attn.model.training.lengths import COVER

    out: dict[str, Any] = {"src": counts.src_lengths.summary(max_length)}
    if counts.tgt_lengths.longest:
        out["tgt"] = counts.tgt_lengths.summary(max_length)
    if chosen is not None:
        out.update(chosen=chosen, cover=COVER, cap=cap)
    return out


def _chosen(manifest: dict[str, Any]) -> int | None:
    """The max_length prepared data chose (None: given, or data prepared before the choice)."""
    return manifest["counts"].get("lengths", {}).get("chosen")


def _reusable(manifest: dict[str, Any], key: dict[str, Any], given: str | None) -> bool:
    """Prepared data fits a run when made from the same inputs, with the run's tokenizer
    (resume, --init) or, for a new model, with one it trained itself."""
    if manifest.get("key") != key:
        return False
    if given is None:
        return bool(manifest.get("tokenizer_trained"))
    return manifest.get("tokenizer_sha256") == given


def _digests(files: list[Path], previous: Any) -> list[dict[str, Any]]:
    """Name, size, modification time and SHA-256 of each file; a file whose path, size and
    mtime the previous manifest recorded keeps its recorded hash (no second read of GBs)."""
    from attn.data.checksum import sha256_file

    known = {}
    if previous is not None:
        known = {(d["file"], d["bytes"], d["mtime_ns"]): d for d in previous.manifest["digests"]}
    out = []
    for path in files:
        stat = Path(path).stat()
        name = str(Path(path).resolve())
        entry = known.get((name, stat.st_size, stat.st_mtime_ns))
        sha = entry["sha256"] if entry else sha256_file(path)
        out.append(
            {"file": name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}
        )
    return out


def _write_val(path: Path, examples: list[Any]) -> None:
    """The validation examples, one `[source, target]` JSON line each (`attn.data.jsonlines`:
    read back line for line whatever the texts hold)."""
    from attn.data import jsonlines

    text = jsonlines.text([ex.src, ex.tgt] for ex in examples)
    atomic_write_bytes(path, text.encode("utf-8"))


def _read_val(path: Path, example: Callable[[str, str], Any]) -> list[Any]:
    """The examples `_write_val` wrote.

    Raises:
        TrainError: the file is missing or a line is not a `[source, target]` pair; the
            message names the file and line and how to recover.
    """
    from attn.data import jsonlines

    def broken(where: str, what: str) -> TrainError:
        return TrainError(
            f"{where}: {what}; the prepared data is damaged: delete {path.parent} and run "
            "again to prepare it anew (if it happens again, please report it as a bug)"
        )

    val = []
    try:
        for number, record in jsonlines.read(path):
            if not (
                isinstance(record, list)
                and len(record) == 2
                and all(isinstance(x, str) for x in record)
            ):
                raise broken(f"{path}:{number}", "expected a [source, target] pair of texts")
            val.append(example(*record))
    except jsonlines.JsonLinesError as e:
        raise broken(f"{e.file}:{e.line}", e.what) from None
    except OSError as e:
        raise broken(str(path), f"cannot read it ({e.strerror or e})") from None
    return val


def _summary(prepared: Any) -> dict[str, Any]:
    """The prepared data in numbers, for the one-line summary."""
    m = prepared.manifest
    return {
        "directory": str(prepared.directory),
        "files": len(m["files"]) + 1,
        "bytes": prepared.size_on_disk(),
        "seconds": m.get("seconds"),
        **m["counts"],
    }


def build_shortlist(
    path: Path,
    train: Split,
    config: ModelConfig,
    emit: Callable[[Event], None],
    **sizes: int,
) -> None:
    """The lexical shortlist decoding uses (attn.model.decoding.shortlist), counted over
    the training pairs in order, streaming: it depends on the tokenizer and the pairs only,
    so it is built once, with the prepared data. `sizes`: `frequent` and `per_source`, where
    not the shortlist's own (bench/shortlist_size.py)."""
    from attn.data.progress import StageProgress

    src, tgt = train.src, train.tgt
    assert tgt is not None
    n = len(src)
    pairs = (
        np.arange(n) if n <= SHORTLIST_PAIRS else np.arange(SHORTLIST_PAIRS) * n // SHORTLIST_PAIRS
    )
    progress = StageProgress(emit, "building the lexical shortlist", "pairs", total=len(pairs))

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        s_len, t_len = src.lengths[pairs].tolist(), tgt.lengths[pairs].tolist()
        start = 0
        while start < len(pairs):  # pairs in order, at most _SHORTLIST_KEYS keys a batch
            end, width_s, width_t = start + 1, s_len[start], t_len[start]
            while end < len(pairs):
                w_s, w_t = max(width_s, s_len[end]), max(width_t, t_len[end])
                if (end - start + 1) * w_s * w_t > _SHORTLIST_KEYS:
                    break
                end, width_s, width_t = end + 1, w_s, w_t
            index = pairs[start:end]
            yield src.batch(index, config.pad_id), tgt.batch(index, config.pad_id)
            progress.update(end)
            start = end

    shortlist = Shortlist.build(
        batches(),
        config.vocab_size,
        eos_id=config.eos_id,
        skip=(config.pad_id, config.bos_id),
        **sizes,
    )
    shortlist.save(path)
    progress.finish()


def write_shortlist(model_dir: Path, prepared: Prepared) -> None:
    """Put the prepared data's shortlist in the model directory (translation models)."""
    atomic_write_bytes(model_dir / SHORTLIST, (prepared.directory / SHORTLIST).read_bytes())


def _file_entries(files: Any, digests: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest's account of the data files: every digest (training, synthetic, then
    validation files, as `_key` reads them), the name, size and SHA-256 of the training and
    of the synthetic files (config.json records them), and each kind's resolved paths."""
    n_train, n_synthetic = len(files.train), len(files.synthetic)

    def digest(entry: dict[str, Any]) -> dict[str, Any]:
        return {k: entry[k] for k in ("file", "bytes", "sha256")}

    def paths(names: list[Any]) -> list[str]:
        return [str(Path(f).resolve()) for f in names]

    return {
        "digests": digests,
        "train_digests": [digest(d) for d in digests[:n_train]],
        "synthetic_digests": [digest(d) for d in digests[n_train : n_train + n_synthetic]],
        "train_files": paths(files.train),
        "val_files": paths(files.val),
        "synthetic_files": paths(files.synthetic),
    }


def task_files(task: str, values: Mapping[str, Any]) -> Any:
    """The training, validation and synthetic files that settings (or the options given,
    before defaults) name, found without reading them (`find_task_files`)."""
    from attn.data.task_files import find_task_files

    def paths(key: str) -> list[Path] | None:
        return [Path(p) for p in values[key]] if values.get(key) else None

    keys = ("src", "tgt", "text_field", "label_field", "src_field", "tgt_field", "synthetic")
    return find_task_files(
        task,
        values.get("data"),
        train=paths("train"),
        val=paths("val"),
        **{k: values.get(k) for k in keys},
    )
