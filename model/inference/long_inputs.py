"""Inputs longer than the model's `max_length`, taken whole instead of cut (`max_input`).

"whole" (the default of `Summarizer.summarize` and `SentimentClassifier.classify`):

- Summarization: a text that does not fit is split into parts that do, at line breaks,
  speaker turns (DialogSum's `#Person1#:`, one a line or run together) and sentence ends
  (`attn.data.sentences`; a sentence longer than the model further, at clause punctuation or
  spaces; a turn that fits stays whole), neighbours packed together while they fit. Each
  part is summarized (the parts of a text in one batch), the part summaries are joined with
  spaces, and the join is summarized again: split again while it does not fit, once more
  when it does. Every piece of the text reaches the model. A round whose join is not
  shorter than its input (a model that copies) ends with that join cut at max_length,
  flagged `truncated`.
- Sentiment: a text that does not fit is classified in overlapping windows of max_length
  pieces (max_length - 1 pieces of the text, then EOS, as in training), each starting half a
  window after the one before and the last ending at the text's end; the label
  probabilities are the mean of the windows' probabilities.

The results say it happened (`split_further`), and the command line names the lines. "cut"
keeps the model's cut: the first pieces, or its head and tail (`ModelConfig.keep`).

Texts that fit run in the pipeline's batches (and workers) as any other; an over-long text
runs in this process when its place in the output is reached, its parts (or windows) in
batches of their own.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from attn.data.sentences import Span, rule_spans, split_to_fit
from attn.model.inference.results import Classification, Generation

MAX_INPUTS = ("whole", "cut")
# Windows of one text classified together.
_WINDOWS_PER_BATCH = 32
# Where a dialogue's turns begin: a line break, or a DialogSum speaker tag (`#Person2#:`).
_TURN = re.compile(r"\n|(?=#[^#\s]{1,40}#:)")


def check_max_input(max_input: str) -> None:
    """Raises ValueError for a max_input other than "whole" or "cut"."""
    if max_input not in MAX_INPUTS:
        raise ValueError(f'max_input must be "whole" or "cut", got {max_input!r}')


class PartSplitter:
    """Whether a text fits a model of `max_length` pieces (EOS included), and the parts
    that fit of one that does not."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def pieces(self, text: str) -> int:
        """The text's length in pieces, EOS included."""
        ids, _ = self.tokenizer.encode([text])
        return len(ids[0])

    def fits(self, text: str) -> bool:
        return self.pieces(text) <= self.max_length

    def parts(self, text: str) -> list[Span]:
        """Spans of `text` that each fit, in order, covering all of it but whitespace."""
        units: list[Span] = []
        for turn in _turns(text):
            if self.fits(text[turn[0] : turn[1]]):  # a turn that fits is never cut
                units.append(turn)
                continue
            for start, end in rule_spans(text[turn[0] : turn[1]]):
                units.extend(split_to_fit(text, (turn[0] + start, turn[0] + end), self.fits))
        packed: list[Span] = []
        for unit in units:
            if packed and self.fits(text[packed[-1][0] : unit[1]]):
                packed[-1] = (packed[-1][0], unit[1])
            else:
                packed.append(unit)
        return packed


def _turns(text: str) -> list[Span]:
    """The spans between turn boundaries (blank ones left out)."""
    bounds = [0, *(m.start() for m in _TURN.finditer(text) if m.start() > 0), len(text)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if text[a:b].strip()]


def summarize_whole(
    generate: Callable[..., Iterator[Generation]],
    texts: Iterable[str],
    splitter: PartSplitter,
    options: dict[str, Any],
) -> Iterator[Generation]:
    """One summary per text, in input order; over-long texts summarized in parts.

    Args:
        generate: the pipeline's `generate` (texts, **options) -> results in order.
        options: its options for every text.
    """
    pending: deque[tuple[str, bool]] = deque()

    def stream() -> Iterator[str]:
        for text in texts:
            long = bool(text.strip()) and not splitter.fits(text)
            pending.append((text, long))
            yield "" if long else text  # an empty text costs the batches nothing

    inner = {k: v for k, v in options.items() if k not in ("workers", "progress")}

    def run(parts: list[str]) -> list[Generation]:
        return list(generate(parts, **inner, workers=1, progress=options.get("progress")))

    results = generate(stream(), **options)
    try:
        for result in results:
            text, long = pending.popleft()
            yield _summarize_long(run, text, splitter, options) if long else result
    finally:
        results.close()


def _summarize_long(
    run: Callable[[list[str]], list[Generation]],
    text: str,
    splitter: PartSplitter,
    options: dict[str, Any],
) -> Generation:
    """The summary of a text longer than the model (see the module's docstring)."""
    current, length = text, splitter.pieces(text)
    while True:
        spans = splitter.parts(current)
        if len(spans) <= 1:
            final = run([current])[0]
            break
        summaries = run([current[a:b] for a, b in spans])
        joined = " ".join(s.text for s in summaries if s.text)
        shorter = splitter.pieces(joined)
        if shorter >= length:  # no progress: the join is cut at max_length
            final = run([joined])[0]
            break
        current, length = joined, shorter
    return Generation(
        text,
        final.text,
        final.score,
        final.logprob,
        final.n_best,
        final.truncated,
        [] if options.get("align") else None,
        split_further=True,
    )


def classify_whole(
    classify: Callable[[Iterable[str]], Iterator[Classification]],
    texts: Iterable[str],
    windows: Callable[[list[list[int]]], list[float]],
    tokenizer: Any,
    max_length: int,
    labels: tuple[str, ...],
) -> Iterator[Classification]:
    """One classification per text, in input order; over-long texts in windows.

    Args:
        classify: the pipeline's classification of texts that fit, in order.
        windows: the mean label probabilities of windows of ids (each max_length, EOS last).
    """
    from attn.tokenizer import EOS_ID

    pending: deque[tuple[str, list[int] | None]] = deque()
    room = max_length - 1

    def stream() -> Iterator[str]:
        for text in texts:
            body = None
            if text.strip():
                ids, _ = tokenizer.encode([text], add_eos=False)
                body = ids[0] if len(ids[0]) > room else None
            pending.append((text, body))
            yield "" if body is not None else text

    results = classify(stream())
    try:
        for result in results:
            text, body = pending.popleft()
            if body is None:
                yield result
                continue
            starts = window_starts(len(body), room)
            probs = windows([[*body[s : s + room], EOS_ID] for s in starts])
            best = max(range(len(probs)), key=probs.__getitem__)
            yield Classification(
                text,
                labels[best],
                probs[best],
                dict(zip(labels, probs, strict=True)),
                split_further=True,
            )
    finally:
        results.close()


def window_starts(n: int, room: int) -> list[int]:
    """Where the windows of `room` pieces over `n` pieces start: every room // 2 pieces,
    the last one ending at the end."""
    stride = max(1, room // 2)
    starts = list(range(0, n - room, stride))
    return [*starts, max(0, n - room)]


def mean_window_probs(
    model: Any, windows: list[list[int]], device: Any, batch: int = _WINDOWS_PER_BATCH
) -> list[float]:
    """The mean of the label probabilities of each window (all of one length)."""
    import torch

    total = None
    with torch.inference_mode():
        for i in range(0, len(windows), batch):
            src = torch.tensor(windows[i : i + batch], dtype=torch.long, device=device)  # (W, L)
            mask = torch.ones_like(src, dtype=torch.bool)  # (W, L): no padding
            probs = model.classify(src, mask).float().softmax(-1).sum(0)  # (C,)
            total = probs if total is None else total + probs
    assert total is not None
    return (total / len(windows)).tolist()
