"""The many-chain driver: burn-in, thinning, recording, progress bar and divergence detection.

All K chains advance together as one (K, p) tensor; the only per-step Python work is one kernel
step, one index-stream read and the bookkeeping below (no host synchronisation except at progress
updates).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from ._checks import check_choice, check_int_range
from .batching import EPOCH_SCHEMES, IndexStream
from .errors import DivergenceError
from .problems import Problem
from .samplers import METHODS, Kernel
from .trace import Trace


_FINITE_CHECK_EVERY = 8


@contextmanager
def torch_threads(threads: int | None):
    """Temporarily set torch's intra-op threads (None or <= 0: unchanged).

    A sampling step is many small tensor ops, for which one thread is as fast as two on an idle
    machine and several times faster when the cores are shared (threads spin-wait on each other).
    """
    previous = torch.get_num_threads()
    if threads is not None and threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def make_generators(seed: int) -> tuple[torch.Generator, torch.Generator]:
    """Independent generators for the minibatch indices and the sampler noise, from one seed."""
    seeds = np.random.SeedSequence(int(seed)).generate_state(2, dtype=np.uint64)
    return tuple(torch.Generator().manual_seed(int(s) & ((1 << 63) - 1)) for s in seeds)


def initial_positions(problem: Problem, init, chains: int) -> torch.Tensor:
    """(K, p) starting points from ``init``: None (the problem's initial point), (p,) or (K, p)."""
    w = problem.initial_params() if init is None else torch.as_tensor(init, dtype=problem.dtype)
    if w.ndim == 1:
        w = w.expand(chains, -1)
    if w.shape != (chains, problem.dim):
        raise ValueError(f"init must have shape ({problem.dim},) or ({chains}, {problem.dim}), got {tuple(w.shape)}")
    return w.clone().to(problem.dtype)


def _round_up(value: int, unit: int) -> int:
    return unit * math.ceil(value / unit)


def sample(problem: Problem, method: str | Kernel = "sgld", *, lr: float | None = None, temperature: float = 1.0,
           batch_size: int | None = None, scheme: str | None = None, chains: int = 1, num_draws: int = 1000,
           burn_in: int = 0, thin: int = 1, init=None, seed: int = 0, drop_last: bool = True,
           progress: bool | None = None, threads: int | None = 1) -> Trace:
    """Run K chains of a sampler and return their draws as a :class:`Trace`.

    Every step applies ``w <- w - lr grad L_B(w) + sqrt(2 lr T) xi`` (or the kernel's own step, for
    MALA) to all chains at once. Draw j is the state after step ``burn_in + (j + 1) * thin``. With an
    epoch scheme (``wor``, ``shuffle_once``, ``sequential``) ``burn_in`` and ``thin`` are rounded up
    to whole epochs so that every draw sits at an epoch boundary; the values used are in the metadata.

    Parameters
    ----------
    method : "sgd" | "sgld" | "sgworld" | "ula" | "mala", or a Kernel
    lr, temperature : step size and temperature (ignored when a Kernel is given)
    batch_size : minibatch size b (required for stochastic-gradient methods)
    scheme : overrides the method's minibatch scheme (e.g. SGD with "wor")
    seed : one integer; the same seed and number of chains give the same trace
    progress : progress bar; None shows it only on a terminal
    threads : torch intra-op threads while sampling (1 suits the many small ops of a step; None keeps
        torch's setting, e.g. for large networks)

    Raises
    ------
    DivergenceError : a chain became non-finite; it names the chains and first steps, and carries the
        draws recorded so far.
    """
    if isinstance(method, Kernel):
        kernel = method
    else:
        check_choice("method", method, METHODS)
        if lr is None:
            raise ValueError("lr is required: pass lr=<step size > 0>")
        kernel = METHODS[method](problem, lr) if method == "sgd" else METHODS[method](problem, lr, temperature)
    chains = check_int_range("chains", chains, 1)
    num_draws = check_int_range("num_draws", num_draws, 1)
    burn_in = check_int_range("burn_in", burn_in, 0)
    thin = check_int_range("thin", thin, 1)
    scheme = scheme or kernel.scheme
    index_gen, noise_gen = make_generators(seed)

    stream = None
    if scheme is not None:
        if batch_size is None:
            raise ValueError(f"batch_size is required for {kernel.name!r}: pass batch_size=b with 1 <= b <= {problem.n}")
        stream = IndexStream(scheme, problem.n, batch_size, chains, index_gen, drop_last=drop_last)
        if scheme in EPOCH_SCHEMES:
            burn_in = _round_up(burn_in, stream.steps_per_epoch)
            thin = _round_up(thin, stream.steps_per_epoch)

    state = kernel.init(initial_positions(problem, init, chains))
    total = burn_in + num_draws * thin
    draws = torch.empty(chains, num_draws, problem.dim, dtype=problem.dtype)
    first_bad = torch.zeros(chains, dtype=torch.long)
    accepted = torch.zeros(chains, dtype=torch.long)
    meta = {
        "sampler": kernel.name, "lr": kernel.lr, "temperature": kernel.temperature, "scheme": scheme,
        "batch_size": batch_size if stream is not None else problem.n, "n": problem.n, "dim": problem.dim,
        "chains": chains, "num_draws": num_draws, "burn_in": burn_in, "thin": thin, "seed": int(seed),
        "drop_last": drop_last, "steps_per_epoch": stream.steps_per_epoch if stream else 1,
        "problem": problem.name, "dtype": str(problem.dtype).replace("torch.", ""), "sgworld_version": __version__,
    }
    steps_np = burn_in + thin * np.arange(1, num_draws + 1, dtype=np.int64)

    def finish(recorded: int) -> Trace:
        if kernel.name == "mala":
            meta["acceptance_rate"] = (accepted.double() / max(done, 1)).tolist()
        return Trace(draws[:, :recorded].numpy(), steps_np[:recorded], dict(meta))

    def check_divergence(recorded: int):
        bad = first_bad > 0
        if bool(bad.any()):
            chains_bad = bad.nonzero().squeeze(1)
            raise DivergenceError(chains_bad.tolist(), first_bad[chains_bad].tolist(), trace=finish(recorded))

    update_every = max(1, total // 200)
    recorded, done = 0, 0
    with torch.no_grad(), torch_threads(threads), tqdm(total=total, disable=progress is False if progress is not None else None,
                               desc=kernel.name, unit="step", leave=False, dynamic_ncols=True) as bar:
        if progress is True:
            bar.disable = False
        for step in range(1, total + 1):
            idx = next(stream) if stream is not None else None
            state, info = kernel.step(state, idx, noise_gen)
            done = step
            if info.accepted is not None:
                accepted += info.accepted
            if step % _FINITE_CHECK_EVERY == 0 or step == total:
                # Non-finite values persist (NaN propagates; MALA rejects them), so a sparse check finds
                # every divergence; it is reported with the step at which it was first seen.
                finite = torch.isfinite(state.position).all(1)
                first_bad.masked_fill_(~finite & (first_bad == 0), step)
            if step > burn_in and (step - burn_in) % thin == 0:
                draws[:, recorded] = state.position
                recorded += 1
            if step % update_every == 0 or step == total:
                bar.update(step - bar.n)
                check_divergence(recorded)
    return finish(recorded)
