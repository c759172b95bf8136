"""What the inference pipelines return: a `Generation` per text for translation and
summarization (with its n-best `Candidate`s), a `Classification` per text for sentiment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Candidate:
    """One hypothesis of an n-best list: its text and its scores (see `Generation`);
    `length`: the pieces its score counts (the output's and EOS)."""

    text: str
    score: float
    logprob: float
    length: int = 0


@dataclass
class Generation:
    """A translation or a summary of one input text.

    Attributes:
        source: the input text.
        text: the best output ("" for an empty input).
        score: the ranking score, logprob / ((5 + len) / 6) ** length_penalty; None if empty.
        logprob: the sum of the log-probabilities of the output pieces and EOS; None if empty.
        n_best: the hypotheses found, best first (the first is `text`); [] for an empty input.
        truncated: the input was longer than the model's max_length and was cut.
        alignment: (source word, output word) pairs of `text`, from the search that gave
            it, when asked for (`translate(..., align=True)`); None otherwise.
        sentences: with `translate(..., split="sentences")`, the result of each sentence
            the text was split into (word indices of their alignments within the
            sentence); None otherwise. See `attn.model.inference.sentences`.
        split_further: a sentence was longer than the model's max_length and was split
            further (at clause punctuation, spaces or pieces) instead of cut; for a summary,
            the text was longer than the model and was summarized in parts
            (`attn.model.inference.long_inputs`).
        constraints_met: False where the text's constraints (glossary terms, `constraints`)
            could not all be met: the output is then the best one without them.
    """

    source: str
    text: str
    score: float | None = None
    logprob: float | None = None
    n_best: list[Candidate] = field(default_factory=list)
    truncated: bool = False
    alignment: list[tuple[int, int]] | None = None
    # Keyword-only: the fields above keep their positions.
    sentences: list[Generation] | None = field(default=None, kw_only=True)
    split_further: bool = field(default=False, kw_only=True)
    constraints_met: bool = field(default=True, kw_only=True)

    def record(self, n_best: int = 1) -> dict[str, Any]:
        """The JSON fields of this result (`--format jsonl`, `attn serve`): source, output,
        score, logprob; n_best (a list of output/score/logprob) when n_best > 1; alignment
        as [[s, t], ...] when there is one; sentences (a list of source/output/score/
        logprob and alignment when there is one) when the text was split into sentences."""
        record: dict[str, Any] = {
            "source": self.source,
            "output": self.text,
            "score": self.score,
            "logprob": self.logprob,
        }
        if n_best > 1:
            record["n_best"] = [
                {"output": h.text, "score": h.score, "logprob": h.logprob}
                for h in self.n_best[:n_best]
            ]
        if self.alignment is not None:
            record["alignment"] = [list(pair) for pair in self.alignment]
        if self.sentences is not None:
            record["sentences"] = [sentence.record() for sentence in self.sentences]
        if not self.constraints_met:
            record["constraints_met"] = False
        return record


@dataclass
class Classification:
    """The sentiment of one input text.

    Attributes:
        source: the input text.
        label: the most probable label (a name from training, e.g. "positive"); None if empty.
        prob: its probability; None for an empty input.
        probs: every label's probability, in the model's label order; {} for an empty input.
        truncated: the input was longer than the model's max_length and was cut.
        split_further: the input was longer than the model's max_length and was classified
            in windows (`attn.model.inference.long_inputs`).
    """

    source: str
    label: str | None = None
    prob: float | None = None
    probs: dict[str, float] = field(default_factory=dict)
    truncated: bool = False
    split_further: bool = field(default=False, kw_only=True)

    def record(self, probs: bool = False) -> dict[str, Any]:
        """The JSON fields of this result (`--format jsonl`, `attn serve`): source, label,
        prob; probs (every label's) with `probs`."""
        record: dict[str, Any] = {"source": self.source, "label": self.label, "prob": self.prob}
        if probs:
            record["probs"] = self.probs
        return record
