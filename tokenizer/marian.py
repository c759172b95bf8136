"""The tokenizer of OPUS-MT (Marian) models: two SentencePiece models, one vocabulary.

Sources are segmented by `source.spm`, targets by `target.spm`, and the pieces of both map
to ids through one `vocab.json` (a piece it lacks is `<unk>`); sources end with `</s>`.
The special ids are those of the vocabulary (`</s>`, `<unk>`, `<pad>`), not attn's.
Encoding and decoding follow transformers' `MarianTokenizer` (shared vocabulary):

- the special tokens written out in a text (`</s>`, `<unk>`, `<pad>`) are those tokens;
- a text that starts with a language token (`>>fra<<`) has it as its first piece;
- decoding drops the special ids, joins the pieces through SentencePiece, turns the
  remaining `▁` into spaces and strips the ends (with a shared vocabulary, transformers
  joins them with the source model; both models join pieces alike);
- no text normalization besides SentencePiece's own (transformers' Moses punctuation
  normalizer is not applied when encoding).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sentencepiece as spm

from attn.tokenizer.sentencepiece import (
    BatchEncoder,
    TokenizerError,
    check_encode_args,
    frame,
)

if TYPE_CHECKING:
    import numpy as np

EOS, UNK, PAD = "</s>", "<unk>", "<pad>"
_LANGUAGE = re.compile(r">>[^<>\s]+<<")
# transformers' clean_up_tokenization: spaces before punctuation and English clitics.
_CLEANUPS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def _processor(proto: bytes, source: str) -> spm.SentencePieceProcessor:
    try:
        return spm.SentencePieceProcessor(model_proto=proto)
    except RuntimeError as e:
        raise TokenizerError(f"{source}: not a valid SentencePiece model ({e})") from None


def read_vocab(data: bytes, source: str) -> dict[str, int]:
    """A `vocab.json` (piece -> id), checked: ids 0..n-1 each once, the special pieces in it.

    Raises:
        TokenizerError: not a JSON object of piece -> id, ids not 0..n-1, or a special
            piece missing.
    """
    try:
        vocab = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerError(f"{source}: not a JSON vocabulary ({e})") from None
    if not isinstance(vocab, dict) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in vocab.values()
    ):
        raise TokenizerError(f"{source}: not a JSON object of piece -> id")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise TokenizerError(f"{source}: the ids are not 0..{len(vocab) - 1}, each once")
    missing = [p for p in (EOS, UNK, PAD) if p not in vocab]
    if missing:
        raise TokenizerError(f"{source}: the vocabulary has no {', '.join(missing)}")
    return vocab


class MarianTokenizer(BatchEncoder):
    """Source and target SentencePiece models over one vocabulary (OPUS-MT's tokenizer).

    Offers what attn's `Tokenizer` offers to training and inference (`encode`,
    `encode_flat`, `encode_batch`, `decode`, `id_to_piece`, `has_piece`, `vocab_size`), and
    `target`, the same tokenizer encoding target texts. Create one with :meth:`load`.
    """

    def __init__(
        self,
        source_proto: bytes,
        target_proto: bytes,
        vocab: Mapping[str, int],
        *,
        clean_up_spaces: bool = False,
        side: str = "source",
        language: str | None = None,
        source: str = "<memory>",
    ) -> None:
        """Wrap the two serialized SentencePiece models and the checked vocabulary.

        Args:
            clean_up_spaces: decoding removes spaces before punctuation as transformers'
                `clean_up_tokenization_spaces` does.
            side: "source" or "target": which model `encode` segments with.
            language: a language token (`>>fra<<`) put before every source text.

        Raises:
            TokenizerError: a model is not SentencePiece's.
        """
        self._protos = (source_proto, target_proto)
        self._source_sp = _processor(source_proto, f"{source} (source)")
        self._target_sp = _processor(target_proto, f"{source} (target)")
        self._vocab = dict(vocab)
        self._pieces = sorted(self._vocab, key=self._vocab.__getitem__)
        self.clean_up_spaces, self.side, self.language = clean_up_spaces, side, language
        self.eos_id, self.unk_id, self.pad_id = (self._vocab[p] for p in (EOS, UNK, PAD))
        self._specials = re.compile("(" + "|".join(re.escape(p) for p in (EOS, UNK, PAD)) + ")")
        self._source = source

    @classmethod
    def load(
        cls, source_spm: Path, target_spm: Path, vocab: Path, *, clean_up_spaces: bool = False
    ) -> MarianTokenizer:
        """Load the three files (those of an OPUS-MT model directory).

        Raises:
            TokenizerError: a file is missing, unreadable or not what it should be.
        """
        data = []
        for path in (source_spm, target_spm, vocab):
            try:
                data.append(Path(path).read_bytes())
            except FileNotFoundError:
                raise TokenizerError(f"{path}: no such tokenizer file") from None
            except OSError as e:
                raise TokenizerError(f"{path}: cannot read the tokenizer ({e.strerror})") from None
        return cls(
            data[0],
            data[1],
            read_vocab(data[2], str(vocab)),
            clean_up_spaces=clean_up_spaces,
            source=str(Path(vocab).parent),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its models and vocabulary (for the processes that encode a corpus).
        options = {
            "clean_up_spaces": self.clean_up_spaces,
            "side": self.side,
            "language": self.language,
            "source": self._source,
        }
        return (_rebuild, (*self._protos, self._vocab, options))

    def _with(self, **changes: Any) -> MarianTokenizer:
        other = object.__new__(MarianTokenizer)
        other.__dict__.update(self.__dict__, **changes)
        return other

    @property
    def target(self) -> MarianTokenizer:
        """This tokenizer encoding target texts (with `target.spm`)."""
        return self._with(side="target", language=None)

    @property
    def language_tokens(self) -> tuple[str, ...]:
        """The target-language tokens of the vocabulary (`>>fra<<`, ...): a model that has
        them translates into the language its source starts with."""
        return tuple(p for p in self._pieces if _LANGUAGE.fullmatch(p))

    def for_language(self, language: str | None) -> MarianTokenizer:
        """This tokenizer putting the token of `language` (`fra` or `>>fra<<`) before each
        source text; None: none.

        Raises:
            ValueError: the vocabulary has no such token (the message lists those it has).
        """
        if language is None:
            return self._with(language=None)
        token = language if _LANGUAGE.fullmatch(language) else f">>{language}<<"
        known = self.language_tokens
        if token not in known:
            listed = ", ".join(t[2:-2] for t in known) or "none"
            raise ValueError(f"the model has no language token {token}; it knows: {listed}")
        return self._with(language=token)

    @property
    def vocab_size(self) -> int:
        """Number of ids (the vocabulary's size)."""
        return len(self._pieces)

    def has_piece(self, piece: str) -> bool:
        """Whether ``piece`` is one piece of the vocabulary."""
        return piece in self._vocab

    def id_to_piece(self, i: int) -> str:
        """The vocabulary's piece for id ``i``.

        Raises:
            ValueError: ``i`` is outside ``[0, vocab_size)``.
        """
        if not 0 <= i < self.vocab_size:
            raise ValueError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
        return self._pieces[i]

    def _ids(self, text: str) -> list[int]:
        """The ids of one text, without EOS (transformers' `tokenize`, then the vocabulary)."""
        if self.language is not None:
            text = f"{self.language} {text}"
        sp = self._source_sp if self.side == "source" else self._target_sp
        vocab, unk = self._vocab, self.unk_id
        ids: list[int] = []
        for part in self._specials.split(text):
            if part in (EOS, UNK, PAD):
                ids.append(vocab[part])
                continue
            if not part:
                continue
            if part.startswith(">>") and (end := part.find("<<")) != -1:
                ids.append(vocab.get(part[: end + 2], unk))
                part = part[end + 2 :]
            ids.extend(vocab.get(piece, unk) for piece in sp.encode(part, out_type=str))
        return ids

    def encode(
        self,
        texts: Sequence[str],
        *,
        max_length: int | None = None,
        add_bos: bool = False,
        add_eos: bool = True,
        keep: str = "head",
    ) -> tuple[list[list[int]], list[bool]]:
        """Encode texts to ids, as `attn.tokenizer.Tokenizer.encode` does.

        Raises:
            ValueError: ``texts`` is a single string, ``add_bos`` (these models have no BOS),
                or ``max_length`` leaves no room for a token besides EOS.
        """
        check_encode_args(texts, max_length, add_bos, add_eos)
        if add_bos:
            raise ValueError("an OPUS-MT tokenizer has no BOS piece")
        bodies = [self._ids(text) for text in texts]
        return frame(bodies, max_length, [], [self.eos_id] * add_eos, keep)

    def encode_flat(
        self, texts: Sequence[str], *, max_length: int, keep: str = "head"
    ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """Encode texts as `encode` does (EOS added, cut to `max_length`), into flat arrays:
        the ids one text after the other (int32), each text's length (int32), how many
        texts were cut, and each text's length before the cut (int32).
        """
        import numpy as np

        check_encode_args(texts, max_length, False, True)
        bodies = [self._ids(text) for text in texts]
        uncut = np.fromiter((len(b) + 1 for b in bodies), dtype=np.int32, count=len(bodies))
        ids, cut = frame(bodies, max_length, [], [self.eos_id], keep)
        lengths = np.fromiter(map(len, ids), dtype=np.int32, count=len(ids))
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
        return flat, lengths, sum(cut), uncut

    def decode(self, ids: Sequence[Sequence[int]] | Any) -> list[str]:
        """Decode id sequences (lists or a (B, T) tensor) to text: each ends at its first
        EOS; `<pad>` and `<unk>` are dropped.

        Raises:
            ValueError: an id is outside ``[0, vocab_size)``.
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        size, skip = self.vocab_size, (self.pad_id, self.unk_id)
        texts = []
        for seq in ids:
            pieces: list[str] = []
            for i in seq:
                if i == self.eos_id:
                    break
                if not 0 <= i < size:
                    raise ValueError(f"token id {i} is outside the vocabulary (size {size})")
                if i not in skip:
                    pieces.append(self._pieces[i])
            text = self._source_sp.decode_pieces(pieces).replace("\u2581", " ").strip()
            if self.clean_up_spaces:
                for before, after in _CLEANUPS:
                    text = text.replace(before, after)
            texts.append(text)
        return texts


def _rebuild(
    source_proto: bytes, target_proto: bytes, vocab: dict[str, int], options: dict[str, Any]
) -> MarianTokenizer:
    return MarianTokenizer(source_proto, target_proto, vocab, **options)
