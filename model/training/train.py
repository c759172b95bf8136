"""The training loop behind `attn train`: data, tokenizer, optimisation, validation, checkpoints.

One entry point, `train()`. It reports progress through an `on_event(dict)` callback (the CLI
renders it) and never prints. Design choices:

- Schedule: linear warmup, then inverse square root decay (`lr_at`). It needs no total step
  count, so a run stopped by `--time-budget` or Ctrl-C and later resumed follows the same
  curve as one uninterrupted run.
- Batches hold about `batch_tokens` padded tokens, length-bucketed (`attn.data.token_batches`);
  epoch `e` uses the seed `seed * 100_003 + e`, so the batch order of any epoch is known
  without replaying earlier ones, and resuming needs only (epoch, position).
- A step is one optimizer update over `accum` batches; the loss is normalised by the target
  tokens of all of them, so accumulation does not change the gradient's scale.
- Every file is written atomically, in an order that keeps the model directory loadable:
  tokenizer, best weights and `last/` before `config.json` points at them.
- Under `torchrun` (RANK/WORLD_SIZE set) it runs DistributedDataParallel: rank r trains on
  batches r, r + world, ... of the same seeded list; rank 0 validates and writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attn.data.checksum import sha256_file
from attn.model.decoding.shortlist import SHORTLIST, Shortlist
from attn.model.evaluation.metrics import PRIMARY_METRIC, task_scores
from attn.model.nn.config import ModelConfig, load_config, preset
from attn.model.nn.heads import Classifier, build_model
from attn.model.nn.loss import smoothed_cross_entropy
from attn.model.nn.transformer import Transformer, count_parameters
from attn.model.storage.atomic import atomic_write, atomic_write_bytes, remove_stale_temp_files
from attn.model.storage.checkpoint import (
    CONFIG,
    TOKENIZER,
    WEIGHTS,
    check_weights,
    load_weights,
    read_model_config,
    save_model_config,
    save_weights,
)
from attn.model.training.average import BACKUP, CHECKPOINTS, save_step_checkpoint
from attn.model.training.state import (
    find_last,
    load_last,
    remove_training_files,
    rng_state,
    save_last,
    set_rng_state,
)

METRICS = "metrics.jsonl"
PLOT = "training.png"

Event = dict[str, Any]

logger = logging.getLogger(__name__)

# Fixed knobs (few flags, good defaults): AdamW as in "Attention Is All You Need" with
# decoupled weight decay on matrices only, global gradient-norm clipping.
BETAS = (0.9, 0.98)
EPS = 1e-9
WEIGHT_DECAY = 0.01
CLIP_NORM = 1.0
# The peak learning rate of the bag of n-grams of a sentiment model (config.ngram_buckets),
# on the transformer's schedule whatever its peak: a linear model over sparse features, each
# seen in few examples, learns in one epoch at 2e-2 where the transformer wants 1e-3. Best
# measured (the bag alone, trained on the same features outside attn, dev accuracy): SST-2
# 1e-2 82.3%, 2e-2 83.0%; IMDB 1e-2 90.3%, 2e-2 90.6%, 4e-2 89.8%.
NGRAM_LR = 2e-2
# Validation decodes at most this many examples (the loss uses the whole validation set).
VAL_SAMPLE = 500
# Training loss and throughput are reported (one host sync) every this many steps.
LOG_EVERY = 50
# Under DDP the ranks agree on stopping (Ctrl-C, time budget) every this many steps.
STOP_SYNC_EVERY = 10

# The built-in demo corpora are small and regular: a tiny model learns them in about a
# minute on two CPU cores. Real data gets the `small` preset and a stop by epochs.
DEMO_DEFAULTS: dict[str, Any] = {
    "preset": "tiny",
    "batch_tokens": 2048,
    "lr": 2e-3,
    "warmup": 100,
    "max_steps": 300,
    "val_every": 100,
}
# About the largest vocabulary each demo corpus supports (a larger one is shrunk, with a
# warning that a first run should not show).
DEMO_VOCAB = {"translate": 680, "summarize": 440, "sentiment": 360}
DATA_DEFAULTS: dict[str, Any] = {
    "preset": "small",
    "vocab_size": 8000,
    "batch_tokens": 4096,
    "lr": 1e-3,
    "warmup": 400,
    "epochs": 20.0,
    "val_every": 500,
    "patience": 5,
}
STOP_KEYS = ("max_steps", "epochs", "time_budget")
# Fixed by the first run of a model directory: changing them on --resume is refused.
ARCHITECTURE_KEYS = ("preset", "overrides", "vocab_size", "init")
# Fixed by the --init model (its tokenizer and its weights' shapes).
INIT_KEYS = ("preset", "vocab_size")


# Config fields that come from the task, the tokenizer or the data, not from --set.
_NOT_OVERRIDABLE = {"task", "vocab_size", "labels", "pad_id", "bos_id", "eos_id"}


class TrainError(ValueError):
    """Training cannot start: bad settings, or a model directory in the way."""


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a training run (saved as "train" in config.json).

    Data: `data` (a directory or file; None with no `train` = the built-in demo corpus),
    `src`/`tgt` languages, explicit `train`/`val` files, and the field names of table and
    JSONL files. Model: `preset` plus `overrides` of config fields, `vocab_size`; or `init`,
    a trained model directory of the same task whose tokenizer, config and weights the run
    starts from (fine-tuning: `overrides` may change what leaves the weights' shapes alone).
    Optimisation: `batch_tokens` per batch, `accum` batches per step, peak `lr`, `warmup`
    steps, `label_smoothing`. Stopping: `max_steps`, `epochs`, `time_budget` (seconds of
    training in total, resumed runs included); validation every `val_every` steps, early
    stop after `patience` validations without improvement. `keep_checkpoints` > 0 keeps the
    weights of that many latest validations in `checkpoints/` (for `attn average`).
    `seed` seeds everything.
    """

    data: str | None = None
    src: str | None = None
    tgt: str | None = None
    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    text_field: str | None = None
    label_field: str | None = None
    src_field: str | None = None
    tgt_field: str | None = None
    preset: str = "small"
    overrides: dict[str, Any] = field(default_factory=dict)
    vocab_size: int = 8000
    init: str | None = None
    batch_tokens: int = 4096
    accum: int = 1
    lr: float = 1e-3
    warmup: int = 400
    label_smoothing: float = 0.1
    max_steps: int | None = None
    epochs: float | None = None
    time_budget: float | None = None
    val_every: int = 500
    patience: int | None = None
    keep_checkpoints: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "train", tuple(str(p) for p in self.train))
        object.__setattr__(self, "val", tuple(str(p) for p in self.val))
        for name in ("vocab_size", "batch_tokens", "accum", "val_every"):
            _check_number(name, getattr(self, name), int, low=1)
        _check_number("warmup", self.warmup, int, low=0)
        _check_number("seed", self.seed, int, low=0)
        _check_number("keep_checkpoints", self.keep_checkpoints, int, low=0)
        _check_number("lr", self.lr, float, low=0.0, open_low=True)
        _check_number("label_smoothing", self.label_smoothing, float, low=0.0)
        if self.label_smoothing >= 1:
            raise TrainError(f"label_smoothing must be below 1, got {self.label_smoothing}")
        for name, kind in (("max_steps", int), ("patience", int)):
            if getattr(self, name) is not None:
                _check_number(name, getattr(self, name), kind, low=1)
        for name in ("epochs", "time_budget"):
            if getattr(self, name) is not None:
                _check_number(name, getattr(self, name), float, low=0.0, open_low=True)
        if not isinstance(self.overrides, dict):
            raise TrainError(
                f"overrides must be a mapping of config fields, got {self.overrides!r}"
            )
        allowed = {f.name for f in dataclasses.fields(ModelConfig)} - _NOT_OVERRIDABLE
        unknown = sorted(set(self.overrides) - allowed)
        if unknown:
            raise TrainError(
                f"cannot set {', '.join(unknown)}; model config fields are "
                f"{', '.join(sorted(allowed))} (vocabulary: --vocab-size)"
            )
        try:
            preset(self.preset)
        except ValueError as e:
            raise TrainError(str(e)) from None

    @property
    def is_demo(self) -> bool:
        return self.data is None and not self.train

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["train"], data["val"] = list(self.train), list(self.val)
        return data


