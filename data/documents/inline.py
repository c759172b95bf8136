"""Text with inline markup: the markup kept in place around the translated words.

A sentence like `Click <a href="/x">the blue button</a> to start.` is translated as its
plain text, `Click the blue button to start.`, and the markup goes back around the output
words that translate the words it surrounded: the word alignment (source word, output
word) of the translation says which those are. A markup is a span (an opening and a
closing string around some text: a tag pair, Markdown emphasis, a link's brackets and
target) or a point (a string kept whole at its place: an image, inline code, a line
break). Without an alignment, or for words it leaves unaligned, a span goes around the
output words at the same relative position. The output is always well nested: a span
that would cross another is put around its enclosing span's words instead. Markup side by
side in the source keeps its order and nesting there (`<v Roger><i>` stays so), and a
point stays out of every span that did not hold it (inline code beside a link never
enters the link's text).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# Whitespace a unit's text is stripped of (not U+00A0: an escaped &nbsp; stays literal text).
_SPACE = " \t\n\r\f"
_WORD = re.compile(r"\S+")
_LINE_BREAK = re.compile(r"[ \t]*\r?\n[ \t]*")
_CLOSE = re.compile(r"</\s*([\w.-]*)")
_OPEN = re.compile(r"<\s*([A-Za-z][\w.-]*)")
# HTML elements that never hold text.
VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    ]
)

# A place in the output: (word index, character offset in that word).
_Pos = tuple[int, int]


@dataclass(frozen=True)
class Markup:
    """Markup in a unit's plain text: `open` and `close` around text[start:end], or, for a
    point (start == end), `open` kept whole at `start`."""

    start: int
    end: int
    open: str
    close: str = ""
    # Where `open` and `close` come among the run's strings (text and markup) in the
    # source: which markup holds which, when they sit side by side.
    order: tuple[int, int] = (0, 0)

    @property
    def is_point(self) -> bool:
        return self.start == self.end

    def holds(self, other: Markup) -> bool:
        """Whether `other` lies between this span's two strings in the source."""
        return self.order[0] < other.order[0] and other.order[-1] < self.order[1]


@dataclass
class InlineText:
    """A unit: plain text to translate, and the markup to put back around its translation.

    Attributes:
        text: the plain text, stripped.
        markups: in the order their openings appear in the source.
        escape: how a translated word is written into the document (HTML: `&`, `<`, `>`).
    """

    text: str
    markups: list[Markup]
    escape: Callable[[str], str] = str
    # The source's line breaks inside the text (as they were written: "\n", "\n> ",
    # "  \n") and the words of each line: the translation is wrapped the same way.
    breaks: list[str] = field(default_factory=list)
    line_words: list[int] = field(default_factory=list)

    def render(self, translation: str, alignment: Sequence[tuple[int, int]] | None) -> str:
        tokens = self.tokens(translation, alignment)
        if not self.breaks:
            return " ".join(tokens)
        lines = wrap(tokens, self.line_words)
        out = [lines[0]]
        for brk, line in zip(self.breaks, lines[1:], strict=False):
            out += [brk, line]
        return "".join(out)

    def tokens(self, translation: str, alignment: Sequence[tuple[int, int]] | None) -> list[str]:
        """The output words with the markup attached (a caller may wrap them into lines)."""
        words = [self.escape(w) for w in translation.split()]
        if not words:
            return ["".join(m.open + m.close for m in self.markups)] if self.markups else []
        placer = _Placer(self, words, alignment)
        # Spans first, so that a point knows every span it must stay in or out of.
        for i, m in enumerate(self.markups):
            if not m.is_point:
                placer.place(i, m)
        for i, m in enumerate(self.markups):
            if m.is_point:
                placer.place(i, m)
        return placer.assemble()


