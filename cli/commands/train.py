"""`attn train TASK`: train a model and write it to a model directory.

Thin: parses flags and an optional config file, calls `attn.model.training.train.train`, and
renders its progress events on stderr (a live line on a terminal, plain lines otherwise).

The flags of the training settings are made from the fields of `TrainSettings`: their names,
help lines and defaults are stated there once. `_FLAG_TYPES` says how the settings that are
not plain numbers or strings are typed on the command line.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import shlex
import signal
import time
import typing
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from attn.cli.common import allow_quick_exit, err_console, fail, stderr_is_terminal
from attn.data.task_files import Task
from attn.model.nn.config import PRESETS
from attn.model.training.settings import TrainSettings, help_text

# Flags that are not training settings (not saved, not taken from a resumed run).
_RUN_KEYS = ("model_dir", "device", "threads", "resume", "overwrite", "prepare_only")
_PATH_KEYS = ("data", "train", "val", "model_dir", "init", "synthetic")


Preset = Enum("Preset", {name: name for name in PRESETS}, type=str)  # type: ignore[misc]

# The command-line type of the settings typed otherwise than their field (the value of a
# setting that is not given is None). A config file takes the same values.
_FLAG_TYPES: dict[str, Any] = {
    "data": Path,  # or the name of a fetched dataset
    "train": list[Path],
    "val": list[Path],
    "init": Path,
    "preset": Preset,
    "overrides": list[str],  # FIELD=VALUE
    "time_budget": str,  # a duration
    "save_every": str,  # a duration, or 0
}
# The flag of a setting, where it is not the setting's name (also the config file's key).
_FLAG_NAMES = {"overrides": "set"}


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str | float, name: str = "time budget", zero: bool = False) -> float:
    """Seconds in `90s`, `20m`, `1h30m`, `1.5h` or plain seconds (`3600`); `name` is what
    the messages call the value; `zero`: 0 (`0`, `0s`, `0m`, ...) is allowed.

    Raises:
        ValueError: anything else, a negative duration, or zero (unless `zero`).
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        value = str(text).strip().lower()
        match = _DURATION.fullmatch(value)
        try:
            seconds = float(value)
        except ValueError:
            if not value or match is None:
                raise ValueError(
                    f"{name} {text!r} is not a duration; write e.g. 90s, 20m or 1h30m"
                ) from None
            h, m, s = (float(g) if g else 0.0 for g in match.groups())
            seconds = 3600 * h + 60 * m + s
    if seconds < 0 or (seconds == 0 and not zero):
        raise ValueError(f"{name} must be {'0 or more' if zero else 'positive'}, got {text!r}")
    return seconds


def parse_overrides(items: list[str] | dict[str, Any]) -> dict[str, Any]:
    """`["d_model=384", "dropout=0.2"]` -> `{"d_model": 384, "dropout": 0.2}`.

    Values become int, float or bool where they read as one, else stay strings.

    Raises:
        ValueError: an item without `=`.
    """
    if isinstance(items, dict):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes FIELD=VALUE (e.g. d_model=384), got {item!r}")
        out[key.strip()] = _scalar(raw.strip())
    return out


def _scalar(raw: str) -> Any:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def _toml() -> Any:
    """The TOML reader: tomllib (Python 3.11+), else tomli, its backport (a dependency on 3.10)."""
    try:
        import tomllib
    except ModuleNotFoundError:
        import tomli as tomllib
    return tomllib


