"""Figure of the posterior study: KL to the exact posterior against lr, log-log."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLOURS = {"sgld": "tab:red", "sgworld": "tab:blue", "ula": "tab:green", "mala": "tab:purple"}
LABELS = {"sgld": "SGLD", "sgworld": "SGWORLD", "ula": "ULA (full batch)", "mala": "MALA"}


def plot_kl_vs_lr(results, summary, path):
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for method in dict.fromkeys(r["method"] for r in results):
        rs = sorted((r for r in results if r["method"] == method), key=lambda r: r["lr"])
        lrs = np.array([r["lr"] for r in rs])
        c = COLOURS.get(method, None)
        slope = summary["slope_exact_discrete"].get(method)
        slope_sim = summary["slope"].get(method)
        label = f"{LABELS.get(method, method)}: exact slope {slope:.2f}" if slope else LABELS.get(method, method)
        label += f", sampled {slope_sim:.2f}" if slope_sim else ", sampled: near MC floor"
        ax.plot(lrs, [r["kl_exact_discrete"] for r in rs], "-", color=c, label=label)
        ax.plot(lrs, [r["kl"] for r in rs], "o", color=c, mfc="none")
    lrs_all = sorted({r["lr"] for r in results})
    floor = [max(r["kl_mc_floor"] for r in results if r["lr"] == lr) for lr in lrs_all]
    ax.fill_between(lrs_all, 1e-300, floor, color="0.85", zorder=0,
                    label="approx. Monte Carlo floor of sampled KL")
    ax.set_xscale("log")
    ax.set_yscale("log")
    kls = [r["kl_exact_discrete"] for r in results] + [r["kl"] for r in results]
    kls = [k for k in kls if k and k > 0]
    ax.set_ylim(min(kls) / 3, max(kls) * 3)
    ax.set_xlabel("learning rate lr")
    ax.set_ylabel("KL(stationary || posterior)")
    ax.set_title("Distance to the exact posterior (lines: exact discrete time, circles: sampled)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
