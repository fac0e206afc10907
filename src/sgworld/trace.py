"""Trace: the draws of K chains, ``(chains, draws, p)``, with the metadata needed to reproduce them.

Saved losslessly as ``.npz`` (arrays bit for bit, metadata as JSON); convertible to ArviZ's
InferenceData when ArviZ is installed (``pip install sgworld[arviz]``).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import TraceFileError

_FORMAT = "sgworld-trace-1"


@dataclass
class Trace:
    """Draws ``(chains, draws, p)``; ``steps[j]`` is the sampler step after which draw j was taken.

    ``meta`` holds the sampler, lr, temperature, batch size, scheme, seed, burn-in, thinning and
    the package version, plus per-run statistics (e.g. MALA acceptance rates).
    """

    draws: np.ndarray
    steps: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.draws = np.asarray(self.draws)
        self.steps = np.asarray(self.steps, dtype=np.int64)
        if self.draws.ndim != 3:
            raise ValueError(f"draws must have shape (chains, draws, p), got {self.draws.shape}")
        if self.steps.shape != (self.draws.shape[1],):
            raise ValueError(f"steps must have shape ({self.draws.shape[1]},), got {self.steps.shape}")

    @property
    def num_chains(self) -> int:
        return self.draws.shape[0]

    @property
    def num_draws(self) -> int:
        return self.draws.shape[1]

    @property
    def dim(self) -> int:
        return self.draws.shape[2]

    def pooled(self) -> np.ndarray:
        """All draws of all chains, (chains * draws, p)."""
        return self.draws.reshape(-1, self.dim)

    def mean(self) -> np.ndarray:
        return self.pooled().mean(0)

    def cov(self) -> np.ndarray:
        return np.cov(self.pooled(), rowvar=False).reshape(self.dim, self.dim)

    # -- files ----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (``.npz``) atomically: a temporary file renamed into place."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, draws=self.draws, steps=self.steps,
                     meta=np.array(json.dumps({"format": _FORMAT, **self.meta})))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Trace":
        path = Path(path)
        if not path.exists():
            raise TraceFileError(f"trace file {str(path)!r} does not exist")
        try:
            with np.load(path, allow_pickle=False) as f:
                draws, steps, meta = f["draws"], f["steps"], json.loads(str(f["meta"]))
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
            raise TraceFileError(
                f"{str(path)!r} is not a readable sgworld trace (truncated or corrupt file?): {exc}"
            ) from None
        if meta.pop("format", None) != _FORMAT:
            raise TraceFileError(f"{str(path)!r} is not an sgworld trace file (format tag missing)")
        return cls(draws, steps, meta)

    # -- ArviZ ----------------------------------------------------------------------------------
    def to_arviz(self, var_name: str = "w"):
        """ArviZ InferenceData with one posterior variable ``var_name`` of shape (chain, draw, p)."""
        try:
            import arviz as az
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError("ArviZ is not installed: pip install 'sgworld[arviz]'") from None
        return az.from_dict(posterior={var_name: self.draws},
                            attrs={k: json.dumps(v) for k, v in self.meta.items()})
