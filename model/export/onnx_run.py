"""Run an ONNX export with ONNX Runtime: the reference for anyone decoding with the graphs.

`OnnxSeq2Seq.greedy` is attn's greedy search written against the two graphs with numpy,
step by step (see the README of an export): encode once, then feed the newest piece and the
key/value cache back into the decoder step until every sentence has ended. Its outputs are
attn's (`attn translate --beam 1 --no-shortlist`); tests check that they are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attn.model.export.metadata import output_cap, read_export_config
from attn.model.export.onnx_graphs import CLASSIFIER, DECODER_STEP, ENCODER
from attn.model.storage.checkpoint import load_tokenizer


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class _OnnxModel:
    def __init__(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.directory = directory
        self.config = read_export_config(directory)
        self.tokenizer = load_tokenizer(directory)

    def encode_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Source ids and mask of a batch, as attn encodes it (EOS last, cut to max_length).

        Shape: returns src_ids int64 (B, S), src_mask bool (B, S).
        """
        batch = self.tokenizer.encode_batch(
            list(texts), max_length=self.config.max_length, keep=self.config.keep
        )
        return batch.ids.numpy(), batch.mask.numpy()


class OnnxSeq2Seq(_OnnxModel):
    """encoder.onnx and decoder_step.onnx of a translation or summarization export."""

    def __init__(self, directory: str | Path, threads: int = 1) -> None:
        super().__init__(directory)
        self.encoder = _session(self.directory / ENCODER, threads)
        self.decoder = _session(self.directory / DECODER_STEP, threads)
        self.layers = self.config.n_decoder_layers

    def encode(self, src_ids: np.ndarray, src_mask: np.ndarray) -> tuple[np.ndarray, list]:
        """Run encoder.onnx. Returns memory (B, S, d) and per decoder layer (key, value)
        of its cross-attention, each (B, h, S, d_head)."""
        memory, *cross = self.encoder.run(None, {"src_ids": src_ids, "src_mask": src_mask})
        return memory, [(cross[2 * i], cross[2 * i + 1]) for i in range(self.layers)]

    def step(
        self, tgt_ids: np.ndarray, src_mask: np.ndarray, past: list, cross: list
    ) -> tuple[np.ndarray, list]:
        """Run decoder_step.onnx on the newest pieces (B, 1). Returns the logits (B, vocab)
        and the grown self-attention cache: per layer (key, value), (B, h, T + 1, d_head)."""
        feeds = {"tgt_ids": tgt_ids, "src_mask": src_mask}
        for i, ((k, v), (ck, cv)) in enumerate(zip(past, cross, strict=True)):
            feeds |= {f"past_key_{i}": k, f"past_value_{i}": v}
            feeds |= {f"cross_key_{i}": ck, f"cross_value_{i}": cv}
        logits, *present = self.decoder.run(None, feeds)
        return logits, [(present[2 * i], present[2 * i + 1]) for i in range(self.layers)]

    def greedy_ids(self, src_ids: np.ndarray, src_mask: np.ndarray) -> list[list[int]]:
        """attn's greedy search: per sentence the generated ids, EOS not included.

        Shape: src_ids int64 (B, S), src_mask bool (B, S).
        """
        c = self.config
        b = src_ids.shape[0]
        caps = np.array([output_cap(int(n), c) for n in src_mask.sum(1)])  # (B,)
        _, cross = self.encode(src_ids, src_mask)
        empty = np.zeros((b, c.n_heads, 0, c.d_head), dtype=np.float32)
        past = [(empty, empty)] * self.layers
        tokens = np.full((b, 1), c.start_id, dtype=np.int64)  # the newest piece of each row
        outputs: list[list[int]] = [[] for _ in range(b)]
        live = np.arange(b)  # the sentence of each row still decoding
        for t in range(int(caps.max()) + 1):
            logits, past = self.step(tokens, src_mask, past, cross)  # (R, vocab)
            logits[:, [c.pad_id, c.bos_id]] = -np.inf  # never generated
            at_cap = caps[live] <= t
            logits[at_cap, : c.eos_id] = -np.inf  # a sentence at its cap may only end
            logits[at_cap, c.eos_id + 1 :] = -np.inf
            best = logits.argmax(-1)  # (R,)
            for row, sentence in enumerate(live):
                if best[row] != c.eos_id:
                    outputs[sentence].append(int(best[row]))
            keep = best != c.eos_id
            if not keep.any():
                break
            live, tokens, src_mask = live[keep], best[keep, None], src_mask[keep]
            past = [(k[keep], v[keep]) for k, v in past]
            cross = [(k[keep], v[keep]) for k, v in cross]
        return outputs

    def greedy(self, texts: Sequence[str]) -> list[str]:
        """Translate (or summarize) texts with greedy search; "" for an empty text."""
        real = [i for i, text in enumerate(texts) if text.strip()]
        results = [""] * len(texts)
        if real:
            ids = self.greedy_ids(*self.encode_texts([texts[i] for i in real]))
            for i, text in zip(real, self.tokenizer.decode(ids), strict=True):
                results[i] = text
        return results


class OnnxClassifier(_OnnxModel):
    """classifier.onnx of a sentiment export."""

    def __init__(self, directory: str | Path, threads: int = 1) -> None:
        super().__init__(directory)
        self.session = _session(self.directory / CLASSIFIER, threads)

    def scores(self, src_ids: np.ndarray, src_mask: np.ndarray) -> np.ndarray:
        """Class scores (B, n_classes); their softmax is the probabilities."""
        return self.session.run(None, {"src_ids": src_ids, "src_mask": src_mask})[0]

    def classify(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Each label's probability, per text (texts must not be empty)."""
        scores = self.scores(*self.encode_texts(texts))
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        return [dict(zip(self.config.labels, map(float, p), strict=True)) for p in probs]
