"""SentencePiece tokenizer: training, loading, batch encode/decode with fixed special ids.

One joint vocabulary serves source and target. Ids 0-3 are reserved (pad, unk, bos, eos);
byte fallback means any Unicode text encodes without unknown pieces, so
``decode(encode(s)) == normalize(s)`` for every string.
"""

from __future__ import annotations

import io
import logging
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sentencepiece as spm

from attn.atomic import atomic_write_bytes

if TYPE_CHECKING:
    import numpy as np
    import torch

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

# 256 byte pieces and the 4 special ids are always in the vocabulary; below this size
# almost nothing would be left for learned pieces.
MIN_VOCAB_SIZE = 300

# Fixed rather than os.cpu_count(): the thread count is stored in the model file, and a
# model trained twice from the same data must be byte-identical on any machine.
_TRAIN_THREADS = 4
# Batches of at least this many texts are encoded on a thread pool (see `Tokenizer.encode`).
_THREADED_TEXTS = 256

_VOCAB_TOO_HIGH = re.compile(r"Vocabulary size.*too high.*<= ?(\d+)", re.DOTALL)

logger = logging.getLogger(__name__)


class TokenizerError(ValueError):
    """A tokenizer model file is missing, corrupt, or was not written by attn."""


@dataclass
class EncodedBatch:
    """A padded batch of token ids.

    Attributes:
        ids: LongTensor (B, T), padded with ``PAD_ID``.
        mask: BoolTensor (B, T), True where there is a real token.
        truncated: one flag per text, True when it was cut to ``max_length``.
    """

    ids: torch.Tensor
    mask: torch.Tensor
    truncated: list[bool]


def _sample(texts: Iterable[str], max_sentences: int | None, seed: int) -> list[str]:
    """Keep at most ``max_sentences`` non-empty texts, by seeded reservoir sampling.

    Sampling here (rather than by sentencepiece) keeps training deterministic for a seed and
    lets a retry with a smaller vocabulary reuse the same sentences.
    """
    rng = random.Random(seed)
    kept: list[str] = []
    seen = 0
    for text in texts:
        if not text.strip():
            continue
        seen += 1
        if max_sentences is None or len(kept) < max_sentences:
            kept.append(text)
        else:
            j = rng.randrange(seen)
            if j < max_sentences:
                kept[j] = text
    return kept


def _train_proto(
    sentences: list[str], vocab_size: int, model_type: str, symbols: Sequence[str] = ()
) -> bytes:
    """Run the SentencePiece trainer once and return the serialized model."""
    model = io.BytesIO()
    extra = {"user_defined_symbols": list(symbols)} if symbols else {}
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=0.9995,
        byte_fallback=True,
        normalization_rule_name="nmt_nfkc",
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        # Reviews and dialogues are long; the default (4192 bytes) silently drops them.
        max_sentence_length=1 << 16,
        num_threads=_TRAIN_THREADS,
        minloglevel=2,
        **extra,
    )
    return model.getvalue()


class BatchEncoder:
    """`encode_batch` for a tokenizer that has `encode` and `pad_id` (both tokenizers)."""

    pad_id: int

    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        max_length: int | None = None,
        add_bos: bool = False,
        add_eos: bool = True,
        device: str | torch.device | None = None,
        keep: str = "head",
    ) -> EncodedBatch:
        """Encode texts into one batch padded with `pad_id`; see :meth:`encode`.

        Returns:
            ``EncodedBatch`` with ``ids`` (B, T) and ``mask`` (B, T), T the longest sequence.
        """
        ids, truncated = self.encode(
            texts, max_length=max_length, add_bos=add_bos, add_eos=add_eos, keep=keep
        )
        return collate(ids, truncated, self.pad_id, device)


