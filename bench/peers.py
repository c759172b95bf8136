"""attn next to OpenNMT-py and CTranslate2 on Multi30k en->de (a benchmark, not a test).

Measures, in one run on this machine:
- translation throughput on test2016 (target tokens/s = output SentencePiece pieces, EOS not
  counted), beam 4 and greedy, float32 and --int8, 1 process x 1 thread and
  N workers x 1 thread (--threads N);
- whole-process times: `python -c "import torch"`, `attn --help`,
  `echo "A dog runs." | attn translate`, and `attn translate test2016.en` (beam 4, defaults);
- optionally (--train-steps N) training throughput of the `small` preset (bench/train_speed.py);
- with -m and the export extras, the same model in CTranslate2: attn's own weights exported
  (`attn export --format ctranslate2`, float32 and int8), beam 4 and greedy, N workers x 1
  thread each, against attn on the same sentences with the same output caps, back to back, so
  the speed ratio to CTranslate2 needs no second toolkit's model (--same-model-only: just this,
  written to bench/results/peers_same_model.json).

The peers run when their venv exists (shared/peers/setup.sh) and a checkpoint is there:
onmt_translate and CTranslate2 (converted from the same checkpoint) on test2016, and
onmt_train's own tokens/s from a log (--onmt-train-log). Without them their reference
figures from shared/peers/README.md (an idle machine) are shown, labelled "reference".
Compare ratios only between figures measured in the same run.

    python bench/peers.py [-m MODEL_DIR] [--threads 2] [--sentences 1000] [--train-steps 40]
    python bench/peers.py -m MODEL_DIR --same-model-only [--rounds 3]

Without -m it uses a `small` model with random weights (see bench/translate_speed.py).
Writes bench/results/peers.json and prints a table.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT.parent / "shared" / "data" / "translation" / "multi30k"
PEERS_VENV = Path(os.environ.get("PEERS_VENV", Path.home() / ".cache/attn-peers/venv"))
PEERS_WORK = Path(os.environ.get("PEERS_WORK", Path.home() / ".cache/attn-peers/work")) / "mt"
ATTN = str(Path(sys.executable).parent / "attn")

# shared/peers/README.md, 2026-11-25, 2 CPU threads, idle machine.
REFERENCE = {
    "onmt_translate beam 4": 1467,
    "onmt_translate greedy": 3194,
    "ct2 float32 beam 4 (2 workers x 1 thread)": 3212,
    "ct2 float32 greedy (2 workers x 1 thread)": 9963,
    "ct2 int8 beam 4 (2 workers x 1 thread)": 5714,
    "ct2 int8 greedy (2 workers x 1 thread)": 21673,
    "onmt_train tgt tok/s": 2554,
    "onmt_translate test2016 beam 4 wall s": 11.3,
    "python -c 'import torch' s": 1.43,
}


def attn_translation(model_dir: Path, sources: list[str], threads: int, trained: bool) -> list:
    import torch
    from translate_speed import throughput

    from attn.model.inference.pipeline import Translator

    refs = (MULTI30K / "test2016.de").read_text(encoding="utf-8").splitlines()[: len(sources)]
    runs = []
    for int8 in (False, True):
        translator = Translator.load(model_dir, device="cpu", int8=int8)
        # The lexical shortlist is the default; the whole vocabulary too, as the peers decode.
        settings = [(beam, workers, True) for beam in (4, 1) for workers in (1, threads)]
        if translator.shortlist is not None:
            settings += [(beam, threads, False) for beam in (4, 1)]
        for beam, workers, shortlist in dict.fromkeys(settings):
            # One thread per process: at this model size a second intra-op thread gains little,
            # and on a shared machine it costs (threads that spin-wait for a busy core).
            torch.set_num_threads(workers)
            measured = throughput(translator, sources, beam, 32, workers, shortlist)
            run = {
                "precision": "int8" if int8 else "float32",
                "beam": beam,
                "layout": f"{workers} x 1 thread",
                "shortlist": shortlist and translator.shortlist is not None,
                "seconds": round(measured["seconds"], 2),
                "target_tokens_per_s": round(measured["target_tokens_per_s"]),
                "sentences_per_s": measured["sentences_per_s"],
            }
            if trained:
                run["bleu"] = round(sacrebleu_score(measured["outputs"], refs), 2)
            print(f"attn {run}", file=sys.stderr)
            runs.append(run)
    return runs


def same_model(model_dir: Path, sources: list[str], threads: int, rounds: int = 3) -> list[dict]:
    """attn and CTranslate2 running the same weights: attn's model exported with `attn export`.

    Per precision (float32; int8: attn --int8 and CTranslate2 int8 weights) and search (beam 4,
    greedy): CTranslate2 with `threads` workers x 1 thread (inter_threads), attn with `threads`
    forked workers x 1 thread, over the whole vocabulary as CTranslate2 decodes, and attn with
    its lexical shortlist (its default). Both cap each output at attn's 1.5 x source pieces +
    10, batch 32 sentences, and count target tokens as output pieces, EOS not counted. Beam
    search runs without length penalty on both sides: then the two searches are the same
    (CTranslate2 stops a sentence when its best beam has ended, as attn does), and so are the
    outputs but for ties (`same_output_as_ctranslate2`). attn's default penalty (GNMT 0.6)
    changes its speed little; CTranslate2's closest one (0.4) turns its early stop off.

    Each setting runs `rounds` times, the engines alternated (in a rotated order), so that a
    machine whose speed drifts (shared cores) slows both sides alike: rates are medians over
    the rounds, and the ratio is the median of each round's own ratio (its range is kept).
    """
    import torch

    from attn.model.export import export_model
    from attn.model.export.ctranslate2_run import CT2Translator
    from attn.model.inference.pipeline import Translator

    refs = (MULTI30K / "test2016.de").read_text(encoding="utf-8").splitlines()[: len(sources)]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("float32", "int8"):
            out = Path(tmp) / precision
            export_model(model_dir, "ctranslate2", out, quantization=precision)
            ct2 = CT2Translator(out, threads=1, workers=threads)
            translator = Translator.load(model_dir, device="cpu", int8=precision == "int8")
            torch.set_num_threads(threads)
            for beam in (4, 1):
                ct2.translate(sources[:4], beam=beam, length_penalty=0.0)  # warm-up

                engines = {
                    "ctranslate2": functools.partial(_run_ct2, ct2, sources, beam),
                    "attn": functools.partial(_run_attn, translator, sources, beam, threads, False),
                }
                if translator.shortlist is not None:
                    engines["attn+shortlist"] = functools.partial(
                        _run_attn, translator, sources, beam, threads, True
                    )
                rates: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
                texts: dict[str, list[str]] = {}
                for _, name in rotations(list(engines), rounds):
                    seconds, rate, texts[name] = engines[name]()
                    rates[name].append((seconds, rate))
                ct2_rates = [rate for _, rate in rates["ctranslate2"]]
                for engine, measured in rates.items():
                    ratios = [
                        rate / ct2 for (_, rate), ct2 in zip(measured, ct2_rates, strict=True)
                    ]
                    sec = statistics.median(seconds for seconds, _ in measured)
                    ratio, ratio_range = ratio_summary(ratios)
                    run = {
                        "engine": engine,
                        "precision": precision,
                        "beam": beam,
                        "layout": f"{threads} x 1 thread",
                        "length_penalty": 0.0,
                        "rounds": rounds,
                        "seconds": round(sec, 2),
                        "target_tokens_per_s": round(statistics.median(r for _, r in measured)),
                        "sentences_per_s": round(len(sources) / sec, 1),
                        "ratio_to_ctranslate2": ratio,
                        "ratio_range": ratio_range,
                        "bleu": round(sacrebleu_score(texts[engine], refs), 2),
                    }
                    if engine != "ctranslate2":
                        run["same_output_as_ctranslate2"] = sum(
                            a == b for a, b in zip(texts[engine], texts["ctranslate2"], strict=True)
                        )
                    print(f"same model {run}", file=sys.stderr)
                    runs.append(run)
    return runs


def save_result(result: dict, out: Path | None, name: str) -> Path:
    """Write `result` as JSON to `out`, by default bench/results/`name`; returns the path."""
    out = out or ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return out


def model_bench_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The arguments every benchmark of one trained en->de model takes: the model, threads,
    beam, timed rounds and where the JSON `name` goes (bench/results/ by default)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("-m", "--model", type=Path, required=True, help="an en->de model dir")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="timed runs of each mode")
    parser.add_argument("--out", type=Path, help=f"default bench/results/{name}")
    return parser


def _run_ct2(ct2, sources: list[str], beam: int) -> tuple[float, float, list[str]]:
    """CTranslate2 over `sources`: seconds, target tokens/s, texts."""
    start = time.perf_counter()
    outputs = ct2.translate(sources, beam=beam, length_penalty=0.0)
    seconds = time.perf_counter() - start
    return seconds, sum(len(o.pieces) for o in outputs) / seconds, [o.text for o in outputs]


def _run_attn(
    translator, sources: list[str], beam: int, threads: int, shortlist: bool
) -> tuple[float, float, list[str]]:
    """attn over `sources` in batches of 32, `threads` workers: as `_run_ct2`."""
    from translate_speed import throughput

    m = throughput(translator, sources, beam, 32, threads, shortlist, 0.0)
    return m["seconds"], m["target_tokens_per_s"], m["outputs"]


def sacrebleu_score(outputs: list[str], refs: list[str]) -> float:
    import sacrebleu

    return sacrebleu.corpus_bleu(outputs, [refs]).score


def wall(
    cmd: list[str],
    runs: int = 3,
    stdin: str | None = None,
    env: dict | None = None,
    cwd: Path | None = None,
) -> float:
    """Median seconds from start to exit of `cmd` over `runs` runs, its output discarded."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, check=True, env=env, cwd=cwd
        )
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3)


