"""Back-translation: what target-language monolingual text adds to en->de (a benchmark, not
a test).

Splits the Multi30k training pairs in two halves and keeps only the German side of the
second half, as if it were monolingual text. Then, through the `attn` CLI:

1. trains the reverse model (de->en) on the first half;
2. translates the monolingual German with it twice: sampled (`--sample --top-k 10`: Edunov
   et al. 2018 found restricted sampling or beam better than unrestricted sampling where
   the reverse model is weak) and with beam 4;
3. trains en->de on the first half alone, on the first half plus the sampled
   back-translations, and on the first half plus the beam ones (`--synthetic`: tagged
   back-translation), all with the same preset and the same number of steps (a step budget,
   not a time budget, so that other processes on the machine do not change what each run
   learns);
4. scores each on test2016 (`attn evaluate`, beam 4).

Runs the independent steps side by side, each in a process of one thread (the reverse model
beside the first-half-only model; the two translations beside the reverse model's score; the
two back-translation models beside the first-half model's score; the last two scores). Each
step's output is kept in --work and reused when the script runs again.

    python bench/backtranslation.py [--steps 300] [--preset tiny] [--top-k 10] [--work DIR]

Writes bench/results/backtranslation.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT.parent / "shared" / "data" / "translation" / "multi30k"
RESULTS = ROOT / "bench" / "results" / "backtranslation.json"
ATTN = str(Path(sys.executable).with_name("attn"))


def split(work: Path) -> tuple[Path, Path]:
    """The first half's pairs (with Multi30k's validation split) and the second half's German."""
    half, mono = work / "half", work / "mono.de"
    if mono.is_file():
        return half, mono
    half.mkdir(parents=True, exist_ok=True)
    en = (MULTI30K / "train.en").read_text(encoding="utf-8").splitlines()
    de = (MULTI30K / "train.de").read_text(encoding="utf-8").splitlines()
    n = len(en) // 2
    (half / "train.en").write_text("\n".join(en[:n]) + "\n", encoding="utf-8")
    (half / "train.de").write_text("\n".join(de[:n]) + "\n", encoding="utf-8")
    for lang in ("en", "de"):
        shutil.copyfile(MULTI30K / f"val.{lang}", half / f"val.{lang}")
    mono.write_text("\n".join(de[n:]) + "\n", encoding="utf-8")
    return half, mono


def train_cmd(args: argparse.Namespace, model: Path, data: Path, src: str, tgt: str) -> list[str]:
    return [
        ATTN, "train", "translate", "--data", str(data), "--src", src, "--tgt", tgt,
        "--model-dir", str(model), "--overwrite", "--preset", args.preset,
        "--batch-tokens", str(args.batch_tokens), "--lr", str(args.lr),
        "--warmup", str(args.warmup), "--max-steps", str(args.steps),
        "--val-every", str(args.steps), "--seed", "0", "--threads", "1",
    ]  # fmt: skip