class Tokenizer(BatchEncoder):
    """A SentencePiece model with attn's special ids (pad 0, unk 1, bos 2, eos 3).

    Create one with :meth:`train` or :meth:`load`.
    """

    pad_id, unk_id = PAD_ID, UNK_ID

    def __init__(self, model_proto: bytes, *, source: str = "<memory>") -> None:
        """Wrap a serialized SentencePiece model.

        Raises:
            TokenizerError: ``model_proto`` is not a SentencePiece model or its special ids
                are not attn's.
        """
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except RuntimeError as e:
            raise TokenizerError(f"{source}: not a valid SentencePiece model ({e})") from e
        found = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if found != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise TokenizerError(
                f"{source}: special ids pad/unk/bos/eos are {found}, expected "
                f"{(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}; train the tokenizer with attn"
            )
        self._proto = model_proto

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        path: str | Path,
        vocab_size: int,
        *,
        model_type: str = "unigram",
        seed: int = 0,
        max_sentences: int | None = 2_000_000,
        symbols: Sequence[str] = (),
    ) -> Tokenizer:
        """Train a tokenizer on ``texts`` and write it atomically to ``path``.

        Deterministic: the same texts, arguments and seed give a byte-identical model file.
        When the text is too small for ``vocab_size``, trains the largest vocabulary it
        supports instead and logs a warning.

        Args:
            texts: training sentences (any iterable; read once, empty ones skipped).
            path: where the ``.model`` file goes; parent directories are created.
            vocab_size: wanted vocabulary size, at least ``MIN_VOCAB_SIZE``.
            model_type: ``"unigram"`` or ``"bpe"``.
            seed: seeds the sampling of ``max_sentences`` sentences from a larger corpus.
            max_sentences: at most this many sentences are used; None uses all.
            symbols: texts that are always one piece wherever they occur (SentencePiece's
                user-defined symbols), e.g. the tag of synthetic sources.

        Raises:
            ValueError: ``vocab_size`` below ``MIN_VOCAB_SIZE``, unknown ``model_type``,
                or no usable text.
            TokenizerError: the text supports fewer than ``MIN_VOCAB_SIZE`` pieces.
        """
        if vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(
                f"vocab_size must be at least {MIN_VOCAB_SIZE} (256 byte pieces + 4 special "
                f"ids + learned pieces), got {vocab_size}"
            )
        if model_type not in ("unigram", "bpe"):
            raise ValueError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}")
        if max_sentences is not None and max_sentences < 1:
            raise ValueError(f"max_sentences must be positive or None, got {max_sentences}")
        sentences = _sample(texts, max_sentences, seed)
        if not sentences:
            raise ValueError("cannot train a tokenizer: no non-empty training text")
        size = vocab_size
        while True:
            try:
                proto = _train_proto(sentences, size, model_type, symbols)
                break
            except RuntimeError as e:
                match = _VOCAB_TOO_HIGH.search(str(e))
                if match is None or int(match.group(1)) >= size:
                    raise
                size = int(match.group(1))
                if size < MIN_VOCAB_SIZE:
                    raise TokenizerError(
                        f"not enough training text for a tokenizer: it supports only {size} "
                        f"pieces, the minimum is {MIN_VOCAB_SIZE}; give more text"
                    ) from e
                logger.warning(
                    "training text is too small for a vocabulary of %d; using %d instead",
                    vocab_size,
                    size,
                )
        path = Path(path)
        atomic_write_bytes(path, proto)
        return cls(proto, source=str(path))

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load a model file written by :meth:`train`.

        Raises:
            TokenizerError: the file is missing, unreadable, corrupt, or not attn's.
        """
        try:
            proto = Path(path).read_bytes()
        except FileNotFoundError as e:
            raise TokenizerError(f"{path}: no such tokenizer model file") from e
        except IsADirectoryError as e:
            raise TokenizerError(f"{path}: is a directory, not a tokenizer model file") from e
        except OSError as e:
            raise TokenizerError(f"{path}: cannot read tokenizer model ({e.strerror})") from e
        return cls(proto, source=str(path))

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its model (for the processes that encode a corpus).
        return (type(self), (self._proto,))

    @property
    def target(self) -> Tokenizer:
        """The tokenizer of target texts: this one (one joint model for both sides)."""
        return self

    @property
    def language_tokens(self) -> tuple[str, ...]:
        """The target-language tokens (``>>fra<<``) a model chooses its output by: none."""
        return ()

    @property
    def model_proto(self) -> bytes:
        """The serialized SentencePiece model (what `save` writes)."""
        return self._proto

    @property
    def vocab_size(self) -> int:
        """Number of ids, special and byte pieces included."""
        return self._sp.get_piece_size()

    def normalize(self, text: str) -> str:
        """Apply the tokenizer's normalization (``nmt_nfkc``, whitespace collapsed).

        This is exactly what ``decode(encode(text))`` gives back.
        """
        normalized = self._sp.normalize(text)
        # SentencePiece marks spaces with U+2581 and adds one at the start (dummy prefix).
        return normalized.removeprefix("\u2581").replace("\u2581", " ")

    def encode(
        self,
        texts: Sequence[str],
        *,
        max_length: int | None = None,
        add_bos: bool = False,
        add_eos: bool = True,
        keep: str = "head",
    ) -> tuple[list[list[int]], list[bool]]:
        """Encode texts to ids.

        Args:
            texts: the texts (a list, not a single string).
            max_length: keep at most this many ids per text, BOS/EOS included; the
                first ids are kept and EOS stays last when ``add_eos``.
            add_bos: start each sequence with ``BOS_ID``.
            add_eos: end each sequence with ``EOS_ID``.
            keep: what a cut keeps: "head" (the first ids) or "head+tail" (the first quarter
                of the room and the last ids for the rest).

        Returns:
            ids per text, and per text whether it was truncated.

        Raises:
            ValueError: ``texts`` is a single string, or ``max_length`` leaves no room for
                a token besides BOS/EOS.
        """
        check_encode_args(texts, max_length, add_bos, add_eos)
        texts = list(texts)
        # SentencePiece's batch calls start a thread pool each time (about a millisecond,
        # more on a busy machine): worth it for many texts only.
        threads = -1 if len(texts) >= _THREADED_TEXTS else 1
        bodies = self._sp.encode(texts, out_type=int, num_threads=threads)
        return frame(bodies, max_length, [BOS_ID] * add_bos, [EOS_ID] * add_eos, keep)

    def resample(
        self,
        rows: Sequence[Sequence[int]],
        *,
        alpha: float,
        seed: int,
        max_length: int,
        keep: str = "head",
    ) -> list[list[int]]:
        """Encoded texts (each ending in EOS, as `encode` gives them) segmented anew, each in a
        segmentation sampled from the model's distribution over all of them, smoothed by
        `alpha` (subword regularization, Kudo 2018: 0.1 samples widely, 1 stays near the best
        one), with EOS and cut to `max_length` as `keep` says. The same `seed` draws the same
        segmentations. A row holding the unknown id keeps its ids (its text is lost).
        """
        bodies = [list(r[:-1]) if len(r) and r[-1] == EOS_ID else list(r) for r in rows]
        texts = self._sp.decode(bodies, num_threads=1)
        # The seed applies to the generator of the calling thread: encode in this thread.
        spm.set_random_generator_seed(seed)
        sampled = self._sp.encode(
            texts, out_type=int, enable_sampling=True, alpha=alpha, nbest_size=-1, num_threads=1
        )
        new = frame(sampled, max_length, [], [EOS_ID], keep)[0]
        return [list(old) if UNK_ID in old else n for old, n in zip(rows, new, strict=True)]

    def encode_flat(
        self, texts: Sequence[str], *, max_length: int, keep: str = "head"
    ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """Encode texts as `encode` does (EOS added, cut to `max_length`), into flat arrays:
        for encoding a corpus, where per-text lists would cost more than the encoding.

        Returns:
            the ids of every text one after the other (int32), the length of each (int32),
            how many texts were cut, and the length of each before the cut (int32).

        Raises:
            ValueError: ``max_length`` below 2.
        """
        import numpy as np

        if max_length < 2:
            raise ValueError(f"max_length must be at least 2 with add_eos=True, got {max_length}")
        ids = self._sp.encode(list(texts), out_type=int, add_eos=True)
        lengths = np.fromiter(map(len, ids), dtype=np.int32, count=len(ids))
        uncut = lengths.copy()
        long = np.flatnonzero(lengths > max_length)
        if len(long):
            cut, _ = self.encode([texts[i] for i in long], max_length=max_length, keep=keep)
            for i, seq in zip(long.tolist(), cut, strict=True):
                ids[i] = seq
            lengths[long] = max_length
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
        return flat, lengths, len(long), uncut

    def decode(self, ids: Sequence[Sequence[int]] | Any) -> list[str]:
        """Decode id sequences (lists or a (B, T) tensor) to text.

        Pad and BOS ids are dropped; each sequence ends at its first EOS.

        Raises:
            ValueError: an id is outside ``[0, vocab_size)``.
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        size = self.vocab_size
        cleaned: list[list[int]] = []
        for seq in ids:
            kept: list[int] = []
            for i in seq:
                if i == EOS_ID:
                    break
                if not 0 <= i < size:
                    raise ValueError(f"token id {i} is outside the vocabulary (size {size})")
                if i not in (PAD_ID, BOS_ID):
                    kept.append(i)
            cleaned.append(kept)
        return self._sp.decode(cleaned, num_threads=1)  # a thread pool costs more (`encode`)

    def pieces(self, text: str) -> list[str]:
        """The SentencePiece pieces of ``text`` (``▁`` marks a preceding space), no BOS/EOS."""
        return self._sp.encode(text, out_type=str)

    def has_piece(self, piece: str) -> bool:
        """Whether ``piece`` is one piece of the vocabulary (e.g. a user-defined symbol)."""
        return self._sp.piece_to_id(piece) != UNK_ID or piece == self._sp.id_to_piece(UNK_ID)

    def id_to_piece(self, i: int) -> str:
        """The piece for id ``i`` (``<pad>``, ``<s>``, ``</s>``, ``<0xE2>``, ``▁the``...).

        Raises:
            ValueError: ``i`` is outside ``[0, vocab_size)``.
        """
        if not 0 <= i < self.vocab_size:
            raise ValueError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
        return self._sp.id_to_piece(i)

    def save(self, path: str | Path) -> None:
        """Write the model atomically to ``path`` (e.g. into a new model directory)."""
        atomic_write_bytes(Path(path), self._proto)


