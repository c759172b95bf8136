"""How to sample (`SamplingOptions`) and how options given by name become them.

Kept apart from `sampling`, and free of torch, so that the command line can check its
options before the model load starts (a Ctrl-C during torch's import is only handled there).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingOptions:
    """How to sample.

    Args:
        temperature: divides the logits; < 1 sharpens, > 1 flattens; 0 = greedy search.
        top_k: sample among the k most probable pieces; 0 = no limit; 1 = greedy search.
        top_p: sample among the fewest most probable pieces whose probabilities reach p
            (nucleus sampling); 1 = no limit.
        seed: with the input's index, seeds each output's random numbers.
        n: samples per input, best first by score in the results.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    n: int = 1

    def __post_init__(self) -> None:
        if not self.temperature >= 0:  # (also NaN)
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")

    @property
    def greedy(self) -> bool:
        """Whether these options leave one choice: the most probable piece."""
        return self.temperature == 0 or self.top_k == 1


def sampling_options(
    sample: bool,
    n_best: int,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> SamplingOptions | None:
    """The options of the Python API and `attn serve` as `SamplingOptions` (None: no
    sampling). Unset (None) options take their defaults: temperature 1, no top-k, top-p 1,
    seed 0.

    Raises:
        ValueError: a sampling option without `sample`, or one out of range.
    """
    given = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
    if not sample:
        for name, value in given.items():
            if value is not None:
                raise ValueError(f"{name} applies only when sampling (sample=True)")
        return None
    return SamplingOptions(
        **{name: value for name, value in given.items() if value is not None}, n=n_best
    )
