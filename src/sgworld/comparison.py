"""Which sampler reaches my posterior: stochastic-gradient samplers against an exact reference, for any Problem.

:func:`compare_samplers` runs, through :func:`sgworld.sample` only,

1. the reference: an exact (Metropolis-adjusted) sampler, MALA by default, with ``chains`` chains started
   from the Laplace approximation ``N(w*, H^{-1})`` at the minimum ``w*`` of ``L`` (or from ``w*`` itself
   when p is too large for a dense Hessian; then ``h_max`` comes from Lanczos, :mod:`sgworld.theory`);
2. every method in ``methods`` (``NAME`` or ``NAME:SCHEME``, e.g. ``sgld``, ``sgworld``, ``sgd:wor``) at every
   learning rate in ``lrs``, at temperature T, its chains started at the reference chains' last draws
   (so no long burn-in is spent on the slow soft modes), each with the update rule
   ``w <- w - lr grad L_B(w) + sqrt(2 lr T) xi`` of its kernel (docs/concepts.md);

and measures for each run

* the distance of its posterior predictive on the test inputs to the reference's (``test`` given):
  classifiers: the mean total-variation distance ``(1/n) sum_i (1/2) sum_c |p(c|x_i) - q(c|x_i)|``
  with test accuracy, NLL and expected calibration error (:mod:`sgworld.predictive`); Gaussian
  likelihoods: the mean Hellinger distance between the moment-matched Gaussian predictives
  ``N(mean_s f(x; w_s), noise_std^2 + var_s f(x; w_s))`` per input and output, with the test RMSE of the
  predictive mean and its Gaussian NLL;
* the distance of its posterior moments to the reference's, in reference standard deviations:
  ``mean_error_sd = rms_j (mean_j - mean_ref_j) / sd_ref_j`` and ``log_sd_ratio = rms_j log(sd_j / sd_ref_j)``;
* its ESS (smallest and median over parameters) and largest split-R-hat (:mod:`sgworld.diagnostics`),
  run time and steps (one minibatch gradient each; the reference reports full-batch gradient evaluations).

The Monte Carlo floor of the predictive distance is ``distance(first half of the reference chains,
second half) / sqrt 2``: what two independent estimates of the same predictive from ``chains`` chains
differ by. Distances near the floor do not resolve the methods.

References: Welling & Teh, ICML 2011 (SGLD); Adhikari et al., arXiv 2306.03521 (SGWORLD); Roberts &
Tweedie, Bernoulli 1996 (MALA); Guo et al., ICML 2017 (ECE).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from . import diagnostics, predictive
from ._checks import check_choice, check_int_range
from .checks import Check
from .problems import Problem
from .run import sample
from .samplers import METHODS

__all__ = ["TestSet", "SamplerRun", "Reference", "Comparison", "compare_samplers", "module_predictor",
           "parse_method", "DENSE_MAX"]

LIKELIHOODS = ("categorical", "gaussian")
DISTANCES = {"categorical": "tv_to_reference", "gaussian": "hellinger_to_reference"}  # key of each run's distance
REFERENCE_METHODS = ("mala", "hmc", "lahmc", "mjhmc")  # Metropolis-adjusted: exact for any step size
DENSE_MAX = 4096  # largest p for which the dense Hessian (Laplace start, h_min) is formed
_CHUNK = 256      # draws per forward pass of the predictive


@dataclass(frozen=True, eq=False)
class TestSet:
    """Held-out data and how the model predicts it.

    ``predict(w, X)`` maps draws ``w`` (S, p) to the model's outputs on ``X``: logits (S, n, C) for a
    ``"categorical"`` likelihood, the regression function (S, n) or (S, n, outputs) for ``"gaussian"``
    (whose predictive adds the observation noise ``noise_std``). See :func:`module_predictor`.
    """

    __test__ = False  # not a test class (for pytest's collection)

    X: object
    y: object
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    likelihood: str = "categorical"
    noise_std: float = 1.0


def module_predictor(module: torch.nn.Module, dtype: torch.dtype = torch.float64):
    """``predict(w, X)`` of a network for :class:`TestSet`: its outputs for every draw in ``w`` (S, p),
    by ``torch.func.functional_call`` over the flat parameter order of :func:`sgworld.problems.from_module`
    (the module itself is left untouched)."""
    from torch.func import functional_call, vmap

    from .problems.module import ParamLayout

    layout = ParamLayout(module)
    buffers = {n: b.detach().to(dtype) if b.is_floating_point() else b for n, b in module.named_buffers()}

    def predict(w: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        return vmap(lambda v: functional_call(module, {**layout.unflatten(v), **buffers}, (X,)))(w)

    return predict


def parse_method(entry: str) -> tuple[str, str | None]:
    """``"NAME"`` or ``"NAME:SCHEME"`` -> (name, scheme or None); ValueError naming an unknown sampler."""
    name, _, scheme = str(entry).partition(":")
    check_choice("method", name, METHODS)
    return name, scheme or None


@dataclass
class Reference:
    """The exact reference run: its predictive metrics, cost and Monte Carlo floor."""

    method: str
    lr: float
    lr_hmax: float
    chains: int
    burn_in: int
    thin: int
    draws: int
    acceptance_rate: float
    seconds: float
    grad_evals_per_chain: float
    ess_min: float | None
    ess_median: float | None
    rhat_max: float | None
    init: str
    predictive: dict = field(default_factory=dict)
    distance_halves: float | None = None
    moments: dict = field(default_factory=dict, repr=False)  # mean, mean_se, sd (p,) each; not in to_json()

    @property
    def distance_floor(self) -> float | None:
        return None if self.distance_halves is None else self.distance_halves / math.sqrt(2)

    def to_json(self, distance: str) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("predictive", "distance_halves", "moments")}
        ess = self.ess_min
        out.update(self.predictive)
        out.update({"seconds_per_ess_min": self.seconds / ess if ess else None,
                    "grad_evals_per_ess_min": self.grad_evals_per_chain * self.chains / ess if ess else None,
                    "runtime_s": self.seconds})
        if self.distance_halves is not None:
            halves, floor = ("tv_halves", "tv_floor") if distance == "tv_to_reference" else (
                "distance_halves", "distance_floor")
            out.update({halves: self.distance_halves, floor: self.distance_floor})
        return out


@dataclass
class SamplerRun:
    """One method at one learning rate: where its chains went, against the reference."""

    method: str
    scheme: str | None
    lr: float
    lr_hmax: float
    lr_M_hmax: float
    burn_in: int
    thin: int
    draws: int
    chains: int
    seconds: float
    steps: int
    ess_min: float | None
    ess_median: float | None
    rhat_max: float | None
    mean_error_sd: float
    log_sd_ratio: float
    relaxed_fraction_softest_burn_in: float | None = None
    predictive: dict = field(default_factory=dict)
    moments: dict = field(default_factory=dict, repr=False)  # mean, mean_se, sd (p,) each; not in to_json()

    @property
    def label(self) -> str:
        return self.method if self.scheme is None else f"{self.method}:{self.scheme}"

    def to_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("predictive", "moments")}
        out.update(self.predictive)
        out["runtime_s"] = out.pop("seconds")
        return out


@dataclass
class Comparison:
    """The result of :func:`compare_samplers`: the reference, every run, and the predictive at ``w*``."""

    reference: Reference
    runs: list[SamplerRun]
    map: dict
    likelihood: str | None
    temperature: float
    h_min: float | None
    h_max: float
    ece_bins: int
    init: str = "the methods' chains start at the reference chains' last draws"

    @property
    def distance_key(self) -> str | None:
        """The predictive distance's key: ``tv_to_reference`` (classifiers), ``hellinger_to_reference``
        (Gaussian likelihood), None (no test set)."""
        return DISTANCES.get(self.likelihood)

    def pairs(self) -> list[dict]:
        """Per learning rate where both ran, SGLD against SGWORLD: distance ratio and metric differences."""
        key, out = self.distance_key, []
        by = {(r.label, r.lr): r for r in self.runs}
        for lr in sorted({r.lr for r in self.runs}):
            a, b = by.get(("sgld", lr)), by.get(("sgworld", lr))
            if a is None or b is None:
                continue
            row = {"lr_hmax": a.lr_hmax, "lr": lr,
                   "mean_error_sgld_over_sgworld": _ratio(a.mean_error_sd, b.mean_error_sd)}
            if key == "tv_to_reference":
                da, db = a.predictive[key], b.predictive[key]
                row.update({"tv_sgld_over_sgworld": _ratio(da, db), "sgworld_closer": bool(db < da),
                            "ece_sgworld_minus_sgld": b.predictive["ece"] - a.predictive["ece"],
                            "nll_sgworld_minus_sgld": b.predictive["nll"] - a.predictive["nll"]})
            elif key is not None:
                da, db = a.predictive[key], b.predictive[key]
                row.update({"distance_sgld_over_sgworld": _ratio(da, db), "sgworld_closer": bool(db < da),
                            "nll_sgworld_minus_sgld": b.predictive["nll"] - a.predictive["nll"]})
            out.append(row)
        return out

    def to_json(self) -> dict:
        return {"reference": self.reference.to_json(self.distance_key or ""), "map": self.map,
                "runs": [r.to_json() for r in self.runs], "comparison": self.pairs(),
                "likelihood": self.likelihood, "distance": self.distance_key, "temperature": self.temperature,
                "ece_bins": self.ece_bins, "h_min": self.h_min, "h_max": self.h_max, "init": self.init}

    def checks(self) -> list:
        """The comparison's headline numbers (for ``sgworld report``); see :func:`checks`."""
        return checks(self.to_json())

    def figures(self, out_dir, prefix: str = "") -> list[str]:
        """Write the comparison's figures to ``out_dir`` (names in :data:`FIGURES`, with ``prefix``)."""
        from .plots import comparison_figures

        return comparison_figures(self.to_json(), out_dir, prefix)


