"""Documents (attn.data.documents): subtitles, Markdown and HTML translated with their
structure kept. A fake translator (upper-cased or reversed words, with the alignment that
says so) stands in for a model, so these tests need none; the CLI tests at the end run
the demo model."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import pytest
import srt
import webvtt
from helpers import ATTN

from attn.data import DataError
from attn.data.documents import detect_format, load, parse
from attn.data.documents.inline import wrap
from attn.model.inference.documents import translate_document

QUICK = ["--threads", "1", "--beam", "1"]


@dataclass
class Result:
    text: str
    alignment: list[tuple[int, int]] | None


def upper(text: str) -> Result:
    words = text.split()
    return Result(" ".join(w.upper() for w in words), [(i, i) for i in range(len(words))])


def reverse(text: str) -> Result:
    """Words in reverse order, upper-cased: markup must follow its words."""
    words = text.split()[::-1]
    n = len(words)
    return Result(" ".join(w.upper() for w in words), [(i, n - 1 - i) for i in range(n)])


def same(text: str) -> Result:
    return Result(text, [(i, i) for i in range(len(text.split()))])


class FakeTranslator:
    """`Translator.translate`'s contract: one result per text, in order."""

    def __init__(self, fn=upper) -> None:
        self.fn = fn
        self.calls: list[list[str]] = []

    def translate(self, texts, *, align=False, **options):
        texts = list(texts)
        self.calls.append(texts)
        return iter(self.fn(t) for t in texts)


def render(doc, fn):
    return doc.render([fn(u) for u in doc.units])


def well_nested(text: str) -> bool:
    """Whether the inline tags of `text` (not void ones) open and close in order."""
    stack = []
    for m in re.finditer(r"<(/?)([a-zA-Z][\w-]*)[^>]*?(/?)>", text):
        closing, name, selfclosing = m.groups()
        if selfclosing or name.lower() in {"br", "img", "wbr", "hr", "meta", "link", "input"}:
            continue
        if not closing:
            stack.append(name)
        elif not stack or stack.pop() != name:
            return False
    return not stack


SRT = (
    "1\n00:00:01,000 --> 00:00:02,500\n<i>Two men are</i>\nplaying chess.\n\n"
    "2\n00:00:03,000 --> 00:00:04,000 X1:10 X2:90\nA dog runs.\n\n"
    "3\n00:00:05,000 --> 00:00:07,250\nA woman sings\non a stage\nat night.\n"
)


def test_srt_round_trip_keeps_numbers_timings_lines_and_tags():
    doc = parse(SRT, "srt", "talk.srt")
    assert doc.units == [
        "Two men are playing chess.",
        "A dog runs.",
        "A woman sings on a stage at night.",
    ]
    assert render(doc, same) == SRT
    out = translate_document(FakeTranslator(), doc)
    before, after = list(srt.parse(SRT)), list(srt.parse(out))
    assert [(c.index, c.start, c.end, c.proprietary) for c in after] == [
        (c.index, c.start, c.end, c.proprietary) for c in before
    ]
    assert [c.content.count("\n") for c in after] == [c.content.count("\n") for c in before]
    assert after[0].content == "<i>TWO MEN ARE</i>\nPLAYING CHESS."
    assert after[2].content == "A WOMAN SINGS\nON A STAGE\nAT NIGHT."


@pytest.mark.parametrize("fn", [same, upper, reverse])
def test_adjacent_tags_keep_their_source_nesting(fn):
    head = "1\n00:00:01,000 --> 00:00:02,000\n"
    for cue, starts in [
        ("<v Roger><i>a b c</i>", "<v Roger><i>"),
        ("<i><v Roger>a</i>", "<i><v Roger>"),
        ("<b><i>a</i></b> <u>b</u>", "<b><i>"),
    ]:
        out = render(parse(f"{head}{cue}\n", "srt", "x.srt"), fn)[len(head) : -1]
        assert starts in out, (cue, out)
        assert well_nested(out.replace("<v Roger>", "")), (cue, out)


