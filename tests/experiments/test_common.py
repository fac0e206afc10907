"""What every study shares: checkpoints that belong to one run, settings resolution and description,
and the resource check before a run."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import REPO
from sgworld.experiments import STUDIES, load_study
from sgworld.experiments import common, posterior
from sgworld.experiments.common import (ConfigError, StudyCheckpoints, check_resources, describe_settings,
                                        resolve_config)


@dataclasses.dataclass(frozen=True)
class Config:
    lr: float = 1e-3
    steps: int = 100
    data_dir: str | None = None
    seed: int = 0


DATA = (np.arange(6.0), np.ones(3))


def interrupted_store(tmp_path, name, config=Config(), data=DATA):
    """A store as an interrupted run leaves it: named arrays saved and one sampler run finished."""
    store = StudyCheckpoints(tmp_path / name, 0.0, config=config, data=data)
    store.save("partial", position=np.full(3, float(config.seed)))
    run_sampler(store, config.seed)
    return store


def run_sampler(store, seed):
    from sgworld import BayesianLinearRegression, sample

    X = np.linspace(-1, 1, 20)[:, None] * np.ones(2) + np.eye(20, 2)
    problem = BayesianLinearRegression(torch.tensor(X), torch.tensor(X[:, 0]), 0.5, 1.0)
    return sample(problem, "sgld", lr=1e-3, batch_size=4, chains=2, num_draws=3, seed=seed, progress=False,
                  **store.sample_args("trace"))


def test_same_run_resumes(tmp_path):
    interrupted_store(tmp_path, "a")
    again = StudyCheckpoints(tmp_path / "a", 0.0, config=Config(), data=DATA)
    assert again.load("partial")["position"].tolist() == [0.0, 0.0, 0.0]
    first = run_sampler(again, 0)  # the finished run is read back
    assert json.loads((again.root / "trace" / "meta.json").read_text())["complete"]
    assert np.array_equal(first.draws, run_sampler(StudyCheckpoints(tmp_path / "b", 0.0), 0).draws)
    # a data path is not fingerprinted (its content is): a moved data folder resumes
    StudyCheckpoints(tmp_path / "a", 0.0, config=Config(data_dir="/elsewhere"), data=DATA)


@pytest.mark.parametrize("change, named", [
    ({"lr": 2e-3}, "lr: 0.001 there, 0.002 now"),
    ({"steps": 40}, "steps: 100 there, 40 now"),
    ({"seed": 1}, "seed: 0 there, 1 now"),
])
def test_other_settings_are_refused(tmp_path, change, named):
    interrupted_store(tmp_path, "a")
    with pytest.raises(ConfigError, match=f"belong to other settings \\({named}\\).*restore the settings"):
        StudyCheckpoints(tmp_path / "a", 0.0, config=Config(**change), data=DATA)


def test_other_data_are_refused(tmp_path):
    interrupted_store(tmp_path, "a")
    with pytest.raises(ConfigError, match="the data differ"):
        StudyCheckpoints(tmp_path / "a", 0.0, config=Config(), data=(np.arange(6.0) + 1, np.ones(3)))


def test_copied_checkpoints_are_refused(tmp_path):
    a = interrupted_store(tmp_path, "a")
    b = interrupted_store(tmp_path, "b", Config(seed=1))
    # one array file copied from the run with another seed
    shutil.copy(b.root / "partial.npz", a.root / "partial.npz")
    with pytest.raises(ConfigError, match="partial.npz belongs to another run.*delete .*partial.npz"):
        StudyCheckpoints(tmp_path / "a", 0.0, config=Config(), data=DATA).load("partial")
    # one trace folder copied: sample() compares every argument of the call with the folder's metadata
    shutil.rmtree(a.root / "trace")
    shutil.copytree(b.root / "trace", a.root / "trace")
    with pytest.raises(ValueError, match="holds a different run \\(seed: 1 there, 0 now\\)"):
        run_sampler(StudyCheckpoints(tmp_path / "a", 0.0, config=Config(), data=DATA), 0)
    # the whole folder copied
    shutil.rmtree(a.root)
    shutil.copytree(b.root, a.root)
    with pytest.raises(ConfigError, match="seed: 1 there, 0 now"):
        StudyCheckpoints(tmp_path / "a", 0.0, config=Config(), data=DATA)


def test_checkpoints_without_a_fingerprint_are_refused(tmp_path):
    root = tmp_path / "a" / "checkpoints"
    root.mkdir(parents=True)
    StudyCheckpoints(tmp_path / "a").save("partial", x=np.zeros(2))  # no config: not fingerprinted
    with pytest.raises(ConfigError, match="carry no fingerprint"):
        StudyCheckpoints(tmp_path / "a", 0.0, config=Config(), data=DATA)


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_study_fingerprints_its_checkpoints(tmp_path, name, monkeypatch):
    """Each study builds its store from its config and data (stopped right after, before any sampling)."""
    study = load_study(name)
    seen = []

    class Stop(Exception):
        pass

    def spy(self, *args, **kwargs):
        seen.append(kwargs)
        raise Stop

    monkeypatch.setattr(common.StudyCheckpoints, "__init__", spy)
    user_model = [{"model": str(REPO / "examples" / "regression_model.py")}] if getattr(study, "USER_MODEL", 0) else []
    config = resolve_config(study.Config, study.QUICK, *user_model)
    with pytest.raises(Stop):
        study.run(config, tmp_path, progress=False)
    # settings left None (a user's model: lr, batch_size) may be resolved before the store is built
    got = seen[0].get("config")
    assert got is not None and all(getattr(got, f.name) == getattr(config, f.name) for f in dataclasses.fields(config)
                                   if getattr(config, f.name) is not None), f"{name}: no config in its store"
    # The hmc study's targets are closed-form energies: its settings determine them, so it has no data.
    assert "data" in seen[0] and (len(seen[0]["data"]) >= 1 or name == "hmc"), f"{name}: no data in its store"


def test_settings_description_lists_default_type_and_range():
    for study in map(load_study, STUDIES):
        text = describe_settings(study.Config, study.QUICK)
        for f in dataclasses.fields(study.Config):
            line = next(line for line in text.splitlines() if line.startswith(f"  {f.name} = "))
            assert json.dumps(common.to_jsonable(f.default)) in line and "; allowed: " in line, line
    text = describe_settings(posterior.Config, posterior.QUICK)
    assert "  chains = 2048 (quick: 128)  [int; allowed: >= 2]" in text
    assert "  batch_size = 10  [int; allowed: 1 <= b <= n]" in text


@pytest.mark.parametrize("layer, message", [
    ({"seed": "-1"}, "seed = -1 is negative; seeds are integers >= 0"),
    ({"seed": -3}, "seed = -3 is negative"),
    ({"methods": ""}, "setting 'methods' is empty; give one or more comma-separated values"),
    ({"methods": []}, "setting 'methods' is empty"),
])
def test_resolve_config_refuses_negative_seeds_and_empty_lists(layer, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(posterior.Config, layer)
    assert resolve_config(posterior.Config, {"lrs": ""}).lrs is None  # an optional list may be emptied


def test_resource_check_names_estimate_available_and_fix(tmp_path, monkeypatch):
    check_resources(tmp_path, memory=1e3, disk=1e3, sizes="tiny")
    monkeypatch.setattr(common, "available_memory", lambda: 2_000_000_000)
    with pytest.raises(ConfigError, match=r"needs at least 3 GB of memory \(K x p\) but 2 GB is available; "
                                          "lower chains"):
        check_resources(tmp_path, memory=3e9, disk=1e3, sizes="K x p")
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(ConfigError, match=r"of disk in .*\(K x p\) but .* is free; lower chains.*another --out"):
        check_resources(tmp_path / "new" / "out", memory=1e3, disk=2.0 * free, sizes="K x p")
