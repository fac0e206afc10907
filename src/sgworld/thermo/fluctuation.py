"""Integral and detailed fluctuation theorems for window sums of entropy production.

For the total entropy production ``Delta s`` of a stationary process over a window (the log ratio
of forward to time-reversed path probabilities),

* integral FT: ``<exp(-Delta s)> = 1``;
* detailed FT: ``ln[P(Delta s) / P(-Delta s)] = Delta s`` (a straight line of slope 1).

Both hold exactly for :func:`sgworld.thermo.trajectory.exact_linear_gaussian_entropy_production`
and to leading order in the step for the midpoint ``sigma_n`` of
:func:`sgworld.thermo.trajectory.entropy_production_steps`. Inputs are window sums
``delta_s`` of shape ``(chains, windows)`` (:func:`sgworld.thermo.trajectory.window_sums`).

Confidence intervals come from a bootstrap. By default it resamples whole chains, which is valid
whatever the correlation between the windows of a chain (overlapping windows included);
``resample="windows"`` treats every window as independent, which needs non-overlapping windows
longer than the correlation time. Intervals are percentile intervals at the stated ``level``;
``*_stderr`` is the bootstrap standard deviation, for z-tests at other levels.

Reference: S. Adhikari, A. Kabakçıoğlu, A. Strang, D. Yuret, M. Hinczewski, "Machine learning in
and out of equilibrium", arXiv:2306.03521.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .._checks import as_float64, check_choice, check_fraction, check_int_range, check_positive
from .trajectory import bootstrap_sums, make_rng

__all__ = ["IFTResult", "DFTResult", "integral_fluctuation_theorem", "detailed_fluctuation_theorem",
           "plot_detailed_ft"]

Resample = Literal["chains", "windows"]


# --------------------------------------------------------------------------- shared checks


def _windows(delta_s, resample: str) -> np.ndarray:
    """``delta_s`` as ``(units, windows per unit)``: chains, or one window per unit."""
    x = as_float64(delta_s, "delta_s")
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"delta_s must have shape (chains, windows) or (windows,), got {x.shape}")
    if check_choice("resample", resample, ("chains", "windows")) == "windows":
        return x.reshape(-1, 1)
    if x.shape[0] < 2:
        raise ValueError("the chain bootstrap needs >= 2 chains (20 or more for a reliable interval); "
                         "with one chain pass resample='windows' (valid for decorrelated, non-overlapping windows)")
    return x


def _check_bootstrap(n_boot: int, level: float) -> tuple[int, float]:
    return check_int_range("n_boot", n_boot, 0), check_fraction("level", level)


def _interval(replicates: np.ndarray, level: float) -> tuple[tuple[float, float], float]:
    """Percentile interval and standard deviation of bootstrap replicates (NaN ones dropped)."""
    r = replicates[np.isfinite(replicates)]
    if r.size < 2:
        return (float("nan"), float("nan")), float("nan")
    lo, hi = np.percentile(r, [50 * (1 - level), 50 * (1 + level)])
    return (float(lo), float(hi)), float(r.std(ddof=1))


# --------------------------------------------------------------------------- integral FT


@dataclass(frozen=True, eq=False)
class IFTResult:
    """Integral fluctuation theorem check.

    Attributes
    ----------
    mean_exp : float            ``<exp(-Delta s)>`` (1 if the IFT holds)
    mean_exp_ci, mean_exp_stderr
    ratio : float               ``(<exp(-Delta s)> - 1) / <Delta s>``: 0 if the IFT holds, -1 if
                                ``Delta s`` did not fluctuate; the IFT at the scale of the signal
    ratio_ci, ratio_stderr
    mean_delta_s : float        ``<Delta s>``
    n_windows, n_units : int    windows used; bootstrap units (chains or windows)
    resample : str
    level : float               confidence level of the intervals
    n_boot : int
    """

    mean_exp: float
    mean_exp_ci: tuple[float, float]
    mean_exp_stderr: float
    ratio: float
    ratio_ci: tuple[float, float]
    ratio_stderr: float
    mean_delta_s: float
    n_windows: int
    n_units: int
    resample: str
    level: float
    n_boot: int


def _ift_statistics(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(<exp(-s)>, ratio, <s>)`` from summed ``[expm1(-s), s, 1]`` (any leading dims)."""
    mean_em1 = sums[..., 0] / sums[..., 2]
    mean_s = sums[..., 1] / sums[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mean_em1 / mean_s
    return 1.0 + mean_em1, ratio, mean_s


def integral_fluctuation_theorem(delta_s, *, n_boot: int = 1000, level: float = 0.95, seed=0,
                                 resample: Resample = "chains") -> IFTResult:
    r"""Estimate ``<exp(-Delta s)>`` and ``(<exp(-Delta s)> - 1)/<Delta s>`` with bootstrap intervals.

    In SGD ``Delta s`` is tiny, so ``<exp(-Delta s)> - 1 ≈ -<Delta s> + <Delta s^2>/2`` is a
    difference of two small terms; ``expm1`` keeps its digits, and the ratio measures the IFT
    relative to the size of the signal (0 when it holds, -1 for a non-fluctuating ``Delta s``). The
    ratio is undefined when ``<Delta s>`` is consistent with zero (equilibrium).

    Choose windows with ``<Delta s>`` of order 1 or less. The estimator is an average of
    ``exp(-Delta s)``, whose variance ``E[exp(-2 Delta s)] - 1 = E[exp(Delta s)] - 1`` (by the
    detailed FT) grows like ``exp(2 <Delta s>)`` and becomes infinite once the upper tail of
    ``Delta s`` is heavy enough. Then rare negative windows dominate, the sample mean falls
    below 1 at any practical sample size, and the bootstrap interval misses 1. On a linear-Gaussian
    chain, ``<Delta s> = 2.3`` and ``7`` gave 0.96 +- 0.015 and 0.70 +- 0.026.

    Parameters
    ----------
    delta_s : (chains, windows) or (windows,) array
        Window sums of entropy production.
    n_boot : int
        Bootstrap replicates (0: no intervals).
    level : float
        Confidence level of the percentile intervals.
    seed : int or numpy Generator
    resample : {"chains", "windows"}
        Bootstrap unit (see module docstring).

    Returns
    -------
    IFTResult
    """
    n_boot, level = _check_bootstrap(n_boot, level)
    x = _windows(delta_s, resample)
    per_unit = np.stack([np.expm1(-x).sum(1), x.sum(1), np.full(x.shape[0], float(x.shape[1]))], axis=1)
    return ift_from_unit_sums(per_unit, n_windows=x.size, resample=resample, n_boot=n_boot, level=level, seed=seed)


def ift_from_unit_sums(per_unit: np.ndarray, *, n_windows: int, resample: str, n_boot: int, level: float,
                       seed) -> IFTResult:
    """The IFT estimate and its bootstrap intervals from per-unit sums ``(sum expm1(-ds), sum ds, count)``
    (one row per chain or block; units are resampled whole)."""
    mean_exp, ratio, mean_s = _ift_statistics(per_unit.sum(0))
    if n_boot:
        boot_exp, boot_ratio, _ = _ift_statistics(bootstrap_sums(per_unit, n_boot, make_rng(seed)))
    else:
        boot_exp = boot_ratio = np.empty(0)
    exp_ci, exp_se = _interval(boot_exp, level)
    ratio_ci, ratio_se = _interval(boot_ratio, level)
    return IFTResult(mean_exp=float(mean_exp), mean_exp_ci=exp_ci, mean_exp_stderr=exp_se, ratio=float(ratio),
                     ratio_ci=ratio_ci, ratio_stderr=ratio_se, mean_delta_s=float(mean_s), n_windows=n_windows,
                     n_units=per_unit.shape[0], resample=resample, level=level, n_boot=n_boot)


# --------------------------------------------------------------------------- detailed FT


@dataclass(frozen=True, eq=False)
class DFTResult:
    """Detailed fluctuation theorem check: slope of ``ln P(Delta s)/P(-Delta s)`` against ``Delta s``.

    Attributes
    ----------
    slope : float                   weighted least-squares slope through the origin (1 if the DFT holds)
    slope_ci, slope_stderr          bootstrap interval at ``level`` and standard deviation
    edges : (2 bins + 1,)           histogram edges, symmetric about 0 (0 is an edge)
    counts : (2 bins,)              window counts per bin
    centers : (bins,)               abscissa of each pair of mirror bins: the mean ``|Delta s|`` of
                                    its windows (the bin centre where the pair is empty)
    log_ratio : (bins,)             ``ln[(n(+c) + 1/2) / (n(-c) + 1/2)]`` per positive bin (NaN if unused)
    log_ratio_stderr : (bins,)      its standard error ``sqrt(1/(n+ + 1/2) + 1/(n- + 1/2))`` (for plots)
    used : (bins,) bool             pairs in the fit: expected negative-side count ``T/(1 + e^c) >= min_count``
    n_windows, n_units, resample, level, n_boot, min_count
    """

    slope: float
    slope_ci: tuple[float, float]
    slope_stderr: float
    edges: np.ndarray
    counts: np.ndarray
    centers: np.ndarray
    log_ratio: np.ndarray
    log_ratio_stderr: np.ndarray
    used: np.ndarray
    n_windows: int
    n_units: int
    resample: str
    level: float
    n_boot: int
    min_count: int


def _symmetric_pairs(counts: np.ndarray, centers: np.ndarray, bins: int, min_count: int):
    """Mirror-pair statistics of bin counts ``(..., 2 bins)``: used mask, log ratios, pair totals.

    A pair is used when ``T / (1 + e^c)`` -- the count its negative bin should have under the DFT
    given the pair total ``T`` -- is at least ``min_count``. Selecting on ``T`` (independent of how
    ``T`` splits) rather than on the observed ``n_-`` matters: keeping only tail bins whose ``n_-``
    happened to come out large biases ``ln(n_+/n_-)`` and the slope downwards.
    The ``+1/2`` (Haldane-Anscombe) correction removes the ``O(1/n)`` bias of a log of counts.
    """
    n_pos = counts[..., bins:]
    n_neg = counts[..., bins - 1::-1]
    totals = n_pos + n_neg
    used = totals / (1.0 + np.exp(centers)) >= min_count
    log_ratio = np.log((n_pos + 0.5) / (n_neg + 0.5))
    return used, log_ratio, totals


def _slope_through_origin(centers, used, log_ratio, totals) -> np.ndarray:
    """Weighted least squares ``y = s c`` over used pairs (any leading dims).

    Given a pair's total ``T``, its split is binomial, so ``Var[y] = 4 cosh^2(s c / 2) / T``. The
    weights use this variance at a slope ``s`` (1, then the first estimate) rather than the observed
    ``1/n_+ + 1/n_-``: observed-count weights are correlated with ``y`` itself (a low ``n_-`` raises
    ``y`` and lowers its weight) and biased the slope low by about half a standard error.
    """
    y = np.where(used, log_ratio, 0.0)
    slope = np.ones(np.shape(log_ratio)[:-1])
    for _ in range(2):
        w = np.where(used, totals / (4.0 * np.cosh(0.5 * slope[..., None] * centers) ** 2), 0.0)
        den = (w * centers**2).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(den > 0, (w * centers * y).sum(-1) / den, np.nan)
    return slope


def detailed_fluctuation_theorem(delta_s, *, bins: int = 20, max_abs: float | None = None, min_count: int = 25,
                                 n_boot: int = 500, level: float = 0.95, seed=0,
                                 resample: Resample = "chains") -> DFTResult:
    r"""Slope of ``ln[P(Delta s)/P(-Delta s)]`` against ``Delta s``, with a bootstrap interval.

    Histogram ``delta_s`` on ``2 bins`` equal bins over ``[-max_abs, max_abs]``; pair each positive
    bin with its mirror image; keep pairs whose total ``T`` would put ``>= min_count`` windows on the
    negative side under the DFT (``T / (1 + e^c) >= min_count``); fit
    ``ln(n_+/n_-) = s c`` by weighted least squares through the origin (weights: inverse binomial
    variances given each pair's total), where ``c`` is the mean ``|Delta s|`` of the pair's windows. The DFT predicts
    ``s = 1``. Why not the bin centre: where ``P(-Delta s)`` falls steeply across a bin (rate
    ``lambda``), ``ln(n_+/n_-)`` sits ``lambda h^2 / 12`` below the centre's ``Delta s``, which
    pulls the slope several per cent under 1 for bins of width ``h ~ 0.5``; the mean ``|Delta s|``
    of the pair moves with the density and leaves only ``(h^2/12)(1/2 - 1/(1 + e^{-c}))``.
    The abscissae are fixed at their full-data values in the bootstrap (their noise is of second
    order); only the counts are resampled.

    Parameters
    ----------
    delta_s : (chains, windows) or (windows,) array
    bins : int
        Bins on each side of 0.
    max_abs : float, optional
        Histogram half-range. Default: the 99% quantile of ``-Delta s`` over the negative windows,
        i.e. the range where mirror pairs can have counts on both sides.
    min_count : int
        Minimum expected count on the negative side for a bin pair to enter the fit.
    n_boot, level, seed, resample
        Bootstrap settings, as in :func:`integral_fluctuation_theorem`; bins are fixed, and each
        replicate re-selects the pairs with enough counts.

    Returns
    -------
    DFTResult

    Raises
    ------
    ValueError
        No bin pair has enough counts on both sides (``Delta s`` almost never negative, too few
        windows, or bins too narrow).
    """
    n_boot, level = _check_bootstrap(n_boot, level)
    bins, min_count = check_int_range("bins", bins, 1), check_int_range("min_count", min_count, 1)
    x = _windows(delta_s, resample)
    if max_abs is None:
        negative = -x[x < 0]
        if negative.size < min_count:
            raise ValueError(f"only {negative.size} window(s) have Delta s < 0 (need >= min_count = {min_count}); "
                             "use more windows or shorter windows")
        half = float(np.quantile(negative, 0.99))
    else:
        half = check_positive("max_abs", max_abs)
    edges = np.linspace(-half, half, 2 * bins + 1)

    # Bin index per window; index 2*bins collects the windows outside the range.
    inside = np.abs(x) <= half
    idx = np.where(inside, np.clip(np.searchsorted(edges, x, side="right") - 1, 0, 2 * bins - 1), 2 * bins)
    units, nb = x.shape[0], 2 * bins + 1
    abs_sum = np.bincount(idx[inside], weights=np.abs(x[inside]), minlength=nb)[:-1]
    rng = make_rng(seed)
    if resample == "windows":  # iid windows: a resampled histogram is exactly multinomial
        total = np.bincount(idx.ravel(), minlength=nb).astype(float)
        boot = rng.multinomial(x.size, total / x.size, size=n_boot).astype(float) if n_boot else None
    else:
        per_unit = np.bincount((idx + nb * np.arange(units)[:, None]).ravel(), minlength=units * nb)
        per_unit = per_unit.reshape(units, nb).astype(float)
        total = per_unit.sum(0)
        boot = bootstrap_sums(per_unit, n_boot, rng) if n_boot else None
    counts = total[:-1]
    pair_counts = counts[bins:] + counts[bins - 1::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        centers = np.where(pair_counts > 0, (abs_sum[bins:] + abs_sum[bins - 1::-1]) / pair_counts,
                           0.5 * (edges[bins:-1] + edges[bins + 1:]))

    return dft_from_counts(counts, centers, edges, boot, bins=bins, min_count=min_count, level=level,
                           n_windows=x.size, n_units=units, resample=resample, n_boot=n_boot,
                           advice="use more windows, shorter windows (so that Delta s is negative more often), "
                                  "fewer bins, or a smaller max_abs")


def dft_from_counts(counts, centers, edges, boot, *, bins: int, min_count: int, level: float, n_windows: int,
                    n_units: int, resample: str, n_boot: int, advice: str) -> DFTResult:
    """The DFT slope through the origin and its bootstrap interval from histogram ``counts`` over
    ``2 * bins`` bins (``boot``: the bootstrap replicates' counts, or None)."""
    used, log_ratio, totals = _symmetric_pairs(counts, centers, bins, min_count)
    if not used.any():
        raise ValueError(f"no symmetric pair of bins has enough windows (>= {min_count} expected on the "
                         f"negative side); {advice}")
    slope = float(_slope_through_origin(centers, used, log_ratio, totals))
    if boot is not None:
        boot_slopes = _slope_through_origin(centers, *_symmetric_pairs(boot[:, :-1], centers, bins, min_count))
    else:
        boot_slopes = np.empty(0)
    ci, se = _interval(boot_slopes, level)
    log_ratio_stderr = np.sqrt(1.0 / (counts[bins:] + 0.5) + 1.0 / (counts[bins - 1::-1] + 0.5))
    return DFTResult(slope=slope, slope_ci=ci, slope_stderr=se, edges=edges, counts=counts, centers=centers,
                     log_ratio=np.where(used, log_ratio, np.nan), log_ratio_stderr=log_ratio_stderr, used=used,
                     n_windows=n_windows, n_units=n_units, resample=resample, level=level, n_boot=n_boot,
                     min_count=min_count)


def plot_detailed_ft(result: DFTResult, ax=None):
    """Histogram of ``Delta s`` and ``ln P(Delta s)/P(-Delta s)`` with the fitted and slope-1 lines.

    Parameters
    ----------
    result : DFTResult
    ax : pair of matplotlib Axes, optional
        ``(histogram axes, log-ratio axes)``; by default a new two-panel Figure (created without
        pyplot, so it works under any backend, Agg included).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3.6), layout="constrained")
        ax_hist, ax_ratio = fig.subplots(1, 2)
    else:
        try:
            ax_hist, ax_ratio = ax
        except (TypeError, ValueError):
            raise ValueError("ax must be a pair of Axes: (histogram axes, log-ratio axes)") from None
        fig = ax_hist.figure
    width = result.edges[1] - result.edges[0]
    density = result.counts / max(result.n_windows, 1) / width
    ax_hist.stairs(density, result.edges, fill=True, alpha=0.6)
    ax_hist.set_xlabel(r"$\Delta s$")
    ax_hist.set_ylabel(r"$P(\Delta s)$")
    ax_hist.set_title(f"{result.n_windows} windows")

    c, u = result.centers, result.used
    ax_ratio.errorbar(c[u], result.log_ratio[u], yerr=result.log_ratio_stderr[u], fmt="o", ms=3, label="data")
    xs = np.array([0.0, c[u].max() if u.any() else result.edges[-1]])
    ax_ratio.plot(xs, xs, "k--", label="slope 1 (DFT)")
    lo, hi = result.slope_ci
    ax_ratio.plot(xs, result.slope * xs, "C1-",
                  label=f"fit: {result.slope:.3f} [{lo:.3f}, {hi:.3f}] ({100 * result.level:.0f}%)")
    ax_ratio.set_xlabel(r"$\Delta s$")
    ax_ratio.set_ylabel(r"$\ln P(\Delta s) / P(-\Delta s)$")
    ax_ratio.legend(loc="upper left", fontsize="small")
    return fig