@pytest.mark.parametrize("fn", [same, upper, reverse])
@pytest.mark.parametrize(
    "text",
    [
        "`code` [link text here](https://x.org) and more",
        "[link text here](https://x.org) `code` and more",
        "See [the link text](https://x.org)`code` and",
        "One ![img](x.png) [link words](https://x.org) two",
        "**Bold [link words](https://x.org)** `c` end",
    ],
)
def test_inline_code_and_images_never_enter_a_link(text, fn):
    out = render(parse(text + "\n", "markdown"), fn)
    link = re.search(r"\[([^\]]*)\]\(https://x.org\)", out)
    assert link is not None, out
    assert "`" not in link.group(1) and "![" not in link.group(1), out
    assert out.count("`") == text.count("`") and out.count("![img](x.png)") == text.count("![")


def test_a_point_glued_to_punctuation_keeps_a_space_before_another_word():
    # `code`: in the source; the translation puts a word where the colon was.
    doc = parse("Or run `attn translate`: now\n", "markdown")

    def colon_becomes_a_word(text: str) -> Result:
        words = ["GO" if w == ":" else w.upper() for w in text.split()]
        return Result(" ".join(words), [(i, i) for i in range(len(words))])

    assert render(doc, colon_becomes_a_word) == "OR RUN `attn translate` GO NOW\n"
    assert render(doc, same) == "Or run `attn translate`: now\n"


def test_srt_tags_follow_their_words_and_crlf_stays():
    text = SRT.replace("\n", "\r\n")
    out = render(parse(text, "srt", "x.srt"), reverse)
    assert "\r\n" in out and "\n" not in out.replace("\r\n", "")
    assert "CHESS. PLAYING <i>ARE\r\nMEN TWO</i>" in out
    assert [c.start for c in srt.parse(out)] == [c.start for c in srt.parse(SRT)]


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("1\n00:00:01,000 -> 00:00:02,000\nHi\n", 2, "expected a timing line"),
        ("1\n00:00:01,000 --> 00:00:02,000\nHi\n\n2\n00:00:03,000 --> 00:00:04,000\n", 5, ""),
        ("1\n00:00:05,000 --> 00:00:02,000\nHi\n", 2, "ends before it starts"),
        ("1\n00:00:01,000 --> 00:00:02,000\nHi\n\nx\n00:00:03,000 --> 00:00:04,000\nHo\n", 5, ""),
        ("Just some text.\nNot subtitles.\n", 1, "not an SRT file"),
    ],
)
def test_malformed_srt_names_file_and_line(text, line, what):
    with pytest.raises(DataError) as e:
        parse(text, "srt", "bad.srt")
    assert str(e.value).startswith(f"bad.srt:{line}: ")
    assert what in str(e.value)


def test_srt_cue_without_text_is_an_error():
    with pytest.raises(DataError, match="has no text"):
        parse("1\n00:00:01,000 --> 00:00:02,000\n\n2\n00:00:03,000 --> 00:00:04,000\nx\n", "srt")


VTT = """WEBVTT - a talk

NOTE written by hand
over two lines

STYLE
::cue { color: yellow }

intro
00:01.000 --> 00:02.500 align:start line:0
<v Anna>Hello &amp; <b>welcome</b>,
my friends.

00:00:03.000 --> 00:00:04.000
A dog runs.
"""


def test_vtt_round_trip_keeps_header_notes_settings():
    doc = parse(VTT, "vtt", "x.vtt")
    assert doc.units == ["Hello & welcome, my friends.", "A dog runs."]
    assert render(doc, same) == VTT
    out = translate_document(FakeTranslator(), doc)
    for kept in ("WEBVTT - a talk\n", "NOTE written by hand\nover two lines\n", "::cue {"):
        assert kept in out
    assert "intro\n00:01.000 --> 00:02.500 align:start line:0\n" in out
    assert "<v Anna>HELLO &amp; <b>WELCOME</b>,\nMY FRIENDS." in out
    cues = webvtt.from_string(out)
    assert [(c.start, c.end) for c in cues] == [
        ("00:00:01.000", "00:00:02.500"),
        ("00:00:03.000", "00:00:04.000"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("1\n00:00:01,000 --> 00:00:02,000\nHi\n", 1, "not a WebVTT file"),
        ("WEBVTT\n\n00:01.000 --> 00:xx.000\nHi\n", 3, "expected a timing line"),
        ("WEBVTT\n\nid\n00:01.000 --> 00:02.000\n", 3, "a cue without text"),
    ],
)
def test_malformed_vtt(text, line, what):
    with pytest.raises(DataError) as e:
        parse(text, "vtt", "bad.vtt")
    assert str(e.value).startswith(f"bad.vtt:{line}: ") and what in str(e.value)


