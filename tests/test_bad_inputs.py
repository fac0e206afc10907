"""The catalogue of bad inputs: each gets an error of the documented type whose message names the
value and the fix, through the Python API, the command line and files on disk."""

import gzip
import math

import pytest
import torch

from sgworld import (BayesianLinearRegression, CheckpointError, DivergenceError, IndexStream, Problem, Trace,
                     TraceFileError, sample)
from sgworld.checkpoint import CURRENT
from sgworld.cli import main
from sgworld.experiments.common import ConfigError, load_toml, resolve_config


def blr(n=40):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return BayesianLinearRegression(X, X @ torch.tensor([1.0, -0.5], dtype=torch.float64), 0.5, 1.0)


def sgld(**kw):
    return sample(blr(), **{"method": "sgld", "lr": 1e-3, "batch_size": 4, "num_draws": 3, "progress": False, **kw})


def nan_data():
    X = torch.ones(10, 2, dtype=torch.float64)
    X[3, 1] = math.nan
    return BayesianLinearRegression(X, torch.zeros(10, dtype=torch.float64), 0.5, 1.0)


def diverging():
    b = blr()  # as a generic Problem, which knows no h_max (BLR itself refuses lr >= 2 / h_max up front)
    return sample(Problem(b._regression_potential, b.data, b.dim), "ula", lr=1.0, chains=2,
                  init=torch.full((2,), 1e3, dtype=torch.float64), num_draws=500, progress=False)


def corrupt_trace(tmp):
    (tmp / "t.npz").write_bytes(b"PK\x03\x04 not really a zip")
    return Trace.load(tmp / "t.npz")


def unfinished_trace_folder(tmp):
    sample(blr(), "sgld", lr=1e-3, batch_size=4, num_draws=3, out=tmp / "t", progress=False)
    meta = (tmp / "t" / "meta.json").read_text().replace('"complete": true', '"complete": false')
    (tmp / "t" / "meta.json").write_text(meta)
    return Trace.load(tmp / "t")


def unreadable_checkpoint(tmp):
    sample(blr(), "sgld", lr=1e-3, batch_size=4, num_draws=3, out=tmp / "t", progress=False)
    meta = (tmp / "t" / "meta.json").read_text().replace('"complete": true', '"complete": false')
    (tmp / "t" / "meta.json").write_text(meta)
    (tmp / "t" / CURRENT).write_bytes(b"\x00" * 10)
    return sample(blr(), "sgld", lr=1e-3, batch_size=4, num_draws=3, out=tmp / "t", progress=False)


def other_run_in_out(tmp):
    sample(blr(), "sgld", lr=1e-3, batch_size=4, num_draws=3, out=tmp / "t", progress=False)
    return sample(blr(), "sgld", lr=2e-3, batch_size=4, num_draws=3, out=tmp / "t", progress=False)


def malformed_toml(tmp):
    (tmp / "c.toml").write_text("chains = = 3\n")
    return load_toml(tmp / "c.toml")


def wrong_type_in_toml(tmp):
    from sgworld.experiments import posterior
    (tmp / "c.toml").write_text('chains = "many"\n')
    return resolve_config(posterior.Config, load_toml(tmp / "c.toml"))


