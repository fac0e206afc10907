"""torch.distributed: data-parallel SGLD / SGWORLD under DDP, and sample()'s chains split over processes.

Two gloo processes (torch.multiprocessing, spawned once for the whole file) run the jobs of
tests/distributed_jobs.py; each test compares what they saved with a single-process computation here:

- a DDP loop with the distributed batch samplers follows, to 1e-12, the single-process loop fed the same
  global batches and noise, and the two replicas are bitwise identical;
- the exact-moment test of tests/test_optim.py holds with its loop under DDP;
- sample() with its chain groups split over the two ranks returns, on every rank, bit for bit the trace
  of one process (unequal shares included), also through per-rank trace folders;
- different seeds on the ranks, and a rank that dies, are errors that name the ranks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, TensorDataset

import distributed_jobs as jobs
from sgworld import Trace, sample
from sgworld.distributed import (DistributedWithoutReplacementSampler, DistributedWithReplacementSampler,
                                 local_batch_size, split_groups)
from sgworld.errors import TraceFileError
from sgworld.optim import SGLD, SGWORLD, WithReplacementSampler
from sgworld.theory.exact import epoch_stationary_moments, stepwise_stationary_moments
from sgworld.trace import merge_chains

from conftest import Z_TOL, assert_within_se
from test_optim import moments_with_se, stacked

WORLD = 2
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Run every job on 2 gloo processes once; {rank: {job: result}}."""
    out = tmp_path_factory.mktemp("ranks")
    names = ["trajectory", "chains", "resume", "seed_mismatch", "moments", "dead_rank"]
    context = mp.start_processes(jobs.worker, args=(WORLD, str(out / "store"), str(out), names), nprocs=WORLD,
                                 join=False, start_method="spawn")
    for process in context.processes:
        process.join(timeout=300)
    codes = [p.exitcode for p in context.processes]
    assert codes == [0, 3], f"exit codes {codes} (rank 1 ends itself with 3 in the last job)"
    results = {r: torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)}
    print("seconds per job on rank 0:", {k: round(v, 1) for k, v in results[0]["seconds"].items()})
    return results | {"out": out}


# ------------------------------------------------------------------------- data-parallel (DDP) loops

def single_process_path(cls, seed, batches):
    """The same loop in one process, fed the global batches (lists of indices) in order."""
    X, y = jobs.trajectory_data()
    model = jobs.linear([0.2, -0.1, 0.4])
    opt = cls(model.parameters(), lr=jobs.TRAJ_LR, num_data=jobs.TRAJ_N, prior_precision=1.0, seed=seed)
    path = []
    for xb, yb in DataLoader(TensorDataset(X, y), batch_sampler=batches):
        jobs.loss_step(model, opt, xb, yb)
        path.append(model.weight.detach().flatten().clone())
    return torch.stack(path)


@pytest.mark.parametrize("scheme", ["wor", "wr"])
def test_ddp_trajectory_equals_one_process_fed_the_global_batches(ranks, scheme):
    (path0, local0), (path1, local1) = ranks[0]["trajectory"][scheme], ranks[1]["trajectory"][scheme]
    assert torch.equal(path0, path1), "the replicas differ"
    glob = [a + b for a, b in zip(local0, local1)]
    assert all(len(set(g)) == jobs.TRAJ_B for g in glob), "a global batch repeats an index"
    if scheme == "wor":
        m = jobs.TRAJ_N // jobs.TRAJ_B
        epochs = [sorted(i for g in glob[e * m:(e + 1) * m] for i in g) for e in range(jobs.TRAJ_EPOCHS)]
        assert all(e == list(range(jobs.TRAJ_N)) for e in epochs), "an epoch is not a permutation of the data"
        assert glob[:m] != glob[m:2 * m], "two epochs repeat the same permutation"
        single = single_process_path(SGWORLD, jobs.shifted_seed(3), glob)
    else:
        reference = WithReplacementSampler(jobs.TRAJ_N, jobs.TRAJ_B, jobs.TRAJ_STEPS, seed=jobs.shifted_seed(6))
        assert glob == list(reference), "the global wr stream is not WithReplacementSampler's"
        single = single_process_path(SGLD, jobs.shifted_seed(5), glob)
    gap = float((single - path0).abs().max())
    print(f"{scheme}: max |distributed - single process| = {gap:.2e} over {len(glob)} steps")
    assert gap <= 1e-12
    # power: the chain moved, and the same loop fed other batches (rank 0's alone, twice) ends elsewhere
    assert float((path0[-1] - path0[0]).abs().max()) > 1e-3
    other = single_process_path(SGWORLD if scheme == "wor" else SGLD, jobs.shifted_seed(3 if scheme == "wor" else 5),
                                [a + a for a in local0])
    assert float((other - path0).abs().max()) > 1e-6


