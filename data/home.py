"""Where attn keeps models by default: `$ATTN_HOME`, else the platform's user data dir."""

from __future__ import annotations

import os
from pathlib import Path

from attn.data.tasks import check_task


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
