"""The work of each process in tests/test_distributed.py (imported by the spawned processes).

Every process joins a gloo process group through a file store, runs the jobs named, and saves what the
test compares with a single-process run in ``OUT/rank<R>.pt``. The last job, ``dead_rank``, ends rank 1
abruptly while rank 0 samples, so it writes its own file.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from sgworld import BayesianLinearRegression, sample, sgld
from sgworld.distributed import (DistributedWithoutReplacementSampler, DistributedWithReplacementSampler,
                                 RankFailedError)
from sgworld.optim import SGLD, SGWORLD

from conftest import shifted_seed

# -- data-parallel trajectories: a linear model, N = 24, d = 3, global batches of 4 (2 per rank) ------
TRAJ_N, TRAJ_D, TRAJ_B, TRAJ_LR, TRAJ_EPOCHS, TRAJ_STEPS = 24, 3, 4, 2e-3, 6, 30
NOISE_STD = 0.5


def trajectory_data():
    rng = np.random.default_rng(shifted_seed(21))
    X = rng.normal(size=(TRAJ_N, TRAJ_D))
    y = X @ np.array([1.0, -0.5, 0.3]) + 0.5 * rng.normal(size=TRAJ_N)
    return torch.tensor(X), torch.tensor(y)


def linear(weight) -> nn.Linear:
    model = nn.Linear(len(weight), 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(weight, dtype=torch.float64).reshape(1, -1))
    return model


def loss_step(model, opt, xb, yb) -> None:
    """The user's loop body: mean Gaussian NLL of the (local) batch, backward (DDP averages), step."""
    opt.zero_grad()
    loss = ((model(xb).squeeze(-1) - yb) ** 2).mean() / (2 * NOISE_STD**2)
    loss.backward()
    opt.step()


def job_trajectory(rank: int, world: int, out: Path) -> dict:
    X, y = trajectory_data()
    data = TensorDataset(X, y, torch.arange(TRAJ_N))
    w0 = [0.2, -0.1, 0.4]
    result = {}
    # SGWORLD: the global without-replacement stream (DistributedSampler semantics)
    model = DistributedDataParallel(linear(w0))
    opt = SGWORLD(model.parameters(), lr=TRAJ_LR, num_data=TRAJ_N, prior_precision=1.0, seed=shifted_seed(3))
    order = DistributedWithoutReplacementSampler(TRAJ_N, TRAJ_B, seed=shifted_seed(4))
    loader = DataLoader(data, batch_sampler=order)
    path, batches = [], []
    for epoch in range(TRAJ_EPOCHS):
        order.set_epoch(epoch)
        for xb, yb, ib in loader:
            loss_step(model, opt, xb, yb)
            path.append(model.module.weight.detach().flatten().clone())
            batches.append(ib.tolist())
    result["wor"] = (torch.stack(path), batches)
    # SGLD: b distinct global indices per step, split over the ranks
    model = DistributedDataParallel(linear(w0))
    opt = SGLD(model.parameters(), lr=TRAJ_LR, num_data=TRAJ_N, prior_precision=1.0, seed=shifted_seed(5))
    loader = DataLoader(data, batch_sampler=DistributedWithReplacementSampler(TRAJ_N, TRAJ_B, TRAJ_STEPS,
                                                                              seed=shifted_seed(6)))
    path, batches = [], []
    for xb, yb, ib in loader:
        loss_step(model, opt, xb, yb)
        path.append(model.module.weight.detach().flatten().clone())
        batches.append(ib.tolist())
    result["wr"] = (torch.stack(path), batches)
    return result


MOMENT_STEPS, MOMENT_EPOCHS = 3000, 750


