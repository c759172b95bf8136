"""Training: settings, the loop, validation, checkpoints and trainer state, averaging."""
