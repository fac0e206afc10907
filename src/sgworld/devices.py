"""Devices: which ones exist, and the one check that data and chains share one.

Chains live on one device together with their problem's data (docs/concepts.md); their index streams and
noise are generated there (:class:`sgworld.rng.ChainRandom`), and draws are copied to the host in chunks.
"""

from __future__ import annotations

import torch

_RUNNABLE = ("cpu", "cuda", "mps", "xpu")


def check_device(device) -> torch.device:
    """``device`` as a ``torch.device`` that exists here, or a one-line ValueError naming it and the fix.

    ``"cuda"`` without an index means the current CUDA device. ``"meta"`` (shapes without data) cannot
    run chains.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a device name; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "meta":
        raise ValueError(f"device {device!r} holds shapes without data and cannot run chains; use 'cpu' or 'cuda'")
    if dev.type not in _RUNNABLE:
        raise ValueError(f"device {device!r} is not supported for sampling; use 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if dev.type == "cpu":
        return torch.device("cpu")
    backend = torch.backends.mps if dev.type == "mps" else getattr(torch, dev.type)
    if not backend.is_available():
        raise ValueError(f"device {device!r} is not available here (torch.{dev.type}.is_available() is False: no "
                         f"such device or a torch build without it); use device='cpu'")
    if dev.type in ("cuda", "xpu"):
        count = backend.device_count()
        index = backend.current_device() if dev.index is None else dev.index
        if index >= count:
            raise ValueError(f"device {device!r} does not exist: this machine has {count} {dev.type} device(s), "
                             f"{dev.type}:0 to {dev.type}:{count - 1}")
        return torch.device(dev.type, index)
    return dev


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are the same (``cuda`` and ``cuda:0`` are, when 0 is the current device)."""
    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    if a.type == "cpu" or a.index == b.index:
        return True
    current = getattr(torch, a.type).current_device() if a.type in ("cuda", "xpu") else 0
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
