"""Data loaders (sgworld.datasets): the packaged digits, MNIST IDX folders (raw and gzipped) and .npz files,
and every malformed case."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from sgworld import datasets

RNG = np.random.default_rng(0)
IMAGES = {"train": RNG.integers(0, 256, (12, 4, 3), dtype=np.uint8), "test": RNG.integers(0, 256, (5, 4, 3), dtype=np.uint8)}
LABELS = {"train": RNG.integers(0, 10, 12, dtype=np.uint8), "test": RNG.integers(0, 10, 5, dtype=np.uint8)}
NAMES = {("train", "images"): "train-images-idx3-ubyte", ("train", "labels"): "train-labels-idx1-ubyte",
         ("test", "images"): "t10k-images-idx3-ubyte", ("test", "labels"): "t10k-labels-idx1-ubyte"}


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    return bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_folder(folder, gz: bool = False, dotted: bool = False, override: dict | None = None):
    """The four MNIST files; ``override`` maps (part, kind) to raw bytes (or None: leave the file out)."""
    folder.mkdir(exist_ok=True)
    for (part, kind), name in NAMES.items():
        data = idx_bytes(IMAGES[part] if kind == "images" else LABELS[part])
        if override and (part, kind) in override:
            data = override[(part, kind)]
            if data is None:
                continue
        if dotted:
            name = name.replace("-idx", ".idx")
        path = folder / (name + ".gz" if gz else name)
        path.write_bytes(gzip.compress(data) if gz else data)
    return folder


def test_digits_split():
    d = datasets.load_digits()
    assert d.x_train.shape == (1400, 8, 8) and d.x_test.shape == (397, 8, 8)
    assert d.x_train.min() == 0 and d.x_train.max() == 16
    assert set(np.unique(d.y_train)) == set(range(10)) and d.num_classes == 10
    assert np.bincount(d.y_test, minlength=10).min() >= 39
    assert "CC BY 4.0" in d.source


@pytest.mark.parametrize("gz, dotted", [(False, False), (True, False), (False, True), (True, True)])
def test_idx_folder(tmp_path, gz, dotted):
    d = datasets.load_mnist(write_idx_folder(tmp_path / "mnist", gz, dotted))
    np.testing.assert_array_equal(d.x_train, IMAGES["train"])
    np.testing.assert_array_equal(d.y_test, LABELS["test"])
    assert d.x_train.dtype == np.float64 and d.y_train.dtype == np.int64


def test_npz(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, x_train=IMAGES["train"].reshape(12, -1), y_train=LABELS["train"], x_test=IMAGES["test"].reshape(5, -1),
             y_test=LABELS["test"])
    d = datasets.load_mnist(path)
    np.testing.assert_array_equal(d.x_test, IMAGES["test"].reshape(5, -1))
    assert datasets.load_images(None).x_train.shape == (1400, 8, 8)


LABELS_BAD = LABELS["train"].copy()
LABELS_BAD[3] = 12


@pytest.mark.parametrize("override, message", [
    ({("train", "labels"): None}, "train labels file is missing"),
    ({("test", "images"): b"\x01\x02\x08\x03" + bytes(20)}, "bad magic number"),
    ({("test", "images"): b""}, "bad magic number"),
    ({("train", "images"): idx_bytes(IMAGES["train"], type_byte=0x0D)}, "only unsigned bytes"),
    ({("train", "images"): idx_bytes(IMAGES["train"].reshape(12, -1))}, "has 2 dimensions, expected 3"),
    ({("train", "images"): idx_bytes(IMAGES["train"])[:-7]}, "header says"),
    ({("train", "labels"): idx_bytes(LABELS["train"][:-1])}, "12 train images but 11 train labels"),
    ({("train", "labels"): idx_bytes(LABELS_BAD)}, "out of range"),
])
def test_idx_errors_name_the_problem(tmp_path, override, message):
    folder = write_idx_folder(tmp_path / "mnist", override=override)
    with pytest.raises(ValueError, match=message) as info:
        datasets.load_mnist(folder)
    assert "mnist" in str(info.value)  # names the folder or file


def test_corrupt_gzip(tmp_path):
    folder = write_idx_folder(tmp_path / "mnist", gz=True)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: cannot be read"):
        datasets.load_mnist(folder)


def good_npz():
    return {"x_train": np.zeros((6, 4)), "y_train": np.arange(6), "x_test": np.ones((2, 4)), "y_test": np.array([1, 2])}


@pytest.mark.parametrize("change, message", [
    ({"y_test": None}, "missing array.*y_test"),
    ({"x_train": np.full((6, 4), np.nan)}, "NaN"),
    ({"x_train": np.zeros(6)}, "shape"),
    ({"y_train": np.zeros((6, 1))}, r"y_train must have shape \(n,\)"),
    ({"y_train": np.arange(5)}, "6 train images but 5 train labels"),
    ({"y_train": np.arange(6) + 0.5}, "integer labels"),
    ({"y_test": np.array([1, -1])}, "out of range"),
    ({"x_test": np.ones((2, 5))}, "train images have shape"),
])
def test_npz_errors_name_the_problem(tmp_path, change, message):
    arrays = {**good_npz(), **change}
    path = tmp_path / "bad.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(ValueError, match=message) as info:
        datasets.load_mnist(path)
    assert "bad.npz" in str(info.value)


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        datasets.load_mnist(tmp_path / "nowhere")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ValueError, match="expected a folder"):
        datasets.load_mnist(tmp_path / "x.txt")
    (tmp_path / "c.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="c.npz: cannot be read"):
        datasets.load_mnist(tmp_path / "c.npz")


def test_shifted_copies_translate_the_training_images():
    digits = datasets.load_digits()
    assert datasets.shifted_copies(digits, 0) is digits
    more = datasets.shifted_copies(digits, 1)
    n = len(digits.y_train)
    assert more.x_train.shape == (9 * n, 8, 8) and np.array_equal(more.y_train, np.tile(digits.y_train, 9))
    assert np.array_equal(more.x_train[:n], digits.x_train)          # the originals first
    assert more.x_test is digits.x_test and more.y_test is digits.y_test
    image = np.arange(64.0).reshape(1, 8, 8)
    one = datasets.ImageData(image, np.array([3]), image, np.array([3]), 10, "grid")
    copies = datasets.shifted_copies(one, 1).x_train
    up_left = copies[1]                                               # (dy, dx) = (-1, -1): moved up and left
    assert np.array_equal(up_left[:7, :7], image[0, 1:, 1:]) and not up_left[7].any() and not up_left[:, 7].any()
    down_right = copies[8]                                            # (1, 1)
    assert np.array_equal(down_right[1:, 1:], image[0, :7, :7]) and not down_right[0].any()
    with pytest.raises(ValueError, match="shift must be an integer >= 0"):
        datasets.shifted_copies(digits, -1)
    flat = datasets.ImageData(image.reshape(1, 64), np.array([3]), image.reshape(1, 64), np.array([3]), 10, "flat")
    with pytest.raises(ValueError, match="need 2-d images larger than the shift"):
        datasets.shifted_copies(flat, 1)
