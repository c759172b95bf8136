"""Data: readers for the input formats, task datasets, batching, built-in demo corpora."""

from attn.data.batching import restore_order, sorted_chunks, token_batches
from attn.data.readers import (
    DataError,
    read_jsonl,
    read_lines,
    read_parallel,
    read_table,
)
from attn.data.task_files import (
    TASKS,
    Example,
    TaskData,
    TaskFiles,
    demo_dir,
    find_task_files,
    load_task_data,
)

__all__ = [
    "TASKS",
    "DataError",
    "Example",
    "TaskData",
    "TaskFiles",
    "demo_dir",
    "find_task_files",
    "load_task_data",
    "read_jsonl",
    "read_lines",
    "read_parallel",
    "read_table",
    "restore_order",
    "sorted_chunks",
    "token_batches",
]
