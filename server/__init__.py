"""The HTTP server behind `attn serve`: the JSON API and its web page."""
