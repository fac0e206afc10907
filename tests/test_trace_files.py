"""Trace files that are not what they claim are refused: checksums of trace folders, bare .npy files."""

import json

import numpy as np
import pytest
import torch

from sgworld import BayesianLinearRegression, Trace, TraceFileError, sample
from sgworld.trace import CHECKSUM_KEY, file_sha256


def finished_folder(tmp_path):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    problem = BayesianLinearRegression(X, X @ torch.tensor([1.0, -0.5], dtype=torch.float64), 0.5, 1.0)
    out = tmp_path / "run"
    trace = sample(problem, "sgld", lr=1e-3, batch_size=4, chains=3, num_draws=50, seed=1, progress=False, out=out)
    return out, np.array(trace.draws)


def test_finished_folder_records_the_sha256_of_its_draws(tmp_path):
    out, draws = finished_folder(tmp_path)
    meta = json.loads((out / "meta.json").read_text())
    assert meta[CHECKSUM_KEY] == file_sha256(out / "draws.npy")
    loaded = Trace.load(out)
    assert np.array_equal(loaded.draws, draws) and CHECKSUM_KEY not in loaded.meta


def test_zeroed_tail_is_detected(tmp_path):
    out, draws = finished_folder(tmp_path)
    raw = bytearray((out / "draws.npy").read_bytes())
    raw[-8 * 20:] = bytes(8 * 20)  # the last 20 values zeroed, as a crash or a full disk leaves them
    (out / "draws.npy").write_bytes(bytes(raw))
    with pytest.raises(TraceFileError, match=r"draws\.npy' does not match the SHA-256 recorded when its run finished"):
        Trace.load(out)
    unchecked = Trace.load(out, verify=False)  # opting out reads the damaged file as it is
    assert not np.array_equal(unchecked.draws, draws)


def test_folder_without_checksum_still_loads(tmp_path):
    """Folders written before checksums existed load unverified."""
    out, draws = finished_folder(tmp_path)
    meta = json.loads((out / "meta.json").read_text())
    del meta[CHECKSUM_KEY]
    (out / "meta.json").write_text(json.dumps(meta))
    assert np.array_equal(Trace.load(out).draws, draws)


def test_bare_npy_file_is_refused_with_a_hint(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 4)))
    with pytest.raises(TraceFileError, match=r"x\.npy' is a bare numpy array, not an sgworld trace.*numpy\.load"):
        Trace.load(tmp_path / "x.npy")
    out, _ = finished_folder(tmp_path)
    with pytest.raises(TraceFileError, match=rf"load the folder instead: Trace\.load\('{out}'\)"):
        Trace.load(out / "draws.npy")
