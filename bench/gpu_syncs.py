"""Where attn waits for the GPU: host syncs counted by call site (a benchmark, not a test).

Trains the demo translation model on CUDA and counts, by call site, the operations that wait
for the GPU between steps 20 and 60 (torch's sync debug mode), then the same for beam search
over 256 sentences in one batch with a trained model.

    python bench/gpu_syncs.py MODEL_DIR SOURCE_FILE
"""

import collections
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import torch

from attn.model.inference.pipeline import Translator
from attn.model.training.train import train

sites = collections.Counter()


def show(message, category, filename, lineno, file=None, line=None):
    if "synchroniz" not in str(message):
        return
    frames = [
        f
        for f in traceback.extract_stack()[:-1]
        if "attn" in f.filename and "warnings" not in f.filename
    ]
    where = (f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames[-4:]))
    sites[" <- ".join(where)] += 1


warnings.showwarning = show
warnings.simplefilter("always")
step = 0


def on_event(e):
    global step
    if e["event"] == "progress":
        step = e["step"]
        if step == 20:
            sites.clear()
            torch.cuda.set_sync_debug_mode("warn")


with tempfile.TemporaryDirectory() as tmp:
    train(
        "translate",
        Path(tmp) / "m",
        {"max_steps": 60, "val_every": 10**9},
        device="cuda",
        on_event=on_event,
        stop_requested=lambda: step >= 60,
    )
torch.cuda.set_sync_debug_mode("default")
print("TRAINING, steps 20-60:")
for k, v in sites.most_common(20):
    print(f"{v:6d}  {k}")
sites.clear()
tr = Translator.load(sys.argv[1], device="cuda")
src = Path(sys.argv[2]).read_text().splitlines()[:256]
list(tr.translate(src[:8]))
torch.cuda.set_sync_debug_mode("warn")
out = list(tr.translate(src, beam=4, batch_size=256))
torch.cuda.set_sync_debug_mode("default")
print("BEAM 4, 256 sentences in one batch:")
for k, v in sites.most_common(20):
    print(f"{v:6d}  {k}")
