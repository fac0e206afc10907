"""The many-chain driver: burn-in, thinning, recording, progress bar, divergence detection, and
streaming to disk with checkpoint / resume.

All K chains advance together as one (K, p) tensor; the only per-step Python work is one kernel
step, one index-stream read and the bookkeeping below (no host synchronisation except at progress
updates, every few hundred steps at most).
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__, distributed
from ._checks import check_choice, check_int_range
from .batching import EPOCH_SCHEMES, IndexStream
from .checkpoint import data_digest, load_checkpoint, remove_checkpoints, save_checkpoint
from .divergence import LANGEVIN_KERNELS, GrowthMonitor, check_step_size
from .errors import DivergenceError
from .devices import check_device, same_device
from .problems import Problem
from .rng import CHAIN_GROUP, INDEX_STREAM, NOISE_STREAM, ChainRandom, group_sizes
from .samplers import METHODS, Kernel
from .trace import (CHECKSUM_KEY, RANK_FOLDER, Trace, TraceWriter, merge_chains, pooled_statistics, rank_folders,
                    read_folder_meta)


_FINITE_CHECK_EVERY = 8
_UPDATE_EVERY_MAX = 256          # steps between progress updates, divergence and checkpoint checks
_CHUNK_BYTES = 64 << 20          # draws held in memory between writes to a trace folder
FUSED_STEPS = 16                 # steps per compiled block (sample(compile=True))
# compile=None (the default) compiles runs of at least this many steps whose chains hold at most
# AUTO_COMPILE_NUMBERS numbers (K p): there the per-step overhead dominates and the compilation (seconds
# with torch's on-disk cache, up to a minute without) is amortised.
AUTO_COMPILE_STEPS = 100_000
AUTO_COMPILE_NUMBERS = 1 << 20
# Inductor options of every compiled block. vec_isa_ok: trust the CPU's vector flags (/proc/cpuinfo)
# instead of probing each instruction set by building and loading a library in child processes, which
# costs about 0.9 s at every process start; were the compiler unable to build them, compiling fails and
# the run continues uncompiled (compile=None) or says so (compile=True).
_INDUCTOR_OPTIONS = {"cpp.vec_isa_ok": True}
# may differ between a run and its resumption
_RUN_KEYS_IGNORED = ("sgworld_version", "compiled_blocks", "acceptance_rate", "grad_evals_per_chain",
                     "grad_evals_per_step", "transition_names", "transition_fractions", "transition_counts",
                     CHECKSUM_KEY)


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


def initial_positions(problem: Problem, init, chains: int) -> torch.Tensor:
    """(K, p) starting points from ``init``: None (the problem's initial point), (p,) or (K, p)."""
    w = problem.initial_params() if init is None else torch.as_tensor(init, dtype=problem.dtype)
    w = w.to(problem.device)
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
           progress: bool | None = None, threads: int | None = 1, out=None,
           checkpoint_every: float | None = 60.0, compile: bool | None = None,
           kernel_options: dict | None = None, device=None, record_basis=None) -> Trace:
    """Run K chains of a sampler and return their draws as a :class:`Trace`.

    Every step applies ``w <- w - lr grad L_B(w) + sqrt(2 lr T) xi`` (or the kernel's own step, for
    MALA) to all chains at once. Draw j is the state after step ``burn_in + (j + 1) * thin``. With an
    epoch scheme (``wor``, ``shuffle_once``, ``sequential``) ``burn_in`` and ``thin`` are rounded up
    to whole epochs so that every draw sits at an epoch boundary; the values used are in the metadata.

    Parameters
    ----------
    method : "sgd" | "sgld" | "sgworld" | "ula" | "mala" | "hmc" | "lahmc" | "mjhmc" | "sghmc" | "sgnht" |
        "psgld" | "sgld_cv" | "csgld", or a Kernel
    lr, temperature : step size and temperature (ignored when a Kernel is given), numbers or schedules
        (:mod:`sgworld.schedules`) for the stochastic-gradient methods; for the Hamiltonian samplers lr is
        the leapfrog step eps
    kernel_options : further keyword settings of the method's kernel factory, e.g. for "hmc"
        ``{"leapfrog_steps": 10, "beta": 0.1}``, "lahmc" also ``"look_ahead"`` (K), "mjhmc"
        ``"leapfrog_steps"``, ``"beta"`` and ``"time_step"`` (see :mod:`sgworld.samplers`); recorded in the
        metadata. Kernels that report them get their acceptance rate per chain, gradient evaluations per
        chain (``grad_evals_per_chain``, ``grad_evals_per_step``) and transition fractions
        (``transition_names``, ``transition_fractions``, pooled over chains and all steps including
        burn-in; ``transition_counts`` per chain) in the trace metadata.
    batch_size : minibatch size b (required for stochastic-gradient methods)
    scheme : overrides the method's minibatch scheme (e.g. SGD with "wor")
    seed : one integer; the same seed and number of chains give the same trace
    progress : progress bar; None shows it only on a terminal
    threads : torch intra-op threads while sampling (1 suits the many small ops of a step; None keeps
        torch's setting, e.g. for large networks)
    out : a folder to stream the draws into (memory stays bounded whatever ``num_draws``); the
        returned trace memory-maps them. A checkpoint (sampler state, generator and index-stream
        states, counters) is written there every ``checkpoint_every`` seconds, atomically. Calling
        ``sample`` again with the same arguments and ``out`` resumes an interrupted run from its last
        checkpoint (the result is bit for bit that of an uninterrupted run), or returns the finished
        trace; a folder holding a different run is an error.
    checkpoint_every : seconds between checkpoints when ``out`` is given (None: no checkpoints)
    device : where the chains run: the problem's device (default), given explicitly (it must be the
        problem's: move the data first with ``problem.to(device)``). Index streams and noise are drawn
        there (one generator per chain group and purpose, :mod:`sgworld.rng`), so a run gives the same
        draws however its chains are split; draws are copied to the host in chunks. A checkpoint resumes
        on a device of the same type.
    record_basis : optional (p, q) matrix V: each draw is recorded as its coordinates ``w @ V`` (q
        numbers instead of p, e.g. a top-k Hessian eigenspace of a large network), so the trace is
        (chains, draws, q); the chains themselves move in all p dimensions.
    Processes: under an initialised ``torch.distributed`` process group (e.g. ``torchrun``), each rank
        runs whole chain groups (:func:`sgworld.distributed.split_groups`) and the draws are gathered, so
        every rank returns the trace of all ``chains`` chains, bit for bit what one process returns.
        With ``out``, rank R streams into ``out/rank-R`` (checkpoint / resume per rank, with the same
        number of ranks) and ``Trace.load(out)`` merges the rank folders. A rank that stops is named by
        the others (:class:`sgworld.distributed.RankFailedError`).
    compile : None (default), True or False: run blocks of ``FUSED_STEPS`` steps as one ``torch.compile``-d
        function (the Langevin kernels at constant lr and T: sgd, sgld, sgworld, ula, sgld_cv; the others always
        step one at a time). A block takes the same minibatch indices and noise, in the same order, as single
        steps do, so its trace equals ``compile=False``'s up to rounding (compiled arithmetic may round
        differently). None compiles runs of at least ``AUTO_COMPILE_STEPS`` (1e5) steps whose chains hold at
        most ``AUTO_COMPILE_NUMBERS`` (2^20) numbers K p (:func:`auto_compile`), where per-step overhead
        dominates and the compilation
        is amortised: seconds with torch's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, by default
        ``/tmp/torchinductor_<user>``), up to a minute for a new problem or size. Where compiling fails (no C++
        compiler), None runs the steps uncompiled with a warning and True raises.

    Raises
    ------
    StepSizeError : (a ValueError) lr >= 2 / h_max for a Langevin kernel (sgd, sgld, sgworld, ula) on a
        problem that knows h_max (``problem.lr_limit``, e.g. quadratic problems): no stationary state.
    DivergenceError : a chain became non-finite, or (Langevin kernels) grew a millionfold from its start
        within a doubling of the run while still finite (the criterion of
        :class:`sgworld.divergence.GrowthMonitor`, checked every few hundred steps); it names the chains,
        the steps, the lr limit when known, and carries the draws recorded so far.
    DiskSpaceError : (an OSError) ``out`` has no room for the draws file (checked, and the file reserved,
        before the first step) or for a checkpoint; the last checkpoint stays usable, so the same call
        resumes once space is freed.
    ValueError : a device that does not exist here, or one other than the problem's.
    """
    problem, device = _chains_device(problem, device)
    options = dict(kernel_options or {})
    if isinstance(method, Kernel):
        if options:
            raise ValueError("kernel_options apply to a method name, not to a Kernel: build the kernel with them")
        kernel = method
    else:
        check_choice("method", method, METHODS)
        if lr is None:
            raise ValueError("lr is required: pass lr=<step size > 0>")
        factory = METHODS[method]
        allowed = [k for k, v in inspect.signature(factory).parameters.items() if v.kind is v.KEYWORD_ONLY]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(f"kernel_options {unknown} are not settings of {method!r}; allowed: "
                             f"{', '.join(allowed) or 'none'}")
        kernel = factory(problem, lr, **options) if method == "sgd" else factory(problem, lr, temperature, **options)
    chains = check_int_range("chains", chains, 1)
    num_draws = check_int_range("num_draws", num_draws, 1)
    burn_in = check_int_range("burn_in", burn_in, 0)
    thin = check_int_range("thin", thin, 1)
    if checkpoint_every is not None and not checkpoint_every >= 0:
        raise ValueError(f"checkpoint_every = {checkpoint_every!r} is invalid; allowed: seconds >= 0 or None")
    scheme = scheme or kernel.scheme
    if kernel.check_scheme is not None:
        kernel.check_scheme(scheme)
    if scheme is not None and batch_size is None:
        raise ValueError(f"batch_size is required for {kernel.name!r}: pass batch_size=b with 1 <= b <= {problem.n}")
    position = initial_positions(problem, init, chains)
    if record_basis is not None:
        record_basis = torch.as_tensor(record_basis, dtype=problem.dtype, device=position.device)
        if record_basis.ndim != 2 or record_basis.shape[0] != problem.dim:
            raise ValueError(f"record_basis must have shape ({problem.dim}, q), got {tuple(record_basis.shape)}")
    run = dict(kernel=kernel, scheme=scheme, batch_size=batch_size, chains=chains, num_draws=num_draws,
               burn_in=burn_in, thin=thin, seed=seed, drop_last=drop_last, progress=progress, threads=threads,
               checkpoint_every=checkpoint_every, compile=compile, options=options, record_basis=record_basis)
    if not distributed.active():
        return _sample_groups(problem, position, None, out=out, **run)

    # Chains over processes: whole chain groups per rank, draws gathered to every rank.
    world, me = distributed.world_size(), distributed.rank()
    groups = distributed.split_groups(len(group_sizes(chains)), world, me)
    run["progress"] = progress if me == 0 else False
    outcome = None
    if len(groups):
        lo, hi = groups.start * CHAIN_GROUP, min(groups.stop * CHAIN_GROUP, chains)
        try:
            outcome = _sample_groups(problem, position[lo:hi], groups, out=None if out is None else
                                     Path(out) / RANK_FOLDER.format(me), split=(me, world), **run)
        except BaseException as exc:  # reported to the other ranks, then raised here
            failure = exc
            outcome = f"{type(exc).__name__}: {exc}"
    parts = distributed.gather(outcome, "the end of sample()")
    failed = [(r, o) for r, o in enumerate(parts) if isinstance(o, str)]
    if isinstance(outcome, str):
        raise failure
    if failed:
        r, message = failed[0]
        raise distributed.RankFailedError(f"rank {r} failed in sample() ({message.splitlines()[0]}); rank {me} "
                                          "stops too, its own draws and checkpoints kept")
    return merge_chains([t for t in parts if t is not None])


