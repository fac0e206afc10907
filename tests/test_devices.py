"""Devices: sample(device=...), Problem.to, the sampling-device context of ``sgworld run --device``, the
chunked copy of draws to the host, and the errors for devices that cannot be used.

Every test runs on the CPU: an explicit ``device="cpu"`` must give bit for bit what the default gives,
the paths a GPU run takes (a moved problem, draws staged and copied in chunks) are forced on the CPU and
must give the same draws, and devices that do not exist here are one-line errors (the CLI's are in
tests/test_bad_inputs.py). The GPU itself is not exercised here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import sgworld.problems.base as base
import sgworld.run as run_module
from sgworld import from_module, sample
from sgworld.devices import check_device, same_device
from sgworld.problems.energy import ill_conditioned_gaussian
from sgworld.run import sampling_device

from conftest import shifted_seed

RUNS = [
    ("sgld", dict(lr=1e-3, batch_size=8, thin=3)),
    ("sgworld", dict(lr=1e-3, batch_size=8)),
    ("mala", dict(lr=1e-3)),
    ("mjhmc", dict(lr=0.05, kernel_options={"time_step": 1.0})),
]


@pytest.mark.parametrize("method,kwargs", RUNS, ids=[m for m, _ in RUNS])
def test_explicit_cpu_equals_the_default_bit_for_bit(blr_problem, method, kwargs, tmp_path):
    common = dict(chains=70, num_draws=6, seed=shifted_seed(2), progress=False, **kwargs)
    default = sample(blr_problem, method, **common)
    explicit = sample(blr_problem, method, device="cpu", **common)
    with sampling_device("cpu"):
        context = sample(blr_problem, method, **common)
    streamed = sample(blr_problem, method, device=torch.device("cpu"), out=tmp_path / method, **common)
    for trace in (explicit, context, streamed):
        np.testing.assert_array_equal(trace.draws, default.draws)
        assert {k: v for k, v in trace.meta.items() if k not in ("fingerprint", "draws_sha256")} == default.meta
    assert default.meta["device"] == "cpu"
    assert np.ptp(default.draws) > 0   # the chains moved


@pytest.mark.parametrize("device,match", [
    ("meta", r"device 'meta' holds shapes without data and cannot run chains; use 'cpu' or 'cuda'"),
    ("gpu0", r"device 'gpu0' is not a device name; use 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    ("ipu", r"device 'ipu' is not supported for sampling"),
])
def test_devices_that_cannot_run_chains_are_refused(blr_problem, device, match):
    with pytest.raises(ValueError, match=match):
        sample(blr_problem, "sgld", lr=1e-3, batch_size=4, num_draws=2, device=device, progress=False)
    with pytest.raises(ValueError, match=match):
        blr_problem.to(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(blr_problem):
    with pytest.raises(ValueError, match=r"device 'cuda' is not available here .* use device='cpu'"):
        sample(blr_problem, "sgld", lr=1e-3, batch_size=4, num_draws=2, device="cuda", progress=False)
    with pytest.raises(ValueError, match=r"device 'cuda:3' is not available here"):
        check_device("cuda:3")


def test_chains_on_another_device_than_the_data_are_refused(blr_problem, monkeypatch):
    # No second device here: pretend 'cuda' exists, so that the data (on the CPU) and the chains differ.
    monkeypatch.setattr(run_module, "check_device", lambda device: torch.device("cuda", 0))
    monkeypatch.setattr(run_module, "same_device", lambda a, b: torch.device(a).type == torch.device(b).type)
    with pytest.raises(ValueError, match=r"device='cuda:0' differs from the device of the problem's data \(cpu\): "
                                         r".*problem = problem.to\('cuda:0'\)"):
        sample(blr_problem, "sgld", lr=1e-3, batch_size=4, num_draws=2, device="cuda", progress=False)


def test_problem_to_its_own_device_is_itself_and_a_move_keeps_the_numbers(blr_problem, monkeypatch):
    assert blr_problem.device == torch.device("cpu")
    assert blr_problem.to("cpu") is blr_problem
    assert same_device("cpu", torch.device("cpu")) and not same_device("cpu", "meta")
    module = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    network = from_module(module, torch.randn(5, 2), torch.randn(5, 1), device="cpu")
    energy = ill_conditioned_gaussian(3)
    assert network.to("cpu") is network and energy.to(torch.device("cpu")) is energy
    # The path taken for another device, forced on the CPU: a new problem (copied tensors, or rebuilt
    # where the potential closes over tensors) that samples the same draws.
    monkeypatch.setattr(base, "same_device", lambda a, b: False)
    common = dict(lr=1e-3, chains=3, num_draws=4, seed=shifted_seed(4), progress=False)
    for problem, method, extra in ((blr_problem, "sgld", {"batch_size": 4}), (network, "sgld", {"batch_size": 2}),
                                   (energy, "mala", {})):
        moved = problem.to("cpu")
        assert moved is not problem and moved.device.type == "cpu"
        assert all(torch.equal(a, b) for a, b in zip(moved.data, problem.data))
        np.testing.assert_array_equal(sample(moved, method, **common, **extra).draws,
                                      sample(problem, method, **common, **extra).draws)


def test_draws_staged_on_the_device_reach_the_host_in_chunks(blr_problem, monkeypatch):
    """The path of a GPU run, taken on the CPU: draws staged in chunks of 2 draws, copied to the host."""
    common = dict(lr=1e-3, batch_size=4, chains=5, num_draws=7, seed=shifted_seed(6), progress=False)
    direct = sample(blr_problem, "sgld", **common)
    monkeypatch.setattr(run_module, "_records_directly", lambda writer, device: False)
    monkeypatch.setattr(run_module, "_CHUNK_BYTES", 2 * 5 * 2 * 8)
    staged = sample(blr_problem, "sgld", **common)
    np.testing.assert_array_equal(staged.draws, direct.draws)
    assert staged.draws.shape == (5, 7, 2)