def read_config_file(path: Path, overridden: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Options from a JSON or TOML file whose keys are the flag names (`batch-tokens` or
    `batch_tokens`). Relative paths in it are relative to the file's directory; `data` may
    also name a fetched dataset. The keys in `overridden` (given as flags, which win) are
    left out, so that e.g. `--data DIR` works where the file's dataset is not fetched.

    Raises:
        ValueError: unreadable file or not a table of options; `data` names a dataset that
            has not been fetched (`attn.data.DataError`).
    """
    from attn.data.home import resolve_data

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{path}: cannot read config file ({e.strerror or e})") from None
    try:
        data = _toml().loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except ValueError as e:
        raise ValueError(
            f"{path}: not valid {path.suffix.lstrip('.').upper() or 'JSON'} ({e})"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a table of options")
    options = {key.replace("-", "_"): value for key, value in data.items()}
    options = {key: value for key, value in options.items() if key not in overridden}
    # normpath: `recipes/../runs/x` reads as `runs/x` in messages.
    for key in _PATH_KEYS:
        value = options.get(key)
        if key == "data" and isinstance(value, str):
            options[key] = os.path.normpath(resolve_data(value, base=path.parent))
        elif isinstance(value, str):
            options[key] = os.path.normpath(path.parent / value)
        elif isinstance(value, list):
            options[key] = [os.path.normpath(path.parent / v) for v in value]
    for key in ("train", "val"):
        if isinstance(options.get(key), str):
            options[key] = [options[key]]
    return options


def _setting_flags(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with a flag per training setting (a field of `TrainSettings`) after its
    argument, and its own flags after those. Typer reads flags from the signature; the
    settings' values reach `command` as keyword arguments (None: not given)."""
    signature = inspect.signature(command, eval_str=True)
    argument, *own = (p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD)
    hints = typing.get_type_hints(TrainSettings)
    settings = []
    for spec in dataclasses.fields(TrainSettings):
        name = _FLAG_NAMES.get(spec.name, spec.name)
        # The field's type without its None (int | None -> int): the type of a plain flag.
        kind = _FLAG_TYPES.get(spec.name) or next(
            t for t in (*typing.get_args(hints[spec.name]), hints[spec.name]) if t is not type(None)
        )
        option = typer.Option(f"--{name.replace('_', '-')}", help=help_text(spec.name))
        settings.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=None,
                annotation=Annotated[kind | None, option],
            )
        )  # fmt: skip
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
    command.__signature__ = signature.replace(parameters=[argument, *settings, *own])  # type: ignore[attr-defined]
    return command


@_setting_flags
def train(
    task: Annotated[Task, typer.Argument(help="What to train: translate, summarize or sentiment.")],
    model_dir: Annotated[
        Path | None,
        typer.Option(
            "--model-dir", help="Where the model goes. Default: the task's default model dir."
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or mps. Default: auto.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch. Default: torch's choice.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --model-dir where it stopped.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a model already in --model-dir.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="JSON or TOML file with the same keys as these flags; flags win."
        ),
    ] = None,
    prepare_only: Annotated[
        bool,
        typer.Option(
            "--prepare-only",
            help="Prepare the data into MODEL_DIR/prepared and stop; a later run there maps it.",
        ),
    ] = False,
    **settings: Any,
) -> None:
    """Train a model: attn train translate [--data DIR --src en --tgt de].

    With no data, trains on the built-in demo corpus in about a minute.
    A stop flag (--max-steps, --epochs, --time-budget) replaces the default ones.
    Ctrl-C saves a checkpoint; continue with --resume.
    Under torchrun, trains on every process (DDP).
    """
    run = {"model_dir": model_dir, "device": device, "threads": threads}
    flags = {"resume": resume, "overwrite": overwrite, "prepare_only": prepare_only}
    options = _given({**settings, **run, **flags})
    try:
        if config is not None:
            from_file = read_config_file(config, frozenset(options) - {"set"})
            if "set" in from_file and "set" in options:
                # Field by field: --set dropout=0.2 keeps the file's other fields.
                options["set"] = {
                    **parse_overrides(from_file["set"]),
                    **parse_overrides(options["set"]),
                }
            options = {**from_file, **options}
        options = _normalize(options)
    except ValueError as e:
        fail(str(e))
    _run(task.value, options)


def _given(flags: dict[str, Any]) -> dict[str, Any]:
    """The flags given on the command line, as plain values (Typer passes None, False or an
    empty list for a flag not given)."""
    given: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None or value is False or value == []:
            continue
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, list):
            value = [str(v) for v in value]
        elif isinstance(value, Path):
            value = str(value)
        given[key] = value
    return given


