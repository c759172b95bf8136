"""--workers (forked CPU processes) and --int8 (quantized linears) on the demo-trained models.

Workers must not change a single output nor its place; int8 may change a few outputs, not
the quality. Both go through the installed `attn` script, as a user runs them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import ATTN, sigint_default

from attn.data.tasks import demo_dir


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


def test_int8_translations_keep_their_quality(translate_model, tmp_path, demo_val):
    import sacrebleu

    pairs = demo_val["translate"][:150]
    path = input_file(tmp_path, [src for src, _ in pairs])
    refs = [tgt for _, tgt in pairs]
    common = ["translate", "-m", str(translate_model), "--threads", "1", str(path)]
    fp32 = run(*common)
    int8 = run(*common, "--int8")
    assert len(int8) == len(pairs)
    bleu32 = sacrebleu.corpus_bleu(fp32, [refs]).score
    bleu8 = sacrebleu.corpus_bleu(int8, [refs]).score
    assert bleu8 >= bleu32 - 2.0, (bleu8, bleu32)
    same = sum(a == b for a, b in zip(fp32, int8, strict=True))
    assert same >= 0.8 * len(pairs)


@pytest.mark.parametrize(
    ("task", "fixture"), [("summarize", "summarize_model"), ("sentiment", "sentiment_model")]
)
def test_int8_on_the_other_tasks(task, fixture, request, tmp_path, demo_val):
    model = request.getfixturevalue(fixture)
    pairs = demo_val[task][:60]
    path = input_file(tmp_path, [src for src, _ in pairs])
    fp32 = run(task, "-m", str(model), "--threads", "1", str(path))
    int8 = run(task, "-m", str(model), "--threads", "1", "--int8", str(path))
    assert len(int8) == len(pairs)
    if task == "sentiment":
        labels = [line.split("\t")[0] for line in int8]
        correct = sum(label == gold for label, (_, gold) in zip(labels, pairs, strict=True))
        assert correct >= 0.9 * len(pairs)
    else:
        assert sum(a == b for a, b in zip(fp32, int8, strict=True)) >= 0.7 * len(pairs)


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
