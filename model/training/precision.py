"""Mixed precision: the arithmetic of the training step.

`--precision auto` (the default) trains under bf16 autocast wherever the hardware does
bfloat16 natively: CUDA GPUs that support it (else fp16 with a gradient scaler), and CPUs
with AVX512-BF16 or AMX, where oneDNN runs the products about 1.4x (AVX512-BF16) or more
(AMX) faster than float32. Elsewhere (AVX2-only CPUs, MPS) it trains in float32. The weights,
the optimizer and the loss stay float32 in every case; autocast only lowers the products.

One exception: an encoder-decoder narrower than the `small` preset (the `tiny` one, d_model
128) trains in float32 on a CPU with AMX (not the sentiment classifier, whose tiny IMDB step
runs 1.15x faster in bfloat16 there: `model_width`). Its products are too small for the
tiles to win back the casts and oneDNN's kernel for each new batch shape: on a 2-core Intel
Xeon with AMX a DialogSum step of the tiny model took 0.352 s in bfloat16 and 0.257 s in
float32, while the small model's Multi30k step ran 1.53x faster in bfloat16
(`bench/train_speed.py`, docs/performance.md).
"""

from __future__ import annotations

import contextlib

import torch

from attn.model.nn.config import preset
from attn.model.training.settings import TrainError, TrainSettings, check_precision


def _cpu_supports(check: str) -> bool:
    """torch.cpu's `check` (absent from older torch builds: False)."""
    return getattr(torch.cpu, check, lambda: False)()


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX tiles)."""
    return _cpu_supports("_is_avx512_bf16_supported") or cpu_has_amx()


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Intel Xeon from Sapphire Rapids on)."""
    return _cpu_supports("_is_amx_tile_supported")


# On a CPU with AMX, `auto` takes bfloat16 for models at least this wide (d_model).
AMX_MIN_WIDTH = 256


def model_width(task: str, settings: TrainSettings) -> int | None:
    """The d_model that `auto` weighs on AMX: the preset's under the overrides. None for the
    sentiment classifier (an encoder alone, 1.15x faster in bfloat16 there even when tiny)
    and for a model from `--init` (taken as wide)."""
    if task == "sentiment" or settings.init:
        return None
    width = {**preset(settings.preset), **settings.overrides}.get("d_model")
    return width if isinstance(width, int) else None


class Precision:
    """The autocast dtype and gradient scaler of a device for one `--precision` mode.

    `width` is the model's d_model where known (None: a model to be loaded, taken as wide);
    `auto` keeps a narrower model in float32 on a CPU with AMX (the module's docstring).

    Raises:
        TrainError: an unknown mode, or bfloat16 asked of a device without it.
    """

    def __init__(self, device: torch.device, mode: str = "auto", width: int | None = None) -> None:
        check_precision(mode)
        self.device = device
        self.dtype: torch.dtype | None = None
        self.scaler: torch.amp.GradScaler | None = None
        if mode == "float32" or device.type not in ("cuda", "cpu"):
            if mode == "bfloat16":
                raise TrainError(f"precision bfloat16 is not supported on {device.type}")
            return
        if device.type == "cuda":
            if torch.cuda.is_bf16_supported():
                self.dtype = torch.bfloat16
            elif mode == "bfloat16":
                raise TrainError("this GPU has no bfloat16; use --precision auto (float16)")
            else:
                self.dtype = torch.float16
                self.scaler = torch.amp.GradScaler("cuda")
        elif mode == "bfloat16" or (cpu_has_bf16() and not _narrow_on_amx(width)):
            self.dtype = torch.bfloat16

    @property
    def name(self) -> str:
        """The dtype's name: float32, bfloat16 or float16."""
        return str(self.dtype or torch.float32).removeprefix("torch.")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def _narrow_on_amx(width: int | None) -> bool:
    return width is not None and width < AMX_MIN_WIDTH and cpu_has_amx()
