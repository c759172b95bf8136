"""Entry point of the `attn` script and of `python -m attn`."""

import sys


def _interrupted(error: BaseException) -> bool:
    """Whether `error` was caused, directly or through other exceptions, by a Ctrl-C."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def main() -> None:
    # Ctrl-C while the CLI is still importing (typer, rich) exits like Ctrl-C anywhere else:
    # status 130, no traceback.
    try:
        try:
            from attn.cli.main import main as run

            run()
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as e:
            # A Ctrl-C inside an import can come out wrapped: Python reports an exception
            # raised while a class is being built (a dataclass field's __set_name__) as a
            # RuntimeError caused by it.
            if _interrupted(e):
                sys.exit(130)
            raise
    except SystemExit as done:
        # The CLI's own exit (attn.cli.common.end_process), once it is imported.
        end_process = getattr(sys.modules.get("attn.cli.common"), "end_process", None)
        if end_process is None:
            raise
        end_process(done.code)


if __name__ == "__main__":
    main()