def _normalize(options: dict[str, Any]) -> dict[str, Any]:
    """Turn flag-shaped values into settings: durations to seconds, --set to a dict, a
    dataset name to its fetched directory, paths to absolute ones."""
    from attn.data.home import resolve_data

    if "set" in options:
        options["overrides"] = parse_overrides(options.pop("set"))
    if options.get("time_budget") is not None:
        options["time_budget"] = parse_duration(options["time_budget"])
    if options.get("save_every") is not None:
        every = options["save_every"]
        off = str(every).strip().lower() == "off"
        options["save_every"] = 0.0 if off else parse_duration(every, "--save-every", zero=True)
    if options.get("data") is not None:
        options["data"] = str(resolve_data(options["data"]).resolve())
    for key in ("init", "synthetic"):
        if options.get(key) is not None:
            options[key] = str(Path(options[key]).expanduser().resolve())
    for key in ("train", "val"):
        if key in options:
            options[key] = [str(Path(p).expanduser().resolve()) for p in options[key]]
    return options


class _StopFlag:
    """Ctrl-C (or SIGTERM) once: finish the step, save, exit 130. Twice: abort now."""

    def __init__(self) -> None:
        self.requested = False
        self.noticed = False

    def handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __call__(self) -> bool:
        if self.requested and not self.noticed:
            self.noticed = True
            err_console.print("Stopping: saving a checkpoint (Ctrl-C again to abort)...")
        return self.requested


