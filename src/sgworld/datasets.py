"""Image-classification data sets read from disk; nothing is ever downloaded.

* :func:`load_digits` -- the handwritten digits shipped with the package (``sgworld/data/digits.npz``):
  1,797 images of 8 x 8 pixels with integer intensities 0..16 and labels 0..9, the UCI "Optical
  Recognition of Handwritten Digits" data as distributed by scikit-learn (CC BY 4.0). The split is
  fixed: the first 1,400 images (in the distributed order) are the training set, the last 397 the
  test set. The images come in repeated runs of the ten digits, so both parts are balanced
  (136 to 142 training and 39 to 41 test images per class), and the test images come from the end of
  the collection rather than being interleaved with the training ones.
* :func:`load_mnist` -- MNIST (or any data set in its format) from the user's disk: a folder with
  the four IDX files as distributed (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``; gzipped ``.gz`` or not; the spelling
  ``train-images.idx3-ubyte`` is accepted too), or an ``.npz`` file with arrays ``x_train``,
  ``y_train``, ``x_test``, ``y_test``.

* :func:`shifted_copies` -- a training set enlarged by translated copies of its images (each image
  moved by up to ``s`` pixels in each direction, the pixels moved in filled with zeros), e.g. for a
  network with more parameters than the 1,400 digits allow an analysis of (its gradient noise has rank
  below the number of training images).

Every problem with the files raises ValueError naming the file and what is wrong.

IDX format (big-endian): two zero bytes, a type byte (``0x08`` = unsigned byte), a byte with the
number of dimensions ``n``, then ``n`` 32-bit sizes and the data in C order.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["ImageData", "load_digits", "load_mnist", "load_images", "read_idx", "shifted_copies", "DIGITS_TRAIN"]

DIGITS_TRAIN = 1400  # the first 1,400 digits train, the last 397 test
IDX_FILES = {
    "train images": ("train-images", "idx3-ubyte", 3),
    "train labels": ("train-labels", "idx1-ubyte", 1),
    "test images": ("t10k-images", "idx3-ubyte", 3),
    "test labels": ("t10k-labels", "idx1-ubyte", 1),
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True, eq=False)
class ImageData:
    """A train / test split of labelled images.

    Attributes
    ----------
    x_train, x_test : (n, ...) float64    pixel intensities (raw scale; images or flat rows)
    y_train, y_test : (n,) int64          labels 0 .. num_classes - 1
    num_classes : int
    source : str                          where the data came from
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str


def _check_split(x, y, what: str, where: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate one part (images and labels) and return (float64 images, int64 labels)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or x.shape[0] == 0 or any(s == 0 for s in x.shape[1:]):
        raise ValueError(f"{where}: x_{what} must have shape (n, pixels) or (n, rows, cols) with n >= 1, "
                         f"got {x.shape}")
    if not (np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating)):
        raise ValueError(f"{where}: x_{what} must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{where}: x_{what} contains NaN or infinite values")
    if y.ndim != 1:
        raise ValueError(f"{where}: y_{what} must have shape (n,), got {y.shape}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{where}: {x.shape[0]} {what} images but {y.shape[0]} {what} labels; they must match")
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
        raise ValueError(f"{where}: y_{what} must hold integer labels")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{where}: y_{what} has labels out of range 0..{num_classes - 1} "
                         f"(min {y.min()}, max {y.max()})")
    return x, y.astype(np.int64)


def _assemble(parts: dict, source: str, num_classes: int) -> ImageData:
    x_tr, y_tr = _check_split(parts["x_train"], parts["y_train"], "train", source, num_classes)
    x_te, y_te = _check_split(parts["x_test"], parts["y_test"], "test", source, num_classes)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ValueError(f"{source}: train images have shape {x_tr.shape[1:]} but test images {x_te.shape[1:]}")
    return ImageData(x_tr, y_tr, x_te, y_te, num_classes, source)


def load_digits() -> ImageData:
    """The packaged 8 x 8 digits: the first 1,400 images train, the last 397 test (module docstring)."""
    with resources.files("sgworld.data").joinpath("digits.npz").open("rb") as fh, np.load(fh) as f:
        images, labels = f["images"], f["labels"]
    return _assemble({"x_train": images[:DIGITS_TRAIN], "y_train": labels[:DIGITS_TRAIN],
                      "x_test": images[DIGITS_TRAIN:], "y_test": labels[DIGITS_TRAIN:]},
                     "scikit-learn digits (UCI optdigits, CC BY 4.0)", 10)


