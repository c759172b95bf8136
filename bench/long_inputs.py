"""Whole inputs against cut ones (a benchmark, not a test): what summarizing and classifying
long documents in parts (`attn.model.inference.long_inputs`) gives and costs.

1. DialogSum (the recipe's settings, `--time-budget` each): a model whose max_length is
   chosen from the data and run on whole dialogues, against one of max_length 256 run with
   its inputs cut; steps reached, target tokens/s in training, validation ROUGE-1/2/L (beam
   4, 6-piece blocking), overall and split by dialogue length (under and over 256 pieces).
2. IMDB (the recipe's settings at max_length 256, head+tail): dev accuracy of the same model
   with whole reviews (windows) and with the cut.
3. 100 documents of 2,000-4,000 pieces (DialogSum dialogues joined end to end, a fact
   sentence last) summarized whole with the DialogSum model: time, peak memory, and how many
   documents' fact reached the model's input.

    python bench/long_inputs.py [--data ../shared/data] [--time-budget 27m] [--work DIR]
        [--limit N] [--documents N] [--parts summarize,imdb,documents]
        [--arms whole,cut256] [--threads N]

`--limit N` keeps the first N training and validation rows (a quick check that it runs).
Writes bench/results/long_inputs.json (with the CPU's name) and prints it.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACT = "Finally, Zebulon fed the purple walrus."


def _lines(path: Path, keepends: bool = False) -> list[str]:
    """The lines of a file, ending at \n only (reviews hold other line separators)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line + "\n" for line in lines] if keepends else lines


