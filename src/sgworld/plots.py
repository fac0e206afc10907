"""Every figure of the package: the studies' and the pipelines'.

Figures are drawn on :class:`matplotlib.figure.Figure` objects (no ``pyplot``, no global backend
selection): saving a Figure uses matplotlib's Agg renderer for PNG whatever backend the user's session
has chosen, and importing this module changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

SAMPLER_COLOURS = {"sgld": "tab:red", "sgworld": "tab:blue", "reference": "k", "ula": "tab:green",
                   "mala": "tab:purple", "sgd": "tab:orange"}


def _save(fig: Figure, path, dpi: int = 120):
    fig.savefig(path, dpi=dpi)
    return path


# --------------------------------------------------------------------------- sampler comparison

def plot_comparison_predictive(result: dict, path):
    """Over lr h_max, per method: distance of the test predictive to the reference (with the Monte Carlo floor),
    NLL, and ECE and accuracy (classifiers) or RMSE (Gaussian likelihood); reference and MAP as lines."""
    ref, distance = result["reference"], result["distance"]
    classifier = distance == "tv_to_reference"
    keys = [(distance, "mean TV to the reference predictive" if classifier else
             "mean Hellinger distance to the reference predictive"), ("nll", "test NLL (nats)")]
    keys += [("ece", f"ECE ({result['ece_bins']} bins)"), ("accuracy", "test accuracy")] if classifier else [
        ("rmse", "test RMSE of the predictive mean")]
    floor = ref.get("tv_floor", ref.get("distance_floor"))
    fig = Figure(figsize=(3.75 * len(keys), 3.8))
    axes = fig.subplots(1, len(keys))
    for ax, (key, label) in zip(axes, keys):
        for name, runs in _by_method(result["runs"]).items():
            ax.plot([r["lr_hmax"] for r in runs], [r[key] for r in runs], "o-",
                    color=SAMPLER_COLOURS.get(name.split(":")[0]), label=name.upper())
        if key == distance:
            if floor is not None:
                ax.axhline(floor, color="k", ls=":", lw=1, label="Monte Carlo floor")
            ax.set_yscale("log")
        else:
            ax.axhline(ref[key], color="k", ls="--", lw=1, label=f"reference ({ref['method'].upper()})")
            if key in result.get("map", {}):
                ax.axhline(result["map"][key], color="0.5", ls=":", lw=1, label="MAP w*")
        ax.set_xscale("log")
        ax.set_xlabel(r"lr $h_{max}$")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"Posterior predictive on the test set, T = {result['temperature']:g}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _by_method(runs) -> dict:
    out = {}
    for r in runs:
        name = r["method"] if r.get("scheme") is None else f"{r['method']}:{r['scheme']}"
        out.setdefault(name, []).append(r)
    return {k: sorted(v, key=lambda r: r["lr_hmax"]) for k, v in out.items()}


def plot_reliability(result: dict, path):
    """Reliability diagrams (accuracy against confidence per bin), one panel per lr: each method and the reference."""
    factors = sorted({r["lr_hmax"] for r in result["runs"]})
    fig = Figure(figsize=(3.6 * len(factors), 3.8))
    axes = fig.subplots(1, len(factors), squeeze=False)
    ref_name = result["reference"]["method"].upper()
    for ax, f in zip(axes[0], factors):
        curves = [("reference", result["reference"])] + [(r["method"], r) for r in result["runs"] if r["lr_hmax"] == f]
        for name, m in curves:
            rel = m["reliability"]
            conf, acc = np.asarray(rel["confidence"], float), np.asarray(rel["accuracy"], float)
            ok = np.isfinite(conf)
            ax.plot(conf[ok], acc[ok], "o-", ms=3, color=SAMPLER_COLOURS.get(name),
                    label=f"{name.upper() if name != 'reference' else ref_name} (ECE {m['ece']:.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlim(0.1, 1.02)
        ax.set_ylim(0.1, 1.02)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"lr h_max = {f:g}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


def plot_comparison_moments(result: dict, path):
    """Over lr h_max, per method: posterior mean error and |log SD ratio| against the reference (reference SDs),
    and the smallest ESS over parameters."""
    keys = (("mean_error_sd", "rms mean error (reference SDs)"), ("log_sd_ratio", "rms |log SD / SD_ref|"),
            ("ess_min", "smallest ESS over parameters"))
    fig = Figure(figsize=(11.5, 3.8))
    axes = fig.subplots(1, 3)
    for ax, (key, label) in zip(axes, keys):
        for name, runs in _by_method(result["runs"]).items():
            pts = [(r["lr_hmax"], r[key]) for r in runs if r[key] is not None and r[key] > 0]
            if pts:
                ax.plot(*zip(*pts), "o-", color=SAMPLER_COLOURS.get(name.split(":")[0]), label=name.upper())
        if key == "ess_min" and result["reference"]["ess_min"]:
            ax.axhline(result["reference"]["ess_min"], color="k", ls="--", lw=1, label="reference")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"lr $h_{max}$")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Posterior moments against the exact reference", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def comparison_figures(result: dict, out_dir, prefix: str = "") -> list[str]:
    """The figures of :class:`sgworld.comparison.Comparison` (``result`` its JSON) in ``out_dir``; their names."""
    out_dir = Path(out_dir)
    paths = []
    if result["distance"] is not None:
        paths.append(plot_comparison_predictive(result, out_dir / f"{prefix}predictive_vs_lr.png"))
    if result["distance"] == "tv_to_reference":
        paths.append(plot_reliability(result, out_dir / f"{prefix}reliability.png"))
    paths.append(plot_comparison_moments(result, out_dir / f"{prefix}moments_vs_lr.png"))
    return [Path(p).name for p in paths]


# --------------------------------------------------------------------------- SGD out of equilibrium

SCHEME_COLOURS = {"wr": "tab:red", "wor": "tab:blue"}


def _identity_line(ax, values):
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size:
        lo, hi = values.min() / 2, values.max() * 2
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="theory = simulation")


def plot_sigma(metrics: dict, path):
    """Stationary variances: simulation against theory (log-log), and their ratio per Hessian eigenmode."""
    fig = Figure(figsize=(10.5, 4.4))
    ax, ax_ratio = fig.subplots(1, 2)
    shown = []
    for scheme in ("wr", "wor"):
        m = metrics.get(scheme)
        if m is None or "sigma_theory_diag" not in m:
            continue
        t, s, se = (np.asarray(m[k], dtype=float) for k in ("sigma_theory_diag", "sigma_sim_diag", "sigma_sim_diag_se"))
        ax.errorbar(t, s, yerr=2 * se, fmt="o", ms=4, color=SCHEME_COLOURS[scheme], capsize=2,
                    label=f"{scheme.upper()}: $\\Sigma_{{ii}}$ (bars: 2 SE)")
        shown += [t, s]
        t, s, se = (np.asarray(m[k], dtype=float) for k in ("sigma_theory_eig", "sigma_sim_eig", "sigma_sim_eig_se"))
        se = np.hypot(se, np.asarray(m.get("sigma_theory_eig_se", 0.0), dtype=float))  # WOR theory: Monte Carlo D
        modes = np.arange(1, t.size + 1) + (0.1 if scheme == "wor" else -0.1)
        ax_ratio.errorbar(modes, s / t, yerr=2 * se / t, fmt="o", ms=4, color=SCHEME_COLOURS[scheme], capsize=2,
                          label=scheme.upper())
    if shown:
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
    return _save(fig, path)


def plot_q_vs_a(Q, A, A_se, path):
    """Circulation Q (theory) against the measured areal velocity A, upper-triangle entries."""
    Q, A, A_se = (np.asarray(a, dtype=float) for a in (Q, A, A_se))
    iu = np.triu_indices(Q.shape[0], 1)
    fig = Figure(figsize=(5.2, 4.6))
    ax = fig.subplots()
    ax.errorbar(Q[iu], A[iu], yerr=2 * A_se[iu], fmt="o", ms=4, color=SCHEME_COLOURS["wr"], capsize=2,
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
    return _save(fig, path)


def plot_dft(dft, path):
    """Histogram of the window entropy production and ``ln P(ds)/P(-ds)`` with the slope-1 line."""
    from .thermo import plot_detailed_ft

    return _save(plot_detailed_ft(dft), path)


def plot_current(planes: dict, clouds: dict, means: dict, omega_sim: dict, path, grid: int = 15):
    """Density of the simulated cloud and the theory's velocity field in each scheme's plane of largest circulation.

    Coordinates are whitened, ``c = E^T Sigma^{-1/2} (w - w_bar)``; there the stationary density is a unit
    Gaussian and the velocity ``-E^T Omega E c`` a rotation at rate omega
    (:func:`sgworld.nonequilibrium.top_circulation_plane`).
    """
    schemes = [s for s in ("wr", "wor") if s in planes]
    fig = Figure(figsize=(5.5 * len(schemes), 5))
    axes = np.atleast_1d(fig.subplots(1, len(schemes)))
    for ax, scheme in zip(axes, schemes):
        plane = planes[scheme]
        P = plane["whiten"] @ plane["basis"]
        c = (np.asarray(clouds[scheme]) - means[scheme]) @ P
        ax.hexbin(c[:, 0], c[:, 1], gridsize=40, extent=(-3.5, 3.5, -3.5, 3.5), cmap="Greys", mincnt=1)
        g = np.linspace(-3, 3, grid)
        X, Y = np.meshgrid(g, g)
        om = plane["omega"]
        U, V = -om * Y, om * X        # dz = -Omega z restricted to the plane (e1 turns towards e2)
        speed = np.hypot(U, V).max() or 1.0
        ax.quiver(X, Y, U / speed, V / speed, color=SCHEME_COLOURS[scheme], angles="xy", scale=12, width=0.004)
        t = np.linspace(0, 2 * np.pi, 200)
        for r in (1, 2):
            ax.plot(r * np.cos(t), r * np.sin(t), color=SCHEME_COLOURS[scheme], lw=0.8, ls="--")
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
    return _save(fig, path)


def _ellipse(ax, mean2, cov2, colour, nsd=2.0):
    from matplotlib.patches import Ellipse

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
    fig = Figure(figsize=(10, 4.6))
    axes = fig.subplots(1, 2)
    for ax, zoom in zip(axes, (False, True)):
        if not zoom:
            ax.scatter(*wr2.T, s=3, alpha=0.4, color=SCHEME_COLOURS["wr"], label="WR (with replacement)")
            _ellipse(ax, np.zeros(2), E.T @ sigma_wr @ E, SCHEME_COLOURS["wr"])
        ax.scatter(*wor2.T, s=3, alpha=0.4, color=SCHEME_COLOURS["wor"], label="WOR (epoch boundaries)")
        _ellipse(ax, eff2, E.T @ sigma_wor @ E, SCHEME_COLOURS["wor"])
        ax.plot(0, 0, "k+", ms=10, label=r"$w^*$")
        ax.plot(*eff2, "kx", ms=8, label=r"$w_{eff}$ = argmin $L_{eff}$")
        ax.set_xlabel("principal direction 1 of $\\Sigma_{WR}$")
        ax.set_ylabel("principal direction 2")
        ax.set_title("zoom on the WOR cloud" if zoom else
                     "stationary clouds (ellipses: theory, 2 SD; WOR is the dot at the centre)", fontsize=10)
        ax.ticklabel_format(style="sci", scilimits=(-3, 3))
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path)


#: File names (without prefix) and captions of :func:`nonequilibrium_figures`.
NONEQUILIBRIUM_FIGURES = {
    "sigma_theory_vs_sim.png": "Stationary variances of WR and WOR: simulation (relaxation-corrected) against the "
                               "Lyapunov theory, and their ratio per Hessian eigenmode",
    "circulation_Q_vs_A.png": "Probability circulation of WR: measured areal velocity A against the theory "
                              "Q = (lr/2)(H Sigma - Sigma H)",
    "entropy_production_dft.png": "Window entropy production of WR: its histogram, and ln P(ds)/P(-ds) against the "
                                  "slope-1 line of the detailed fluctuation theorem",
    "probability_current.png": "Stationary probability current in the plane of largest circulation: simulated "
                               "density and the theory's velocity field (whitened coordinates)",
    "stationary_clouds.png": "WR and WOR stationary clouds in the top two principal directions of Sigma_WR, with the "
                             "theory's 2-SD ellipses, w* and w_eff",
}


def nonequilibrium_figures(result, out_dir, metrics: dict, prefix: str = "") -> list[str]:
    """The figures of a :class:`sgworld.nonequilibrium.NonequilibriumResult` (``metrics`` its
    :meth:`~sgworld.nonequilibrium.NonequilibriumResult.metrics`) in ``out_dir``; returns their file names.
    A figure whose inputs the run did not produce (a scheme left out, no detailed-FT histogram) is skipped."""
    out_dir = Path(out_dir)
    name = lambda key: out_dir / f"{prefix}{key}"  # noqa: E731
    paths = [plot_sigma(metrics, name("sigma_theory_vs_sim.png"))]
    wr, wor = result.wr, result.wor
    if wr is not None:
        paths.append(plot_q_vs_a(result.wr_theory.state.Q, wr.A, wr.A_se, name("circulation_Q_vs_A.png")))
        if wr.dft is not None:
            paths.append(plot_dft(wr.dft, name("entropy_production_dft.png")))
    planes = result.planes()
    if planes:
        states = {"wr": result.wr_theory.state if wr is not None else None,
                  "wor": result.wor_theory.state if result.wor_theory is not None else None}
        clouds = {"wr": wr.cloud if wr is not None else None, "wor": wor.cloud if wor is not None else None}
        omega = {s: (metrics[s]["circulation"]["omega_sim"], metrics[s]["circulation"]["omega_sim_se"]) for s in planes}
        paths.append(plot_current(planes, clouds, {s: states[s].mean for s in planes}, omega,
                                  name("probability_current.png")))
    if wr is not None and wor is not None and result.wor_theory is not None:
        wr_state, wor_state = result.wr_theory.state, result.wor_theory.state
        paths.append(plot_clouds(wr_state.mean, wr.final, wor.final, wr_state.Sigma, wor_state.Sigma, wor_state.mean,
                                 name("stationary_clouds.png")))
    return [Path(p).name for p in paths]


# --------------------------------------------------------------------------- HMC study

HMC_COLOURS = {"hmc": "tab:red", "lahmc": "tab:blue", "mjhmc": "tab:green"}
HMC_LABELS = {"hmc": "HMC", "lahmc": "LAHMC", "mjhmc": "MJHMC"}
HMC_TITLES = {"gaussian2d": "2-D Gaussian", "gaussian100d": "100-D Gaussian", "rough_well": "2-D rough well"}
ESTIMATOR_LABELS = {"mean_subtracted": "mean-subtracted", "no_mean_subtraction": "no mean subtraction (papers')"}


def plot_autocorrelation(mix: dict, threshold: float, path) -> None:
    """Autocorrelation against gradient evaluations per chain, per target and estimator (HMC study)."""
    names = list(mix)
    estimators = list(ESTIMATOR_LABELS)
    fig = Figure(figsize=(4.2 * len(names), 3.4 * len(estimators)))
    axes = fig.subplots(len(estimators), len(names), squeeze=False)
    for row, estimator in enumerate(estimators):
        for col, name in enumerate(names):
            ax = axes[row, col]
            for method, r in mix[name].items():
                g = r[estimator]["gradients_to_threshold"]
                label = HMC_LABELS[method] + (f": {g:.3g} grads to {threshold:g}" if g else
                                              f": > {r['gradients'][-1]:.3g}")
                ax.plot(r["gradients"], r[estimator]["rho"], color=HMC_COLOURS[method], label=label)
            ax.axhline(threshold, color="0.6", lw=0.8, ls="--")
            ax.axhline(0.0, color="0.8", lw=0.6)
            ax.set_xlabel("gradient evaluations per chain")
            ax.set_ylabel("autocorrelation")
            ax.set_title(f"{HMC_TITLES.get(name, name)} ({ESTIMATOR_LABELS[estimator]})", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path, dpi=110)


def plot_spectral_gaps(gaps: dict, path) -> None:
    """Spectral gaps of MJHMC's jump chain and of LAHMC against HMC's on random ring ladders (HMC study)."""
    fig = Figure(figsize=(5.2, 4.4))
    ax = fig.subplots()
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
    _save(fig, path, dpi=110)


# --------------------------------------------------------------------------- posterior study

POSTERIOR_COLOURS = {"sgld": "tab:red", "ula": "tab:green", "sghmc": "tab:orange", "sgld_cv": "tab:purple",
           "sgld+pc": "tab:brown", "sgld_cv+pc": "tab:pink", "sghmc+pc": "tab:olive"}
POSTERIOR_LABELS = {"sgld": "SGLD", "sgworld": "SGWORLD", "ula": "ULA (full batch)"}
SCHEME_STYLES = {"wr": "-", "wor": "--", "full": ":", "iid": "-."}  # wr solid, wor dashed


def _posterior_style(families: dict, method: str):
    fam, scheme = families[method]
    return POSTERIOR_COLOURS.get(fam, "tab:gray"), SCHEME_STYLES.get(scheme, "-")


def _log_lr_axis(ax):
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def _results_by_method(results):
    return {m: sorted((r for r in results if r["method"] == m), key=lambda r: r["lr"])
            for m in dict.fromkeys(r["method"] for r in results)}


def plot_posterior_kl_vs_lr(results, summary, families: dict, interval_z: float, path):
    """The posterior study: KL against lr (exact lines, sampled circles); with sampled lrs, two more panels:
    the excess spread per method (sampled with intervals of +-``interval_z`` SE against exact) and the paired
    wr - wor separations. ``families`` maps each method label to its (sampler family, scheme): one colour
    per family, wr solid and wor dashed."""
    sampled = any(r["sampled"] for r in results)
    fig = Figure(figsize=(16.5 if sampled else 6.8, 4.8))
    axes = fig.subplots(1, 3 if sampled else 1, squeeze=False)
    _kl_panel(axes[0, 0], results, summary, families)
    if sampled:
        _excess_panel(axes[0, 1], results, families, interval_z)
        _separation_panel(axes[0, 2], summary, families)
    fig.tight_layout()
    return _save(fig, path, dpi=110)


def _kl_panel(ax, results, summary, families):
    for method, rs in _results_by_method(results).items():
        lrs = np.array([r["lr"] for r in rs])
        colour, style = _posterior_style(families, method)
        slope = summary["slope_exact_discrete"].get(method)
        label = POSTERIOR_LABELS.get(method, method) + (f": slope {slope:.2f}" if slope else "")
        ax.plot(lrs, [r["kl_exact_discrete"] for r in rs], style, color=colour, label=label)
        sampled = [r for r in rs if r["sampled"]]
        ax.plot([r["lr"] for r in sampled], [r["kl"] for r in sampled], "o", color=colour, mfc="none")
    lrs_s = sorted({r["lr"] for r in results if r["sampled"]})
    if lrs_s:
        floor = [max(r["kl_mc_floor"] for r in results if r["sampled"] and r["lr"] == lr) for lr in lrs_s]
        ax.fill_between(lrs_s, 1e-300, floor, color="0.85", zorder=0, label="approx. Monte Carlo floor of sampled KL")
    _log_lr_axis(ax)
    ax.set_yscale("log")
    kls = [r["kl_exact_discrete"] for r in results] + [r["kl"] for r in results if r["sampled"]]
    kls = [k for k in kls if k and k > 0]
    ax.set_ylim(min(kls) / 3, max(kls) * 3)
    ax.set_xlabel("learning rate lr")
    ax.set_ylabel("KL(stationary || posterior)")
    ax.set_title("Distance to the exact posterior (lines: exact discrete time; solid wr, dashed wor;\n"
                 "circles: sampled)", fontsize=9)
    ax.legend(fontsize=7)


def _excess_panel(ax, results, families, interval_z):
    methods = _results_by_method(results)
    for j, (method, rs) in enumerate(methods.items()):
        colour, style = _posterior_style(families, method)
        sampled = [r for r in rs if r["sampled"]]
        if not sampled:
            continue
        lrs = np.array([r["lr"] for r in sampled])
        ax.plot(lrs, [r["excess_exact"] for r in sampled], style, color=colour, label=POSTERIOR_LABELS.get(method, method))
        err = np.array([[r["excess"] - r["excess_ci"][0], r["excess_ci"][1] - r["excess"]] for r in sampled]).T
        shift = 1.0 + 0.04 * (j - (len(methods) - 1) / 2)  # side by side, so that intervals do not hide each other
        ax.errorbar(lrs * shift, [r["excess"] for r in sampled], yerr=err, fmt="o", color=colour, mfc="none",
                    capsize=3)
    ax.axhline(0.0, color="0.5", lw=0.8)
    _log_lr_axis(ax)
    ax.set_xlabel("learning rate lr")
    ax.set_ylabel("excess spread e = E[z^T z]/d - 1 (posterior units)")
    ax.set_title(f"Per method: sampled (intervals +-{interval_z:g} SE) vs exact (lines)", fontsize=9)
    ax.legend(fontsize=7)


def _separation_panel(bx, summary, families):
    for pair, rows in summary.get("separation", {}).items():
        if not rows:
            continue
        colour, _ = _posterior_style(families, pair.split("/")[0])
        lrs = np.array([s["lr"] for s in rows])
        bx.plot(lrs, [s["exact"] for s in rows], "-", color=colour, label=f"{pair} exact")
        err = np.array([[s["value"] - s["ci"][0], s["ci"][1] - s["value"]] for s in rows]).T
        bx.errorbar(lrs, [s["value"] for s in rows], yerr=err, fmt="o", color=colour, mfc="none", capsize=3,
                    label=f"{pair} sampled (paired chains)")
    bx.axhline(0.0, color="0.5", lw=0.8)
    _log_lr_axis(bx)
    bx.set_xlabel("learning rate lr")
    bx.set_ylabel("e(wr) - e(wor)")
    bx.set_title("Separation wr - wor: resolved where the interval excludes 0", fontsize=9)
    bx.legend(fontsize=7)
