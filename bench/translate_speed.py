"""Translation speed: throughput, first-output latency and peak memory (a benchmark, not a test).

Translates Multi30k test2016.en with greedy search and beam 4, one sentence at a time and in
batches, and reports source sentences/s and target tokens/s (output SentencePiece pieces,
EOS not counted), as the peer baselines in shared/peers do. Then times
`echo x | attn translate -m DIR` (process start to first output, whole command) and an
`attn translate` run over the same sentences with its peak RSS.

Without -m it builds a `small` model with random weights and a real tokenizer trained on
Multi30k train (en+de): fine for speed per step, but an untrained model tends to run to the
length limit, so its tokens/s is meaningful and its sentences/s pessimistic.

    python bench/translate_speed.py --threads 2 [-m MODEL_DIR]

Writes bench/results/translate_speed.json and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT.parent / "shared" / "data" / "translation" / "multi30k"
ATTN = str(Path(sys.executable).parent / "attn")


def build_random_model(directory: Path, vocab_size: int) -> Path:
    """A `small` model with random weights and a tokenizer trained on Multi30k train."""
    import torch

    from attn.data import read_lines
    from attn.model.nn.config import ModelConfig, preset
    from attn.model.nn.transformer import Transformer
    from attn.model.storage.checkpoint import save_model_config, save_weights
    from attn.model.storage.layout import TOKENIZER, WEIGHTS
    from attn.tokenizer import Tokenizer

    texts = [line for lang in ("en", "de") for line in read_lines(MULTI30K / f"train.{lang}")]
    tokenizer = Tokenizer.train(texts, directory / TOKENIZER, vocab_size)
    torch.manual_seed(0)
    config = ModelConfig(task="translate", vocab_size=tokenizer.vocab_size, **preset("small"))
    save_weights(Transformer(config), directory / WEIGHTS)
    save_model_config(directory, config)
    return directory


def throughput(
    translator,
    sources: list[str],
    beam: int,
    batch_size: int,
    workers: int = 1,
    shortlist: bool = True,
    length_penalty: float = 0.6,
) -> dict:
    """Translate `sources` once (after a short warm-up); sentences/s and target tokens/s."""
    options = {"beam": beam, "shortlist": shortlist, "length_penalty": length_penalty}
    list(translator.translate(sources[:4], batch_size=batch_size, **options))
    pieces = 0

    def count(_sentences: int, generated: int) -> None:
        nonlocal pieces
        pieces += generated

    start = time.perf_counter()
    outputs = [
        r.text
        for r in translator.translate(
            sources,
            batch_size=batch_size,
            progress=count,
            workers=workers,
            **options,
        )
    ]
    seconds = time.perf_counter() - start
    return {
        "beam": beam,
        "batch_size": batch_size,
        "sentences": len(sources),
        "seconds": round(seconds, 3),
        "sentences_per_s": round(len(sources) / seconds, 1),
        "target_tokens_per_s": round(pieces / seconds, 1),
        "outputs": outputs,
    }


@contextlib.contextmanager
def count_syncs(device: str) -> Iterator[list]:
    """On CUDA, collect torch's warnings for each operation that waits for the GPU."""
    found: list = []
    if not device.startswith("cuda"):
        yield found
        return
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode("default")
    found.extend(w for w in caught if "synchroniz" in str(w.message))


def translate_command(model_dir: Path, threads: int, device: str, *extra: str) -> list[str]:
    """`attn translate` with the model, thread count and device of the benchmark."""
    cmd = [ATTN, "translate", "-m", str(model_dir), "--threads", str(threads), "--device", device]
    return [*cmd, *extra]


def first_output_latency(model_dir: Path, threads: int, device: str, repeats: int = 3) -> float:
    """Median wall time of `echo x | attn translate -m DIR` (start-up, load, one sentence)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(
            translate_command(model_dir, threads, device),
            input="x\n",
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def whole_run(model_dir: Path, source: Path, threads: int, device: str) -> dict:
    """`attn translate FILE` (beam 4) as a user runs it: wall time and the child's peak RSS."""
    start = time.perf_counter()
    subprocess.run(
        translate_command(model_dir, threads, device, str(source)),
        capture_output=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(peak_kib / 1024, 1)}


def bleu(outputs: list[str], reference: Path) -> float | None:
    if not reference.is_file():
        return None
    import sacrebleu

    refs = reference.read_text(encoding="utf-8").splitlines()[: len(outputs)]
    return round(sacrebleu.corpus_bleu(outputs, [refs]).score, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", type=Path, help="a trained model dir (else random)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=1000, help="test sentences, batched")
    parser.add_argument("--single", type=int, default=100, help="test sentences, batch 1")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "translate_speed.json"
    )
    args = parser.parse_args()

    import torch

    from attn.data import read_lines
    from attn.model.inference.pipeline import Translator
    from attn.model.storage.checkpoint import load_model

    torch.set_num_threads(args.threads)
    source = MULTI30K / "test2016.en"
    sources = list(read_lines(source))[: args.sentences]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or build_random_model(Path(tmp), args.vocab_size)
        translator = Translator.load(model_dir, device=args.device, threads=args.threads)
        runs = []
        for beam in (1, 4):
            for batch_size, n in ((1, args.single), (args.batch_size, len(sources))):
                with count_syncs(args.device) as syncs:
                    run = throughput(translator, sources[:n], beam, batch_size)
                if syncs:
                    run["host_syncs"] = len(syncs)
                outputs = run.pop("outputs")
                if args.model is not None and n == len(sources):
                    run["bleu"] = bleu(outputs, MULTI30K / "test2016.de")
                runs.append(run)
                print(f"beam {beam} batch {batch_size}: {run}", file=sys.stderr)
        latency = first_output_latency(model_dir, args.threads, args.device)
        subset = Path(tmp) / "source.txt"
        subset.write_text("".join(f"{line}\n" for line in sources), encoding="utf-8")
        cli = whole_run(model_dir, subset, args.threads, args.device)
        loaded = load_model(model_dir, device="cpu")
        model_info = {
            "path": str(args.model) if args.model else "random weights (small preset)",
            "trained": args.model is not None,
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
            "vocab_size": loaded.config.vocab_size,
            "d_model": loaded.config.d_model,
            "layers": [loaded.config.n_encoder_layers, loaded.config.n_decoder_layers],
        }
    result = {
        "benchmark": "translate_speed",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": args.threads,
            "device": args.device,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        },
        "model": model_info,
        "input": f"{source.name}, {len(sources)} sentences (batch 1: first {args.single})",
        "runs": runs,
        "first_output_latency_s": round(latency, 3),
        "cli_whole_run_beam4": cli,
        "bench_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"model: {model_info['path']} ({model_info['parameters']:,} parameters)")
    print(f"{'search':<8} {'batch':>5} {'sentences':>9} {'sent/s':>8} {'tok/s':>8} {'BLEU':>6}")
    for run in runs:
        search = "greedy" if run["beam"] == 1 else f"beam {run['beam']}"
        print(
            f"{search:<8} {run['batch_size']:>5} {run['sentences']:>9} "
            f"{run['sentences_per_s']:>8} {run['target_tokens_per_s']:>8} "
            f"{run.get('bleu') or '':>6}"
        )
    print(f"first output (echo x | attn translate): {latency:.2f} s")
    print(f"attn translate, {len(sources)} sentences (beam 4): {cli['seconds']} s, ", end="")
    print(f"peak RSS {cli['peak_rss_mib']} MiB")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
