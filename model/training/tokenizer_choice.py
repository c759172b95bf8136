"""The tokenizer a new model trains on its data (`train_tokenizer`), and the check that a
given one (resume, --init) can read synthetic pairs (`check_synthetic_tag`).
`attn.model.training.prepare` decides which of them a run uses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from attn.model.storage.layout import ModelDir
from attn.model.training.settings import TrainError


def train_tokenizer(
    sample: list[str],
    path: Path,
    size: int,
    *,
    seed: int,
    synthetic: bool,
    emit: Callable[[dict[str, Any]], None],
) -> Any:
    """A tokenizer of `size` pieces trained on `sample` and saved at `path`; with
    `synthetic` pairs, one that holds their tag as one piece.

    Raises:
        TrainError: SentencePiece cannot train one of that size on this text.
    """
    from attn.data.task_files import BT_TAG
    from attn.tokenizer import Tokenizer

    emit(
        {
            "event": "stage",
            "message": f"training the tokenizer ({size} pieces) on {len(sample)} texts",
        }
    )
    try:
        return Tokenizer.train(
            sample,
            path,
            size,
            seed=seed,
            max_sentences=None,
            symbols=(BT_TAG,) if synthetic else (),
        )
    except RuntimeError as e:
        # SentencePiece's own refusals (e.g. fewer pieces than distinct characters).
        reason = str(e).splitlines()[0].rpartition("] ")[2].partition(". ")[0]
        raise TrainError(
            f"cannot train a tokenizer of {size} pieces on this "
            f"text ({reason}); choose another --vocab-size"
        ) from None


def check_synthetic_tag(model_dir: Path | None) -> None:
    """Synthetic pairs need a tokenizer that holds their tag as one piece: the given one in
    `model_dir` (resume, --init; None: trained here) must have been trained with synthetic
    pairs too.

    Raises:
        TrainError: the given tokenizer has no such piece.
    """
    from attn.data.task_files import BT_TAG
    from attn.model.storage.checkpoint import load_tokenizer

    if model_dir is None or not ModelDir(model_dir).tokenizer_files()[0].is_file():
        return  # trained here, or missing: said where it is loaded
    try:
        tokenizer = load_tokenizer(model_dir)
    except ValueError:
        return
    if not tokenizer.has_piece(BT_TAG):
        raise TrainError(
            f"synthetic pairs need a tokenizer with their tag {BT_TAG} as one piece, and "
            f"the one of {model_dir} has none (it was trained without --synthetic)"
        )
