"""Figures of the digits study: Sigma theory vs simulation, the detailed FT, the probability current,
and the predictive metrics of SGLD vs SGWORLD (with reliability diagrams)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .regression_plots import COLOURS, plot_dft, plot_sigma  # noqa: E402

SAMPLER_COLOURS = {"sgld": "tab:red", "sgworld": "tab:blue", "reference": "k"}


def plot_current(planes: dict, clouds: dict, means: dict, omega_sim: dict, path, grid: int = 15):
    """Density of the simulated cloud and the theory's velocity field in each scheme's plane of largest circulation.

    Coordinates are whitened, ``c = E^T Sigma^{-1/2} (w - w_bar)``; there the stationary density is a unit
    Gaussian and the velocity ``-E^T Omega E c`` a rotation at rate omega.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, scheme in zip(axes, ("wr", "wor")):
        plane = planes[scheme]
        P = plane["whiten"] @ plane["basis"]
        c = (clouds[scheme] - means[scheme]) @ P
        ax.hexbin(c[:, 0], c[:, 1], gridsize=40, extent=(-3.5, 3.5, -3.5, 3.5), cmap="Greys", mincnt=1)
        g = np.linspace(-3, 3, grid)
        X, Y = np.meshgrid(g, g)
        om = plane["omega"]
        U, V = -om * Y, om * X        # dz = -Omega z restricted to the plane (e1 turns towards e2)
        speed = np.hypot(U, V)
        ax.quiver(X, Y, U / speed.max(), V / speed.max(), color=COLOURS[scheme], angles="xy", scale=12, width=0.004)
        for r in (1, 2):
            t = np.linspace(0, 2 * np.pi, 200)
            ax.plot(r * np.cos(t), r * np.sin(t), color=COLOURS[scheme], lw=0.8, ls="--")
        unit = "step" if scheme == "wr" else "epoch"
        sim, se = omega_sim[scheme]
        ax.set_title(f"{scheme.upper()}: rotation rate $\\omega$ = {om:.3g} rad/{unit} (theory)\n"
                     f"areal velocity: {sim:.3g} $\\pm$ {se:.2g}", fontsize=9)
        ax.set_xlabel("circulation plane, whitened coordinate 1")
        ax.set_ylabel("whitened coordinate 2")
        ax.set_xlim(-3.5, 3.5)
        ax.set_ylim(-3.5, 3.5)
        ax.set_aspect("equal")
    fig.suptitle("Stationary probability current of SGD in the plane of largest circulation "
                 "(grey: simulated density; arrows: theory velocity; dashed: 1 and 2 SD)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_predictive(post: dict, path):
    """TV to the reference, NLL, ECE and accuracy against lr h_max for SGLD and SGWORLD."""
    keys = (("tv_to_reference", "mean TV to the reference predictive"), ("nll", "test NLL (nats)"),
            ("ece", f"ECE ({post['ece_bins']} bins)"), ("accuracy", "test accuracy"))
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    for ax, (key, label) in zip(axes, keys):
        for method in ("sgld", "sgworld"):
            runs = sorted((r for r in post["runs"] if r["method"] == method), key=lambda r: r["lr_hmax"])
            ax.plot([r["lr_hmax"] for r in runs], [r[key] for r in runs], "o-", color=SAMPLER_COLOURS[method],
                    label=method.upper())
        if key == "tv_to_reference":
            ax.axhline(post["reference"]["tv_floor"], color="k", ls=":", lw=1, label="Monte Carlo floor")
            ax.set_yscale("log")
        else:
            ax.axhline(post["reference"][key], color="k", ls="--", lw=1, label="reference (MALA)")
            ax.axhline(post["map"][key], color="0.5", ls=":", lw=1, label="MAP w*")
        ax.set_xscale("log")
        ax.set_xlabel(r"lr $h_{max}$")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Posterior predictive on the test set, T = 1", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_reliability(post: dict, path):
    """Reliability diagrams (accuracy against confidence per bin), one panel per lr."""
    factors = sorted({r["lr_hmax"] for r in post["runs"]})
    fig, axes = plt.subplots(1, len(factors), figsize=(3.6 * len(factors), 3.8), squeeze=False)
    for ax, f in zip(axes[0], factors):
        curves = [("reference", post["reference"])] + [(r["method"], r) for r in post["runs"] if r["lr_hmax"] == f]
        for name, m in curves:
            rel = m["reliability"]
            conf, acc = np.asarray(rel["confidence"], float), np.asarray(rel["accuracy"], float)
            ok = np.isfinite(conf)
            ax.plot(conf[ok], acc[ok], "o-", ms=3, color=SAMPLER_COLOURS[name],
                    label=f"{name.upper() if name != 'reference' else 'MALA'} (ECE {m['ece']:.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlim(0.1, 1.02)
        ax.set_ylim(0.1, 1.02)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"lr h_max = {f:g}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_figures(out_dir, metrics: dict, data: dict) -> list[str]:
    out_dir = Path(out_dir)
    neq = metrics["nonequilibrium"]
    info = {"wr": neq["wr"], "wor": neq["wor"], "lr": neq["lr"], "batch_size": neq["batch_size"]}
    circ = {s: (neq[s]["circulation"]["omega_sim"], neq[s]["circulation"]["omega_sim_se"]) for s in ("wr", "wor")}
    paths = [
        plot_sigma(info, out_dir / "digits_sigma_theory_vs_sim.png"),
        plot_dft(data["dft"], out_dir / "digits_entropy_production_dft.png"),
        plot_current(data["planes"], {"wr": data["sim_wr"]["cloud"], "wor": data["sim_wor"]["cloud"]},
                     {"wr": data["wr"].mean, "wor": data["wor"].w_eff}, circ,
                     out_dir / "digits_probability_current.png"),
        plot_predictive(metrics["posterior"], out_dir / "digits_predictive_vs_lr.png"),
        plot_reliability(metrics["posterior"], out_dir / "digits_reliability.png"),
    ]
    return [Path(p).name for p in paths]
