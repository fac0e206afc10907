"""The samplers study (sgworld run samplers --model FILE.py): a model the other studies do not know, end to end."""

from __future__ import annotations

import json

from sgworld.cli import main
from sgworld.experiments import samplers
from sgworld.experiments.common import resolve_config

from conftest import REPO

EXAMPLE = str(REPO / "examples" / "classifier_model.py")
TINY = ["--set", "chains=8", "--set", "burn_in=20", "--set", "draws=4", "--set", "thin=5", "--set",
        "reference_burn_in=20", "--set", "reference_draws=4", "--set", "reference_thin=2", "--set", "lr_hmax=0.1,1.0"]


def test_run_samplers_with_a_model_file_writes_metrics_figures_and_report(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", "samplers", "--model", EXAMPLE, "--out", str(out), "-q", *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == EXAMPLE and config["batch_size_resolved"] == 15 and config["study"] == "samplers"
    assert metrics["model"]["p"] == 2 * 8 + 8 + 8 * 3 + 3 and metrics["model"]["test"] == "held-out X_test, y_test"
    assert [(r["method"], r["lr_hmax"]) for r in metrics["runs"]] == [
        ("sgld", 0.1), ("sgworld", 0.1), ("sgld", 1.0), ("sgworld", 1.0)]
    assert metrics["distance"] == "tv_to_reference" and metrics["figures"] == list(samplers.FIGURES)
    assert all((out / name).is_file() for name in samplers.FIGURES) and (out / "report.html").is_file()
    assert not (out / "checkpoints").exists()
    assert all(c.name for c in samplers.checks(metrics))
    assert main(["resume", str(out)]) == 0 and "is finished" in capsys.readouterr().out


def test_without_a_model_the_study_says_how_to_give_one(tmp_path, capsys):
    assert main(["run", "samplers", "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "sgworld: error: the samplers study needs a model: pass --model FILE.py[:FACTORY] (see examples/ " \
                  "for a model file)"


def test_settings_resolve_with_the_model_flag():
    config = resolve_config(samplers.Config, samplers.QUICK, {"model": "m.py:build", "methods": "sgld,sgd:wor"})
    assert config.model == "m.py:build" and config.methods == ("sgld", "sgd:wor") and config.chains == 32
