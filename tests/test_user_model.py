"""Model files for --model (sgworld.user_model): the factory's return forms, data from --data, and bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgworld import BayesianLinearRegression
from sgworld.user_model import load_data, load_model, parse_spec

MODULE = """
import numpy as np
import torch
def make():
    torch.manual_seed(0)
    X = np.linspace(-1, 1, 20)[:, None]
    return {"module": torch.nn.Sequential(torch.nn.Linear(1, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)),
            "likelihood": "gaussian", "X": X, "y": np.sin(3 * X[:, 0]), "noise_std": 0.2}
def classifier():
    return {"module": torch.nn.Sequential(torch.nn.Linear(2, 3)), "likelihood": "categorical"}
def problem():
    import sgworld
    X = torch.ones(5, 1, dtype=torch.float64)
    return sgworld.BayesianLinearRegression(X, torch.zeros(5, dtype=torch.float64))
def raises():
    raise RuntimeError("no data here")
def wrong():
    return [1, 2]
def extra():
    return {"module": torch.nn.Linear(1, 1), "likelihood": "gaussian", "X": [[0.0]], "y": [0.0], "lr": 1}
def shape():
    return {"module": torch.nn.Linear(1, 2), "likelihood": "gaussian", "X": np.zeros((4, 1)), "y": np.zeros(4)}
"""


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(MODULE)
    return path


def test_spec_names_the_factory():
    assert parse_spec("m.py") == (parse_spec("m.py")[0], "make")
    assert parse_spec("dir/m.py:build")[1] == "build" and str(parse_spec("dir/m.py:build")[0]) == "dir/m.py"


def test_a_dict_becomes_a_problem_from_the_module(model_file):
    user = load_model(str(model_file))
    assert user.problem.n == 20 and user.problem.dim == 3 + 3 + 3 + 1 and user.likelihood == "gaussian"
    assert user.noise_std == 0.2 and user.source.endswith("model.py:make")
    test = user.test_set()                                  # no held-out data: the training inputs
    w = user.problem.initial_params()[None]
    out = test.predict(w, user.problem.data[0])
    np.testing.assert_allclose(out.shape, (1, 20, 1))
    # U_i = N (y_i - f_i)^2 / (2 sigma^2) + |w|^2 / 2 at the module's own weights
    resid = user.problem.data[1] - out[0, :, 0]
    expected = 20 * resid**2 / (2 * 0.2**2) + 0.5 * (w * w).sum()
    torch.testing.assert_close(user.problem.potentials(w)[0], expected, rtol=1e-12, atol=1e-10)


def test_a_problem_is_used_as_it_is(model_file):
    user = load_model(f"{model_file}:problem")
    assert isinstance(user.problem, BayesianLinearRegression) and user.module is None and user.test_set() is None


def test_data_come_from_npz_or_csv(model_file, tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 2)), np.arange(30) % 3
    np.savez(tmp_path / "d.npz", X=X, y=y, X_test=X[:5], y_test=y[:5])
    user = load_model(f"{model_file}:classifier", data=str(tmp_path / "d.npz"))
    assert user.problem.n == 30 and user.X_test.shape == (5, 2) and user.y_test.dtype == np.int64
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",", header="a,b,label", comments="")
    user = load_model(f"{model_file}:classifier", data=str(tmp_path / "d.csv"))
    assert user.problem.n == 30 and user.X_test is None
    assert load_data(tmp_path / "d.csv")["X"].shape == (30, 2)


@pytest.mark.parametrize("spec, data, message", [
    ("missing.py", None, "model file '{t}/missing.py' does not exist"),
    ("model.py:nothing", None, "defines no function 'nothing'"),
    ("model.py:raises", None, "model factory {t}/model.py:raises raised RuntimeError: no data here; fix the factory"),
    ("model.py:wrong", None, "returned list; it must return a sgworld Problem or a dict"),
    ("model.py:extra", None, "unknown key(s) lr"),
    ("model.py:shape", None, "y has 1 value(s) per sample but the module has 2 output(s)"),
    ("model.py:classifier", None, "returned no data (X, y) and no --data was given"),
    ("model.py:classifier", "none.npz", "data file '{t}/none.npz' does not exist"),
])
def test_bad_model_files_are_named_with_the_fix(model_file, tmp_path, spec, data, message):
    message = message.format(t=tmp_path)
    with pytest.raises(ValueError) as exc:
        load_model(str(tmp_path / spec), None if data is None else str(tmp_path / data))
    assert message in str(exc.value) and len(str(exc.value).splitlines()) == 1, str(exc.value)
