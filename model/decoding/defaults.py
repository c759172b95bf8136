"""The decoding defaults of each sequence-to-sequence task, in one table.

`attn translate`, `attn summarize`, `attn evaluate`, the Python API (`Translator`,
`Summarizer`) and the server all take their beam, length penalty and n-gram blocking from
here when the caller gives none. No torch import: the CLI reads it as it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Decoding:
    """The search a task runs by default.

    Attributes:
        beam: beam size; 1 = greedy search.
        length_penalty: alpha of the GNMT length penalty ((5 + len) / 6) ** alpha; 0 = none.
        no_repeat_ngram: forbid repeating any n-gram of this many pieces; 0 = off.
    """

    beam: int = 4
    length_penalty: float = 0.6
    no_repeat_ngram: int = 0

    def given(
        self,
        beam: int | None = None,
        length_penalty: float | None = None,
        no_repeat_ngram: int | None = None,
    ) -> Decoding:
        """These defaults with what a caller gave in their place (None: not given)."""
        values = {
            "beam": beam,
            "length_penalty": length_penalty,
            "no_repeat_ngram": no_repeat_ngram,
        }
        return replace(self, **{k: v for k, v in values.items() if v is not None})


DECODING: dict[str, Decoding] = {
    # 1.0 ranked better than GNMT's 0.6 on Multi30k val, beam 4: +0.1 to +0.3 BLEU on three
    # models of 1,874-2,781 steps (docs/results.md).
    "translate": Decoding(length_penalty=1.0),
    # Summaries otherwise tend to loop; 3 pieces would forbid writing a name made of several
    # pieces, like DialogSum's `#Person1#`, twice.
    "summarize": Decoding(no_repeat_ngram=6),
}


def decoding_defaults(task: str) -> Decoding:
    """The default search of `task` (translate or summarize; any other: `Decoding()`)."""
    return DECODING.get(task, Decoding())