def check_encode_args(
    texts: Sequence[str], max_length: int | None, add_bos: bool, add_eos: bool
) -> None:
    """The checks of `Tokenizer.encode`'s arguments (every tokenizer's).

    Raises:
        ValueError: ``texts`` is a single string, or ``max_length`` leaves no room for a
            token besides BOS/EOS.
    """
    if isinstance(texts, str):
        raise ValueError("encode takes a sequence of texts, not a single string")
    n_special = int(add_bos) + int(add_eos)
    if max_length is not None and max_length < n_special + 1:
        raise ValueError(
            f"max_length must be at least {n_special + 1} with add_bos={add_bos} "
            f"and add_eos={add_eos}, got {max_length}"
        )


def frame(
    bodies: Iterable[list[int]],
    max_length: int | None,
    start: list[int],
    end: list[int],
    keep: str,
) -> tuple[list[list[int]], list[bool]]:
    """Each text's ids between `start` and `end` (BOS, EOS: empty lists for none), its body
    cut so that the whole fits `max_length` as `keep` says ("head", "head+tail"); and per
    text whether it was cut."""
    n_special = len(start) + len(end)
    ids: list[list[int]] = []
    truncated: list[bool] = []
    for body in bodies:
        cut = max_length is not None and len(body) + n_special > max_length
        if cut:
            room = max_length - n_special
            if keep == "head+tail" and room >= 2:
                head = room // 4
                body = body[:head] + body[len(body) - (room - head) :]
            else:
                body = body[:room]
        ids.append(start + body + end)
        truncated.append(cut)
    return ids, truncated


def collate(
    ids: list[list[int]],
    truncated: list[bool],
    pad_id: int,
    device: str | torch.device | None,
) -> EncodedBatch:
    """One padded batch of id sequences (padded with `pad_id`), its mask and cut flags."""
    import torch

    width = max((len(seq) for seq in ids), default=0)
    batch = torch.full((len(ids), width), pad_id, dtype=torch.long)  # (B, T)
    for row, seq in enumerate(ids):
        batch[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    lengths = torch.tensor([len(seq) for seq in ids], dtype=torch.long)  # (B,)
    mask = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    return EncodedBatch(ids=batch.to(device), mask=mask.to(device), truncated=truncated)
