"""Sampling over several processes with ``torch.distributed`` (torchrun; gloo on CPUs, NCCL on GPUs).

Two ways to use several processes, both on torch's own machinery (``torchrun``, ``DistributedDataParallel``,
``DistributedSampler``); nothing here starts or watches processes.

**Data-parallel: one large model, its minibatch split over ranks.** Every rank holds a replica of the
model, wrapped in ``DistributedDataParallel`` (DDP), and a :class:`sgworld.optim.SGLD` or
:class:`sgworld.optim.SGWORLD` optimizer with the *same* ``seed``. At each step rank r computes the mean
loss over its b / R indices of the global minibatch B (R ranks); DDP averages the gradients, which is the
gradient of the mean loss over all of B; every rank then applies the one update rule

    w <- w - lr * grad L_B(w) + sqrt(2 * lr * T) * xi,   xi ~ N(0, I),

with the same ``xi`` (drawn from generators seeded alike), so the replicas stay bitwise identical and the
trajectory is that of one process fed the same global batches and noise. The global batches come from:

- SGWORLD (``wor``): :class:`DistributedWithoutReplacementSampler`, torch's
  ``DistributedSampler(shuffle=True, drop_last=True)`` cut into local batches. Epoch e is the permutation
  ``torch.randperm(N, generator=manual_seed(seed + e))``; rank r takes its positions r, r + R, r + 2R, ...,
  so the union of the ranks' j-th local batches is slice j of length b of the permutation: exactly the
  ``wor`` scheme, ``floor(N / b)`` batches an epoch, the remainder dropped. ``set_epoch(e)`` must be called
  every epoch (as for ``DistributedSampler``); a second pass with the same epoch is an error.
- SGLD (``wr``): :class:`DistributedWithReplacementSampler`, every step one uniform b-subset of the N
  indices (the stream of :class:`sgworld.optim.WithReplacementSampler` with the same seed, identical on
  every rank), of which rank r takes the r-th slice of b / R.

The world size must divide b. At its first step the optimizer compares the noise generators of all ranks
(:func:`check_replicas`) and names the ranks that differ.

**Chains over processes.** Under an initialised process group, :func:`sgworld.sample` gives each rank
whole chain groups (:func:`split_groups`); every group owns its random streams (:mod:`sgworld.rng`), so
1 rank or R ranks produce the same draws bit for bit. The ranks exchange nothing while sampling; at the
end the draws are gathered to every rank (:func:`gather`). A rank that stops is named by the others
(:class:`RankFailedError`) when they reach the gather.

References: Adhikari et al., "Machine learning in and out of equilibrium", arXiv:2306.03521 (SGWORLD);
Welling & Teh, ICML 2011 (SGLD); Li et al., "PyTorch Distributed", VLDB 2020 (DDP).
"""

from __future__ import annotations

import atexit
import datetime
import hashlib
import itertools
import os
import re
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

from ._checks import check_int_range
from .batching import IndexStream
from .rng import CHAIN_GROUP, INDEX_STREAM, ChainRandom, stream_seed

__all__ = ["DistributedWithReplacementSampler", "DistributedWithoutReplacementSampler", "RankFailedError",
           "active", "check_replicas", "gather", "local_batch_size", "rank", "split_groups", "world_size"]


class RankFailedError(RuntimeError):
    """Another rank stopped (died, hung, or raised) before a point all ranks must reach."""


# -- the process group -----------------------------------------------------------------------------

def active() -> bool:
    """Whether a torch.distributed process group of more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


_CONTROL: dict = {}
_CALLS = itertools.count()


def _control_group():
    """The group for object collectives and barriers: the default group when it is gloo, else a gloo
    group over the same ranks (created once, collectively)."""
    if dist.get_backend() == "gloo":
        return None
    key = id(dist.group.WORLD)
    if key not in _CONTROL:
        _CONTROL[key] = dist.new_group(backend="gloo")
    return _CONTROL[key]


def _store():
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # noqa: BLE001 - a private accessor: without it the message is less precise
        return None


def _absent_ranks(tag: str) -> list[int] | None:
    """The ranks that have not announced reaching ``tag`` in the process group's store (None: unknown)."""
    store = _store()
    if store is None:
        return None
    try:
        return [r for r in range(dist.get_world_size()) if not store.check([f"sgworld/{tag}/{r}"])]
    except Exception:  # noqa: BLE001 - the store itself may be gone with the rank that hosted it
        return None


