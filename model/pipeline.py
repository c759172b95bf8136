"""The Python API for inference: load a model directory, feed texts, get results in order.

    from attn import Translator
    translator = Translator.load("models/en-de")
    for result in translator.translate(["A man rides a bike.", ""], beam=4):
        print(result.text, result.score)

Texts may be a list or any iterator (a file read lazily): they are read `chunk_size` at a
time, each chunk is sorted by length so that batches hold similar lengths (little padding),
and the results of a chunk come out in input order as soon as the chunk is done. Memory
stays bounded on an input of any size.

An empty (or whitespace-only) text gives an empty result without running the model, so a
caller writing one line per result keeps its lines aligned with the input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

import torch
from torch import Tensor

from attn.model.checkpoint import CONFIG, LoadedModel, ModelError, load_model
from attn.model.generate import GenerationOptions, Hypothesis, generate

Out = TypeVar("Out")  # a model output for one text
R = TypeVar("R")  # a result object
P = TypeVar("P", bound="_Pipeline")

# Called after each batch with the sentences done in it and the pieces generated for them
# (best hypotheses, EOS not counted), for progress displays and benchmarks.
ProgressCallback = Callable[[int, int], None]


@dataclass
class Candidate:
    """One hypothesis of an n-best list: its text and its scores (see `Generation`)."""

    text: str
    score: float
    logprob: float


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
        alignment: (source word, output word) pairs of `text`, when asked for
            (`attn.model.attention_maps.align_text`); None otherwise.
    """

    source: str
    text: str
    score: float | None = None
    logprob: float | None = None
    n_best: list[Candidate] = field(default_factory=list)
    truncated: bool = False
    alignment: list[tuple[int, int]] | None = None


@dataclass
class Classification:
    """The sentiment of one input text.

    Attributes:
        source: the input text.
        label: the most probable label (a name from training, e.g. "positive"); None if empty.
        prob: its probability; None for an empty input.
        probs: every label's probability, in the model's label order; {} for an empty input.
        truncated: the input was longer than the model's max_length and was cut.
    """

    source: str
    label: str | None = None
    prob: float | None = None
    probs: dict[str, float] = field(default_factory=dict)
    truncated: bool = False


