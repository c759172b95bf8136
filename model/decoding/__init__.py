"""Turning a trained network into text: greedy and beam search, the lexical shortlist, int8."""
