"""The regression study (sgworld.experiments.regression): problem, data files, the quick run, the authors' numbers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import AUTHORS_DATA
from sgworld import Problem, sample
from sgworld.experiments import regression
from sgworld.experiments.common import resolve_config
from sgworld.theory import find_minimum

# The paper's Hessian eigenvalues at w* for the authors' data (docs/regression.md).
AUTHORS_EIGENVALUES = [55.02, 58.52, 397.3, 1849, 3098, 24658, 28318]


def test_analytic_batch_gradient_matches_autodiff():
    data = regression.make_data(50, seed=3)
    problem = regression.RegressionProblem(data.x, data.y)
    reference = Problem(problem.potential_fn, problem.data, problem.dim)  # vmap(grad) of the same potential
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 7, generator=gen, dtype=torch.float64)
    idx = torch.randint(50, (6, 5), generator=gen)
    torch.testing.assert_close(problem.batch_grad(w, idx), reference.batch_grad(w, idx), rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(problem.batch_grad(w), reference.batch_grad(w), rtol=1e-12, atol=1e-9)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="no C++ compiler")
def test_compiled_blocks_agree_with_steps():
    """The real compiler with the problem's float64 options (scalar C++): the draws of single steps up to
    rounding."""
    data = regression.make_data(40, seed=1)
    problem = regression.RegressionProblem(data.x, data.y)
    assert problem.compile_options == {"cpp.simdlen": 1}
    assert regression.RegressionProblem(data.x, data.y, dtype=torch.float32).compile_options is None
    kw = dict(lr=1e-5, batch_size=5, chains=3, num_draws=2, thin=32, seed=2, progress=False,
              init=torch.tensor([1.0, -1.0, 0.5, 0.0, 1.0, -1.0, 0.0], dtype=torch.float64))
    compiled = sample(problem, "sgld", compile=True, **kw)
    assert compiled.meta["compiled_blocks"] > 0
    np.testing.assert_allclose(compiled.draws, sample(problem, "sgld", compile=False, **kw).draws,
                               rtol=1e-12, atol=1e-12)


def test_generated_data_follow_the_recipe():
    data = regression.make_data(200, 0.1, seed=0)
    np.testing.assert_allclose(data.x, -3.0 + 0.03 * np.arange(200), atol=1e-12)
    residual = data.y - np.exp(-data.x**2)
    assert abs(residual.std() - 0.1) < 0.02  # 200 draws of N(0, 0.1^2): std within 20% with prob > 0.999


def write_files(folder, x="1\n2\n3\n", y="1\n2\n3\n", wmin=None):
    folder.mkdir(exist_ok=True)
    (folder / "x_train.txt").write_text(x)
    (folder / "y_train.txt").write_text(y)
    if wmin is not None:
        (folder / "wmin.txt").write_text(wmin)
    return folder


@pytest.mark.parametrize("case, message", [
    ("no_folder", "not a folder"),
    ("no_y", "y_train.txt.*missing"),
    ("malformed", "malformed"),
    ("lengths", "must match"),
    ("wmin", "7 weights"),
])
def test_load_authors_data_errors(tmp_path, case, message):
    folder = tmp_path / "data"
    if case == "no_y":
        write_files(folder)
        (folder / "y_train.txt").unlink()
    elif case == "malformed":
        write_files(folder, x="1\nabc\n3\n")
    elif case == "lengths":
        write_files(folder, y="1\n2\n")
    elif case == "wmin":
        write_files(folder, wmin="1\n2\n")
    with pytest.raises(ValueError, match=message):
        regression.load_authors_data(folder)


def test_load_authors_data_reads_files(tmp_path):
    data = regression.load_authors_data(write_files(tmp_path / "d", wmin="\n".join(["0.5"] * 7)))
    np.testing.assert_array_equal(data.x, [1, 2, 3])
    np.testing.assert_array_equal(data.w_min, [0.5] * 7)


def test_config_is_checked(tmp_path):
    config = resolve_config(regression.Config, regression.QUICK, {"segment": 130})
    with pytest.raises(ValueError, match="multiple of M"):
        regression.run(config, tmp_path)


WR_KEYS = ["sigma_theory_diag", "sigma_sim_diag", "Q_theory", "A_sim", "commutator_ratio", "ep_rate_theory",
           "ep_rate_sim", "ep_rate_model_free", "ift", "ift_ci", "dft_slope", "dft_slope_ci"]
WOR_KEYS = ["w_eff_theory", "mean_sim", "sigma_theory_diag", "sigma_sim_diag", "lr_M_hmax"]
FIGURES = ["sigma_theory_vs_sim.png", "circulation_Q_vs_A.png", "entropy_production_dft.png",
           "probability_current.png", "stationary_clouds.png"]


def test_quick_run_writes_every_metric_and_figure(tmp_path):
    config = resolve_config(regression.Config, regression.QUICK)
    metrics = regression.run(config, tmp_path, progress=False)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert json.loads((tmp_path / "config.json").read_text())["chains"] == config.chains
    for key in ("w_star", "hessian_eigenvalues", "wr", "wor"):
        assert key in on_disk
    for key in WR_KEYS:
        assert key in on_disk["wr"], key
    for key in WOR_KEYS:
        assert key in on_disk["wor"], key
    assert set(on_disk["wr"]["ift"]) == {"1", "2", "3", "10"}
    for name in FIGURES:
        assert (tmp_path / name).stat().st_size > 10_000, name
    assert metrics["figures"] == FIGURES
    # sanity of the physics at smoke-test size (not the accuracy tests, which live in tests/theory)
    wr, wor = on_disk["wr"], on_disk["wor"]
    assert np.all(np.asarray(on_disk["hessian_eigenvalues"]) > 0)
    assert wr["ep_rate_theory"] > 0 and 0 < wr["commutator_ratio"] < 1
    assert np.all(np.asarray(wr["sigma_theory_diag"]) > 1e3 * np.asarray(wor["sigma_theory_diag"]))
    assert wor["lr_M_hmax"] < 0.1


@pytest.mark.skipif(not AUTHORS_DATA.is_dir(), reason=f"the authors' data folder {AUTHORS_DATA} is not present")
def test_authors_minimum_and_hessian_eigenvalues():
    data = regression.load_authors_data(AUTHORS_DATA)
    problem = regression.RegressionProblem(data.x, data.y, noise_std=0.1, lam=1e-3)
    w_star, result = find_minimum(problem, data.w_min)
    np.testing.assert_allclose(w_star, data.w_min, rtol=1e-9, atol=1e-12)  # the authors' file is the minimum
    assert result.grad_norm < 1e-9
    eigenvalues = np.linalg.eigvalsh(problem.hessian(torch.tensor(w_star)).numpy())
    np.testing.assert_allclose(eigenvalues, AUTHORS_EIGENVALUES, rtol=1e-3)