def test_ddp_loop_matches_exact_stationary_moments(ranks):
    """tests/test_optim.py's exact-moment test with its loop under DDP on 2 ranks (local batches of 1).

    3000 SGLD steps and 750 SGWORLD epochs (about 6000 DDP steps, against 16000 in the single-process
    test), SEs sd / sqrt(ESS) of each series, Z_TOL on 10 numbers: false-failure rate about 6e-6. Power:
    the chains start at the posterior mean, and the exact discrete-time moments at lr = 0.5 / h_max lie
    21-24 (SGLD) and 13-14 (SGWORLD) of these SEs from the posterior (4 seeds of the same loop in one
    process), against the 2 Z_TOL = 10 required, so a loop that sampled the posterior, or stood still,
    would fail. (Telling wr from wor apart is the single-process test's job; here they are 7-8 SEs apart.)
    """
    import test_optim as t

    result = ranks[0]["moments"]
    A, g = t.blr().quadratic_terms()
    lr = result["lr"]
    posterior = stacked(t.blr().target().mean, t.blr().target().cov)
    wr_exact = stepwise_stationary_moments(A, g, lr, 1.0, t.B, "wr")
    wor_exact = epoch_stationary_moments(A, g, lr, 1.0, t.B, permutations="enumerate")
    exact_wr, exact_wor = stacked(wr_exact.mean, wr_exact.cov), stacked(wor_exact.mean, wor_exact.cov)
    wr, wr_se = moments_with_se(result["wr"])
    wor, wor_se = moments_with_se(result["wor"])
    assert_within_se(wr, exact_wr, wr_se, what="DDP SGLD loop vs exact wr moments")
    assert_within_se(wor, exact_wor, wor_se, what="DDP SGWORLD loop vs exact wor epoch moments")
    assert np.max(np.abs(exact_wr - posterior) / wr_se) > 2 * Z_TOL
    assert np.max(np.abs(exact_wor - posterior) / wor_se) > 2 * Z_TOL
    assert np.array_equal(ranks[1]["moments"]["wor"], result["wor"])


def test_different_seeds_on_the_ranks_are_named(ranks):
    for r in range(WORLD):
        error = ranks[r]["seed_mismatch"]["error"]
        assert error is not None and "\n" not in error
        assert "differs across ranks" in error and "rank 0" in error and "rank 1" in error and "seed" in error


# ------------------------------------------------------------------------------ chains over processes

def same_trace(draws, steps, meta, single: Trace, ignore=()):
    assert np.array_equal(draws, single.draws), "draws differ"
    assert np.array_equal(steps, single.steps)
    keep = lambda m: {k: v for k, v in m.items() if k not in ignore}
    assert keep(meta) == keep(single.meta)


def test_two_ranks_give_the_draws_of_one_process(ranks, tmp_path):
    for name, kwargs in jobs.CHAIN_RUNS:
        single = jobs.chain_run(name, kwargs, tmp_path)
        ignore = ("fingerprint", "draws_sha256") if name.endswith("_out") else ()
        for r in range(WORLD):
            same_trace(*ranks[r]["chains"][name], single, ignore)
        if name == "mala":   # per-chain statistics are merged in chain order
            assert len(ranks[0]["chains"][name][2]["acceptance_rate"]) == kwargs["chains"]
    same_trace(*ranks[0]["chains"]["sgld_out_again"], jobs.chain_run("sgld_out", dict(jobs.CHAIN_RUNS)["sgld_out"],
                                                                     tmp_path), ("fingerprint", "draws_sha256"))
    folder = ranks["out"] / "sgld_out"
    assert sorted(p.name for p in folder.iterdir()) == ["rank-0", "rank-1"]
    merged = Trace.load(folder)
    single = Trace.load(tmp_path / "sgld_out")
    same_trace(merged.draws, merged.steps, merged.meta, single, ("fingerprint", "draws_sha256"))


def test_an_interrupted_split_run_resumes_per_rank(ranks, tmp_path):
    assert [ranks[r]["resume"]["first"] for r in range(WORLD)] == ["KeyboardInterrupt", "RankFailedError"]
    problem = jobs.blr_problem()
    single = sample(problem, jobs.sgld(problem, 2e-4), seed=jobs.shifted_seed(8), **jobs.RESUMED)
    for r in range(WORLD):
        same_trace(*ranks[r]["resume"]["trace"], single, ("fingerprint", "draws_sha256"))


