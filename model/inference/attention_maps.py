"""Attention maps: the attention weights a model used on a text, as plain data.

A sequence-to-sequence model first generates its output (`attention_maps`: greedy search;
`Translator.attention_maps` and `--align`: the search that gave the translation, on its own
ids); then ONE teacher-forced forward pass over those source ids and output pieces records
every layer's weights on the reference attention path (`Transformer.encode/decode(...,
attn=records)`), so the maps are what the model computed for this output, not an
approximation, and nothing is tokenized twice.

Axes. The encoder reads the source pieces (EOS last). Decoder step i reads
`target_tokens[i]` (BOS, then the output) and produces `output_tokens[i]` (the output, then
EOS). Rows of the decoder self-attention and cross-attention maps are those steps, labelled
by the piece each step produced; their columns are the pieces the decoder read (decoder
self-attention, so the causal mask leaves the upper triangle empty) or the source pieces
(cross-attention).

`align` turns cross-attention into word alignments ("0-0 1-2 2-1"), the output format of the
established NMT toolkits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from attn.model.nn.model import Classifier
from attn.model.nn.transformer import AttentionRecord, Transformer

if TYPE_CHECKING:
    from attn.model.storage.checkpoint import LoadedModel

KINDS = ("encoder", "decoder", "cross")
WORD_START = "\u2581"  # SentencePiece's mark of a piece that follows a space

# What each kind's rows and columns are: names of the token lists of `AttentionMaps`.
AXES = {
    "encoder": ("source", "source"),
    "decoder": ("output", "target"),
    "cross": ("output", "source"),
}


@dataclass
class AttentionMap:
    """One heatmap: a kind, a layer, one head (or the mean over heads), and its labels.

    Shape: matrix (len(rows), len(columns)); each row sums to 1 over the keys it may see.
    """

    kind: str
    layer: int
    head: int | None  # None: the mean over heads
    rows: list[str]
    columns: list[str]
    matrix: Tensor


@dataclass
class AttentionMaps:
    """Every attention weight of one forward pass over one text.

    Attributes:
        task: the model's task.
        source_tokens: pieces the encoder read, EOS last.
        target_tokens: pieces the decoder read: BOS, then the output (empty for sentiment).
        output_tokens: pieces the decoder produced: the output, then EOS (empty for sentiment).
        output: the decoded output text, or the predicted label for sentiment.
        probability: sentiment only: the probability of the predicted label.
        weights: kind -> (n_layers, n_heads, T_q, T_k) float32 on the CPU.
        truncated: the text was longer than the model's max_length and was cut.
    """

    task: str
    source_tokens: list[str]
    target_tokens: list[str]
    output_tokens: list[str]
    output: str
    probability: float | None
    weights: dict[str, Tensor]
    truncated: bool

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if k in self.weights)

    def n_layers(self, kind: str) -> int:
        return self.weights[kind].size(0)

    @property
    def n_heads(self) -> int:
        return next(iter(self.weights.values())).size(1)

    def tokens(self, axis: str) -> list[str]:
        """The token list named by an entry of `AXES`: "source", "target" or "output"."""
        return {
            "source": self.source_tokens,
            "target": self.target_tokens,
            "output": self.output_tokens,
        }[axis]

    def select(
        self,
        kinds: Sequence[str] | None = None,
        layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
    ) -> list[AttentionMap]:
        """The maps to show, kind by kind, layer by layer.

        Args:
            kinds: kinds to include (default: all the model has).
            layers: layer indices (default: all).
            heads: head indices, one map each; None gives one map per layer, averaged over
                heads.

        Raises:
            ValueError: a kind the model lacks, or a layer or head out of range.
        """
        chosen = []
        for kind in self.kinds if kinds is None else kinds:
            if kind not in self.weights:
                raise ValueError(f"a {self.task} model has no {kind} attention")
            w = self.weights[kind]  # (L, h, T_q, T_k)
            _check_range("layer", layers, w.size(0))
            _check_range("head", heads, w.size(1))
            rows, columns = (self.tokens(axis) for axis in AXES[kind])
            for layer in range(w.size(0)) if layers is None else layers:
                if heads is None:
                    chosen.append(AttentionMap(kind, layer, None, rows, columns, w[layer].mean(0)))
                    continue
                for head in heads:
                    chosen.append(AttentionMap(kind, layer, head, rows, columns, w[layer, head]))
        return chosen

    def choose(
        self,
        kind: str = "all",
        layer: int | None = None,
        head: int | None = None,
        heads: bool = False,
    ) -> list[AttentionMap]:
        """The maps `attn attention --kind --layer --head --heads` shows (and POST /attention).

        Args:
            kind: "encoder", "decoder", "cross" or "all".
            layer: one layer, or None for every layer.
            head: one head, or None for the mean over heads.
            heads: one map per head instead (not with `head`).

        Raises:
            ValueError: a kind the model lacks, or a layer or head out of range; the message
                gives the model's layers and heads.
        """
        try:
            return self.select(
                None if kind == "all" else [kind],
                None if layer is None else [layer],
                list(range(self.n_heads)) if heads else None if head is None else [head],
            )
        except ValueError as e:
            layers = ", ".join(f"{self.n_layers(k)} {k} layers" for k in self.kinds)
            raise ValueError(f"{e} (this model: {layers}, {self.n_heads} heads)") from None

    def alignment(self) -> list[tuple[int, int]]:
        """Word alignment of the text and the output (`align`); [] for sentiment."""
        if "cross" not in self.weights:
            return []
        return align(self.source_tokens[:-1], self.output_tokens[:-1], self.weights["cross"])

    def to_dict(self, maps: Sequence[AttentionMap], digits: int = 6) -> dict[str, Any]:
        """JSON-ready data: the token lists and the chosen maps (head "mean" when averaged)."""
        return {
            "task": self.task,
            "output": self.output,
            **({"probability": self.probability} if self.probability is not None else {}),
            "truncated": self.truncated,
            "source_tokens": self.source_tokens,
            "target_tokens": self.target_tokens,
            "output_tokens": self.output_tokens,
            **(
                {"alignment": [list(p) for p in self.alignment()]}
                if "cross" in self.weights
                else {}
            ),
            "maps": [
                {
                    "kind": m.kind,
                    "layer": m.layer,
                    "head": "mean" if m.head is None else m.head,
                    "rows": AXES[m.kind][0],
                    "columns": AXES[m.kind][1],
                    "matrix": [[round(x, digits) for x in row] for row in m.matrix.tolist()],
                }
                for m in maps
            ],
        }


def _check_range(name: str, values: Sequence[int] | None, n: int) -> None:
    for v in values or ():
        if not 0 <= v < n:
            raise ValueError(f"{name} must be between 0 and {n - 1}, got {v}")


def record_attention(
    model: Transformer | Classifier, src: Tensor, src_mask: Tensor, tgt: Tensor | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """One forward pass that records the weights of every attention layer.

    Args:
        model: the network, in eval mode (dropout would change the weights).
        src, src_mask: source ids (EOS last) and True where a piece is real.
        tgt: decoder input ids (BOS first) for a teacher-forced pass; None for sentiment,
            which runs the classifier instead.

    Shape:
        src, src_mask: (B, S); tgt: (B, T).
        returns logits ((B, T, V) or (B, n_classes)) and kind -> (B, L, h, T_q, T_k).
        Padded source keys get zero weight; rows of padded positions are meaningless.
    """
    records: list[AttentionRecord] = []
    with torch.inference_mode():
        if tgt is None:
            logits = model.classify(src, src_mask, attn=records)  # (B, C)
        else:
            memory = model.encode(src, src_mask, attn=records)  # (B, S, d)
            logits = model.decode(tgt, memory, src_mask, attn=records)  # (B, T, V)
    weights = {}
    for kind in KINDS:
        layers = sorted((r for r in records if r.kind == kind), key=lambda r: r.layer)
        if layers:
            weights[kind] = torch.stack([r.weights.float() for r in layers], dim=1)
    return logits, weights


def attention_maps(loaded: LoadedModel, text: str, to: str | None = None) -> AttentionMaps:
    """Run a model on one text and return every attention weight it used.

    Args:
        loaded: from `attn.model.storage.checkpoint.load_model` (eval mode).
        text: the input; cut to the model's max_length when longer (see `truncated`).
        to: the target language of a model that translates into several (`fra`).

    Raises:
        ValueError: the text is empty; `to` missing or unknown for a multilingual model, or
            given to another.
    """
    from attn.model.decoding.search import GenerationOptions, generate
    from attn.model.inference.pipeline import language_tokenizer

    if not text.strip():
        raise ValueError("the text is empty")
    model, config = loaded.model, loaded.config
    tok = language_tokenizer(loaded.tokenizer, to)
    device = next(model.parameters()).device
    batch = tok.encode_batch([text], max_length=config.max_length, device=device, keep=config.keep)
    source = [tok.id_to_piece(i) for i in batch.ids[0].tolist()]
    if config.task == "sentiment":
        logits, weights = record_attention(model, batch.ids, batch.mask)
        probs = logits[0].float().softmax(-1)  # (C,)
        label = int(probs.argmax())
        return AttentionMaps(
            task=config.task,
            source_tokens=source,
            target_tokens=[],
            output_tokens=[],
            output=config.labels[label],
            probability=float(probs[label]),
            weights={k: w[0].cpu() for k, w in weights.items()},
            truncated=batch.truncated[0],
        )
    hyp = generate(model, batch.ids, batch.mask, GenerationOptions(beam=1))[0][0]
    return output_maps(loaded, batch.ids, batch.mask, hyp.tokens, batch.truncated[0])


def output_maps(
    loaded: LoadedModel, src: Tensor, src_mask: Tensor, output: list[int], truncated: bool
) -> AttentionMaps:
    """The maps of a sequence-to-sequence model on one source and the output a search gave.

    Shape: src, src_mask (1, S): the ids the search read; output: its pieces (no BOS, EOS).
    """
    config, tok = loaded.config, loaded.tokenizer
    n = int(src_mask[0].sum())
    tgt = torch.tensor([[config.start_id, *output]], device=src.device)  # (1, T)
    _, weights = record_attention(loaded.model, src[:, :n], src_mask[:, :n], tgt)
    return AttentionMaps(
        task=config.task,
        source_tokens=[tok.id_to_piece(i) for i in src[0, :n].tolist()],
        target_tokens=[tok.id_to_piece(i) for i in tgt[0].tolist()],
        output_tokens=[tok.id_to_piece(i) for i in [*output, config.eos_id]],
        output=tok.decode([output])[0],
        probability=None,
        weights={k: w[0].cpu() for k, w in weights.items()},
        truncated=truncated,
    )


def search_alignments(
    loaded: LoadedModel, src: Tensor, src_mask: Tensor, outputs: Sequence[list[int]]
) -> list[list[tuple[int, int]]]:
    """Word alignments of a batch's sources and the outputs its search gave, from one
    teacher-forced pass over the batch's own ids (`align`).

    Shape: src, src_mask (B, S), EOS last in each row; outputs: B lists of pieces (no BOS,
        EOS).
    """
    config, tok = loaded.config, loaded.tokenizer
    width = 1 + max((len(o) for o in outputs), default=0)
    tgt = torch.full((len(outputs), width), config.pad_id, dtype=torch.long)
    for row, output in enumerate(outputs):
        tgt[row, : len(output) + 1] = torch.tensor([config.start_id, *output])
    # Causal: the padding after a row's output changes none of its weights.
    _, weights = record_attention(loaded.model, src, src_mask, tgt.to(src.device))
    cross = weights["cross"].cpu()  # (B, L, h, T, S)
    lengths = src_mask.sum(1).tolist()
    ids = src.tolist()
    return [
        align(
            [tok.id_to_piece(i) for i in ids[row][: lengths[row] - 1]],  # EOS dropped
            [tok.id_to_piece(i) for i in output],
            cross[row],
        )
        for row, output in enumerate(outputs)
    ]


def word_index(pieces: Sequence[str]) -> list[int]:
    """The whitespace word each piece belongs to: a piece starting with "▁" starts a word.

    Example: ["▁the", "▁ca", "t", "▁sat"] -> [0, 1, 1, 2].
    """
    words, index = -1, []
    for i, piece in enumerate(pieces):
        if i == 0 or piece.startswith(WORD_START):
            words += 1
        index.append(words)
    return index


def align(
    src_pieces: Sequence[str], tgt_pieces: Sequence[str], cross_weights: Tensor
) -> list[tuple[int, int]]:
    """Word alignment from cross-attention: each target piece aligns to its most attended
    source piece, merged to whitespace words on both sides.

    Args:
        src_pieces: the source pieces, without EOS.
        tgt_pieces: the output pieces, without EOS; row t of the weights is the decoder step
            that produced `tgt_pieces[t]`.
        cross_weights: cross-attention weights; leading dimensions (layers, heads) are
            averaged. Rows and columns past the pieces (EOS, padding) are ignored.

    Shape: cross_weights (..., T_q, T_k) with T_q >= len(tgt_pieces), T_k >= len(src_pieces).

    Returns:
        Sorted, distinct (source word, target word) pairs, 0-based, like "0-0 1-2 2-1".

    Raises:
        ValueError: the weights have fewer rows or columns than there are pieces.
    """
    t, s = len(tgt_pieces), len(src_pieces)
    if cross_weights.size(-2) < t or cross_weights.size(-1) < s:
        raise ValueError(
            f"cross_weights of shape {tuple(cross_weights.shape)} cannot cover "
            f"{t} target and {s} source pieces"
        )
    if t == 0 or s == 0:
        return []
    w = cross_weights.float().reshape(-1, *cross_weights.shape[-2:]).mean(0)  # (T_q, T_k)
    best = w[:t, :s].argmax(-1).tolist()  # (t,): source piece per target piece
    src_word, tgt_word = word_index(src_pieces), word_index(tgt_pieces)
    return sorted({(src_word[j], tgt_word[i]) for i, j in enumerate(best)})


def format_alignment(pairs: Sequence[tuple[int, int]]) -> str:
    """Pairs as text: "0-0 1-2 2-1"."""
    return " ".join(f"{s}-{t}" for s, t in pairs)