FIGURES = {
    "predictive_vs_lr.png": "Each method over lr: distance of its test predictive to the exact reference's (with "
                            "the Monte Carlo floor), NLL, ECE / RMSE and accuracy / ESS.",
    "reliability.png": "Reliability diagrams of the test predictive (classifiers): each method and the reference.",
    "moments_vs_lr.png": "Each method over lr: posterior mean error and log standard-deviation ratio against the "
                         "reference, in reference standard deviations, and the smallest ESS.",
}


def _ratio(a, b):
    return a / b if b else None


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _summary(draws: np.ndarray) -> tuple[dict, tuple]:
    """Moments and mixing of draws (chains, draws, p): ``{"mean", "sd", "mean_se"}`` per parameter (pooled
    over chains; ``mean_se = sd / sqrt(ESS)``, the Monte Carlo standard error) and (ESS min, ESS median,
    split-R-hat max). ESS and R-hat are None with fewer than 4 draws per chain or no variance at all."""
    flat = draws.reshape(-1, draws.shape[-1])
    sd = flat.std(0, ddof=1)
    moments, mixing = {"mean": flat.mean(0), "sd": sd, "mean_se": None}, (None, None, None)
    if draws.shape[1] >= 4:
        ess = diagnostics.ess(draws)
        if not np.all(np.isnan(ess)):
            moments["mean_se"] = sd / np.sqrt(ess)
            mixing = (_finite(np.nanmin(ess)), _finite(np.nanmedian(ess)),
                      _finite(np.nanmax(diagnostics.rhat(draws))))
    return moments, mixing


