"""A full disk stops sample(out=...) with a clear error and leaves the last checkpoint usable."""

import numpy as np
import pytest
import torch

import sgworld._disk
import sgworld.checkpoint
import sgworld.run
import sgworld.trace
from sgworld import BayesianLinearRegression, sample
from sgworld.checkpoint import load_checkpoint
from sgworld.errors import DiskSpaceError

PLENTY = 1 << 50


def blr():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    return BayesianLinearRegression(X, X @ torch.tensor([1.0, -0.5], dtype=torch.float64), 0.5, 1.0)


KW = dict(method="sgld", lr=1e-3, batch_size=4, chains=4, num_draws=400, thin=5, seed=3, progress=False)


def free_space(monkeypatch, *answers):
    """Make the free space report ``answers`` in turn (the last one from then on)."""
    answers = list(answers)
    monkeypatch.setattr(sgworld._disk, "free_bytes", lambda folder: answers.pop(0) if len(answers) > 1 else answers[0])


def test_draws_file_is_checked_before_it_is_mapped(tmp_path, monkeypatch):
    free_space(monkeypatch, 1000)
    out = tmp_path / "run"
    with pytest.raises(DiskSpaceError, match=rf"not enough disk space in '{out}' for the draws file draws\.npy: "
                                             r".*\(\d+ bytes\) needed, 1000 bytes free\. Free up space"):
        sample(blr(), out=out, **KW)
    assert not out.exists() or not any(out.iterdir())  # nothing half-made: the same call starts afresh
    free_space(monkeypatch, PLENTY)
    assert np.array_equal(np.asarray(sample(blr(), out=out, **KW).draws), sample(blr(), **KW).draws)


def test_full_disk_at_a_checkpoint_keeps_the_previous_one_and_resumes(tmp_path, monkeypatch):
    """The space runs out at the third checkpoint: the error names it, the second checkpoint is intact, and
    the same call, once space is back, finishes with the trace of an uninterrupted run bit for bit."""
    out = tmp_path / "run"
    free_space(monkeypatch, PLENTY, PLENTY, PLENTY, 10)  # draws file, two checkpoints, then full
    with pytest.raises(DiskSpaceError, match=r"for a checkpoint: .* needed, 10 bytes free.*continues from the last"):
        sample(blr(), out=out, checkpoint_every=0.0, **KW)
    saved = load_checkpoint(out)
    assert 0 < saved["step"] < 2000
    assert not (out / "checkpoint.pt.tmp").exists()
    free_space(monkeypatch, PLENTY)
    resumed = sample(blr(), out=out, checkpoint_every=0.0, **KW)
    assert np.array_equal(np.asarray(resumed.draws), sample(blr(), **KW).draws)


def test_unreserved_files_are_checked_block_by_block(tmp_path, monkeypatch):
    """Where the file system cannot reserve space, every block of draws is checked before it is written."""
    monkeypatch.setattr(sgworld.trace, "reserve", lambda *a: False)
    monkeypatch.setattr(sgworld.run, "_CHUNK_BYTES", 4 * 2 * 8 * 50)  # blocks of 50 draws
    out = tmp_path / "run"
    free_space(monkeypatch, PLENTY, PLENTY, 100)  # draws file, first block, then full
    with pytest.raises(DiskSpaceError, match=r"for a block of draws: .* needed, 100 bytes free"):
        sample(blr(), out=out, checkpoint_every=None, **KW)


def test_a_write_that_fails_for_space_becomes_disk_space_error(tmp_path, monkeypatch):
    """Another process fills the disk between the check and the write: ENOSPC from the write itself."""
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sgworld.checkpoint.torch, "save", full)
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "checkpoint.pt").write_bytes(b"previous")
    with pytest.raises(DiskSpaceError, match="for a checkpoint"):
        sgworld.checkpoint.save_checkpoint(tmp_path / "ck", {"step": 1})
    assert (tmp_path / "ck" / "checkpoint.pt").read_bytes() == b"previous"
    assert not (tmp_path / "ck" / "checkpoint.pt.tmp").exists()
