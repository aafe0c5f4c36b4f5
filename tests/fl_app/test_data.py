"""MNIST loading (fl_app.data): the IDX reader on gzip and raw files, malformed files, the two
directory layouts, and the documented offline train/test split of the shared copy."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from fl_app.data import OFFLINE_TRAIN, DataError, check_mnist, load_mnist, load_mnist_raw, read_idx

UBYTE, INT32 = 0x08, 0x0C


def idx_bytes(arr: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    dtype = {UBYTE: "u1", INT32: ">i4"}[code]
    return header + arr.astype(dtype).tobytes()


def write(path: Path, payload: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_read_idx_images_and_labels(tmp_path: Path, gz: bool) -> None:
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28)).astype(np.uint8)
    labels = np.arange(7, dtype=np.uint8)
    img = read_idx(write(tmp_path / "images-idx3-ubyte", idx_bytes(images, UBYTE), gz))
    lab = read_idx(write(tmp_path / "labels-idx1-ubyte", idx_bytes(labels, UBYTE), gz))
    np.testing.assert_array_equal(img, images)
    np.testing.assert_array_equal(lab, labels)


def test_read_idx_big_endian_int32(tmp_path: Path) -> None:
    values = np.array([[1, -2], [70000, 3]], dtype=np.int64)
    got = read_idx(write(tmp_path / "x", idx_bytes(values, INT32), gz=False))
    assert got.shape == (2, 2)
    np.testing.assert_array_equal(got, values)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "bad magic number"),
        (b"\x00\x00", "bad magic number"),
        (b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc", "bad magic number"),
        (b"\x00\x00\x07\x01" + (3).to_bytes(4, "big") + b"abc", "bad magic number"),
        (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc", "IDX body has 3 bytes"),
        (b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + b"abc", "IDX body has 3 bytes"),
        (b"\x00\x00\x08\x02" + (2).to_bytes(4, "big"), "IDX body has -4 bytes"),
    ],
    ids=["empty", "short", "magic", "dtype", "truncated", "trailing", "short-header"],
)
def test_read_idx_refuses_malformed_files(
    tmp_path: Path, payload: bytes, message: str, gz: bool
) -> None:
    path = write(tmp_path / "bad-idx", payload, gz)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value) and message in str(info.value)


def fake_mnist(root: Path, n: int, *, train: bool, gz: bool) -> None:
    rng = np.random.default_rng(1)
    prefixes = ["t10k", "train"] if train else ["t10k"]
    for prefix in prefixes:
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write(root / f"{prefix}-images-idx3-ubyte", idx_bytes(images, UBYTE), gz)
        write(root / f"{prefix}-labels-idx1-ubyte", idx_bytes(labels, UBYTE), gz)


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_load_mnist_layouts_and_sources(tmp_path: Path, layout: str) -> None:
    folder = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    fake_mnist(folder, 12, train=True, gz=layout == "torchvision")
    data = load_mnist(tmp_path)
    assert data.source == "full"
    assert data.x_train.shape == (12, 1, 28, 28) and data.x_test.shape == (12, 1, 28, 28)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64


def test_load_mnist_refuses_missing_files_and_count_mismatch(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no MNIST t10k-images/t10k-labels IDX files"):
        load_mnist(tmp_path)
    fake_mnist(tmp_path, 5, train=False, gz=False)
    labels = np.zeros(4, dtype=np.uint8)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels, UBYTE))
    with pytest.raises(DataError, match="5 test images but 4 labels"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("train", [True, False], ids=["full", "test-split"])
def test_check_mnist_names_the_source_like_load(tmp_path: Path, train: bool) -> None:
    fake_mnist(tmp_path, 7, train=train, gz=True)
    assert check_mnist(tmp_path) == load_mnist(tmp_path).source


def test_check_mnist_refuses_what_load_refuses(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no MNIST t10k-images/t10k-labels IDX files"):
        check_mnist(tmp_path)
    fake_mnist(tmp_path, 5, train=True, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8), UBYTE))
    with pytest.raises(DataError, match="5 train-images-idx3-ubyte but 3 train-labels"):
        check_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + b"\0" * 8)
    with pytest.raises(DataError, match="IDX body has"):
        check_mnist(tmp_path)


def test_offline_split_of_the_shared_copy(data_dir: Path) -> None:
    data = load_mnist(data_dir)
    assert data.source == "offline-test-split"
    assert data.x_train.shape == (OFFLINE_TRAIN, 1, 28, 28)
    assert data.x_test.shape == (10_000 - OFFLINE_TRAIN, 1, 28, 28)
    assert len(data.y_train) == OFFLINE_TRAIN and len(data.y_test) == 10_000 - OFFLINE_TRAIN
    assert set(np.unique(data.y_train)) == set(range(10))
    # normalised like torchvision's recipe: mean ~0, std ~1 over the set
    assert abs(float(data.x_train.mean())) < 0.05 and 0.9 < float(data.x_train.std()) < 1.1
    # the split is fixed: a second load gives the same bytes
    again = load_mnist(data_dir)
    np.testing.assert_array_equal(again.y_train, data.y_train)
    np.testing.assert_array_equal(again.y_test, data.y_test)


def test_a_clients_rows_are_the_rows_of_the_whole_normalised_set(data_dir: Path) -> None:
    """A client keeps the images as stored and normalises its partition only; its tensor is
    byte for byte the slice of the fully normalised set it used to copy."""
    raw, full = load_mnist_raw(data_dir), load_mnist(data_dir)
    assert raw.x_train.dtype == np.uint8 and raw.x_train.nbytes == OFFLINE_TRAIN * 784
    np.testing.assert_array_equal(raw.y_train, full.y_train)
    idx = np.sort(np.random.default_rng(1).choice(OFFLINE_TRAIN, 321, replace=False))
    rows = raw.train_rows(idx)
    assert rows.dtype == np.float32 and rows.shape == (321, 1, 28, 28)
    assert rows.tobytes() == full.x_train[idx].tobytes()
