"""Rendering of attention maps: shaded tables in the terminal, heatmap images with matplotlib.

Terminal: one table per map, query tokens down the left, key tokens written vertically across
the top, each cell shaded by its weight (0 to 1, the same scale as the images). Without
colour (stdout piped, NO_COLOR) the cells carry the weight x 100 instead, so the text stays
readable. Weights that are exactly 0 (masked: the future in decoder self-attention) print
as "." or stay unshaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.text import Text

from attn.model.inference.attention_maps import WORD_START, AttentionMap

CELL = 4  # characters per column: 3 for "100", 1 to separate
MAX_LABEL = 12  # longest row label
MAX_HEADER = 8  # tallest vertical column label
SPACE_MARK = "\u00b7"  # shown for SentencePiece's "▁" (a preceding space)

TITLES = {
    "encoder": "encoder self-attention",
    "decoder": "decoder masked self-attention",
    "cross": "decoder-to-encoder cross-attention",
}
AXIS_NAMES = {"source": "source", "target": "decoder input", "output": "output"}

# Viridis at five stops: dark and light ends both stand out on dark and light terminals.
_RAMP = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


def readable(piece: str) -> str:
    """A piece as shown to people: "▁" (a preceding space) becomes a visible "·"."""
    return piece.replace(WORD_START, SPACE_MARK)


def map_title(m: AttentionMap, n_heads: int) -> str:
    head = f"mean of {n_heads} heads" if m.head is None else f"head {m.head}"
    return f"{TITLES[m.kind]}, layer {m.layer}, {head}"


def fits(n_columns: int, label_width: int, width: int) -> int:
    """How many key columns fit beside labels of `label_width` in `width` characters."""
    return max(1, min(n_columns, (width - label_width - 1) // CELL))


def _colour(w: float) -> tuple[int, int, int]:
    pos = min(max(w, 0.0), 1.0) * (len(_RAMP) - 1)
    i = min(int(pos), len(_RAMP) - 2)
    f = pos - i
    a, b = _RAMP[i], _RAMP[i + 1]
    r, g, bl = (round(x + (y - x) * f) for x, y in zip(a, b, strict=True))
    return r, g, bl


def _shorten(label: str, width: int) -> str:
    return label if len(label) <= width else label[: width - 1] + "\u2026"


def _cell(w: float, colour: bool, values: bool) -> Text:
    digits = f"{round(w * 100):>3d}"
    if not colour:
        return Text("  ." if w == 0.0 else digits)
    if w == 0.0:
        return Text("   ")
    r, g, b = _colour(w)
    fg = "black" if w > 0.5 else "white"
    return Text(digits if values else "   ", style=f"{fg} on rgb({r},{g},{b})")


def render_map(
    console: Console, m: AttentionMap, n_heads: int, *, values: bool = False
) -> int | None:
    """Print one map as a table fitted to the console width.

    Args:
        values: print the weight x 100 in shaded cells too (always printed without colour).

    Returns:
        The number of key columns shown when not all fit, else None.
    """
    colour = console.color_system is not None and not console.no_color
    rows = [_shorten(readable(t), MAX_LABEL) for t in m.rows]
    label_w = max((len(r) for r in rows), default=1)
    shown = fits(len(m.columns), label_w, console.width)
    headers = [_shorten(readable(t), MAX_HEADER) for t in m.columns[:shown]]
    height = max((len(h) for h in headers), default=1)

    console.print(Text(map_title(m, n_heads), style="bold"), soft_wrap=True)
    for line in range(height):
        chars = [h[line - (height - len(h))] if line >= height - len(h) else " " for h in headers]
        header = " " * label_w + "".join(f" {c:>3}" for c in chars)
        console.print(Text(header.rstrip()), no_wrap=True, crop=True)
    matrix = m.matrix[:, :shown].tolist()  # (T_q, shown)
    for label, weights in zip(rows, matrix, strict=True):
        text = Text(f"{label:>{label_w}}")
        for w in weights:
            text.append(" ")
            text.append_text(_cell(w, colour, values))
        console.print(text, no_wrap=True, crop=True)
    return shown if shown < len(m.columns) else None


def render_scale(console: Console) -> None:
    """A one-line colour scale (only when the console shows colour)."""
    if console.color_system is None or console.no_color:
        return
    text = Text("weight 0 ")
    for i in range(11):
        r, g, b = _colour(i / 10)
        text.append("  ", style=f"on rgb({r},{g},{b})")
    text.append(" 1")
    console.print(text, no_wrap=True, crop=True)


def _draw(ax, m: AttentionMap, n_heads: int, axes: tuple[str, str]):
    import matplotlib
    import numpy as np

    # Exactly 0 only where a mask hid the key (the future, padding): leave those cells blank.
    hidden = np.ma.masked_equal(m.matrix.numpy(), 0.0)  # (T_q, T_k)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    image = ax.imshow(hidden, vmin=0.0, vmax=1.0, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(m.columns)), [readable(t) for t in m.columns], rotation=90)
    ax.set_yticks(range(len(m.rows)), [readable(t) for t in m.rows])
    ax.set_xlabel(AXIS_NAMES[axes[1]])
    ax.set_ylabel(AXIS_NAMES[axes[0]])
    ax.set_title(map_title(m, n_heads), fontsize=9)
    return image


def _panel_inches(m: AttentionMap) -> float:
    # Room for the tick labels: about a quarter inch per token, within reason.
    return min(max(0.25 * max(len(m.rows), len(m.columns)) + 2.0, 3.5), 12.0)


def save_png(
    maps: Sequence[AttentionMap],
    path: Path,
    n_heads: int,
    axes: dict[str, tuple[str, str]],
    title: str,
) -> None:
    """Write all maps into one PNG.

    One map per kind and layer (heads averaged, or one head): a row per layer, a column per
    kind, so the three kinds of a layer sit side by side. Several heads: a row per kind and
    layer, a column per head.

    Args:
        axes: kind -> names of the row and column token lists (`attention_maps.AXES`).
        title: the figure's title (the text and the model's output).
    """
    from matplotlib.figure import Figure

    grid: dict[tuple[str, int], list[AttentionMap]] = {}
    for m in maps:
        grid.setdefault((m.kind, m.layer), []).append(m)
    if all(len(group) == 1 for group in grid.values()):
        by_layer: dict[int, list[AttentionMap]] = {}
        for m in maps:
            by_layer.setdefault(m.layer, []).append(m)
        rows = list(by_layer.values())
    else:
        rows = list(grid.values())
    n_rows, n_cols = len(rows), max(len(row) for row in rows)
    size = max(_panel_inches(m) for m in maps)
    fig = Figure(figsize=(size * n_cols + 1.0, size * n_rows + 0.6), layout="constrained")
    panels = fig.subplots(n_rows, n_cols, squeeze=False)
    image = None
    for r, row in enumerate(rows):
        for c in range(n_cols):
            if c < len(row):
                image = _draw(panels[r][c], row[c], n_heads, axes[row[c].kind])
            else:
                panels[r][c].axis("off")
    fig.colorbar(image, ax=panels, shrink=0.6, label="attention weight")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=80, format="png")


def save_pngs(
    maps: Sequence[AttentionMap],
    directory: Path,
    n_heads: int,
    axes: dict[str, tuple[str, str]],
    title: str,
) -> list[Path]:
    """Write one PNG per map into `directory` (created): KIND-layerL-HEAD.png.

    Returns:
        The files written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for m in maps:
        path = directory / f"{m.kind}-layer{m.layer}-{'mean' if m.head is None else m.head}.png"
        save_png([m], path, n_heads, axes, title)
        written.append(path)
    return written
