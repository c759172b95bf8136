"""Entry point of the `attn` script and of `python -m attn`."""

import sys


def main() -> None:
    # Ctrl-C while the CLI is still importing (typer, rich) exits like Ctrl-C anywhere else:
    # status 130, no traceback.
    try:
        try:
            from attn.cli.main import main as run

            run()
        except KeyboardInterrupt:
            sys.exit(130)
    except SystemExit as done:
        # The CLI's own exit (attn.cli.common.end_process), once it is imported.
        end_process = getattr(sys.modules.get("attn.cli.common"), "end_process", None)
        if end_process is None:
            raise
        end_process(done.code)


if __name__ == "__main__":
    main()
