"""Defaults that fit the data: the settings a new run on real data gets for what the user
left out, chosen from the task, the size of the training text and the budget.

`choose_defaults` is a pure function of those (deterministic, no torch, no I/O); its values
come from the recipes' measured runs (docs/results.md), so that a user without a recipe gets
what the recipe for a corpus of that kind gets. Every option the user gives (flag, --config
or --set) wins over it; the choice is printed in one stderr line and saved in config.json
("defaults").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MB = 1 << 20
# Up to this much training text (about 500,000 sentence pairs) a corpus is "small": the
# recipes' regime, where the model sees it many times and dropout, label smoothing and
# subword sampling pay. Beyond it the plain data defaults (settings.DATA_DEFAULTS) stay.
SMALL_CORPUS = 64 * MB
# Below this budget the small translation preset does not get past its first epochs on two
# CPU cores; the tiny one learns more in the time.
SHORT_BUDGET = 8 * 60.0

# Up to this budget a summarization model is far from trained, learns a summary mostly from
# the input's beginning, and the recipe's max_length of 256 beats one chosen from the data
# (DialogSum, 27 minutes: 24.9 against 23.9 ROUGE-L with 576); beyond it, or with no
# budget, the data chooses (attn.model.training.lengths).
LONG_BUDGET = 60 * 60.0

# The recipes' settings, by task (recipes/*.toml: multi30k-en-de, dialogsum, imdb).
_SMALL_CORPUS: dict[str, dict[str, Any]] = {
    "translate": {
        "preset": "small",
        "vocab_size": 8000,
        "batch_tokens": 2048,
        "lr": 2.5e-3,
        "warmup": 600,
        "val_every": 300,
        "overrides": {"dropout": 0.1},
    },
    "summarize": {
        "preset": "tiny",
        "vocab_size": 8000,
        "batch_tokens": 4096,
        "lr": 2e-3,
        "warmup": 300,
        "val_every": 800,
        "overrides": {"dropout": 0.1, "max_length": 256},
    },
    "sentiment": {
        "preset": "tiny",
        "vocab_size": 8000,
        "batch_tokens": 4096,
        "lr": 2e-3,
        "warmup": 300,
        "val_every": 300,
        "patience": 10,
        "overrides": {
            "dropout": 0.1,
            "max_length": 512,
            "keep": "head+tail",
            "ngram_buckets": 2_097_152,
            "ngram_order": 3,
        },
    },
}
# Measured to help on its own at the recipes' budgets (docs/results.md, "Quality in the same
# minutes"): the moving average on Multi30k (+2.2 BLEU); on DialogSum it made no difference
# (27.6 against 27.6 ROUGE-L), nor on IMDB (90.50% against 90.54%), and on SST-2's
# fine-tuning it smoothed the validations to a lower best (84.98% against 85.89%).
_REGULARIZATION: dict[str, dict[str, Any]] = {
    "translate": {"ema": 0.995},
    "summarize": {},
    "sentiment": {},
}


@dataclass(frozen=True)
class Chosen:
    """The settings chosen (keys of `TrainSettings`; "overrides" holds model config fields)
    and why, in words."""

    values: dict[str, Any] = field(default_factory=dict)
    because: str = ""

    def line(self) -> str:
        """The one stderr line: what was chosen and why."""
        shown = [f"{k} {_shown(v)}" for k, v in self.values.items() if k != "overrides"]
        shown += [f"{k}={_shown(v)}" for k, v in self.values.get("overrides", {}).items()]
        return f"Defaults for {self.because}: {', '.join(shown)} (any option overrides them)"

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "because": self.because}


def choose_defaults(task: str, train_bytes: int, options: Mapping[str, Any]) -> Chosen:
    """The defaults of a new run of `task` on `train_bytes` of training text, for what
    `options` (the user's settings) leaves out. The budget is `options`' time_budget
    (seconds), if any.

    Returns an empty choice for a large corpus (the plain data defaults apply).
    """
    budget = options.get("time_budget")
    big = train_bytes >= MB // 10
    amount = f"{train_bytes / MB:.1f} MB" if big else f"{train_bytes / 1024:.0f} KB"
    size = f"{amount} of {task} training text"
    if train_bytes > SMALL_CORPUS:
        return Chosen({}, f"{size} (a large corpus)")
    values = {**_SMALL_CORPUS[task], **_REGULARIZATION[task]}
    because = f"{size} (a small corpus)"
    if budget is not None:
        because += f" and a {_duration(budget)} budget"
        if task == "translate" and budget < SHORT_BUDGET:
            values["preset"] = "tiny"
    if task == "summarize" and (budget is None or budget > LONG_BUDGET):
        # Time for the longer positions to pay: max_length is chosen from the data.
        values["overrides"] = {k: v for k, v in values["overrides"].items() if k != "max_length"}
    given = {k for k, v in options.items() if v is not None}
    chosen = {k: v for k, v in values.items() if k not in given and k != "overrides"}
    given_fields = options.get("overrides") or {}
    overrides = {k: v for k, v in values.get("overrides", {}).items() if k not in given_fields}
    if overrides:
        chosen["overrides"] = overrides
    return Chosen(chosen, because)


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:g} min" if minutes >= 1 else f"{seconds:g} s"


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
