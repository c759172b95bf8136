"""Mixed precision: bf16 autocast on CUDA GPUs that support it, else fp16 with a gradient
scaler; full float32 on the CPU and MPS."""

from __future__ import annotations

import contextlib

import torch


class Precision:
    """The autocast dtype and gradient scaler of a device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.dtype: torch.dtype | None = None
        self.scaler: torch.amp.GradScaler | None = None
        if device.type == "cuda":
            if torch.cuda.is_bf16_supported():
                self.dtype = torch.bfloat16
            else:
                self.dtype = torch.float16
                self.scaler = torch.amp.GradScaler("cuda")

    @property
    def name(self) -> str:
        """The dtype's name: float32, bfloat16 or float16."""
        return str(self.dtype or torch.float32).removeprefix("torch.")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)
