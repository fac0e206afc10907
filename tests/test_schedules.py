"""Step-size and temperature schedules (sgworld.schedules) and the kernels that follow them."""

import json
import math

import numpy as np
import pytest
import torch

from sgworld import BayesianLinearRegression, sample
from sgworld.batching import IndexStream
from sgworld.rng import INDEX_STREAM, NOISE_STREAM, ChainRandom
from sgworld.samplers import csgld, sgld
from sgworld.schedules import Constant, Cyclical, CyclicalPhase, PolynomialDecay, as_schedule


def blr():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 2))
    y = X @ [1.0, -0.5] + 0.3 * rng.normal(size=30)
    return BayesianLinearRegression(torch.tensor(X), torch.tensor(y), 0.3, 1.0)


def test_values_follow_the_formulas_at_ints_and_tensors():
    steps = torch.arange(0, 1000, 7)
    decay = PolynomialDecay(0.1, 10.0, 0.55)
    cyc = Cyclical(0.2, total_steps=1000, cycles=3)
    phase = CyclicalPhase(1.5, total_steps=1000, cycles=3, exploration=0.4)
    C = math.ceil(1000 / 3)
    assert cyc.cycle_length == phase.cycle_length == C
    for n in steps.tolist():
        assert decay(n) == pytest.approx(0.1 * (10 + n) ** -0.55, rel=1e-15)
        assert cyc(n) == pytest.approx(0.1 * (math.cos(math.pi * (n % C) / C) + 1), rel=1e-14)
        assert phase(n) == (1.5 if (n % C) / C >= 0.4 else 0.0)
    for schedule in (decay, cyc, phase, Constant(0.3)):
        at_tensor = schedule(steps).numpy()
        np.testing.assert_allclose(at_tensor, [schedule(n) for n in steps.tolist()], rtol=1e-14, atol=0)
    assert cyc(0) == cyc.maximum == 0.2 and cyc(C) == 0.2 and cyc(C // 2) == pytest.approx(0.1, rel=1e-2)
    assert decay.maximum == decay(0)
    for schedule in (decay, cyc, phase, Constant(0.3)):
        assert json.loads(json.dumps(schedule.describe())) == schedule.describe()


def test_scheduled_kernel_applies_lr_n_and_T_n_at_step_n():
    """sgld with lr = PolynomialDecay and T = CyclicalPhase against the update rule written out by hand."""
    problem, K, steps = blr(), 3, 60
    lr_s, t_s = PolynomialDecay(2e-3, 5.0, 0.7), CyclicalPhase(1.0, total_steps=steps, cycles=4, exploration=0.5)
    kernel = sgld(problem, lr_s, t_s)
    indices = IndexStream("wr", problem.n, 5, K, ChainRandom.from_seed(1, INDEX_STREAM, K))
    noise, check_noise = (ChainRandom.from_seed(1, NOISE_STREAM, K) for _ in range(2))
    state = kernel.init(torch.zeros(K, 2, dtype=torch.float64))
    w = state.position.clone()
    for n in range(steps):
        idx = next(indices)
        state, _ = kernel.step(state, idx, noise)
        xi = check_noise.normal(w)   # drawn at every step, also at T_n = 0
        w = w - lr_s(n) * problem.batch_grad(w, idx) + math.sqrt(2 * lr_s(n) * t_s(n)) * xi
        torch.testing.assert_close(state.position, w, rtol=0, atol=1e-13)
        assert state.step.tolist() == [n + 1] * K


def test_cyclical_sgld_explores_without_noise_then_samples():
    problem, K = blr(), 2
    kernel = csgld(problem, 1e-3, 1.0, total_steps=40, cycles=2, exploration=0.5)
    state = kernel.init(torch.zeros(K, 2, dtype=torch.float64))
    noise = ChainRandom.from_seed(0, NOISE_STREAM, K)
    lr = Cyclical(1e-3, 40, 2)
    moved_by_noise = []
    for n in range(40):
        before = state.position
        state, _ = kernel.step(state, None, noise)
        descent = before - lr(n) * problem.grad(before)
        moved_by_noise.append(not torch.allclose(state.position, descent, rtol=0, atol=1e-15))
    assert moved_by_noise == [(n % 20) >= 10 for n in range(40)]   # SGD in the first half of each cycle
    assert kernel.lr == 1e-3 and kernel.settings["lr_schedule"]["kind"] == "cyclical"


def test_schedules_are_recorded_in_the_trace_metadata(tmp_path):
    problem = blr()
    trace = sample(problem, "sgld", lr=PolynomialDecay(1e-3, 10.0, 0.6), batch_size=5, num_draws=5,
                   progress=False, out=tmp_path / "t")
    assert trace.meta["lr"] == pytest.approx(1e-3 * 10**-0.6)
    assert trace.meta["kernel_options"]["lr_schedule"] == {"kind": "polynomial_decay", "a": 1e-3, "b": 10.0,
                                                          "gamma": 0.6}
    again = sample(problem, "sgld", lr=PolynomialDecay(1e-3, 10.0, 0.6), batch_size=5, num_draws=5,
                   progress=False, out=tmp_path / "t")   # the finished run, recognised by its metadata
    assert np.array_equal(again.draws, trace.draws)
    momentum = sample(problem, "sghmc", lr=Cyclical(1e-3, 50, 2), batch_size=5, num_draws=5, thin=10,
                      progress=False)
    assert momentum.meta["kernel_options"]["lr_schedule"]["kind"] == "cyclical"


@pytest.mark.parametrize("make, message", [
    (lambda: PolynomialDecay(0.1, 1.0, 0.5),
     r"gamma of PolynomialDecay = 0\.5 is out of range; allowed: 0\.5 < gamma <= 1"),
    (lambda: PolynomialDecay(-0.1), r"a of PolynomialDecay .* must be a finite number > 0, got -0\.1"),
    (lambda: PolynomialDecay(0.1, 0.0), r"b of PolynomialDecay .* must be a finite number > 0, got 0\.0"),
    (lambda: Cyclical(0.0, 100, 2), r"lr_0 of the cyclical schedule must be a finite number > 0"),
    (lambda: Cyclical(0.1, 10, 20), r"cycles = 20 is out of range; allowed: 1 <= cycles <= 10"),
    (lambda: CyclicalPhase(1.0, 100, 2, 1.0), r"exploration = 1\.0 is out of range; allowed: 0 <= exploration < 1"),
    (lambda: as_schedule("lr", CyclicalPhase(0.0, 100, 2, 0.5)), r"lr schedule .* is never positive"),
    (lambda: as_schedule("lr", "fast"), r"lr must be a number or a schedule"),
])
def test_bad_schedules_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()