def _check_number(name: str, value: Any, kind: type, *, low: float, open_low: bool = False) -> None:
    ok_type = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
    if isinstance(value, bool) or not ok_type:
        raise TrainError(
            f"{name} must be {'a number' if kind is float else 'an integer'}, got {value!r}"
        )
    if value < low or (open_low and value == low):
        raise TrainError(f"{name} must be {'above' if open_low else 'at least'} {low}, got {value}")


def resolve_settings(
    options: Mapping[str, Any],
    saved: Mapping[str, Any] | None = None,
    task: str = "translate",
    init: Mapping[str, Any] | None = None,
) -> TrainSettings:
    """Settings from the options the user gave, over the saved ones (resume) or the defaults.

    Defaults depend on the data: the demo corpus gets `DEMO_DEFAULTS` (and the `DEMO_VOCAB`
    of `task`), real data `DATA_DEFAULTS`. A stop criterion given explicitly replaces all
    default or saved ones. `init` holds the saved settings of the model that `init` names:
    its preset, vocabulary size and overrides are the new run's, under the user's overrides.

    Raises:
        TrainError: an unknown option, a bad value, an architecture change on resume, or
            a preset or vocabulary size other than the --init model's.
    """
    known = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TrainError(f"unknown training setting(s): {', '.join(unknown)}")
    if saved is not None:
        base = {k: v for k, v in saved.items() if k in known}
        for key in ARCHITECTURE_KEYS:
            if key in options and options[key] != base.get(key):
                raise TrainError(
                    f"{key} is fixed when resuming (the model has {base.get(key)!r}, "
                    f"got {options[key]!r}); use --overwrite to start a new model"
                )
    else:
        demo = options.get("data") is None and not options.get("train")
        base = {**DEMO_DEFAULTS, "vocab_size": DEMO_VOCAB[task]} if demo else dict(DATA_DEFAULTS)
        if init is not None:
            for key in INIT_KEYS:
                if key in options and options[key] != init.get(key, options[key]):
                    raise TrainError(
                        f"{key} comes from the --init model ({init[key]!r}, got "
                        f"{options[key]!r}); leave it out to fine-tune that model"
                    )
                if key in init:
                    base[key] = init[key]
            overrides = {**init.get("overrides", {}), **options.get("overrides", {})}
            options = {**options, "overrides": overrides}
    if any(options.get(key) is not None for key in STOP_KEYS):
        base.update(dict.fromkeys(STOP_KEYS))
    try:
        return TrainSettings(**{**base, **options})
    except TypeError as e:
        raise TrainError(str(e)) from None


def lr_at(step: int, peak: float, warmup: int) -> float:
    """Learning rate of update `step` (1-based).

    Linear warmup to `peak` over `warmup` steps, then peak * sqrt(warmup / step).
    """
    if warmup == 0:
        return peak
    return peak * min(step / warmup, math.sqrt(warmup / step))


@dataclass
class TrainResult:
    """How a training run ended.

    stopped: "max_steps", "epochs", "time_budget", "early_stopping" or "interrupted".
    metric: the task's primary metric; best_value/best_step: its best validation score.
    example: a validation input, for the "try it" hint.
    """

    model_dir: Path
    task: str
    step: int
    epoch: float
    elapsed: float
    stopped: str
    metric: str
    best_value: float | None
    best_step: int | None
    scores: dict[str, float]
    example: str | None


@dataclass
class _Dist:
    """The process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def any(self, flags: Sequence[bool], device: torch.device) -> list[bool]:
        """Element-wise OR of `flags` over all ranks."""
        if not self.enabled:
            return list(flags)
        t = torch.tensor([int(f) for f in flags], device=device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def gather(self, value: Any) -> list[Any]:
        """`value` from every rank, in rank order (one item without torchrun)."""
        if not self.enabled:
            return [value]
        values: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(values, value)
        return values

    def from_main(self, value: bool, device: torch.device) -> bool:
        """Rank 0's `value`, on every rank."""
        if not self.enabled:
            return value
        t = torch.tensor([int(value)], device=device)
        torch.distributed.broadcast(t, src=0)
        return bool(t.item())


def _start_distributed(device_name: str) -> _Dist:
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return _Dist()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return _Dist(rank, world, local_rank)


