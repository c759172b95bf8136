"""The model directory's layout: the name of every file attn keeps in it, in one place.

```
config.json                        model config, training settings, data, attn version
tokenizer.model                    the SentencePiece model (models attn trained), or ...
source.spm, target.spm, vocab.json the source and target SentencePiece models over one
tokenizer_config.json                vocabulary, and its options (imported OPUS-MT models)
model.safetensors                  the best weights
shortlist.safetensors              the lexical shortlist (translation models)
metrics.jsonl, training.png        the validations (and `attn evaluate` runs), their curves
train.log                          tracebacks of runs that failed
last/model.safetensors             the latest weights and ...
last/trainer_state.pt              ... the trainer state, for --resume
prepared/                          the prepared training data, reused by the next run
checkpoints/step-000500.safetensors  step checkpoints (--keep-checkpoints), for `attn average`
model.before-average.safetensors   the trained best, kept by the first in-place average
```

Training, decoding, evaluation, averaging, export, `attn info` and `attn serve` ask
`ModelDir` for these paths instead of joining names of their own. Imports neither torch
nor the rest of attn, so the command line can look at a directory before loading torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.json"
TOKENIZER = "tokenizer.model"
# An imported OPUS-MT model's tokenizer, under the names its Hugging Face repository uses.
SOURCE_SPM = "source.spm"
TARGET_SPM = "target.spm"
VOCAB = "vocab.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
WEIGHTS = "model.safetensors"
SHORTLIST = "shortlist.safetensors"
METRICS = "metrics.jsonl"
PLOT = "training.png"
TRAIN_LOG = "train.log"
LAST = "last"
TRAINER_STATE = "trainer_state.pt"
PREPARED = "prepared"
CHECKPOINTS = "checkpoints"
# The weights a model directory held before its first in-place average (a later average
# keeps this file, so it always holds the trained best).
BACKUP = "model.before-average.safetensors"
# `last/` is replaced through these two (see model/training/state.py).
LAST_STAGING = ".last.partial"
LAST_OLD = ".last.old"
_STEP_FILE = re.compile(r"step-(\d+)\.safetensors")


@dataclass(frozen=True)
class ModelDir:
    """The paths of one model directory (nothing is read or created)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        """How the directory is named to others (`/health`, `attn_export.json`): its name,
        not its absolute path."""
        return self.path.resolve().name

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def tokenizer(self) -> Path:
        return self.path / TOKENIZER

    @property
    def source_spm(self) -> Path:
        return self.path / SOURCE_SPM

    @property
    def target_spm(self) -> Path:
        return self.path / TARGET_SPM

    @property
    def vocab(self) -> Path:
        return self.path / VOCAB

    @property
    def tokenizer_config(self) -> Path:
        return self.path / TOKENIZER_CONFIG

    def has_split_tokenizer(self) -> bool:
        """Whether the tokenizer here is an OPUS-MT one (source and target models over one
        vocabulary) rather than attn's one SentencePiece model."""
        return self.vocab.is_file()

    def tokenizer_files(self) -> tuple[Path, ...]:
        """The files that make up the tokenizer here: `tokenizer.model`, or an OPUS-MT
        model's `source.spm`, `target.spm`, `vocab.json` and `tokenizer_config.json`."""
        if self.has_split_tokenizer():
            return (self.source_spm, self.target_spm, self.vocab, self.tokenizer_config)
        return (self.tokenizer,)

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @property
    def shortlist(self) -> Path:
        return self.path / SHORTLIST

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def plot(self) -> Path:
        return self.path / PLOT

    @property
    def train_log(self) -> Path:
        return self.path / TRAIN_LOG

    @property
    def prepared(self) -> Path:
        return self.path / PREPARED

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def backup(self) -> Path:
        return self.path / BACKUP

    def is_model(self) -> bool:
        """Whether a model was saved here (config.json is written last, removed first)."""
        return self.config.is_file()

    def step_checkpoint(self, step: int) -> Path:
        """Where the weights of `step` go: `checkpoints/step-000500.safetensors`."""
        return self.checkpoints / f"step-{step:06d}.safetensors"

    def step_checkpoints(self) -> list[tuple[int, Path]]:
        """The step checkpoints kept here as (step, path), oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = []
        for path in self.checkpoints.iterdir():
            match = _STEP_FILE.fullmatch(path.name)
            if match and path.is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def last_candidates(self) -> tuple[Path, Path]:
        """Where the latest resumable checkpoint may be: `last/`, else `.last.old/` (left
        between the two renames that replace `last/`)."""
        return self.path / LAST, self.path / LAST_OLD

    def training_files(self) -> tuple[Path, ...]:
        """The files and directories a training run writes here (what --overwrite clears),
        config.json first so the directory never points at missing files."""
        return (
            self.config,
            self.weights,
            self.tokenizer,
            self.source_spm,
            self.target_spm,
            self.vocab,
            self.tokenizer_config,
            self.shortlist,
            self.metrics,
            self.plot,
            self.backup,
            self.checkpoints,
            self.path / LAST,
            self.path / LAST_STAGING,
            self.path / LAST_OLD,
        )
