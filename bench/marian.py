"""An OPUS-MT-sized Marian model in attn, CTranslate2 and transformers (a benchmark, not a test).

A transformer-base Marian model (6+6 layers, d_model 512, d_ff 2048, 8 heads, a 58,101-piece
vocabulary, SiLU, post-norm: the shape of Helsinki-NLP/opus-mt-en-de) with random weights,
saved by `transformers` in a Hub repository's layout (SentencePiece models trained on the
Multi30k training sides, their pieces first in vocab.json, then filler pieces up to the
vocabulary size). Then, on the Multi30k test2016 sources:

- attn after `attn import`: `Translator`, N forked workers x 1 thread, float32 and --int8;
- CTranslate2 after `ct2-transformers-converter` (float32, and int8 weights): N workers x 1
  thread (inter_threads);
- transformers' `model.generate`: one process, N threads (it has no workers).

Beam 4 and greedy, batches of 32 sentences, no length penalty. Random weights never end a
sentence on their own (the logits bias of EOS is set very low), so every engine decodes
every output to the same cap (`--length` pieces): the same work on each side, and target
tokens/s = output pieces / wall seconds. The engines alternate in rotated order for
`--rounds` rounds, so a machine whose speed drifts slows all alike; a rate is the median of
its rounds.

    python bench/marian.py [--threads 2] [--sentences 500] [--hf-sentences 64] [--length 24]
                           [--rounds 2]

Writes bench/results/marian.json and prints a table (the CPU named).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))  # marian_fixtures

from peers import MULTI30K, ratio_summary, rotations, save_result

ATTN = str(Path(sys.executable).with_name("attn"))
CONVERTER = str(Path(sys.executable).with_name("ct2-transformers-converter"))
VOCAB_SIZE = 58101
BASE = {
    "d_model": 512,
    "encoder_layers": 6,
    "decoder_layers": 6,
    "encoder_attention_heads": 8,
    "decoder_attention_heads": 8,
    "encoder_ffn_dim": 2048,
    "decoder_ffn_dim": 2048,
}


def build_hf_dir(directory: Path) -> Path:
    """A base-sized Marian directory with random weights, as a Hub repository lays it out."""
    import sentencepiece as spm
    import torch
    from marian_fixtures import marian_config, marian_vocab
    from transformers import MarianMTModel, MarianTokenizer

    directory.mkdir(parents=True)
    work = directory.parent / "spm"
    work.mkdir()
    models = {}
    for side in ("en", "de"):
        spm.SentencePieceTrainer.train(
            input=str(MULTI30K / f"train.{side}"),
            model_prefix=str(work / side),
            vocab_size=6000,
            character_coverage=1.0,
            minloglevel=2,
        )
        models[side] = work / f"{side}.model"
    pieces = list(marian_vocab(models["en"], models["de"], ()))[:-1]  # <pad> last, below
    pieces += [f"<filler{i}>" for i in range(VOCAB_SIZE - 1 - len(pieces))]
    pieces.append("<pad>")
    vocab = work / "vocab.json"
    vocab.write_text(json.dumps({p: i for i, p in enumerate(pieces)}), encoding="utf-8")
    pad = len(pieces) - 1
    config = marian_config(VOCAB_SIZE, BASE)  # as tests/marian_fixtures.py's tiny models
    torch.manual_seed(0)
    model = MarianMTModel(config).eval()
    with torch.no_grad():
        model.model.shared.weight[pad].zero_()
        model.final_logits_bias[0, 0] = -1000.0  # no sentence ends before the cap
    model.save_pretrained(directory)
    tokenizer = MarianTokenizer(
        str(models["en"]), str(models["de"]), str(vocab), source_lang="en", target_lang="de"
    )
    tokenizer.save_pretrained(directory)
    return directory


def _attn(translator, sources, beam: int, threads: int, length: int) -> tuple[float, float]:
    """attn over `sources`, batches of 32, `threads` forked workers: seconds, pieces/s."""
    options = {"beam": beam, "shortlist": False, "length_penalty": 0.0, "max_length": length}
    pieces = 0

    def count(_sentences: int, generated: int) -> None:
        nonlocal pieces
        pieces += generated

    start = time.perf_counter()
    for _ in translator.translate(
        sources, split="none", batch_size=32, progress=count, workers=threads, **options
    ):
        pass
    seconds = time.perf_counter() - start
    return seconds, pieces / seconds


def _ct2(translator, tokens: list[list[str]], beam: int, length: int) -> tuple[float, float]:
    start = time.perf_counter()
    results = translator.translate_batch(
        tokens,
        beam_size=beam,
        max_batch_size=32,
        max_decoding_length=length,
        length_penalty=0.0,
    )
    seconds = time.perf_counter() - start
    pieces = sum(len(r.hypotheses[0]) - (r.hypotheses[0][-1:] == ["</s>"]) for r in results)
    return seconds, pieces / seconds


def _hf(model, tokenizer, sources, beam: int, length: int, threads: int) -> tuple[float, float]:
    import torch

    torch.set_num_threads(threads)
    pieces = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(sources), 32):
            batch = tokenizer(sources[i : i + 32], return_tensors="pt", padding=True)
            out = model.generate(**batch, num_beams=beam, max_new_tokens=length, length_penalty=0.0)
            # Output pieces: what follows the start piece, pads and EOS not counted.
            pieces += int(((out[:, 1:] != tokenizer.pad_token_id) & (out[:, 1:] != 0)).sum())
    seconds = time.perf_counter() - start
    return seconds, pieces / seconds


def measure(args: argparse.Namespace, work: Path) -> list[dict]:
    import ctranslate2
    from transformers import MarianMTModel, MarianTokenizer

    from attn.model.inference.pipeline import Translator

    hf_dir = build_hf_dir(work / "opus-mt-base")
    attn_dir, ct2_dirs = work / "attn", {}
    subprocess.run([ATTN, "import", str(hf_dir), "-o", str(attn_dir)], check=True)
    for precision in ("float32", "int8"):
        ct2_dirs[precision] = work / f"ct2-{precision}"
        subprocess.run(
            [CONVERTER, "--model", str(hf_dir), "--output_dir", str(ct2_dirs[precision]),
             "--quantization", precision],
            check=True, capture_output=True,
        )  # fmt: skip
    sources = (MULTI30K / "test2016.en").read_text(encoding="utf-8").splitlines()
    sources = sources[: args.sentences]
    tokenizer = MarianTokenizer.from_pretrained(hf_dir)
    tokens = [tokenizer.convert_ids_to_tokens(tokenizer.encode(s)) for s in sources]
    hf_model = MarianMTModel.from_pretrained(hf_dir).eval()
    runs = []
    for precision in ("float32", "int8"):
        translator = Translator.load(attn_dir, device="cpu", int8=precision == "int8")
        ct2 = ctranslate2.Translator(
            str(ct2_dirs[precision]), device="cpu", intra_threads=1, inter_threads=args.threads
        )
        for beam in (4, 1):
            # Each engine over the first n sentences.
            engines = {
                "attn": lambda n, b=beam, t=translator: _attn(
                    t, sources[:n], b, args.threads, args.length
                ),
                "ctranslate2": lambda n, b=beam, c=ct2: _ct2(c, tokens[:n], b, args.length),
            }
            if precision == "float32":
                # (the slowest by far: on its own first --hf-sentences)
                engines["transformers"] = lambda n, b=beam: _hf(
                    hf_model,
                    tokenizer,
                    sources[: min(n, args.hf_sentences)],
                    b,
                    args.length,
                    args.threads,
                )
            for engine in engines.values():
                engine(4)  # warm-up
            rates: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
            for _, name in rotations(list(engines), args.rounds):
                rates[name].append(engines[name](len(sources)))
                print(f"{precision} beam {beam} {name}: {rates[name][-1][1]:.0f} tok/s",
                      file=sys.stderr)  # fmt: skip
            for name, measured in rates.items():
                ratio_ct2, range_ct2 = ratio_summary(
                    [a / b for (_, a), (_, b) in zip(measured, rates["ctranslate2"], strict=True)]
                )
                run = {
                    "engine": name,
                    "precision": precision,
                    "beam": beam,
                    "layout": f"{args.threads} threads"
                    if name == "transformers"
                    else f"{args.threads} workers x 1 thread",
                    "seconds": round(statistics.median(s for s, _ in measured), 2),
                    "target_tokens_per_s": round(statistics.median(r for _, r in measured)),
                    "ratio_to_ctranslate2": ratio_ct2,
                    "ratio_range": range_ct2,
                }
                runs.append(run)
    return runs


def targets(runs: list[dict]) -> dict[str, float]:
    """The issue's ratios from the medians: attn / CTranslate2 (float32), attn /
    transformers (float32), attn int8 / attn float32; per beam."""
    rate = {(r["engine"], r["precision"], r["beam"]): r["target_tokens_per_s"] for r in runs}
    out = {}
    for beam in (4, 1):
        attn32 = rate[("attn", "float32", beam)]
        out[f"beam {beam}: attn / ctranslate2, float32 (target >= 0.9)"] = round(
            attn32 / rate[("ctranslate2", "float32", beam)], 2
        )
        out[f"beam {beam}: attn / transformers, float32 (target >= 3)"] = round(
            attn32 / rate[("transformers", "float32", beam)], 2
        )
        out[f"beam {beam}: attn int8 / attn float32 (target >= 1.3)"] = round(
            rate[("attn", "int8", beam)] / attn32, 2
        )
    return out


def print_table(runs: list[dict], cpu: str) -> None:
    print(f"Marian transformer-base, random weights; CPU: {cpu}")
    print(f"{'engine':<14}{'precision':<10}{'beam':>5}{'tok/s':>9}{'x CT2':>8}  layout")
    for r in runs:
        print(
            f"{r['engine']:<14}{r['precision']:<10}{r['beam']:>5}{r['target_tokens_per_s']:>9}"
            f"{r['ratio_to_ctranslate2']:>8.2f}  {r['layout']}"
        )


def main() -> None:
    from peers import cpu_name, machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--hf-sentences", type=int, default=64, help="of them, for transformers")
    parser.add_argument("--length", type=int, default=24, help="output pieces per sentence")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = measure(args, Path(tmp))
    result = {
        "benchmark": "marian",
        "model": "Marian transformer-base (6+6 layers, d_model 512, d_ff 2048, vocab 58101), "
        "random weights",
        "sentences": args.sentences,
        "sentences_transformers": min(args.sentences, args.hf_sentences),
        "output_pieces_per_sentence": args.length,
        "rounds": args.rounds,
        "machine": machine(args.threads),
        "runs": runs,
    }
    result["targets"] = targets(runs)
    path = save_result(result, args.out, "marian.json")
    print_table(runs, cpu_name())
    for name, value in result["targets"].items():
        print(f"{name}: {value}")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
