"""Training settings: what decides a run, their defaults, and how the options a user gives
resolve against them.

`TrainSettings` is the one list of training settings. Each field holds its default and the
help line of its `attn train` flag (the CLI builds its flags from these fields), so a new
setting is one new field. Defaults depend on the data: the built-in demo corpus gets
`DEMO_DEFAULTS`, real data `DATA_DEFAULTS`; `help_text` shows both.

No torch here: the CLI imports this module to build `attn train --help`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from attn.model.nn.config import ModelConfig, preset
from attn.model.training.schedule import DECAYS

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
PRECISIONS = ("auto", "float32", "bfloat16")
# Fixed by the first run of a model directory: changing them on --resume is refused.
ARCHITECTURE_KEYS = ("preset", "overrides", "vocab_size", "init")
# Fixed by the --init model (its tokenizer and its weights' shapes).
INIT_KEYS = ("preset", "vocab_size")

# Config fields that come from the task, the tokenizer or the data, not from --set.
_NOT_OVERRIDABLE = {"task", "vocab_size", "labels", "pad_id", "bos_id", "eos_id"}


class TrainError(ValueError):
    """Training cannot start: bad settings, or a model directory in the way."""


def _setting(help: str, default: Any = None, shown: str | None = None) -> Any:
    """A settings field: its default, its help line (without the default), and how the help
    shows the default when not as the value itself (a duration: "10m", not 600.0)."""
    return field(default=default, metadata={"help": help, "shown": shown})


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a training run (saved as "train" in config.json).

    Each field's help says what it is. `data` None with no `train` files means the built-in
    demo corpus. `time_budget` counts seconds of training in total, resumed runs included.
    `init` names a trained model directory of the same task whose tokenizer, config and
    weights the run starts from (fine-tuning: `overrides` may change only what leaves the
    weights' shapes alone).
    """

    data: str | None = _setting(
        "Data directory (train.* and val.*/dev.*), one .jsonl/.tsv file, or the name of a "
        "dataset fetched with `attn data fetch`. Without it: the built-in demo corpus."
    )
    src: str | None = _setting("Source language (train.SRC).")
    tgt: str | None = _setting("Target language (train.TGT).")
    train: tuple[str, ...] = _setting(
        "Training file(s) instead of --data (repeat the flag).", default=()
    )
    val: tuple[str, ...] = _setting("Validation file(s) (repeat the flag).", default=())
    synthetic: str | None = _setting(
        "Translate: a directory of synthetic pairs (back-translations) named as the training "
        "files are (train.SRC, train.TGT), trained on beside them with the tag <BT> before "
        "each source; validation stays real."
    )
    text_field: str | None = _setting("Sentiment text column/field.")
    label_field: str | None = _setting("Sentiment label column/field.")
    src_field: str | None = _setting("JSONL source field.")
    tgt_field: str | None = _setting("JSONL target field.")
    preset: str = _setting("Model size.", default="small")
    overrides: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Override a model config field: --set d_model=384 (repeat)."},
    )
    vocab_size: int = _setting("SentencePiece pieces.", default=8000)
    init: str | None = _setting(
        "Fine-tune: start from this trained model's tokenizer, size and weights."
    )
    batch_tokens: int = _setting("Padded tokens per batch.", default=4096)
    accum: int = _setting("Batches per optimizer step.", default=1)
    lr: float = _setting("Peak learning rate.", default=1e-3)
    warmup: int = _setting("Warmup steps.", default=400)
    decay: str = _setting(
        "Learning rate after warmup: inverse-sqrt; linear (to zero at the end of the run, "
        "the first of --max-steps, --epochs and --time-budget); or cooldown (inverse-sqrt, "
        "then linear to zero over the last fifth of the run).",
        default="inverse-sqrt",
    )
    label_smoothing: float = _setting("Label smoothing.", default=0.1)
    ema: float = _setting(
        "Validate and keep the exponential moving average of the weights with this decay "
        "per step (e.g. 0.999); 0: the weights themselves.",
        default=0.0,
    )
    subword_alpha: float = _setting(
        "Subword regularization: train on SentencePiece segmentations sampled afresh for "
        "each batch, with this smoothing (0.1 samples widely, 1 is nearly the best one); 0: "
        "the one best segmentation. Validation and inference always use the best one.",
        default=0.0,
    )
    r_drop: float = _setting(
        "R-Drop: each batch runs through the model twice (two dropout masks), and this "
        "weight times the symmetric KL divergence between the two predictions joins the "
        "loss (e.g. 1-5); a step costs about twice as much. 0: off.",
        default=0.0,
    )
    precision: str = _setting(
        "Arithmetic of the training step: auto (bfloat16 autocast on GPUs and on CPUs with "
        "AVX512-BF16 or AMX, except a tiny encoder-decoder on AMX; else float32), float32, or "
        "bfloat16. Weights stay float32.",
        default="auto",
    )
    max_steps: int | None = _setting("Stop after this many steps.")
    epochs: float | None = _setting("Stop after this many epochs.")
    time_budget: float | None = _setting(
        "Stop after this much training time: 90s, 20m, 1h30m or seconds."
    )
    val_every: int = _setting("Validate every N steps.", default=500)
    save_every: float = _setting(
        "Also write last/ (what --resume continues from) every this much time, so a crash "
        "or a kill loses at most that: 10m, 1h or seconds; 0: at validations only.",
        default=600.0,
        shown="10m",
    )
    patience: int | None = _setting("Stop after N validations without improvement.")
    keep_checkpoints: int = _setting(
        "Keep the weights of the last N validations in checkpoints/ (for attn average).",
        default=0,
    )
    average_last: int = _setting(
        "At the end, average the weights of the last N validations (checkpoints/ keeps "
        "them) and keep the average as the model when it validates better; 0: off.",
        default=0,
    )
    seed: int = _setting("Random seed.", default=0)
    dedup: bool = _setting(
        "Drop training pairs that repeat an earlier pair exactly (counted in the summary).",
        default=False,
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "train", tuple(str(p) for p in self.train))
        object.__setattr__(self, "val", tuple(str(p) for p in self.val))
        for name in ("vocab_size", "batch_tokens", "accum", "val_every"):
            _check_number(name, getattr(self, name), int, low=1)
        _check_number("warmup", self.warmup, int, low=0)
        _check_number("seed", self.seed, int, low=0)
        _check_number("keep_checkpoints", self.keep_checkpoints, int, low=0)
        _check_number("average_last", self.average_last, int, low=0)
        if self.average_last == 1:
            raise TrainError("average_last must be 0 (off) or at least 2, got 1")
        _check_number("save_every", self.save_every, float, low=0.0)
        _check_number("lr", self.lr, float, low=0.0, open_low=True)
        _check_number("label_smoothing", self.label_smoothing, float, low=0.0)
        _check_number("ema", self.ema, float, low=0.0)
        if self.ema >= 1:
            raise TrainError(f"ema must be below 1 (a decay such as 0.999), got {self.ema}")
        _check_number("subword_alpha", self.subword_alpha, float, low=0.0)
        _check_number("r_drop", self.r_drop, float, low=0.0)
        if self.decay not in DECAYS:
            raise TrainError(f"decay must be one of {', '.join(DECAYS)}, got {self.decay!r}")
        check_precision(self.precision)
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
    def kept_checkpoints(self) -> int:
        """How many step checkpoints the run keeps: those asked for, and those averaged."""
        return max(self.keep_checkpoints, self.average_last)

    @property
    def is_demo(self) -> bool:
        return self.data is None and not self.train

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["train"], data["val"] = list(self.train), list(self.val)
        return data


