"""Real-size corpora: preparation time and memory, and training memory, at 0.1M to 5M pairs
(a benchmark, not a test).

Builds synthetic en->de corpora from Multi30k's training pairs, repeated, each copy marked
(" (k)" at the end of both sides) so that no two pairs are equal, in a scratch directory
(--work, default: a temporary directory, deleted afterwards). For each size it runs, as a user
would, in a subprocess:

1. `attn train translate --data DIR --src en --tgt de --prepare-only`: the preparation
   (reading, tokenizer, encoding, shortlist), its wall time and peak RSS (the largest of the
   process and its encoding workers, from wait4), and the prepared data's size on disk;
2. `attn train translate ...` again into the same model directory: the prepared data is
   mapped, not read again. Time to the first step = from the start of the command to its
   "Training translate ..." line, printed when the loop starts; it then trains for
   --train-seconds and is killed; peak RSS of the training process.

    python bench/scale.py [--sizes 100000 1000000 5000000] [--data ../shared/data]
                          [--train-seconds 60] [--threads 2] [--work DIR]

Writes bench/results/scale.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ATTN = str(Path(sys.executable).parent / "attn")
ENV = {**os.environ, "OMP_NUM_THREADS": "2"}


def build_corpus(multi30k: Path, pairs: int, out: Path) -> Path:
    """`pairs` training pairs (Multi30k repeated, copies marked) and Multi30k's val split."""
    out.mkdir(parents=True, exist_ok=True)
    en = (multi30k / "train.en").read_text(encoding="utf-8").splitlines()
    de = (multi30k / "train.de").read_text(encoding="utf-8").splitlines()
    with (
        open(out / "train.en", "w", encoding="utf-8") as f_en,
        open(out / "train.de", "w", encoding="utf-8") as f_de,
    ):
        for copy in range(-(-pairs // len(en))):
            n = min(len(en), pairs - copy * len(en))
            tag = f" ({copy})" if copy else ""
            f_en.write("".join(f"{line}{tag}\n" for line in en[:n]))
            f_de.write("".join(f"{line}{tag}\n" for line in de[:n]))
    for lang in ("en", "de"):
        shutil.copy(multi30k / f"val.{lang}", out / f"val.{lang}")
    return out


def run(cmd: list[str], *, marker: str | None = None, stop_after: float | None = None) -> dict:
    """Run `cmd`; its wall time, peak RSS (MiB) and, with `marker`, the seconds until a
    stderr line starts with it; with `stop_after`, kill it that long after the marker."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=ENV)  # fmt: skip
    seen: dict[str, float] = {}
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if marker and marker not in seen and line.startswith(marker):
                seen[marker] = time.monotonic() - started

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while True:  # os.wait4, not proc.poll: the child's rusage is wanted, and read once
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        ran = time.monotonic() - started
        if stop_after is not None and marker in seen and ran > seen[marker] + stop_after:
            proc.send_signal(signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.1)
    reader.join(timeout=5)
    killed = os.WIFSIGNALED(status)
    if not killed and os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{''.join(lines[-20:])}")
    return {
        "seconds": round(time.monotonic() - started, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "first_step_s": round(seen[marker], 1) if marker in seen else None,
        "summary": next((x.strip() for x in lines if x.startswith(("Prepared", "Using"))), ""),
        # The last line of each preparation stage: `STAGE: N UNIT in M:SS (RATE)`.
        "stages": [x.strip() for x in lines if " in " in x and x.rstrip().endswith("/s)")],
    }


def measure(pairs: int, multi30k: Path, work: Path, args: argparse.Namespace) -> dict:
    data = build_corpus(multi30k, pairs, work / f"corpus-{pairs}")
    model = work / f"model-{pairs}"
    common = [ATTN, "train", "translate", "--data", str(data), "--src", "en", "--tgt", "de",
              "--model-dir", str(model), "--threads", str(args.threads)]  # fmt: skip
    prepare = run([*common, "--prepare-only"])
    prepared = model / "prepared"
    disk = sum(p.stat().st_size for p in prepared.iterdir() if p.is_file())
    second = run(
        [*common, "--max-steps", "1000000", "--val-every", "1000000"],
        marker="Training translate",
        stop_after=args.train_seconds,
    )
    text_bytes = sum((data / f"train.{lang}").stat().st_size for lang in ("en", "de"))
    shutil.rmtree(data)
    shutil.rmtree(model)
    return {
        "pairs": pairs,
        "text_mib": round(text_bytes / 2**20, 1),
        "prepare_s": prepare["seconds"],
        "prepare_s_per_million_pairs": round(prepare["seconds"] / pairs * 1e6, 1),
        "prepare_peak_rss_mib": prepare["peak_rss_mib"],
        "prepared_mib": round(disk / 2**20, 1),
        "second_run_first_step_s": second["first_step_s"],
        "train_peak_rss_mib": second["peak_rss_mib"],
        "train_seconds": args.train_seconds,
        "prepare_stages": prepare["stages"],
        "prepare_summary": prepare["summary"],
        "second_run_summary": second["summary"],
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                        help="the shared data directory (holds translation/multi30k)")  # fmt: skip
    parser.add_argument("--train-seconds", type=float, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = parser.parse_args()
    multi30k = args.data / "translation" / "multi30k"
    if not (multi30k / "train.en").is_file():
        raise SystemExit(f"no Multi30k in {multi30k}; pass --data")
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        rows = []
        for pairs in args.sizes:
            rows.append(measure(pairs, multi30k, Path(tmp), args))
            rows[-1]["load_average_1m"] = round(os.getloadavg()[0], 2)
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "benchmark": "scale",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "python": platform.python_version(),
        # Other processes share the cores: the 1-minute load average at the end.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\n{result['cpu']}, {result['cores']} cores, --threads {args.threads}")
    print("| pairs | text MiB | prepare s | s per 1M pairs | prepare peak RSS MiB | prepared MiB "
          "| 2nd run: first step s | training peak RSS MiB |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['pairs']:,} | {r['text_mib']} | {r['prepare_s']} | "
              f"{r['prepare_s_per_million_pairs']} | {r['prepare_peak_rss_mib']} | "
              f"{r['prepared_mib']} | {r['second_run_first_step_s']} | "
              f"{r['train_peak_rss_mib']} |")  # fmt: skip


if __name__ == "__main__":
    main()
