"""Random streams for many chains that do not depend on how the chains are split.

Chains are numbered 0..K-1 and cut into fixed-size *chain groups* of ``group_size`` chains (the last
group may be shorter). Each group owns its own ``torch.Generator`` for each purpose (minibatch
indices, sampler noise), seeded from ``(seed, purpose, group)`` through numpy's ``SeedSequence``.
A chain's random numbers therefore depend only on the seed, its group and its position in it, never
on how many other groups run beside it or in which process: one process running all K chains and
two processes running half the groups each draw the same numbers (``sgworld.distributed``).

Draws are made in blocks of several steps per group (one generator call per group and block, not per
step), so many groups cost little more than one. The block length depends on the group size and the
shape drawn only, so it too is the same however the groups are spread. A request for more steps than
a block holds (``normal_steps``) draws them in one call where the numbers do not depend on how they
are cut into calls (numpy's generators, which fill their output in order).

Float64 normal numbers on the CPU come from numpy's ``Generator`` on the SFC64 bit generator (ziggurat
method), one per group, seeded on first use with 63 bits drawn from the group's torch generator; torch
draws CPU float64 normals one at a time (Box–Muller), about 2.3x slower (benchmarks/PROFILE.md). Every
other draw, and every draw on another device, comes from the torch generator itself.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._checks import check_int_range

CHAIN_GROUP = 64                 # chains per group (the unit in which chains can be split over processes)
INDEX_STREAM, NOISE_STREAM = 0, 1
_BLOCK_ELEMENTS = 1 << 16        # numbers per group and block
_MAX_BLOCK_STEPS = 16


def stream_seed(seed: int, purpose: int, group: int = 0) -> int:
    """The 63-bit seed of one group's generator for one purpose (indices or noise)."""
    state = np.random.SeedSequence(int(seed), spawn_key=(int(purpose), int(group))).generate_state(1, np.uint64)
    return int(state[0]) & ((1 << 63) - 1)


def group_sizes(chains: int, group_size: int = CHAIN_GROUP) -> list[int]:
    """Sizes of the chain groups of ``chains`` chains: full groups of ``group_size``, the last maybe shorter."""
    chains = check_int_range("chains", chains, 1)
    group_size = check_int_range("group_size", group_size, 1)
    full, rest = divmod(chains, group_size)
    return [group_size] * full + ([rest] if rest else [])