MARKDOWN = """---
title: A guide
tags: [one, two]
---
# Getting *started* ##

Install the tool with `pip install attn`, then read [the manual](https://x.org/a_b?x=1 "Manual").
A second line of the same paragraph.\\
After a hard break.

- First **item** here
- Second item with ![a logo](img/logo.png) and <kbd>Ctrl</kbd>
  1. Nested item

> A quoted sentence
> that goes on &amp; on \\* here.

```python
print("code stays")  # as it is
```

    indented code stays

| Name | Value |
|------|------:|
| speed | *fast* |
| link | [docs][ref] |

<div class="note">
An HTML block stays.
</div>

See <https://example.org/auto> too.

[ref]: https://example.com/ref
"""

MD_KEPT = [
    "---\ntitle: A guide\ntags: [one, two]\n---\n",
    "# ",
    " ##\n",
    "`pip install attn`",
    '](https://x.org/a_b?x=1 "Manual")',
    "![a logo](img/logo.png)",
    "<kbd>",
    "</kbd>",
    '```python\nprint("code stays")  # as it is\n```\n',
    "\n    indented code stays\n",
    "|------|------:|\n",
    '<div class="note">\nAn HTML block stays.\n</div>\n',
    "<https://example.org/auto>",
    "[ref]: https://example.com/ref\n",
    "- ",
    "  1. ",
    "> ",
]


def test_markdown_round_trip_identical():
    # Text is written with Markdown's backslash escapes; an entity is text, written as such.
    assert render(parse(MARKDOWN, "markdown"), same) == MARKDOWN.replace("&amp;", "&")


def test_markdown_text_translated_and_the_rest_kept():
    doc = parse(MARKDOWN, "markdown")
    out = translate_document(FakeTranslator(), doc)
    for kept in MD_KEPT:
        assert kept in out, kept
    for unit in doc.units:
        for word in re.findall(r"\w+", unit):
            assert word.upper() in out
    assert "# GETTING *STARTED* ##" in out
    assert "[THE MANUAL](https://x.org/a_b?x=1" in out
    assert "- FIRST **ITEM** HERE" in out
    assert "| SPEED | *FAST* |" in out and "[DOCS][ref]" in out
    assert "> A QUOTED SENTENCE\n> THAT GOES ON & ON \\* HERE." in out
    # Nothing of the front matter, code or HTML block went to the translator.
    assert not any("code stays" in u or "HTML block" in u or "title" in u for u in doc.units)


def test_markdown_markup_follows_reordered_words():
    doc = parse("Read [the manual](https://x.org) **now**.\n", "markdown")
    out = render(doc, reverse)
    assert out == "**NOW**. [MANUAL THE](https://x.org) READ\n"


# Text that begins or is only emphasis, inside other blocks; footnote markers.
MARKDOWN_EMPHASIS_DOC = """> **A sentence here.**

> > **nested strong**
> > and *more words*

> - quoted item
> - **strong item**
>
> first line
> **second line**\\
> `code` after a break

*only emphasis here*

# *emphasis heading*

## **strong heading** ##

__setext strong__
-----------------

1. ***bold italic***
2. plain item
   **continued strong**

| **strong cell** | [link cell](https://x.org) |
|---|---|
| *em cell* | ~~struck cell~~ |

See this[^note] and that[^2].

[^note]: the first footnote
[^2]: **the second footnote**
"""


def test_markdown_emphasised_text_in_any_block_is_translated():
    doc = parse(MARKDOWN_EMPHASIS_DOC, "markdown")
    assert render(doc, same) == MARKDOWN_EMPHASIS_DOC
    out = translate_document(FakeTranslator(), doc)
    # Every non-text part kept: link targets, code, footnote markers.
    for kept in ("`code`", "](https://x.org)", "[^note]", "[^2]", "> > ", "\n-----------------\n"):
        assert kept in out, kept
    # No source word left untranslated (the fake translator upper-cases every word).
    text = re.sub(r"`[^`]*`|\]\([^)]*\)|\[\^\w+\]", "", out)
    assert re.findall(r"[a-z]+", text) == []
    assert "> **A SENTENCE HERE.**\n" in out
    assert "> **SECOND LINE**\\\n> `code` AFTER A BREAK" in out
    assert "| **STRONG CELL** | [LINK CELL](https://x.org) |" in out
    assert "SEE THIS[^note] AND THAT[^2]." in out
    assert "[^2]: **THE SECOND FOOTNOTE**" in out


