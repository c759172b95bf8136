"""Where attn keeps things by default: `$ATTN_HOME`, else the platform's user data dir.

Models go to `models/TASK`, datasets that `attn data fetch` downloads to `data/NAME`.
"""

from __future__ import annotations

import os
from pathlib import Path

from attn.data.catalog import DATASETS
from attn.data.readers import DataError
from attn.data.task_files import check_task


def attn_home() -> Path:
    """The attn home directory (not created here)."""
    env = os.environ.get("ATTN_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("attn", appauthor=False))


def default_model_dir(task: str) -> Path:
    """The model directory `attn train TASK` writes and inference reads without `-m`.

    Raises:
        ValueError: unknown task.
    """
    check_task(task)
    return attn_home() / "models" / task


def fetched_data_dir(name: str) -> Path:
    """The directory `attn data fetch NAME` writes dataset NAME to (without --dir)."""
    return attn_home() / "data" / name


def resolve_data(value: str | Path, base: Path | None = None) -> Path:
    """The data that `--data VALUE` means.

    The local path VALUE (relative to `base` when given) where it exists; else, when VALUE
    is the name of a dataset `attn data fetch` knows, the directory that fetch wrote; else
    the path VALUE (which the data readers then report as missing).

    Raises:
        DataError: VALUE names a known dataset that has not been fetched.
    """
    path = Path(value).expanduser()
    if base is not None:
        path = base / path
    name = str(value)
    if path.exists() or name not in DATASETS:
        return path
    from attn.data.fetch import fetched

    directory = fetched_data_dir(name)
    if fetched(DATASETS[name], directory) is None:
        raise DataError(
            name,
            f"no such file or directory, and the {name} dataset has not been fetched "
            f"into {directory}; run: attn data fetch {name}",
        )
    return directory
