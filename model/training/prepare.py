"""Everything before the first step: read the data, clear the directory for --overwrite,
train (or copy, or load) the tokenizer, choose the model config, encode the data; and the
lexical shortlist of a translation model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from attn.model.decoding.shortlist import SHORTLIST, Shortlist
from attn.model.nn.config import ConfigError, ModelConfig, preset
from attn.model.storage.checkpoint import TOKENIZER
from attn.model.training.corpus import Split
from attn.model.training.distributed import Dist
from attn.model.training.finetune import InitModel
from attn.model.training.model_dir import clear_model_dir
from attn.model.training.settings import TrainError, TrainSettings

Event = dict[str, Any]

# ModelConfig's smallest vocabulary: every check that depends on the size passes with a larger
# one whenever it passes with this (ngram_buckets >= 2 x vocab_size, special ids < vocab_size).
_SMALLEST_VOCAB = 8

# (source piece, target piece) keys counted per batch while building the shortlist (memory:
# 8 bytes and a few masks each).
_SHORTLIST_KEYS = 1 << 22


@dataclass
class Prepared:
    """What training needs from the data: the examples, the tokenizer, the model config and
    the encoded splits."""

    data: Any  # attn.data.TaskData
    tokenizer: Any  # attn.tokenizer.Tokenizer
    config: ModelConfig
    train: Split
    val: Split


class Preparation:
    """The setup of one run in `model_dir`, on every rank (rank 0 writes the files).

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

    @property
    def resume(self) -> bool:
        return self.saved_config is not None

    def run(self) -> Prepared:
        """Read, check, tokenize and encode.

        Raises:
            TrainError: no validation examples, a bad model config, a tokenizer that cannot
                be trained or does not fit the model.
            attn.data.DataError: unreadable data or no examples.
        """
        self.emit({"event": "stage", "message": "reading data"})
        data = self._read_data()
        if not data.val:
            raise TrainError("no validation examples: give validation files or more training data")
        # A config that fails with the smallest vocabulary fails with any: say so before the
        # tokenizer is trained (minutes on a large corpus). The real size is checked below.
        self.model_config(_SMALLEST_VOCAB, data.labels)
        # Only read and checked data may replace a model (--overwrite): bad data keeps it.
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.dist.main and not self.resume:
            clear_model_dir(self.dir)
        self.dist.barrier()
        tokenizer = self._tokenizer(data)
        config = self.model_config(tokenizer.vocab_size, data.labels)
        if tokenizer.vocab_size != config.vocab_size:
            raise TrainError(
                f"{self.dir / TOKENIZER} has {tokenizer.vocab_size} pieces but the model "
                f"expects {config.vocab_size}; the directory is inconsistent"
            )
        self.emit({"event": "stage", "message": f"encoding {len(data.train)} training examples"})
        train = Split.encode(tokenizer, data.train, config)
        val = Split.encode(tokenizer, data.val, config)
        return Prepared(data, tokenizer, config, train, val)

    def model_config(self, vocab_size: int, labels: list[str] | None) -> ModelConfig:
        """The saved config (resume), the --init model's under the overrides, or the
        preset's under the overrides."""
        if self.saved_config is not None:
            return self.saved_config
        if self.init is not None:
            return self.init.model_config(self.settings.overrides, labels)
        s = self.settings
        fields = {**preset(s.preset), **s.overrides}
        try:
            return ModelConfig(
                task=self.task, vocab_size=vocab_size, labels=tuple(labels or ()), **fields
            )
        except (ConfigError, TypeError) as e:
            raise TrainError(f"bad model config: {e}") from None

    def _read_data(self) -> Any:
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
        """The model directory's tokenizer: kept (resume), copied (--init) or trained."""
        from attn.tokenizer import Tokenizer

        path = self.dir / TOKENIZER
        if self.resume:
            return Tokenizer.load(path)
        if self.init is not None:
            if self.dist.main:
                self.init.copy_tokenizer(path, self.emit)
            self.dist.barrier()
            try:
                return Tokenizer.load(path)
            except ValueError as e:
                raise TrainError(f"cannot start from {self.init.dir}: {e}") from None
        if self.dist.main:
            self._train_tokenizer(data, path)
        self.dist.barrier()
        return Tokenizer.load(path)

    def _train_tokenizer(self, data: Any, path: Path) -> None:
        from attn.tokenizer import Tokenizer

        texts = [ex.src for ex in data.train]
        if self.task != "sentiment":
            texts += [ex.tgt for ex in data.train]
        size = self.settings.vocab_size
        self.emit(
            {
                "event": "stage",
                "message": f"training the tokenizer ({size} pieces) on {len(texts)} texts",
            }
        )
        try:
            Tokenizer.train(texts, path, size, seed=self.settings.seed)
        except RuntimeError as e:
            # SentencePiece's own refusals (e.g. fewer pieces than distinct characters).
            reason = str(e).splitlines()[0].rpartition("] ")[2].partition(". ")[0]
            raise TrainError(
                f"cannot train a tokenizer of {size} pieces on this "
                f"text ({reason}); choose another --vocab-size"
            ) from None


def write_shortlist(
    model_dir: Path, train: Split, config: ModelConfig, emit: Callable[[Event], None]
) -> None:
    """The lexical shortlist decoding uses (attn.model.decoding.shortlist): it depends on the
    tokenizer and the training pairs only, so it is written once, before training."""
    emit({"event": "stage", "message": "building the lexical shortlist"})
    src, tgt = train.src, train.tgt
    assert tgt is not None

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
            yield src.batch(index, config.pad_id), tgt.batch(index, config.pad_id)
            start = end

    shortlist = Shortlist.build(
        batches(), config.vocab_size, eos_id=config.eos_id, skip=(config.pad_id, config.bos_id)
    )
    shortlist.save(model_dir / SHORTLIST)
