"""attn: train and run small encoder-decoder transformers from the command line."""

__version__ = "0.1.0"
