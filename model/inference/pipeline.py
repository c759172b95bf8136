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

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import Tensor

from attn.model.decoding.defaults import decoding_defaults
from attn.model.decoding.incremental import StepWeights
from attn.model.decoding.search import GenerationOptions, Hypothesis, generate
from attn.model.inference.guidance import allow_guide_pieces, text_guides
from attn.model.inference.results import Candidate, Classification, Generation
from attn.model.inference.runner import BatchRunner, ProgressCallback
from attn.model.storage.checkpoint import LoadedModel, ModelError, load_model
from attn.model.storage.layout import ModelDir

if TYPE_CHECKING:
    from attn.data.glossary import Glossary
    from attn.model.decoding.constraints import Guide
    from attn.model.decoding.sampling_options import SamplingOptions
    from attn.model.inference.attention_maps import AttentionMaps

# A sentence's hypotheses, best first, and the word alignment of the best one (or None).
_Searched = tuple[list[Hypothesis], list[tuple[int, int]] | None]
P = TypeVar("P", bound="_Pipeline")


class _Pipeline(BatchRunner):
    """A loaded model of one task; `BatchRunner` runs it over the inputs."""

    task: ClassVar[str]

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
                it is. Forked workers run one thread each, whatever it is. Nothing else of
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

    @property
    def n_parameters(self) -> int:
        """How many parameters the model has (`attn info`, `/health`)."""
        from attn.model.nn.transformer import count_parameters

        return count_parameters(self.model)