def _subset(src: Path, out: Path, names: list[str], limit: int | None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        lines = _lines(src / name, keepends=True)
        keep = lines[: limit + (name.endswith(".tsv"))] if limit else lines
        (out / name).write_text("".join(keep), encoding="utf-8")
    return out


def _seconds(budget: str) -> float:
    """ "27m", "90s", "1h" or a number of seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    if budget[-1:] in units:
        return float(budget[:-1]) * units[budget[-1]]
    return float(budget)


THREADS: int | None = None  # --threads: of each training run and inference


def _train(task: str, data: Path, model: Path, budget: str, **extra) -> dict:
    from attn.model.training.train import train

    options = {
        "data": str(data),
        "preset": "tiny",
        "vocab_size": 8000,
        "batch_tokens": 4096,
        "lr": 2e-3,
        "warmup": 300,
        "label_smoothing": 0.1,
        "time_budget": _seconds(budget),
        "seed": 0,
        **extra,
    }
    tokens: list[float] = []

    def on_event(e: dict) -> None:
        if e.get("event") == "log" and e.get("tgt_tokens_per_s"):
            tokens.append(e["tgt_tokens_per_s"])

    result = train(
        task, model, options, overwrite=True, device="cpu", threads=THREADS, on_event=on_event
    )
    assert result is not None
    config = json.loads((model / "config.json").read_text())
    return {
        "steps": result.step,
        "epochs": round(result.epoch, 2),
        "seconds": round(result.elapsed),
        "tgt_tokens_per_s": round(sum(tokens) / len(tokens)) if tokens else None,
        "max_length": config["model"]["max_length"],
        "lengths": config["data"].get("lengths"),
    }


def summarize_part(data: Path, work: Path, budget: str, arms: list[str]) -> dict:
    from attn import Summarizer
    from attn.model.evaluation.metrics import rouge_scores

    src, ref = _lines(data / "val.src"), _lines(data / "val.tgt")
    out = {}
    for arm, extra, mode in (
        ("whole", {}, "whole"),
        ("cut256", {"overrides": {"max_length": 256}}, "cut"),
    ):
        if arm not in arms:
            continue
        out[arm] = _train("summarize", data, work / f"dialogsum-{arm}", budget, **extra)
        summarizer = Summarizer.load(work / f"dialogsum-{arm}", device="cpu")
        hyps = [r.text for r in summarizer.summarize(src, beam=4, max_input=mode)]
        (ids), _ = summarizer.tokenizer.encode(src)
        short = [i for i, x in enumerate(ids) if len(x) <= 256]
        long = [i for i in range(len(src)) if i not in set(short)]
        out[arm]["rouge"] = rouge_scores(hyps, ref)
        for name, rows in (("under_256", short), ("over_256", long)):
            if rows:
                out[arm][f"rouge_{name}"] = rouge_scores(
                    [hyps[i] for i in rows], [ref[i] for i in rows]
                )
                out[arm][f"n_{name}"] = len(rows)
    return out


def imdb_part(data: Path, work: Path, budget: str) -> dict:
    from attn import SentimentClassifier

    model = work / "imdb-256"
    extra = {"overrides": {"max_length": 256, "keep": "head+tail"}, "val_every": 300}
    out = {"train": _train("sentiment", data, model, budget, **extra)}
    rows = [line.rsplit("\t", 1) for line in _lines(data / "dev.tsv")[1:]]
    texts, gold = [r[0] for r in rows], [r[1] for r in rows]
    classifier = SentimentClassifier.load(model, device="cpu")
    for mode in ("whole", "cut"):
        labels = [r.label for r in classifier.classify(texts, max_input=mode)]
        out[f"accuracy_{mode}"] = sum(a == b for a, b in zip(labels, gold, strict=True)) / len(gold)
    return out


def documents_part(data: Path, model: Path, n: int = 100) -> dict:
    import attn.model.inference.pipeline as pipeline
    from attn import Summarizer

    summarizer = Summarizer.load(model, device="cpu")
    dialogues = _lines(data / "train.src")
    docs, at = [], 0
    target = [2000 + 2000 * i // max(1, n - 1) for i in range(n)]
    for want in target:
        parts: list[str] = []
        while sum(len(x) for x in summarizer.tokenizer.encode(parts)[0]) < want:
            parts.append(dialogues[at % len(dialogues)])
            at += 1
        docs.append(" ".join(parts) + " " + FACT)
    (fact,), _ = summarizer.tokenizer.encode([FACT], add_eos=False)
    reached = set()
    search = pipeline.generate

    def recording(model, src, mask, *args, **kwargs):
        for row, m in zip(src.tolist(), mask.tolist(), strict=True):
            row = [t for t, keep in zip(row, m, strict=True) if keep]
            if any(row[i : i + len(fact)] == fact for i in range(len(row))):
                reached.add(tuple(row))
        return search(model, src, mask, *args, **kwargs)

    pipeline.generate = recording
    try:
        started = time.monotonic()
        results = list(summarizer.summarize(docs, beam=4))
        seconds = time.monotonic() - started
    finally:
        pipeline.generate = search
    return {
        "documents": n,
        "pieces": [min(target), max(target)],
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "split": sum(r.split_further for r in results),
        "inputs_holding_the_fact": len(reached),
    }


def _cpu() -> str:
    """The CPU's model name (Linux), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--time-budget", default="27m")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--parts", default="summarize,imdb,documents")
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument(
        "--arms",
        default="whole,cut256",
        help="DialogSum models to train (one per process: "
        "run two processes side by side, with --threads 1 each)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "long_inputs.json")
    args = parser.parse_args()
    global THREADS
    THREADS = args.threads
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="attn-long-"))
    parts = args.parts.split(",")
    dialogsum = _subset(
        args.data / "summarization" / "dialogsum", work / "dialogsum",
        ["train.src", "train.tgt", "val.src", "val.tgt"], args.limit,
    )  # fmt: skip
    report: dict = {"cpu": _cpu(), "budget": args.time_budget, "threads": args.threads}
    if "summarize" in parts:
        report["dialogsum"] = summarize_part(
            dialogsum, work, args.time_budget, args.arms.split(",")
        )
    if "imdb" in parts:
        imdb = _subset(
            args.data / "sentiment" / "imdb", work / "imdb", ["train.tsv", "dev.tsv"], args.limit
        )
        report["imdb"] = imdb_part(imdb, work, args.time_budget)
    if "documents" in parts:
        report["documents"] = documents_part(dialogsum, work / "dialogsum-whole", args.documents)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
