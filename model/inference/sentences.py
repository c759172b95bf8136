"""Translation of texts longer than a sentence: each text split into sentences
(`attn.data.sentences`), the sentences translated in the same batches as any other text, and
joined back into one result per text, with the separators its source had between them.

A sentence still longer than the model's `max_length` (in pieces, EOS included) is split
further at clause punctuation, then at spaces, then at the longest prefixes that fit, so that
no text is ever cut off (`Generation.split_further` says it happened).

The joined result:
- `text`: the sentences' outputs with the source's separators between them.
- `n_best`: candidate k joins each sentence's k-th hypothesis (its best when it has fewer);
  its logprob is the sum of the sentences' logprobs, and its score that sum divided by the
  length penalty of all their pieces (each sentence's output and EOS), ((5 + len) / 6) **
  length_penalty, as the search scores one sentence. A text of one sentence keeps its scores.
- `alignment`: each sentence's pairs, shifted to the words of the whole source and output.
- `sentences`: one `Generation` per sentence (source, output, scores, alignment within it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from attn.data.sentences import Span, separators, split_sentences, split_to_fit
from attn.model.decoding.search import length_penalty
from attn.model.inference.results import Candidate, Generation

SPLITS = ("sentences", "none")


def check_split(split: str) -> None:
    """Raises ValueError for a split other than "sentences" or "none"."""
    if split not in SPLITS:
        raise ValueError(f'split must be "sentences" or "none", got {split!r}')


@dataclass
class _Text:
    """A text of the input: its sentence spans and whether one was split further."""

    text: str
    spans: list[Span]
    split_further: bool


class SentenceSplitter:
    """Splits texts into parts that a model of `max_length` pieces takes whole."""

    def __init__(self, tokenizer: Any, max_length: int, keep: str, language: str | None) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.keep = keep
        self.language = language

    def fits(self, part: str) -> bool:
        """Whether `part` is encoded without being cut (EOS included)."""
        _, cut = self.tokenizer.encode([part], max_length=self.max_length, keep=self.keep)
        return not cut[0]

    def __call__(self, text: str) -> _Text:
        if getattr(text, "constraints", ()) or getattr(text, "prefix", ""):
            # Constraints and a prefix are the whole text's: it is translated whole.
            whole = [(0, len(text))] if text.strip() and self.fits(text) else None
            if whole is not None:
                return _Text(text, whole, False)
        spans, further = [], False
        for span in split_sentences(text, self.language):
            parts = split_to_fit(text, span, self.fits)
            further |= len(parts) > 1
            spans.extend(parts)
        return _Text(text, spans, further)


def translate_split(
    generate: Callable[[Iterable[str]], Iterator[Generation]],
    texts: Iterable[str],
    splitter: SentenceSplitter,
    alpha: float,
) -> Iterator[Generation]:
    """One joined `Generation` per text, in input order.

    Args:
        generate: runs the model over a stream of sentences (one result each, in order).
        splitter: cuts a text into its sentences.
        alpha: the length penalty the search used (for the joined scores).
    """
    pending: deque[_Text] = deque()

    def sentences() -> Iterator[str]:
        for text in texts:
            split = splitter(text)
            pending.append(split)
            if not split.spans:  # a blank text: one empty result, no model run
                yield ""
            for start, end in split.spans:
                yield text if (start, end) == (0, len(text)) else text[start:end]

    group: list[Generation] = []
    for result in generate(sentences()):
        group.append(result)
        head = pending[0]
        if len(group) >= max(1, len(head.spans)):
            pending.popleft()
            yield join(head, group, alpha)
            group = []


def join(split: _Text, results: list[Generation], alpha: float) -> Generation:
    """The result of a whole text from the results of its sentences (see the module)."""
    text, spans = split.text, split.spans
    align = results[0].alignment is not None
    if not spans:
        return Generation(text, "", alignment=[] if align else None)
    seps = ["", *separators(text, spans)]
    outputs = [r.text for r in results]
    joined, starts = _joined(outputs, seps)
    n_best = [
        _candidate([_kth(r, k) for r in results], seps, alpha)
        for k in range(max(len(r.n_best) for r in results))
    ]
    alignment = None
    if align:
        alignment = []
        for (start, _), out_start, result in zip(spans, starts, results, strict=True):
            s0, t0 = _words_before(text[:start]), _words_before(joined[:out_start])
            alignment.extend((s0 + s, t0 + t) for s, t in result.alignment or [])
        alignment = sorted(set(alignment))
    best = n_best[0]
    return Generation(
        text,
        joined,
        best.score,
        best.logprob,
        n_best,
        any(r.truncated for r in results),
        alignment,
        sentences=results,
        split_further=split.split_further,
        constraints_met=all(r.constraints_met for r in results),
    )


def _kth(result: Generation, k: int) -> Candidate:
    return result.n_best[k] if k < len(result.n_best) else result.n_best[0]


def _candidate(parts: list[Candidate], seps: list[str], alpha: float) -> Candidate:
    if len(parts) == 1:
        return parts[0]
    text, _ = _joined([p.text for p in parts], seps)
    logprob = sum(p.logprob for p in parts)
    length = sum(p.length for p in parts)
    return Candidate(text, logprob / float(length_penalty(length, alpha)), logprob, length)


def _joined(outputs: list[str], seps: list[str]) -> tuple[str, list[int]]:
    """The outputs joined, each after its separator (none before the first output, and
    none for an empty output); and where each output starts in the joined text."""
    joined, starts = "", []
    for output, sep in zip(outputs, seps, strict=True):
        if joined and output:
            joined += sep
        starts.append(len(joined))
        joined += output
    return joined, starts


def _words_before(prefix: str) -> int:
    """The index, among the whitespace words of a text, of the word that starts right after
    `prefix`: a part that continues a word (no space between) shares its index."""
    return len((prefix + "x").split()) - 1
