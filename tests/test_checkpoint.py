"""Streaming traces, checkpoints and resume: an interrupted run continues bit for bit."""

import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

import sgworld.run
from sgworld import CheckpointError, Trace, TraceFileError, sample
from sgworld.checkpoint import CURRENT, PREVIOUS, load_checkpoint

PROBLEM = textwrap.dedent("""
    import torch
    from sgworld.problems import BayesianLinearRegression
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    problem = BayesianLinearRegression(X, X @ torch.tensor([1.0, -0.5], dtype=torch.float64), 0.5, 1.0)
""")

# method -> sample() arguments: 4000 steps, checkpoints every 20 steps (total / 200) with
# checkpoint_every=0, so the kill lands after the second checkpoint and well before the end
RUNS = {
    "sgld": dict(method="sgld", lr=1e-3, batch_size=4, chains=16, num_draws=800, thin=5, seed=3),
    "sgworld": dict(method="sgworld", lr=1e-3, batch_size=4, chains=16, num_draws=400, thin=10, seed=3),
    "mala": dict(method="mala", lr=5e-3, chains=16, num_draws=400, thin=10, seed=3),
}


def blr():
    scope = {}
    exec(PROBLEM, scope)
    return scope["problem"]


def run_and_kill(out, kwargs) -> int:
    """Start the run in a subprocess, SIGKILL it after its second checkpoint; return the step it had saved."""
    script = PROBLEM + textwrap.dedent(f"""
        from sgworld import sample
        sample(problem, out={str(out)!r}, checkpoint_every=0.0, progress=False, **{kwargs!r})
    """)
    kill_when([sys.executable, "-c", script], lambda: (out / PREVIOUS).exists(), timeout=120)
    return load_checkpoint(out)["step"]


def kill_when(cmd, ready, timeout: float) -> None:
    """Run ``cmd`` in a subprocess and SIGKILL it as soon as ``ready()`` holds (it must not end first)."""
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, f"not ready within {timeout} s"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("name", list(RUNS))
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, name):
    kwargs = RUNS[name]
    out = tmp_path / "run"
    saved_step = run_and_kill(out, kwargs)
    total = kwargs["num_draws"] * kwargs["thin"]
    assert 0 < saved_step < total
    with pytest.raises(TraceFileError, match="unfinished run"):
        Trace.load(out)
    resumed = sample(blr(), out=out, progress=False, **kwargs)
    reference = sample(blr(), progress=False, **kwargs)
    assert resumed.draws.dtype == reference.draws.dtype
    assert np.array_equal(resumed.draws, reference.draws)
    assert np.array_equal(resumed.steps, reference.steps)
    assert resumed.meta.get("acceptance_rate") == reference.meta.get("acceptance_rate")
    assert not (out / CURRENT).exists()          # a finished run keeps only the trace
    again = Trace.load(out)                        # and loads from disk, memory-mapped
    assert np.array_equal(again.draws, reference.draws)


def test_corrupt_newest_checkpoint_falls_back_to_previous(tmp_path, caplog):
    kwargs = RUNS["sgld"]
    out = tmp_path / "run"
    run_and_kill(out, kwargs)
    previous_step = torch.load(out / PREVIOUS, weights_only=True)["step"]
    (out / CURRENT).write_bytes((out / CURRENT).read_bytes()[:50])   # truncated
    assert load_checkpoint(out)["step"] == previous_step
    assert "unreadable" in caplog.text
    resumed = sample(blr(), out=out, progress=False, **kwargs)
    assert np.array_equal(resumed.draws, sample(blr(), progress=False, **kwargs).draws)


def test_no_readable_checkpoint_is_a_clear_error(tmp_path):
    out = tmp_path / "run"
    run_and_kill(out, RUNS["sgld"])
    for name in (CURRENT, PREVIOUS):
        (out / name).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no readable checkpoint.*delete the folder"):
        sample(blr(), out=out, progress=False, **RUNS["sgld"])