@contextmanager
def sampling_device(device):
    """Within the block, :func:`sample` calls without ``device=`` run on ``device``: their problem is moved
    there (``problem.to(device)``) for the call. This is how ``sgworld run --device`` reaches the studies."""
    previous = _DEFAULT_DEVICE[0]
    _DEFAULT_DEVICE[0] = None if device is None else check_device(device)
    try:
        yield
    finally:
        _DEFAULT_DEVICE[0] = previous


_DEFAULT_DEVICE: list = [None]


def _chains_device(problem: Problem, device) -> tuple[Problem, torch.device]:
    """The problem and the device its chains run on; one-line errors for a device that does not exist here
    or that differs from the data's."""
    devices = {str(d.device) for d in problem.data}
    if len(devices) > 1:
        raise ValueError(f"the problem's data tensors lie on different devices ({', '.join(sorted(devices))}); "
                         "put them on one device, e.g. problem = problem.to('cpu')")
    if device is None:
        if _DEFAULT_DEVICE[0] is not None:
            problem = problem.to(_DEFAULT_DEVICE[0])
        return problem, problem.device
    device = check_device(device)
    if not same_device(problem.device, device):
        raise ValueError(f"device={str(device)!r} differs from the device of the problem's data ({problem.device}): "
                         f"chains run with their data; move the data first with problem = problem.to({str(device)!r}), "
                         "or leave out device=")
    return problem, problem.device


