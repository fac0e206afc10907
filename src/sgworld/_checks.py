"""Argument checks shared by the public API: one place for the wording of errors.

Scalars and choices, tensors and data (finite values, labels, layers of a module), arrays of the
analysis (float64 numpy arrays, square / symmetric / positive semidefinite matrices, a point of a
Problem), and the conditions the Fokker–Planck theory at a point needs (a minimum, a diffusion that
reaches every direction, a point close enough to the minimum); docs/concepts.md, "SGD near a minimum",
gives the equations behind the last group.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

# A covariance (the per-sample gradient covariance S, or a diffusion D = c S) whose smallest to largest
# eigenvalue ratio is at or below this is singular: D^{-1}, hence the entropy production, is undefined.
SINGULAR_RCOND = 1e-12
SYMMETRY_RTOL = 1e-8  # relative asymmetry tolerated in H, D, Sigma (autodiff Hessians: ~1e-13)


def check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_nonnegative(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def check_int_range(name: str, value: int, low: int, high: int | None = None) -> int:
    allowed = f"{low} <= {name}" + (f" <= {high}" if high is not None else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__index__") \
            or int(value) != value:
        raise ValueError(f"{name} must be an integer ({allowed}), got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} = {value} is out of range; allowed: {allowed}")
    return value


def check_fraction(name: str, value: float) -> float:
    """A number strictly between 0 and 1 (a probability, an interval's coverage level)."""
    value = float(value)
    if not 0 < value < 1:
        raise ValueError(f"{name} = {value!r} is out of range; allowed: 0 < {name} < 1")
    return value


def check_choice(name: str, value: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(map(str, choices))}")
    return value


def check_finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf); clean or drop them first")
    return tensor


def check_prior_std(prior_std) -> tuple[float | None, float]:
    """``(prior_std, prior precision 1 / prior_std^2)``; ``None`` drops the prior (precision 0)."""
    if prior_std is None:
        return None, 0.0
    prior_std = check_positive("prior_std", prior_std)
    return prior_std, 1.0 / prior_std**2


def check_full_column_rank(name: str, X: torch.Tensor, fix: str) -> torch.Tensor:
    rank = int(torch.linalg.matrix_rank(X.double()))
    if rank < X.shape[1]:
        raise ValueError(f"{name} has rank {rank} < {X.shape[1]} columns: {fix}")
    return X


# Layers whose output in training mode is not a deterministic per-sample function of the weights:
# batch statistics couple the samples of a batch (and update buffers in place), dropout draws from the
# global RNG. Matched by the name of torch's (private) base classes, which covers the lazy and
# synchronised variants.
_TRAIN_MODE_LAYERS = ("_BatchNorm", "_InstanceNorm", "_DropoutNd", "AlphaDropout", "FeatureAlphaDropout")


def check_module_deterministic(module: torch.nn.Module) -> torch.nn.Module:
    """Refuse layers that make ``U_i(w)`` depend on the rest of the batch or on a hidden RNG.

    BatchNorm / InstanceNorm with running statistics and Dropout in training mode, and BatchNorm without
    running statistics (``track_running_stats=False`` uses batch statistics even in eval mode).
    """
    for name, sub in module.named_modules():
        bases = {cls.__name__ for cls in type(sub).__mro__}
        label = f"{type(sub).__name__} layer {name or '(the module itself)'!r}"
        if "_BatchNorm" in bases and getattr(sub, "running_mean", None) is None:
            raise ValueError(f"{label} uses batch statistics even in eval mode (track_running_stats=False), so "
                             "U_i would depend on the rest of the batch; use track_running_stats=True and "
                             "call module.eval(), or remove the layer")
        if sub.training and bases & set(_TRAIN_MODE_LAYERS):
            if "_InstanceNorm" in bases and not getattr(sub, "track_running_stats", False):
                continue   # per-sample statistics, no buffers: deterministic in either mode
            if "_InstanceNorm" in bases:
                why = "updates its running statistics in place"
            elif "_BatchNorm" in bases:
                why = "uses batch statistics"
            else:
                why = "draws from the global RNG"
            raise ValueError(f"{label} is in training mode and {why}; call module.eval() before building "
                             "the problem")
    return module