def run_together(jobs: dict[str, tuple[list[str], Path]], work: Path) -> dict[str, float]:
    """Run the commands whose `done` file is missing side by side; their wall times (s).

    Each job is (command, done): the command's stdout goes to `done` when it succeeds
    (through a temporary file), so that `done` exists only for a finished job."""
    running, seconds = {}, {}
    for name, (cmd, done) in jobs.items():
        if done.exists():
            continue
        log = open(work / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115
        out = open(work / f"{name}.out", "w", encoding="utf-8")  # noqa: SIM115
        print(f"{name}: {' '.join(cmd)}", file=sys.stderr)
        proc = subprocess.Popen(cmd, stdout=out, stderr=log, env={**os.environ, "NO_COLOR": "1"})
        running[name] = (proc, time.monotonic(), done, log, out)
    while running:
        for name, (proc, started, done, log, out) in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            seconds[name] = round(time.monotonic() - started, 1)
            del running[name]
            log.close()
            out.close()
            if rc != 0:
                sys.exit(f"{name} failed (exit {rc}); see {work / f'{name}.log'}")
            (work / f"{name}.out").replace(done)
            print(f"{name}: done in {seconds[name]:.0f} s", file=sys.stderr)
        time.sleep(1)
    return seconds


def synthetic_dir(work: Path, name: str, mono: Path, english: Path) -> Path:
    """A directory of synthetic pairs: the machine-translated English, the real German."""
    directory = work / name
    directory.mkdir(exist_ok=True)
    shutil.copyfile(english, directory / "train.en")
    shutil.copyfile(mono, directory / "train.de")
    return directory


def evaluate_job(work: Path, name: str, model: Path) -> tuple[list[str], Path]:
    """The job that scores `model` on test2016 with beam 4 (the reverse model de->en)."""
    src, tgt = ("de", "en") if name == "reverse" else ("en", "de")
    cmd = [ATTN, "evaluate", "translate", "-m", str(model), "--data", str(MULTI30K)]
    cmd += ["--split", "test2016", "--src", src, "--tgt", tgt, "--beam", "4"]
    cmd += ["--threads", "1", "--format", "json"]
    return cmd, work / f"score-{name}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps of every model")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument(
        "--top-k", type=int, default=10, help="sampled back-translations: the k likeliest pieces"
    )
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "attn-bt")
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    half, mono = split(work)
    models = {name: work / "models" / name for name in ("reverse", "half", "sampled", "beam")}

    walls = run_together(
        {
            "reverse": (train_cmd(args, models["reverse"], half, "de", "en"),
                        work / "reverse.done"),
            "half": (train_cmd(args, models["half"], half, "en", "de"),
                     work / "half.done"),
        },
        work,
    )  # fmt: skip
    translate = [ATTN, "translate", "-m", str(models["reverse"]), str(mono), "--threads", "1"]
    # The first models are scored while the next stage runs.
    walls |= run_together(
        {
            "translate-sampled": (
                [*translate, "--sample", "--top-k", str(args.top_k), "--seed", "0"],
                work / "bt-sampled.en",
            ),
            "translate-beam": ([*translate, "--beam", "4"], work / "bt-beam.en"),
            "evaluate-reverse": evaluate_job(work, "reverse", models["reverse"]),
        },
        work,
    )
    bt = {
        kind: synthetic_dir(work, f"synthetic-{kind}", mono, work / f"bt-{kind}.en")
        for kind in ("sampled", "beam")
    }
    walls |= run_together(
        {
            kind: (
                [*train_cmd(args, models[kind], half, "en", "de"), "--synthetic", str(bt[kind])],
                work / f"{kind}.done",
            )
            for kind in ("sampled", "beam")
        }
        | {"evaluate-half": evaluate_job(work, "half", models["half"])},
        work,
    )
    walls |= run_together(
        {
            f"evaluate-{kind}": evaluate_job(work, kind, models[kind])
            for kind in ("sampled", "beam")
        },
        work,
    )
    scores = {
        name: json.loads((work / f"score-{name}.json").read_text(encoding="utf-8"))["scores"]
        for name in models
    }
    from peers import cpu_name

    n_half = sum(1 for _ in (half / "train.en").open(encoding="utf-8"))
    n_mono = sum(1 for _ in mono.open(encoding="utf-8"))
    result = {
        "benchmark": "backtranslation",
        "data": "Multi30k train split in two halves; test2016 scored with beam 4",
        "pairs_first_half": n_half,
        "monolingual_de": n_mono,
        "preset": args.preset,
        "steps": args.steps,
        "batch_tokens": args.batch_tokens,
        "lr": args.lr,
        "warmup": args.warmup,
        "sampling_top_k": args.top_k,
        "threads": 1,
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "wall_seconds": walls,
        "models": {
            "reverse (de->en, first half)": scores["reverse"],
            "en->de first half only": scores["half"],
            "en->de + sampled BT": scores["sampled"],
            "en->de + beam BT": scores["beam"],
        },
    }
    # The reverse model is scored on test2016 de->en, the others en->de.
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    print(f"{'model':32} {'BLEU':>6} {'chrF':>6}")
    for name, score in result["models"].items():
        bleu, chrf = score.get("bleu", float("nan")), score.get("chrf", float("nan"))
        print(f"{name:32} {bleu:6.1f} {chrf:6.1f}")


if __name__ == "__main__":
    main()