def _run(task: str, options: dict[str, Any]) -> None:
    from attn.data.home import default_model_dir
    from attn.model.device import apply_process_settings
    from attn.model.training.train import TrainingFailed
    from attn.model.training.train import train as train_model

    model_dir = Path(options.pop("model_dir", None) or default_model_dir(task))
    run = {key: options.pop(key) for key in _RUN_KEYS if key in options}
    main_rank = os.environ.get("RANK", "0") == "0"
    view = _View(task, model_dir) if main_rank else None
    stop = _StopFlag()
    previous = {sig: signal.signal(sig, stop.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        apply_process_settings(run.get("device", "auto"), run.get("threads"), training=True)
        result = train_model(
            task,
            model_dir,
            options,
            resume=bool(run.get("resume")),
            overwrite=bool(run.get("overwrite")),
            device=run.get("device", "auto"),
            on_event=view.on_event if view else None,
            stop_requested=stop,
            prepare_only=bool(run.get("prepare_only")),
        )
    except KeyboardInterrupt:
        fail(f"aborted; the last checkpoint in {model_dir} is intact", code=130)
    except TrainingFailed as e:
        fail(_failure_line(e, task, model_dir))
    except ValueError as e:
        fail(str(e))
    except OSError as e:
        # Disk full, read-only or vanished directory: every write is atomic, so what was
        # saved before stays whole.
        fail(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e))
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if view:
            view.close()
    if result is None:  # --prepare-only
        if view:
            view.prepared_only()
        return
    if view:
        view.summary(result)
    # Everything is saved and closed. A quick exit also skips the destructors of torch's
    # native objects, where a gloo rank under torchrun could abort after a finished run.
    allow_quick_exit()
    if result.stopped == "interrupted":
        raise typer.Exit(130)


def _resume_command(task: str, model_dir: Path) -> str:
    from attn.data.home import default_model_dir

    where = "" if model_dir == default_model_dir(task) else f" --model-dir {model_dir}"
    return f"attn train {task} --resume{where}"


def _failure_line(e: Any, task: str, model_dir: Path) -> str:
    """A `TrainingFailed` as one line: what happened, what last/ holds, where the traceback
    is, what to change and the command that resumes."""
    parts = [e.reason]
    if e.saved_step is None:
        parts.append("no checkpoint to resume from")
    else:
        held = "this step" if e.saved_step == e.step else f"step {e.saved_step}"
        parts.append(f"{model_dir / 'last'} holds {held}")
    if e.log is not None:
        parts.append(f"traceback in {e.log}")
    if e.advice:
        parts.append(e.advice)
    if e.saved_step is not None:
        parts.append(f"resume with: {_resume_command(task, model_dir)}")
    return "; ".join(parts)


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _prepare_line(e: dict[str, Any]) -> str:
    """A preparation stage's progress: `encoding: 1,200,000/5,000,000 pairs, 61,000 pairs/s,
    ETA 1:02`, or at its end `encoding: 5,000,000 pairs in 1:21 (61,000 pairs/s)`."""
    unit, rate = e["unit"], f"{e['rate']:,.0f} {e['unit']}/s"
    if e["final"]:
        return f"{e['stage']}: {e['done']:,} {unit} in {_fmt_time(e['elapsed'])} ({rate})"
    total = f"/{e['total']:,}" if e["total"] else ""
    return f"{e['stage']}: {e['done']:,}{total} {unit}, {rate}, ETA {_fmt_time(e['eta'])}"


def _prepared_line(e: dict[str, Any]) -> str:
    """The one-line summary of the prepared data: what it holds, what was dropped or cut."""
    tokens = e["src_tokens"] + e["tgt_tokens"]
    size = f"{e['files']} files, {e['bytes'] / 2**20:,.1f} MiB"
    if e["reused"]:
        return (
            f"Using the data prepared in {e['directory']}: {e['pairs']:,} pairs, "
            f"{tokens:,} tokens ({size}; delete it to prepare again){_lengths_text(e)}"
        )
    dropped = [
        f"{e['empty']:,} with an empty side",
        f"{e['duplicates']:,} duplicates" if e.get("dedup") else "no duplicates (no --dedup)",
        f"{e['ratio_skipped']:,} over the length ratio",
    ]
    synthetic = f"; {e['synthetic']:,} pairs synthetic" if e.get("synthetic") else ""
    return (
        f"Prepared {e['pairs']:,} pairs ({tokens:,} tokens{synthetic}) and {e['val']:,} "
        "validation examples "
        f"from {e['rows']:,} rows in {_fmt_time(e['seconds'])}: {size} in {e['directory']}; "
        f"skipped {', '.join(dropped)}; cut to {e['max_length']} pieces: {e['src_cut']:,} "
        f"sources, {e['tgt_cut']:,} targets{_lengths_text(e)}"
    )


def _lengths_text(e: dict[str, Any]) -> str:
    """`; pieces (median/99th percentile/longest): sources 131/612/1,406, targets 26/61/150;
    max_length 616 chosen (to hold 99% of each side, within a cap of 1,024)`; "" for data
    prepared before lengths were measured."""
    lengths = e.get("lengths")
    if not lengths:
        return ""
    names = {"src": "sources", "tgt": "targets"}
    sides = ", ".join(
        f"{names[side]} {d['median']:,}/{d['p99']:,}/{d['max']:,}"
        for side, d in lengths.items()
        if side in names
    )
    text = f"; pieces (median/99th percentile/longest): {sides}"
    if lengths.get("chosen"):
        text += (
            f"; max_length {lengths['chosen']} chosen (to hold {lengths['cover']:.0%} of each "
            f"side, within a cap of {lengths['cap']:,})"
        )
    return text


class _View:
    """Renders training events on stderr."""

    def __init__(self, task: str, model_dir: Path) -> None:
        self.task, self.model_dir = task, model_dir
        self.live = stderr_is_terminal()
        self.progress: Any = None
        self.bar: Any = None
        self.max_steps: int | None = None
        self.loss: float | None = None
        self.tps: tuple[str, float] | None = None
        self.last_val = ""
        self.started = self.prepare_shown = time.monotonic()

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "stage":
            self._print(f"[dim]{escape(event['message'])}[/]")
        elif kind == "prepare":
            # Every 2 s on a terminal, every 30 s in a log; always a stage's last line.
            now = time.monotonic()
            if event["final"] or self.live or now - self.prepare_shown >= 30:
                self.prepare_shown = now
                self._print(f"[dim]{escape(_prepare_line(event))}[/]")
        elif kind == "prepared":
            self._print(escape(_prepared_line(event)))
        elif kind == "warning":
            self._print(f"[yellow]Warning:[/] {escape(event['message'])}")
        elif kind == "start":
            self._start(event)
        elif kind == "progress":
            if self.progress is not None:
                self.progress.update(self.bar, completed=event["step"], info=self._line(event))
        elif kind == "log":
            # Sentiment has no target pieces: its throughput is in source pieces.
            side = "src" if self.task == "sentiment" else "tgt"
            self.loss, self.tps = event["loss"], (side, event[f"{side}_tokens_per_s"])
            if self.progress is None:
                self._print(self._line(event))
        elif kind == "validation":
            self._validation(event)

    def _print(self, text: str) -> None:
        console = self.progress.console if self.progress is not None else err_console
        console.print(text, highlight=False, soft_wrap=True)

    def _start(self, e: dict[str, Any]) -> None:
        s = e["settings"]
        self.max_steps = s["max_steps"]
        where = e["device"] + (f" x{e['world_size']}" if e["world_size"] > 1 else "")
        if e["device"] == "cpu":
            where += f", {e['threads']} thread" + ("s" if e["threads"] > 1 else "")
        resumed = f", resumed at step {e['resumed_from']}" if e["resumed_from"] is not None else ""
        if s.get("init") and e["resumed_from"] is None:
            resumed = f", starting from {escape(s['init'])}"
        data = "demo corpus" if e["demo"] else "data"
        self._print(
            f"Training {e['task']} ({s['preset']}, {e['parameters'] / 1e6:.1f}M parameters, "
            f"vocab {e['vocab_size']}) on {data}: {e['train_examples']} train / "
            f"{e['val_examples']} val examples; {where}, {e['precision']}{resumed}"
        )
        self._print(f"Model directory: {escape(str(self.model_dir))}")
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn

            self.progress = Progress(
                BarColumn(bar_width=24),
                TextColumn("{task.fields[info]}"),
                console=err_console,
                transient=True,
            )
            self.progress.start()
            self.bar = self.progress.add_task("train", total=self.max_steps, info="starting")

    def _line(self, e: dict[str, Any]) -> str:
        step = f"step {e['step']}" + (f"/{self.max_steps}" if self.max_steps else "")
        parts = [step, f"epoch {e['epoch']:.2f}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3f}")
        parts.append(f"lr {e['lr']:.2e}")
        if self.tps is not None:
            parts.append(f"{self.tps[1]:,.0f} {self.tps[0]} tok/s")
        parts.append(f"ETA {_fmt_time(e.get('eta'))}")
        if self.last_val:
            parts.append(self.last_val)
        return " | ".join(parts)

    def _validation(self, e: dict[str, Any]) -> None:
        skip = {"step", "epoch", "time", "train_loss", "lr", "metric", "value", "best"}
        skip |= {"best_value", "best_step", "event"}
        scores = " | ".join(f"{k} {v:.2f}" for k, v in e.items() if k not in skip)
        mark = " [green](best)[/]" if e["best"] else ""
        self.last_val = f"{e['metric']} {e['value']:.1f}"
        self._print(f"validation at step {e['step']}: {scores}{mark}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def prepared_only(self) -> None:
        err_console.print(
            f"Train on it with: attn train {self.task} --model-dir {self.model_dir} "
            "(with the same data flags)",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )

    def summary(self, r: Any) -> None:
        from attn.data.home import default_model_dir

        model_opt = "" if r.model_dir == default_model_dir(r.task) else f" -m {r.model_dir}"
        if r.stopped == "interrupted":
            err_console.print(
                f"Interrupted at step {r.step}: checkpoint saved in {r.model_dir / 'last'}.\n"
                f"Resume with: {_resume_command(r.task, r.model_dir)}",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
            return
        why = {
            "max_steps": "reached --max-steps",
            "epochs": "reached --epochs",
            "time_budget": "time budget used",
            "early_stopping": "no improvement for --patience validations",
        }[r.stopped]
        best = (
            f"best {r.metric} {r.best_value:.1f} at step {r.best_step}"
            if r.best_value is not None
            else "no validation"
        )
        faults = [
            (r.oom_split, "split for lack of memory"),
            (r.oom_skipped, "skipped for lack of memory"),
            (r.nonfinite_skipped, "skipped for a non-finite loss"),
        ]
        survived = "".join(f"; {n} batch(es) {what}" for n, what in faults if n)
        err_console.print(
            f"Done ({why}): {r.step} steps, {r.epoch:.1f} epochs, {_fmt_time(r.elapsed)}; "
            f"{best}{survived}.\n"
            f"Model: {r.model_dir} (curves in training.png)",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        example = r.example or ""
        if len(example) <= 200:
            quoted = f'"{example}"' if not re.search(r'["$`\\!]', example) else shlex.quote(example)
            err_console.print(
                f"Try it: echo {quoted} | attn {r.task}{model_opt}",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
        else:
            err_console.print(
                f"Try it: attn {r.task} FILE{model_opt}",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )


def register(app: typer.Typer) -> None:
    app.command("train")(train)