def job_moments(rank: int, world: int, out: Path) -> dict:
    """The exact-moment test of tests/test_optim.py, its loop under DDP over the ranks (local batches of 1),
    at MOMENT_STEPS steps (SGLD) and MOMENT_EPOCHS epochs (SGWORLD) after the same burn-in."""
    import test_optim as t

    problem = t.blr()
    A, _ = problem.quadratic_terms()
    h = np.linalg.eigvalsh(A.mean(0))
    lr = 0.5 / h[-1]
    burn = int(45 / (lr * h[0]))
    steps, epochs = MOMENT_STEPS, MOMENT_EPOCHS
    X, y = torch.tensor(t.X), torch.tensor(t.Y)
    # SGLD
    model = DistributedDataParallel(t.linear_model(problem.target().mean))
    opt = SGLD(model.parameters(), lr=lr, num_data=t.N, prior_precision=1 / t.PRIOR_STD**2, seed=shifted_seed(1))
    wr = np.empty((burn + steps, t.D))
    for k, idx in enumerate(DistributedWithReplacementSampler(t.N, t.B, burn + steps, seed=shifted_seed(1))):
        t.train_step(model, opt, X[idx], y[idx])
        wr[k] = model.module.weight.detach().numpy()[0]
    # SGWORLD
    model = DistributedDataParallel(t.linear_model(problem.target().mean))
    opt = SGWORLD(model.parameters(), lr=lr, num_data=t.N, prior_precision=1 / t.PRIOR_STD**2, seed=shifted_seed(2))
    order = DistributedWithoutReplacementSampler(t.N, t.B, seed=shifted_seed(2))
    burn_epochs = -(-burn // (t.N // t.B))
    wor = np.empty((burn_epochs + epochs, t.D))
    for e in range(burn_epochs + epochs):
        order.set_epoch(e)
        for idx in order:
            t.train_step(model, opt, X[idx], y[idx])
        wor[e] = model.module.weight.detach().numpy()[0]
    return {"wr": wr[burn:], "wor": wor[burn_epochs:], "lr": lr}


def blr_problem():
    rng = np.random.default_rng(shifted_seed(12345))
    X = rng.normal(size=(40, 2)) @ np.array([[1.0, 0.4], [0.0, 0.7]])
    y = X @ np.array([0.5, -1.0]) + 0.3 * rng.normal(size=40)
    return BayesianLinearRegression(torch.tensor(X), torch.tensor(y), noise_std=0.3, prior_std=1.0)


# sample() calls run by 1 and by 2 processes: (name, keyword arguments); "out" is filled in per call
CHAIN_RUNS = [
    ("sgworld", dict(method="sgworld", lr=2e-4, batch_size=5, chains=128, num_draws=12, thin=2)),
    ("mala", dict(method="mala", lr=2e-3, chains=130, num_draws=10, burn_in=3)),        # groups 64 + 64 | 2
    ("sgld_out", dict(method="sgld", lr=2e-4, batch_size=4, chains=128, num_draws=10, checkpoint_every=0.0)),
]


def chain_run(name: str, kwargs: dict, out: Path | None):
    kwargs = dict(kwargs)
    method = kwargs.pop("method")
    if name.endswith("_out"):
        kwargs["out"] = out / name
    return sample(blr_problem(), method, seed=shifted_seed(7), progress=False, **kwargs)


def job_chains(rank: int, world: int, out: Path) -> dict:
    result = {}
    for name, kwargs in CHAIN_RUNS:
        trace = chain_run(name, kwargs, out)
        result[name] = (np.asarray(trace.draws), trace.steps, trace.meta)
    again = chain_run("sgld_out", dict(CHAIN_RUNS)["sgld_out"], out)   # a finished split run is read back
    result["sgld_out_again"] = (np.asarray(again.draws), again.steps, again.meta)
    return result


RESUMED = dict(batch_size=4, chains=128, num_draws=40, progress=False, checkpoint_every=0.0)


def interrupted(kernel, at_step: int):
    """``kernel`` whose step ``at_step`` raises KeyboardInterrupt (as Ctrl-C would)."""
    count = [0]

    def step(state, idx, rng):
        count[0] += 1
        if count[0] == at_step:
            raise KeyboardInterrupt
        return kernel.step(state, idx, rng)

    return dataclasses.replace(kernel, step=step)


def job_resume(rank: int, world: int, out: Path) -> dict:
    """Rank 0 is interrupted at step 25 (rank 1 finishes its chains); the same call again resumes rank 0
    from its checkpoint and reads rank 1's finished folder back."""
    problem = blr_problem()
    kernel = sgld(problem, 2e-4)
    first = None
    try:
        sample(problem, interrupted(kernel, 25) if rank == 0 else kernel, seed=shifted_seed(8), out=out / "resumed",
               **RESUMED)
    except (KeyboardInterrupt, RankFailedError) as exc:
        first = type(exc).__name__
    trace = sample(problem, kernel, seed=shifted_seed(8), out=out / "resumed", **RESUMED)
    return {"first": first, "trace": (np.asarray(trace.draws), trace.steps, trace.meta)}


def job_seed_mismatch(rank: int, world: int, out: Path) -> dict:
    X, y = trajectory_data()
    model = DistributedDataParallel(linear([0.0, 0.0, 0.0]))
    opt = SGWORLD(model.parameters(), lr=TRAJ_LR, num_data=TRAJ_N, seed=shifted_seed(10) + rank)
    try:
        loss_step(model, opt, X[:2], y[:2])
    except ValueError as exc:
        return {"error": str(exc)}
    return {"error": None}


def job_dead_rank(rank: int, world: int, out: Path) -> dict:
    if rank == 1:
        os._exit(3)   # dies without a word, as a killed process would
    try:
        sample(blr_problem(), "sgld", lr=2e-4, batch_size=4, chains=128, num_draws=50, progress=False)
    except RankFailedError as exc:
        return {"error": str(exc)}
    return {"error": None}


JOBS = {"trajectory": job_trajectory, "moments": job_moments, "chains": job_chains, "resume": job_resume,
        "seed_mismatch": job_seed_mismatch, "dead_rank": job_dead_rank}


def worker(rank: int, world: int, store: str, out: str, jobs: list[str]) -> None:
    torch.set_num_threads(1)
    out = Path(out)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    results = {"seconds": {}}
    for name in jobs:
        start = time.perf_counter()
        results[name] = JOBS[name](rank, world, out)
        results["seconds"][name] = time.perf_counter() - start
        torch.save(results, out / f"rank{rank}.pt")
    dist.destroy_process_group()