# (id, call(tmp_path), error type, message pattern)
API_AND_FILES = [
    ("lr zero", lambda t: sgld(lr=0.0), ValueError, r"lr must be a finite number > 0, got 0\.0"),
    ("lr negative", lambda t: sgld(lr=-1e-3), ValueError, r"lr must be a finite number > 0, got -0\.001"),
    ("lr NaN", lambda t: sgld(lr=math.nan), ValueError, r"lr must be a finite number > 0, got nan"),
    ("lr missing", lambda t: sample(blr(), "sgld", batch_size=4), ValueError, r"lr is required"),
    ("b > N", lambda t: sgld(batch_size=41), ValueError, r"batch_size = 41 is out of range; allowed: 1 <= batch_size <= 40"),
    ("b missing", lambda t: sgld(batch_size=None), ValueError, r"batch_size is required for 'sgld'"),
    ("unknown scheme", lambda t: sgld(scheme="wrr"), ValueError, r"unknown scheme 'wrr'; choose one of: wr, iid, wor"),
    ("unknown method", lambda t: sgld(method="nuts"), ValueError, r"unknown method 'nuts'; choose one of: sgd, sgld"),
    ("zero chains", lambda t: sgld(chains=0), ValueError, r"chains = 0 is out of range; allowed: 1 <= chains"),
    ("negative temperature", lambda t: sgld(temperature=-1.0), ValueError, r"temperature must be a finite number >= 0"),
    ("init wrong shape", lambda t: sgld(chains=2, init=torch.zeros(3, 2)), ValueError,
     r"init must have shape \(2,\) or \(2, 2\), got \(3, 2\)"),
    ("zero batch in stream", lambda t: IndexStream("wor", 10, 0, 2, torch.Generator()), ValueError,
     r"batch_size = 0 is out of range"),
    ("NaN in data", lambda t: nan_data(), ValueError, r"X contains 1 non-finite value\(s\) \(NaN or inf\)"),
    ("data lengths differ", lambda t: BayesianLinearRegression(torch.ones(10, 2), torch.ones(9), 0.5, 1.0),
     ValueError, r"y must have shape \(10,\) to match X"),
    ("diverging chain", lambda t: diverging(), DivergenceError, r"2 chain\(s\) diverged.*Reduce the learning rate"),
    ("corrupt trace file", corrupt_trace, TraceFileError, r"not a readable sgworld trace \(truncated or corrupt"),
    ("missing trace file", lambda t: Trace.load(t / "none.npz"), TraceFileError, r"does not exist"),
    ("unfinished trace folder", unfinished_trace_folder, TraceFileError, r"holds an unfinished run"),
    ("unreadable checkpoint", unreadable_checkpoint, CheckpointError, r"no readable checkpoint.*delete the folder"),
    ("out holds another run", other_run_in_out, ValueError, r"holds a different run \(lr: 0\.001 there, 0\.002 now\)"),
    ("negative checkpoint interval", lambda t: sgld(checkpoint_every=-1), ValueError,
     r"checkpoint_every = -1 is invalid"),
    ("malformed TOML", malformed_toml, ConfigError, r"c\.toml' is not valid TOML"),
    ("wrong type in TOML", wrong_type_in_toml, ConfigError, r"setting 'chains' expects int, got 'many'"),
]


@pytest.mark.parametrize("case, call, error, message", API_AND_FILES, ids=[c[0] for c in API_AND_FILES])
def test_api_and_files(tmp_path, case, call, error, message):
    with pytest.raises(error, match=message):
        call(tmp_path)


def write_regression_files(tmp, x="0\n1\n2\n", y="1\n2\n3\n"):
    (tmp / "data").mkdir(exist_ok=True)
    (tmp / "data" / "x_train.txt").write_text(x)
    (tmp / "data" / "y_train.txt").write_text(y)
    return str(tmp / "data")


def write_bad_idx(tmp):
    folder = tmp / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        with gzip.open(folder / f"{name}.gz", "wb") as fh:
            fh.write(b"\x12\x34\x08\x03 not an IDX file")
    return str(folder)


# (id, argv built from tmp_path, message fragment); every one exits with 2 and a one-line message
CLI = [
    ("unknown study", lambda t: ["run", "nosuchstudy"], "unknown study 'nosuchstudy'"),
    ("malformed --set", lambda t: ["run", "posterior", "--set", "chains"], "--set expects key=value, got 'chains'"),
    ("unknown setting", lambda t: ["run", "posterior", "--set", "nosuch=1"], "unknown setting 'nosuch'"),
    ("wrong setting type", lambda t: ["run", "posterior", "--set", "chains=many"], "setting 'chains' expects int"),
    ("NaN setting", lambda t: ["run", "posterior", "--set", "noise_std=nan"], "setting 'noise_std' expects float"),
    ("b > N setting", lambda t: ["run", "posterior", "--quick", "--set", "batch_size=1000"],
     "batch_size = 1000 is out of range"),
    ("missing config file", lambda t: ["run", "posterior", "--config", str(t / "none.toml")], "does not exist"),
    ("data for a study without data", lambda t: ["run", "posterior", "--data", str(t)],
     "study 'posterior' reads no data files"),
    ("missing data folder", lambda t: ["run", "regression", "--quick", "--data", str(t / "none")], "is not a folder"),
    ("malformed data file", lambda t: ["run", "regression", "--quick", "--data",
                                       write_regression_files(t, x="0\nabc\n2\n")], "is malformed"),
    ("NaN in data file", lambda t: ["run", "regression", "--quick", "--data",
                                    write_regression_files(t, y="1\nnan\n3\n")], "contains non-finite values"),
    ("data files disagree", lambda t: ["run", "regression", "--quick", "--data",
                                       write_regression_files(t, y="1\n2\n")], "they must match"),
    ("bad MNIST IDX", lambda t: ["run", "digits", "--quick", "--data", write_bad_idx(t)], "bad magic number"),
    ("resume without a run", lambda t: ["resume", str(t)], "config.json is missing"),
    ("report without a run", lambda t: ["report", str(t / "none")], "does not exist"),
]


