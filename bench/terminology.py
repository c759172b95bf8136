"""Terminology (a benchmark, not a test): a glossary extracted from the Multi30k training
pairs, applied to test2016 with a trained en->de model, with and without `--glossary`.

- The glossary: lower-cased English content words (>= 4 letters, not stop words) whose
  translation is consistent in the training pairs: for each English word, the German word
  with the highest Dice coefficient over the sentences they occur in (2 c(e, d) / (c(e) +
  c(d))), kept when the Dice is at least --min-dice (0.7: terms translated one way, as a
  glossary's are; at 0.5 the references themselves use only 64% of the terms), they occur
  together in at least --min-support pairs, and each is the other's best; the German term
  written as it is most often written in the training data. Source terms match case-insensitively
  (`--glossary-ignore-case`), as a sentence-initial "Dog" is the word "dog".
- Term use: of the glossary hits in test2016 (a source term in a line), the share whose
  target term is a word of the output (the words the glossary matches on, case-sensitive),
  with and without the glossary (the target: >= 99% with it); also the share in the
  references, which says how often the glossary agrees with the human translators.
- BLEU (sacrebleu) with and without the glossary (the target: no more than 0.5 lower with it).
- Speed: beam 4 over test2016 with the glossary against without, sentences/s, the best of
  --rounds alternating runs (the target: at least 0.5x).

    python bench/terminology.py --model MODEL_DIR [--threads 1] [--beam 4] [--rounds 2]

Prints a summary and writes bench/results/terminology.json (with the CPU's name) and the
glossary as bench/results/terminology_glossary.tsv.
"""

from __future__ import annotations

import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import MULTI30K, ROOT, cpu_name, model_bench_parser, save_result

from attn import __version__
from attn.data.glossary import Glossary, words
from attn.model.inference.pipeline import Translator

# Function words that are not terms (with those under 4 letters, which are never terms).
_STOP_WORDS = {
    "en": """about above after again against also along among around away back because been
    before behind being below beside between both come comes down during each either from
    front have having here into just like more most near next other over some something such
    than that their them then there these they this those through under very what when where
    which while with within without your another onto toward towards across upon""",
    "de": """eine einem einen einer eines sich sind sein seine seinem seinen seiner wird werden
    nach neben über unter zwischen hinter während durch gegen ohne oder aber auch dass diese
    dieser dieses anderen andere anderer etwas ihre ihren ihrem ihrer einige vier drei zwei
    nicht noch""",
}
STOP_EN = set(_STOP_WORDS["en"].split())
STOP_DE = set(_STOP_WORDS["de"].split())


def extract(
    src: list[str], tgt: list[str], min_dice: float, min_support: int
) -> list[tuple[str, str, float, int]]:
    """(English term, German term, Dice, pairs together), best Dice first."""
    n_en: Counter[str] = Counter()
    n_de: Counter[str] = Counter()
    both: Counter[tuple[str, str]] = Counter()
    written: dict[str, Counter[str]] = {}
    for en_line, de_line in zip(src, tgt, strict=True):
        en = {w for w in (x.lower() for x in words(en_line)) if content(w, STOP_EN)}
        de_words = [w for w in words(de_line) if content(w.lower(), STOP_DE)]
        for w in de_words:
            written.setdefault(w.lower(), Counter())[w] += 1
        de = {w.lower() for w in de_words}
        n_en.update(en)
        n_de.update(de)
        both.update((e, d) for e in en for d in de)
    dice = {(e, d): 2 * c / (n_en[e] + n_de[d]) for (e, d), c in both.items() if c >= min_support}
    best_de: dict[str, tuple[float, str]] = {}
    best_en: dict[str, tuple[float, str]] = {}
    for (e, d), score in dice.items():
        best_de[e] = max(best_de.get(e, (0.0, "")), (score, d))
        best_en[d] = max(best_en.get(d, (0.0, "")), (score, e))
    pairs = [
        (e, written[d].most_common(1)[0][0], round(score, 3), both[e, d])
        for e, (score, d) in best_de.items()
        if score >= min_dice and best_en[d][1] == e
    ]
    return sorted(pairs, key=lambda p: (-p[2], p[0]))


def content(word: str, stop: set[str]) -> bool:
    return len(word) >= 4 and word.isalpha() and word not in stop


def term_use(glossary: Glossary, sources: list[str], outputs: list[str]) -> dict[str, Any]:
    """Glossary hits in `sources` and the share whose target term is a word of the output."""
    hits = used = 0
    missed: Counter[str] = Counter()
    for source, output in zip(sources, outputs, strict=True):
        out = set(words(output))
        for target in glossary.targets(source):
            hits += 1
            if target in out:
                used += 1
            else:
                missed[target] += 1
    return {
        "hits": hits,
        "used": used,
        "share": round(used / hits, 4) if hits else None,
        "missed_most": missed.most_common(10),
    }


