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

import itertools
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import Tensor

from attn.model.decoding.incremental import StepWeights
from attn.model.decoding.search import GenerationOptions, Hypothesis, generate
from attn.model.storage.checkpoint import LoadedModel, ModelError, load_model
from attn.model.storage.layout import ModelDir

if TYPE_CHECKING:
    from attn.model.decoding.sampling import SamplingOptions
    from attn.model.inference.attention_maps import AttentionMaps

Out = TypeVar("Out")  # a model output for one text
# A sentence's hypotheses, best first, and the word alignment of the best one (or None).
_Searched = tuple[list[Hypothesis], list[tuple[int, int]] | None]
R = TypeVar("R")  # a result object
P = TypeVar("P", bound="_Pipeline")

# Called after each batch with the sentences done in it and the pieces generated for them
# (best hypotheses, EOS not counted), for progress displays and benchmarks.
ProgressCallback = Callable[[int, int], None]

# With workers="auto", inputs up to this many texts run in this process: forking workers
# costs more than it saves on a few sentences.
AUTO_WORKERS_MIN_TEXTS = 64
# A GPU runs a batch of small-model steps in about the time of one sentence: batch wider there.
GPU_BATCH_FACTOR = 8

# A batch: its texts, their piece ids and mask (B, S) as the tokenizer collated them (on the
# CPU), their truncation flags, and their indices in the whole input (which seed sampling).
_Job = tuple[list[str], Tensor, Tensor, list[bool], list[int]]


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
            (`attn.model.inference.attention_maps.align_text`); None otherwise.
    """

    source: str
    text: str
    score: float | None = None
    logprob: float | None = None
    n_best: list[Candidate] = field(default_factory=list)
    truncated: bool = False
    alignment: list[tuple[int, int]] | None = None

    def record(self, n_best: int = 1) -> dict[str, Any]:
        """The JSON fields of this result (`--format jsonl`, `attn serve`): source, output,
        score, logprob; n_best (a list of output/score/logprob) when n_best > 1; alignment
        as [[s, t], ...] when there is one."""
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
    """

    source: str
    label: str | None = None
    prob: float | None = None
    probs: dict[str, float] = field(default_factory=dict)
    truncated: bool = False

    def record(self, probs: bool = False) -> dict[str, Any]:
        """The JSON fields of this result (`--format jsonl`, `attn serve`): source, label,
        prob; probs (every label's) with `probs`."""
        record: dict[str, Any] = {"source": self.source, "label": self.label, "prob": self.prob}
        if probs:
            record["probs"] = self.probs
        return record