@pytest.mark.parametrize("case, argv, message", CLI, ids=[c[0] for c in CLI])
def test_cli_exits_2_with_one_line(tmp_path, capsys, case, argv, message):
    args = argv(tmp_path)
    if args[0] == "run":
        args += ["--out", str(tmp_path / "out"), "-q"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1 and err.startswith("sgworld: error: ")


def test_catalogue_size():
    assert len(API_AND_FILES) + len(CLI) >= 20


# --------------------------------------------------------------------------- model inputs
# Each is refused up front by sgworld._checks with one line naming the fix; tests/problems/test_model_inputs.py
# has the positive side (the module left untouched, the flat-prior posteriors).

def _net(*middle):
    return torch.nn.Sequential(torch.nn.Linear(2, 4), *middle, torch.nn.Linear(4, 3))


def _model_input(net=None, y=None, prior_std=1.0):
    from sgworld import from_module
    X = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2]) if y is None else y
    return from_module(net if net is not None else _net(), X, y, likelihood="categorical", prior_std=prior_std)


def _softmax_regression(y):
    from sgworld.experiments.digits import SoftmaxRegression
    return SoftmaxRegression(torch.randn(len(y), 3, generator=torch.Generator().manual_seed(0)), y, num_classes=3)


MODEL_INPUTS = [
    ("labels not integers", lambda: _model_input(y=torch.tensor([0.0, 1.0, 2.7, 0.0, 1.0, 2.0])),
     r"y\[2\] = 2\.7 is not .*relabel the data with integer class indices"),
    ("label >= classes", lambda: _model_input(y=torch.tensor([0, 1, 3, 0, 1, 2])),
     r"label y\[2\] = 3 is outside 0\.\.2 \(the model has 3 outputs.*relabel the classes to 0\.\.2"),
    ("negative label", lambda: _model_input(y=torch.tensor([0, 1, 2, -1, 1, 2])),
     r"label y\[3\] = -1 is outside 0\.\.2"),
    ("missing classes, no prior", lambda: _model_input(y=torch.tensor([0, 0, 2, 0, 0, 2]), prior_std=None),
     r"no sample of class\(es\) 1 of 0\.\.2; without a prior .*give prior_std"),
    ("BatchNorm in train mode", lambda: _model_input(_net(torch.nn.BatchNorm1d(4))),
     r"BatchNorm1d layer '1' is in training mode and uses batch statistics; call module\.eval\(\)"),
    ("Dropout in train mode", lambda: _model_input(_net(torch.nn.Dropout(0.5))),
     r"Dropout layer '1' is in training mode and draws from the global RNG; call module\.eval\(\)"),
    ("BatchNorm without running stats",
     lambda: _model_input(_net(torch.nn.BatchNorm1d(4, track_running_stats=False)).eval()),
     r"uses batch statistics even in eval mode"),
    ("flat prior, collinear X",
     lambda: BayesianLinearRegression(torch.ones(10, 2), torch.zeros(10), 0.5, prior_std=None),
     r"X has rank 1 < 2 columns: without a prior \(prior_std=None\) the posterior is improper"),
    ("digits analysis with a class missing", lambda: _softmax_regression(torch.tensor([0, 1, 0, 1, 0, 1])),
     r"no sample of class\(es\) 2 of 0\.\.2; every class needs training samples for the analysis"),
]