def test_a_rank_that_dies_is_named_by_the_others(ranks):
    error = ranks[0]["dead_rank"]["error"]
    assert error is not None and "\n" not in error
    assert error.startswith("rank 1 stopped before the end of sample()") and "rank 0 stops too" in error


def test_torchrun_study_writes_the_metrics_of_one_process(tmp_path):
    """The posterior study under torchrun with 2 processes: the same metrics.json as one process (run time
    aside); only rank 0 writes to --out."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    sgworld = shutil.which("sgworld", path=env["PATH"])
    one = subprocess.Popen([sgworld, "run", "posterior", "--quick", "-q", "--out", "A"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    two = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", sgworld, "run", "posterior",
                          "--quick", "-q", "--out", "B"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert one.wait(timeout=300) == 0, one.stdout.read()[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "AB")
    a.pop("runtime_s"), b.pop("runtime_s")
    assert a == b
    assert sorted(p.name for p in (tmp_path / "B").iterdir()) == sorted(p.name for p in (tmp_path / "A").iterdir())


# ---------------------------------------------------------------------------- one process: bad input

def test_forgotten_set_epoch_is_an_error():
    order = DistributedWithoutReplacementSampler(10, 4, seed=1, num_replicas=2, rank=0)
    first = list(order)
    order.set_epoch(1)
    assert list(order) != first
    with pytest.raises(RuntimeError, match=r"epoch 1 was already iterated: call set_epoch\(epoch\)"):
        list(order)


@pytest.mark.parametrize("cls", [DistributedWithReplacementSampler, DistributedWithoutReplacementSampler])
def test_world_size_must_divide_the_batch(cls):
    with pytest.raises(ValueError, match=r"batch_size = 4 is not divisible by the world size 3.*multiple of 3"):
        cls(12, 4, num_replicas=3, rank=0)
    with pytest.raises(ValueError, match=r"rank = 2 is out of range for 2 replicas"):
        cls(12, 4, num_replicas=2, rank=2)
    assert local_batch_size(6, 3) == 2


def test_chain_groups_split_into_whole_contiguous_shares():
    for groups in range(1, 9):
        for world in range(1, 5):
            shares = [split_groups(groups, world, r) for r in range(world)]
            assert [g for s in shares for g in s] == list(range(groups))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_merging_rank_parts_checks_that_they_belong_together(tmp_path, blr_problem):
    meta = {"chains": 4, "sampler": "sgld", "acceptance_rate": None}
    part = lambda r, value, **kw: Trace(np.full((2, 3, 1), value), np.arange(1, 4),
                                        {**meta, "acceptance_rate": [r, r], "rank": r, "world_size": 2,
                                         "chain_groups": [r, r + 1], **kw})
    merged = merge_chains([part(0, 0.0), part(1, 1.0)])
    assert merged.draws[:, 0, 0].tolist() == [0, 0, 1, 1] and merged.meta["acceptance_rate"] == [0, 0, 1, 1]
    assert not {"rank", "world_size", "chain_groups"} & set(merged.meta)
    with pytest.raises(TraceFileError, match=r"chain groups \[\[0, 1\], \[1, 2\], \[1, 2\]\], which do not follow"):
        merge_chains([part(0, 0.0), part(1, 1.0), part(1, 1.0)])
    with pytest.raises(TraceFileError, match=r"part 1 differs in sampler"):
        merge_chains([part(0, 0.0), part(1, 1.0, sampler="sgworld")])
    with pytest.raises(TraceFileError, match=r"the parts hold 2 chains, the run has 4; a rank folder is missing"):
        merge_chains([part(0, 0.0)])
    (tmp_path / "split" / "rank-0").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"holds a run split over 1 processes \(rank-\* folders\); resume it under "
                                         r"torchrun"):
        sample(blr_problem, "sgld", lr=1e-3, batch_size=4, num_draws=2, out=tmp_path / "split", progress=False)


def test_the_global_wr_stream_is_that_of_the_single_process_sampler():
    # long enough (and b large enough) for the block schedule of the index stream to matter
    n, b, steps = 200, 32, 3000
    parts = [list(DistributedWithReplacementSampler(n, b, steps, seed=5, num_replicas=2, rank=r)) for r in range(2)]
    assert [x + y for x, y in zip(*parts)] == list(WithReplacementSampler(n, b, steps, seed=5))