def bleu(outputs: list[str], refs: list[str]) -> float:
    import sacrebleu

    return round(sacrebleu.corpus_bleu(outputs, [refs]).score, 2)


def timed(translator: Translator, texts: list[str], **options: Any) -> tuple[float, list[Any]]:
    start = time.perf_counter()
    results = list(translator.translate(texts, **options))
    return time.perf_counter() - start, results


def main() -> None:
    parser = model_bench_parser(__doc__, "terminology.json")
    parser.add_argument("--min-dice", type=float, default=0.7)
    parser.add_argument("--min-support", type=int, default=10)
    args = parser.parse_args()

    read = lambda name: (MULTI30K / name).read_text(encoding="utf-8").splitlines()  # noqa: E731
    pairs = extract(read("train.en"), read("train.de"), args.min_dice, args.min_support)
    tsv = (args.out.parent if args.out else ROOT / "bench" / "results") / "terminology_glossary.tsv"
    tsv.parent.mkdir(parents=True, exist_ok=True)
    tsv.write_text("".join(f"{e}\t{d}\n" for e, d, _, _ in pairs), encoding="utf-8")
    glossary = Glossary.read(tsv, ignore_case=True)

    sources, refs = read("test2016.en"), read("test2016.de")
    translator = Translator.load(args.model, device="cpu", threads=args.threads)
    options = {"beam": args.beam, "workers": 1}
    runs: dict[str, list[float]] = {"plain": [], "glossary": []}
    results: dict[str, list[Any]] = {}
    for _ in range(args.rounds):
        for mode, extra in (("plain", {}), ("glossary", {"glossary": glossary})):
            seconds, results[mode] = timed(translator, sources, **options, **extra)
            runs[mode].append(seconds)
    plain = [r.text for r in results["plain"]]
    guided = [r.text for r in results["glossary"]]
    best = {mode: min(s) for mode, s in runs.items()}
    lines_with_hits = sum(1 for s in sources if glossary.targets(s))
    result = {
        "cpu": cpu_name(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "attn": __version__,
        "threads": args.threads,
        "beam": args.beam,
        "model": args.model.name,
        "glossary": {
            "pairs": len(pairs),
            "min_dice": args.min_dice,
            "min_support": args.min_support,
            "first": [f"{e} -> {d} ({s}, {n})" for e, d, s, n in pairs[:15]],
        },
        "test_lines": len(sources),
        "lines_with_hits": lines_with_hits,
        "term_use": {
            "without_glossary": term_use(glossary, sources, plain),
            "with_glossary": term_use(glossary, sources, guided),
            "references": term_use(glossary, sources, refs),
        },
        "constraints_not_met_lines": sum(not r.constraints_met for r in results["glossary"]),
        "bleu": {
            "without_glossary": bleu(plain, refs),
            "with_glossary": bleu(guided, refs),
        },
        "seconds": {mode: [round(s, 2) for s in secs] for mode, secs in runs.items()},
        "sentences_per_s": {mode: round(len(sources) / s, 2) for mode, s in best.items()},
        "speed_ratio": round(best["plain"] / best["glossary"], 3),
    }
    result["bleu"]["difference"] = round(
        result["bleu"]["with_glossary"] - result["bleu"]["without_glossary"], 2
    )
    path = save_result(result, args.out, "terminology.json")
    report(result)
    print(f"wrote {path}")


def report(r: dict[str, Any]) -> None:
    use, b = r["term_use"], r["bleu"]
    print(f"CPU: {r['cpu']} ({r['threads']} thread(s)), beam {r['beam']}, model {r['model']}")
    print(
        f"Glossary: {r['glossary']['pairs']} pairs; {r['lines_with_hits']} of "
        f"{r['test_lines']} test lines hold a source term"
    )
    for name in ("without_glossary", "with_glossary", "references"):
        u = use[name]
        print(f"  target term used, {name:17} {u['used']:5}/{u['hits']} = {u['share']:.2%}")
    print(f"  lines whose constraints were not met: {r['constraints_not_met_lines']}")
    print(
        f"BLEU without {b['without_glossary']:.2f}, with {b['with_glossary']:.2f} "
        f"({b['difference']:+.2f})"
    )
    s = r["sentences_per_s"]
    print(
        f"Speed: {s['plain']:.2f} sentences/s without, {s['glossary']:.2f} with "
        f"({r['speed_ratio']:.2f}x)"
    )


if __name__ == "__main__":
    main()
