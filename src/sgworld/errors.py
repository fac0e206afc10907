"""Exceptions raised by sgworld."""

from __future__ import annotations


class DivergenceError(RuntimeError):
    """A chain's parameters became non-finite during sampling.

    Attributes
    ----------
    chains : list[int]   indices of the chains that diverged
    steps : list[int]    the step at which each was first seen non-finite (positions are checked
                         every few steps; a non-finite value persists once it appears)
    trace : Trace | None the draws recorded before the divergence was detected
    """

    def __init__(self, chains, steps, trace=None):
        self.chains = list(chains)
        self.steps = list(steps)
        self.trace = trace
        shown = ", ".join(f"chain {c} at step {s}" for c, s in list(zip(self.chains, self.steps))[:10])
        more = "" if len(self.chains) <= 10 else f" (and {len(self.chains) - 10} more)"
        super().__init__(
            f"{len(self.chains)} chain(s) diverged (non-finite parameters): {shown}{more}. "
            "Reduce the learning rate (lr * h_max must stay well below 2) or start closer to a minimum."
        )


class TraceFileError(ValueError):
    """A trace file is missing, truncated or not an sgworld trace."""


class CheckpointError(ValueError):
    """No usable checkpoint: every checkpoint file of a run is corrupt, or it belongs to a different run."""
