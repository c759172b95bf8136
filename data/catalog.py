"""The public datasets `attn data fetch` knows: where each lives, its license and checksums.

Pure data, no I/O: `attn data list` renders it and `attn.data.fetch` downloads from it.
URLs are pinned to a commit where the host allows it, so a recorded checksum stays valid.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RemoteFile:
    """One file to download.

    Args:
        name: the file name; a mirror (URL or directory) holds the file under this name.
        url: the canonical public URL.
        sha256: expected SHA-256 in hex, or None where none is known.
        gunzip: the checksum is of the gunzipped content, not of the download itself
            (recorded from the uncompressed copy in shared/data, which is byte-identical).
        size: approximate download size in bytes, for `attn data list`.
        git_blob: for a file of a Git repository at a pinned commit whose SHA-256 is not
            known, the blob id (SHA-1) the commit's tree records for it; checked instead.
    """

    name: str
    url: str
    sha256: str | None = None
    gunzip: bool = False
    size: int | None = None
    git_blob: str | None = None

    @property
    def verified(self) -> bool:
        """Whether a download of it is checked against a pinned hash."""
        return self.sha256 is not None or self.git_blob is not None


@dataclass(frozen=True)
class Dataset:
    """A public dataset and how to turn its downloads into a directory `attn train` reads.

    Args:
        name: the name users type (`attn data fetch NAME`).
        title: a human title.
        task: the `attn train` task the converted data feeds.
        layout: the converter in `attn.data.layouts` that knows the downloaded files' layout.
        files: what to download.
        license: the license as the source states it.
        citation: whom to cite.
        homepage: where to read more.
        train_args: extra `attn train` arguments after `--data DIR`.
    """

    name: str
    title: str
    task: str
    layout: str
    files: tuple[RemoteFile, ...]
    license: str
    citation: str
    homepage: str
    train_args: tuple[str, ...] = ()

    @property
    def size(self) -> int | None:
        """Total download size in bytes, or None when any file's size is unknown."""
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(s for s in sizes if s is not None)

    @property
    def checksums(self) -> str:
        """'all', 'none' or 'some': how many downloads are checked against a pinned hash."""
        known = self.verified_files
        return "all" if known == len(self.files) else "none" if known == 0 else "some"

    @property
    def verified_files(self) -> int:
        """How many of its downloads are checked against a pinned hash."""
        return sum(f.verified for f in self.files)

    def train_command(self, directory: Path) -> str:
        """The `attn train` command line that trains on the converted `directory`."""
        args = ["attn", "train", self.task, "--data", str(directory), *self.train_args]
        return shlex.join(args)


_MULTI30K_RAW = (
    "https://raw.githubusercontent.com/multi30k/dataset/"
    "a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw/"
)
# SHA-256 of the gunzipped raw files: byte-identical to shared/data/translation/multi30k.
_MULTI30K_SHA256 = {
    "train.en": "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
    "train.de": "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
    "train.fr": "5925a3c18f1587b6b54b87743106e6e8ab93618edb6f65d19eac0621f853a10d",
    "val.en": "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
    "val.de": "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
    "val.fr": "5304e444d842e962b2dda4d816b70b22a1765b15401642b7ca37a67477e708dc",
    "test_2016_flickr.en": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
    "test_2016_flickr.de": "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
    "test_2016_flickr.fr": "cb3160d69b002bb638e66cc7612fcd56cb0af82eadc9c142dedc438afb885ef6",
}
# Approximate gzip sizes; only `attn data list` uses them.
_MULTI30K_GZ_SIZE = {"train": 610_000, "val": 23_000, "test_2016_flickr": 22_000}

_DIALOGSUM_RAW = (
    "https://raw.githubusercontent.com/cylnlp/dialogsum/"
    "848cc8c05e0a04def79326539de827f1b28786a0/DialogSum_Data/"
)
# dev and test: SHA-256 of the blobs at that commit. train: its blob is not in the copy of
# the repository these were read from, so the download is checked against the blob id the
# commit's tree records (a SHA-1 of the exact bytes GitHub serves at that commit).
_DIALOGSUM_FILES = (
    ("dialogsum.train.jsonl", 12_500_000, None, "0a02b0f0cbe801a75384ba28364a7528b9340587"),
    (
        "dialogsum.dev.jsonl",
        471_830,
        "436721e0a3571eef7072964f80e042fb151d8c6178db1a688ce8f803bbf0a13f",
        None,
    ),
    (
        "dialogsum.test.jsonl",
        639_707,
        "6de36eca7e7b9b10975fd5ea3f47391df172d8b3c15d03d84d763cbaab015fda",
        None,
    ),
)

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            name="multi30k",
            title="Multi30k Task 1: image captions, en/de/fr",
            task="translate",
            layout="multi30k",
            files=tuple(
                RemoteFile(
                    name=f"{stem}.gz",
                    url=f"{_MULTI30K_RAW}{stem}.gz",
                    sha256=sha,
                    gunzip=True,
                    size=_MULTI30K_GZ_SIZE[stem.rsplit(".", 1)[0]],
                )
                for stem, sha in _MULTI30K_SHA256.items()
            ),
            license="non-commercial research or education",
            citation="Elliott et al. 2016, 2017",
            homepage="https://github.com/multi30k/dataset",
            train_args=("--src", "en", "--tgt", "de"),
        ),
        Dataset(
            name="sst2",
            title="SST-2 (GLUE): binary sentence sentiment",
            task="sentiment",
            layout="glue-sst2",
            files=(
                RemoteFile(
                    name="SST-2.zip",
                    url="https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
                    # As Hugging Face datasets' GLUE download checksums record it.
                    sha256="d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa",
                    size=7_439_277,
                ),
            ),
            license="none stated",
            citation="Socher et al. 2013; Wang et al. 2018",
            homepage="https://gluebenchmark.com/tasks",
        ),
        Dataset(
            name="imdb",
            title="IMDB Large Movie Review Dataset v1.0: binary review sentiment",
            task="sentiment",
            layout="aclimdb",
            files=(
                RemoteFile(
                    name="aclImdb_v1.tar.gz",
                    url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                    # As several dataset loaders pin it (e.g. Julia's DataDeps registrations).
                    sha256="c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
                    size=84_125_825,
                ),
            ),
            license="none stated",
            citation="Maas et al. 2011",
            homepage="https://ai.stanford.edu/~amaas/data/sentiment/",
        ),
        Dataset(
            name="dialogsum",
            title="DialogSum: dialogue summarization",
            task="summarize",
            layout="dialogsum",
            files=tuple(
                RemoteFile(name, f"{_DIALOGSUM_RAW}{name}", sha, size=size, git_blob=blob)
                for name, size, sha, blob in _DIALOGSUM_FILES
            ),
            license="CC BY-NC-SA 4.0",
            citation="Chen et al. 2021",
            homepage="https://github.com/cylnlp/dialogsum",
        ),
    )
}


class UnknownDatasetError(LookupError):
    """No dataset of that name; the message lists the known ones."""


def get_dataset(name: str) -> Dataset:
    """The dataset called `name`.

    Raises:
        UnknownDatasetError: no such dataset.
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}"
        ) from None