HTML = """<!DOCTYPE html>
<html lang="en"><head><title>My page</title>
<style>p { color: red; } /* <b>no</b> */</style>
<script>var s = "<p>not text</p>";</script></head>
<body>
<!-- a comment -->
<h1 class="title" data-x='1 &amp; 2'>Welcome &amp; hello</h1>
<p>Click <a href="/go?a=1&amp;b=2" title="Go">the blue button</a> to <b>start <i>now</i></b>.<br>
Run <code>make all</code> first.</p>
<pre>keep
   <b>this</b> as it is</pre>
<p translate="no">Do not translate</p>
<ul><li>One<li>Two</ul>
</body></html>
"""

HTML_KEPT = [
    "<!DOCTYPE html>\n",
    '<html lang="en"><head><title>',
    "<style>p { color: red; } /* <b>no</b> */</style>",
    '<script>var s = "<p>not text</p>";</script>',
    "<!-- a comment -->",
    "<h1 class=\"title\" data-x='1 &amp; 2'>",
    '<a href="/go?a=1&amp;b=2" title="Go">',
    "<code>make all</code>",
    "<pre>keep\n   <b>this</b> as it is</pre>",
    '<p translate="no">Do not translate</p>',
    "<ul><li>",
]


def test_html_round_trip_identical():
    assert render(parse(HTML, "html"), same) == HTML


def test_html_text_nodes_translated_and_the_rest_kept():
    doc = parse(HTML, "html")
    assert "Welcome & hello" in doc.units
    out = translate_document(FakeTranslator(), doc)
    for kept in HTML_KEPT:
        assert kept in out, kept
    assert "<title>MY PAGE</title>" in out
    assert "WELCOME &amp; HELLO</h1>" in out
    assert '<a href="/go?a=1&amp;b=2" title="Go">THE BLUE BUTTON</a>' in out
    assert "<b>START <i>NOW</i></b>." in out
    assert "<li>ONE<li>TWO</ul>" in out
    assert well_nested(out.split("<body>")[1].split("</body>")[0].replace("<li>", ""))


def test_html_inline_tags_follow_aligned_words():
    doc = parse('<p>Click <a href="/x">the blue button</a> to <b>start</b> now.</p>', "html")
    out = render(doc, reverse)
    assert out == '<p>NOW. <b>START</b> TO <a href="/x">BUTTON BLUE THE</a> CLICK</p>'


def test_html_without_alignment_keeps_tags_at_the_relative_place():
    doc = parse("<p>one two <b>three four</b> five six</p>", "html")
    out = doc.render(["uno dos tres cuatro cinco seis"])
    assert out == "<p>uno dos <b>tres cuatro</b> cinco seis</p>"
    # Fewer output words than source words: the tags still enclose some, well nested.
    out = doc.render([Result("a b", None)])
    assert well_nested(out) and out.count("<b>") == 1 and "a" in out and "b" in out


def test_html_not_well_formed_keeps_all_text():
    text = "<p>Broken <b>bold <i>italic</b> text</i> end<div>unclosed <span>x\n<p>a < b & c"
    out = render(parse(text, "html"), upper)
    for word in ("BROKEN", "BOLD", "ITALIC", "TEXT", "END", "UNCLOSED", "X", "A", "&lt;", "&amp;"):
        assert word in out
    assert out.count("<b>") == 1 and out.count("</b>") == 1


def test_wrap_keeps_the_line_count():
    assert wrap(["a", "b", "c", "d", "e", "f"], [3, 3]) == ["a b c", "d e f"]
    assert wrap(["a", "b", "c"], [1, 1, 1, 1]) == ["a", "b", "c"]  # never an empty line
    assert wrap(["a"], [2, 2]) == ["a"]