@pytest.mark.parametrize("case, call, message", MODEL_INPUTS, ids=[c[0] for c in MODEL_INPUTS])
def test_model_inputs_are_refused_with_the_fix(case, call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- output folders, settings, resume
# Each exits with 2 and one line naming the value and the fix; the folder a user already had is left as it was.


def _user_folder(t):
    (t / "mine").mkdir()
    (t / "mine" / "config.json").write_text("{}")
    return t / "mine"


def _file(t):
    (t / "file.txt").write_text("x")
    return t / "file.txt"


OUTPUT_AND_SETTINGS = [
    ("--out is a file", lambda t: ["run", "posterior", "--quick", "--out", str(_file(t))], "is a file, not a folder"),
    ("--out under a file", lambda t: ["run", "posterior", "--quick", "--out", str(_file(t) / "o")],
     "lies under the file"),
    ("--out a user's folder", lambda t: ["run", "posterior", "--quick", "--out", str(_user_folder(t))],
     "is a non-empty folder that holds no sgworld run"),
    ("negative --seed", lambda t: ["run", "posterior", "--quick", "--seed", "-1", "--out", str(t / "o")],
     "seed = -1 is negative; seeds are integers >= 0"),
    ("empty methods", lambda t: ["run", "posterior", "--quick", "--set", "methods=", "--out", str(t / "o")],
     "setting 'methods' is empty"),
    ("N < b (regression)", lambda t: ["run", "regression", "--quick", "--set", "batch_size=300", "--out", str(t / "o")],
     "batch_size = 300 is out of range; allowed: 1 <= batch_size <= 200"),
    ("run that cannot fit", lambda t: ["run", "posterior", "--quick", "--set", "chains=1000000000", "--out",
                                       str(t / "o")], "this run needs at least"),
]


@pytest.mark.parametrize("case, argv, message", OUTPUT_AND_SETTINGS, ids=[c[0] for c in OUTPUT_AND_SETTINGS])
def test_output_folders_and_settings_exit_2_with_one_line(tmp_path, capsys, case, argv, message):
    assert main(argv(tmp_path) + ["-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1 and err.startswith("sgworld: error: ")
    assert not (tmp_path / "o" / "metrics.json").exists()  # nothing marked finished
    if (tmp_path / "mine").exists():
        assert [p.name for p in (tmp_path / "mine").iterdir()] == ["config.json"]


def test_resume_of_checkpoints_with_other_settings_exits_2(tmp_path, capsys):
    from sgworld.experiments import posterior
    from sgworld.experiments.common import StudyCheckpoints, write_config

    config = resolve_config(posterior.Config, posterior.QUICK)
    X, y = posterior.make_data(config)
    write_config(tmp_path, config)
    StudyCheckpoints(tmp_path, config=config, data=(X, y)).save("partial", x=X)  # an interrupted run's state
    config_json = tmp_path / "config.json"
    config_json.write_text(config_json.read_text().replace('"draws": 30', '"draws": 40'))
    assert main(["resume", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "draws: 30 there, 40 now" in err and "resuming would mix two runs" in err and len(err.splitlines()) == 1


# ---------------------------------------------------------- a full disk, divergence while finite, honest numbers
# sample(out=...) on a full disk, lr at or above the stability limit 2 / h_max (up front, in the theory and
# in the studies), chains that grow without overflowing, damaged trace folders, bare .npy files, questions
# that have no number as an answer (the per-step noise factor of wor, wr moments without a batch size).

def location():
    from sgworld import GaussianLocation
    return GaussianLocation(torch.linspace(-1.0, 1.0, 100, dtype=torch.float64))


def full_disk(tmp):
    import sgworld._disk
    real = sgworld._disk.free_bytes
    sgworld._disk.free_bytes = lambda folder: 1000
    try:
        return sgld(out=tmp / "run")
    finally:
        sgworld._disk.free_bytes = real


def zeroed_trace_tail(tmp):
    sgld(out=tmp / "run", num_draws=20)
    raw = bytearray((tmp / "run" / "draws.npy").read_bytes())
    raw[-64:] = bytes(64)
    (tmp / "run" / "draws.npy").write_bytes(bytes(raw))
    return Trace.load(tmp / "run")


def bare_npy(tmp):
    import numpy as np
    np.save(tmp / "x.npy", np.zeros((1, 2, 3)))
    return Trace.load(tmp / "x.npy")


def theory_at_unstable_lr(tmp):
    from sgworld.theory import wor_theory
    b = blr()
    return wor_theory(b, b.target().mean, 10.0 / float(torch.linalg.eigvalsh(b.hessian())[-1]), 4)


def stepwise_without_batch_size(tmp):
    from sgworld.theory.exact import stepwise_stationary_moments
    A, g = location().quadratic_terms()
    return stepwise_stationary_moments(A, g, 1e-3, 1.0)


def sigma_wor_unstable(tmp):
    from sgworld.theory import sigma_wor
    return sigma_wor(torch.eye(2) * 4.0, torch.eye(2) * 1e-12, 0.6, 10)


def noise_factor_of(scheme):
    from sgworld import noise_factor
    return noise_factor(scheme, 100, 10)


def errors():
    from sgworld.errors import DiskSpaceError, StepSizeError
    return DiskSpaceError, StepSizeError


ISSUE11_API = [
    ("lr above the limit", lambda t: sample(location(), "sgld", lr=2.2 / location().h_max(), batch_size=10,
                                            progress=False), errors()[1],
     r"lr \* h_max = 2\.2 >= 2: sgld .* has no stationary state.*lr < 2 / h_max = 0\.019802 \(lr = 0\.0217822"),
    ("growth while finite", lambda t: sample(Problem(location()._quadratic_potential, location().data, 1), "sgld",
                                             lr=2.2 / location().h_max(), batch_size=10, num_draws=3000,
                                             progress=False),
     DivergenceError, r"1 chain\(s\) diverged \(distance from the start grew a millionfold.*chain 0 at step \d{2,3}\."),
    ("theory at lr above the limit", theory_at_unstable_lr, errors()[1],
     r"lr \* h_max = 10 >= 2: WOR SGD has no stationary state"),
    ("sigma_wor at lr above the limit", sigma_wor_unstable, errors()[1], r"lr \* h_max = 2\.4 >= 2: WOR SGD"),
    ("full disk", full_disk, errors()[0],
     r"not enough disk space in '.*run' for the draws file draws\.npy: .* needed, 1000 bytes free\. Free up space"),
    ("zeroed trace tail", zeroed_trace_tail, TraceFileError, r"does not match the SHA-256 recorded"),
    ("bare .npy as a trace", bare_npy, TraceFileError, r"x\.npy' is a bare numpy array, not an sgworld trace"),
    ("noise factor of wor", lambda t: noise_factor_of("wor"), ValueError,
     r"scheme 'wor' has no per-step noise factor.*wor_epoch_diffusion"),
    ("noise factor of sequential", lambda t: noise_factor_of("sequential"), ValueError, r"no per-step noise factor"),
    ("wr moments without a batch size", stepwise_without_batch_size, ValueError,
     r"batch_size is required for scheme 'wr'"),
]


@pytest.mark.parametrize("case, call, error, message", ISSUE11_API, ids=[c[0] for c in ISSUE11_API])
def test_run_and_file_errors(tmp_path, case, call, error, message):
    with pytest.raises(error, match=message):
        call(tmp_path)


ISSUE11_CLI = [
    ("regression lr above the limit", ["run", "regression", "--quick", "--set", "lr=1e-3"],
     ">= 2: WOR SGD has no stationary state around w_star (its chains diverge). The stability limit is "
     "lr < 2 / h_max = "),
    ("digits sampler lr above the limit", ["run", "digits", "--quick", "--set", "sampler_lr_hmax=0.1,3.0"],
     "sampler_lr_hmax = 3.0 >= 2: SGLD and SGWORLD at lr * h_max >= 2 have no stationary state"),
]


@pytest.mark.parametrize("case, argv, message", ISSUE11_CLI, ids=[c[0] for c in ISSUE11_CLI])
def test_study_lr_above_the_limit_exits_2_with_one_line(tmp_path, capsys, case, argv, message):
    """Before, a too-large lr ended in "H contains ... non-finite value(s)" from the WOR theory."""
    assert main(argv + ["--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sgworld: error: "), err
    assert message in err and "non-finite" not in err, err


# --------------------------------------------------------------------------- a model file (--model)

BAD_MODELS = """
import torch
def raises():
    raise RuntimeError("cannot build")
def wrong():
    return "a module"
def shape():
    return {"module": torch.nn.Linear(2, 3), "likelihood": "gaussian", "X": torch.zeros(8, 2), "y": torch.zeros(8)}
"""


def model_file(tmp, factory):
    (tmp / "m.py").write_text(BAD_MODELS)
    return f"{tmp / 'm.py'}:{factory}"


MODEL_FILE_CLI = [
    ("model file missing", lambda t: ["run", "samplers", "--model", str(t / "none.py")],
     "model file '{t}/none.py' does not exist; give --model FILE.py[:FACTORY]"),
    ("model factory raises", lambda t: ["run", "samplers", "--model", model_file(t, "raises")],
     "model factory {t}/m.py:raises raised RuntimeError: cannot build; fix the factory"),
    ("model factory returns a str", lambda t: ["run", "samplers", "--model", model_file(t, "wrong")],
     "model factory {t}/m.py:wrong returned str; it must return a sgworld Problem or a dict"),
    ("model output does not fit the likelihood", lambda t: ["run", "samplers", "--model", model_file(t, "shape")],
     "y has 1 value(s) per sample but the module has 3 output(s)"),
    ("model file for a study with its own model", lambda t: ["run", "digits", "--model", model_file(t, "shape")],
     "study 'digits' has its own model; drop --model"),
    ("samplers lr above the limit", lambda t: ["run", "samplers", "--model", model_file(t, "shape"), "--set",
                                               "lr_hmax=0.1,2.5"], "lr_hmax = (0.1, 2.5): each value must be > 0 and < 2"),
    ("samplers reference not exact", lambda t: ["run", "samplers", "--model", model_file(t, "shape"), "--set",
                                                "reference=sgld"], "unknown reference 'sgld'"),
]


@pytest.mark.parametrize("case, argv, message", MODEL_FILE_CLI, ids=[c[0] for c in MODEL_FILE_CLI])
def test_model_files_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, case, argv, message):
    out = tmp_path / "out"
    assert main(argv(tmp_path) + ["--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sgworld: error: "), err
    assert message.format(t=tmp_path) in err, err
    assert not (out / "metrics.json").exists() and not (out / "checkpoints").exists()


# --------------------------------------------------------------------------- the nonequilibrium pipeline

def _linear_problem(identical_columns: bool):
    from sgworld import BayesianLinearRegression
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    if identical_columns:
        X[:, 1] = X[:, 0]
    return BayesianLinearRegression(X, X @ torch.tensor([1.0, -0.5], dtype=torch.float64) + 0.3 * torch.randn(
        30, generator=gen, dtype=torch.float64), 0.3, 1.0)


def analyze_at(problem, **kw):
    from sgworld.nonequilibrium import analyze
    return analyze(problem, **{"lr": 1e-5, "batch_size": 5, "chains": 8, "steps": 240, "groups": 2, "progress": False,
                               **kw})


def analyze_at_a_maximum(tmp):
    eps = torch.linspace(-0.01, 0.01, 10, dtype=torch.float64)
    double_well = Problem(lambda w, e: (w[0] ** 2 - 1) ** 2 + e * w[0], (eps,), 1)
    return analyze_at(double_well, w_star=torch.zeros(1, dtype=torch.float64))


NEQ_API = [
    ("analysis at a point that is not a minimum", analyze_at_a_maximum, ValueError,
     r"w_star is not a minimum: the Hessian there has eigenvalue -4 <= 0 .*pass a point near a minimum"),
    ("analysis with a singular D", lambda t: analyze_at(_linear_problem(True)), ValueError,
     r"the diffusion matrix D is singular.*use more \(or more varied\) data"),
    ("analysis beyond the WOR validity range", lambda t: analyze_at(_linear_problem(False), lr=2e-4), ValueError,
     r"lr M h_max = 0\.\d+ is beyond the validity range of the WOR theory \(< 0\.2\); lower lr below .*or drop 'wor'"),
    ("analysis of p too large for dense without top-k", lambda t: analyze_at(_linear_problem(False), dense_max_p=1,
                                                                             topk=None), ValueError,
     r"p = 2 is too large for the dense p x p theory \(dense_max_p = 1\); enable the top-k path"),
]


@pytest.mark.parametrize("case, call, error, message", NEQ_API, ids=[c[0] for c in NEQ_API])
def test_nonequilibrium_api_refusals(tmp_path, case, call, error, message):
    with pytest.raises(error, match=message):
        call(tmp_path)


NEQ_MODELS = """
import numpy as np
import torch
def twin_columns():
    x = np.random.default_rng(0).normal(size=(40, 1))
    return {"module": torch.nn.Linear(2, 1), "likelihood": "gaussian", "X": np.hstack([x, x]), "y": x[:, 0],
            "noise_std": 0.3}
def linear():
    X = np.random.default_rng(0).normal(size=(40, 2))
    return {"module": torch.nn.Linear(2, 1), "likelihood": "gaussian", "X": X, "y": X[:, 0], "noise_std": 0.3}
"""


def neq_model(tmp, factory):
    (tmp / "n.py").write_text(NEQ_MODELS)
    return ["run", "nonequilibrium", "--model", f"{tmp / 'n.py'}:{factory}"]


NEQ_CLI = [
    ("nonequilibrium without a model", lambda t: ["run", "nonequilibrium"], "needs a model: pass --model FILE.py"),
    ("nonequilibrium model file missing", lambda t: ["run", "nonequilibrium", "--model", str(t / "none.py")],
     "model file '{t}/none.py' does not exist"),
    ("nonequilibrium factory raises", lambda t: ["run", "nonequilibrium", "--model", model_file(t, "raises")],
     "raised RuntimeError: cannot build; fix the factory"),
    ("nonequilibrium factory returns a str", lambda t: ["run", "nonequilibrium", "--model", model_file(t, "wrong")],
     "returned str; it must return a sgworld Problem or a dict"),
    ("nonequilibrium output does not fit the likelihood",
     lambda t: ["run", "nonequilibrium", "--model", model_file(t, "shape")], "but the module has 3 output(s)"),
    ("nonequilibrium singular D", lambda t: neq_model(t, "twin_columns"), "the diffusion matrix D is singular"),
    ("nonequilibrium lr M h_max beyond the validity range",
     lambda t: neq_model(t, "linear") + ["--set", "lr_M_hmax=0.5"], "lr_M_hmax = 0.5 must be > 0 and below"),
    ("nonequilibrium p too large without top-k",
     lambda t: neq_model(t, "linear") + ["--set", "dense_max_p=2", "--set", "topk=none"],
     "p = 3 is too large for the dense p x p theory (dense_max_p = 2); enable the top-k path"),
]


@pytest.mark.parametrize("case, argv, message", NEQ_CLI, ids=[c[0] for c in NEQ_CLI])
def test_nonequilibrium_study_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, case, argv, message):
    out = tmp_path / "out"
    assert main(argv(tmp_path) + ["--quick", "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sgworld: error: "), err
    assert message.format(t=tmp_path) in err, err
    assert not any((out / name).exists() for name in ("metrics.json", "config.json", "checkpoints"))


# --------------------------------------------------------------------------- the SG-MCMC family
# Friction, thermostat and decay parameters out of range, preconditioners that are not symmetric positive
# definite, schedules that are not positive, control-variate centres of the wrong shape, and a momentum
# sampler asked for a scheme it cannot use: each one line naming the value and the allowed range.

from sgworld.schedules import CyclicalPhase, PolynomialDecay  # noqa: E402


def family(method, **options):
    lr = options.pop("lr", 1e-4)
    scheme = options.pop("scheme", None)
    return sample(blr(), method, lr=lr, batch_size=4, num_draws=3, scheme=scheme, progress=False,
                  kernel_options=options)


FAMILY = [
    ("sghmc friction zero", lambda t: family("sghmc", alpha=0.0), r"alpha \(friction\) must be a finite number > 0"),
    ("sghmc friction above 1", lambda t: family("sghmc", alpha=1.5),
     r"alpha \(friction\) = 1\.5 is out of range; allowed: 0 < alpha <= 1"),
    ("sghmc noise estimate at alpha", lambda t: family("sghmc", alpha=0.1, beta_hat=0.1),
     r"beta_hat \(gradient-noise estimate\) = 0\.1 is out of range; allowed: 0 <= beta_hat < alpha = 0\.1"),
    ("sghmc noise estimate with wor", lambda t: family("sghmc", beta_hat=0.01, scheme="wor"),
     r"sghmc with beta_hat = 0\.01 > 0 cannot use scheme 'wor'.*use scheme 'wr' or 'iid', or beta_hat=0"),
    ("sgnht diffusion out of range", lambda t: family("sgnht", a=0.7),
     r"a \(SGNHT's injected diffusion\) = 0\.7 is out of range; allowed: 0 < a < 0\.5"),
    ("sgnht thermostat start out of range", lambda t: family("sgnht", initial_thermostat=2.5),
     r"initial_thermostat = 2\.5 is out of range; allowed: -1 < zeta_0 < 2"),
    ("psgld decay out of range", lambda t: family("psgld", rho=1.0),
     r"rho \(pSGLD's decay of the squared-gradient average\) = 1\.0 is out of range; allowed: 0 < rho < 1"),
    ("psgld lambda not positive", lambda t: family("psgld", eps=0.0), r"eps \(pSGLD's lambda.*must be a finite number > 0"),
    ("preconditioner not symmetric", lambda t: family("sgld", preconditioner=[[1.0, 0.5], [0.0, 1.0]]),
     r"preconditioner is not symmetric \(max \|P - P\^T\| = 0\.5\); give a symmetric positive definite matrix"),
    ("preconditioner not positive definite", lambda t: family("sgworld", preconditioner=[[1.0, 2.0], [2.0, 1.0]]),
     r"preconditioner is not positive definite \(smallest eigenvalue -1\); give a symmetric positive definite"),
    ("preconditioner wrong shape", lambda t: family("sgld", preconditioner=torch.eye(3)),
     r"preconditioner must be a \(2, 2\) matrix for this problem's 2 parameters, got shape \(3, 3\)"),
    ("lr schedule never positive", lambda t: sample(blr(), "sgld", lr=CyclicalPhase(0.0, 10, 2, 0.5), batch_size=4,
                                                  num_draws=3, progress=False), r"lr schedule .* is never positive"),
    ("lr schedule decays too slowly", lambda t: family("sgld", lr=PolynomialDecay(1e-3, 1.0, 0.3)),
     r"gamma of PolynomialDecay = 0\.3 is out of range; allowed: 0\.5 < gamma <= 1"),
    ("control-variate centre wrong shape", lambda t: family("sgld_cv", centre=[0.0, 0.0, 0.0]),
     r"centre must have shape \(2,\) \(one point in parameter space\), got \(3,\)"),
    ("control-variate centre missing", lambda t: family("sgld_cv"), r"centre is required for control variates"),
    ("cyclical SGLD without its length", lambda t: family("csgld"), r"csgld needs total_steps"),
    ("momenta recorded in a basis", lambda t: sample(blr(), "sghmc", lr=1e-4, batch_size=4, num_draws=3,
                                                     record_basis=torch.eye(2), progress=False,
                                                     kernel_options={"record_momentum": True}),
     r"record_basis applies to positions; 'sghmc' records more than the position"),
    ("cyclical SGLD exploration out of range", lambda t: family("csgld", total_steps=30, exploration=1.2),
     r"exploration = 1\.2 is out of range; allowed: 0 <= exploration < 1"),
]


@pytest.mark.parametrize("case, call, message", FAMILY, ids=[c[0] for c in FAMILY])
def test_sgmcmc_family_settings_are_refused_with_one_line(tmp_path, case, call, message):
    with pytest.raises(ValueError, match=message) as info:
        call(tmp_path)
    assert len(str(info.value).splitlines()) == 1


# --------------------------------------------------------------- devices and processes

def _set_epoch_forgotten():
    from sgworld.distributed import DistributedWithoutReplacementSampler

    order = DistributedWithoutReplacementSampler(8, 2, num_replicas=2, rank=0)
    list(order)
    list(order)


def _world_not_dividing_batch():
    from sgworld.distributed import DistributedWithReplacementSampler

    DistributedWithReplacementSampler(9, 3, num_replicas=2, rank=0)


DEVICES_AND_PROCESSES = [
    ("device that holds no data", lambda: sgld(device="meta"), ValueError,
     r"device 'meta' holds shapes without data and cannot run chains; use 'cpu' or 'cuda'"),
    ("device name that is no device", lambda: sgld(device="gpu"), ValueError,
     r"device 'gpu' is not a device name; use 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    ("world size not dividing the batch", _world_not_dividing_batch, ValueError,
     r"batch_size = 3 is not divisible by the world size 2: .* choose a multiple of 2"),
    ("set_epoch forgotten", _set_epoch_forgotten, RuntimeError,
     r"epoch 0 was already iterated: call set_epoch\(epoch\) before every epoch"),
]
if not torch.cuda.is_available():
    DEVICES_AND_PROCESSES.append(("cuda on a machine without one", lambda: sgld(device="cuda"), ValueError,
                                  r"device 'cuda' is not available here .*; use device='cpu'"))


@pytest.mark.parametrize("case, call, error, message", DEVICES_AND_PROCESSES, ids=[c[0] for c in DEVICES_AND_PROCESSES])
def test_devices_and_processes_are_refused_with_one_line(case, call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    assert len(str(info.value).splitlines()) == 1


def test_cli_device_that_cannot_run_chains_exits_2_and_writes_nothing(tmp_path, capsys):
    assert main(["run", "posterior", "--quick", "--device", "meta", "--out", str(tmp_path / "d"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "device 'meta' holds shapes without data" in err
    assert not (tmp_path / "d").exists()
