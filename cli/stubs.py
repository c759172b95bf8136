"""Commands whose implementation has not landed yet: they say so and exit 1."""

from __future__ import annotations

import typer

from attn.cli.common import fail

PENDING = {
    "evaluate": "Score a model: attn evaluate translate --data test.en --ref test.de",
}


def _make(name: str, example: str):
    def command(
        ctx: typer.Context,
    ) -> None:
        fail(f"`attn {name}` is not available in this version yet")

    command.__doc__ = f"{example.split(':')[0]}.\n\nExample: {example.split(': ', 1)[1]}"
    return command


def register(app: typer.Typer) -> None:
    for name, example in PENDING.items():
        app.command(
            name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
        )(_make(name, example))