def check_class_labels(y, num_classes: int, *, missing: str = "refuse", fix: str = "") -> torch.Tensor:
    """Categorical labels as int64 (N,), checked to be integers in ``0 .. num_classes - 1``.

    ``missing``: what to do when some classes have no sample: ``"refuse"`` (ValueError),
    ``"warn"`` (UserWarning) or ``"allow"``. ``fix`` is appended to the missing-class message.
    """
    check_choice("missing", missing, ("refuse", "warn", "allow"))
    y = torch.as_tensor(y)
    if y.ndim != 1:
        raise ValueError(f"categorical labels y must have shape (N,), got {tuple(y.shape)}")
    if y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"categorical labels y must be integers 0..{num_classes - 1}, got dtype {y.dtype}")
    if y.is_floating_point():
        bad = ~torch.isfinite(y) | (y != torch.round(y))
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise ValueError(f"categorical labels must be integers 0..{num_classes - 1}; y[{i}] = {y[i].item():.6g} "
                             f"is not ({int(bad.sum())} such label(s)): relabel the data with integer class indices")
    y = y.to(torch.long)
    out = (y < 0) | (y >= num_classes)
    if bool(out.any()):
        i = int(out.nonzero()[0])
        raise ValueError(f"categorical label y[{i}] = {int(y[i])} is outside 0..{num_classes - 1} (the model has "
                         f"{num_classes} outputs; {int(out.sum())} such label(s)): relabel the classes to "
                         f"0..{num_classes - 1} or give the model one output per class")
    absent = sorted(set(range(num_classes)) - set(torch.unique(y).tolist()))
    if absent and missing != "allow":
        listed = ", ".join(map(str, absent[:20])) + (f" and {len(absent) - 20} more" if len(absent) > 20 else "")
        message = (f"the data have no sample of class(es) {listed} of 0..{num_classes - 1}"
                   + (f"; {fix}" if fix else ""))
        if missing == "refuse":
            raise ValueError(message)
        warnings.warn(message, UserWarning, stacklevel=3)
    return y


# --------------------------------------------------------------------------- arrays of the analysis


def as_float64(x, name: str) -> np.ndarray:
    """``x`` (numpy, torch or nested sequence) as a finite float64 numpy array; clear error otherwise."""
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array, got {type(x).__name__}: {exc}") from None
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf); clean or drop them first")
    return arr


def check_square(x, name: str, p: int | None = None, *, like: str = "the other matrices") -> np.ndarray:
    """``x`` as a finite float64 ``(p, p)`` array (any ``p`` when not given; ``like`` names what sets ``p``)."""
    arr = as_float64(x, name)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be a square (p, p) matrix, got shape {arr.shape}")
    if p is not None and arr.shape[0] != p:
        raise ValueError(f"{name} has shape {arr.shape} but must be ({p}, {p}) to match {like}")
    return arr


def check_symmetric(M: np.ndarray, name: str) -> np.ndarray:
    """``(M + M^T) / 2`` after checking ``M`` is symmetric to ``SYMMETRY_RTOL`` relative."""
    scale = np.max(np.abs(M))
    asymmetry = np.max(np.abs(M - M.T))
    if asymmetry > SYMMETRY_RTOL * scale:
        raise ValueError(f"{name} must be symmetric; max |{name} - {name}^T| = {asymmetry:.3g} "
                         f"(relative {asymmetry / scale:.3g})")
    return 0.5 * (M + M.T)


def check_psd(D: np.ndarray, name: str = "D") -> np.ndarray:
    """Symmetrised ``D`` after checking it is positive semidefinite (to round-off)."""
    D = check_symmetric(D, name)
    lam = np.linalg.eigvalsh(D)
    if lam[0] < -1e-10 * max(abs(lam[-1]), np.finfo(float).tiny):
        raise ValueError(f"{name} must be positive semidefinite (a covariance); it has eigenvalue {lam[0]:.6g} < 0")
    return D


