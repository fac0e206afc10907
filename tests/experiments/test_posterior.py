"""The posterior study end to end on its quick preset."""

import json

import numpy as np
import pytest

from sgworld.cli import main
from sgworld.experiments import posterior
from sgworld.experiments.common import resolve_config

from conftest import Z_TOL, shifted_seed


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("posterior")
    assert main(["run", "posterior", "--quick", "--out", str(out), "-q", "--seed", str(shifted_seed(3))]) == 0
    return out


def test_writes_every_file_and_setting(quick_run):
    names = {p.name for p in quick_run.iterdir()}
    assert {"config.json", "data.npz", "metrics.json", "kl_vs_lr.png", "run.log"} <= names
    config = json.loads((quick_run / "config.json").read_text())
    for key in ("n", "d", "batch_size", "noise_std", "prior_std", "temperature", "lrs_resolved", "chains",
                "schedule", "seed", "start_spread", "sgworld_version"):
        assert key in config
    assert config["seed"] == shifted_seed(3)
    assert all({"burn_in", "steps", "sampled", "relaxation_steps"} <= set(s) for s in config["schedule"])
    data = np.load(quick_run / "data.npz")
    assert data["X"].shape == (config["n"], config["d"]) and data["y"].shape == (config["n"],)


def test_metrics_structure_and_agreement_with_exact_moments(quick_run):
    m = json.loads((quick_run / "metrics.json").read_text())
    d = len(m["exact"]["mean"])
    assert np.array(m["exact"]["cov"]).shape == (d, d)
    results = m["results"]
    assert {r["method"] for r in results} == {"sgld", "sgworld", "ula"}
    sampled = [r for r in results if r["sampled"]]
    assert len(sampled) == 9  # the quick sweep's three lrs all fit its step budget
    for r in sampled:
        for key in ("lr", "mean", "cov", "kl", "mean_error", "cov_error", "ess_min", "exact_discrete", "excess",
                    "excess_se", "excess_ci", "excess_exact"):
            assert key in r
        assert r["kl"] >= 0 and r["ess_min"] > 0 and r["excess_ci"][0] < r["excess"] < r["excess_ci"][1]
    # Simulation against the exact discrete-time moments: 9 runs x 6 numbers (mean, covariance, excess
    # spread) at z = 5, false-failure rate 54 * 5.7e-7 < 3.1e-5.
    assert max(max(r["z_mean_max"], r["z_cov_max"], abs(r["z_excess"])) for r in sampled) < Z_TOL
    # Exact (deterministic) ordering: SGWORLD is far closer to the posterior than SGLD at every lr.
    assert min(m["summary"]["kl_ratio_exact_discrete"]) > 10
    assert m["summary"]["kl_ratio_wr_over_wor"]["sgld/sgworld"] == m["summary"]["kl_ratio_exact_discrete"]
    slopes = m["summary"]["slope_exact_discrete"]
    assert 1.8 < slopes["sgld"] < 2.2 and 1.8 < slopes["sgworld"] < 2.3


def test_chains_start_away_and_relax(quick_run):
    """The agreement above is evidence: every run starts at an excess spread (start_spread - 1 = 1) far from
    its exact stationary value, many standard errors away, and burns in >= 5 relaxation times."""
    m = json.loads((quick_run / "metrics.json").read_text())
    config = json.loads((quick_run / "config.json").read_text())
    assert m["start"]["excess"] == pytest.approx(config["start_spread"] - 1)
    for r in m["results"]:
        assert abs(m["start"]["excess"] - r["excess_exact"]) > 4 * Z_TOL * r["excess_se"]
    assert all(s["burn_in_relaxation_times"] >= 5 for s in config["schedule"])


def test_sampled_separation_resolved_at_three_lrs(tmp_path):
    """SGLD vs SGWORLD, sampled with paired chains at three lrs (lr M h_max = 0.3, 0.42, 0.6): the
    difference of their excess spreads agrees with the exact one (3 numbers at z = 5: false-failure rate
    1.7e-6) and is resolved at every lr. Power: the exact difference exceeds its interval's half-width
    (3 SE) by more than 5 SE at each lr, so failing to resolve it has probability < 3 * 2.9e-7."""
    config = resolve_config(posterior.Config, {
        "methods": "sgld,sgworld", "chains": 256, "lr_max_factor": 0.6, "decades": 0.30103, "num_lrs": 3,
        "burn_in_relaxations": 4,
        "sample_relaxations": 6, "draws": 30, "wor_permutations": 2000, "seed": shifted_seed(5)})
    m = posterior.run(config, tmp_path, progress=False, checkpoint_every=None)
    rows = m["summary"]["separation"]["sgld/sgworld"]
    assert len(rows) == 3
    for s in rows:
        assert abs(s["z_vs_exact"]) < Z_TOL
        assert s["exact"] > (posterior.evidence.INTERVAL_Z + 5) * s["se"]
        assert s["resolved"]
    assert m["summary"]["separation_resolved_lrs"]["sgld/sgworld"] == 3