class _Sequences:
    """Token id sequences stored flat (one int32 tensor plus offsets), batched by gather."""

    def __init__(self, chunks: Iterator[list[list[int]]]) -> None:
        flats, lengths = [], []
        for seqs in chunks:
            lengths.extend(len(s) for s in seqs)
            flats.append(torch.tensor(list(chain.from_iterable(seqs)), dtype=torch.int32))
        self.lengths = lengths
        self.flat = torch.cat(flats) if flats else torch.zeros(0, dtype=torch.int32)
        starts = torch.tensor([0, *lengths[:-1]], dtype=torch.long).cumsum(0)
        self.offsets = starts[: len(lengths)]

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, index: Sequence[int], pad_id: int, multiple: int = 1, cap: int = 0) -> Tensor:
        """The sequences at `index`, padded. Shape: (B, T), T the longest of them, rounded up
        to a multiple of `multiple` where that stays within `cap`."""
        idx = torch.tensor(index, dtype=torch.long)
        lengths = torch.tensor([self.lengths[i] for i in index], dtype=torch.long)  # (B,)
        longest = int(lengths.max())
        pos = torch.arange(max(longest, min(-(-longest // multiple) * multiple, cap)))  # (T,)
        gather = (self.offsets[idx, None] + pos).clamp_(max=max(0, len(self.flat) - 1))  # (B, T)
        ids = self.flat[gather].long()
        return ids.masked_fill_(pos >= lengths[:, None], pad_id)


def _encode(
    tokenizer: Any, texts: Sequence[str], max_length: int, keep: str = "head"
) -> _Sequences:
    chunk = 10_000
    return _Sequences(
        tokenizer.encode(texts[i : i + chunk], max_length=max_length, keep=keep)[0]
        for i in range(0, len(texts), chunk)
    )


# (source piece, target piece) keys counted per batch while building the shortlist (memory:
# 8 bytes and a few masks each).
_SHORTLIST_KEYS = 1 << 22

# ModelConfig's smallest vocabulary: every check that depends on the size passes with a larger
# one whenever it passes with this (ngram_buckets >= 2 x vocab_size, special ids < vocab_size).
_SMALLEST_VOCAB = 8


class _Objective(nn.Module):
    """The training forward pass, as one module so DistributedDataParallel can wrap it.

    Returns the summed loss of the batch: cross-entropy with label smoothing over the
    target pieces (padding ignored), or over the examples for sentiment.
    """

    def __init__(self, model: Transformer, label_smoothing: float) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing

    def forward(self, src: Tensor, tgt_in: Tensor, target: Tensor) -> Tensor:
        c = self.model.config
        if c.task == "sentiment":
            logits, bag = self.model.class_logits(src, src != c.pad_id)  # (B, C)
            loss = self._cross_entropy(logits, target, self.label_smoothing)
            # The bag of n-grams learns from its own loss, as a second model would, without
            # label smoothing: smoothing held the bag 2.5 points lower on IMDB dev (87.7% vs
            # 90.2% after an epoch, the bag alone).
            return loss if bag is None else loss + self._cross_entropy(bag, target, 0.0)
        states = self.model(src, tgt_in, hidden=True)  # (B, T, d_model)
        if states.device.type == "cpu":
            # Project only the positions that have a target: padding would cost a
            # (vocab x d_model) product and a softmax over the vocabulary each. (On a
            # GPU the boolean index would sync with the host, so padding is projected.)
            keep = target != c.pad_id  # (B, T)
            states, target = states[keep], target[keep]  # (N, d_model), (N,)
        logits = self.model.project(states).flatten(0, -2)  # (N, V)
        target = target.flatten()
        if logits.device.type == "cpu":
            return smoothed_cross_entropy(logits.float(), target, self.label_smoothing)
        return self._cross_entropy(logits, target, self.label_smoothing)

    def _cross_entropy(self, logits: Tensor, target: Tensor, smoothing: float) -> Tensor:
        return F.cross_entropy(
            logits.float(),
            target,
            ignore_index=_ignored(self.model.config),
            label_smoothing=smoothing,
            reduction="sum",
        )


def _ignored(config: ModelConfig) -> int:
    """The target id the loss skips: padding for seq2seq; none for sentiment, where the
    targets are class ids and class 0 shares its number with the pad id."""
    return -100 if config.task == "sentiment" else config.pad_id


def _file_digests(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Name, size and sha256 of each data file (a 30 MB file takes about 0.1 s)."""
    out = []
    for path in paths:
        out.append(
            {
                "file": str(Path(path).resolve()),
                "bytes": Path(path).stat().st_size,
                "sha256": sha256_file(path),
            }
        )
    return out


def train(
    task: str,
    model_dir: str | Path,
    options: Mapping[str, Any] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    threads: int | None = None,
    on_event: Callable[[Event], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a model for `task` into `model_dir`.

    Args:
        task: "translate", "summarize" or "sentiment".
        model_dir: where the model goes (created); see `attn.model.storage.checkpoint`.
        options: the settings the user gave (keys of `TrainSettings`); the rest come from
            the saved run (resume) or the defaults.
        resume: continue the run in `model_dir` from `last/`, exactly where it stopped.
        overwrite: replace a model already in `model_dir`.
        device: "auto", "cpu", "cuda" or "mps".
        threads: torch intra-op threads; None leaves torch's default.
        on_event: receives progress events (dicts with an "event" key), on rank 0 only.
        stop_requested: polled between steps; when it returns True, training saves a
            resumable checkpoint and returns with `stopped == "interrupted"`.

    Raises:
        TrainError: bad settings, or a model directory that holds a model (without
            resume/overwrite) or nothing to resume.
        attn.data.DataError: unreadable data or no examples.
        attn.model.storage.checkpoint.ModelError: a damaged checkpoint on resume.
    """
    from attn.model.device import keep_freed_memory, resolve_device

    if threads is not None:
        torch.set_num_threads(threads)
    dist = _start_distributed(device)
    try:
        target = resolve_device(device)
        if target.type == "cpu":
            keep_freed_memory()
        if dist.enabled and target.type == "cuda":
            target = torch.device("cuda", dist.local_rank)
        run = _Run(
            task,
            Path(model_dir),
            dict(options or {}),
            resume,
            overwrite,
            target,
            dist,
            on_event if dist.main else None,
            stop_requested,
        )
        return run.execute()
    finally:
        if dist.enabled:
            torch.distributed.destroy_process_group()


class _Run:
    """One invocation of `train()`: state that the loop and the checkpoints share."""

    def __init__(
        self,
        task: str,
        model_dir: Path,
        options: dict[str, Any],
        resume: bool,
        overwrite: bool,
        device: torch.device,
        dist: _Dist,
        on_event: Callable[[Event], None] | None,
        stop_requested: Callable[[], bool] | None,
    ) -> None:
        self.task, self.dir, self.device, self.dist = task, model_dir, device, dist
        self.emit = on_event or (lambda event: None)
        self.stop_requested = stop_requested or (lambda: False)
        saved = self._check_dir(resume, overwrite)
        self.resume = resume
        # The model a new run starts from (--init); a resumed run has its own weights.
        self.init_dir: Path | None = None
        self.init_config: ModelConfig | None = None
        init_meta: dict[str, Any] = {}
        if saved is None and options.get("init") is not None:
            self.init_dir = Path(options["init"])
            self.init_config, init_meta = self._check_init(self.init_dir)
        self.settings = resolve_settings(
            options, saved[1].get("train") if saved else None, task, init_meta.get("train")
        )
        self.saved_config = saved[0] if saved else None
        self.saved_meta = saved[1] if saved else {}
        self.metric = PRIMARY_METRIC[task]
        # Counters and bookkeeping that trainer_state.pt carries across a resume.
        self.step = 0
        self.epoch = 0
        self.position = 0
        self.elapsed = 0.0
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.bad_validations = 0
        self.validated_step = -1
        self.scores: dict[str, float] = {}

    # --- setup ---------------------------------------------------------------------------

    def _check_dir(self, resume: bool, overwrite: bool) -> tuple[ModelConfig, dict] | None:
        if resume and overwrite:
            raise TrainError("--resume and --overwrite exclude each other; pick one")
        config_path = self.dir / CONFIG
        if self.dir.exists() and not self.dir.is_dir():
            raise TrainError(f"{self.dir} is a file, not a model directory")
        if resume:
            if not config_path.is_file():
                raise TrainError(f"nothing to resume: {self.dir} holds no model (no {CONFIG})")
            config, meta = load_config(config_path)
            if config.task != self.task:
                raise TrainError(
                    f"{self.dir} holds a {config.task} model; resume it with "
                    f"`attn train {config.task} --resume`"
                )
            last = find_last(self.dir)
            if last is not None:
                # Before the model is built: a config edited to absurd sizes is not allocated.
                check_weights(config, last / WEIGHTS)
            return config, meta
        if config_path.is_file() and not overwrite:
            held = _task_in(config_path)
            what = f"a {held} model" if held else "a model"
            hint = (
                "pass --resume to continue training it or --overwrite to replace it"
                if held == self.task
                else "pass --overwrite to replace it or choose another --model-dir"
            )
            raise TrainError(f"{self.dir} already holds {what}; {hint}")
        return None

    def _check_init(self, init: Path) -> tuple[ModelConfig, dict[str, Any]]:
        if init.resolve() == self.dir.resolve():
            raise TrainError(
                f"--init {init} is the model directory itself; "
                "write the fine-tuned model to another --model-dir"
            )
        try:
            config, meta = read_model_config(init)
        except ValueError as e:
            raise TrainError(f"--init: {e}") from None
        if config.task != self.task:
            raise TrainError(f"--init {init} holds a {config.task} model, not a {self.task} model")
        try:
            check_weights(config, init / WEIGHTS)
        except ValueError as e:
            raise TrainError(f"cannot start from {init}: {e}") from None
        return config, meta

    def _clear_dir(self) -> None:
        """--overwrite: config.json goes first, so the directory never points at missing files."""
        for name in (CONFIG, WEIGHTS, TOKENIZER, METRICS, PLOT, BACKUP, SHORTLIST):
            (self.dir / name).unlink(missing_ok=True)
        remove_training_files(self.dir)
        shutil.rmtree(self.dir / CHECKPOINTS, ignore_errors=True)

    def _load_data(self) -> Any:
        from attn.data import load_task_data

        s = self.settings
        return load_task_data(
            self.task,
            s.data,
            src=s.src,
            tgt=s.tgt,
            train=[Path(p) for p in s.train] if s.train else None,
            val=[Path(p) for p in s.val] if s.val else None,
            text_field=s.text_field,
            label_field=s.label_field,
            src_field=s.src_field,
            tgt_field=s.tgt_field,
            seed=s.seed,
        )

    def _tokenizer(self, data: Any) -> Any:
        from attn.tokenizer import Tokenizer

        path = self.dir / TOKENIZER
        if self.resume:
            return Tokenizer.load(path)
        if self.init_dir is not None:
            init = self.init_dir
            if self.dist.main:
                if not (init / TOKENIZER).is_file():
                    raise TrainError(f"cannot start from {init}: it holds no {TOKENIZER}")
                self.emit({"event": "stage", "message": f"starting from the model in {init}"})
                atomic_write_bytes(path, (init / TOKENIZER).read_bytes())
            self.dist.barrier()
            try:
                return Tokenizer.load(path)
            except ValueError as e:
                raise TrainError(f"cannot start from {init}: {e}") from None
        if self.dist.main:
            texts = [ex.src for ex in data.train]
            if self.task != "sentiment":
                texts += [ex.tgt for ex in data.train]
            self.emit(
                {
                    "event": "stage",
                    "message": f"training the tokenizer "
                    f"({self.settings.vocab_size} pieces) on {len(texts)} texts",
                }
            )
            try:
                Tokenizer.train(texts, path, self.settings.vocab_size, seed=self.settings.seed)
            except RuntimeError as e:
                # SentencePiece's own refusals (e.g. fewer pieces than distinct characters).
                reason = str(e).splitlines()[0].rpartition("] ")[2].partition(". ")[0]
                raise TrainError(
                    f"cannot train a tokenizer of {self.settings.vocab_size} pieces on this "
                    f"text ({reason}); choose another --vocab-size"
                ) from None
        self.dist.barrier()
        return Tokenizer.load(path)

    def _model_config(self, vocab_size: int, labels: list[str] | None) -> ModelConfig:
        if self.saved_config is not None:
            return self.saved_config
        if self.init_config is not None:
            return self._init_model_config(labels)
        from attn.model.nn.config import ConfigError

        s = self.settings
        fields = {**preset(s.preset), **s.overrides}
        try:
            return ModelConfig(
                task=self.task,
                vocab_size=vocab_size,
                labels=tuple(labels or ()),
                **fields,
            )
        except (ConfigError, TypeError) as e:
            raise TrainError(f"bad model config: {e}") from None

    def _init_model_config(self, labels: list[str] | None) -> ModelConfig:
        """The --init model's config under the user's overrides, checked against its
        weights (an override may not change their shapes) and the data's labels."""
        from attn.model.nn.config import ConfigError

        assert self.init_dir is not None and self.init_config is not None
        init = self.init_dir
        try:
            config = dataclasses.replace(self.init_config, **self.settings.overrides)
        except (ConfigError, TypeError) as e:
            raise TrainError(f"bad model config: {e}") from None
        try:
            check_weights(config, init / WEIGHTS)
        except ValueError:
            raise TrainError(
                f"--set {', '.join(self._reshaping(init))} would change the shapes of the "
                "--init model's weights; fine-tuning can change only settings such as dropout"
            ) from None
        if tuple(labels or ()) != config.labels:
            raise TrainError(
                f"--init {init} classifies into labels {', '.join(config.labels)}; "
                f"this data has {', '.join(labels or ())}"
            )
        return config

    def _reshaping(self, init: Path) -> list[str]:
        """The overrides that, each on its own, do not fit the --init model's weights."""
        assert self.init_config is not None
        keys = []
        for key, value in sorted(self.settings.overrides.items()):
            try:
                check_weights(dataclasses.replace(self.init_config, **{key: value}), init / WEIGHTS)
            except ValueError:
                keys.append(key)
        return keys

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        params = [p for n, p in model.named_parameters() if not n.startswith("ngrams.")]
        decay = [p for p in params if p.dim() >= 2]
        rest = [p for p in params if p.dim() < 2]
        groups: list[dict[str, Any]] = [
            {"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": rest, "weight_decay": 0.0},
        ]
        if isinstance(model, Classifier) and model.ngrams is not None:
            groups.append(
                {
                    "params": list(model.ngrams.parameters()),
                    "weight_decay": WEIGHT_DECAY,
                    "lr_scale": NGRAM_LR / self.settings.lr,
                }
            )
        # Fused AdamW runs one kernel per step over all parameters (CPU and CUDA).
        try:
            return torch.optim.AdamW(groups, lr=self.settings.lr, betas=BETAS, eps=EPS, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.AdamW(
                groups, lr=self.settings.lr, betas=BETAS, eps=EPS, foreach=True
            )

    # --- the run -------------------------------------------------------------------------

    def execute(self) -> TrainResult:
        s = self.settings
        random.seed(s.seed)
        torch.manual_seed(s.seed)

        self.emit({"event": "stage", "message": "reading data"})
        data = self._load_data()
        if not data.val:
            raise TrainError("no validation examples: give validation files or more training data")
        # A config that fails with the smallest vocabulary fails with any: say so before the
        # tokenizer is trained (minutes on a large corpus). The real size is checked below.
        self._model_config(_SMALLEST_VOCAB, data.labels)
        # Only read and checked data may replace a model (--overwrite): bad data keeps it.
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.dist.main and not self.resume:
            self._clear_dir()
        self.dist.barrier()
        self.data = data
        tokenizer = self._tokenizer(data)
        self.tokenizer = tokenizer
        self.config = config = self._model_config(tokenizer.vocab_size, data.labels)
        if tokenizer.vocab_size != config.vocab_size:
            raise TrainError(
                f"{self.dir / TOKENIZER} has {tokenizer.vocab_size} pieces but the model "
                f"expects {config.vocab_size}; the directory is inconsistent"
            )
        self._encode_data(data, tokenizer, config)

        torch.manual_seed(s.seed)
        self.model = build_model(config).to(self.device)
        if self.init_dir is not None:
            load_weights(self.model, self.init_dir / WEIGHTS, self.device)
        self.optimizer = self._optimizer(self.model)
        self._setup_precision()
        objective: nn.Module = _Objective(self.model, s.label_smoothing)
        if self.dist.enabled:
            ids = [self.dist.local_rank] if self.device.type == "cuda" else None
            objective = nn.parallel.DistributedDataParallel(
                objective, device_ids=ids, **_no_buffer_sync()
            )
        self.objective = objective

        self.data_digests = _file_digests(data.train_files) if self.dist.main else []
        if self.resume:
            self._restore()
        else:
            # Each rank draws its own dropout masks.
            torch.manual_seed(s.seed + self.dist.rank)
            if self.dist.main:
                self._write_initial()
            self.dist.barrier()

        if self.dist.main and self.task == "translate" and not (self.dir / SHORTLIST).is_file():
            self._write_shortlist()
        self.emit(self._start_event(data))
        stopped = self._loop()
        return self._finish(stopped)

    def _encode_data(self, data: Any, tokenizer: Any, config: ModelConfig) -> None:
        self.emit({"event": "stage", "message": f"encoding {len(data.train)} training examples"})
        n = config.max_length
        keep = config.keep
        self.train_src = _encode(tokenizer, [ex.src for ex in data.train], n, keep)
        self.val_src = _encode(tokenizer, [ex.src for ex in data.val], n, keep)
        if self.task == "sentiment":
            index = {label: i for i, label in enumerate(config.labels)}
            self.train_labels = torch.tensor([index[ex.tgt] for ex in data.train])
            self.val_labels = torch.tensor([index[ex.tgt] for ex in data.val])
            self.train_lengths = list(self.train_src.lengths)
            self.val_lengths = list(self.val_src.lengths)
        else:
            self.train_tgt = _encode(tokenizer, [ex.tgt for ex in data.train], n)
            self.val_tgt = _encode(tokenizer, [ex.tgt for ex in data.val], n)
            self.train_lengths = [
                max(a, b)
                for a, b in zip(self.train_src.lengths, self.train_tgt.lengths, strict=True)
            ]
            self.val_lengths = [
                max(a, b) for a, b in zip(self.val_src.lengths, self.val_tgt.lengths, strict=True)
            ]

    def _write_shortlist(self) -> None:
        """The lexical shortlist decoding uses (attn.model.decoding.shortlist): it depends on the
        tokenizer and the training pairs only, so it is written once, before training."""
        self.emit({"event": "stage", "message": "building the lexical shortlist"})
        c = self.config
        src, tgt = self.train_src, self.train_tgt

        def batches() -> Iterator[tuple[Tensor, Tensor]]:
            start = 0
            while start < len(src):  # pairs in order, at most _SHORTLIST_KEYS keys a batch
                end, width_s, width_t = start + 1, src.lengths[start], tgt.lengths[start]
                while end < len(src):
                    s, t = max(width_s, src.lengths[end]), max(width_t, tgt.lengths[end])
                    if (end - start + 1) * s * t > _SHORTLIST_KEYS:
                        break
                    end, width_s, width_t = end + 1, s, t
                index = list(range(start, end))
                yield src.batch(index, c.pad_id), tgt.batch(index, c.pad_id)
                start = end

        shortlist = Shortlist.build(
            batches(), c.vocab_size, eos_id=c.eos_id, skip=(c.pad_id, c.bos_id)
        )
        shortlist.save(self.dir / SHORTLIST)

    def _setup_precision(self) -> None:
        """bf16 autocast on CUDA GPUs that support it, else fp16 with a gradient scaler."""
        self.autocast_dtype: torch.dtype | None = None
        self.scaler: torch.amp.GradScaler | None = None
        if self.device.type == "cuda":
            if torch.cuda.is_bf16_supported():
                self.autocast_dtype = torch.bfloat16
            else:
                self.autocast_dtype = torch.float16
                self.scaler = torch.amp.GradScaler("cuda")

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _collate(self, split: str, index: Sequence[int]) -> tuple[Tensor, Tensor, Tensor, int, int]:
        """Batch `index` of a split: (src, decoder input, target, src tokens, target tokens).

        Sentiment: the decoder input is empty and the target holds the class ids.
        """
        pad = self.config.pad_id
        # On a GPU: lengths in multiples of 8 (fewer distinct shapes for the kernels to be
        # chosen and tuned for, tensor-core friendly), copies from pinned memory that do
        # not wait for the GPU.
        cuda = self.device.type == "cuda"
        multiple, cap = (8 if cuda else 1), self.config.max_length

        def dev(t: Tensor) -> Tensor:
            return (t.pin_memory() if cuda else t).to(self.device, non_blocking=True)

        src_seqs = self.train_src if split == "train" else self.val_src
        src = src_seqs.batch(index, pad, multiple, cap)  # (B, S)
        n_src = sum(src_seqs.lengths[i] for i in index)
        if self.task == "sentiment":
            labels = (self.train_labels if split == "train" else self.val_labels)[list(index)]
            empty = torch.zeros(0, dtype=torch.long)
            return dev(src), empty, dev(labels), n_src, len(index)
        tgt_seqs = self.train_tgt if split == "train" else self.val_tgt
        target = tgt_seqs.batch(index, pad, multiple, cap)  # (B, T): pieces then EOS
        # Teacher forcing: the decoder reads BOS + target[:-1] (EOS never as input).
        tgt_in = torch.cat([torch.full_like(target[:, :1], self.config.bos_id), target[:, :-1]], 1)
        tgt_in.masked_fill_(tgt_in == self.config.eos_id, pad)
        n_tgt = sum(tgt_seqs.lengths[i] for i in index)
        return dev(src), dev(tgt_in), dev(target), n_src, n_tgt

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of `epoch`: every world-th of one seeded list, equal counts."""
        s = self.settings
        batches = _token_batches(self.train_lengths, s.batch_tokens, s.seed * 100_003 + epoch)
        usable = len(batches) // self.dist.world * self.dist.world
        return batches[self.dist.rank : usable : self.dist.world]

    def _loop(self) -> str:
        s = self.settings
        started = time.monotonic()
        elapsed_before = self.elapsed
        steps_before = self.step
        # Summed training loss since the last log line and since the last validation: on
        # the device, so that a step never waits for the GPU; read at log/validation time.
        self.loss_sum = torch.zeros((), device=self.device)
        self.val_loss_sum = torch.zeros((), device=self.device)
        self.val_loss_count = 0
        log_tokens = [0, 0]
        log_time, log_loss_count = time.monotonic(), 0
        batches = self._epoch_batches(self.epoch)
        if not batches:
            raise TrainError(
                f"no training batch for {self.dist.world} process(es): too little data"
            )
        self.n_batches = len(batches)
        self.steps_per_epoch = math.ceil(len(batches) / s.accum)
        stopped = self._stop_reason(0.0)
        while stopped is None:
            if self.position >= len(batches):
                self.epoch, self.position = self.epoch + 1, 0
                batches = self._epoch_batches(self.epoch)
                self.n_batches = len(batches)
            group = batches[self.position : self.position + s.accum]
            n_src, n_tgt = self._train_step(group)
            self.position += len(group)
            self.step += 1
            log_tokens[0] += n_src
            log_tokens[1] += n_tgt
            log_loss_count += n_tgt
            self.val_loss_count += n_tgt
            self.elapsed = elapsed_before + time.monotonic() - started
            rate = (time.monotonic() - started) / (self.step - steps_before)
            progress = {
                "event": "progress",
                "step": self.step,
                "epoch": self.epoch_float(len(batches)),
                "lr": self.lr,
                "elapsed": self.elapsed,
                "eta": self._eta(rate, len(batches)),
            }
            self.emit(progress)
            if self.step % LOG_EVERY == 0:
                now = time.monotonic()
                if self.dist.main:
                    seconds = (now - log_time) / self.dist.world
                    self.emit(
                        {
                            **progress,
                            "event": "log",
                            "loss": self.loss_sum.item() / max(1, log_loss_count),
                            "src_tokens_per_s": log_tokens[0] / seconds,
                            "tgt_tokens_per_s": log_tokens[1] / seconds,
                        }
                    )
                self.loss_sum.zero_()
                log_tokens, log_time, log_loss_count = [0, 0], now, 0
            if self.step % s.val_every == 0 and self._validate_and_save(len(batches)):
                return "early_stopping"
            stopped = self._stop_reason(self.epoch_float(len(batches)))
        if stopped != "interrupted" and self.validated_step != self.step:
            if self._validate_and_save(len(batches)) and stopped is None:
                stopped = "early_stopping"
        elif stopped == "interrupted":
            rngs = self.dist.gather(rng_state())
            if self.dist.main:
                save_last(self.dir, self.model, self._state(rngs))
        self.dist.barrier()
        return stopped

    def epoch_float(self, n_batches: int) -> float:
        return self.epoch + min(1.0, self.position / max(1, n_batches))

    def _eta(self, seconds_per_step: float, n_batches: int) -> float | None:
        s = self.settings
        left = []
        if s.max_steps is not None:
            left.append((s.max_steps - self.step) * seconds_per_step)
        if s.epochs is not None:
            steps = (s.epochs - self.epoch_float(n_batches)) * self.steps_per_epoch
            left.append(steps * seconds_per_step)
        if s.time_budget is not None:
            left.append(s.time_budget - self.elapsed)
        return max(0.0, min(left)) if left else None

    def _stop_reason(self, epoch: float) -> str | None:
        s = self.settings
        if s.max_steps is not None and self.step >= s.max_steps:
            return "max_steps"
        if s.epochs is not None and epoch >= s.epochs:
            return "epochs"
        # Ctrl-C and the clock differ between ranks: agree on them at fixed steps only.
        if self.dist.enabled and self.step % STOP_SYNC_EVERY:
            return None
        interrupted, out_of_time = self.dist.any(
            [self.stop_requested(), s.time_budget is not None and self.elapsed >= s.time_budget],
            self.device,
        )
        if interrupted:
            return "interrupted"
        if out_of_time:
            return "time_budget"
        return None

    @property
    def lr(self) -> float:
        return lr_at(max(1, self.step), self.settings.lr, self.settings.warmup)

    def _train_step(self, group: list[list[int]]) -> tuple[int, int]:
        """One optimizer update over the batches of `group`; returns (src, tgt) tokens."""
        self.model.train()
        batches = [self._collate("train", index) for index in group]
        n_src = sum(b[3] for b in batches)
        n_tgt = sum(b[4] for b in batches)
        for i, (src, tgt_in, target, _, _) in enumerate(batches):
            last = i == len(batches) - 1
            no_sync = self.dist.enabled and not last
            sync_ctx = self.objective.no_sync() if no_sync else contextlib.nullcontext()
            with sync_ctx:
                with self._autocast():
                    loss = self.objective(src, tgt_in, target)
                scaled = loss / n_tgt
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            self.loss_sum += loss.detach()
            self.val_loss_sum += loss.detach()
        lr = lr_at(self.step + 1, self.settings.lr, self.settings.warmup)
        for group_ in self.optimizer.param_groups:
            group_["lr"] = lr * group_.get("lr_scale", 1.0)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP_NORM)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return n_src, n_tgt

    # --- validation ------------------------------------------------------------------------

    def _validate_and_save(self, n_batches: int) -> bool:
        """Validate on rank 0, keep best and last; returns whether to stop early (all ranks)."""
        stop = False
        self.validated_step = self.step
        rngs = self.dist.gather(rng_state())  # validation draws nothing at random
        if self.dist.main:
            self.emit({"event": "stage", "message": f"validating at step {self.step}"})
            scores = self._validate()
            self.scores = scores
            value = scores[self.metric]
            improved = self.best_value is None or value > self.best_value
            if improved:
                self.best_value, self.best_step, self.bad_validations = value, self.step, 0
            else:
                self.bad_validations += 1
            train_loss = None
            if self.val_loss_count:
                train_loss = round(self.val_loss_sum.item() / self.val_loss_count, 4)
            self.val_loss_sum.zero_()
            self.val_loss_count = 0
            record = {
                "step": self.step,
                "epoch": round(self.epoch_float(n_batches), 4),
                "time": round(self.elapsed, 2),
                "train_loss": train_loss,
                **{k: round(v, 4) for k, v in scores.items()},
                "lr": self.lr,
            }
            self._append_metrics(record)
            if improved:
                save_weights(self.model, self.dir / WEIGHTS)
                self._write_config()
            save_last(self.dir, self.model, self._state(rngs))
            if self.settings.keep_checkpoints:
                save_step_checkpoint(
                    self.dir, self.model, self.step, self.settings.keep_checkpoints
                )
            self.emit(
                {
                    "event": "validation",
                    **record,
                    "metric": self.metric,
                    "value": value,
                    "best": improved,
                    "best_value": self.best_value,
                    "best_step": self.best_step,
                }
            )
            patience = self.settings.patience
            stop = patience is not None and self.bad_validations >= patience
        return self.dist.from_main(stop, self.device)

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        """Validation loss (no label smoothing) on the whole set, the task metric on a sample."""
        model = self.model
        model.eval()
        total, count = 0.0, 0
        predictions: list[int] = []
        order: list[int] = []
        for index in _token_batches(self.val_lengths, self.settings.batch_tokens, None):
            src, tgt_in, target, _, n_tgt = self._collate("val", index)
            with self._autocast():
                if self.task == "sentiment":
                    logits = model.classify(src, src != self.config.pad_id)
                    predictions += logits.argmax(-1).tolist()
                    order += index
                else:
                    logits = model(src, tgt_in).flatten(0, 1)
                    target = target.flatten()
            total += F.cross_entropy(
                logits.float(), target, ignore_index=_ignored(self.config), reduction="sum"
            ).item()
            count += n_tgt
        scores = {"val_loss": total / max(1, count)}
        if self.task == "sentiment":
            labels = self.config.labels
            predicted = [""] * len(order)
            for i, p in zip(order, predictions, strict=True):
                predicted[i] = labels[p]
            gold = [ex.tgt for ex in self.data.val]
            scores.update(task_scores(self.task, predicted, gold))
        else:
            sample = list(range(min(VAL_SAMPLE, len(self.val_lengths))))
            hyps = self._greedy(sample)
            scores.update(task_scores(self.task, hyps, [self.data.val[i].tgt for i in sample]))
        return scores

    def _greedy(self, sample: list[int]) -> list[str]:
        from attn.model.decoding.search import GenerationOptions, generate

        options = GenerationOptions(beam=1)
        outputs: list[str] = [""] * len(sample)
        lengths = [self.val_src.lengths[i] for i in sample]
        for batch in _token_batches(lengths, self.settings.batch_tokens, None):
            index = [sample[b] for b in batch]
            src = self.val_src.batch(index, self.config.pad_id).to(self.device)
            with self._autocast():
                hyps = generate(self.model, src, src != self.config.pad_id, options)
            texts = self.tokenizer.decode([h[0].tokens for h in hyps])
            for b, text in zip(batch, texts, strict=True):
                outputs[b] = text
        return outputs

    # --- checkpoints ---------------------------------------------------------------------

    def _state(self, rngs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """What resuming needs; `rngs`: every rank's random generators, in rank order."""
        state: dict[str, Any] = {
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "elapsed": self.elapsed,
            "best_value": self.best_value,
            "best_step": self.best_step,
            "bad_validations": self.bad_validations,
            "validated_step": self.validated_step,
            "batch_seed": self.settings.seed,
            "world_size": self.dist.world,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else {},
            "rng_ranks": rngs or [rng_state()],
        }
        return state

    def _restore(self) -> None:
        if self.dist.main:
            remove_stale_temp_files(self.dir)  # left by a run killed inside a write
        state = load_last(self.dir, self.model, self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:
            if "lr_scale" in group:  # the bag's peak stays NGRAM_LR under a new --lr
                group["lr_scale"] = NGRAM_LR / self.settings.lr
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        for name in (
            "step",
            "epoch",
            "position",
            "elapsed",
            "best_value",
            "best_step",
            "bad_validations",
            "validated_step",
        ):
            setattr(self, name, state[name])
        if state["batch_seed"] != self.settings.seed:
            raise TrainError(f"seed is fixed when resuming (the run used {state['batch_seed']})")
        # "rng": the one state that checkpoints written before "rng_ranks" hold.
        ranks = state.get("rng_ranks") or [state["rng"]]
        if self.dist.world == state["world_size"] == len(ranks):
            set_rng_state(ranks[self.dist.rank])  # each rank's own dropout stream goes on
        else:
            # Another number of processes: fresh, seeded streams.
            torch.manual_seed(self.settings.seed + self.dist.rank + self.step)
        if self.dist.main:
            self._truncate_metrics()
            old = [d.get("sha256") for d in self.saved_meta.get("data", {}).get("train", [])]
            if old and old != [d["sha256"] for d in self.data_digests]:
                self.emit(
                    {
                        "event": "warning",
                        "message": "the training data changed since this run began",
                    }
                )
            self._write_config()
        self.dist.barrier()

    def _write_initial(self) -> None:
        """The first checkpoint: the directory is a loadable (untrained) model from here on."""
        save_weights(self.model, self.dir / WEIGHTS)
        save_last(self.dir, self.model, self._state())
        self._write_config()

    def _write_config(self) -> None:
        meta = {
            "train": self.settings.to_dict(),
            "data": {
                "train": self.data_digests,
                "val": [str(Path(p).resolve()) for p in self.data.val_files],
                "val_from_train": self.data.val_from_train,
            },
            "best": {"step": self.best_step, "metric": self.metric, "value": self.best_value},
        }
        save_model_config(self.dir, self.config, **meta)

    def _append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.dir / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _truncate_metrics(self) -> None:
        """Drop validations logged after the checkpoint we resume from: they will be redone."""
        path = self.dir / METRICS
        raw = path.read_text(encoding="utf-8") if path.is_file() else ""
        records = read_metrics(self.dir)
        kept = [r for r in records if r.get("step", 0) <= self.step]
        # A line cut short by a kill goes too: the next record would be appended onto it.
        if len(kept) != len(raw.splitlines()) or (raw and not raw.endswith("\n")):
            text = "".join(json.dumps(r) + "\n" for r in kept)
            atomic_write_bytes(self.dir / METRICS, text.encode())

    def _start_event(self, data: Any) -> Event:
        s = self.settings
        return {
            "event": "start",
            "task": self.task,
            "model_dir": str(self.dir),
            "device": str(self.device),
            "world_size": self.dist.world,
            "threads": torch.get_num_threads(),
            "preset": s.preset,
            "parameters": count_parameters(self.model),
            "vocab_size": self.config.vocab_size,
            "train_examples": len(data.train),
            "val_examples": len(data.val),
            "demo": s.is_demo,
            "resumed_from": self.step if self.resume else None,
            "precision": str(self.autocast_dtype or torch.float32).removeprefix("torch."),
            "settings": s.to_dict(),
        }

    def _finish(self, stopped: str) -> TrainResult:
        if self.dist.main:
            try:
                write_plot(self.dir)
            except Exception as e:  # a plot must never cost the trained model
                logger.warning("could not draw %s: %s", PLOT, e)
        example = self.data.val[0].src if self.data.val else self.data.train[0].src
        return TrainResult(
            model_dir=self.dir,
            task=self.task,
            step=self.step,
            epoch=self.epoch_float(getattr(self, "n_batches", 1)),
            elapsed=self.elapsed,
            stopped=stopped,
            metric=self.metric,
            best_value=self.best_value,
            best_step=self.best_step,
            scores=self.scores,
            example=example,
        )


def _no_buffer_sync() -> dict[str, bool]:
    """DDP arguments that skip syncing buffers every forward: the only buffer (sinusoidal
    positions) is constant. Newer torch renamed the argument."""
    import inspect

    params = inspect.signature(nn.parallel.DistributedDataParallel).parameters
    name = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return {name: False}


def _token_batches(lengths: Sequence[int], max_tokens: int, seed: int | None) -> list[list[int]]:
    from attn.data import token_batches

    if seed is None:
        return token_batches(lengths, max_tokens, shuffle=False)
    return token_batches(lengths, max_tokens, shuffle=True, seed=seed)


def _task_in(config_path: Path) -> str | None:
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))["model"]["task"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_metrics(model_dir: str | Path) -> list[dict[str, Any]]:
    """The validations logged in `metrics.jsonl` (a line cut short by a kill is skipped)."""
    path = Path(model_dir) / METRICS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


def write_plot(model_dir: str | Path) -> Path | None:
    """Draw `training.png` from `metrics.jsonl`: losses and the task metrics per step."""
    # `attn evaluate` appends its own lines (no step): they are not part of the curves.
    records = [r for r in read_metrics(model_dir) if not r.get("evaluate")]
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps = [r["step"] for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train_loss", "val_loss"):
        points = [
            (s, r[key]) for s, r in zip(steps, records, strict=True) if r.get(key) is not None
        ]
        if points:
            left.plot(*zip(*points, strict=True), marker="o", label=key.replace("_", " "))
    left.set_xlabel("step")
    left.set_ylabel("loss (per target piece)")
    left.legend()
    skip = {"step", "epoch", "time", "train_loss", "val_loss", "lr"}
    for key in sorted({k for r in records for k in r} - skip):
        points = [(s, r[key]) for s, r in zip(steps, records, strict=True) if key in r]
        right.plot(*zip(*points, strict=True), marker="o", label=key)
    right.set_xlabel("step")
    right.set_ylabel("score (%)")
    right.legend()
    fig.tight_layout()
    path = Path(model_dir) / PLOT
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path


__all__ = [
    "DATA_DEFAULTS",
    "DEMO_DEFAULTS",
    "TrainError",
    "TrainResult",
    "TrainSettings",
    "lr_at",
    "read_metrics",
    "resolve_settings",
    "train",
    "write_plot",
]
