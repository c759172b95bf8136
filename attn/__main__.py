"""Entry point of the `attn` script and of `python -m attn`."""

import sys


def main() -> None:
    # Ctrl-C while the CLI is still importing (typer, rich) exits like Ctrl-C anywhere else:
    # status 130, no traceback.
    try:
        from attn.cli.main import main as run

        run()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
