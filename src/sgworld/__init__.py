"""sgworld: stochastic-gradient posterior sampling (SGD, SGLD, SGWORLD) and nonequilibrium
analysis of neural-network training (arXiv 2306.03521)."""

__version__ = "0.1.0"

from .batching import SCHEMES, IndexStream, noise_factor  # noqa: E402
from .errors import (  # noqa: E402
    CheckpointError, DiskSpaceError, DivergenceError, StepSizeError, TheoryRangeWarning, TraceFileError,
)
from .problems import (  # noqa: E402
    BayesianLinearRegression, EnergyProblem, GaussianLocation, Problem, QuadraticProblem, from_module,
)
from .run import sample  # noqa: E402
from .samplers import (  # noqa: E402
    csgld, hmc, lahmc, mala, mjhmc, psgld, sgd, sghmc, sgld, sgld_cv, sgnht, sgworld, ula,
)
from .trace import Trace  # noqa: E402
from .nonequilibrium import analyze  # noqa: E402
from .comparison import compare_samplers  # noqa: E402
from . import diagnostics, distributed, optim, schedules  # noqa: E402  (sg.optim.SGWORLD after `import sgworld`)

__all__ = [
    "CheckpointError", "DiskSpaceError", "StepSizeError", "TheoryRangeWarning",
    "__version__", "SCHEMES", "IndexStream", "noise_factor", "DivergenceError", "TraceFileError", "Problem",
    "QuadraticProblem", "BayesianLinearRegression", "GaussianLocation", "from_module", "sample",
    "sgd", "sgld", "sgworld", "ula", "mala", "hmc", "lahmc", "mjhmc", "sghmc", "sgnht", "psgld", "sgld_cv", "csgld",
    "EnergyProblem", "Trace", "analyze", "compare_samplers", "diagnostics", "distributed", "optim", "schedules",
]
