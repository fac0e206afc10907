"""Figures of the HMC study: autocorrelation against gradient evaluations, and spectral gaps."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLOURS = {"hmc": "tab:red", "lahmc": "tab:blue", "mjhmc": "tab:green"}
LABELS = {"hmc": "HMC", "lahmc": "LAHMC", "mjhmc": "MJHMC"}
TITLES = {"gaussian2d": "2-D Gaussian", "gaussian100d": "100-D Gaussian", "rough_well": "2-D rough well"}
ESTIMATOR_LABELS = {"mean_subtracted": "mean-subtracted", "no_mean_subtraction": "no mean subtraction (papers')"}


def plot_autocorrelation(mix: dict, threshold: float, path) -> None:
    names = list(mix)
    estimators = list(ESTIMATOR_LABELS)
    fig, axes = plt.subplots(len(estimators), len(names), figsize=(4.2 * len(names), 3.4 * len(estimators)),
                             squeeze=False)
    for row, estimator in enumerate(estimators):
        for col, name in enumerate(names):
            ax = axes[row, col]
            for method, r in mix[name].items():
                g = r[estimator]["gradients_to_threshold"]
                label = LABELS[method] + (f": {g:.3g} grads to {threshold:g}" if g else f": > {r['gradients'][-1]:.3g}")
                ax.plot(r["gradients"], r[estimator]["rho"], color=COLOURS[method], label=label)
            ax.axhline(threshold, color="0.6", lw=0.8, ls="--")
            ax.axhline(0.0, color="0.8", lw=0.6)
            ax.set_xlabel("gradient evaluations per chain")
            ax.set_ylabel("autocorrelation")
            ax.set_title(f"{TITLES.get(name, name)} ({ESTIMATOR_LABELS[estimator]})", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_spectral_gaps(gaps: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    hmc = np.asarray(gaps["hmc"])
    for key, colour, label in (("mjhmc", "tab:green", "MJHMC jump chain"), ("lahmc", "tab:blue", "LAHMC")):
        ax.scatter(hmc, np.asarray(gaps[key]), s=9, color=colour, alpha=0.6, label=label)
    top = max(float(np.max(hmc)), float(np.max(gaps["mjhmc"])), float(np.max(gaps["lahmc"])), 1e-3)
    ax.plot([0, top], [0, top], color="0.5", lw=0.8, ls="--", label="equal to HMC")
    ax.set_xlabel("HMC spectral gap")
    ax.set_ylabel("spectral gap")
    ax.set_title("Random ring energy ladders", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