def check_precision(mode: str) -> None:
    """Raises TrainError unless `mode` is one of PRECISIONS."""
    if mode not in PRECISIONS:
        raise TrainError(f"precision must be one of {', '.join(PRECISIONS)}, got {mode!r}")


def _check_number(name: str, value: Any, kind: type, *, low: float, open_low: bool = False) -> None:
    ok_type = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
    if isinstance(value, bool) or not ok_type:
        raise TrainError(
            f"{name} must be {'a number' if kind is float else 'an integer'}, got {value!r}"
        )
    if value < low or (open_low and value == low):
        raise TrainError(f"{name} must be {'above' if open_low else 'at least'} {low}, got {value}")


def help_text(name: str) -> str:
    """The help line of setting `name`: what it is, then its defaults (demo corpus, data).

    E.g. "Warmup steps. Default: 100 on the demo corpus, 400 on data."
    """
    spec = {f.name: f for f in dataclasses.fields(TrainSettings)}[name]
    plain = None if spec.default is dataclasses.MISSING else spec.default
    demo, data = DEMO_DEFAULTS.get(name, plain), DATA_DEFAULTS.get(name, plain)
    if name == "vocab_size":
        demo = f"{min(DEMO_VOCAB.values())}-{max(DEMO_VOCAB.values())} (by task)"
    if demo in (None, ()) and data in (None, ()):
        return spec.metadata["help"]
    if demo == data:
        return f"{spec.metadata['help']} Default: {spec.metadata.get('shown') or _shown(demo)}."
    where = [(demo, "the demo corpus"), (data, "data")]
    defaults = ", ".join(f"{_shown(v)} on {corpus}" for v, corpus in where if v is not None)
    return f"{spec.metadata['help']} Default: {defaults}."


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def resolve_settings(
    options: Mapping[str, Any],
    saved: Mapping[str, Any] | None = None,
    task: str = "translate",
    init: Mapping[str, Any] | None = None,
    chosen: Mapping[str, Any] | None = None,
) -> TrainSettings:
    """Settings from the options the user gave, over the saved ones (resume) or the defaults.

    Defaults depend on the data: the demo corpus gets `DEMO_DEFAULTS` (and the `DEMO_VOCAB`
    of `task`), real data `DATA_DEFAULTS`. A stop criterion given explicitly replaces all
    default or saved ones. `init` holds the saved settings of the model that `init` names:
    its preset, vocabulary size and overrides are the new run's, under the user's overrides.
    `chosen` (a new run on real data, `attn.model.training.defaults`) replaces data defaults;
    its "overrides" lie under the user's.

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
        if chosen and not demo and init is None:
            base.update({k: v for k, v in chosen.items() if k != "overrides"})
            overrides = {**chosen.get("overrides", {}), **(options.get("overrides") or {})}
            options = {**options, "overrides": overrides}
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
