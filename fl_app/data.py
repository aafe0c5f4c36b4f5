"""MNIST from IDX files (gzip or raw), and the project's own train/test split of the offline copy.

Two layouts are accepted under a data directory: ``<dir>/MNIST/raw/<file>`` (torchvision's) or
``<dir>/<file>``, each file either ``.gz`` or uncompressed.

* Full dataset (``train-*`` files present): the standard 60,000 train / 10,000 test split.
* Offline test split only (``t10k-*`` files, as on machines without internet): the 10,000 images
  are split by a fixed permutation (seed 20241127, independent of the run seed) into 8,000 train
  and 2,000 test. The split never changes, so results across runs and machines are comparable.

With ``download=True`` and no files present, torchvision downloads the full dataset and checks
its MD5 sums (the only place torchvision is imported: it is slow to import).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OFFLINE_SPLIT_SEED = 20241127
OFFLINE_TRAIN = 8000

_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


class DataError(ValueError):
    """The data directory is missing, incomplete or holds a malformed file."""


@dataclass(frozen=True)
class RawDataset:
    """Images as stored (uint8, (N, 28, 28)), labels int64: what a client keeps of the data set.

    A client normalises only its own partition (:meth:`train_rows`), never the whole set: the
    float32 copy of every image (31 MB for the offline split, 216 MB for full MNIST) would
    otherwise sit in each client's private memory.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def train_rows(self, idx: np.ndarray) -> np.ndarray:
        """Training images ``idx`` as float32 (len(idx), 1, 28, 28), normalised exactly as
        :func:`load_mnist` normalises all of them."""
        return normalise(self.x_train[idx])


@dataclass(frozen=True)
class Dataset:
    """Images as float32 (N, 1, 28, 28) normalised like torchvision's MNIST recipe; labels int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # "full" or "offline-test-split"


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (the format MNIST ships in); gzip is detected by its magic bytes."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX body has {len(raw) - header} bytes, header says {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find(root: Path, stem: str) -> Path | None:
    for folder in (root / "MNIST" / "raw", root):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), torchvision's MNIST mean and std."""
    x = images.astype(np.float32)[:, None, :, :] / 255.0
    return (x - 0.1307) / 0.3081


_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
          "t10k-labels-idx1-ubyte")


def _files(root: Path, download: bool) -> dict[str, Path | None]:
    files = {s: _find(root, s) for s in _STEMS}
    if files["t10k-images-idx3-ubyte"] is None and download:
        _download(root)
        files = {s: _find(root, s) for s in _STEMS}
    if files["t10k-images-idx3-ubyte"] is None or files["t10k-labels-idx1-ubyte"] is None:
        raise DataError(
            f"data dir {root}: no MNIST t10k-images/t10k-labels IDX files "
            "(expected <dir>/MNIST/raw/*.gz; fl_app.local and pytest --ztfl-data download it "
            "when online)"
        )
    return files


def check_mnist(root: Path | str, *, download: bool = False) -> str:
    """Check that ``root`` holds readable MNIST (downloading it when absent and asked), without
    building the float arrays a run needs; returns the source ("full" or "offline-test-split")."""
    root = Path(root)
    files = _files(root, download)
    pairs = [("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    if files["train-images-idx3-ubyte"] and files["train-labels-idx1-ubyte"]:
        pairs.append(("train-images-idx3-ubyte", "train-labels-idx1-ubyte"))
    for images, labels in pairs:
        n_x, n_y = len(read_idx(_path(files, images))), len(read_idx(_path(files, labels)))
        if n_x != n_y:
            raise DataError(f"data dir {root}: {n_x} {images} but {n_y} {labels}")
    return "full" if len(pairs) == 2 else "offline-test-split"


def _path(files: dict[str, Path | None], stem: str) -> Path:
    p = files[stem]
    assert p is not None
    return p


def load_mnist(root: Path | str, *, download: bool = False) -> Dataset:
    """Load MNIST from ``root`` (see the module docstring for layouts and splits)."""
    raw = load_mnist_raw(root, download=download)
    return Dataset(
        x_train=normalise(raw.x_train),
        y_train=raw.y_train,
        x_test=normalise(raw.x_test),
        y_test=raw.y_test,
        source=raw.source,
    )


def load_mnist_raw(root: Path | str, *, download: bool = False) -> RawDataset:
    """MNIST from ``root`` as stored (uint8 images), split as :func:`load_mnist` splits it."""
    root = Path(root)
    files = _files(root, download)
    ti, tl = _path(files, "t10k-images-idx3-ubyte"), _path(files, "t10k-labels-idx1-ubyte")
    x_test, y_test = read_idx(ti), read_idx(tl)
    if len(x_test) != len(y_test):
        raise DataError(f"data dir {root}: {len(x_test)} test images but {len(y_test)} labels")
    tri, trl = files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"]
    if tri is not None and trl is not None:
        x_train, y_train = read_idx(tri), read_idx(trl)
        source = "full"
    else:
        perm = np.random.default_rng(OFFLINE_SPLIT_SEED).permutation(len(x_test))
        tr, te = perm[:OFFLINE_TRAIN], perm[OFFLINE_TRAIN:]
        x_train, y_train, x_test, y_test = x_test[tr], y_test[tr], x_test[te], y_test[te]
        source = "offline-test-split"
    return RawDataset(
        x_train=x_train,
        y_train=y_train.astype(np.int64),
        x_test=x_test,
        y_test=y_test.astype(np.int64),
        source=source,
    )


def _download(root: Path) -> None:
    from torchvision.datasets import MNIST  # slow import; only when downloading

    for train in (True, False):
        MNIST(str(root), train=train, download=True)
