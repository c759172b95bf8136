"""Documents, not only sentences: paragraphs, subtitles, Markdown and HTML (a benchmark, not a
test), on the Multi30k test2016 sources with a trained en->de model.

- Paragraphs: the sources grouped into paragraphs of 5 consecutive sentences (references
  joined the same way). BLEU of the paragraphs translated with sentence splitting (the
  default) against the sentences translated one by one and joined (the target: within 0.5),
  and without splitting (`split="none"`: each paragraph one input of the model) beside them;
  the throughput of paragraph mode against sentence mode (source words/s; the target: at
  least 0.9x), the best of --rounds alternating runs.
- Subtitles: an .srt made from the sources (one cue a sentence, every 4th over two lines,
  every 7th in <i>...</i>) translated as a document: the `srt` library must read the
  output, with the same cue numbers and timings; BLEU of the cues' text against the plain
  sentence translation's (the target: within 0.5).
- Markdown and HTML: a document of each with front matter, code blocks, links, lists, a
  table and inline tags, made from the sources: every literal part (what is not text to
  translate) must come back byte-identical and in order, the named non-text pieces must be
  left out of the texts to translate, and every text must come back translated.

    python bench/documents.py --model MODEL_DIR [--threads 1] [--beam 4] [--rounds 2]

Prints a table and writes bench/results/documents.json (with the CPU's name).
"""

from __future__ import annotations

import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import MULTI30K, cpu_name, model_bench_parser, save_result

from attn import __version__
from attn.data.documents import parse
from attn.model.inference.pipeline import Translator

PARAGRAPH = 5


def bleu(outputs: list[str], refs: list[str]) -> float:
    import sacrebleu

    return round(sacrebleu.corpus_bleu(outputs, [refs]).score, 2)


def grouped(lines: list[str], n: int) -> list[str]:
    return [" ".join(lines[i : i + n]) for i in range(0, len(lines) - n + 1, n)]


def timed(translator: Translator, texts: list[str], **options: Any) -> tuple[float, list[str]]:
    start = time.perf_counter()
    outputs = [r.text for r in translator.translate(texts, **options)]
    return time.perf_counter() - start, outputs


# --- paragraphs ---------------------------------------------------------------------------


def paragraphs(
    translator: Translator, sources: list[str], refs: list[str], beam: int, rounds: int
) -> dict[str, Any]:
    """Sentence mode, paragraph mode with and without splitting: BLEU and speed."""
    paras, para_refs = grouped(sources, PARAGRAPH), grouped(refs, PARAGRAPH)
    words = sum(len(p.split()) for p in paras)
    list(translator.translate(paras[:4], beam=beam))  # warm-up
    seconds: dict[str, float] = {"sentences": float("inf"), "paragraphs": float("inf")}
    for _ in range(rounds):  # alternated, so that a busy moment does not favour one mode
        took, by_sentence = timed(translator, sources, beam=beam, split="none")
        seconds["sentences"] = min(seconds["sentences"], took)
        took, split = timed(translator, paras, beam=beam)
        seconds["paragraphs"] = min(seconds["paragraphs"], took)
    took_unsplit, unsplit = timed(translator, paras, beam=beam, split="none")
    sentence_bleu = bleu(grouped(by_sentence, PARAGRAPH), para_refs)
    split_bleu = bleu(split, para_refs)
    speed = {mode: round(words / s, 1) for mode, s in seconds.items()}
    # A caption without end punctuation runs into the next one once joined: no splitter can
    # find that boundary. The paragraphs whose captions all end in . ! ? show the splitting
    # itself.
    whole = [
        k
        for k in range(len(paras))
        if all(s.rstrip()[-1:] in ".!?" for s in sources[k * PARAGRAPH : (k + 1) * PARAGRAPH])
    ]
    by_paragraph = grouped(by_sentence, PARAGRAPH)
    sub_refs = [para_refs[k] for k in whole]
    punctuated = {
        "paragraphs": len(whole),
        "bleu_sentence_by_sentence": bleu([by_paragraph[k] for k in whole], sub_refs),
        "bleu_paragraphs_split": bleu([split[k] for k in whole], sub_refs),
    }
    punctuated["bleu_difference"] = round(
        punctuated["bleu_paragraphs_split"] - punctuated["bleu_sentence_by_sentence"], 2
    )
    return {
        "paragraphs": len(paras),
        "sentences_per_paragraph": PARAGRAPH,
        "source_words": words,
        "bleu_sentence_by_sentence": sentence_bleu,
        "bleu_paragraphs_split": split_bleu,
        "bleu_paragraphs_no_split": bleu(unsplit, para_refs),
        "bleu_difference": round(split_bleu - sentence_bleu, 2),
        "bleu_within_0_5": abs(split_bleu - sentence_bleu) <= 0.5,
        "captions_ending_in_punctuation": punctuated,
        "seconds": {
            **{m: round(s, 2) for m, s in seconds.items()},
            "no_split": round(took_unsplit, 2),
        },
        "source_words_per_s": speed,
        "paragraph_vs_sentence_speed": round(speed["paragraphs"] / speed["sentences"], 3),
        "example": {"source": paras[0], "split": split[0], "no_split": unsplit[0]},
    }


