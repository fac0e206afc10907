"""The studies: one module each (a short configuration of the library), and their registry.

Each study module follows the contract in :mod:`sgworld.experiments.common`. The CLI and the report
find studies here, by name.
"""

import importlib

from .common import ConfigError

STUDIES = {
    "posterior": "sgworld.experiments.posterior",
    "regression": "sgworld.experiments.regression",
    "digits": "sgworld.experiments.digits",
    "hmc": "sgworld.experiments.hmc",
    "nonequilibrium": "sgworld.experiments.nonequilibrium",
    "samplers": "sgworld.experiments.samplers",
}


def load_study(name: str):
    """The study module registered as ``name``; ConfigError naming the known studies otherwise."""
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}; available: {', '.join(STUDIES)} (see 'sgworld list')")
    return importlib.import_module(STUDIES[name])
