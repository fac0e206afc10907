"""The --out folder: folders that are not ours are refused before anything is written, and one process at a
time holds a run folder; a lock left by a killed process does not block."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sgworld import __version__
from sgworld.cli import main
from sgworld.experiments.common import ConfigError
from sgworld.outdir import LOCK_NAME, FolderLock, check_out_folder, run_study

QUICK_FAIL = ["--set", "batch_size=1000"]  # a setting refused by the study itself, after the folder checks


def fake_run(folder, study="posterior", figures=("kl_vs_lr.png",)):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"study": study, "sgworld_version": __version__}))
    (folder / "metrics.json").write_text("{}")
    for name in figures:
        (folder / name).write_bytes(b"png")
    return folder


def cli(capsys, *argv):
    code = main(list(argv) + ["-q"])
    return code, capsys.readouterr().err.strip()


def test_a_folder_that_holds_no_sgworld_run_is_left_untouched(tmp_path, capsys):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "config.json").write_text('{"learning_rate": 3}')
    (user / "data.npz").write_bytes(b"the user's data")
    code, err = cli(capsys, "run", "posterior", "--quick", "--out", str(user))
    assert code == 2 and len(err.splitlines()) == 1
    assert "is a non-empty folder that holds no sgworld run (2 entries: config.json, data.npz)" in err
    assert sorted(p.name for p in user.iterdir()) == ["config.json", "data.npz"]
    assert (user / "config.json").read_text() == '{"learning_rate": 3}'
    assert (user / "data.npz").read_bytes() == b"the user's data"


@pytest.mark.parametrize("where, message", [
    (lambda t: t / "file.txt", "is a file, not a folder"),
    (lambda t: t / "file.txt" / "sub" / "out", "lies under the file"),
])
def test_file_targets_exit_2_with_one_line(tmp_path, capsys, where, message):
    (tmp_path / "file.txt").write_text("x")
    code, err = cli(capsys, "run", "posterior", "--quick", "--out", str(where(tmp_path)))
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert (tmp_path / "file.txt").read_text() == "x"


def _unwritable(tmp_path):
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        return folder / "out"
    return "/sys/sgworld-out"  # root writes anywhere but in sysfs


def test_unwritable_out_exits_2_with_one_line(tmp_path, capsys):
    target = _unwritable(tmp_path)
    try:
        os.mkdir(target)
    except OSError:
        pass
    else:  # pragma: no cover - this machine lets us write there
        os.rmdir(target)
        pytest.skip(f"{target} is writable here")
    code, err = cli(capsys, "run", "posterior", "--quick", "--out", str(target))
    assert code == 2 and "is not writable" in err and len(err.splitlines()) == 1


def test_empty_and_own_folders_are_accepted(tmp_path):
    assert check_out_folder(tmp_path / "new" / "out") is None
    (tmp_path / "empty").mkdir()
    assert check_out_folder(tmp_path / "empty") is None
    assert check_out_folder(fake_run(tmp_path / "run", "regression")) == "regression"
    # a run refused before it wrote config.json is still recognised by its log
    (tmp_path / "early").mkdir()
    (tmp_path / "early" / "run.log").write_text(f"2026-01-01 INFO root: sgworld {__version__}: run digits with "
                                                "Config(...)\n")
    assert run_study(tmp_path / "early") == "digits"


def test_another_studys_run_needs_overwrite_which_clears_it(tmp_path, capsys):
    out = fake_run(tmp_path / "out", "posterior", ("kl_vs_lr.png",))
    code, err = cli(capsys, "run", "regression", "--quick", "--out", str(out), *QUICK_FAIL)
    assert code == 2 and "holds a 'posterior' run; choose another folder, or pass --overwrite" in err
    assert (out / "kl_vs_lr.png").exists()
    code, err = cli(capsys, "run", "regression", "--quick", "--out", str(out), "--overwrite", *QUICK_FAIL)
    assert code == 2 and "batch_size = 1000 is out of range" in err  # refused by the study, after clearing
    assert not (out / "kl_vs_lr.png").exists() and not (out / "metrics.json").exists()


def test_lock_refuses_a_second_process_and_overwrite(tmp_path, capsys):
    out = fake_run(tmp_path / "out")
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "sgld-lr0").mkdir()
    with FolderLock(out):
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
        for argv in (["run", "posterior", "--quick", "--out", str(out)],
                     ["run", "posterior", "--quick", "--out", str(out), "--overwrite"],
                     ["resume", str(out)]):
            code, err = cli(capsys, *argv)
            assert code == 2 and len(err.splitlines()) == 1, err
            assert f"is in use by a running sgworld process (pid {os.getpid()})" in err
        assert (out / "checkpoints" / "sgld-lr0").is_dir()  # --overwrite deleted nothing
    assert not (out / LOCK_NAME).exists()
    with FolderLock(out):  # released
        pass


HOLD = ("import sys, time\nfrom sgworld.outdir import FolderLock\nlock = FolderLock(sys.argv[1]).__enter__()\n"
        "print('locked', flush=True)\ntime.sleep(120)\n")


def test_lock_of_a_live_process_blocks_and_of_a_killed_one_does_not(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=f"in use by a running sgworld process \\(pid {holder.pid}\\)"):
            FolderLock(out).__enter__()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.stdout.close()
    assert (out / LOCK_NAME).exists()  # left behind by the killed process ...
    start = time.monotonic()
    with FolderLock(out):  # ... and stale: it does not block
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert time.monotonic() - start < 5