class _Placer:
    """Places a unit's markups among the output words (see `InlineText.tokens`)."""

    def __init__(
        self, unit: InlineText, words: list[str], alignment: Sequence[tuple[int, int]] | None
    ) -> None:
        self.unit = unit
        self.words = words
        self.src = [(m.start(), m.end()) for m in _WORD.finditer(unit.text)]
        self.targets: dict[int, set[int]] = {}
        for s, t in alignment or ():
            if 0 <= t < len(words):
                self.targets.setdefault(s, set()).add(t)
        # Placed spans: (start, end, markup index); their strings: (word, offset, rank,
        # key, text), and the points: (word, offset, markup index, text).
        self.spans: list[tuple[_Pos, _Pos, int]] = []
        self.inserts: list[tuple[int, int, int, tuple, str]] = []
        self.points: list[tuple[int, int, int, str]] = []

    def _out_range(self, first: int, last: int) -> tuple[int, int]:
        """Output words for source words first..last: the aligned ones, else the same
        relative position."""
        aligned = [t for s in range(first, last + 1) for t in self.targets.get(s, ())]
        if aligned:
            return min(aligned), max(aligned)
        n_src, n_out = max(len(self.src), 1), len(self.words)
        a = min(first * n_out // n_src, n_out - 1)
        b = max(a, min((last + 1) * n_out // n_src - 1, n_out - 1))
        return a, b

    def _parent(self, index: int) -> tuple[_Pos, _Pos]:
        """The placed interval of the nearest span enclosing markup `index` in the source,
        or the whole output."""
        m = self.unit.markups[index]
        for start, end, j in reversed(self.spans):
            p = self.unit.markups[j]
            if p.holds(m) if m.is_point else p.start <= m.start and m.end <= p.end:
                return start, end
        return (0, 0), (len(self.words) - 1, len(self.words[-1]))

    def place(self, index: int, m: Markup) -> None:
        text = self.unit.text
        covered = [k for k, (a, b) in enumerate(self.src) if a < m.end and b > m.start]
        lo, hi = self._parent(index)
        if m.is_point or not covered:
            self._place_point(index, m, lo, hi)
            return
        a, b = self._out_range(covered[0], covered[-1])
        prefix = self.unit.escape(text[self.src[covered[0]][0] : m.start])
        suffix = self.unit.escape(text[m.end : self.src[covered[-1]][1]])
        oa = len(prefix) if prefix and self.words[a].startswith(prefix) else 0
        wb = self.words[b]
        ob = len(wb) - len(suffix) if suffix and wb.endswith(suffix) else len(wb)
        start, end = (a, oa), (b, ob)
        if start >= end:
            start, end = (a, 0), (b, len(wb))
        start, end = max(start, lo), min(end, hi)
        if start >= end or any(_cross((start, end), (s, e)) for s, e, _ in self.spans):
            start, end = lo, hi
        self.spans.append((start, end, index))
        # At one place: closes first, then opens (the widest first; the same: in source
        # order); `assemble` puts the points among them.
        self.inserts.append((*start, 1, (tuple(-x for x in end), index), m.open))
        self.inserts.append((*end, 0, (tuple(-x for x in start), -index), m.close))

    def _place_point(self, index: int, m: Markup, lo: _Pos, hi: _Pos) -> None:
        raw = m.open + m.close
        after = next((k for k, (_, b) in enumerate(self.src) if b > m.start), None)
        before = next((k for k, (_, b) in enumerate(self.src) if b == m.start), None)
        inside = after is not None and self.src[after][0] < m.start
        if inside:
            # Inside a word (`word[^1].`): as far from the output word's end as from the
            # source word's, when the output word ends the same way; else at its end.
            word = self._out_range(after, after)[1]
            suffix = self.unit.escape(self.unit.text[m.start : self.src[after][1]])
            out = self.words[word]
            offset = len(out) - len(suffix) if out.lower().endswith(suffix.lower()) else len(out)
            pos, text = (word, offset), raw
        elif before is not None and (after is None or self.src[after][0] > m.start):
            # Right after a word (`word<br> next`): kept at that word's end.
            word = self._out_range(before, before)[1]
            pos, text = (word, len(self.words[word])), raw
        elif after is None:  # after the last word
            last = len(self.words) - 1
            pos, spaced = (
                (last, len(self.words[last])),
                bool(self.src) and m.start > self.src[-1][1],
            )
            text = " " + raw if spaced else raw
        else:
            word = self._out_range(after, after)[0]
            # Glued to the next word in the source (`code`: or `code`s): glued to the output
            # word only where that begins as the source word did, else a space between.
            a, b = self.src[after]
            source_word = self.unit.escape(self.unit.text[a:b])
            glued = a == m.start and _same_start(self.words[word], source_word)
            pos, text = (word, 0), raw if glued else raw + " "
        pos = self._outside(m, min(max(pos, lo), hi), lo, hi)
        self.points.append((*pos, index, text))

    def _outside(self, m: Markup, pos: _Pos, lo: _Pos, hi: _Pos) -> _Pos:
        """`pos`, moved out of the placed spans that did not hold point `m` in the source
        (inline code beside a link stays out of its text), to the side it was on."""
        for _ in range(len(self.spans)):
            inside = [
                (start, end, j)
                for start, end, j in self.spans
                if start < pos < end
                and lo <= start
                and end <= hi
                and not self.unit.markups[j].holds(m)
            ]
            if not inside:
                break
            start, end, j = min(inside, key=lambda s: (s[0], tuple(-x for x in s[1])))
            pos = start if m.order[0] < self.unit.markups[j].order[0] else end
        return pos

    def assemble(self) -> list[str]:
        at_place: dict[_Pos, list[tuple[int, tuple, str, int]]] = {}
        for word, offset, rank, key, text in self.inserts:
            at_place.setdefault((word, offset), []).append((rank, key, text, abs(key[1])))
        for items in at_place.values():
            items.sort(key=lambda x: x[:2])
        for word, offset, index, text in sorted(self.points, key=lambda p: p[2]):
            items = at_place.setdefault((word, offset), [])
            at_place[(word, offset)] = self._with_point(items, index, text)
        offsets: dict[int, list[int]] = {}
        for word, offset in sorted(at_place):
            offsets.setdefault(word, []).append(offset)
        out = []
        for k, word in enumerate(self.words):
            pieces, at = [], 0
            for offset in offsets.get(k, ()):
                pieces += [word[at:offset], *(x[2] for x in at_place[(k, offset)])]
                at = offset
            out.append("".join(pieces) + word[at:])
        return out

    def _with_point(self, items: list, index: int, text: str) -> list:
        """`items` (one place's strings, in order) with point `index` among them: after
        the closes of the spans that did not hold it and the opens of those that did, and
        after the points before it in the source."""
        m = self.unit.markups[index]
        after = 0
        for k, (rank, _, _, j) in enumerate(items):
            holds = rank in (0, 1) and self.unit.markups[j].holds(m)
            if rank == 2 or (rank == 0 and not holds) or (rank == 1 and holds):
                after = k + 1
        return [*items[:after], (2, (index,), text, index), *items[after:]]


def wrap(tokens: Sequence[str], line_words: Sequence[int]) -> list[str]:
    """`tokens` in as many lines as `line_words` has (fewer when there are fewer tokens, never
    an empty line), each line's share of the tokens as its share of the source's words."""
    n_lines = max(1, min(len(line_words), len(tokens)))
    total = max(sum(line_words), 1)
    cuts, seen = [0], 0
    for k, count in enumerate(line_words[: n_lines - 1], start=1):
        seen += count
        cut = round(seen * len(tokens) / total)
        # At least one token per line, before and after the cut.
        cuts.append(min(max(cut, cuts[-1] + 1), len(tokens) - (n_lines - k)))
    cuts.append(len(tokens))
    return [" ".join(tokens[a:b]) for a, b in itertools.pairwise(cuts)]


def _same_start(word: str, source_word: str) -> bool:
    """Whether `word` begins with the first character of `source_word` (any case)."""
    return word[:1].casefold() == source_word[:1].casefold()


def _cross(x: tuple[_Pos, _Pos], y: tuple[_Pos, _Pos]) -> bool:
    """Whether two intervals overlap without one holding the other."""
    (s1, e1), (s2, e2) = x, y
    return s1 < s2 < e1 < e2 or s2 < s1 < e2 < e1


class InlineBuilder:
    """Collects a run of text and markup, in source order, into document parts.

    `text` adds text (its plain form, translated, and its raw form, kept when the run has
    no words); `line_break` a line break inside the text (a space to translate; the
    translation is wrapped into as many lines); `open`/`close` a span's two strings;
    `point` a string kept whole. With `breaks_in_text`, a line break inside text that
    `text` adds (with the whitespace around it) counts as a `line_break`.
    """

    def __init__(self, escape: Callable[[str], str] = str, breaks_in_text: bool = False) -> None:
        self.escape = escape
        self.breaks_in_text = breaks_in_text
        self._breaks: list[tuple[int, str]] = []  # (offset in the plain text, raw)
        self._plain: list[str] = []
        self._raw: list[str] = []
        self._length = 0
        self._markups: list[list] = []  # [start, end or None, open, close, order of each]
        self._tags: list[tuple[str, int]] = []  # the open tags of `tag`: (name, handle)

    @property
    def empty(self) -> bool:
        return not self._raw

    def text(self, plain: str, raw: str | None = None) -> None:
        if self.breaks_in_text and "\n" in plain and raw in (None, plain):
            at = 0
            for m in _LINE_BREAK.finditer(plain):
                self._add_text(plain[at : m.start()], None)
                self.line_break(m.group())
                at = m.end()
            plain, raw = plain[at:], None
        self._add_text(plain, raw)

    def line_break(self, raw: str) -> None:
        self._breaks.append((self._length, raw))
        self._add_text(" ", raw)

    def _add_text(self, plain: str, raw: str | None) -> None:
        self._plain.append(plain)
        self._raw.append(plain if raw is None else raw)
        self._length += len(plain)

    def open(self, raw: str) -> int:
        """Start a span; returns its handle for `close`."""
        self._markups.append([self._length, None, raw, "", len(self._raw), None])
        self._raw.append(raw)
        return len(self._markups) - 1

    def close(self, handle: int, raw: str) -> None:
        self._markups[handle][1] = self._length
        self._markups[handle][3] = raw
        self._markups[handle][5] = len(self._raw)
        self._raw.append(raw)

    def point(self, raw: str) -> None:
        self._markups.append([self._length, self._length, raw, "", len(self._raw), None])
        self._raw.append(raw)

    def tag(self, raw: str) -> None:
        """An HTML-like tag: an opening tag starts a span, which the next closing tag of
        its name (`</>`: any) ends; a tag that closes nothing, or closes itself, is a
        point."""
        close = _CLOSE.match(raw)
        if close:
            name = close.group(1).split(".")[0].lower()
            for i in range(len(self._tags) - 1, -1, -1):
                if self._tags[i][0] == name or not name:
                    self.close(self._tags.pop(i)[1], raw)
                    return
            self.point(raw)
            return
        opening = _OPEN.match(raw)
        if opening and not raw.endswith("/>") and opening.group(1).lower() not in VOID:
            self._tags.append((opening.group(1).split(".")[0].lower(), self.open(raw)))
        else:
            self.point(raw)

    def build(self) -> list:
        """The run as parts: literal strings and at most one `InlineText` unit (none when the
        run has no words: then all of it is literal). The builder is empty afterwards."""
        plain, raw = "".join(self._plain), "".join(self._raw)
        markups = self._markups
        breaks = self._breaks
        self.__init__(self.escape, self.breaks_in_text)
        if not plain.strip(_SPACE):
            return [raw] if raw else []
        text = plain.strip(_SPACE)
        # Whitespace at the ends stays literal, but for what lies beside markup (the
        # markup's offsets then fall outside the text: its spacing is kept).
        lead = len(plain) - len(plain.lstrip(_SPACE))
        tail = lead + len(text)
        if markups:
            lead = min(lead, *(m[0] for m in markups))
            tail = max(tail, *(m[0] if m[1] is None else m[1] for m in markups))
        shift = len(plain) - len(plain.lstrip(_SPACE))
        units = [
            # Unclosed: a point.
            Markup(s - shift, (s if e is None else e) - shift, o, c, (a, a if b is None else b))
            for s, e, o, c, a, b in markups
        ]
        parts: list = [plain[:lead]] if lead else []
        inner = [(at - shift, raw) for at, raw in breaks if shift <= at < shift + len(text)]
        cuts = [0, *(at for at, _ in inner), len(text)]
        line_words = [len(text[a:b].split()) for a, b in itertools.pairwise(cuts)]
        unit = InlineText(text, units, self.escape, [raw for _, raw in inner], line_words)
        parts.append(unit)
        if plain[tail:]:
            parts.append(plain[tail:])
        return parts