def _grad_evals(trace) -> float:
    if "grad_evals_per_chain" in trace.meta:
        return float(np.mean(trace.meta["grad_evals_per_chain"]))
    return float(trace.steps[-1])


class _Predictive:
    """The posterior predictive of a set of draws on the test inputs, accumulated in chunks of draws."""

    def __init__(self, test: TestSet, dtype: torch.dtype):
        check_choice("likelihood", test.likelihood, LIKELIHOODS)
        self.test = test
        self.X = torch.as_tensor(np.asarray(test.X), dtype=dtype)
        self.y = np.asarray(test.y)
        self.dtype = dtype

    def __call__(self, draws) -> dict:
        """``{"probs": (n, C)}`` (categorical) or ``{"mean", "var"}`` of the predictive (gaussian)."""
        w = torch.as_tensor(np.asarray(draws).reshape(-1, np.asarray(draws).shape[-1]), dtype=self.dtype)
        total = total2 = None
        with torch.no_grad():
            for s in range(0, w.shape[0], _CHUNK):
                out = self.test.predict(w[s:s + _CHUNK], self.X)
                if self.test.likelihood == "categorical":
                    part, part2 = torch.softmax(out, -1).sum(0), None
                else:
                    part, part2 = out.sum(0), (out * out).sum(0)
                total = part if total is None else total + part
                if part2 is not None:
                    total2 = part2 if total2 is None else total2 + part2
        s = w.shape[0]
        if self.test.likelihood == "categorical":
            return {"probs": (total / s).numpy()}
        mean = (total / s).numpy()
        var = np.maximum((total2 / s).numpy() - mean**2, 0.0) + self.test.noise_std**2
        return {"mean": mean, "var": var}

    def metrics(self, pred: dict, bins: int) -> dict:
        if "probs" in pred:
            return predictive.summary(pred["probs"], self.y, bins)
        y = self.y.reshape(pred["mean"].shape).astype(float)
        r = y - pred["mean"]
        return {"rmse": float(np.sqrt(np.mean(r * r))),
                "nll": float(np.mean(0.5 * np.log(2 * np.pi * pred["var"]) + 0.5 * r * r / pred["var"]))}

    @staticmethod
    def distance(p: dict, q: dict) -> float:
        """Mean TV of the class probabilities, or mean Hellinger distance of the Gaussian predictives."""
        if "probs" in p:
            return predictive.mean_tv(p["probs"], q["probs"])
        v1, v2 = p["var"], q["var"]
        h2 = 1 - np.sqrt(2 * np.sqrt(v1 * v2) / (v1 + v2)) * np.exp(-(p["mean"] - q["mean"]) ** 2 / (4 * (v1 + v2)))
        return float(np.mean(np.sqrt(np.clip(h2, 0.0, 1.0))))


