"""The Problem: per-sample potentials U_i over a flat parameter vector, plus the data.

Convention (docs/concepts.md, "Loss normalisation"): ``U_i(w) = -N log p(y_i | x_i, w) - log p(w)``, so
that the full loss ``L(w) = (1/N) sum_i U_i(w)`` is ``-log posterior(w) + const`` and the minibatch loss
``L_B(w) = (1/b) sum_{i in B} U_i(w)`` is an unbiased estimate of ``L``.

Parameters of K chains are one tensor ``(K, p)``; every method here evaluates all chains at
once, each chain with its own minibatch indices ``(K, b)``.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch.func import grad, jvp, vmap

from .._checks import check_finite
from ..devices import check_device, same_device

# potential_fn(w, *data_batch) -> (b,) per-sample potentials for one parameter vector w (p,)
PotentialFn = Callable[..., torch.Tensor]


class Problem:
    """Per-sample potentials ``U_i(w)`` with their data.

    Parameters
    ----------
    potential_fn : callable
        ``potential_fn(w, *batch) -> (b,)``: the potentials of the samples in ``batch`` (each data
        tensor indexed along its first dimension) at one flat parameter vector ``w`` of shape (p,).
        It must be a pure torch function (it is transformed with ``torch.func.vmap`` / ``grad``).
    data : sequence of tensors
        Data tensors sharing the leading dimension N.
    dim : int
        Number of parameters p.
    initial : tensor (p,), optional
        A sensible starting point (e.g. a module's initial weights); zeros by default.
    """

    #: Inductor options for the sampler's compiled blocks (``sample(compile=...)``); None: torch's defaults.
    compile_options: dict | None = None

    def __init__(self, potential_fn: PotentialFn, data: Sequence[torch.Tensor], dim: int,
                 *, initial: torch.Tensor | None = None, name: str = "problem"):
        data = tuple(torch.as_tensor(d) for d in data)
        if not data:
            raise ValueError("data must hold at least one tensor")
        n = data[0].shape[0]
        if n < 1:
            raise ValueError("data is empty: need at least one sample (N >= 1)")
        for k, d in enumerate(data):
            if d.shape[0] != n:
                raise ValueError(
                    f"data tensors disagree on the number of samples: tensor 0 has {n}, tensor {k} has {d.shape[0]}"
                )
            check_finite(f"data tensor {k}", d)
        if int(dim) < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.potential_fn = potential_fn
        self.data = data
        self.n = int(n)
        self.dim = int(dim)
        self.name = name
        self._initial = initial
        self._builder = None   # device -> the same problem there, for problems whose closures hold tensors
        self._make_grads()

    def _make_grads(self) -> None:
        self._batch_grad = vmap(grad(self._mean_potential))
        self._full_grad = vmap(grad(self._mean_potential), in_dims=(0,) + (None,) * len(self.data))

    # -- device ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """The device of the data (and of every chain sampled from this problem)."""
        return self.data[0].device

    def to(self, device) -> "Problem":
        """This problem with its data on ``device`` (itself when they are there already).

        Every tensor attribute is moved (data, initial point, subclasses' own tensors such as the
        quadratic terms); problems whose potential closes over tensors (:func:`from_module`, the energy
        targets) are rebuilt on the device. Exact-theory outputs (``quadratic_terms``, ``target``) stay
        numpy on the host.
        """
        device = check_device(device)
        if same_device(self.device, device):
            return self
        if self._builder is not None:
            return self._builder(device)
        moved = copy.copy(self)
        for key, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(moved, key, value.to(device))
        moved.data = tuple(d.to(device) for d in self.data)
        moved._make_grads()
        return moved

    # -- one chain ----------------------------------------------------------------------------
    def _mean_potential(self, w, *batch):
        return self.potential_fn(w, *batch).mean()

    @property
    def dtype(self) -> torch.dtype:
        floats = [d.dtype for d in self.data if d.is_floating_point()]
        return floats[0] if floats else torch.get_default_dtype()

    def initial_params(self) -> torch.Tensor:
        """A starting point of shape (p,)."""
        if self._initial is not None:
            return self._initial.to(self.device).clone()
        return torch.zeros(self.dim, dtype=self.dtype, device=self.device)

    # -- many chains ----------------------------------------------------------------------------
    def gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Data of each chain's batch: ``idx`` (K, b) -> tensors (K, b, ...)."""
        return tuple(d[idx] for d in self.data)

    def check_params(self, w: torch.Tensor) -> torch.Tensor:
        if w.ndim != 2 or w.shape[1] != self.dim:
            raise ValueError(f"parameters must have shape (chains, {self.dim}), got {tuple(w.shape)}")
        return w

    def potentials(self, w: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample potentials: (K, b) for batch indices ``idx`` (K, b), or (K, N) for all data."""
        self.check_params(w)
        if idx is None:
            return vmap(self.potential_fn, in_dims=(0,) + (None,) * len(self.data))(w, *self.data)
        return vmap(self.potential_fn)(w, *self.gather(idx))

    def batch_loss(self, w: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """``L_B(w)`` for every chain, shape (K,); the full loss ``L`` when ``idx`` is None."""
        return self.potentials(w, idx).mean(dim=1)

    def batch_grad(self, w: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """``grad L_B(w)`` for every chain, shape (K, p); ``grad L`` when ``idx`` is None."""
        self.check_params(w)
        if idx is None:
            return self._full_grad(w, *self.data)
        return self._batch_grad(w, *self.gather(idx))

    def loss(self, w: torch.Tensor) -> torch.Tensor:
        return self.batch_loss(w, None)

    def grad(self, w: torch.Tensor) -> torch.Tensor:
        return self.batch_grad(w, None)

    # -- analysis at one point ------------------------------------------------------------------
    def per_sample_grads(self, w: torch.Tensor, chunk_size: int | None = 1024) -> torch.Tensor:
        """``grad U_i(w)`` for i = 1..N at one point w (p,), shape (N, p); chunked to bound memory."""
        one = lambda w_, *sample: self.potential_fn(w_, *(s.unsqueeze(0) for s in sample)).squeeze(0)
        per = vmap(grad(one), in_dims=(None,) + (0,) * len(self.data), chunk_size=chunk_size)
        return per(w, *self.data)

    def hessian(self, w: torch.Tensor, chunk_size: int = 4096, block: int = 64) -> torch.Tensor:
        """Hessian of the full loss ``L`` at w (p,), shape (p, p), accumulated over data chunks.

        Built from Hessian-vector products (forward-over-reverse), ``block`` rows at a time: the working
        memory is that of ``block`` gradient evaluations of a data chunk, not ``p`` of them, so networks
        with thousands of parameters fit (the result itself is p x p).
        """
        p = self.dim
        total = torch.zeros(p, p, dtype=w.dtype, device=w.device)
        for start in range(0, self.n, chunk_size):
            batch = tuple(d[start:start + chunk_size] for d in self.data)
            gradient = grad(lambda w_: self.potential_fn(w_, *batch).sum())
            hvp = vmap(lambda v: jvp(gradient, (w,), (v,))[1])
            for row in range(0, p, block):
                rows = min(block, p - row)
                basis = torch.zeros(rows, p, dtype=w.dtype, device=w.device)
                basis[torch.arange(rows, device=w.device), torch.arange(row, row + rows, device=w.device)] = 1.0
                total[row:row + rows] += hvp(basis)
        return total / self.n

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, N={self.n}, p={self.dim})"
