"""The task-independent half of inference: a stream of texts cut into chunks, each chunk
sorted by length, encoded once and batched, the batches run in this process or in forked
workers, and the results yielded in input order as soon as a chunk is done.

A pipeline (`attn.model.inference.pipeline`) gives the per-batch function; `BatchRunner`
knows nothing of the task.
"""

from __future__ import annotations

import itertools
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

Out = TypeVar("Out")  # a model output for one text
R = TypeVar("R")  # a result object

# Called after each batch with the sentences done in it and the pieces generated for them
# (best hypotheses, EOS not counted), for progress displays and benchmarks.
ProgressCallback = Callable[[int, int], None]

# With workers="auto", inputs up to this many texts run in this process: forking workers
# costs more than it saves on a few sentences.
AUTO_WORKERS_MIN_TEXTS = 64
# Threads of each forked worker. One: GNU OpenMP (torch's CPU thread pool) does not survive a
# fork, so a child's first product on 2 or more threads hangs once the parent has run one on
# 2 or more (as loading does with --threads 4); 1 thread never enters the pool.
WORKER_THREADS = 1
# A GPU runs a batch of small-model steps in about the time of one sentence: batch wider there.
GPU_BATCH_FACTOR = 8

# A batch: its texts, their piece ids and mask (B, S) as the tokenizer collated them (on the
# CPU), their truncation flags, and their indices in the whole input (which seed sampling).
_Job = tuple[list[str], Tensor, Tensor, list[bool], list[int]]


class BatchRunner:
    """The chunked, sorted, batched loop over inputs, for a model on `device` whose
    `tokenizer` encodes texts up to `config.max_length` pieces (set by the subclass)."""

    # Texts per batch on a CPU when the caller gives none; GPU_BATCH_FACTOR times that on a GPU.
    batch_size: ClassVar[int] = 32
    device: torch.device
    tokenizer: Any
    config: Any

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
        process: Callable[[Tensor, Tensor, list[int], list[str]], tuple[list[Out], int]],
        make: Callable[[str, Out | None, bool], R],
        *,
        batch_size: int | None,
        batch_tokens: int | None,
        chunk_size: int,
        progress: ProgressCallback | None,
        workers: int | None = 1,
        tokenizer: Any = None,
    ) -> Iterator[R]:
        """Chunk, sort by length, batch, run `process` per batch, yield results in input order.

        Args:
            process: (src, src_mask) on the device, each row's index in the whole input, each
                row's text -> (one output per row, pieces generated).
            make: (text, its output or None for an empty text, truncated) -> the result.
            workers: processes that run batches side by side (see `worker_count`); each is
                forked after the model is loaded, so it shares the weights.
            tokenizer: what encodes the texts; None: `self.tokenizer` (another: the same
                with a target-language token before each text).

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
            outputs, pieces = process(src, src_mask, indices, batch_texts)
            results = [
                make(text, output, cut)
                for text, output, cut in zip(batch_texts, outputs, truncated, strict=True)
            ]
            return results, pieces

        encoder = self.tokenizer if tokenizer is None else tokenizer
        return self._results(
            texts, run_job, make, encoder, batch_size, batch_tokens, chunk_size, progress, workers
        )

    def _jobs(
        self,
        chunk: list[str],
        tokenizer: Any,
        batch_size: int,
        batch_tokens: int | None,
        indices: list[int],
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
        enc = tokenizer.encode_batch(
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
        tokenizer: Any,
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
                chunks, run_job, make, tokenizer, batch_size, batch_tokens, n_workers, progress
            )
            return
        start = 0  # the index in the whole input of the chunk's first text
        for chunk, order in chunks:
            results = [make(text, None, False) for text in chunk]
            indices = [start + i for i in order]
            start += len(chunk)
            for positions, job in self._jobs(chunk, tokenizer, batch_size, batch_tokens, indices):
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
        tokenizer: Any,
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

        # A forked worker inherits its arguments (nothing is pickled): `run_job` reaches it
        # through the initializer, and the parent holds no state for it.
        pool = multiprocessing.get_context("fork").Pool(
            n_workers, initializer=_Worker.start, initargs=(run_job,)
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
                jobs = self._jobs(chunk, tokenizer, batch_size, batch_tokens, indices)[::-1]
                # Ids and mask travel as numpy arrays (pickled by value): a tensor would go
                # through torch's file-descriptor sharing, whose server thread prints a
                # traceback when the parent ends first (`attn translate | head -1`).
                running = [
                    (pos, pool.apply_async(_Worker.work, (_as_arrays(job),))) for pos, job in jobs
                ]
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


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


class _Worker:
    """What a forked worker process runs: `start` (the pool's initializer, in the worker)
    keeps the job function it was given; `work` (pickled by name) runs a job with it."""

    run: ClassVar[Callable[[_Job], tuple[list[Any], int]] | None] = None

    @staticmethod
    def start(run_job: Callable[[_Job], tuple[list[Any], int]]) -> None:
        # Ctrl-C reaches the whole process group: the parent handles it and ends the workers.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        torch.set_num_threads(WORKER_THREADS)
        _Worker.run = run_job

    @staticmethod
    def work(job: tuple) -> tuple[list[Any], int]:
        assert _Worker.run is not None, "the pool starts each worker with its job function"
        texts, ids, mask, *rest = job
        return _Worker.run((texts, torch.from_numpy(ids), torch.from_numpy(mask), *rest))


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


def _as_arrays(job: _Job) -> tuple:
    """`job` with its ids and mask as numpy arrays (no copy), for a worker process."""
    texts, ids, mask, *rest = job
    return (texts, ids.numpy(), mask.numpy(), *rest)
