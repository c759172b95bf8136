"""Model configuration: a frozen dataclass, saved and loaded as `config.json`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attn.data.task_files import TASKS

ACTIVATIONS = ("gelu", "relu", "silu")
NORMS = ("pre", "post")
POSITIONS = ("interleaved", "split")
POOLINGS = ("mean", "max", "mean+max")
KEEPS = ("head", "head+tail")
NGRAM_SCALES = ("ratio", "none")
# Fields added after configs were first written, and the value a config without one meant.
_LEGACY = {"ngram_scale": "none"}
# config.json files written by this format version (or older) load; newer ones are refused.
FORMAT_VERSION = 1


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and task of one model.

    Args:
        task: "translate", "summarize" or "sentiment".
        vocab_size: size of the joint SentencePiece vocabulary (shared embeddings).
        d_model: width of the residual stream.
        n_heads: attention heads; must divide d_model.
        n_encoder_layers / n_decoder_layers: depth (the sentiment model has no decoder).
        d_ff: hidden width of the position-wise feed-forward network.
        dropout: dropout on embeddings, attention weights, residual branches.
        activation: "gelu", "relu" or "silu" (Marian's "swish") in the feed-forward network.
        max_length: the longest sequence (in pieces) the model accepts; longer input is truncated.
        labels: class names for sentiment, index = class id; empty for seq2seq.
        pooling: sentiment: how the encoder output becomes one vector for the classifier,
            "mean" or "max" over the pieces, or "mean+max" (both, concatenated).
        keep: which pieces of an input longer than max_length stay: "head" (the first ones)
            or "head+tail" (the first quarter and the last three quarters of the budget, for
            reviews whose verdict comes at the end).
        ngram_buckets: sentiment: 0, or the size of a bag of pieces and piece pairs (hashed)
            that a linear classifier reads beside the transformer; the model's answer is the
            mean of the two log-probabilities. Must exceed twice the vocabulary.
        ngram_order: the longest run of pieces in that bag: 2 (pieces and pairs) or 3 (and
            triples).
        ngram_scale: "ratio": the bag weighs each feature by its log-count ratio between the
            classes in the training data (NBSVM's scaling, Wang and Manning 2012), counted
            before training; "none": every feature alike (models trained before the ratio).
        pad_id / bos_id / eos_id: special ids of the tokenizer.
        norm: "pre" (LayerNorm before each sublayer, a final LayerNorm after each stack) or
            "post" (LayerNorm after each residual add, no final one: Marian's layers).
        positions: layout of the sinusoidal positions: "interleaved" (sine and cosine of
            each frequency side by side) or "split" (all sines, then all cosines: Marian's).
        scale_embeddings: multiply piece embeddings by sqrt(d_model) before adding positions.
        logits_bias: the output projection has a bias vector (Marian's final_logits_bias).
        decoder_start_id: the decoder's first input piece; None = bos_id (Marian starts
            from its padding id).
    """

    task: str = "translate"
    vocab_size: int = 8000
    d_model: int = 256
    n_heads: int = 4
    n_encoder_layers: int = 3
    n_decoder_layers: int = 3
    d_ff: int = 1024
    dropout: float = 0.1
    activation: str = "relu"
    max_length: int = 256
    labels: tuple[str, ...] = field(default_factory=tuple)
    pooling: str = "mean"
    keep: str = "head"
    ngram_buckets: int = 0
    ngram_order: int = 2
    ngram_scale: str = "ratio"
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3
    norm: str = "pre"
    positions: str = "interleaved"
    scale_embeddings: bool = True
    logits_bias: bool = False
    decoder_start_id: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.labels, (list, tuple)):
            raise ConfigError(f"labels must be a list of strings, got {self.labels!r}")
        object.__setattr__(self, "labels", tuple(self.labels))
        self.validate()

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def start_id(self) -> int:
        """The decoder's first input piece: `decoder_start_id`, or BOS without one."""
        return self.bos_id if self.decoder_start_id is None else self.decoder_start_id

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def validate(self) -> None:
        """Check types and ranges so that an absurd value fails here, not as a huge allocation.

        Raises:
            ConfigError: naming the field and the bad value.
        """
        _check_choice("task", self.task, TASKS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_choice("keep", self.keep, KEEPS)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("positions", self.positions, POSITIONS)
        _check_choice("ngram_scale", self.ngram_scale, NGRAM_SCALES)
        for name in ("scale_embeddings", "logits_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        _check_int("vocab_size", self.vocab_size, 8, 1_000_000)
        _check_int("d_model", self.d_model, 8, 8192)
        _check_int("n_heads", self.n_heads, 1, 128)
        _check_int("n_encoder_layers", self.n_encoder_layers, 1, 48)
        _check_int("n_decoder_layers", self.n_decoder_layers, 0, 48)
        _check_int("d_ff", self.d_ff, 8, 65536)
        _check_int("max_length", self.max_length, 8, 16384)
        _check_int("ngram_buckets", self.ngram_buckets, 0, 1 << 24)
        if self.ngram_buckets and self.ngram_buckets < 2 * self.vocab_size:
            raise ConfigError(
                f"ngram_buckets must be 0 or at least twice vocab_size ({2 * self.vocab_size}),"
                f" got {self.ngram_buckets}"
            )
        _check_int("ngram_order", self.ngram_order, 2, 3)
        if self.ngram_buckets and self.task != "sentiment":
            raise ConfigError(f"ngram_buckets is for sentiment models, not {self.task}")
        for name in ("pad_id", "bos_id", "eos_id"):
            _check_int(name, getattr(self, name), 0, self.vocab_size - 1)
        if self.decoder_start_id is not None:
            _check_int("decoder_start_id", self.decoder_start_id, 0, self.vocab_size - 1)
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model must be divisible by n_heads, got {self.d_model} and {self.n_heads}"
            )
        if self.task == "sentiment":
            if len(self.labels) < 2:
                raise ConfigError(f"a sentiment model needs at least 2 labels, got {self.labels!r}")
            if not all(isinstance(label, str) for label in self.labels):
                raise ConfigError(f"labels must be strings, got {self.labels!r}")
        elif self.n_decoder_layers < 1:
            raise ConfigError(f"a {self.task} model needs n_decoder_layers >= 1")

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["labels"] = list(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config from a dict, refusing unknown fields.

        Raises:
            ConfigError: unknown fields, wrong types or values out of range.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        try:
            return cls(**{**_LEGACY, **data})
        except TypeError as e:
            raise ConfigError(str(e)) from None


def preset(name: str) -> dict[str, Any]:
    """Architecture fields of a named preset: tiny, small or base."""
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "d_model": 128,
        "n_heads": 4,
        "n_encoder_layers": 2,
        "n_decoder_layers": 2,
        "d_ff": 512,
    },
    "small": {
        "d_model": 256,
        "n_heads": 4,
        "n_encoder_layers": 3,
        "n_decoder_layers": 3,
        "d_ff": 1024,
    },
    "base": {
        "d_model": 512,
        "n_heads": 8,
        "n_encoder_layers": 6,
        "n_decoder_layers": 6,
        "d_ff": 2048,
    },
}


def save_config(config: ModelConfig, path: str | Path, **extra: Any) -> None:
    """Write `config.json` atomically, with the attn version and format version."""
    from attn import __version__
    from attn.atomic import atomic_write_bytes

    data = {"format_version": FORMAT_VERSION, "attn_version": __version__, **extra}
    data["model"] = config.to_dict()
    atomic_write_bytes(Path(path), (json.dumps(data, indent=2) + "\n").encode())


def load_config(path: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """Read `config.json`: the model config and the remaining top-level entries.

    Raises:
        ConfigError: unreadable JSON, a newer format version, or invalid values.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or "model" not in data:
        raise ConfigError(f"{path}: not an attn config (no 'model' entry)")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ConfigError(
            f"{path}: written by a newer attn (format {version!r}, this attn reads "
            f"<= {FORMAT_VERSION}); upgrade attn"
        )
    try:
        config = ModelConfig.from_dict(data.pop("model"))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return config, data


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