def test_detect_format_and_load(tmp_path):
    assert detect_format("talk.SRT") == "srt"
    assert detect_format("a.vtt") == "vtt"
    assert detect_format("readme.md") == "markdown"
    assert detect_format("page.htm") == "html"
    assert detect_format("notes.txt") == "text"
    assert detect_format("-") == "text"
    assert detect_format("notes.txt", "markdown") == "markdown"
    with pytest.raises(ValueError, match="unknown format"):
        detect_format("a", "docx")
    binary = tmp_path / "x.srt"
    binary.write_bytes(b"\x00\x01\x02PK")
    with pytest.raises(DataError, match="binary"):
        load(binary)
    wrong = tmp_path / "notes.srt"
    wrong.write_text("Dear diary,\ntoday was fine.\n")
    with pytest.raises(DataError, match=r"notes.srt:1: .*not an SRT file"):
        load(wrong)


def test_one_translate_call_per_document():
    fake = FakeTranslator()
    translate_document(fake, parse(MARKDOWN, "markdown"))
    assert len(fake.calls) == 1 and len(fake.calls[0]) > 5


def test_translate_document_reports_units_done():
    doc = parse(SRT, "srt", "talk.srt")
    calls = []
    out = translate_document(FakeTranslator(), doc, progress=lambda *a: calls.append(a))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert out == translate_document(FakeTranslator(), doc)


@pytest.mark.parametrize("terminal", [True, False])
def test_documents_show_progress_on_a_terminal_only(tmp_path, monkeypatch, terminal):
    import io

    from rich.console import Console

    import attn.cli.common
    import attn.cli.documents as cli_documents
    from attn.cli.lines import Format

    stderr = io.StringIO()
    monkeypatch.setattr(attn.cli.common, "_quick_exit_allowed", False)
    monkeypatch.setattr(cli_documents, "stderr_is_terminal", lambda: terminal)
    monkeypatch.setattr(
        cli_documents, "err_console", Console(file=stderr, force_terminal=True, width=100)
    )
    (tmp_path / "talk.srt").write_text(SRT)
    given = []

    def translate(pipeline, document, progress):
        given.append(progress)
        return translate_document(pipeline, document, progress=progress)

    done = cli_documents.run_documents(
        [str(tmp_path / "talk.srt")],
        tmp_path / "out.srt",
        None,
        None,
        FakeTranslator,
        translate,
        fmt=Format.text,
        n_best=1,
        field=None,
        align=False,
    )
    assert done and "PLAYING CHESS." in (tmp_path / "out.srt").read_text()
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stderr.getvalue())
    if terminal:
        assert given[0] is not None and "talk.srt" in shown and "3/3 parts" in shown
    else:
        assert given == [None] and shown == ""


def test_malformed_srt_on_the_command_line_writes_nothing(tmp_path):
    (tmp_path / "bad.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nHi\n\n2\n00:03 -> x\nHo\n")
    result = subprocess.run(
        [ATTN, "translate", "bad.srt", "-o", "out.srt", "-m", "no-model"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: bad.srt:6: expected a timing line")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.srt").exists()


def test_documents_refuse_line_options(tmp_path):
    (tmp_path / "a.md").write_text("# Hi\n")
    result = subprocess.run(
        [ATTN, "translate", "a.md", "--format", "jsonl", "-m", "no-model"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "--format" in result.stderr


@pytest.mark.parametrize(
    ("name", "text", "check"),
    [
        ("talk.srt", SRT, lambda out: len(list(srt.parse(out))) == 3),
        ("talk.vtt", VTT, lambda out: len(webvtt.from_string(out)) == 2),
        ("guide.md", MARKDOWN, lambda out: all(k in out for k in MD_KEPT)),
        ("page.html", HTML, lambda out: all(k in out for k in HTML_KEPT)),
    ],
)
def test_translate_document_files_end_to_end(tmp_path, translate_model, name, text, check):
    (tmp_path / name).write_text(text)
    out_name = "out" + name[name.index(".") :]
    result = subprocess.run(
        [ATTN, "translate", name, "-o", out_name, "-m", str(translate_model), *QUICK],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = (tmp_path / out_name).read_text()
    assert check(out)
    assert out != text
