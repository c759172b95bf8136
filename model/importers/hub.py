"""Where `attn import SOURCE` reads from: a local directory, or a Hugging Face Hub id
downloaded by `huggingface_hub` (the optional extra `attn[hub]`) into its own cache.

`huggingface_hub` keeps its rules: `HF_HOME`/`HF_HUB_CACHE` say where the cache is, and
with `HF_HUB_OFFLINE=1` a model already in the cache is used without the network.
"""

from __future__ import annotations

import re
from pathlib import Path

from attn.model.importers.weights import UnsupportedModelError

# A Hub model id: `owner/name` (letters, digits, '-', '_', '.').
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
# The files an import reads: no other file of the repository is downloaded.
_FILES = [
    "config.json",
    "model.safetensors",
    "pytorch_model.bin",
    "source.spm",
    "target.spm",
    "vocab.json",
    "tokenizer_config.json",
]


class HubError(UnsupportedModelError):
    """A Hub id that cannot be downloaded: no huggingface_hub, no network, no such model."""


def resolve_source(source: str) -> tuple[Path, dict[str, str]]:
    """The local directory of `source` and where it came from (`{"path": ...}` or
    `{"hub": id, "revision": commit}`).

    Raises:
        UnsupportedModelError: `source` is a file, or neither a directory nor a Hub id.
        HubError: a Hub id without huggingface_hub, without network, or unknown to the Hub.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path, {"path": str(path.resolve())}
    if path.exists():
        raise UnsupportedModelError(f"{source} is not a directory; give a model directory")
    if not _HUB_ID.fullmatch(source):
        raise UnsupportedModelError(
            f"{source}: no such directory, and not a Hub id like Helsinki-NLP/opus-mt-en-de"
        )
    directory = _download(source)
    return directory, {"hub": source, "revision": directory.name}


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import (
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError:
        raise HubError(
            f"{repo_id} is a Hugging Face Hub id and huggingface_hub is not installed; "
            "pip install 'attn[hub]', or give a downloaded model directory"
        ) from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_FILES))
    except RepositoryNotFoundError:
        raise HubError(f"{repo_id}: no such model on the Hugging Face Hub") from None
    except LocalEntryNotFoundError:
        raise HubError(
            f"{repo_id} is not in the Hugging Face cache and the Hub cannot be reached "
            "(no network, or HF_HUB_OFFLINE is set)"
        ) from None
    except (HfHubHTTPError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HubError(f"cannot download {repo_id} from the Hugging Face Hub: {reason}") from None
