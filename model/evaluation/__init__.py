"""Scores: BLEU/chrF, ROUGE, accuracy/F1, and `attn evaluate`'s test sets."""