# --------------------------------------------------------------------------- IDX files


def read_idx(path, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX array with ``ndim`` dimensions from ``path`` (gzipped if it ends in ``.gz``)."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: bad magic number (expected two zero bytes, a type byte and a dimension byte; "
                         f"got {raw[:4].hex() or 'an empty file'}): not an IDX file")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: IDX type byte is 0x{raw[2]:02x}; only unsigned bytes (0x08) are supported")
    if raw[3] != ndim:
        raise ValueError(f"{path}: has {raw[3]} dimensions, expected {ndim} "
                         f"({'images: count, rows, cols' if ndim == 3 else 'labels: count'})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if any(d == 0 for d in dims):
        raise ValueError(f"{path}: empty dimension in {dims}")
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise ValueError(f"{path}: header says {dims} = {size} bytes of data, the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _idx_file(folder: Path, key: str) -> Path:
    stem, kind, _ = IDX_FILES[key]
    names = [f"{stem}-{kind}", f"{stem}.{kind}"]
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise ValueError(f"{folder}: the {key} file is missing (looked for {names[0]}[.gz] and {names[1]}[.gz])")


def load_mnist(path) -> ImageData:
    """MNIST from ``path``: a folder with the four IDX files, or an ``.npz`` (module docstring)."""
    path = Path(path)
    if path.is_dir():
        parts = {}
        for key, (_, _, ndim) in IDX_FILES.items():
            file = _idx_file(path, key)
            parts[("x_" if "images" in key else "y_") + key.split()[0]] = read_idx(file, ndim)
        return _assemble(parts, str(path), 10)
    if path.is_file():
        if path.suffix != ".npz":
            raise ValueError(f"{path}: expected a folder with the four MNIST IDX files or an .npz file "
                             f"with arrays {', '.join(NPZ_KEYS)}")
        try:
            with np.load(path, allow_pickle=False) as f:
                files = list(f.files)
                parts = {k: f[k] for k in NPZ_KEYS if k in files}
        except Exception as exc:  # zipfile, pickle or format errors of a corrupt file
            raise ValueError(f"{path}: cannot be read as .npz ({exc})") from None
        missing = [k for k in NPZ_KEYS if k not in parts]
        if missing:
            raise ValueError(f"{path}: missing array(s) {', '.join(missing)} (it has {', '.join(files) or 'none'})")
        return _assemble(parts, str(path), 10)
    raise ValueError(f"data path {str(path)!r} does not exist (expected a folder with the four MNIST IDX files "
                     f"or an .npz file with {', '.join(NPZ_KEYS)})")


def load_images(path=None) -> ImageData:
    """The packaged digits when ``path`` is None, else :func:`load_mnist`."""
    return load_digits() if path is None else load_mnist(path)


def shifted_copies(data: ImageData, shift: int) -> ImageData:
    """``data`` with its training images joined by every translation by ``(dy, dx)``, ``|dy|, |dx| <= shift``
    pixels (pixels moved in are 0): ``(2 shift + 1)^2`` times the training images, in blocks of one
    translation each (the untranslated images first); the test set is unchanged. ``shift = 0`` returns
    ``data``. Images must be 2-d (n, height, width) with both sides longer than ``shift``."""
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) or shift < 0:
        raise ValueError(f"shift must be an integer >= 0 (pixels), got {shift!r}")
    if shift == 0:
        return data
    x = data.x_train
    if x.ndim != 3 or min(x.shape[1:]) <= shift:
        raise ValueError(f"shifted copies need 2-d images larger than the shift, got images of shape {x.shape[1:]} "
                         f"and shift = {shift}; use shift = 0 for flat rows")
    h, w = x.shape[1:]
    offsets = [(0, 0)] + [(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)
                          if (dy, dx) != (0, 0)]
    copies = []
    for dy, dx in offsets:
        moved = np.zeros_like(x)
        moved[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            x[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        copies.append(moved)
    return ImageData(np.concatenate(copies), np.tile(data.y_train, len(offsets)), data.x_test, data.y_test,
                     data.num_classes, f"{data.source}, training images with shifts up to {shift} px "
                                       f"({len(offsets)} copies)")
