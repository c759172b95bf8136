"""How large should the lexical shortlist be? (a benchmark, not a test)

A translation model decodes over a shortlist of target pieces (attn.model.decoding.shortlist):
the FREQUENT most frequent ones, and PER_SOURCE per source piece. A smaller list decodes
faster and may miss a piece the full vocabulary would have chosen. For each size, this script
counts a shortlist over the model's prepared training pairs (the same counts `attn train`
makes), puts it beside the model's weights in a scratch model directory, and scores a split
with `attn evaluate` (beam 4 and the other decoding defaults), once more over the whole
vocabulary; it prints BLEU, chrF, the mean number of pieces a sentence may use and the
seconds `attn evaluate` took (start-up included: compare within one run only).

    python bench/shortlist_size.py MODEL --data DIR [--split val] [--sizes 100x50,200x100]
        [--threads 2] [--src en --tgt de]

MODEL is a translation model directory that still holds its `prepared/` data (the one
`attn train` leaves there). Adds its rows to bench/results/shortlist_size.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from peers import cpu_name

from attn.data.prepared import open_prepared
from attn.model.decoding.shortlist import FREQUENT, PER_SOURCE, Shortlist
from attn.model.nn.config import load_config
from attn.model.training.corpus import Split
from attn.model.training.prepare import build_shortlist

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "shortlist_size.json"
ATTN = str(Path(sys.executable).with_name("attn"))
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.model")


def score(model: Path, args: argparse.Namespace, shortlist: bool) -> dict:
    """`attn evaluate` on `model`: its scores and the seconds it took."""
    cmd = [ATTN, "evaluate", "translate", "-m", str(model), "--data", str(args.data)]
    cmd += ["--split", args.split, "--threads", str(args.threads), "--format", "json"]
    cmd += ["--src", args.src, "--tgt", args.tgt] if args.src else []
    cmd += [] if shortlist else ["--no-shortlist"]
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - began
    return {**json.loads(done.stdout)["scores"], "seconds": round(seconds, 1)}


def mean_candidates(path: Path, vocab_size: int, src_ids: list[list[int]]) -> float:
    """The mean number of target pieces a sentence of `src_ids` may use."""
    import torch

    lists = Shortlist.load(path, vocab_size)
    counts = []
    for ids in src_ids:
        src = torch.tensor([ids])
        counts.append(int(lists.candidates(src, torch.ones_like(src, dtype=torch.bool)).sum()))
    return sum(counts) / max(1, len(counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--sizes", default=f"{FREQUENT}x{PER_SOURCE},200x100,400x200")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--src", default="")
    parser.add_argument("--tgt", default="")
    args = parser.parse_args()

    config, _ = load_config(args.model / "config.json")
    prepared = open_prepared(args.model / "prepared")
    if prepared is None:
        sys.exit(f"{args.model}: no prepared data beside the model")
    train = Split.open(prepared)
    from attn.tokenizer.sentencepiece import Tokenizer

    tokenizer = Tokenizer.load(args.model / "tokenizer.model")
    source = (args.data / f"{args.split}.{args.src}") if args.src else None
    texts = source.read_text().splitlines() if source else []
    src_ids = tokenizer.encode(texts, max_length=config.max_length)[0] if texts else []

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes.split(","):
            frequent, per_source = (int(x) for x in size.split("x"))
            model = Path(scratch) / size
            model.mkdir()
            for name in MODEL_FILES:
                (model / name).symlink_to((args.model / name).resolve())
            path = model / "shortlist.safetensors"
            build_shortlist(
                path, train, config, lambda _: None, frequent=frequent, per_source=per_source
            )
            row = {"frequent": frequent, "per_source": per_source, **score(model, args, True)}
            if src_ids:
                pieces = mean_candidates(path, config.vocab_size, src_ids)
                row["pieces_per_sentence"] = round(pieces)
            rows.append(row)
            print(json.dumps(row), flush=True)
        whole = {"frequent": None, "per_source": None, **score(args.model, args, False)}
        rows.append(whole)
        print(json.dumps(whole), flush=True)

    print("\n| shortlist (frequent x per source) | BLEU | chrF | pieces / sentence | s |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        name = f"{r['frequent']} x {r['per_source']}" if r["frequent"] else "whole vocabulary"
        pieces = r.get("pieces_per_sentence", config.vocab_size if not r["frequent"] else "")
        print(f"| {name} | {r['bleu']:.2f} | {r['chrf']:.2f} | {pieces} | {r['seconds']} |")
    record = {
        "date": date.today().isoformat(),
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "model": args.model.name,
        "split": args.split,
        "threads": args.threads,
        "rows": rows,
    }
    existing = json.loads(OUT.read_text()) if OUT.exists() else []
    OUT.write_text(json.dumps([*existing, record], indent=1) + "\n")


if __name__ == "__main__":
    main()