class ChainRandom:
    """Standard normal and uniform numbers for K chains, drawn per chain group.

    ``normal(like)`` returns a tensor shaped, typed and placed like ``like`` (leading dimension K);
    ``uniform(like)`` a (K,) tensor in [0, 1). The rows of group g come from group g's generator.
    ``state_dict()`` / ``load_state_dict()`` capture the generators and the part of the current blocks
    not yet used, so a resumed run continues the same numbers.
    """

    def __init__(self, generators: list[torch.Generator], sizes: list[int], nominal_size: int | None = None):
        if len(generators) != len(sizes) or not sizes:
            raise ValueError(f"need one generator per chain group, got {len(generators)} for {len(sizes)} groups")
        self.generators = list(generators)
        self.sizes = [int(s) for s in sizes]
        self.nominal_size = int(nominal_size or max(self.sizes))
        self._buffers: dict[tuple, list] = {}   # key -> [block (S, K, *tail), next row]
        self._numpy: list[np.random.Generator | None] = [None] * len(self.generators)  # CPU float64 normals

    @classmethod
    def from_seed(cls, seed: int, purpose: int, chains: int, *, group_size: int = CHAIN_GROUP,
                  groups: range | None = None, device=None) -> "ChainRandom":
        """The streams of ``chains`` chains (all groups, or the groups in ``groups``) for one purpose."""
        sizes = group_sizes(chains, group_size)
        groups = range(len(sizes)) if groups is None else groups
        if len(groups) == 0 or groups.start < 0 or groups.stop > len(sizes):
            raise ValueError(f"groups {groups} are not within the {len(sizes)} chain groups of {chains} chains")
        device = torch.device(device if device is not None else "cpu")
        gens = [torch.Generator(device=device).manual_seed(stream_seed(seed, purpose, g)) for g in groups]
        return cls(gens, [sizes[g] for g in groups], group_size)

    @classmethod
    def single(cls, generator: torch.Generator, chains: int) -> "ChainRandom":
        """All ``chains`` chains as one group drawing from the given generator."""
        return cls([generator], [check_int_range("chains", chains, 1)])

    @property
    def chains(self) -> int:
        return sum(self.sizes)

    @property
    def device(self) -> torch.device:
        return self.generators[0].device

    def block_steps(self, per_step: int) -> int:
        """Steps per block when a group draws ``per_step`` numbers per chain and step."""
        return max(1, min(_MAX_BLOCK_STEPS, _BLOCK_ELEMENTS // max(1, self.nominal_size * per_step)))

    def normal(self, like: torch.Tensor) -> torch.Tensor:
        """Standard normal numbers shaped like ``like`` (K, ...), with its dtype and device."""
        return self._take("normal", tuple(like.shape[1:]), like.dtype, like.device, like.shape[0], 1)[0]

    def uniform(self, like: torch.Tensor) -> torch.Tensor:
        """(K,) uniform numbers in [0, 1), with ``like``'s dtype and device."""
        return self._take("uniform", (), like.dtype, like.device, like.shape[0], 1)[0]

    def normal_steps(self, like: torch.Tensor, steps: int) -> torch.Tensor:
        """``steps`` calls of ``normal(like)`` at once, stacked: (steps, K, ...), the same numbers."""
        return self._take("normal", tuple(like.shape[1:]), like.dtype, like.device, like.shape[0], steps)

    def _take(self, kind: str, tail: tuple, dtype, device, rows: int, steps: int) -> torch.Tensor:
        """The next ``steps`` rows of the current blocks of this kind, shape and dtype (new blocks as needed)."""
        if rows != self.chains:
            raise ValueError(f"asked for random numbers for {rows} chains; these streams serve {self.chains}")
        key = (kind, tail, dtype)
        parts = []
        while steps > 0:
            entry = self._buffers.get(key)
            if entry is None or entry[1] == entry[0].shape[0]:
                entry = self._buffers[key] = [self._draw_block(kind, tail, dtype, steps), 0]
            take = min(steps, entry[0].shape[0] - entry[1])
            parts.append(entry[0][entry[1]:entry[1] + take])
            entry[1] += take
            steps -= take
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        return out if out.device == torch.device(device) else out.to(device)

    def _draw_block(self, kind: str, tail: tuple, dtype, wanted: int) -> torch.Tensor:
        """The next block of ``kind`` numbers: ``block_steps`` steps, or all ``wanted`` steps at once where
        the generator's numbers do not depend on the cut (numpy)."""
        steps = self.block_steps(math.prod(tail))
        if kind == "normal" and dtype == torch.float64 and self.device.type == "cpu":
            steps = max(steps, wanted)
            parts = [torch.from_numpy(self._numpy_generator(g).standard_normal((steps, size, *tail)))
                     for g, size in enumerate(self.sizes)]
        else:
            draw = torch.randn if kind == "normal" else torch.rand
            parts = [draw((steps, size, *tail), generator=gen, dtype=dtype, device=gen.device)
                     for gen, size in zip(self.generators, self.sizes)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def _numpy_generator(self, group: int) -> np.random.Generator:
        """Group ``group``'s numpy generator for CPU float64 normals (module docstring), made on first use."""
        if self._numpy[group] is None:
            seed = int(torch.randint(0, (1 << 63) - 1, (), generator=self.generators[group], dtype=torch.int64))
            self._numpy[group] = np.random.Generator(np.random.SFC64(seed))
        return self._numpy[group]

    def state_dict(self) -> dict:
        return {"generators": [g.get_state() for g in self.generators], "sizes": list(self.sizes),
                "numpy": [None if g is None else _sfc64_state(g) for g in self._numpy],
                "buffers": {repr(k): (k[0], k[1], str(k[2]), v[0][v[1]:].cpu()) for k, v in self._buffers.items()}}

    def load_state_dict(self, state: dict) -> None:
        if list(state["sizes"]) != self.sizes:
            raise ValueError(f"random-stream state is for chain groups {state['sizes']}, not {self.sizes}")
        for gen, s in zip(self.generators, state["generators"]):
            gen.set_state(s)
        self._numpy = [None] * len(self.generators)
        for g, s in enumerate(state.get("numpy", [])):   # absent in states saved before numpy normals
            if s is not None:
                self._numpy[g] = np.random.Generator(np.random.SFC64())
                self._numpy[g].bit_generator.state = {"bit_generator": "SFC64", "state": {"state": s["state"]},
                                                      "has_uint32": s["has_uint32"], "uinteger": s["uinteger"]}
        self._buffers = {}
        for kind, tail, dtype, rest in state["buffers"].values():
            if rest.shape[0]:
                dtype = getattr(torch, dtype.replace("torch.", ""))
                self._buffers[(kind, tuple(tail), dtype)] = [rest.to(self.device), 0]


def _sfc64_state(generator: np.random.Generator) -> dict:
    """An SFC64 generator's state in plain Python integers (checkpoints load with ``weights_only=True``)."""
    state = generator.bit_generator.state
    return {"state": [int(x) for x in state["state"]["state"]], "has_uint32": int(state["has_uint32"]),
            "uinteger": int(state["uinteger"])}


def normal_like(like: torch.Tensor, rng: ChainRandom | torch.Generator | None) -> torch.Tensor:
    """Standard normal numbers shaped like ``like``: from the chain groups' streams, or from one generator."""
    if isinstance(rng, ChainRandom):
        return rng.normal(like)
    return torch.randn(like.shape, generator=rng, dtype=like.dtype, device=like.device)


def uniform_like(like: torch.Tensor, rng: ChainRandom | torch.Generator | None) -> torch.Tensor:
    """(K,) uniform numbers in [0, 1) for the K rows of ``like``."""
    if isinstance(rng, ChainRandom):
        return rng.uniform(like)
    return torch.rand(like.shape[0], generator=rng, dtype=like.dtype, device=like.device)
