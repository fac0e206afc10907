"""The nonequilibrium pipeline (sgworld.nonequilibrium): its estimators, its simulation against exact
discrete-time answers on a quadratic problem, its streamed measurements against the in-memory ones on
the same trajectory, the top-k path, its records (metrics, checks, JSON, figures) and the CLI study."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import Z_TOL, assert_within_se, shifted_seed
from sgworld import BayesianLinearRegression, Trace
from sgworld import nonequilibrium as neq
from sgworld.cli import main
from sgworld.theory import epoch_stationary_moments, stepwise_stationary_moments
from sgworld.thermo import entropy_production_steps, integral_fluctuation_theorem, window_sums


def blr3(n: int = 60, seed: int = 5) -> BayesianLinearRegression:
    """Linear regression with three correlated features: H and S do not commute (circulation)."""
    rng = np.random.default_rng(shifted_seed(seed))
    X = rng.normal(size=(n, 3)) @ np.array([[1.0, 0.5, 0.2], [0.0, 0.8, 0.3], [0.0, 0.0, 0.6]])
    y = X @ np.array([0.5, -1.0, 0.3]) + 0.3 * rng.normal(size=n)
    return BayesianLinearRegression(torch.tensor(X), torch.tensor(y), noise_std=0.3, prior_std=1.0)


def setting(problem, lr_m_hmax: float = 0.08, b: int = 6):
    A, g = problem.quadratic_terms()
    H = A.mean(0)
    lr = lr_m_hmax / ((problem.n // b) * np.linalg.eigvalsh(H)[-1])
    return A, g, H, lr, b


def test_relaxation_corrected_moments_recover_a_stationary_state_far_from_the_start():
    """Two AR(1) modes (phi = 0.99, 0.9) started at the wrong mean and a quarter of the stationary
    variance; after 30 steps the slow mode has relaxed 45% of the way, yet the estimator recovers
    the stationary moments. 5 compared numbers at Z_TOL (SE from 32 groups, t with 31 degrees of
    freedom: tail 2e-5 at 5 SE): false-failure rate below 1e-4."""
    rng = np.random.default_rng(shifted_seed(8))
    lr, h = 0.01, np.array([1.0, 10.0])
    phi, q = 1 - lr * h, np.array([2e-3, 5e-3])
    stationary_var, centre = q / (1 - phi**2), np.array([0.5, -0.2])
    chains, times = 4000, np.arange(0, 31, 5)
    x = centre + 3 * np.sqrt(stationary_var) + 0.5 * np.sqrt(stationary_var) * rng.standard_normal((chains, 2))
    snaps = [x]
    for _ in range(times[-1]):
        x = centre + phi * (x - centre) + np.sqrt(q) * rng.standard_normal((chains, 2))
        snaps.append(x)
    snapshots = np.stack(snaps, 1)[:, times]
    est = neq.relaxation_corrected_moments(snapshots, times.astype(float), np.diag(h), np.log(phi), centre,
                                           neq.chain_groups(chains, 32))
    assert_within_se(est.mean, centre, est.mean_se, what="mean")
    iu = np.triu_indices(2)
    assert_within_se(est.cov[iu], np.diag(stationary_var)[iu], est.cov_se[iu], what="covariance")
    np.testing.assert_allclose(est.relaxed_fraction, 1 - phi ** (2 * times[-1]))
    # power: the uncorrected late-snapshot variance of the slow mode is far from the answer
    assert abs(est.cov_uncorrected_eig[0] / stationary_var[0] - 1) > 0.2


def test_wr_simulation_keeps_the_exact_stationary_covariance_and_circulation():
    """SGD (wr) on a quadratic problem through the pipeline against the exact discrete-time stationary
    covariance Sigma and circulation Q = (lr/2)(H Sigma - Sigma H) (tests/theory checks the Lyapunov
    theory itself). 6 + 3 numbers at Z_TOL with SEs from 64 groups (t with 63 degrees of freedom: tail
    5e-6 at 5 SE): false-failure rate below 1e-4. Power: the measured A rejects A = 0 (no circulation),
    and the covariance rejects a stationary law 1.5 times wider than the one kept."""
    problem = blr3()
    A, g, H, lr, b = setting(problem)
    exact = stepwise_stationary_moments(A, g, lr, 0.0, b, scheme="wr")
    r = neq.analyze(problem, lr=lr, batch_size=b, schemes=("wr",), w_star=np.linalg.solve(H, g.mean(0)), chains=1024,
                    steps=1200, groups=64, bootstrap=50, model_free_chains=256, ft_steps=120,
                    seed=shifted_seed(3), progress=False)
    assert r.path == "dense" and r.wor is None and r.minimum.grad_norm < 1e-8
    mo = r.wr.moments
    iu, iu1 = np.triu_indices(3), np.triu_indices(3, 1)
    assert_within_se(mo.cov[iu], exact.cov[iu], mo.cov_se[iu], what="wr covariance")
    Q = 0.5 * lr * (H @ exact.cov - exact.cov @ H)
    assert_within_se(r.wr.A[iu1], Q[iu1], r.wr.A_se[iu1], what="areal velocity")
    assert np.max(np.abs(r.wr.A[iu1] / r.wr.A_se[iu1])) > Z_TOL
    assert np.max(np.abs((mo.cov - 1.5 * exact.cov) / mo.cov_se)[iu]) > Z_TOL
    # the Lyapunov theory is within O(lr h_max) of the exact covariance
    np.testing.assert_allclose(r.wr_theory.state.Sigma, exact.cov, rtol=0.02, atol=0.02 * np.abs(exact.cov).max())


def test_wor_simulation_keeps_the_exact_epoch_mean_and_covariance():
    """SGD (wor) through the pipeline against the exact permutation-averaged epoch moments (over all
    permutations of a small problem, N = 9, b = 3). Mean and covariance: 3 + 6 numbers at Z_TOL with
    SEs from 64 groups: false-failure rate below 1e-4. Power: the mean rejects w* (the WOR shift
    towards argmin L_eff is resolved)."""
    problem = blr3(n=9, seed=6)
    A, g, H, lr, b = setting(problem, lr_m_hmax=0.1, b=3)
    exact = epoch_stationary_moments(A, g, lr, 0.0, b)
    w_star = np.linalg.solve(H, g.mean(0))
    r = neq.analyze(problem, lr=lr, batch_size=b, schemes=("wor",), w_star=w_star, chains=1024, steps=600,
                    segment=60, groups=64, wor_epochs=400, seed=shifted_seed(4), progress=False)
    mo = r.wor.moments
    assert_within_se(mo.mean, exact.mean, mo.mean_se, what="wor mean")
    iu = np.triu_indices(3)
    assert_within_se(mo.cov[iu], exact.cov[iu], mo.cov_se[iu], what="wor covariance")
    assert np.max(np.abs((mo.mean - w_star) / mo.mean_se)) > Z_TOL


def test_streamed_measurements_equal_the_in_memory_ones_on_the_same_trajectory(tmp_path):
    """The trace sample() streamed to out= is read back in chunks; the entropy-production rate, the
    integral FT and the areal velocity equal the in-memory functions on the whole path (no statistics:
    the same numbers up to summation order)."""
    problem = blr3()
    _, g, H, lr, b = setting(problem)
    s = neq.Settings(lr=lr, batch_size=b, schemes=("wr",), chains=64, steps=240, segment=60, groups=4, ft_steps=120,
                     bootstrap=50, model_free_chains=64, seed=7)
    r = neq.run_analysis(problem, s, w_star=np.linalg.solve(H, g.mean(0)), out=tmp_path, progress=False)
    draws = Trace.load(tmp_path / "sgd-wr").draws
    state = r.wr_theory.state
    init = neq.gaussian_draws(state.mean, state.Sigma, s.chains, np.random.default_rng(np.random.SeedSequence([7, 0])))
    path = np.concatenate([init[:, None], draws], axis=1)
    sigma = entropy_production_steps(path, state)
    np.testing.assert_allclose(r.wr.ep_rate, sigma.mean(), rtol=1e-10)
    ift = integral_fluctuation_theorem(window_sums(sigma[:, :120], 10), n_boot=50, seed=7 + 10)
    assert r.wr.ift[10].mean_exp == pytest.approx(ift.mean_exp, rel=1e-12)
    assert r.wr.ift[10].ratio_ci == pytest.approx(ift.ratio_ci, rel=1e-9)
    dw = path - state.mean
    lagged = np.einsum("cni,cnj->ij", dw[:, :-1], dw[:, 1:]) / (s.chains * s.steps)
    np.testing.assert_allclose(r.wr.A, 0.5 * (lagged - lagged.T), rtol=1e-9, atol=1e-9 * np.abs(lagged).max())
    np.testing.assert_allclose(r.wr.final, draws[:, -1])


def test_topk_path_is_taken_above_dense_max_p_and_said_so():
    """p = 3 above dense_max_p = 2: the wr analysis runs in the top-2 Hessian eigenspace, the result and
    the checks say so, and the subspace covariance keeps the exact one projected (3 numbers at Z_TOL,
    64 groups: false-failure rate below 2e-5)."""
    problem = blr3()
    A, g, H, lr, b = setting(problem)
    exact = stepwise_stationary_moments(A, g, lr, 0.0, b, scheme="wr")
    r = neq.analyze(problem, lr=lr, batch_size=b, schemes=("wr",), w_star=np.linalg.solve(H, g.mean(0)), chains=1024,
                    steps=600, groups=64, bootstrap=50, model_free_chains=256, ft_steps=120, dense_max_p=2, topk=2,
                    seed=shifted_seed(5), progress=False)
    assert r.path == "topk" and r.basis.shape == (3, 2) and "top-k" in r.notes[0]
    metrics = r.metrics()
    assert metrics["analysis"]["path"] == "topk" and metrics["analysis"]["k"] == 2
    assert np.asarray(metrics["wr"]["sigma_theory"]).shape == (2, 2)
    assert r.checks()[0].name.startswith("Theory path: top-k")
    V = r.basis
    iu = np.triu_indices(2)
    assert_within_se(r.wr.moments.cov[iu], (V.T @ exact.cov @ V)[iu], r.wr.moments.cov_se[iu], what="subspace cov")


def test_p_above_dense_max_p_without_topk_is_refused_before_any_work():
    problem = blr3()
    with pytest.raises(ValueError, match=r"p = 3 is too large for the dense .* enable the top-k path"):
        neq.analyze(problem, lr=1e-5, batch_size=6, dense_max_p=2, topk=None, progress=False)


def test_result_records_checks_json_and_figures(tmp_path):
    """One small run of both schemes: every metrics key the studies report, a check per headline number,
    JSON that round-trips, and the five figures."""
    problem = blr3()
    _, g, H, lr, b = setting(problem)
    r = neq.analyze(problem, lr=lr, batch_size=b, w_star=np.linalg.solve(H, g.mean(0)), chains=128, steps=240,
                    segment=60, groups=8, bootstrap=50, model_free_chains=128, ft_steps=240, wor_epochs=200,
                    progress=False)
    metrics = json.loads(r.to_json(tmp_path / "metrics.json"))
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    for key in ("w_star", "hessian_eigenvalues", "newton", "analysis", "wr", "wor", "simulation"):
        assert key in metrics
    for key in ("sigma_theory_diag", "sigma_sim_diag", "Q_theory", "A_sim", "ep_rate_theory", "ep_rate_sim",
                "ep_rate_model_free", "ift_mean_exp", "ift_ci", "dft_slope", "dft_slope_ci", "circulation"):
        assert key in metrics["wr"], key
    for key in ("w_eff_theory", "mean_sim", "sigma_theory_diag", "sigma_sim_diag", "lr_M_hmax", "circulation"):
        assert key in metrics["wor"], key
    names = [c.name for c in r.checks()]
    assert any(n.startswith("WR: Sigma") for n in names) and any(n.startswith("WOR: stationary mean") for n in names)
    assert sum(n.startswith("IFT") for n in names) == 4
    written = r.write_figures(tmp_path)
    assert set(written) <= set(__import__("sgworld.plots", fromlist=["x"]).NONEQUILIBRIUM_FIGURES)
    assert {"sigma_theory_vs_sim.png", "circulation_Q_vs_A.png", "probability_current.png",
            "stationary_clouds.png"} <= set(written)
    for name in written:
        assert (tmp_path / name).stat().st_size > 10_000, name


def test_cli_runs_a_model_file_resumes_and_records_the_resolved_lr_and_batch_size(tmp_path, monkeypatch):
    """`sgworld run nonequilibrium --model FILE.py`: config.json holds the resolved lr and batch size, and a
    run stopped after its wr chains resumes from their trace folder to the same numbers."""
    tiny = ["--model", "examples/regression_model.py", "-q", "--set", "chains=64", "--set", "steps=240",
            "--set", "groups=4", "--set", "bootstrap=20", "--set", "model_free_chains=64", "--set", "wor_epochs=100",
            "--set", "ft_steps=240"]
    monkeypatch.setattr(neq.NonequilibriumResult, "write_figures", lambda self, *a: [])  # tested above
    out = tmp_path / "out"
    assert main(["run", "nonequilibrium", "--out", str(out), *tiny]) == 0
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["batch_size"] == 10 and config["lr"] == pytest.approx(metrics["lr"])
    assert metrics["wor"]["lr_M_hmax"] == pytest.approx(0.05, rel=0.05)  # lr = lr_M_hmax / (M h_max) at w*
    assert metrics["problem"]["p"] == 10 and not (out / "checkpoints").exists()

    simulate = neq._simulate

    def stop_at_wor(problem, settings, scheme, *args, **kwargs):
        if scheme == "wor":
            raise KeyboardInterrupt
        return simulate(problem, settings, scheme, *args, **kwargs)

    stopped = tmp_path / "stopped"
    monkeypatch.setattr(neq, "_simulate", stop_at_wor)
    assert main(["run", "nonequilibrium", "--out", str(stopped), "--checkpoint-every", "0", *tiny]) == 130
    assert (stopped / "checkpoints" / "sgd-wr" / "meta.json").is_file()
    monkeypatch.setattr(neq, "_simulate", simulate)
    assert main(["resume", str(stopped), "-q"]) == 0
    resumed = json.loads((stopped / "metrics.json").read_text())
    for key in ("w_star", "lr", "wr", "wor"):
        assert resumed[key] == metrics[key], key


def test_sample_records_subspace_coordinates_of_the_same_chains(tmp_path):
    """sample(record_basis=V) moves the chains exactly as without it and records w @ V (the top-k path's
    traces); a streamed folder remembers V, so a call with another basis is refused."""
    from sgworld import sample

    problem = blr3()
    V = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 2)))[0]
    kw = dict(lr=1e-4, batch_size=6, chains=4, num_draws=20, seed=3, progress=False)
    full = sample(problem, "sgd", **kw).draws
    sub = sample(problem, "sgd", record_basis=V, **kw)
    assert sub.draws.shape == (4, 20, 2)
    np.testing.assert_allclose(sub.draws, full @ V, rtol=1e-12, atol=1e-14)
    sample(problem, "sgd", record_basis=V, out=tmp_path / "t", **kw)
    with pytest.raises(ValueError, match="holds a different run"):
        sample(problem, "sgd", record_basis=V[:, ::-1].copy(), out=tmp_path / "t", **kw)


def test_group_z_tolerance_keeps_the_stated_false_failure_rate():
    from scipy import stats

    from sgworld.nonequilibrium import Z_CHECK, group_z_tolerance
    tail = 2 * stats.norm.sf(Z_CHECK)
    for groups in (8, 16, 32):
        assert 2 * stats.t.sf(group_z_tolerance(groups), groups - 1) == pytest.approx(tail, rel=1e-6)
    assert group_z_tolerance(8) > group_z_tolerance(32) > Z_CHECK
    assert group_z_tolerance(None) == Z_CHECK


def test_relaxed_modes_check_compares_only_modes_that_forgot_their_start():
    """Modes below RELAXED_MODE are left out (a wrong variance there does not fail the check); a relaxed mode
    5.5 SE off fails it; with no relaxed mode the check says "not resolved" and neither passes nor fails."""
    scheme = {"relaxed_fraction": [0.2, 0.96, 0.999], "sigma_sim_eig": [9.0, 1.0, 2.0],
              "sigma_theory_eig": [1.0, 1.0, 2.0], "sigma_z_eig": [40.0, 0.3, -1.2]}
    ok = neq.relaxed_modes_check("WR", scheme, 5.0)
    assert ok.ok and ok.value == pytest.approx(1.2) and "2 of 3 modes" in ok.note
    scheme["sigma_z_eig"] = [40.0, 5.5, -1.2]
    assert neq.relaxed_modes_check("WR", scheme, 5.0).ok is False
    scheme["relaxed_fraction"] = [0.2, 0.5, 0.9]
    unresolved = neq.relaxed_modes_check("WR", scheme, 5.0)
    assert unresolved.ok is None and unresolved.note.startswith("not resolved")
