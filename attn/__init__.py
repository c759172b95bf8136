"""attn: train and run small encoder-decoder transformers from the command line.

The inference API is importable from here (`from attn import Translator`); it is loaded on
first access, so `import attn` (and `attn --help`) does not pay for importing torch.
"""

from typing import Any

__version__ = "0.1.0"

# Names served lazily from attn.model.inference.pipeline.
_PIPELINE = (
    "Candidate",
    "Classification",
    "Generation",
    "SentimentClassifier",
    "Summarizer",
    "Translator",
)

__all__ = ["__version__", *_PIPELINE]


def __getattr__(name: str) -> Any:
    if name in _PIPELINE:
        from attn.model.inference import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'attn' has no attribute {name!r}")