def check_point(problem, w, name: str = "w") -> torch.Tensor:
    """``w`` (numpy, torch or sequence) as a finite ``(p,)`` tensor in the problem's dtype."""
    w = torch.as_tensor(np.asarray(as_float64(w, name)), dtype=problem.dtype)
    if w.shape != (problem.dim,):
        raise ValueError(f"{name} must have shape ({problem.dim},) for this problem, got {tuple(w.shape)}")
    return w


# --------------------------------------------------------------------------- the theory at a minimum


def check_minimum(H: np.ndarray, where: str = "the point", lam: np.ndarray | None = None) -> None:
    """ValueError unless the Hessian ``H`` at ``where`` is positive definite (a minimum).

    ``lam``: ``H``'s eigenvalues in ascending order, when already known. A negative eigenvalue means
    ``where`` is not a minimum; one within ``p`` machine epsilons of the largest, a flat direction (the
    stationary covariance would be unbounded along it).
    """
    lam = np.linalg.eigvalsh(0.5 * (H + H.T)) if lam is None else lam
    if lam[0] < 0:
        raise ValueError(
            f"{where} is not a minimum of L: the Hessian is not positive definite (smallest eigenvalue "
            f"{lam[0]:.6g}, largest {lam[-1]:.6g}). The stationary-state theory expands around a minimum; "
            "find one first with find_minimum(problem, w0)")
    if lam[0] <= lam[-1] * np.finfo(float).eps * H.shape[0]:
        raise ValueError(
            f"the Hessian is singular at {where} (smallest eigenvalue {lam[0]:.3g}, largest {lam[-1]:.3g}): "
            "the stationary covariance is unbounded along a flat direction, so this is not a strict minimum; "
            "add a prior (weight decay) or restrict to the non-flat subspace")


def check_at_minimum(H: np.ndarray, g: np.ndarray, Sigma: np.ndarray, where: str = "w") -> None:
    """ValueError if the Newton step ``H^{-1} g`` to the minimum is larger than the stationary spread.

    The expansion assumes the cloud sits around ``where``; an offset bigger than one standard deviation
    of ``N(w, Sigma)`` (Mahalanobis distance > 1) means ``where`` is not the minimum.
    """
    step = np.linalg.solve(H, g)
    distance = float(np.sqrt(step @ np.linalg.solve(Sigma, step)))
    if distance > 1.0:
        raise ValueError(
            f"{where} is not at a minimum of L: |grad L| = {np.linalg.norm(g):.3g} and the Newton step to the "
            f"minimum ({np.max(np.abs(step)):.3g} in max-norm) is {distance:.3g} standard deviations of the "
            "predicted stationary cloud. Refine it first with find_minimum(problem, w)")


def check_gradient_noise(S: np.ndarray, factor: float, n: int, batch_size: int, scheme: str) -> None:
    """ValueError when the minibatch noise ``D = (lr^2/2) factor S`` vanishes in some direction (D singular)."""
    if factor == 0:
        raise ValueError(f"no minibatch noise: with scheme {scheme!r} and b = N = {n} every step uses the full "
                         "gradient, so D = 0 and there is no stationary spread; use b < N (or Langevin noise)")
    lam = np.linalg.eigvalsh(S)
    if lam[-1] <= 0 or lam[0] <= SINGULAR_RCOND * lam[-1]:
        raise ValueError(
            f"the diffusion matrix D is singular: the per-sample gradient covariance S has eigenvalues "
            f"{lam[0]:.3g} .. {lam[-1]:.3g}, so the gradient noise does not reach every direction (fewer "
            f"distinct samples than parameters, N = {n}, or per-sample gradients that agree along some "
            "direction). Entropy production needs D^{-1}: use more (or more varied) data, add Langevin noise, "
            "or analyse the subspace spanned by S")
