"""Minibatch index streams, one independent stream per chain, vectorised over chains.

Schemes (docs/concepts.md, "Minibatch schemes"):

``wr``            with replacement: every step draws b *distinct* indices, independently of all
                  other steps. Batch-mean gradient covariance ``(N-b)/(b(N-1)) S``.
``iid``           b indices i.i.d. uniform (duplicates possible). Covariance ``S / b``.
``wor``           without replacement (random reshuffling): a fresh permutation every epoch, cut
                  into ``M = floor(N/b)`` batches; the remainder is dropped (``drop_last=False``
                  keeps it as a short last batch).
``shuffle_once``  one permutation per chain, drawn once and reused every epoch.
``sequential``    0..N-1 in order, the same for every chain.

All randomness comes from the random streams given (:class:`sgworld.rng.ChainRandom`, one generator per
chain group, or one ``torch.Generator`` for all chains): the same streams, N and b give the same
indices, and each chain group's indices depend on its own generator only.
"""

from __future__ import annotations

import numpy as np
import torch

from ._checks import check_choice, check_int_range
from .rng import ChainRandom

SCHEMES = ("wr", "iid", "wor", "shuffle_once", "sequential")
EPOCH_SCHEMES = ("wor", "shuffle_once", "sequential")
# Batches drawn afresh and independently every step: the gradient noise acts per step, with the factor
# noise_factor(scheme, N, b) (the rest of SCHEMES, the epoch schemes, have dependent batches).
STEPWISE_SCHEMES = ("wr", "iid")

# Step-wise schemes draw blocks of steps: the first is small (fast start), later ones double up to
# _BLOCK_ELEMENTS indices per chain group. The length depends on the nominal group size only, so a
# group's indices do not depend on how many groups run beside it. Draws that come out the same however
# the blocks are cut (``iid``, and ``wr`` by Floyd's algorithm) also keep a whole block within
# _BLOCK_TOTAL indices, which keeps it in cache for any number of chains.
_BLOCK_ELEMENTS = 1 << 16
_BLOCK_TOTAL = 1 << 20
_FIRST_BLOCK_STEPS = 16


def noise_factor(scheme: str, n: int, batch_size: int) -> float:
    """``f`` of a step-wise scheme: ``Cov[z_B] = f S_z`` for the mean ``z_B`` of b per-sample values,
    independently every step: ``(N-b)/(b(N-1))`` for ``wr``, ``1/b`` for ``iid``.

    The epoch schemes (``wor``, ``shuffle_once``, ``sequential``) have no such factor: one batch of
    ``wor`` has wr's marginal covariance, but the batches of an epoch are dependent (their errors sum
    to zero), so their noise acts per epoch at O(lr^4) (:func:`sgworld.theory.wor.wor_epoch_diffusion`),
    and the fixed orders repeat exactly. Asking for their factor is an error rather than a wrong number.
    """
    check_choice("scheme", scheme, SCHEMES)
    if scheme not in STEPWISE_SCHEMES:
        raise ValueError(f"scheme {scheme!r} has no per-step noise factor (its batches are dependent within an "
                         "epoch); use 'wr' or 'iid', or for 'wor' the per-epoch diffusion "
                         "sgworld.theory.wor_epoch_diffusion")
    if scheme == "iid":
        return 1.0 / batch_size
    return (n - batch_size) / (batch_size * (n - 1)) if n > 1 else 0.0


def random_permutations(chains: int, n: int, rng: np.random.Generator, device=None) -> torch.Tensor:
    """Independent uniform permutations of 0..n-1, one per row: (chains, n).

    numpy's row-wise ``permuted`` (an in-place Fisher–Yates shuffle in C) is several times faster
    than sorting random keys with torch on the CPU.
    """
    perm = rng.permuted(np.broadcast_to(np.arange(n), (chains, n)), axis=1)
    return torch.from_numpy(perm).to(device)


# Floyd's algorithm costs O(b^2) per row; above this b, rejection of rows with duplicates is faster
# (measured: 60 ns / index for Floyd at b = 10, 600 at b = 100, against 95 and 170 for rejection).
_FLOYD_MAX_B = 16


def _uses_floyd(n: int, b: int) -> bool:
    """Whether distinct indices are drawn by Floyd's algorithm (small b, or b^2 > 2n, where most i.i.d. rows
    hold a duplicate) rather than by rejection of i.i.d. rows."""
    return b <= _FLOYD_MAX_B or b * b > 2 * n


