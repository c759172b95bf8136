"""The model directory on disk: its files, atomic writes, loading."""
