"""Figures of the regression study: Sigma theory vs simulation, Q vs A, the detailed FT, WR vs WOR clouds."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

from ..thermo.fluctuation import plot_detailed_ft  # noqa: E402

COLOURS = {"wr": "tab:red", "wor": "tab:blue"}


def _identity_line(ax, values):
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    lo, hi = values.min() / 2, values.max() * 2
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="theory = simulation")


def plot_sigma(metrics: dict, path):
    """Stationary variances: simulation against theory (log-log), and their ratio per Hessian eigenmode."""
    fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(10.5, 4.4))
    shown = []
    for scheme in ("wr", "wor"):
        m = metrics[scheme]
        t, s, se = (np.asarray(m[k], dtype=float) for k in ("sigma_theory_diag", "sigma_sim_diag", "sigma_sim_diag_se"))
        ax.errorbar(t, s, yerr=2 * se, fmt="o", ms=4, color=COLOURS[scheme], capsize=2,
                    label=f"{scheme.upper()}: $\\Sigma_{{ii}}$ (bars: 2 SE)")
        shown += [t, s]
        t, s, se = (np.asarray(m[k], dtype=float) for k in ("sigma_theory_eig", "sigma_sim_eig", "sigma_sim_eig_se"))
        se = np.hypot(se, np.asarray(m.get("sigma_theory_eig_se", 0.0), dtype=float))  # WOR theory: Monte Carlo D
        modes = np.arange(1, t.size + 1) + (0.1 if scheme == "wor" else -0.1)
        ax_ratio.errorbar(modes, s / t, yerr=2 * se / t, fmt="o", ms=4, color=COLOURS[scheme], capsize=2,
                          label=scheme.upper())
    _identity_line(ax, np.concatenate(shown))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("theory (Lyapunov)")
    ax.set_ylabel("simulation (relaxation-corrected)")
    ax.set_title(r"variances of the parameters, $\Sigma_{ii}$", fontsize=10)
    ax.legend(fontsize=8)
    ax_ratio.axhline(1.0, color="k", ls="--", lw=0.8)
    ax_ratio.set_ylim(0, 2)
    ax_ratio.set_xlabel("Hessian eigenmode k (soft to stiff)")
    ax_ratio.set_ylabel(r"simulation / theory of $v_k^T \Sigma v_k$")
    ax_ratio.set_title("ratio per eigenmode (bars: 2 SE; soft modes relax slowly)", fontsize=10)
    ax_ratio.legend(fontsize=8)
    fig.suptitle(f"Stationary covariance of SGD, lr = {metrics['lr']:.3g}, b = {metrics['batch_size']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_q_vs_a(Q, A, A_se, path):
    """Circulation Q (theory) against the measured areal velocity A, upper-triangle entries."""
    Q, A, A_se = (np.asarray(a, dtype=float) for a in (Q, A, A_se))
    iu = np.triu_indices(Q.shape[0], 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.errorbar(Q[iu], A[iu], yerr=2 * A_se[iu], fmt="o", ms=4, color=COLOURS["wr"], capsize=2,
                label=r"$(i<j)$, bars: 2 SE")
    lim = 1.1 * np.max(np.abs(np.concatenate([Q[iu], A[iu] + 2 * A_se[iu], A[iu] - 2 * A_se[iu]])))
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8, label="A = Q")
    ax.axhline(0, color="0.8", lw=0.5)
    ax.axvline(0, color="0.8", lw=0.5)
    ax.set_xlabel(r"$Q_{ij}$ theory $(lr/2)(H\Sigma - \Sigma H)$ per step")
    ax.set_ylabel(r"areal velocity $A_{ij}$ (simulation)")
    ax.set_title("Probability circulation of SGD (wr)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_dft(dft, path):
    """Histogram of the window entropy production and ``ln P(ds)/P(-ds)`` with the slope-1 line."""
    fig = plot_detailed_ft(dft)
    fig.savefig(path, dpi=120)
    return path


def _ellipse(ax, mean2, cov2, colour, nsd=2.0):
    lam, vec = np.linalg.eigh(cov2)
    angle = np.degrees(np.arctan2(vec[1, -1], vec[0, -1]))
    w, h = 2 * nsd * np.sqrt(np.clip(lam[::-1], 0, None))
    ax.add_patch(Ellipse(mean2, w, h, angle=angle, fill=False, color=colour, lw=1.2, ls="-"))


def plot_clouds(w_star, wr_final, wor_final, sigma_wr, sigma_wor, w_eff, path, max_points: int = 4000):
    """WR and WOR stationary clouds in the plane of the top two principal directions of Sigma_WR."""
    _, V = np.linalg.eigh(sigma_wr)
    E = V[:, ::-1][:, :2]                                  # top two principal directions
    project = lambda w: (np.asarray(w) - w_star) @ E        # noqa: E731
    wr2, wor2 = project(wr_final[:max_points]), project(wor_final[:max_points])
    eff2 = project(w_eff)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, zoom in zip(axes, (False, True)):
        if not zoom:
            ax.scatter(*wr2.T, s=3, alpha=0.4, color=COLOURS["wr"], label="WR (with replacement)")
            _ellipse(ax, np.zeros(2), E.T @ sigma_wr @ E, COLOURS["wr"])
        ax.scatter(*wor2.T, s=3, alpha=0.4, color=COLOURS["wor"], label="WOR (epoch boundaries)")
        _ellipse(ax, eff2, E.T @ sigma_wor @ E, COLOURS["wor"])
        ax.plot(0, 0, "k+", ms=10, label=r"$w^*$")
        ax.plot(*eff2, "kx", ms=8, label=r"$w_{eff}$ = argmin $L_{eff}$")
        ax.set_xlabel("principal direction 1 of $\\Sigma_{WR}$")
        ax.set_ylabel("principal direction 2")
        ax.set_title("zoom on the WOR cloud" if zoom else
                     "stationary clouds (ellipses: theory, 2 SD; WOR is the dot at the centre)", fontsize=10)
        ax.ticklabel_format(style="sci", scilimits=(-3, 3))
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_figures(out_dir, wr, wor, sim_wr, sim_wor, dft, metrics) -> list[str]:
    from pathlib import Path

    out_dir = Path(out_dir)
    info = {"wr": metrics["wr"], "wor": metrics["wor"], "lr": wr.state.lr, "batch_size": metrics["batch_size"]}
    paths = [
        plot_sigma(info, out_dir / "sigma_theory_vs_sim.png"),
        plot_q_vs_a(wr.Q, sim_wr["A"], sim_wr["A_se"], out_dir / "circulation_Q_vs_A.png"),
        plot_dft(dft, out_dir / "entropy_production_dft.png"),
        plot_clouds(wr.mean, sim_wr["final"], sim_wor["final"], wr.Sigma, wor.Sigma, wor.w_eff,
                    out_dir / "stationary_clouds.png"),
    ]
    return [Path(p).name for p in paths]
