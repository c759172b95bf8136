"""Tokenizer and data pipeline: training time, encode throughput, streaming memory.

    python bench/tokenizer_data.py [--shared ../shared/data]

Measures, on the shared datasets:
- SentencePiece training time (unigram, 8000 pieces, joint) on Multi30k train.en + train.de;
- encode throughput (sentences/s) on Multi30k train.en, in batches of 1000;
- peak memory while streaming IMDB train.tsv (about 30 MB) through ``read_table``, in a
  fresh subprocess: tracemalloc's peak and the RSS high-water mark (Linux VmHWM).

Prints a table and writes bench/results/tokenizer_data.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from attn.data import read_lines, read_parallel
from attn.tokenizer import Tokenizer

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# Runs in a fresh process. ru_maxrss survives fork/exec on Linux (it would report this
# process's peak), so the child reads VmHWM, which exec resets, and tracemalloc's peak.
_STREAM_CHILD = """
import sys, time, tracemalloc
from attn.data import read_table

def hwm():
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
    except OSError:
        return -1

before = hwm()
tracemalloc.start()
start = time.perf_counter()
rows = sum(1 for _ in read_table(sys.argv[1]))
seconds = time.perf_counter() - start
traced_peak = tracemalloc.get_traced_memory()[1]
print(rows, before, hwm(), seconds, traced_peak)
"""


def bench_train(multi30k: Path) -> tuple[dict, Tokenizer]:
    pairs = read_parallel(multi30k / "train.en", multi30k / "train.de")
    texts = [text for pair in pairs for text in pair]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        tok = Tokenizer.train(texts, Path(tmp) / "joint.model", 8000)
        seconds = time.perf_counter() - start
    return {"sentences": len(texts), "vocab_size": tok.vocab_size, "seconds": seconds}, tok


def bench_encode(tok: Tokenizer, multi30k: Path, batch: int = 1000) -> dict:
    lines = list(read_lines(multi30k / "train.en"))
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        tokens = 0
        for i in range(0, len(lines), batch):
            ids, _ = tok.encode(lines[i : i + batch])
            tokens += sum(map(len, ids))
        best = min(best, time.perf_counter() - start)
    return {
        "sentences": len(lines),
        "seconds": best,
        "sentences_per_s": len(lines) / best,
        "tokens_per_s": tokens / best,
    }


def bench_stream(imdb_tsv: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _STREAM_CHILD, str(imdb_tsv)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    rows, before, after, seconds, traced = out[0], out[1], out[2], out[3], out[4]
    return {
        "file_mb": imdb_tsv.stat().st_size / 1e6,
        "rows": int(rows),
        "seconds": float(seconds),
        "tracemalloc_peak_mb": int(traced) / 1e6,
        "vm_hwm_before_mb": int(before) * 1024 / 1e6,
        "vm_hwm_after_mb": int(after) * 1024 / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    args = parser.parse_args()
    multi30k = args.shared / "translation" / "multi30k"

    train, tok = bench_train(multi30k)
    encode = bench_encode(tok, multi30k)
    stream = bench_stream(args.shared / "sentiment" / "imdb" / "train.tsv")
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "spm_train_unigram_8000_multi30k_en_de": train,
        "encode_multi30k_train_en": encode,
        "stream_read_table_imdb_train": stream,
    }
    rows = [
        ("SentencePiece train (unigram 8000, en+de)", f"{train['seconds']:.1f} s"),
        ("  sentences / final vocab", f"{train['sentences']} / {train['vocab_size']}"),
        ("encode Multi30k train.en", f"{encode['sentences_per_s']:,.0f} sentences/s"),
        ("", f"{encode['tokens_per_s']:,.0f} tokens/s"),
        ("read_table IMDB train.tsv", f"{stream['rows']} rows, {stream['seconds']:.2f} s"),
        ("  file size", f"{stream['file_mb']:.1f} MB"),
        ("  peak Python memory (tracemalloc)", f"{stream['tracemalloc_peak_mb']:.2f} MB"),
        (
            "  peak RSS (VmHWM) before -> after",
            f"{stream['vm_hwm_before_mb']:.1f} -> {stream['vm_hwm_after_mb']:.1f} MB",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tokenizer_data.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