def compare_samplers(problem: Problem, methods=("sgld", "sgworld"), lrs=(), *, lr_hmax=(), reference: str = "mala",
                     test: TestSet | None = None, batch_size: int, chains: int = 128, burn_in: int = 600,
                     draws: int = 30, thin: int = 20, temperature: float = 1.0, reference_lr: float | None = None,
                     reference_lr_hmax: float = 0.5, reference_options: dict | None = None,
                     reference_burn_in: int = 600, reference_draws: int = 40, reference_thin: int = 20,
                     w_star=None, hessian=None, h_max: float | None = None, ece_bins: int = predictive.ECE_BINS,
                     seed: int = 0, progress=None, sample_args: Callable[[str], dict] | None = None) -> Comparison:
    """Run the reference and every method at every lr (module docstring); return a :class:`Comparison`.

    Parameters
    ----------
    methods : ``NAME`` or ``NAME:SCHEME`` entries of :data:`sgworld.samplers.METHODS`
    lrs, lr_hmax : learning rates, absolute or as ``lr h_max`` (one of the two; both are reported with each run)
    reference : an exact sampler (mala, hmc, lahmc, mjhmc); ``reference_lr`` its step (for the Hamiltonian
        samplers the leapfrog step eps), by default ``reference_lr_hmax / h_max``; ``reference_options`` its
        ``kernel_options``
    test : held-out data and the model's prediction (:class:`TestSet`); None: moments and mixing only
    w_star, hessian, h_max : the minimum of L (found by Newton's method when None), the Hessian there (formed
        when p <= DENSE_MAX) and its largest eigenvalue (from the Hessian, else by Lanczos)
    seed : one integer; the reference, each run and the starting points get their own seeds from it
    sample_args : ``tag -> extra sample() arguments`` (e.g. a study's resumable trace folders); tags are the
        reference method, and ``f"{method}-{i}"`` for the i-th lr
    """
    from .nonequilibrium import gaussian_draws
    from .theory import find_minimum

    check_choice("reference", reference, REFERENCE_METHODS)
    parsed = [parse_method(m) for m in methods]
    if not parsed:
        raise ValueError("methods is empty; name one or more samplers, e.g. methods=('sgld', 'sgworld')")
    if bool(len(lrs)) == bool(len(lr_hmax)):
        raise ValueError("give the learning rates either as lrs (absolute) or as lr_hmax (lr h_max), not both or "
                         "neither")
    if min(list(lrs) + list(lr_hmax)) <= 0:
        raise ValueError(f"learning rates must be positive, got {tuple(lrs) or tuple(lr_hmax)}")
    check_int_range("chains", chains, 4)
    if chains % 2:
        raise ValueError(f"chains = {chains} must be even (the Monte Carlo floor splits the reference chains in "
                         f"halves); use {chains + 1}")
    extra = sample_args or (lambda tag: {})
    if w_star is None:
        w_star, _ = find_minimum(problem)
    w_star = np.asarray(w_star, dtype=float)
    H = None if hessian is None else np.asarray(hessian, dtype=float)
    if H is None and problem.dim <= DENSE_MAX:
        H = problem.hessian(torch.as_tensor(w_star, dtype=problem.dtype)).numpy()
    h = np.linalg.eigvalsh(H) if H is not None else None
    if h_max is None:
        h_max = float(h[-1]) if h is not None else _top_eigenvalue(problem, w_star, seed)
    h_min = float(h[0]) if h is not None else None
    # (lr, lr h_max) pairs, the value given kept exactly (the other one derived)
    steps = sorted((float(lr), float(lr) * h_max) for lr in lrs) if len(lrs) else \
        sorted((float(f) / h_max, float(f)) for f in lr_hmax)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))

    tic = time.time()
    if H is not None:
        init, init_note = gaussian_draws(w_star, np.linalg.inv(H), chains, rng), "Laplace N(w*, H^-1)"
    else:
        init, init_note = np.repeat(w_star[None], chains, 0), f"w* (p = {problem.dim} > {DENSE_MAX}: no dense Hessian)"
    lr_ref = reference_lr if reference_lr is not None else reference_lr_hmax / h_max
    ref_lr_hmax = reference_lr * h_max if reference_lr is not None else reference_lr_hmax
    ref = sample(problem, reference, lr=lr_ref, chains=chains, num_draws=reference_draws, burn_in=reference_burn_in,
                 thin=reference_thin, init=init, seed=seed + 101, progress=progress,
                 kernel_options=reference_options, **extra(reference))
    seconds = time.time() - tic
    ref_moments, (ess_min, ess_med, rhat_max) = _summary(np.asarray(ref.draws))
    ref_mean, ref_sd = ref_moments["mean"], ref_moments["sd"]
    pred = _Predictive(test, problem.dtype) if test is not None else None
    reference_run = Reference(method=reference, lr=float(ref.meta["lr"]), lr_hmax=float(ref_lr_hmax),
                              chains=chains, burn_in=int(ref.meta["burn_in"]), thin=int(ref.meta["thin"]),
                              draws=reference_draws,
                              acceptance_rate=float(np.mean(ref.meta.get("acceptance_rate", [np.nan]))),
                              seconds=seconds, grad_evals_per_chain=_grad_evals(ref), ess_min=ess_min,
                              ess_median=ess_med, rhat_max=rhat_max, init=init_note, moments=ref_moments)
    map_metrics = {}
    if pred is not None:
        ref_pred = pred(ref.draws)
        reference_run.predictive = pred.metrics(ref_pred, ece_bins)
        half = chains // 2
        reference_run.distance_halves = pred.distance(pred(ref.draws[:half]), pred(ref.draws[half:]))
        map_pred = pred(w_star[None])
        map_metrics = pred.metrics(map_pred, ece_bins)
        map_metrics[DISTANCES[test.likelihood]] = \
            pred.distance(map_pred, ref_pred)

    start = np.asarray(ref.draws[:, -1])
    runs = []
    for i, (lr, lr_h) in enumerate(steps):
        for j, (name, scheme) in enumerate(parsed):
            tic = time.time()
            trace = sample(problem, name, lr=lr, temperature=temperature, batch_size=batch_size, scheme=scheme,
                           chains=chains, num_draws=draws, burn_in=burn_in, thin=thin, init=start,
                           seed=seed + 1000 + 10 * i + j, progress=progress,
                           **extra(f"{name}-{i}" if scheme is None else f"{name}-{scheme}-{i}"))
            moments, (ess_min, ess_med, rhat_max) = _summary(np.asarray(trace.draws))
            with np.errstate(divide="ignore", invalid="ignore"):
                z = (moments["mean"] - ref_mean) / ref_sd
                log_sd = np.log(moments["sd"] / ref_sd)
            b_in = int(trace.meta["burn_in"])
            relaxed = None if h_min is None or lr * h_min >= 1 else float(-np.expm1(2 * b_in * np.log1p(-lr * h_min)))
            run = SamplerRun(method=name, scheme=scheme, lr=lr, lr_hmax=lr_h,
                             lr_M_hmax=lr_h * (problem.n // batch_size), burn_in=b_in,
                             thin=int(trace.meta["thin"]), draws=draws, chains=chains, seconds=0.0,
                             steps=int(trace.steps[-1]), ess_min=ess_min, ess_median=ess_med,
                             rhat_max=rhat_max, mean_error_sd=float(np.sqrt(np.nanmean(z * z))),
                             log_sd_ratio=float(np.sqrt(np.nanmean(log_sd * log_sd))),
                             relaxed_fraction_softest_burn_in=relaxed, moments=moments)
            if pred is not None:
                p = pred(trace.draws)
                run.predictive = pred.metrics(p, ece_bins)
                run.predictive[DISTANCES[test.likelihood]] = \
                    pred.distance(p, ref_pred)
            run.seconds = time.time() - tic
            runs.append(run)
    return Comparison(reference=reference_run, runs=runs, map=map_metrics,
                      likelihood=None if test is None else test.likelihood, temperature=temperature,
                      h_min=h_min, h_max=float(h_max), ece_bins=ece_bins)


def _top_eigenvalue(problem: Problem, w_star: np.ndarray, seed: int) -> float:
    """Largest Hessian eigenvalue at ``w_star`` by Lanczos (large p)."""
    from .theory import hessian_operator, top_eigenpairs

    return float(top_eigenpairs(hessian_operator(problem, w_star), 1, seed=seed)[0][0])


def checks(result: dict) -> list:
    """Checks of a comparison's JSON (``Comparison.to_json()``): the reference's acceptance rate and R-hat,
    and per lr with both SGLD and SGWORLD whether SGWORLD's predictive (or, without a test set, its mean)
    is the closer one -- the paper's claim, reported pass / fail but not a test of the code."""
    ref = result["reference"]
    out = [Check(f"reference: {ref['method'].upper()} acceptance rate", ref["acceptance_rate"], None, "", None),
           Check(f"reference: largest split-R-hat over parameters ({ref['chains']} chains)", ref.get("rhat_max"), 1.0,
                 "< 1.1 when the chains mix within the run", None,
                 "information: above 1.1 the chains have not forgotten their start within the run (slow soft "
                 "modes), and the reference's spread there is that of its start (the Laplace approximation)")]
    floor = ref.get("tv_floor", ref.get("distance_floor"))
    for c in result["comparison"]:
        if "tv_sgld_over_sgworld" in c:
            r = c["tv_sgld_over_sgworld"]
            out.append(Check(f"lr h_max = {c['lr_hmax']:g}: TV(SGLD) / TV(SGWORLD) to the reference", r, 1.0, "> 1",
                             None if r is None else bool(r > 1),
                             f"Monte Carlo floor of the TV {floor:.3g}" if floor is not None else ""))
            out.append(Check(f"lr h_max = {c['lr_hmax']:g}: ECE(SGWORLD) - ECE(SGLD)", c["ece_sgworld_minus_sgld"],
                             0.0, "<= 0 (information; ECE noise ~0.01)", None))
        elif "distance_sgld_over_sgworld" in c:
            r = c["distance_sgld_over_sgworld"]
            out.append(Check(f"lr h_max = {c['lr_hmax']:g}: Hellinger(SGLD) / Hellinger(SGWORLD) to the reference",
                             r, 1.0, "> 1", None if r is None else bool(r > 1)))
        else:
            r = c["mean_error_sgld_over_sgworld"]
            out.append(Check(f"lr h_max = {c['lr_hmax']:g}: mean error SGLD / SGWORLD (reference SDs)", r, 1.0, "> 1",
                             None if r is None else bool(r > 1)))
    return out