class Seq2Seq(_Pipeline):
    """Translation and summarization: one search; what sets the tasks apart is data (the
    class attributes below), set by `Translator` and `Summarizer`."""

    # The relative length rule of the task: at most a * source_pieces + b output pieces.
    max_length_a: ClassVar[float]
    max_length_b: ClassVar[int]

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
        precision = "int8" if self.int8 else "float32"
        self.step_weights = StepWeights(self.model, precision, pack=self.device.type == "cpu")

    # Over 80 lines: mostly its documented keyword options (the Python API's contract).
    def generate(
        self,
        texts: Iterable[str],
        *,
        beam: int | None = None,
        n_best: int = 1,
        length_penalty: float | None = None,
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
        constraints: Iterable[Sequence[str] | None] | None = None,
        prefix: str | Iterable[str | None] | None = None,
        glossary: Glossary | None = None,
        to: str | None = None,
    ) -> Iterator[Generation]:
        """Translate (`Translator.translate`) or summarize (`Summarizer.summarize`) texts;
        yields one `Generation` per text, in input order.

        Args:
            texts: a list or an iterator of texts (read lazily, `chunk_size` at a time).
            beam: beam size; 1 = greedy search. None = the task's default (4).
            n_best: hypotheses kept per text (<= beam), in `Generation.n_best`.
            length_penalty: alpha of the GNMT length penalty ((5 + len) / 6) ** alpha.
                None = the task's default (`attn.model.decoding.defaults`).
            no_repeat_ngram: forbid repeated n-grams of this size in an output, and a piece
                three times in a row; 0 = off. None = the task's default: 0 to translate,
                6 pieces to summarize (`attn.model.decoding.defaults` says why).
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
            constraints: per text, target texts that must appear in its output (lexically
                constrained beam search, `attn.model.decoding.constraints`); a text whose
                constraints cannot all be met gets the best output without them and
                `Generation.constraints_met` False. A text may also be a
                `attn.data.glossary.GuidedText` that carries its own.
            prefix: the text each output starts with (one string for all texts, or one per
                text; None or "" for none); the model continues it.
            glossary: wherever a source term of the glossary occurs in a text, its target
                term is a constraint of that text.
            to: the target language of a model that translates into several (an imported
                multilingual OPUS-MT model: `fra` puts its token `>>fra<<` before each text);
                such a model needs it, and another refuses it.

        Raises:
            ValueError: an option is out of range, a sampling option without `sample`,
                constraints or a prefix with `sample`, `to` missing or unknown (the message
                lists the model's languages), or (when its text is reached) a constraint or
                prefix longer than the model's max_length.
        """
        from attn.model.decoding.sampling_options import sampling_options

        sampling = sampling_options(sample, n_best, temperature, top_k, top_p, seed)
        source_tokenizer = self.source_tokenizer(to)
        if sampling is not None and (constraints, prefix, glossary) != (None, None, None):
            raise ValueError("constraints, prefixes and glossaries need beam search, not sample")
        if constraints is not None or prefix is not None:
            from attn.data.glossary import guided

            texts = guided(texts, constraints, prefix)
        if sampling is not None:
            beam = n_best = 1  # (the search's options; sampling.n holds the samples)
        options = self._options(beam, n_best, length_penalty, no_repeat_ngram, max_length)

        def process(
            src: Tensor, mask: Tensor, indices: list[int], batch: list[str]
        ) -> tuple[list[_Searched], int]:
            guides = text_guides(
                self.tokenizer, self.config.max_length, batch, glossary, sampling is not None
            )
            hyps = self._search(src, mask, options, shortlist, sampling, indices, guides)
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
            n_best = [
                Candidate(o, h.score, h.logprob, len(h.tokens) + 1)
                for o, h in zip(outputs, hyps, strict=True)
            ]
            best = n_best[0]
            met = hyps[0].constraints_met
            return Generation(
                text,
                best.text,
                best.score,
                best.logprob,
                n_best,
                truncated,
                alignment,
                constraints_met=met,
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
            tokenizer=source_tokenizer,
        )

    def source_tokenizer(self, to: str | None) -> Any:
        """The tokenizer of the source texts: the model's, or for a model that translates
        into several languages, the same with the token of language `to` before each text.

        Raises:
            ValueError: `to` is missing for such a model (the message lists its languages),
                unknown to it, or given to a model without language tokens.
        """
        return language_tokenizer(self.tokenizer, to)

    def attention_maps(
        self,
        text: str,
        *,
        beam: int | None = None,
        length_penalty: float | None = None,
        no_repeat_ngram: int | None = None,
        max_length: int | None = None,
        shortlist: bool = True,
        to: str | None = None,
    ) -> AttentionMaps:
        """The attention weights behind the output `generate` gives `text` with these options
        (`POST /attention`): the search's own ids and best output, the weights recorded on
        them in one teacher-forced pass (`attn.model.inference.attention_maps`). `to`: the
        target language of a multilingual model, as for `generate`.

        Raises:
            ValueError: the text is empty, `to` missing or unknown, or an option is out of
                range.
        """
        from attn.model.inference.attention_maps import output_maps

        if not text.strip():
            raise ValueError("the text is empty")
        options = self._options(beam, 1, length_penalty, no_repeat_ngram, max_length)
        enc = self.source_tokenizer(to).encode_batch(
            [text], max_length=self.config.max_length, keep=self.config.keep
        )  # ids, mask (1, S)
        src, mask = enc.ids.to(self.device), enc.mask.to(self.device)
        best = self._search(src, mask, options, shortlist)[0][0]
        return output_maps(self.loaded, src, mask, best.tokens, enc.truncated[0])

    def _options(
        self,
        beam: int | None,
        n_best: int,
        length_penalty: float | None,
        no_repeat_ngram: int | None,
        max_length: int | None,
    ) -> GenerationOptions:
        chosen = decoding_defaults(self.task).given(beam, length_penalty, no_repeat_ngram)
        return GenerationOptions(
            beam=chosen.beam,
            n_best=n_best,
            length_penalty=chosen.length_penalty,
            no_repeat_ngram=chosen.no_repeat_ngram,
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
        guides: list[Guide] | None = None,
    ) -> list[list[Hypothesis]]:
        """The search of a batch: each sentence's hypotheses, best first; with `sampling`,
        its samples, drawn by its index in the input (`indices`); with `guides`, outputs
        that hold their constraints and prefixes. Shape: (B, S)."""
        words = self.shortlist if shortlist else None
        allowed = None if words is None else words.candidates(src, mask)
        if allowed is not None and guides is not None:
            allow_guide_pieces(allowed, guides)
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
        return generate(
            self.model,
            src,
            mask,
            options,
            allowed=allowed,
            weights=self.step_weights,
            guides=guides,
            word_ends=None if guides is None else self._word_ends(),
        )

    def _word_ends(self) -> Tensor:
        """`word_end_table` of this model, made once."""
        if getattr(self, "_ends", None) is None:
            from attn.model.inference.guidance import word_end_table

            self._ends = word_end_table(self.tokenizer, self.config.vocab_size, self.config.eos_id)
        return self._ends


class Translator(Seq2Seq):
    """Translate with a model `attn train translate` wrote. Load with `Translator.load(dir)`.

    Attributes:
        language: the source language the model was trained on (config.json), which
            chooses the sentence splitter's rules; None: unknown (rule-based split).
    """

    task = "translate"
    max_length_a = 1.5
    max_length_b = 10

    def __init__(self, loaded: LoadedModel, device: torch.device) -> None:
        super().__init__(loaded, device)
        self.language: str | None = source_language(loaded.meta)

    def translate(
        self, texts: Iterable[str], *, split: str = "sentences", **options: Any
    ) -> Iterator[Generation]:
        """Translate texts; yields one `Generation` per text, in input order.

        Args:
            texts: a list or an iterator of texts (read lazily).
            split: "sentences": each text is split into sentences (a sentence longer than
                the model's max_length further, so nothing is cut off), they are
                translated in the batches of all texts and joined back with the text's
                own separators (`Generation.sentences` holds each sentence's result; see
                `attn.model.inference.sentences` for the joined n-best, scores and
                alignment). "none": each text is one input of the model, cut at max_length.
            options: those of `Seq2Seq.generate` (beam, n_best, align, batch_size, ...).

        Raises:
            ValueError: an unknown split, or an option out of range.
        """
        from attn.model.inference.sentences import (
            SentenceSplitter,
            check_split,
            translate_split,
        )

        check_split(split)
        if "constraints" in options or "prefix" in options:  # a text's own, not a sentence's
            from attn.data.glossary import guided

            texts = guided(texts, options.pop("constraints", None), options.pop("prefix", None))
        if split == "none":
            return self.generate(texts, **options)
        splitter = SentenceSplitter(
            self.source_tokenizer(options.get("to")),
            self.config.max_length,
            self.config.keep,
            self.language,
        )
        alpha = (
            decoding_defaults(self.task)
            .given(length_penalty=options.get("length_penalty"))
            .length_penalty
        )

        def run(sentences: Iterable[str]) -> Iterator[Generation]:
            return self.generate(sentences, **options)

        # Options are checked at the call, not at the first result.
        run([]).close()
        return translate_split(run, texts, splitter, alpha)