def distinct_indices(rows: int, n: int, b: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """``rows`` independent uniform b-subsets of 0..n-1, (rows, b).

    Floyd's algorithm where ``_uses_floyd``, otherwise rejection of i.i.d. rows; both give every
    b-subset with equal probability, at O(b^2) and O(b log b) per row, instead of O(n) for a sort or
    top-k over all n indices.
    """
    if _uses_floyd(n, b):
        return _floyd(torch.rand(rows, b, generator=generator, dtype=torch.float64, device=device), n)
    return _rejection(rows, n, b, generator, device)


def _rejection(rows: int, n: int, b: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """Draw i.i.d. rows and redraw those holding a duplicate until none does.

    A row is accepted with probability prod_j (1 - j/n) ~ exp(-b^2 / 2n) (>= 1/e here); conditioned
    on acceptance an i.i.d. row is a uniform ordered b-tuple of distinct indices.
    """
    out = torch.randint(n, (rows, b), generator=generator, device=device)
    todo = None
    while True:
        batch = out if todo is None else out[todo]
        ordered = batch.sort(1).values
        bad = (ordered[:, 1:] == ordered[:, :-1]).any(1)
        todo = bad.nonzero().squeeze(1) if todo is None else todo[bad]
        if todo.numel() == 0:
            return out
        out[todo] = torch.randint(n, (todo.numel(), b), generator=generator, device=device)


def _floyd(u: torch.Tensor, n: int) -> torch.Tensor:
    """Floyd's algorithm on uniforms ``u`` (..., b) in [0, 1) (float64): the rows' b-subsets of 0..n-1.

    Step j takes ``t = floor(u_j (n - b + j + 1))``, uniform in [0, n-b+j]; if t was already chosen it
    takes n-b+j instead. Every b-subset is equally likely (up to the 2^-53 resolution of the uniforms).
    All uniforms are drawn before the steps, in row order, so a block of rows draws the same numbers
    however it is cut; the steps run on all rows at once, with each column contiguous.
    """
    b = u.shape[-1]
    tops = torch.arange(n - b, n, dtype=torch.long, device=u.device)
    cols = (u.reshape(-1, b).T * (tops + 1).to(u.dtype).unsqueeze(1)).long()   # (b, rows)
    cols = torch.minimum(cols, tops.unsqueeze(1))    # u (n - b + j + 1) may round up to n - b + j + 1
    chosen, same = torch.empty_like(cols[0], dtype=torch.bool), torch.empty_like(cols[0], dtype=torch.bool)
    for j in range(1, b):
        torch.eq(cols[0], cols[j], out=chosen)
        for i in range(1, j):
            chosen |= torch.eq(cols[i], cols[j], out=same)
        cols[j].masked_fill_(chosen, n - b + j)
    return cols.T.contiguous().reshape(u.shape)


class IndexStream:
    """Batch indices for K chains: ``next(stream)`` returns a LongTensor (K, b).

    Step-wise schemes are generated in blocks of steps to keep per-step overhead low; epoch
    schemes one epoch at a time. ``steps_per_epoch`` is ``M = floor(N/b)`` (``ceil`` with
    ``drop_last=False``).
    """

    def __init__(self, scheme: str, n: int, batch_size: int, chains: int, rng: ChainRandom | torch.Generator,
                 *, drop_last: bool = True, device=None):
        self.scheme = check_choice("scheme", scheme, SCHEMES)
        self.n = check_int_range("N (number of samples)", n, 1)
        self.batch_size = check_int_range("batch_size", batch_size, 1, self.n)
        self.chains = check_int_range("chains", chains, 1)
        if isinstance(rng, torch.Generator):
            rng = ChainRandom.single(rng, self.chains)
        if rng.chains != self.chains:
            raise ValueError(f"the random streams serve {rng.chains} chains, not {self.chains}")
        self.rng = rng
        self.drop_last = bool(drop_last)
        self.device = device if device is not None else rng.device
        full, rest = divmod(self.n, self.batch_size)
        self.steps_per_epoch = full + (1 if rest and not self.drop_last else 0)
        self._block: torch.Tensor | None = None   # (S, K, b): batches drawn ahead; the next is row _cursor
        self._cursor = 0
        self._short: torch.Tensor | None = None   # an epoch's short last batch (drop_last=False), after _block
        self._block_steps = _FIRST_BLOCK_STEPS
        # Permutations are shuffled by numpy, one generator per chain group seeded by the group's torch generator.
        self._perm_rngs = [np.random.default_rng(int(torch.randint(2**62, (1,), generator=g, device=g.device)))
                           for g in rng.generators]
        self._fixed_perm = None
        if scheme == "shuffle_once":
            self._fixed_perm = self._permutations()
        elif scheme == "sequential":
            self._fixed_perm = torch.arange(self.n, device=self.device).expand(self.chains, self.n)

    @property
    def is_epoch_scheme(self) -> bool:
        return self.scheme in EPOCH_SCHEMES

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        return self.take(1)[0]

    def take(self, steps: int) -> torch.Tensor:
        """The next ``steps`` batches at once, stacked: (steps, K, b), the same as ``steps`` calls of ``next``
        (a view of the block drawn ahead where it holds them)."""
        parts = []
        while steps > 0:
            if self._block is None or self._cursor == self._block.shape[0]:
                if self._short is not None:
                    parts.append(self._short.unsqueeze(0))
                    self._short, steps = None, steps - 1
                    continue
                self._block, self._short = self._next_epoch() if self.is_epoch_scheme else (self._next_block(), None)
                self._cursor = 0
            take = min(steps, self._block.shape[0] - self._cursor)
            parts.append(self._block[self._cursor:self._cursor + take])
            self._cursor += take
            steps -= take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    # -- checkpointing --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue this stream exactly: the generators' states, the batches drawn
        but not yet used, and the block-size schedule."""
        ahead = [] if self._block is None else list(self._block[self._cursor:].cpu().unbind(0))
        return {"rng": self.rng.state_dict(), "perm_rngs": [r.bit_generator.state for r in self._perm_rngs],
                "block": ahead + ([] if self._short is None else [self._short.cpu()]),
                "block_steps": self._block_steps,
                "fixed_perm": None if self._fixed_perm is None else self._fixed_perm.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.load_state_dict(state["rng"])
        for r, s in zip(self._perm_rngs, state["perm_rngs"]):
            r.bit_generator.state = s
        ahead = [t.to(self.device) for t in state["block"]]
        self._short = ahead.pop() if ahead and ahead[-1].shape[-1] != self.batch_size else None
        self._block, self._cursor = (torch.stack(ahead) if ahead else None), 0
        self._block_steps = state["block_steps"]
        if state["fixed_perm"] is not None:
            self._fixed_perm = state["fixed_perm"].to(self.device)

    def _next_block(self) -> torch.Tensor:
        """(S, K, b): the next S steps of a step-wise scheme; each chain group fills its columns from its own
        generator (``iid``: uniform indices; ``wr``: uniforms for Floyd's algorithm, or rejection)."""
        n, b = self.n, self.batch_size
        floyd = self.scheme == "wr" and _uses_floyd(n, b)
        steps = min(self._block_steps, max(1, _BLOCK_ELEMENTS // (self.rng.nominal_size * b)))
        if self.scheme == "iid" or floyd:
            steps = min(steps, max(1, _BLOCK_TOTAL // (self.chains * b)))
        self._block_steps = min(2 * self._block_steps, _BLOCK_ELEMENTS)
        block = torch.empty(steps, self.chains, b, dtype=torch.float64 if floyd else torch.long, device=self.device)
        start = 0
        for gen, k in zip(self.rng.generators, self.rng.sizes):
            part, shape = block[:, start:start + k], (steps, k, b)
            start += k
            here = part if gen.device == part.device else None  # drawn in place (the same numbers as contiguous)
            if self.scheme == "iid":
                drawn = torch.randint(n, shape, generator=gen, device=gen.device, out=here)
            elif floyd:
                drawn = torch.rand(shape, generator=gen, dtype=torch.float64, device=gen.device, out=here)
            else:
                drawn = _rejection(steps * k, n, b, gen, gen.device).reshape(shape)
            if drawn is not part:
                part.copy_(drawn)
        return _floyd(block, n) if floyd else block

    def _permutations(self) -> torch.Tensor:
        """(K, N): an independent uniform permutation per chain, each group from its own generator."""
        parts = [random_permutations(k, self.n, r, self.device) for r, k in zip(self._perm_rngs, self.rng.sizes)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

    def _next_epoch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(M, K, b): the batches of the next epoch, and its short last batch (K, N - M b) with
        ``drop_last=False`` (else None)."""
        perm = self._fixed_perm if self._fixed_perm is not None else self._permutations()
        b, m = self.batch_size, self.n // self.batch_size
        batches = perm[:, : m * b].reshape(self.chains, m, b).transpose(0, 1).contiguous()
        short = perm[:, m * b:] if m * b < self.n and not self.drop_last else None
        return batches, short
