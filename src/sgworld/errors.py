"""Exceptions raised by sgworld."""

from __future__ import annotations


def lr_limit_advice(lr: float | None, lr_limit: float | None) -> str:
    """The fix for a step size that is too large, naming the limit ``2 / h_max`` when it is known."""
    if lr_limit is None:
        return "Reduce the learning rate (lr * h_max must stay well below 2) or start closer to a minimum."
    here = "" if lr is None else f" (lr = {lr:.6g} here)"
    return f"The stability limit is lr < 2 / h_max = {lr_limit:.6g}{here}: use an lr well below it."


class DivergenceError(RuntimeError):
    """Chains diverged during sampling: non-finite parameters, or unbounded growth (still finite).

    Attributes
    ----------
    chains : list[int]   indices of the chains that diverged
    steps : list[int]    for each, the step at which it was first seen diverging (positions are checked
                         every few steps for non-finite values, every few hundred for growth)
    trace : Trace | None the draws recorded before the divergence was detected
    reason : str         "non-finite" or "growth" (see :func:`sgworld.run.sample` for the criterion)
    lr, lr_limit : float | None  the step size and, where the problem knows its largest Hessian
                         eigenvalue, the stability limit ``2 / h_max``
    """

    def __init__(self, chains, steps, trace=None, *, reason: str = "non-finite", lr: float | None = None,
                 lr_limit: float | None = None):
        self.chains = list(chains)
        self.steps = list(steps)
        self.trace = trace
        self.reason, self.lr, self.lr_limit = reason, lr, lr_limit
        shown = ", ".join(f"chain {c} at step {s}" for c, s in list(zip(self.chains, self.steps))[:10])
        more = "" if len(self.chains) <= 10 else f" (and {len(self.chains) - 10} more)"
        what = ("non-finite parameters" if reason == "non-finite"
                else "distance from the start grew a millionfold within a doubling of the run")
        super().__init__(f"{len(self.chains)} chain(s) diverged ({what}): {shown}{more}. "
                         + lr_limit_advice(lr, lr_limit))


class StepSizeError(ValueError):
    """The step size is at or above the stability limit ``2 / h_max`` (no stationary state exists).

    Raised before any step is taken, where the largest Hessian eigenvalue ``h_max`` is known (quadratic
    problems, the theory at a minimum). Attributes ``lr``, ``h_max``, ``lr_limit = 2 / h_max``.
    """

    def __init__(self, lr: float, h_max: float, what: str = "the chains would diverge"):
        self.lr, self.h_max, self.lr_limit = float(lr), float(h_max), 2.0 / float(h_max)
        super().__init__(f"lr * h_max = {self.lr * self.h_max:.4g} >= 2: {what}. "
                         + lr_limit_advice(self.lr, self.lr_limit))


class DiskSpaceError(OSError):
    """Not enough free disk space for a trace folder's draws file or a checkpoint.

    Attributes ``folder``, ``needed`` and ``free`` (bytes). The run's last checkpoint stays usable:
    free space and call ``sample`` again with the same arguments (or ``sgworld resume``) to continue.
    """

    def __init__(self, folder, needed: int, free: int, what: str):
        self.folder, self.needed, self.free = str(folder), int(needed), int(free)
        super().__init__(f"not enough disk space in {self.folder!r} for {what}: {_size(self.needed)} needed, "
                         f"{_size(self.free)} free. Free up space (or choose another out folder) and run the same "
                         "call again: it continues from the last checkpoint, if there is one.")

    def __str__(self) -> str:
        return self.args[0]


def _size(n: int) -> str:
    """``n`` bytes, with a readable unit when large."""
    if n < 1024:
        return f"{n} bytes"
    value, unit = float(n), "bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit} ({n} bytes)"


class TheoryRangeWarning(UserWarning):
    """A theory formula is used outside the range in which its stated accuracy was measured."""


class TraceFileError(ValueError):
    """A trace file is missing, truncated, corrupt (checksum mismatch) or not an sgworld trace."""


class CheckpointError(ValueError):
    """No usable checkpoint: every checkpoint file of a run is corrupt, or it belongs to a different run."""