def _to_device(obj, device):
    """Tensors in a (nested) checkpoint payload moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def _sample_groups(problem: Problem, position: torch.Tensor, groups: range | None, *, kernel: Kernel, scheme,
                   batch_size, chains: int, num_draws: int, burn_in: int, thin: int, seed: int, drop_last: bool,
                   progress, threads, out, checkpoint_every, compile: bool | None, options: dict,
                   split: tuple[int, int] | None = None, record_basis: torch.Tensor | None = None) -> Trace:
    """Run the chains of ``groups`` (None: all) of a ``chains``-chain run, starting at ``position``
    (their rows); the draws of those chains, with the metadata of the whole run."""
    device = position.device
    local = position.shape[0]
    first_chain = 0 if groups is None else groups.start * CHAIN_GROUP
    # Chain groups own their random streams, so a chain's draws do not depend on K or on a split over processes.
    index_rng = ChainRandom.from_seed(seed, INDEX_STREAM, chains, groups=groups, device=device)
    noise_gen = ChainRandom.from_seed(seed, NOISE_STREAM, chains, groups=groups, device=device)

    stream = None
    if scheme is not None:
        stream = IndexStream(scheme, problem.n, batch_size, local, index_rng, drop_last=drop_last)
        if scheme in EPOCH_SCHEMES:
            burn_in = _round_up(burn_in, stream.steps_per_epoch)
            thin = _round_up(thin, stream.steps_per_epoch)

    lr_limit = check_step_size(problem, kernel, scheme)
    growth = GrowthMonitor(position) if kernel.name in LANGEVIN_KERNELS else None
    state = kernel.init(position)
    total = burn_in + num_draws * thin
    meta = {
        "sampler": kernel.name, "lr": kernel.lr, "temperature": kernel.temperature, "scheme": scheme,
        "batch_size": batch_size if stream is not None else problem.n, "n": problem.n, "dim": problem.dim,
        "chains": chains, "num_draws": num_draws, "burn_in": burn_in, "thin": thin, "seed": int(seed),
        "drop_last": drop_last, "steps_per_epoch": stream.steps_per_epoch if stream else 1, "chain_group": CHAIN_GROUP,
        "problem": problem.name, "dtype": str(problem.dtype).replace("torch.", ""), "device": device.type,
        "sgworld_version": __version__,
    }
    if options or kernel.settings:  # the kernel's JSON record replaces tensor-valued options
        meta["kernel_options"] = {**options, **kernel.settings}
    fused = _compiled_blocks(compile, kernel, stream, total, chains, problem)
    if fused:
        meta["compiled_blocks"] = FUSED_STEPS
    if split is not None:
        meta.update(rank=split[0], world_size=split[1], chain_groups=[groups.start, groups.stop])
    steps_np = burn_in + thin * np.arange(1, num_draws + 1, dtype=np.int64)
    shape = (local, num_draws, problem.dim)
    if kernel.record is not None:  # the kernel's own record of a state, e.g. positions and momenta side by side
        if record_basis is not None:
            raise ValueError(f"record_basis applies to positions; {kernel.name!r} records more than the position "
                             "(record_momentum): pass one of them")
        shape = (local, num_draws, kernel.record(state).shape[1])
    if record_basis is not None:  # draws recorded as w @ V: a resumed run must use the same V
        meta["record_basis"] = data_digest(record_basis)
        shape = (local, num_draws, record_basis.shape[1])

    writer, resumed = None, None
    if out is not None:
        out = Path(out)
        meta["fingerprint"] = data_digest(*problem.data, position)  # the run continues the same problem
        finished, resumed = _existing_run(out, meta)
        if finished is not None:
            return finished
        writer = TraceWriter(out, shape, np.dtype(str(meta["dtype"])), steps_np, meta,
                             open_existing=resumed is not None)

    recorder = _Recorder(shape, problem.dtype, writer, device, basis=record_basis)
    first_bad = torch.zeros(local, dtype=torch.long, device=device)
    accepted = torch.zeros(local, dtype=torch.long, device=device)
    grad_evals = torch.zeros(local, dtype=torch.long, device=device)
    transitions, transition_names, reported = None, None, set()  # what the kernel's StepInfo carries
    done = 0
    if resumed is not None:
        # the chains' tensors back on their device (generator states stay host tensors, as torch keeps them)
        resumed = {k: v if k in ("noise", "stream") else _to_device(v, device) for k, v in resumed.items()}
        state = state._replace(**resumed["state"])
        noise_gen.load_state_dict(resumed["noise"])
        if stream is not None:
            stream.load_state_dict(resumed["stream"])
        done, recorder.written = resumed["step"], resumed["recorded"]
        accepted, first_bad = resumed["accepted"], resumed["first_bad"]
        grad_evals = resumed.get("grad_evals", grad_evals)
        transitions, transition_names = resumed.get("transitions"), resumed.get("transition_names")
        reported = set(resumed.get("reported", ()))
        if growth is not None:
            growth.load_state_dict(resumed.get("growth"))

    def finish() -> Trace:
        if kernel.name == "mala" or "accepted" in reported:
            meta["acceptance_rate"] = (accepted.double() / max(done, 1)).tolist()
        if "grad_evals" in reported:
            meta["grad_evals_per_chain"] = grad_evals.tolist()
        if transitions is not None:
            meta["transition_names"] = list(transition_names)
            meta["transition_counts"] = transitions.tolist()
        pooled_statistics(meta, done)
        return recorder.trace(steps_np, meta)

    def check_divergence():
        grown = growth.first_step if growth is not None else torch.zeros_like(first_bad)
        for first, reason in ((first_bad, "non-finite"), (grown, "growth")):
            bad = first > 0
            if bool(bad.any()):
                chains_bad = bad.nonzero().squeeze(1)
                raise DivergenceError((chains_bad + first_chain).tolist(), first[chains_bad].tolist(), trace=finish(),
                                      reason=reason, lr=kernel.lr, lr_limit=lr_limit)

    def checkpoint():
        recorder.flush()
        save_checkpoint(out, {"step": done, "recorded": recorder.written, "state": state._asdict(),
                              "noise": noise_gen.state_dict(),
                              "stream": stream.state_dict() if stream is not None else None,
                              "accepted": accepted, "first_bad": first_bad, "grad_evals": grad_evals,
                              "transitions": transitions, "transition_names": transition_names,
                              "reported": sorted(reported), "growth": None if growth is None else growth.state_dict()})

    update_every = max(1, min(total // 200, _UPDATE_EVERY_MAX))
    last_checkpoint = time.monotonic()

    def progress_point(step: int, bar) -> None:
        """Every few hundred steps: progress bar, divergence check, and a checkpoint when one is due."""
        nonlocal last_checkpoint
        bar.update(step - bar.n)
        if growth is not None:
            growth.update(state.position, step)
        check_divergence()
        if (writer is not None and checkpoint_every is not None and step < total
                and time.monotonic() - last_checkpoint >= checkpoint_every):
            checkpoint()
            last_checkpoint = time.monotonic()

    with torch.no_grad(), torch_threads(threads), tqdm(total=total, initial=done, disable=_bar_disabled(progress),
                                                       desc=kernel.name, unit="step", leave=False,
                                                       dynamic_ncols=True) as bar:
        if fused:
            def at_update(step, new_state):
                nonlocal done, state
                done, state = step, new_state
                progress_point(step, bar)

            state, done = _run_blocks(kernel, state, stream, noise_gen, done, total, burn_in, thin, recorder,
                                      first_bad, at_update, required=bool(compile),
                                      compile_options=problem.compile_options)
        for step in range(done + 1, total + 1):
            idx = next(stream) if stream is not None else None
            state, info = kernel.step(state, idx, noise_gen)
            done = step
            if info.accepted is not None:
                accepted += info.accepted.to(device)
                reported.add("accepted")
            if info.grad_evals is not None:
                grad_evals += info.grad_evals.to(device)
                reported.add("grad_evals")
            if info.transitions is not None:
                transitions = (info.transitions.to(device).clone() if transitions is None
                               else transitions.add_(info.transitions.to(device)))
                transition_names = info.transition_names
            if step % _FINITE_CHECK_EVERY == 0 or step == total:
                # Non-finite values persist (NaN propagates; MALA rejects them), so a sparse check finds
                # every divergence; it is reported with the step at which it was first seen.
                finite = torch.isfinite(state.position).all(1)
                first_bad.masked_fill_(~finite & (first_bad == 0), step)
            if step > burn_in and (step - burn_in) % thin == 0:
                recorder.add(state.position if kernel.record is None else kernel.record(state))
            if step % update_every == 0 or step == total:
                progress_point(step, bar)
    trace = finish()
    if writer is not None:
        writer.finish(meta)
        remove_checkpoints(out)
    return trace


def auto_compile(chains: int, dim: int) -> bool:
    """Whether a long run (``AUTO_COMPILE_STEPS``) of ``chains`` chains of ``dim`` numbers compiles by default:
    K p <= ``AUTO_COMPILE_NUMBERS``."""
    return chains * dim <= AUTO_COMPILE_NUMBERS


def _compiled_blocks(compile: bool | None, kernel: Kernel, stream, total: int, chains: int, problem) -> bool:
    """Whether the run goes through compiled blocks: asked for (``compile=True``), or by default (None) when
    the run is long (``AUTO_COMPILE_STEPS``) and :func:`auto_compile` says so. Only kernels with a
    ``block`` (the Langevin family at constant lr and T) and runs that draw something have them."""
    if kernel.block is None or (stream is None and kernel.temperature == 0):
        return False
    if compile is None:
        return total >= AUTO_COMPILE_STEPS and auto_compile(chains, problem.dim)
    return bool(compile)


def compile_block(kernel: Kernel, compile_options: dict | None = None):
    """``torch.compile`` of the kernel's ``block`` as the driver compiles it: static shapes, the library's
    inductor options updated with the problem's ``compile_options``."""
    return torch.compile(kernel.block, dynamic=False, options={**_INDUCTOR_OPTIONS, **(compile_options or {})})


