"""`attn info`: versions, devices, threads and where models live."""

from __future__ import annotations

import platform

import typer


def info() -> None:
    """Show attn, torch and Python versions, the devices torch sees, and the model home.

    Example: attn info
    """
    import torch

    from attn import __version__
    from attn.model.home import TASKS, attn_home, default_model_dir

    rows = [
        ("attn", __version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("threads", str(torch.get_num_threads())),
        ("cuda", _cuda_description(torch)),
        ("mps", "available" if _mps(torch) else "not available"),
        ("home", str(attn_home())),
    ]
    for task in TASKS:
        path = default_model_dir(task)
        state = "trained" if (path / "config.json").is_file() else "none yet"
        rows.append((f"model {task}", f"{path} ({state})"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        typer.echo(f"{key:<{width}}  {value}")


def _cuda_description(torch) -> str:
    if not torch.cuda.is_available():
        return "not available"
    names = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        names.append(f"cuda:{i} {props.name} ({props.total_memory / 2**30:.1f} GiB)")
    return "; ".join(names)


def _mps(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def register(app: typer.Typer) -> None:
    app.command("info")(info)
