"""Compiled blocks of steps through the kernel's ``block`` function (``sample(compile=True)``, and by
default for long runs of small chains).

The block applies the same gradient and update rule as the kernel's step to the same indices and noise;
these tests check that it does (exactly), that the driver records, detects divergence and resumes the
same way on the block path, when the default chooses it, what happens when compiling fails, and that
the sampled moments match the exact discrete-time ones.
"""

import shutil

import numpy as np
import pytest
import torch

import sgworld.run
from sgworld import DivergenceError, Problem, sample
from sgworld.samplers import sgld, sgworld as sgworld_kernel
from sgworld.samplers.base import langevin_update
from sgworld.theory.exact import stepwise_stationary_moments

from conftest import Z_TOL, chain_moments, shifted_seed


@pytest.fixture
def eager_compile(monkeypatch):
    """The block path without the compiler (the driver logic is the same; compiling takes minutes)."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)


@pytest.mark.parametrize("make", [sgld, sgworld_kernel])
def test_block_equals_steps_with_the_same_noise(blr_problem, make):
    kernel = make(blr_problem, 1e-2, 1.0)
    gen = torch.Generator().manual_seed(shifted_seed(0))
    position = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    indices = torch.randint(blr_problem.n, (5, 3, 4), generator=gen)
    noise = torch.randn(5, 3, 2, generator=gen, dtype=torch.float64)
    block = kernel.block(position, indices, noise)
    w = position
    for s in range(5):
        w = langevin_update(w, blr_problem.batch_grad(w, indices[s]), 1e-2, 1.0, None, noise[s])
        assert torch.equal(block[s], w)


def test_block_path_matches_exact_moments(blr_problem, eager_compile):
    """SGLD on the block path against the exact stationary moments of the wr recursion (|z| < Z_TOL
    per number, 5 numbers: false-failure rate about 3e-6)."""
    A, g = blr_problem.quadratic_terms()
    h_max = np.linalg.eigvalsh(A.mean(0))[-1]
    lr = 0.3 / h_max
    exact = stepwise_stationary_moments(A, g, lr, 1.0, 4, scheme="wr")
    trace = sample(blr_problem, "sgld", lr=lr, batch_size=4, chains=1000, num_draws=20, burn_in=400, thin=10,
                   init=exact.mean, seed=shifted_seed(2), progress=False, compile=True)
    assert trace.meta["compiled_blocks"] == sgworld.run.FUSED_STEPS
    assert trace.steps.tolist() == list(range(410, 601, 10))
    mean, mean_se, cov, cov_se = chain_moments(trace.draws)
    assert np.all(np.abs(mean - exact.mean) < Z_TOL * mean_se)
    iu = np.triu_indices(2)
    assert np.all(np.abs(cov - exact.cov)[iu] < Z_TOL * cov_se[iu])


def test_block_path_reports_divergence(blr_problem, eager_compile):
    init = torch.zeros(3, 2, dtype=torch.float64)
    init[2] = 1e3
    plain = Problem(blr_problem._regression_potential, blr_problem.data, blr_problem.dim)  # knows no h_max
    with pytest.raises(DivergenceError) as err:
        sample(plain, "sgld", lr=5.0, batch_size=4, chains=3, init=init, num_draws=500, progress=False,
               compile=True)
    assert 2 in err.value.chains


def test_block_path_resumes_bit_for_bit(tmp_path, blr_problem, eager_compile, monkeypatch):
    kwargs = dict(method="sgworld", lr=1e-3, batch_size=4, chains=4, num_draws=50, thin=20, seed=shifted_seed(5),
                  progress=False, compile=True)
    reference = sample(blr_problem, **kwargs)
    # interrupt after the first checkpoint: make the divergence check raise once a checkpoint exists
    calls = {"n": 0}
    original = sgworld.run.save_checkpoint

    def save_then_stop(folder, payload):
        original(folder, payload)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(sgworld.run, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        sample(blr_problem, out=tmp_path / "t", checkpoint_every=0.0, **kwargs)
    monkeypatch.setattr(sgworld.run, "save_checkpoint", original)
    resumed = sample(blr_problem, out=tmp_path / "t", **kwargs)
    assert np.array_equal(resumed.draws, reference.draws)
    shutil.rmtree(tmp_path / "t")


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="no C++ compiler")
def test_compiled_run_agrees_with_steps(blr_problem):
    """The real compiler: the same draws as single steps up to rounding (float64)."""
    h_max = np.linalg.eigvalsh(blr_problem.hessian().numpy())[-1]
    kw = dict(lr=0.3 / h_max, batch_size=4, chains=4, num_draws=5, thin=2 * sgworld.run.FUSED_STEPS,
              seed=shifted_seed(1), progress=False)
    compiled = sample(blr_problem, "sgld", compile=True, **kw)
    assert compiled.meta["compiled_blocks"] == sgworld.run.FUSED_STEPS
    np.testing.assert_allclose(compiled.draws, sample(blr_problem, "sgld", compile=False, **kw).draws,
                               rtol=1e-12, atol=1e-12)

@pytest.mark.parametrize("method, scheme, chains", [("sgld", "wr", 3), ("sgld", "iid", 70), ("sgworld", "wor", 70)])
def test_block_path_draws_what_the_step_path_draws(blr_problem, eager_compile, method, scheme, chains):
    """Blocks take the steps' indices and noise in the steps' order: uncompiled, the traces are identical."""
    kw = dict(lr=1e-3, batch_size=4, scheme=scheme, chains=chains, num_draws=7, burn_in=5, thin=9,
              seed=shifted_seed(6), progress=False)
    blocks = sample(blr_problem, method, compile=True, **kw)
    steps = sample(blr_problem, method, compile=False, **kw)
    assert "compiled_blocks" in blocks.meta and "compiled_blocks" not in steps.meta
    np.testing.assert_array_equal(blocks.draws, steps.draws)


def test_default_compiles_long_runs_of_small_chains(blr_problem, eager_compile, monkeypatch):
    monkeypatch.setattr(sgworld.run, "AUTO_COMPILE_STEPS", 64)
    kw = dict(lr=1e-3, batch_size=4, chains=4, progress=False)
    assert "compiled_blocks" in sample(blr_problem, "sgld", num_draws=64, **kw).meta        # 64 steps
    assert "compiled_blocks" not in sample(blr_problem, "sgld", num_draws=63, **kw).meta    # shorter
    assert "compiled_blocks" not in sample(blr_problem, "sghmc", num_draws=64, **kw).meta   # no block
    monkeypatch.setattr(sgworld.run, "AUTO_COMPILE_NUMBERS", 8)                              # K p = 8
    assert "compiled_blocks" in sample(blr_problem, "sgld", num_draws=64, **kw).meta
    monkeypatch.setattr(sgworld.run, "AUTO_COMPILE_NUMBERS", 7)                              # K p = 8
    assert "compiled_blocks" not in sample(blr_problem, "sgld", num_draws=64, **kw).meta


def test_the_problems_compile_options_reach_the_compiler(blr_problem, monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: seen.append(kw.get("options")) or fn)
    monkeypatch.setattr(blr_problem, "compile_options", {"cpp.simdlen": 1}, raising=False)
    sample(blr_problem, "sgld", lr=1e-3, batch_size=4, chains=2, num_draws=16, compile=True, progress=False)
    assert seen == [{**sgworld.run._INDUCTOR_OPTIONS, "cpp.simdlen": 1}]


def test_a_failed_compilation_falls_back_or_raises(blr_problem, monkeypatch):
    def broken(fn, **kw):
        def run(*args):
            raise RuntimeError("no C++ compiler found")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(sgworld.run, "AUTO_COMPILE_STEPS", 64)
    kw = dict(lr=1e-3, batch_size=4, chains=4, num_draws=80, seed=shifted_seed(7), progress=False)
    with pytest.warns(RuntimeWarning, match="compiling the sampler's steps failed"):
        fallback = sample(blr_problem, "sgld", **kw)
    np.testing.assert_array_equal(fallback.draws, sample(blr_problem, "sgld", compile=False, **kw).draws)
    with pytest.raises(RuntimeError, match="install a C\\+\\+ compiler .* or pass compile=False"):
        sample(blr_problem, "sgld", compile=True, **kw)