# --- subtitles ----------------------------------------------------------------------------


def timestamp(ms: int) -> str:
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def make_srt(sentences: list[str]) -> str:
    """One cue a sentence: every 4th over two lines, every 7th in <i>...</i>."""
    cues = []
    for i, text in enumerate(sentences):
        if i % 4 == 1 and len(text.split()) > 3:
            words = text.split()
            text = " ".join(words[: len(words) // 2]) + "\n" + " ".join(words[len(words) // 2 :])
        if i % 7 == 3:
            text = f"<i>{text}</i>"
        start = 3000 * i + 500
        cues.append(f"{i + 1}\n{timestamp(start)} --> {timestamp(start + 2400)}\n{text}\n")
    return "\n".join(cues)


def cue_text(content: str) -> str:
    """A cue's text as one line, tags left out."""
    return " ".join(re.sub(r"</?[a-z][^>]*>", "", content).split())


def subtitles(
    translator: Translator, sources: list[str], refs: list[str], plain: list[str], beam: int
) -> dict[str, Any]:
    """The .srt of `sources` translated as a document, against `plain` (their translation)."""
    import srt

    from attn.model.inference.documents import translate_document

    source = make_srt(sources)
    start = time.perf_counter()
    output = translate_document(translator, parse(source, "srt", "test2016.srt"), beam=beam)
    seconds = time.perf_counter() - start
    before, after = list(srt.parse(source)), list(srt.parse(output))
    same_cues = [(c.index, c.start, c.end) for c in after] == [
        (c.index, c.start, c.end) for c in before
    ]
    same_lines = [c.content.count("\n") for c in after] == [c.content.count("\n") for c in before]
    same_tags = [c.content.startswith("<i>") for c in after] == [
        c.content.startswith("<i>") for c in before
    ]
    texts = [cue_text(c.content) for c in after]
    cue_bleu, plain_bleu = bleu(texts, refs), bleu(plain, refs)
    return {
        "cues": len(before),
        "two_line_cues": sum("\n" in c.content for c in before),
        "tagged_cues": sum(c.content.startswith("<i>") for c in before),
        "srt_library_reads_output": True,
        "same_numbers_and_timings": same_cues,
        "same_lines_per_cue": same_lines,
        "tags_kept": same_tags,
        "bleu_srt": cue_bleu,
        "bleu_plain_text": plain_bleu,
        "bleu_difference": round(cue_bleu - plain_bleu, 2),
        "bleu_within_0_5": abs(cue_bleu - plain_bleu) <= 0.5,
        "seconds": round(seconds, 2),
        "example": {"source": str(before[1].content), "output": str(after[1].content)},
    }


# --- Markdown and HTML --------------------------------------------------------------------


def make_markdown(s: list[str]) -> tuple[str, list[str]]:
    """A Markdown document of sentences `s`, and its non-text pieces."""
    code = '```python\nprint("A man rides a bike.")\n```\n'
    front = "---\ntitle: Multi30k\nlang: en\n---\n"
    rule = "|:------|-----:|\n"
    url = "https://example.org/multi30k?split=test2016#top"
    html = '<div class="note">A raw HTML block.</div>\n'
    doc = (
        f"{front}\n# {s[0]}\n\n{s[1]} {s[2]}\n\n- {s[3]}\n- *{s[4]}*\n\n1. {s[5]}\n2. {s[6]}\n\n"
        f"| Scene | Note |\n{rule}| {s[7].rstrip('.')} | {s[8].rstrip('.')} |\n\n{code}\n"
        f"{s[9]} See [{s[10].rstrip('.')}]({url}) and `attn translate`.\n\n"
        f"> **{s[11]}**\n\n{html}"
    )
    return doc, [front, code, rule, f"]({url})", "`attn translate`", html]


def make_html(s: list[str]) -> tuple[str, list[str]]:
    """An HTML document of sentences `s`, and its non-text pieces."""
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<style>p > b { color: #08519c; }</style>\n"
        '<script>const title = "A dog runs.";</script>\n'
    )
    pre = '<pre><code>attn translate talk.srt -o "talk.de.srt"</code></pre>\n'
    link = '<a href="https://example.org/park?x=1&amp;y=2" title="park">'
    doc = (
        f"{head}<title>{s[0]}</title>\n</head>\n<body>\n<h1>{s[1]}</h1>\n"
        f"<p>{s[2]} <b>{s[3]}</b> {link}{s[4]}</a></p>\n"
        f"<ul>\n<li>{s[5]}</li>\n<li><em>{s[6]}</em></li>\n</ul>\n"
        f'<table class="scenes">\n<tr><th>{s[7]}</th><td>{s[8]}</td></tr>\n</table>\n'
        f"{pre}<p>{s[9]}<br>{s[10]}</p>\n</body>\n</html>\n"
    )
    return doc, [head, pre, link, '<table class="scenes">', "<br>"]


def round_trip(
    translator: Translator, fmt: str, text: str, pieces: list[str], sentences: list[str], beam: int
) -> dict:
    """Translate a document made of `sentences`; check its literal parts, its non-text
    `pieces` and its texts (no sentence may come back untranslated)."""
    document = parse(text, fmt, f"bench.{fmt}")
    results = list(translator.translate(document.units, beam=beam, align=True))
    output = document.render(results)
    position, in_order = 0, True
    for part in document.parts:
        if isinstance(part, str):
            found = output.find(part, position)
            in_order = in_order and found >= 0
            position = found + len(part) if found >= 0 else position
    units = document.units
    untranslated = [
        u for u, r in zip(units, results, strict=True) if not r.text.strip() or r.text == u
    ]
    return {
        "units": len(units),
        "literal_parts": sum(isinstance(p, str) for p in document.parts),
        "literal_parts_byte_identical_in_order": in_order,
        "non_text_pieces_kept": all(p in output for p in pieces),
        "non_text_pieces_not_translated": not any(p.strip() in " ".join(units) for p in pieces),
        "every_text_translated": not untranslated,
        "untranslated": untranslated,
        "sentences_left_in_english": [x for x in sentences if x.rstrip(".") in output],
        "output": output,
    }


# --- the run ------------------------------------------------------------------------------


def main() -> None:
    parser = model_bench_parser(__doc__, "documents.json")
    parser.add_argument("--paragraphs", type=int, default=200)
    parser.add_argument("--cues", type=int, default=1000)
    args = parser.parse_args()

    sources = (MULTI30K / "test2016.en").read_text(encoding="utf-8").splitlines()
    refs = (MULTI30K / "test2016.de").read_text(encoding="utf-8").splitlines()
    translator = Translator.load(args.model, device="cpu", threads=args.threads)
    n = args.paragraphs * PARAGRAPH
    para = paragraphs(translator, sources[:n], refs[:n], args.beam, args.rounds)
    plain = [r.text for r in translator.translate(sources[: args.cues], beam=args.beam)]
    subs = subtitles(translator, sources[: args.cues], refs[: args.cues], plain, args.beam)
    used = sources[20:32]
    markup = {
        fmt: round_trip(translator, fmt, *make(used), used, args.beam)
        for fmt, make in (("markdown", make_markdown), ("html", make_html))
    }
    result = {
        "cpu": cpu_name(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "attn": __version__,
        "threads": args.threads,
        "beam": args.beam,
        "model": args.model.name,
        "paragraphs": para,
        "subtitles": subs,
        "markup": markup,
    }
    path = save_result(result, args.out, "documents.json")
    report(result)
    print(f"wrote {path}")


def report(r: dict[str, Any]) -> None:
    p, s = r["paragraphs"], r["subtitles"]
    print(f"CPU: {r['cpu']} ({r['threads']} thread(s)), beam {r['beam']}, model {r['model']}")
    print(f"\nParagraphs: {p['paragraphs']} x {p['sentences_per_paragraph']} sentences")
    print(f"  BLEU sentence by sentence     {p['bleu_sentence_by_sentence']:6.2f}")
    print(
        f"  BLEU paragraphs, split        {p['bleu_paragraphs_split']:6.2f}"
        f"  ({p['bleu_difference']:+.2f}, within 0.5: {p['bleu_within_0_5']})"
    )
    print(f"  BLEU paragraphs, no split     {p['bleu_paragraphs_no_split']:6.2f}")
    q = p["captions_ending_in_punctuation"]
    print(
        f"  the {q['paragraphs']} paragraphs whose captions all end in . ! ?: sentence by "
        f"sentence {q['bleu_sentence_by_sentence']:.2f}, split {q['bleu_paragraphs_split']:.2f}"
        f" ({q['bleu_difference']:+.2f})"
    )
    w = p["source_words_per_s"]
    print(
        f"  source words/s: sentences {w['sentences']}, paragraphs {w['paragraphs']}"
        f" -> {p['paragraph_vs_sentence_speed']:.3f}x (target >= 0.9)"
    )
    print(f"\nSubtitles: {s['cues']} cues ({s['two_line_cues']} two-line, {s['tagged_cues']} <i>)")
    print(
        f"  same numbers and timings: {s['same_numbers_and_timings']}, lines per cue: "
        f"{s['same_lines_per_cue']}, tags: {s['tags_kept']}"
    )
    print(
        f"  BLEU .srt {s['bleu_srt']:.2f} vs plain text {s['bleu_plain_text']:.2f}"
        f" ({s['bleu_difference']:+.2f}, within 0.5: {s['bleu_within_0_5']})"
    )
    for fmt, m in r["markup"].items():
        print(
            f"\n{fmt}: {m['units']} texts, {m['literal_parts']} literal parts byte-identical in "
            f"order: {m['literal_parts_byte_identical_in_order']}; non-text pieces kept: "
            f"{m['non_text_pieces_kept']}, not translated: {m['non_text_pieces_not_translated']};"
            f" every text translated: {m['every_text_translated']}, sentences left in English:"
            f" {len(m['sentences_left_in_english'])}"
        )


if __name__ == "__main__":
    main()
