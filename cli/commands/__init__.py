"""One module per `attn` command; each parses, validates and calls library code."""
