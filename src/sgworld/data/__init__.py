"""Package data: ``digits.npz`` (see :func:`sgworld.datasets.load_digits` and docs/digits.md)."""