def wait_for_all(what: str) -> None:
    """Block until every rank reaches this point, or raise RankFailedError naming the ranks that did not.

    A gloo ``monitored_barrier`` (the process group's timeout); a rank that died is noticed as soon as
    its connections close. Every rank first marks its arrival in the process group's store, so each
    survivor can name the missing ranks."""
    tag = f"{what.replace(' ', '_')}/{next(_CALLS)}"
    store = _store()
    if store is not None:
        try:
            store.set(f"sgworld/{tag}/{dist.get_rank()}", "1")
        except Exception:  # noqa: BLE001 - naming is best effort; the barrier decides
            store = None
    try:
        dist.monitored_barrier(group=_control_group(), wait_all_ranks=True)
    except RuntimeError as exc:
        me = dist.get_rank()
        missing = _absent_ranks(tag)
        if not missing:
            found = re.search(r"Ranks? ([\d, ]+) failed to pass", str(exc))
            missing = [int(r) for r in found.group(1).replace(",", " ").split()] if found else None
        if not missing:
            missing = [0] if me != 0 and "from rank 0" in str(exc) else None
        who = (f"rank {missing[0]}" if len(missing) == 1 else f"ranks {', '.join(map(str, missing))}") \
            if missing else "another rank"
        raise RankFailedError(f"{who} stopped before {what} (died, hung or failed; see its own output), so rank "
                              f"{me} stops too; completed work and checkpoints are kept: rerun to resume") from None


def gather(obj, what: str = "the end of sampling") -> list:
    """``obj`` of every rank, in rank order, on every rank (after :func:`wait_for_all`)."""
    if not active():
        return [obj]
    wait_for_all(what)
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj, group=_control_group())
    return out


def split_groups(num_groups: int, world: int, at: int) -> range:
    """The chain groups of rank ``at`` of ``world``: contiguous whole groups, the first ``num_groups % world``
    ranks one more than the others (a rank may get none when there are fewer groups than ranks)."""
    base, extra = divmod(int(num_groups), int(world))
    start = at * base + min(at, extra)
    return range(start, start + base + (1 if at < extra else 0))


def check_same_across_ranks(value: str, what: str, fix: str) -> None:
    """Raise ValueError naming the ranks when ``value`` (a short string) differs between ranks."""
    values = gather(value, what)
    if len(set(values)) > 1:
        groups: dict[str, list[int]] = {}
        for r, v in enumerate(values):
            groups.setdefault(v, []).append(r)
        shown = "; ".join(f"ranks {', '.join(map(str, rs))} agree" if len(rs) > 1 else f"rank {rs[0]} stands alone"
                          for rs in groups.values())
        raise ValueError(f"{what} differs across ranks ({shown}); {fix}")


def check_replicas(generator: torch.Generator, what: str = "the optimizer's noise generator") -> None:
    """Data-parallel replicas must draw the same noise: compare the generator's state on every rank."""
    if not active():
        return
    digest = hashlib.sha256(generator.get_state().cpu().numpy().tobytes()).hexdigest()[:16]
    check_same_across_ranks(digest, what, "data-parallel replicas need the same seed= on every rank "
                                          "(or replicas=False for independent chains per rank)")


# -- minibatches for DataLoader ---------------------------------------------------------------------

def local_batch_size(batch_size: int, world: int) -> int:
    """``b / world``, or a one-line ValueError when the world size does not divide the global batch."""
    batch_size = check_int_range("batch_size", batch_size, 1)
    if batch_size % world:
        raise ValueError(f"batch_size = {batch_size} is not divisible by the world size {world}: each rank takes "
                         f"b / world_size indices per step; choose a multiple of {world} "
                         f"(e.g. {max(world, batch_size - batch_size % world)})")
    return batch_size // world


def _replicas(num_replicas: int | None, at: int | None) -> tuple[int, int]:
    world = world_size() if num_replicas is None else check_int_range("num_replicas", num_replicas, 1)
    at = rank() if at is None else int(at)
    if not 0 <= at < world:
        raise ValueError(f"rank = {at} is out of range for {world} replicas; allowed: 0 <= rank < {world}")
    return world, at