class _Pipeline:
    """A loaded model of one task, and the chunked, sorted, batched loop over inputs."""

    task: ClassVar[str]

    def __init__(self, loaded: LoadedModel, device: torch.device) -> None:
        if loaded.config.task != self.task:
            raise ModelError(f"{loaded.path} holds a {loaded.config.task} model, not {self.task}")
        self.loaded = loaded
        self.model = loaded.model
        self.config = loaded.config
        self.tokenizer = loaded.tokenizer
        self.device = device

    @classmethod
    def load(
        cls: type[P],
        model_dir: str | Path | None = None,
        *,
        device: str = "auto",
        threads: int | None = None,
    ) -> P:
        """Load a model directory for this task.

        Args:
            model_dir: the directory `attn train` wrote; None = the default model of the task.
            device: "auto", "cpu", "cuda" or "mps".
            threads: CPU threads for torch (None keeps torch's default).

        Raises:
            ModelError: no model (with a hint to run `attn train`), or a broken one, or a
                model of another task.
            ValueError: the device is unknown or unavailable.
        """
        from attn.model.device import resolve_device
        from attn.model.home import default_model_dir

        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        resolved = resolve_device(device)
        if model_dir is None:
            model_dir = default_model_dir(cls.task)
            if not (model_dir / CONFIG).is_file():
                raise ModelError(
                    f"no {cls.task} model at {model_dir}; train one with `attn train "
                    f"{cls.task}` or pass -m/--model DIR"
                )
        return cls(load_model(model_dir, task=cls.task, device=resolved), resolved)

    def _run(
        self,
        texts: Iterable[str],
        process: Callable[[Tensor, Tensor], tuple[list[Out], int]],
        make: Callable[[str, Out | None, bool], R],
        *,
        batch_size: int,
        batch_tokens: int | None,
        chunk_size: int,
        progress: ProgressCallback | None,
    ) -> Iterator[R]:
        """Chunk, sort by length, batch, run `process` per batch, yield results in input order.

        Args:
            process: (src, src_mask) on the device -> (one output per row, pieces generated).
            make: (text, its output or None for an empty text, truncated) -> the result.

        Shape: process gets src, src_mask (B, S), trimmed to the longest row of the batch.

        Raises:
            ValueError: a batch or chunk size below 1 (at the call, not at the first result).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if batch_tokens is not None and batch_tokens < 1:
            raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return self._results(texts, process, make, batch_size, batch_tokens, chunk_size, progress)

    def _results(
        self,
        texts: Iterable[str],
        process: Callable[[Tensor, Tensor], tuple[list[Out], int]],
        make: Callable[[str, Out | None, bool], R],
        batch_size: int,
        batch_tokens: int | None,
        chunk_size: int,
        progress: ProgressCallback | None,
    ) -> Iterator[R]:
        from attn.data import restore_order, sorted_chunks

        # Characters are a cheap proxy for pieces when sorting: the chunk is encoded once, after.
        for chunk, order in sorted_chunks(texts, chunk_size, key=len):
            results = [make(text, None, False) for text in chunk]
            real = [i for i, text in enumerate(chunk) if text.strip()]
            if real:
                enc = self.tokenizer.encode_batch(
                    [chunk[i] for i in real], max_length=self.config.max_length
                )  # ids, mask (N, T)
                lengths = enc.mask.sum(1)  # (N,)
                for batch in _batches(lengths.tolist(), batch_size, batch_tokens):
                    rows = torch.tensor(batch)
                    width = int(lengths[rows].max())
                    src = enc.ids[rows, :width].to(self.device)  # (B, S)
                    mask = enc.mask[rows, :width].to(self.device)  # (B, S)
                    outputs, pieces = process(src, mask)
                    for j, output in zip(batch, outputs, strict=True):
                        results[real[j]] = make(chunk[real[j]], output, enc.truncated[j])
                    if progress is not None:
                        progress(len(batch), pieces)
            yield from restore_order(results, order)


class _Seq2Seq(_Pipeline):
    """Translation and summarization: the same search, different defaults."""

    # The relative length rule of the task: at most a * source_pieces + b output pieces.
    max_length_a: ClassVar[float]
    max_length_b: ClassVar[int]

    def _generate(
        self,
        texts: Iterable[str],
        *,
        beam: int,
        n_best: int,
        length_penalty: float,
        no_repeat_ngram: int,
        max_length: int | None,
        batch_size: int,
        batch_tokens: int | None,
        chunk_size: int,
        progress: ProgressCallback | None,
    ) -> Iterator[Generation]:
        options = GenerationOptions(
            beam=beam,
            n_best=n_best,
            length_penalty=length_penalty,
            no_repeat_ngram=no_repeat_ngram,
            max_length=max_length,
            max_length_a=self.max_length_a,
            max_length_b=self.max_length_b,
        )

        def process(src: Tensor, mask: Tensor) -> tuple[list[list[Hypothesis]], int]:
            hyps = generate(self.model, src, mask, options)
            return hyps, sum(len(h[0].tokens) for h in hyps)

        def make(text: str, hyps: list[Hypothesis] | None, truncated: bool) -> Generation:
            if not hyps:
                return Generation(text, "")
            outputs = self.tokenizer.decode([h.tokens for h in hyps])
            n_best = [Candidate(o, h.score, h.logprob) for o, h in zip(outputs, hyps, strict=True)]
            best = n_best[0]
            return Generation(text, best.text, best.score, best.logprob, n_best, truncated)

        return self._run(
            texts,
            process,
            make,
            batch_size=batch_size,
            batch_tokens=batch_tokens,
            chunk_size=chunk_size,
            progress=progress,
        )


class Translator(_Seq2Seq):
    """Translate with a model `attn train translate` wrote. Load with `Translator.load(dir)`."""

    task = "translate"
    max_length_a = 1.5
    max_length_b = 10

    def translate(
        self,
        texts: Iterable[str],
        *,
        beam: int = 4,
        n_best: int = 1,
        length_penalty: float = 0.6,
        no_repeat_ngram: int = 0,
        max_length: int | None = None,
        batch_size: int = 32,
        batch_tokens: int | None = None,
        chunk_size: int = 1000,
        progress: ProgressCallback | None = None,
    ) -> Iterator[Generation]:
        """Translate texts; yields one `Generation` per text, in input order.

        Args:
            texts: a list or an iterator of texts (read lazily, `chunk_size` at a time).
            beam: beam size; 1 = greedy search.
            n_best: hypotheses kept per text (<= beam), in `Generation.n_best`.
            length_penalty: alpha of the GNMT length penalty ((5 + len) / 6) ** alpha.
            no_repeat_ngram: forbid repeated n-grams of this size in an output; 0 = off.
            max_length: cap on output pieces; None = 1.5 * source pieces + 10. Both are
                capped by the model's max_length.
            batch_size: sentences per batch (each holds `beam` hypotheses).
            batch_tokens: instead of `batch_size`, at most this many source pieces per batch
                (padding included).
            chunk_size: texts read and sorted by length together.
            progress: called after each batch with (sentences, output pieces).

        Raises:
            ValueError: an option is out of range.
        """
        return self._generate(
            texts,
            beam=beam,
            n_best=n_best,
            length_penalty=length_penalty,
            no_repeat_ngram=no_repeat_ngram,
            max_length=max_length,
            batch_size=batch_size,
            batch_tokens=batch_tokens,
            chunk_size=chunk_size,
            progress=progress,
        )


class Summarizer(_Seq2Seq):
    """Summarize with a model `attn train summarize` wrote. Load with `Summarizer.load(dir)`."""

    task = "summarize"
    max_length_a = 1.0
    max_length_b = 10

    def summarize(
        self,
        texts: Iterable[str],
        *,
        beam: int = 4,
        n_best: int = 1,
        length_penalty: float = 0.6,
        no_repeat_ngram: int = 3,
        max_length: int | None = None,
        batch_size: int = 32,
        batch_tokens: int | None = None,
        chunk_size: int = 1000,
        progress: ProgressCallback | None = None,
    ) -> Iterator[Generation]:
        """Summarize texts; yields one `Generation` per text, in input order.

        Arguments as for `Translator.translate`, except: `no_repeat_ngram` defaults to 3
        (summaries otherwise tend to loop), and without `max_length` a summary has at most
        source pieces + 10 pieces.
        """
        return self._generate(
            texts,
            beam=beam,
            n_best=n_best,
            length_penalty=length_penalty,
            no_repeat_ngram=no_repeat_ngram,
            max_length=max_length,
            batch_size=batch_size,
            batch_tokens=batch_tokens,
            chunk_size=chunk_size,
            progress=progress,
        )


class SentimentClassifier(_Pipeline):
    """Classify sentiment with a model `attn train sentiment` wrote."""

    task = "sentiment"

    def classify(
        self,
        texts: Iterable[str],
        *,
        batch_size: int = 64,
        batch_tokens: int | None = None,
        chunk_size: int = 1000,
        progress: ProgressCallback | None = None,
    ) -> Iterator[Classification]:
        """Classify texts; yields one `Classification` per text, in input order.

        Args:
            texts: a list or an iterator of texts (read lazily, `chunk_size` at a time).
            batch_size / batch_tokens / chunk_size / progress: as for `Translator.translate`.

        Raises:
            ValueError: an option is out of range.
        """
        labels = self.config.labels

        @torch.inference_mode()
        def process(src: Tensor, mask: Tensor) -> tuple[list[list[float]], int]:
            probs = self.model.classify(src, mask).float().softmax(-1)  # (B, C)
            return probs.tolist(), 0

        def make(text: str, probs: list[float] | None, truncated: bool) -> Classification:
            if probs is None:
                return Classification(text)
            best = max(range(len(probs)), key=probs.__getitem__)
            return Classification(
                text, labels[best], probs[best], dict(zip(labels, probs, strict=True)), truncated
            )

        return self._run(
            texts,
            process,
            make,
            batch_size=batch_size,
            batch_tokens=batch_tokens,
            chunk_size=chunk_size,
            progress=progress,
        )


def _batches(lengths: Sequence[int], batch_size: int, batch_tokens: int | None) -> list[list[int]]:
    """Consecutive groups of `batch_size` rows, or token-budget batches with `batch_tokens`."""
    from attn.data import token_batches

    if batch_tokens is not None:
        return token_batches(lengths, batch_tokens, shuffle=False)
    n = len(lengths)
    return [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]
