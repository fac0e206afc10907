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
                "schedule", "seed", "sgworld_version"):
        assert key in config
    assert config["seed"] == shifted_seed(3) and all({"burn_in", "steps"} <= set(s) for s in config["schedule"])
    data = np.load(quick_run / "data.npz")
    assert data["X"].shape == (config["n"], config["d"]) and data["y"].shape == (config["n"],)


def test_metrics_structure_and_agreement_with_exact_moments(quick_run):
    m = json.loads((quick_run / "metrics.json").read_text())
    d = len(m["exact"]["mean"])
    assert np.array(m["exact"]["cov"]).shape == (d, d)
    results = m["results"]
    assert {r["method"] for r in results} == {"sgld", "sgworld", "ula"}
    for r in results:
        for key in ("lr", "mean", "cov", "kl", "mean_error", "cov_error", "ess_min", "exact_discrete"):
            assert key in r
        assert r["kl"] >= 0 and r["ess_min"] > 0
    # Simulation against the exact discrete-time moments: 9 runs x 5 numbers at z = 5,
    # false-failure rate 45 * 5.7e-7 < 3e-5.
    assert max(max(r["z_mean_max"], r["z_cov_max"]) for r in results) < Z_TOL
    # Exact (deterministic) ordering: SGWORLD is far closer to the posterior than SGLD at every lr.
    assert min(m["summary"]["kl_ratio_exact_discrete"]) > 10
    slopes = m["summary"]["slope_exact_discrete"]
    assert 1.8 < slopes["sgld"] < 2.2 and 1.8 < slopes["sgworld"] < 2.3


def test_explicit_lrs_and_bad_settings():
    config = resolve_config(posterior.Config, {"lrs": "1e-6, 2e-6"})
    assert config.lrs == (1e-6, 2e-6)
    with pytest.raises(ValueError, match="feature_corr = 1.5 is out of range"):
        posterior.check_config(resolve_config(posterior.Config, {"feature_corr": 1.5}))
    with pytest.raises(ValueError, match="lrs entry must be a finite number > 0"):
        posterior.check_config(resolve_config(posterior.Config, {"lrs": "1e-6, -1"}))