def _run_blocks(kernel: Kernel, state, stream, noise_gen, done: int, total: int, burn_in: int, thin: int,
                recorder: "_Recorder", first_bad: torch.Tensor, at_update, required: bool,
                compile_options: dict | None = None) -> tuple:
    """Advance in blocks of ``FUSED_STEPS`` steps through the compiled ``kernel.block``; returns the state
    and the step reached (whole blocks only: the driver's step loop does the remainder). The blocks take
    the same indices and noise, in the same order, as the steps would. When compiling fails (at the first
    call), the blocks run uncompiled (``required``: the failure is raised). ``at_update(step, state)`` is
    called every few hundred steps (progress, divergence, checkpoints). ``compile_options`` are the
    problem's inductor options (:attr:`Problem.compile_options`)."""
    # Compiled code is cached by torch per code object and guarded on the closure (problem, lr, T) and
    # shapes: a later sample() call with the same problem and sizes reuses it.
    block = compile_block(kernel, compile_options)
    compiled_once = False
    position = state.position
    steps_per_update = max(FUSED_STEPS, _UPDATE_EVERY_MAX // FUSED_STEPS * FUSED_STEPS)
    while done + FUSED_STEPS <= total:
        indices = stream.take(FUSED_STEPS) if stream is not None else None
        noise = None if kernel.temperature == 0 else noise_gen.normal_steps(position, FUSED_STEPS)
        try:
            positions = block(position, indices, noise)
        except Exception as exc:  # no working compiler here (inductor needs a C++ compiler on the CPU)
            if compiled_once or block is kernel.block:  # not a compilation failure
                raise
            if required:
                raise RuntimeError(f"sample(compile=True) could not compile the sampler's steps ({type(exc).__name__}); "
                                   "install a C++ compiler (e.g. g++) or pass compile=False") from exc
            warnings.warn(f"sgworld.sample: compiling the sampler's steps failed ({type(exc).__name__}); they run "
                          "uncompiled (the same draws, more slowly)", RuntimeWarning, stacklevel=3)
            block = kernel.block
            positions = block(position, indices, noise)
        compiled_once = True
        position = positions[-1]
        # Non-finite values persist, so the end of each block shows every divergence (as the step loop's
        # sparse check does).
        first_bad.masked_fill_(~torch.isfinite(position).all(1) & (first_bad == 0), done + FUSED_STEPS)
        for j in range(FUSED_STEPS):
            step = done + 1 + j
            if step > burn_in and (step - burn_in) % thin == 0:
                recorder.add(positions[j])
        done += FUSED_STEPS
        state = state._replace(position=position)
        if done % steps_per_update == 0 or done + FUSED_STEPS > total:
            at_update(done, state)
    return state, done


def _bar_disabled(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None hides the bar when the output is not a terminal."""
    return None if progress is None else not progress


def _existing_run(out: Path, meta: dict) -> tuple[Trace | None, dict | None]:
    """(finished trace, None), (None, checkpoint to resume from) or (None, None) for a fresh start."""
    if not (out / "meta.json").exists():
        if rank_folders(out):
            raise ValueError(f"out folder {str(out)!r} holds a run split over {len(rank_folders(out))} processes "
                             "(rank-* folders); resume it under torchrun with as many processes, or choose another folder")
        if out.exists() and any(out.iterdir()):
            raise ValueError(f"out folder {str(out)!r} exists and is not an sgworld trace folder; choose a new or "
                             "empty folder")
        return None, None
    previous = read_folder_meta(out)
    differ = sorted(k for k in set(meta) | set(previous) - {"complete"}
                    if k not in _RUN_KEYS_IGNORED and k != "complete" and previous.get(k) != meta.get(k))
    if differ:
        shown = ", ".join(f"{k}: {previous.get(k)!r} there, {meta.get(k)!r} now" for k in differ[:4])
        raise ValueError(f"out folder {str(out)!r} holds a different run ({shown}); choose another folder or "
                         "delete it to start afresh")
    if previous.get("complete"):
        return Trace.load(out), None
    return None, load_checkpoint(out)


def _records_directly(writer, device: torch.device) -> bool:
    """Whether draws go straight into the returned array (in memory, on the CPU) rather than through a
    staging buffer on the chains' device that is copied to the host (or disk) one chunk at a time."""
    return writer is None and device.type == "cpu"


class _Recorder:
    """Collects draws: all in memory, or (with a trace writer) in chunks written to disk.

    Draws are staged on the chains' device and copied to the host one chunk at a time (at most
    ``_CHUNK_BYTES`` of draws); on the CPU without a writer they go straight into the returned array.
    """

    def __init__(self, shape, dtype, writer: TraceWriter | None, device=None, basis: torch.Tensor | None = None):
        chains, num_draws, p = shape
        device = torch.device("cpu") if device is None else torch.device(device)
        self.writer = writer
        self.basis = basis  # draws recorded as position @ basis (sample(record_basis=...))
        self.direct = _records_directly(writer, device)
        chunk = num_draws
        if not self.direct:
            chunk = max(1, min(num_draws, _CHUNK_BYTES // max(1, chains * p * torch.finfo(dtype).bits // 8)))
        self.buffer = torch.empty(chains, chunk, p, dtype=dtype, device=device)
        self.host = torch.empty(chains, num_draws, p, dtype=dtype) if writer is None and not self.direct else None
        self.written = 0   # draws moved off the stage (to the host array or to disk)
        self.fill = 0      # draws on the stage

    def add(self, position: torch.Tensor) -> None:
        self.buffer[:, self.fill] = position if self.basis is None else position @ self.basis
        self.fill += 1
        if not self.direct and self.fill == self.buffer.shape[1]:
            self.flush(durable=False)

    def flush(self, durable: bool = True) -> None:
        if self.direct:
            return
        if self.fill:
            block = self.buffer[:, :self.fill].cpu()   # one copy per chunk
            if self.writer is not None:
                self.writer.write(self.written, block.numpy())
            else:
                self.host[:, self.written:self.written + self.fill] = block
            self.written += self.fill
            self.fill = 0
        if durable and self.writer is not None:
            self.writer.flush()

    def trace(self, steps: np.ndarray, meta: dict) -> Trace:
        if self.direct:
            return Trace(self.buffer[:, :self.fill].numpy(), steps[:self.fill], dict(meta))
        self.flush()
        draws = self.host if self.writer is None else self.writer.draws
        if isinstance(draws, torch.Tensor):
            draws = draws.numpy()
        return Trace(draws[:, :self.written], steps[:self.written], dict(meta))