def rotations(names: list[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, name) for `rounds` rounds of `names`, each round starting one name later, so
    that no name always runs first or right after the same other one."""
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            yield r, name


def ratio_summary(ratios: list[float]) -> tuple[float, list[float]]:
    """The median of per-round ratios and their range, rounded as the results show them."""
    return round(statistics.median(ratios), 2), [round(min(ratios), 2), round(max(ratios), 2)]


def whole_process(model_dir: Path, source: Path, threads: int) -> dict:
    t = ["--threads", str(threads)]
    return {
        "python -c 'import torch' s": wall([sys.executable, "-c", "import torch"]),
        "attn --help s": wall([ATTN, "--help"]),
        "echo 'A dog runs.' | attn translate s": wall(
            [ATTN, "translate", "-m", str(model_dir), *t], stdin="A dog runs.\n"
        ),
        f"attn translate {source.name} (beam 4) wall s": wall(
            [ATTN, "translate", "-m", str(model_dir), *t, str(source)], runs=1
        ),
    }


def peers_translation(threads: int) -> dict:
    """onmt_translate and CTranslate2 on the newest checkpoint in the peers' work dir."""
    python = PEERS_VENV / "bin" / "python"
    checkpoints = sorted(PEERS_WORK.glob("run/model_step_*.pt"), key=os.path.getmtime)
    if not python.exists() or not checkpoints:
        return {}
    ckpt = checkpoints[-1]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
    }
    out: dict = {"checkpoint": f"shared/peers/mt/train.sh: {ckpt.name}"}
    for beam, name in ((4, "beam 4"), (1, "greedy")):
        log = subprocess.run(
            [
                str(PEERS_VENV / "bin" / "onmt_translate"),
                "-model",
                str(ckpt),
                "-src",
                "test2016.sp.en",
                "-output",
                f"/tmp/onmt.b{beam}.txt",
                "-beam_size",
                str(beam),
                "-report_time",
            ],
            cwd=PEERS_WORK,
            capture_output=True,
            text=True,
            env=env,
        ).stderr
        found = re.search(r"Tokens per second: ([\d.]+)", log)
        out[f"onmt_translate {name}"] = round(float(found.group(1))) if found else None
    for q in ("float32", "int8"):
        target = PEERS_WORK / f"ct2_bench_{q}"
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(
            [
                str(PEERS_VENV / "bin" / "ct2-opennmt-py-converter"),
                "--model_path",
                str(ckpt),
                "--output_dir",
                str(target),
                "--quantization",
                q,
                "--unsafe_deserialization",
            ],
            capture_output=True,
            check=True,
            env=env,
        )
        shutil.rmtree(PEERS_WORK / f"ct2_{q}", ignore_errors=True)
        target.rename(PEERS_WORK / f"ct2_{q}")
    (PEERS_WORK / "eval").mkdir(exist_ok=True)
    bench = ROOT.parent / "shared" / "peers" / "mt" / "ct2_bench.py"
    text = subprocess.run(
        [str(python), str(bench), "1", "inter2"],
        cwd=PEERS_WORK,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    for q, beam, rate in re.findall(r"ct2 inter2 (\w+) beam(\d).*?-> (\d+) tgt tok/s", text):
        name = "beam 4" if beam == "4" else "greedy"
        out[f"ct2 {q} {name} (2 workers x 1 thread)"] = int(rate)
    return out


def onmt_train_rate(log: Path | None) -> int | None:
    """Median target tokens/s of an onmt_train log ("... src/tgt tok/s" lines)."""
    if log is None or not log.is_file():
        return None
    rates = [int(tgt) for _, tgt in re.findall(r"(\d+)/\s*(\d+) tok/s", log.read_text())]
    return round(statistics.median(rates[1:] or rates)) if rates else None


def machine(threads: int) -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_name(),
        "cpu_features": cpu_features(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": threads,
    }


def cpu_features() -> list[str]:
    """The CPU's vector and matrix extensions that decide attn's kernels (Linux; else [])."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return []
    found = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
    flags = set(found.group(1).split()) if found else set()
    return [f for f in wanted if f in flags]


def cpu_name() -> str:
    """The CPU model as lscpu names it ("AMD EPYC", "Intel Xeon ..."), or "" when unknown."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    found = re.search(r"^Model name:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else ""


def _has_ct2() -> bool:
    import importlib.util

    return importlib.util.find_spec("ctranslate2") is not None


def report_same_model(args: argparse.Namespace) -> None:
    """`--same-model-only`: the same-model comparison alone, written to its own JSON."""
    import ctranslate2

    sources = (MULTI30K / "test2016.en").read_text(encoding="utf-8").splitlines()
    sources = sources[: args.sentences]
    same = same_model(args.model, sources, args.threads, args.rounds)
    result = {
        "benchmark": "peers, same model: attn and CTranslate2 on attn's exported weights",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {**machine(args.threads), "ctranslate2": ctranslate2.__version__},
        "model": args.model.name,
        "sentences": len(sources),
        "same_model_ctranslate2": same,
    }
    out = save_result(result, args.out, "peers_same_model.json")
    machine_line = f"{result['machine']['cpu']} ({', '.join(result['machine']['cpu_features'])})"
    print(f"model: {args.model}; {len(sources)} sentences of test2016; {machine_line}")
    print_same_model(same)
    print(f"written to {out}")


def print_same_model(runs: list[dict]) -> None:
    print(f"{'same model':<44} {'tgt tok/s':>9} {'sent/s':>7} {'BLEU':>6} {'x CT2':>6} range")
    for run in runs:
        search = "greedy" if run["beam"] == 1 else "beam 4"
        name = f"{run['engine']} {run['precision']} {search}, {run['layout']}"
        print(
            f"{name:<44} {run['target_tokens_per_s']:>9} {run['sentences_per_s']:>7} "
            f"{run['bleu']:>6} {run['ratio_to_ctranslate2']:>6} "
            f"{run['ratio_range'][0]}-{run['ratio_range'][1]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", type=Path, help="a trained translate model dir")
    parser.add_argument("--threads", type=int, default=2, help="threads in total")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="same-model runs per setting, engines alternated"
    )
    parser.add_argument("--train-steps", type=int, default=0, help="0 = skip training")
    parser.add_argument("--onmt-train-log", type=Path, help="an onmt_train log of this run")
    parser.add_argument("--no-peers", action="store_true", help="do not run the peers")
    parser.add_argument(
        "--same-model-only",
        action="store_true",
        help="only attn against CTranslate2 on attn's exported weights (needs -m)",
    )
    parser.add_argument("--out", type=Path, help="default: bench/results/peers.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    if args.same_model_only:
        if args.model is None:
            parser.error("--same-model-only needs -m MODEL_DIR (a trained translate model)")
        report_same_model(args)
        return

    from translate_speed import build_random_model

    sources = (MULTI30K / "test2016.en").read_text(encoding="utf-8").splitlines()
    sources = sources[: args.sentences]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or build_random_model(Path(tmp), 8000)
        source = Path(tmp) / "test2016.en"
        source.write_text("".join(f"{s}\n" for s in sources), encoding="utf-8")
        translation = attn_translation(model_dir, sources, args.threads, args.model is not None)
        process = whole_process(model_dir, source, args.threads)
    peers = {} if args.no_peers else peers_translation(args.threads)
    same = (
        same_model(args.model, sources, args.threads, args.rounds)
        if args.model and _has_ct2()
        else []
    )
    training = None
    if args.train_steps:
        from train_speed import measure

        training = measure(
            argparse.Namespace(
                threads=args.threads,
                device="cpu",
                batch_tokens=4096,
                warmup_steps=10,
                steps=args.train_steps,
            )
        )
        peers["onmt_train tgt tok/s"] = onmt_train_rate(args.onmt_train_log)

    result = {
        "benchmark": "peers",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(args.threads),
        "model": args.model.name if args.model else "random weights (small preset)",
        "sentences": len(sources),
        "attn_translation": translation,
        "attn_process": process,
        "attn_training": training,
        "same_model_ctranslate2": same,
        "peers_measured": {k: v for k, v in peers.items() if v is not None},
        "peers_reference": REFERENCE,
    }
    out = save_result(result, args.out, "peers.json")

    print(f"model: {result['model']}; {len(sources)} sentences of test2016; {args.threads} threads")
    print(f"{'attn':<44} {'tgt tok/s':>9} {'sent/s':>7} {'BLEU':>6}")
    for run in translation:
        name = f"{run['precision']} {'greedy' if run['beam'] == 1 else 'beam 4'}, {run['layout']}"
        name += "" if run["shortlist"] else ", whole vocabulary"
        print(
            f"{name:<44} {run['target_tokens_per_s']:>9} {run['sentences_per_s']:>7} "
            f"{run.get('bleu', ''):>6}"
        )
    for name, value in process.items():
        print(f"{name:<44} {value:>9}")
    if training:
        print(f"{'attn train small, tgt tok/s':<44} {training['tgt_tokens_per_s']:>9}")
    print(f"{'peer':<44} {'measured':>9} {'reference':>9}")
    for name, value in REFERENCE.items():
        print(f"{name:<44} {peers.get(name) or '-':>9} {value:>9}")
    if same:
        print_same_model(same)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
