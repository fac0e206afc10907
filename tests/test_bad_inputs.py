"""The catalogue of bad inputs: each gets an error of the documented type whose message names the
value and the fix, through the Python API, the command line and files on disk."""

import gzip
import math

import pytest
import torch

from sgworld import (BayesianLinearRegression, CheckpointError, DivergenceError, IndexStream, Trace, TraceFileError,
                     sample)
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
    return sample(blr(), "ula", lr=1.0, chains=2, init=torch.full((2,), 1e3, dtype=torch.float64), num_draws=500,
                  progress=False)


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
    ("unknown method", lambda t: sgld(method="hmc"), ValueError, r"unknown method 'hmc'; choose one of: sgd, sgld"),
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