class _Pipeline:
    """A loaded model of one task, and the chunked, sorted, batched loop over inputs."""

    task: ClassVar[str]
    # Texts per batch on a CPU when the caller gives none; GPU_BATCH_FACTOR times that on a GPU.
    batch_size: ClassVar[int] = 32

    def __init__(self, loaded: LoadedModel, device: torch.device) -> None:
        if loaded.config.task != self.task:
            raise ModelError(f"{loaded.path} holds a {loaded.config.task} model, not {self.task}")
        self.loaded = loaded
        self.model = loaded.model
        self.config = loaded.config
        self.tokenizer = loaded.tokenizer
        self.device = device
        self.int8 = False  # int8 linear layers (set by `load`)

    @classmethod
    def load(
        cls: type[P],
        model_dir: str | Path | None = None,
        *,
        device: str = "auto",
        threads: int | None = None,
        int8: bool = False,
    ) -> P:
        """Load a model directory for this task.

        Args:
            model_dir: the directory `attn train` wrote; None = the default model of the task.
            device: "auto", "cpu", "cuda" or "mps".
            threads: set torch's (process-wide) CPU thread count to this; None leaves it as
                it is. With workers, the threads of all workers together. Nothing else of
                the process changes: an application applies the rest of its settings itself
                (`attn.model.device.apply_process_settings`, as the CLI does).
            int8: quantize the linear layers to int8 (CPU only; faster, about the same
                output).

        Raises:
            ModelError: no model (with a hint to run `attn train`), or a broken one, or a
                model of another task.
            ValueError: the device is unknown or unavailable.
        """
        from attn.data.home import default_model_dir
        from attn.model.device import resolve_device

        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        resolved = resolve_device(device)
        if model_dir is None:
            model_dir = default_model_dir(cls.task)
            if not ModelDir(model_dir).is_model():
                raise ModelError(
                    f"no {cls.task} model at {model_dir}; train one with `attn train "
                    f"{cls.task}` or pass -m/--model DIR"
                )
        if int8:
            from attn.model.decoding.quantize import check_int8

            check_int8(resolved)
        loaded = load_model(model_dir, task=cls.task, device=resolved)
        pipeline = cls(loaded, resolved)
        pipeline.int8 = int8
        # The decoder's steps are prepared from the float weights, before quantization.
        pipeline.prepare()
        if int8:
            from attn.model.decoding.quantize import quantize_int8

            quantize_int8(loaded.model)
        elif resolved.type == "cpu":
            from attn.model.device import column_major_linears

            column_major_linears(loaded.model)
        return pipeline

    def prepare(self) -> None:
        """Arrange the loaded weights for this task's inference (before `load` quantizes)."""

    def worker_count(self, workers: int | None, texts: int | None = None) -> int:
        """How many worker processes a run uses.

        Args:
            workers: a number, or None for automatic: on the CPU, one per torch thread
                (each worker then runs one thread) when there are more than
                `AUTO_WORKERS_MIN_TEXTS` texts; else 1 (this process).
            texts: the number of texts, when known (None: many).
        """
        # Forked workers share the CPU weights; a GPU does not survive a fork.
        if self.device.type != "cpu" or not _can_fork():
            return 1
        if workers is not None:
            return workers
        if texts is not None and texts <= AUTO_WORKERS_MIN_TEXTS:
            return 1
        return max(1, min(torch.get_num_threads(), len(os.sched_getaffinity(0))))

    def _run(
        self,
        texts: Iterable[str],
        process: Callable[[Tensor, Tensor, list[int]], tuple[list[Out], int]],
        make: Callable[[str, Out | None, bool], R],
        *,
        batch_size: int | None,
        batch_tokens: int | None,
        chunk_size: int,
        progress: ProgressCallback | None,
        workers: int | None = 1,
    ) -> Iterator[R]:
        """Chunk, sort by length, batch, run `process` per batch, yield results in input order.

        Args:
            process: (src, src_mask) on the device, each row's index in the whole input ->
                (one output per row, pieces generated).
            make: (text, its output or None for an empty text, truncated) -> the result.
            workers: processes that run batches side by side (see `worker_count`); each is
                forked after the model is loaded, so it shares the weights.

        Shape: process gets src, src_mask (B, S), trimmed to the longest row of the batch.

        Raises:
            ValueError: a batch, chunk or worker count below 1 (at the call, not at the
                first result).
        """
        if batch_size is None:
            batch_size = self.batch_size * (1 if self.device.type == "cpu" else GPU_BATCH_FACTOR)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if batch_tokens is not None and batch_tokens < 1:
            raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")

        def run_job(job: _Job) -> tuple[list[R], int]:
            batch_texts, ids, mask, truncated, indices = job
            src, src_mask = ids.to(self.device), mask.to(self.device)  # (B, S)
            outputs, pieces = process(src, src_mask, indices)
            results = [
                make(text, output, cut)
                for text, output, cut in zip(batch_texts, outputs, truncated, strict=True)
            ]
            return results, pieces

        return self._results(
            texts, run_job, make, batch_size, batch_tokens, chunk_size, progress, workers
        )

    def _jobs(
        self, chunk: list[str], batch_size: int, batch_tokens: int | None, indices: list[int]
    ) -> list[tuple[list[int], _Job]]:
        """The batches of a chunk: (positions in the chunk, job); empty texts skipped.
        `indices` holds each text's index in the whole input.

        Batches hold texts of similar lengths in pieces: the chunk comes sorted by characters,
        and is sorted again by pieces once encoded (a third less padding on Multi30k, and
        outputs that end closer together).
        """
        real = [i for i, text in enumerate(chunk) if text.strip()]
        if not real:
            return []
        enc = self.tokenizer.encode_batch(
            [chunk[i] for i in real], max_length=self.config.max_length, keep=self.config.keep
        )  # ids, mask (N, T)
        lengths = enc.mask.sum(1).tolist()  # (N,)
        by_pieces = sorted(range(len(real)), key=lengths.__getitem__)  # stable
        batches = _batches([lengths[j] for j in by_pieces], batch_size, batch_tokens)
        jobs = []
        for batch in ([by_pieces[k] for k in b] for b in batches):
            width = max(lengths[j] for j in batch)
            rows = torch.tensor(batch)
            jobs.append(
                (
                    [real[j] for j in batch],
                    (
                        [chunk[real[j]] for j in batch],
                        enc.ids[rows, :width],  # (B, S)
                        enc.mask[rows, :width],  # (B, S)
                        [enc.truncated[j] for j in batch],
                        [indices[real[j]] for j in batch],
                    ),
                )
            )
        return jobs

    def _results(
        self,
        texts: Iterable[str],
        run_job: Callable[[_Job], tuple[list[R], int]],
        make: Callable[[str, Out | None, bool], R],
        batch_size: int,
        batch_tokens: int | None,
        chunk_size: int,
        progress: ProgressCallback | None,
        workers: int | None,
    ) -> Iterator[R]:
        from attn.data import restore_order, sorted_chunks

        texts = iter(texts)
        head: list[str] = []
        if workers is None:
            head = list(itertools.islice(texts, AUTO_WORKERS_MIN_TEXTS + 1))
            done = len(head) <= AUTO_WORKERS_MIN_TEXTS
            n_workers = self.worker_count(None, len(head) if done else None)
        else:
            n_workers = self.worker_count(workers)
        # Characters are a cheap proxy for pieces when sorting: the chunk is encoded once, after.
        chunks = sorted_chunks(itertools.chain(head, texts), chunk_size, key=len)
        if n_workers > 1:
            yield from self._parallel(
                chunks, run_job, make, batch_size, batch_tokens, n_workers, progress
            )
            return
        start = 0  # the index in the whole input of the chunk's first text
        for chunk, order in chunks:
            results = [make(text, None, False) for text in chunk]
            indices = [start + i for i in order]
            start += len(chunk)
            for positions, job in self._jobs(chunk, batch_size, batch_tokens, indices):
                done_results, pieces = run_job(job)
                for i, result in zip(positions, done_results, strict=True):
                    results[i] = result
                if progress is not None:
                    progress(len(positions), pieces)
            yield from restore_order(results, order)

    def _parallel(
        self,
        chunks: Iterator[tuple[list[str], list[int]]],
        run_job: Callable[[_Job], tuple[list[R], int]],
        make: Callable[[str, Out | None, bool], R],
        batch_size: int,
        batch_tokens: int | None,
        n_workers: int,
        progress: ProgressCallback | None,
    ) -> Iterator[R]:
        """`_results` with forked workers: the batches of two chunks are in flight at a time
        (so no worker waits while a chunk ends), and a chunk's results are yielded in input
        order once all its batches are back. Workers end with the iterator, also when it is
        closed early or interrupted."""
        import multiprocessing

        from attn.data import restore_order

        threads = max(1, torch.get_num_threads() // n_workers)
        # A forked worker inherits its arguments (nothing is pickled): `run_job` reaches it
        # through the initializer, and the parent holds no state for it.
        pool = multiprocessing.get_context("fork").Pool(
            n_workers, initializer=_Worker.start, initargs=(run_job, threads)
        )
        finished = False
        try:
            pending: deque = deque()
            start = 0
            for chunk, order in chunks:
                # Longest batches first (a chunk's are sorted by length): the last batches to
                # finish are then short ones, and no worker waits long for another.
                indices = [start + i for i in order]
                start += len(chunk)
                jobs = self._jobs(chunk, batch_size, batch_tokens, indices)[::-1]
                running = [(pos, pool.apply_async(_Worker.work, (job,))) for pos, job in jobs]
                pending.append((chunk, order, running))
                while len(pending) > 1:
                    yield from _collect(*pending.popleft(), make, restore_order, progress)
            while pending:
                yield from _collect(*pending.popleft(), make, restore_order, progress)
            finished = True
        finally:
            if finished:
                pool.close()
            else:
                pool.terminate()
            pool.join()


class Seq2Seq(_Pipeline):
    """Translation and summarization: one search; what sets the tasks apart is data (the
    class attributes below), set by `Translator` and `Summarizer`."""

    # The relative length rule of the task: at most a * source_pieces + b output pieces.
    max_length_a: ClassVar[float]
    max_length_b: ClassVar[int]
    # The task's `no_repeat_ngram` when the caller gives none.
    default_no_repeat_ngram: ClassVar[int] = 0

    def __init__(self, loaded: LoadedModel, device: torch.device) -> None:
        super().__init__(loaded, device)
        from attn.model.decoding.shortlist import Shortlist

        # The decoder arranged for search (`prepare`); None: prepared per batch.
        self.step_weights: StepWeights | None = None

        # Written by training (translation models): see attn.model.decoding.shortlist.
        self.shortlist: Shortlist | None = None
        path = ModelDir(loaded.path).shortlist
        if path.is_file():
            self.shortlist = Shortlist.load(path, self.config.vocab_size).to(device)

    def prepare(self) -> None:
        """Arrange the decoder for incremental decoding, once for every batch."""
        self.step_weights = StepWeights(self.model, "int8" if self.int8 else "float32")

    # Over 80 lines: mostly its documented keyword options (the Python API's contract).
    def generate(
        self,
        texts: Iterable[str],
        *,
        beam: int = 4,
        n_best: int = 1,
        length_penalty: float = 0.6,
        no_repeat_ngram: int | None = None,
        max_length: int | None = None,
        batch_size: int | None = None,
        batch_tokens: int | None = None,
        chunk_size: int = 1000,
        progress: ProgressCallback | None = None,
        workers: int | None = 1,
        shortlist: bool = True,
        align: bool = False,
        sample: bool = False,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> Iterator[Generation]:
        """Translate (`Translator.translate`) or summarize (`Summarizer.summarize`) texts;
        yields one `Generation` per text, in input order.

        Args:
            texts: a list or an iterator of texts (read lazily, `chunk_size` at a time).
            beam: beam size; 1 = greedy search.
            n_best: hypotheses kept per text (<= beam), in `Generation.n_best`.
            length_penalty: alpha of the GNMT length penalty ((5 + len) / 6) ** alpha.
            no_repeat_ngram: forbid repeated n-grams of this size in an output, and a piece
                three times in a row; 0 = off. None = the task's default: 0 to translate,
                6 pieces to summarize (summaries otherwise tend to loop; 3 pieces would
                forbid writing a name made of several pieces, like DialogSum's `#Person1#`,
                twice).
            max_length: cap on output pieces; None = 1.5 * source pieces + 10 to translate,
                source pieces + 10 to summarize. Both are capped by the model's max_length.
            batch_size: texts per batch (each holds `beam` hypotheses); None = 32 on a
                CPU, 256 on a GPU (where a batch costs about as much as one sentence).
            batch_tokens: instead of `batch_size`, at most this many source pieces per batch
                (padding included).
            chunk_size: texts read and sorted by length together.
            progress: called after each batch with (texts, output pieces).
            workers: processes working on batches side by side, each forked from this one
                after loading (CPU; torch's threads are split among them); None = automatic
                (one per thread for more than 64 texts, see `worker_count`).
            shortlist: decode each batch over the target pieces the model's lexical
                shortlist allows for its source pieces (faster); False, or a model without
                one (summarization models): over the whole vocabulary.
            align: give each result the word alignment of its text and best output
                (`Generation.alignment`), from the cross-attention over the ids and pieces of
                its own search ([] for an empty text).
            sample: draw each piece from the model's distribution (`beam` is not used);
                `n_best` samples per text, best score first.
            temperature, top_k, top_p, seed: how to sample (only with `sample`): temperature
                (default 1; 0 = greedy), the k most probable pieces only (default: all; 1 =
                greedy), the nucleus of probability top_p only (default 1), the seed of the
                random numbers (default 0; with a text's index in `texts` it decides its
                samples, whatever the batches and workers).

        Raises:
            ValueError: an option is out of range, or a sampling option without `sample`.
        """
        from attn.model.decoding.sampling import sampling_options

        sampling = sampling_options(sample, n_best, temperature, top_k, top_p, seed)
        if sampling is not None:
            beam = n_best = 1  # (the search's options; sampling.n holds the samples)
        options = self._options(beam, n_best, length_penalty, no_repeat_ngram, max_length)

        def process(src: Tensor, mask: Tensor, indices: list[int]) -> tuple[list[_Searched], int]:
            hyps = self._search(src, mask, options, shortlist, sampling, indices)
            pieces = sum(len(h[0].tokens) for h in hyps)
            if not align:
                return [(h, None) for h in hyps], pieces
            from attn.model.inference.attention_maps import search_alignments

            pairs = search_alignments(self.loaded, src, mask, [h[0].tokens for h in hyps])
            return list(zip(hyps, pairs, strict=True)), pieces

        def make(text: str, searched: _Searched | None, truncated: bool) -> Generation:
            if searched is None or not searched[0]:  # an empty text: no words to align
                return Generation(text, "", alignment=[] if align else None)
            hyps, alignment = searched
            outputs = self.tokenizer.decode([h.tokens for h in hyps])
            n_best = [Candidate(o, h.score, h.logprob) for o, h in zip(outputs, hyps, strict=True)]
            best = n_best[0]
            return Generation(
                text, best.text, best.score, best.logprob, n_best, truncated, alignment
            )

        return self._run(
            texts,
            process,
            make,
            batch_size=batch_size,
            batch_tokens=batch_tokens,
            chunk_size=chunk_size,
            progress=progress,
            workers=workers,
        )

    def attention_maps(
        self,
        text: str,
        *,
        beam: int = 4,
        length_penalty: float = 0.6,
        no_repeat_ngram: int | None = None,
        max_length: int | None = None,
        shortlist: bool = True,
    ) -> AttentionMaps:
        """The attention weights behind the output `generate` gives `text` with these options
        (`POST /attention`): the search's own ids and best output, the weights recorded on
        them in one teacher-forced pass (`attn.model.inference.attention_maps`).

        Raises:
            ValueError: the text is empty, or an option is out of range.
        """
        from attn.model.inference.attention_maps import output_maps

        if not text.strip():
            raise ValueError("the text is empty")
        options = self._options(beam, 1, length_penalty, no_repeat_ngram, max_length)
        enc = self.tokenizer.encode_batch(
            [text], max_length=self.config.max_length, keep=self.config.keep
        )  # ids, mask (1, S)
        src, mask = enc.ids.to(self.device), enc.mask.to(self.device)
        best = self._search(src, mask, options, shortlist)[0][0]
        return output_maps(self.loaded, src, mask, best.tokens, enc.truncated[0])

    def _options(
        self,
        beam: int,
        n_best: int,
        length_penalty: float,
        no_repeat_ngram: int | None,
        max_length: int | None,
    ) -> GenerationOptions:
        if no_repeat_ngram is None:
            no_repeat_ngram = self.default_no_repeat_ngram
        return GenerationOptions(
            beam=beam,
            n_best=n_best,
            length_penalty=length_penalty,
            no_repeat_ngram=no_repeat_ngram,
            max_length=max_length,
            max_length_a=self.max_length_a,
            max_length_b=self.max_length_b,
        )

    def _search(
        self,
        src: Tensor,
        mask: Tensor,
        options: GenerationOptions,
        shortlist: bool,
        sampling: SamplingOptions | None = None,
        indices: list[int] | None = None,
    ) -> list[list[Hypothesis]]:
        """The search of a batch: each sentence's hypotheses, best first; with `sampling`,
        its samples, drawn by its index in the input (`indices`). Shape: (B, S)."""
        words = self.shortlist if shortlist else None
        allowed = None if words is None else words.candidates(src, mask)
        if sampling is not None:
            from attn.model.decoding.sampling import sample

            assert indices is not None, "sampling needs each sentence's index in the input"
            return sample(
                self.model,
                src,
                mask,
                options,
                sampling,
                indices,
                allowed=allowed,
                weights=self.step_weights,
            )
        return generate(self.model, src, mask, options, allowed=allowed, weights=self.step_weights)


class Translator(Seq2Seq):
    """Translate with a model `attn train translate` wrote. Load with `Translator.load(dir)`."""

    task = "translate"
    max_length_a = 1.5
    max_length_b = 10

    translate = Seq2Seq.generate


class Summarizer(Seq2Seq):
    """Summarize with a model `attn train summarize` wrote. Load with `Summarizer.load(dir)`."""

    task = "summarize"
    max_length_a = 1.0
    max_length_b = 10
    default_no_repeat_ngram = 6

    summarize = Seq2Seq.generate


class SentimentClassifier(_Pipeline):
    """Classify sentiment with a model `attn train sentiment` wrote."""

    task = "sentiment"
    batch_size = 64

    def classify(
        self,
        texts: Iterable[str],
        *,
        batch_size: int | None = None,
        batch_tokens: int | None = None,
        chunk_size: int = 1000,
        progress: ProgressCallback | None = None,
        workers: int | None = 1,
    ) -> Iterator[Classification]:
        """Classify texts; yields one `Classification` per text, in input order.

        Args:
            texts: a list or an iterator of texts (read lazily, `chunk_size` at a time).
            batch_size / batch_tokens / chunk_size / progress / workers: as for
                `Translator.translate`.

        Raises:
            ValueError: an option is out of range.
        """
        labels = self.config.labels

        @torch.inference_mode()
        def process(src: Tensor, mask: Tensor, _: list[int]) -> tuple[list[list[float]], int]:
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
            workers=workers,
        )


# The pipeline of each task.
PIPELINES: dict[str, type[Translator | Summarizer | SentimentClassifier]] = {
    "translate": Translator,
    "summarize": Summarizer,
    "sentiment": SentimentClassifier,
}


def load_pipeline(
    task: str,
    model_dir: str | Path | None = None,
    *,
    device: str = "auto",
    threads: int | None = None,
    int8: bool = False,
) -> Translator | Summarizer | SentimentClassifier:
    """The pipeline of `task` for a model directory (None: the task's default model); the
    arguments are those of `load`.

    Raises:
        ModelError: no model, a broken one, or one of another task.
        ValueError: an unknown task, or a device that is unknown or unavailable.
    """
    from attn.data.task_files import check_task

    check_task(task)
    return PIPELINES[task].load(model_dir, device=device, threads=threads, int8=int8)


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


class _Worker:
    """What a forked worker process runs: `start` (the pool's initializer, in the worker)
    keeps the job function it was given; `work` (pickled by name) runs a job with it."""

    run: ClassVar[Callable[[_Job], tuple[list[Any], int]] | None] = None

    @staticmethod
    def start(run_job: Callable[[_Job], tuple[list[Any], int]], threads: int) -> None:
        # Ctrl-C reaches the whole process group: the parent handles it and ends the workers.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        torch.set_num_threads(threads)
        _Worker.run = run_job

    @staticmethod
    def work(job: _Job) -> tuple[list[Any], int]:
        assert _Worker.run is not None, "the pool starts each worker with its job function"
        return _Worker.run(job)


def _collect(
    chunk: list[str],
    order: list[int],
    running: list,
    make: Callable[[str, Any, bool], R],
    restore_order: Callable[[list[R], list[int]], list[R]],
    progress: ProgressCallback | None,
) -> list[R]:
    """Wait for a chunk's batches and return its results in input order."""
    results = [make(text, None, False) for text in chunk]
    for positions, pending in running:
        done_results, pieces = pending.get()
        for i, result in zip(positions, done_results, strict=True):
            results[i] = result
        if progress is not None:
            progress(len(positions), pieces)
    return restore_order(results, order)


def _batches(
    lengths: Sequence[int], batch_size: int, batch_tokens: int | None
) -> Sequence[Sequence[int]]:
    """Consecutive groups of `batch_size` rows, or token-budget batches with `batch_tokens`."""
    from attn.data import token_batches

    if batch_tokens is not None:
        return token_batches(lengths, batch_tokens, shuffle=False)
    n = len(lengths)
    return [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]
