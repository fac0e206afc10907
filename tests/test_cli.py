import subprocess
import sys

import pytest

from sgworld import __version__
from sgworld.cli import main


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0 and "--set KEY=VALUE" in capsys.readouterr().out


def test_list_names_every_study(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "posterior" in out and "regression" in out


@pytest.mark.parametrize("argv, message", [
    (["run", "nosuchstudy"], "unknown study 'nosuchstudy'"),
    (["run", "posterior", "--set", "chains"], "--set expects key=value, got 'chains'"),
    (["run", "posterior", "--set", "nosuch=1"], "unknown setting 'nosuch'"),
    (["run", "posterior", "--set", "chains=many"], "setting 'chains' expects int, got 'many'"),
    (["run", "posterior", "--config", "/nonexistent.toml"], "config file '/nonexistent.toml' does not exist"),
    (["run", "posterior", "--quick", "--set", "batch_size=1000"], "batch_size = 1000 is out of range"),
    (["run", "posterior", "--quick", "--set", "methods=sgld,hmc"], "unknown method 'hmc'"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    assert main(argv + ["--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_malformed_toml_exits_2(tmp_path, capsys):
    bad = tmp_path / "c.toml"
    bad.write_text("chains = = 3\n")
    assert main(["run", "posterior", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "is not valid TOML" in capsys.readouterr().err


def test_precedence_defaults_config_set_flags(tmp_path):
    from sgworld.experiments import posterior
    from sgworld.experiments.common import load_toml, resolve_config

    cfg = tmp_path / "c.toml"
    cfg.write_text("chains = 64\nseed = 3\nlrs = [1e-4, 2e-4]\n")
    config = resolve_config(posterior.Config, posterior.QUICK, load_toml(cfg), {"seed": "4"}, {"seed": 5})
    assert config.chains == 64 and config.seed == 5 and config.lrs == (1e-4, 2e-4)
    assert config.n == posterior.QUICK["n"]


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "sgworld", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


# --------------------------------------------------------------------------- settings: --help and --print-config


@pytest.mark.parametrize("study", ["posterior", "regression", "digits"])
def test_study_help_lists_settings_with_defaults_and_ranges(capsys, study):
    import dataclasses

    from sgworld.experiments import load_study

    with pytest.raises(SystemExit) as exc:
        main(["run", study, "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--print-config" in out and f"settings of {study!r}" in out
    for field in dataclasses.fields(load_study(study).Config):
        assert f"\n  {field.name} = " in out and "; allowed: " in out.split(f"\n  {field.name} = ")[1].split("\n")[0]
    if study == "posterior":
        assert "\n  chains = 2048 (quick: 128)  [int; allowed: >= 2]\n      chains per run\n" in out


def test_print_config_shows_resolved_settings_and_writes_nothing(tmp_path, capsys):
    import json

    out = tmp_path / "o"
    assert main(["run", "posterior", "--quick", "--set", "chains=64", "--seed", "7", "--print-config",
                 "--out", str(out)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["study"] == "posterior" and shown["chains"] == 64 and shown["seed"] == 7 and shown["n"] == 100
    assert not out.exists()
    assert main(["run", "posterior", "--set", "chains=-1", "--print-config"]) == 0  # resolves, does not validate
    assert json.loads(capsys.readouterr().out)["chains"] == -1


def test_output_cut_short_by_its_reader_is_not_a_traceback():
    """``sgworld run STUDY --print-config | true``: the closed pipe ends the command quietly."""
    proc = subprocess.run(f"{sys.executable} -m sgworld run posterior --print-config | true", shell=True,
                          capture_output=True, text=True, timeout=120)
    assert proc.stderr == ""


# --------------------------------------------------------------------------- messages that give the right advice


@pytest.mark.parametrize("error", [MemoryError("Unable to allocate 14.5 GiB for an array"),
                                   RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                                                "allocate memory: you tried to allocate 80000000000 bytes.")])
def test_out_of_memory_advises_smaller_settings_not_resume(tmp_path, capsys, monkeypatch, error):
    from sgworld.experiments import posterior

    def run(*args, **kwargs):
        raise error

    monkeypatch.setattr(posterior, "run", run)
    assert main(["run", "posterior", "--quick", "--out", str(tmp_path / "o"), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sgworld: error: out of memory (")
    assert "resuming would run out again: lower chains" in err and "continue with" not in err


def test_resume_is_advised_only_when_something_was_checkpointed(tmp_path, capsys, monkeypatch):
    from sgworld.experiments import posterior

    def run(config, out_dir, **kwargs):
        if kwargs["checkpoint_every"] == 5.0:
            (out_dir / "checkpoints").mkdir()
        raise ZeroDivisionError("integer modulo by zero")

    monkeypatch.setattr(posterior, "run", run)
    assert main(["run", "posterior", "--quick", "--out", str(tmp_path / "a"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "Nothing was checkpointed: start again with 'sgworld run'" in err and "sgworld resume" not in err
    assert main(["run", "posterior", "--quick", "--out", str(tmp_path / "b"), "-q", "--checkpoint-every", "5"]) == 1
    assert f"continue with 'sgworld resume {tmp_path / 'b'}'" in capsys.readouterr().err


@pytest.mark.parametrize("study", ["posterior", "regression", "digits"])
def test_a_run_that_cannot_fit_is_refused_before_it_starts(tmp_path, capsys, study):
    out = tmp_path / "o"
    assert main(["run", study, "--quick", "--set", "chains=1000000000", "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "this run needs at least" in err and "chains" in err
    assert " is available; lower chains" in err or " is free; lower chains" in err
    assert not (out / "checkpoints").exists()


# --------------------------------------------------------------------------- resume cannot mix two runs

TINY_REGRESSION = ["--set", "chains=32", "--set", "steps=120", "--set", "segment=60", "--set", "groups=4",
                   "--set", "ft_steps=120", "--set", "bootstrap=20", "--set", "model_free_chains=32",
                   "--set", "wor_epochs=100"]


def _interrupted_regression(out, monkeypatch, seed=0):
    """`sgworld run regression` stopped after its WR simulation finished its trace folder (as a kill would)."""
    from sgworld import nonequilibrium

    simulate = nonequilibrium._simulate

    def stop_at_wor(problem, settings, scheme, *args, **kwargs):
        if scheme == "wor":
            raise KeyboardInterrupt
        return simulate(problem, settings, scheme, *args, **kwargs)

    monkeypatch.setattr(nonequilibrium, "_simulate", stop_at_wor)
    assert main(["run", "regression", *TINY_REGRESSION, "--seed", str(seed), "--checkpoint-every", "0",
                 "--out", str(out), "-q"]) == 130
    assert (out / "checkpoints" / "sgd-wr" / "meta.json").is_file()


def _edit_config(out, **changes):
    import json

    path = out / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("changes, named", [({"lr": 2e-7}, "lr: 1e-07 there, 2e-07 now"),
                                            ({"steps": 240}, "steps: 120 there, 240 now")])
def test_resume_with_edited_settings_is_refused(tmp_path, capsys, monkeypatch, changes, named):
    out = tmp_path / "r"
    _interrupted_regression(out, monkeypatch)
    capsys.readouterr()
    _edit_config(out, **changes)
    assert main(["resume", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and "resuming would mix two runs" in err
    _edit_config(out, lr=1e-7, steps=120)  # restored: the resume goes on (and is stopped again at WOR)
    assert main(["resume", str(out), "-q"]) == 130


def test_resume_with_a_checkpoint_of_another_seed_is_refused(tmp_path, capsys, monkeypatch):
    import shutil

    out, other = tmp_path / "r", tmp_path / "other"
    _interrupted_regression(out, monkeypatch)
    _interrupted_regression(other, monkeypatch, seed=1)
    capsys.readouterr()
    shutil.rmtree(out / "checkpoints" / "sgd-wr")
    shutil.copytree(other / "checkpoints" / "sgd-wr", out / "checkpoints" / "sgd-wr")
    assert main(["resume", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sgd-wr' holds a different run (" in err and "seed: " in err, err
