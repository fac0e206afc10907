"""sgworld as a user runs it: ``sgworld.sample`` on the workload's Problem, all chains in one tensor."""

from __future__ import annotations

import torch
from torch import nn

from sgworld.experiments.regression import RegressionProblem
from sgworld.problems import BayesianLinearRegression, from_module
from sgworld.run import auto_compile, sample

from common import THREADS


def problem(workload, dtype_name: str):
    dtype = getattr(torch, dtype_name)
    d = workload.data
    if workload.name == "W1":
        return RegressionProblem(d["x"], d["y"], noise_std=d["noise_std"], lam=d["lam"], dtype=dtype)
    if workload.name == "W2":
        return BayesianLinearRegression(d["X"], d["y"], noise_std=d["noise_std"], prior_std=d["prior_std"],
                                        dtype=dtype)
    net = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    return from_module(net, d["X"], d["y"], likelihood="categorical", prior_std=d["prior_std"], dtype=dtype)


def runner(workload, dtype_name: str, chains: int, scheme: str, compile: bool | None = None):
    """``run(steps)``: ``steps`` SGLD steps (scheme ``wr`` / ``iid``; ``wor`` is SGWORLD) of all chains.

    ``compile=None`` times the path ``sample()`` takes without flags in a run of at least
    ``AUTO_COMPILE_STEPS`` steps (compiled blocks where ``sgworld.run.auto_compile`` says so), on calls of any
    length; ``False`` the uncompiled steps, ``True`` compiled blocks."""
    prob = problem(workload, dtype_name)
    init = torch.as_tensor(workload.init, dtype=prob.dtype)
    method = "sgworld" if scheme == "wor" else "sgld"
    if compile is None:
        compile = auto_compile(chains, prob.dim)

    def run(steps: int):
        sample(prob, method, lr=workload.lr, batch_size=workload.b, scheme=scheme, chains=chains, num_draws=1,
               thin=steps, init=init, seed=0, progress=False, threads=THREADS, compile=compile)

    run.compiled = compile
    return run
