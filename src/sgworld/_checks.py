"""Argument checks shared by the public API: one place for the wording of errors."""

from __future__ import annotations

import math
import warnings

import torch


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