def source_language(meta: dict[str, Any]) -> str | None:
    """The source language config.json records: `languages.src` (written by training),
    else the `--src` of the training settings; None if neither."""
    languages = meta.get("languages")
    if isinstance(languages, dict) and isinstance(languages.get("src"), str):
        return languages["src"]
    src = meta.get("train", {}).get("src") if isinstance(meta.get("train"), dict) else None
    return src if isinstance(src, str) else None


class Summarizer(Seq2Seq):
    """Summarize with a model `attn train summarize` wrote. Load with `Summarizer.load(dir)`."""

    task = "summarize"
    max_length_a = 1.0
    max_length_b = 10

    def summarize(
        self, texts: Iterable[str], *, max_input: str = "whole", **options: Any
    ) -> Iterator[Generation]:
        """Summarize texts; yields one `Generation` per text, in input order.

        Args:
            texts: a list or an iterator of texts (read lazily).
            max_input: "whole": a text longer than the model's max_length is summarized in
                parts, then the parts' summaries are (`attn.model.inference.long_inputs`;
                `Generation.split_further` says so); "cut": it is cut at max_length.
            options: those of `Seq2Seq.generate` (beam, n_best, batch_size, ...).

        Raises:
            ValueError: an unknown max_input, or an option out of range.
        """
        from attn.model.inference.long_inputs import (
            PartSplitter,
            check_max_input,
            summarize_whole,
        )

        check_max_input(max_input)
        if max_input == "cut":
            return self.generate(texts, **options)
        self.generate([], **options).close()  # options are checked at the call
        splitter = PartSplitter(self.tokenizer, self.config.max_length)
        return summarize_whole(self.generate, texts, splitter, options)


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
        max_input: str = "whole",
    ) -> Iterator[Classification]:
        """Classify texts; yields one `Classification` per text, in input order.

        Args:
            texts: a list or an iterator of texts (read lazily, `chunk_size` at a time).
            batch_size / batch_tokens / chunk_size / progress / workers: as for
                `Translator.translate`.
            max_input: "whole": a text longer than the model's max_length is classified in
                overlapping windows whose probabilities are averaged
                (`attn.model.inference.long_inputs`; `Classification.split_further` says
                so); "cut": it is cut as the model was trained (`ModelConfig.keep`).

        Raises:
            ValueError: an unknown max_input, or an option out of range.
        """
        from attn.model.inference.long_inputs import (
            check_max_input,
            classify_whole,
            mean_window_probs,
        )

        check_max_input(max_input)
        if max_input == "whole":
            options = {
                "batch_size": batch_size,
                "batch_tokens": batch_tokens,
                "chunk_size": chunk_size,
                "progress": progress,
                "workers": workers,
                "max_input": "cut",
            }
            self.classify([], **options).close()  # options are checked at the call
            return classify_whole(
                lambda fitting: self.classify(fitting, **options),
                texts,
                lambda windows: mean_window_probs(self.model, windows, self.device),
                self.tokenizer,
                self.config.max_length,
                self.config.labels,
            )
        labels = self.config.labels

        @torch.inference_mode()
        def process(
            src: Tensor, mask: Tensor, _: list[int], __: list[str]
        ) -> tuple[list[list[float]], int]:
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


def language_tokenizer(tokenizer: Any, to: str | None) -> Any:
    """`tokenizer`, or for a model that translates into several languages (its vocabulary
    has `>>xx<<` tokens), the same with the token of language `to` before each source text.

    Raises:
        ValueError: `to` is missing for such a model (the message lists its languages),
            unknown to it, or given to a model without language tokens.
    """
    known = tokenizer.language_tokens
    if to is None and known:
        codes = ", ".join(token[2:-2] for token in known)
        raise ValueError(
            f"this model translates into several languages: choose one with --to (it knows {codes})"
        )
    if to is None:
        return tokenizer
    if not known:
        raise ValueError(
            f"--to {to}: this model has no target-language tokens (>>xx<<); it translates "
            "into one language"
        )
    return tokenizer.for_language(to)
