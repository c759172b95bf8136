"""--workers (forked CPU processes) and --int8 (quantized linears) on the demo-trained models.

Workers must not change a single output nor its place; int8 may change a few outputs, not
the quality, and must really run: int8 layers in the loaded model, scores that move a
little. Both go through the installed `attn` script, as a user runs them; the loaded model
is inspected through the Python API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import ATTN, sigint_default

from attn.data.task_files import demo_dir

# Every test here runs a demo model, some picked with request.getfixturevalue.
pytestmark = pytest.mark.slow


def run(*args: str, stdin: str | None = None) -> list[str]:
    result = subprocess.run([ATTN, *args], input=stdin, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\n")[:-1]


@pytest.fixture(scope="module")
def demo_val() -> dict[str, list[tuple[str, str]]]:
    """The demo validation pairs (source, target or label) of each task, never trained on."""

    def lines(path: Path) -> list[str]:
        return path.read_text(encoding="utf-8").splitlines()

    rows = [line.split("\t") for line in lines(demo_dir("sentiment") / "val.tsv")[1:]]
    return {
        "translate": list(zip(lines(demo_dir("translate") / "val.en"),
                              lines(demo_dir("translate") / "val.de"), strict=True)),
        "summarize": list(zip(lines(demo_dir("summarize") / "val.src"),
                              lines(demo_dir("summarize") / "val.tgt"), strict=True)),
        "sentiment": [(text, label) for text, label in rows],
    }  # fmt: skip


def input_file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("task", "fixture"),
    [("translate", "translate_model"), ("summarize", "summarize_model"),
     ("sentiment", "sentiment_model")],
)  # fmt: skip
def test_workers_give_the_same_lines_in_the_same_order(task, fixture, request, tmp_path, demo_val):
    model = request.getfixturevalue(fixture)
    sources = [src for src, _ in demo_val[task]][:150]
    # Empty lines and a length mix, so that length-sorted chunks really reorder the input.
    sources = [s if i % 17 else "" for i, s in enumerate(sources)]
    path = input_file(tmp_path, sources)
    common = ["-m", str(model), "--threads", "2", "--batch-size", "8", str(path)]
    one = run(task, *common, "--workers", "1")
    two = run(task, *common, "--workers", "2")
    assert len(one) == len(sources)
    assert two == one
    assert [line == "" for line in two] == [s == "" for s in sources]


def test_more_threads_than_workers_do_not_hang(translate_model, tmp_path, demo_val):
    # A forked child's first product on several OpenMP threads hangs once the parent (here
    # loading with 4 threads) has run one: workers run one thread each.
    sources = [src for src, _ in demo_val["translate"]][:80]
    path = input_file(tmp_path, sources)
    common = ["translate", "-m", str(translate_model), "--batch-size", "8", str(path)]
    one = run(*common, "--threads", "1", "--workers", "1")
    assert run(*common, "--threads", "4", "--workers", "2") == one


def run_jsonl(*args: str) -> list[dict]:
    return [json.loads(line) for line in run(*args, "--format", "jsonl")]


def assert_moved_a_little(fp32: list[float], int8: list[float], tol: float) -> None:
    """int8 really ran (most values moved) and stays near float32 (none moved by > tol)."""
    assert fp32 and len(int8) == len(fp32)
    moved = sum(a != b for a, b in zip(fp32, int8, strict=True))
    assert moved >= 0.5 * len(fp32), f"only {moved} of {len(fp32)} values changed: int8 ignored?"
    assert int8 == pytest.approx(fp32, abs=tol)


@pytest.mark.parametrize(
    ("task", "fixture"), [("translate", "translate_model"), ("sentiment", "sentiment_model")]
)
def test_int8_quantizes_the_linear_layers_of_the_loaded_model(task, fixture, request, demo_val):
    from torch import nn
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    from attn import SentimentClassifier, Translator

    model = request.getfixturevalue(fixture)
    pipeline = {"translate": Translator, "sentiment": SentimentClassifier}[task]
    fp32 = pipeline.load(model, device="cpu", threads=1)
    int8 = pipeline.load(model, device="cpu", threads=1, int8=True)
    assert not any(isinstance(m, DynamicInt8Linear) for m in fp32.model.modules())
    quantized = [m for m in int8.model.modules() if isinstance(m, DynamicInt8Linear)]
    assert quantized and all(m.weight().dtype == torch.qint8 for m in quantized)
    assert not [name for name, m in int8.model.named_modules() if isinstance(m, nn.Linear)]
    texts = [src for src, _ in demo_val[task][:32]]
    if task == "translate":
        # The tied output projection, the largest matrix multiply of a step, is int8 too.
        assert isinstance(int8.model.output_proj, DynamicInt8Linear)
        pairs = [
            (a.logprob, b.logprob)
            for a, b in zip(fp32.translate(texts), int8.translate(texts), strict=True)
            if a.text == b.text
        ]
        assert len(pairs) >= 0.8 * len(texts)
        assert_moved_a_little(*map(list, zip(*pairs, strict=True)), tol=0.3)
    else:
        a, b = list(fp32.classify(texts)), list(int8.classify(texts))
        positive = [r.probs["positive"] for r in a], [r.probs["positive"] for r in b]
        assert_moved_a_little(*positive, tol=0.05)


def test_int8_translations_keep_their_quality(translate_model, tmp_path, demo_val):
    import sacrebleu

    pairs = demo_val["translate"][:150]
    path = input_file(tmp_path, [src for src, _ in pairs])
    refs = [tgt for _, tgt in pairs]
    common = ["translate", "-m", str(translate_model), "--threads", "1", str(path)]
    fp32 = run_jsonl(*common)
    int8 = run_jsonl(*common, "--int8")
    assert len(int8) == len(pairs)
    bleu32 = sacrebleu.corpus_bleu([r["output"] for r in fp32], [refs]).score
    bleu8 = sacrebleu.corpus_bleu([r["output"] for r in int8], [refs]).score
    assert bleu8 >= bleu32 - 2.0, (bleu8, bleu32)
    same = [(a, b) for a, b in zip(fp32, int8, strict=True) if a["output"] == b["output"]]
    assert len(same) >= 0.8 * len(pairs)
    # The same translation, scored by int8 linears: a slightly different log-probability.
    assert_moved_a_little([a["logprob"] for a, _ in same], [b["logprob"] for _, b in same], 0.3)


@pytest.mark.parametrize(
    ("task", "fixture"), [("summarize", "summarize_model"), ("sentiment", "sentiment_model")]
)
def test_int8_on_the_other_tasks(task, fixture, request, tmp_path, demo_val):
    model = request.getfixturevalue(fixture)
    pairs = demo_val[task][:60]
    path = input_file(tmp_path, [src for src, _ in pairs])
    common = [task, "-m", str(model), "--threads", "1", str(path)]
    if task == "sentiment":
        common.append("--probs")
    fp32 = run_jsonl(*common)
    int8 = run_jsonl(*common, "--int8")
    assert len(int8) == len(pairs)
    if task == "sentiment":
        labels = [r["label"] for r in int8]
        correct = sum(label == gold for label, (_, gold) in zip(labels, pairs, strict=True))
        assert correct >= 0.9 * len(pairs)
        positive = [a["probs"]["positive"] for a in fp32], [b["probs"]["positive"] for b in int8]
        assert_moved_a_little(*positive, tol=0.05)
    else:
        same = [(a, b) for a, b in zip(fp32, int8, strict=True) if a["output"] == b["output"]]
        assert len(same) >= 0.7 * len(pairs)
        logprobs = [a["logprob"] for a, _ in same], [b["logprob"] for _, b in same]
        assert_moved_a_little(*logprobs, tol=0.5)


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:\tZ") for line in f)
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_ctrl_c_with_workers_leaves_no_process(translate_model, tmp_path):
    path = input_file(tmp_path, ["A young bird likes the letter."] * 4000)
    proc = subprocess.Popen(
        [ATTN, "translate", "-m", str(translate_model), "--threads", "2", "--workers", "2",
         "--batch-size", "8", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=sigint_default,
    )  # fmt: skip
    assert proc.stdout.readline()  # the workers are translating
    workers = children(proc.pid)
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in workers)