def test_family_exact_table_wr_vs_wor(tmp_path):
    """methods=NAME or NAME:SCHEME: the exact KL over the sweep for every method, wr/wor ratios per sampler,
    and the figure; a step budget below every schedule samples nothing (exact only)."""
    config = resolve_config(posterior.Config, {
        "methods": "sgld,sgworld,sghmc:wr,sghmc:wor,sgld_cv,sgld_cv:wor,sgld+pc:wr,sgld+pc:wor",
        "n": 60, "batch_size": 6, "num_lrs": 3, "max_steps": 200, "draws": 10, "wor_permutations": 500})
    m = posterior.run(config, tmp_path, progress=False, checkpoint_every=None)
    assert not any(r["sampled"] for r in m["results"]) and (tmp_path / "kl_vs_lr.png").exists()
    ratios = m["summary"]["kl_ratio_wr_over_wor"]
    assert set(ratios) == {"sgld/sgworld", "sghmc:wr/sghmc:wor", "sgld_cv/sgld_cv:wor", "sgld+pc:wr/sgld+pc:wor"}
    assert all(len(v) == 3 and all(q > 0 for q in v) for v in ratios.values())
    assert m["summary"]["separation"] == {k: [] for k in ratios}
    slopes = m["summary"]["slope_exact_discrete"]
    assert 1.8 < slopes["sgld"] < 2.2 and 1.8 < slopes["sgworld"] < 2.3
    assert all(np.isfinite(list(slopes.values())))
    assert [c for c in posterior.checks(m) if c.ok is False] == []


def test_family_sampled_agrees_with_its_exact_moments(tmp_path):
    """SGHMC (wr, wor), SGLD-CV (wor) and preconditioned SGLD sampled through the study's one mapping to
    sgworld.sample agree with their exact discrete-time moments: 4 methods x 2 lrs x 6 numbers at z = 5,
    false-failure rate 48 * 5.7e-7 < 2.8e-5. Power: each started 4 x Z_TOL standard errors or more away
    from its exact excess spread (asserted)."""
    config = resolve_config(posterior.Config, {
        "methods": "sghmc:wr,sghmc:wor,sgld_cv:wor,sgld+pc:wr", "n": 100, "chains": 128, "num_lrs": 2,
        "lr_max_factor": 0.1, "decades": 0.1, "burn_in_relaxations": 4, "sample_relaxations": 4, "draws": 20,
        "wor_permutations": 2000, "seed": shifted_seed(7)})
    m = posterior.run(config, tmp_path, progress=False, checkpoint_every=None)
    assert len(m["results"]) == 8 and all(r["sampled"] for r in m["results"])
    for r in m["results"]:
        assert max(r["z_mean_max"], r["z_cov_max"], abs(r["z_excess"])) < Z_TOL, r["method"]
        assert abs(m["start"]["excess"] - r["excess_exact"]) > 4 * Z_TOL * r["excess_se"], r["method"]
    assert m["summary"]["separation_resolved_lrs"]["sghmc:wr/sghmc:wor"] == 2


def test_explicit_lrs_and_bad_settings():
    config = resolve_config(posterior.Config, {"lrs": "1e-6, 2e-6"})
    assert config.lrs == (1e-6, 2e-6)
    with pytest.raises(ValueError, match="feature_corr = 1.5 is out of range"):
        posterior.check_config(resolve_config(posterior.Config, {"feature_corr": 1.5}))
    with pytest.raises(ValueError, match="lrs entry must be a finite number > 0"):
        posterior.check_config(resolve_config(posterior.Config, {"lrs": "1e-6, -1"}))
    with pytest.raises(ValueError, match="sghmc_beta_hat = 0.2 is out of range; allowed: 0 <= sghmc_beta_hat < "
                                         "sghmc_alpha = 0.1"):
        posterior.check_config(resolve_config(posterior.Config, {"sghmc_beta_hat": 0.2}))
    with pytest.raises(ValueError, match="unknown scheme 'x' in methods entry 'sgld:x'"):
        posterior.check_config(resolve_config(posterior.Config, {"methods": "sgld:x"}))