def test_streamed_chunks_equal_in_memory_run(tmp_path, monkeypatch):
    # 3 draws per chunk: many chunk boundaries, the last chunk partial
    kwargs = dict(method="sgworld", lr=1e-3, batch_size=4, chains=5, num_draws=11, thin=3, seed=1)
    monkeypatch.setattr(sgworld.run, "_CHUNK_BYTES", 5 * 2 * 8 * 3)
    streamed = sample(blr(), out=tmp_path / "t", progress=False, **kwargs)
    assert np.array_equal(streamed.draws, sample(blr(), progress=False, **kwargs).draws)
    meta = json.loads((tmp_path / "t" / "meta.json").read_text())
    assert meta["complete"] is True and meta["fingerprint"]


def test_finished_run_is_returned_and_a_different_run_is_refused(tmp_path):
    kwargs = dict(method="sgld", lr=1e-3, batch_size=4, chains=2, num_draws=5, seed=1)
    first = sample(blr(), out=tmp_path / "t", progress=False, **kwargs)
    second = sample(blr(), out=tmp_path / "t", progress=False, **kwargs)
    assert np.array_equal(first.draws, second.draws)
    with pytest.raises(ValueError, match="holds a different run.*lr"):
        sample(blr(), out=tmp_path / "t", progress=False, **{**kwargs, "lr": 2e-3})
    other = blr()
    other.data[1].add_(1.0)  # same shapes, different data
    with pytest.raises(ValueError, match="holds a different run.*fingerprint"):
        sample(other, out=tmp_path / "t", progress=False, **kwargs)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not an sgworld trace folder"):
        sample(blr(), out=tmp_path / "junk", progress=False, **kwargs)


def test_streaming_memory_is_bounded(tmp_path, monkeypatch):
    """The in-memory buffer is one chunk, however many draws are requested."""
    monkeypatch.setattr(sgworld.run, "_CHUNK_BYTES", 1 << 12)
    seen = []
    original = sgworld.run._Recorder.__init__

    def spy(self, *args, **kw):
        original(self, *args, **kw)
        seen.append(self.buffer.numel() * self.buffer.element_size())

    monkeypatch.setattr(sgworld.run._Recorder, "__init__", spy)
    trace = sample(blr(), "sgld", lr=1e-3, batch_size=4, chains=8, num_draws=5000, seed=0, progress=False,
                   out=tmp_path / "t")
    assert seen and seen[0] <= 1 << 12
    assert trace.draws.shape == (8, 5000, 2) and np.isfinite(trace.draws).all()


def _metrics_without_timings(path):
    metrics = json.loads(path.read_text())
    metrics.pop("runtime_s", None)
    return metrics


def test_cli_study_killed_and_resumed_equals_uninterrupted(tmp_path):
    """`sgworld run` killed with SIGKILL in the middle of its third sampler run, then `sgworld resume`."""
    out, reference = tmp_path / "killed", tmp_path / "reference"
    cmd = [sys.executable, "-m", "sgworld", "run", "posterior", "--quick", "-q", "--checkpoint-every", "0.01",
           "--set", "num_lrs=2", "--set", "methods=sgld,sgworld", "--set", "wor_permutations=200"]
    kill_when(cmd + ["--out", str(out)], timeout=300,
              ready=lambda: len(list((out / "checkpoints").glob("*"))) >= 3
              and any((out / "checkpoints").glob("*/checkpoint.prev.pt")))
    assert not (out / "metrics.json").exists()
    again = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "sgworld resume" in again.stderr   # refuses to overwrite silently
    resumed = subprocess.run([sys.executable, "-m", "sgworld", "resume", str(out), "-q"], capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" not in resumed.stderr
    assert subprocess.run(cmd + ["--out", str(reference)]).returncode == 0
    assert _metrics_without_timings(out / "metrics.json") == _metrics_without_timings(reference / "metrics.json")
    assert not (out / "checkpoints").exists()
    log = (out / "run.log").read_text()
    assert "resume posterior" in log