class DistributedWithReplacementSampler(Sampler[list[int]]):
    """Batch sampler for ``DataLoader(ds, batch_sampler=...)``: SGLD's ``wr`` minibatches over ranks.

    Every step draws one uniform b-subset of ``range(num_data)`` (b distinct global indices, independent
    of all other steps), the same on every rank: the stream of
    ``sgworld.optim.WithReplacementSampler(num_data, b, seed=seed)``. Rank r yields its slice
    ``[r b / R, (r + 1) b / R)``. One pass is ``num_batches`` steps (default ``floor(N / b)``); passes
    continue the stream. ``num_replicas`` and ``rank`` default to the process group's.
    """

    def __init__(self, num_data: int, batch_size: int, num_batches: int | None = None, *, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None):
        super().__init__()
        n = check_int_range("num_data", num_data, 1)
        b = check_int_range("batch_size", batch_size, 1, n)
        self.world, self.rank = _replicas(num_replicas, rank)
        self.local = local_batch_size(b, self.world)
        self.num_batches = n // b if num_batches is None else check_int_range("num_batches", num_batches, 1)
        seed = check_int_range("seed", seed, 0)
        # the stream of WithReplacementSampler(seed=seed): chain 0 of sample(seed=seed)'s index streams
        generator = torch.Generator().manual_seed(stream_seed(seed, INDEX_STREAM))
        self._stream = IndexStream("wr", n, b, 1, ChainRandom([generator], [1], CHAIN_GROUP))

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        lo = self.rank * self.local
        for _ in range(self.num_batches):
            yield next(self._stream)[0, lo:lo + self.local].tolist()

    def state_dict(self) -> dict:
        return self._stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._stream.load_state_dict(state)


class DistributedWithoutReplacementSampler(Sampler[list[int]]):
    """Batch sampler for ``DataLoader(ds, batch_sampler=...)``: SGWORLD's ``wor`` minibatches over ranks.

    torch's ``DistributedSampler(range(num_data), shuffle=True, drop_last=True, seed=seed)`` (kept as
    ``.sampler``) cut into local batches of b / R, the last short one dropped. Together the ranks' j-th
    local batches are slice j of the epoch's permutation (see the module docstring): the global
    without-replacement stream. Call ``set_epoch(epoch)`` before every epoch; iterating the same epoch
    twice (a forgotten ``set_epoch``, which would repeat the permutation) raises RuntimeError.
    """

    def __init__(self, num_data: int, batch_size: int, *, seed: int = 0, num_replicas: int | None = None,
                 rank: int | None = None):
        super().__init__()
        n = check_int_range("num_data", num_data, 1)
        b = check_int_range("batch_size", batch_size, 1, n)
        self.world, self.rank = _replicas(num_replicas, rank)
        self.local = local_batch_size(b, self.world)
        self.sampler = DistributedSampler(range(n), num_replicas=self.world, rank=self.rank, shuffle=True,
                                          seed=check_int_range("seed", seed, 0), drop_last=True)
        self._last_epoch = None

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __len__(self) -> int:
        return len(self.sampler) // self.local

    def __iter__(self) -> Iterator[list[int]]:
        if self._last_epoch == self.sampler.epoch:
            raise RuntimeError(f"epoch {self.sampler.epoch} was already iterated: call set_epoch(epoch) before every "
                               "epoch, or every epoch repeats the same permutation")
        self._last_epoch = self.sampler.epoch
        batch = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.local:
                yield batch
                batch = []

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "last_epoch": self._last_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.set_epoch(state["epoch"])
        self._last_epoch = state["last_epoch"]


# -- launching ---------------------------------------------------------------------------------------

def init_from_env(timeout: datetime.timedelta | None = None) -> bool:
    """Under torchrun (``WORLD_SIZE`` > 1 in the environment), initialise the default process group (gloo;
    :func:`sgworld.sample` exchanges only finished draws) unless it is already; True when one is active."""
    if not dist.is_available() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timeout)
        atexit.register(_finish)
    return active()


def _finish() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_from_rank0(obj):
    """Rank 0's ``obj`` on every rank (``obj`` as given when no process group is active)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_control_group())
    return box[0]


def local_device(device):
    """``device`` for this process: under torchrun a bare ``"cuda"`` is the process's own GPU, cuda:LOCAL_RANK."""
    if device is not None and str(device) == "cuda" and active():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device
