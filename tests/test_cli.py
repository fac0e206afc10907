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
