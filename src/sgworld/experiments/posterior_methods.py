"""The posterior study's methods: ``NAME``, ``NAME:SCHEME`` or ``NAME+pc[:SCHEME]``, and their exact moments.

A method of the study is a sampler of :data:`sgworld.samplers.METHODS` whose stationary moments on a
quadratic problem are known exactly (:mod:`sgworld.theory.exact`), with a minibatch scheme:

* ``sgld``, ``sgworld``, ``ula`` -- the Langevin update ``w <- w - lr P g_n + sqrt(2 lr T) C xi``
  (``P = C C^T``; ``P = I`` unless ``+pc``) with their own schemes ``wr``, ``wor``, ``full``
  (Welling & Teh 2011; SGWORLD: Adhikari et al., arXiv:2306.03521);
* ``sgld_cv`` -- the same update with the control-variate gradient
  ``g_n = grad L(w_hat) + grad L_B(w) - grad L_B(w_hat)`` around the MAP ``w_hat`` (Baker et al. 2019);
* ``sghmc`` -- ``v <- (1 - alpha) v - lr g_n + sqrt(2 (alpha - beta_hat) lr T) xi``, ``w <- w + v``
  (Chen, Fox & Guestrin 2014, eq. 15), friction ``alpha`` and noise estimate ``beta_hat`` from the
  study's settings.

``:SCHEME`` (``wr``, ``iid``, ``wor``, ``full``) overrides the default scheme (``wr`` for everything but
``sgworld`` and ``ula``), so ``sgld:wor`` is SGWORLD. ``+pc`` (sgld, sgworld, sgld_cv) adds the constant
preconditioner ``P = h_max H^{-1}`` (:func:`preconditioner_for`: the inverse Hessian, scaled so that
``P H`` has the same largest eigenvalue ``h_max`` as ``H``, hence the same step-size limit and the same
meaning of ``lr M h_max``). A bare default name keeps its name as the method's label (``sgld``);
anything else is labelled by its full spec (``sghmc:wor``).

:func:`exact_moments` is the one place that maps a method to the exact stationary mean and
covariance of its position (at epoch boundaries for ``wor``), and :func:`sample_options` the one
place that maps it to :func:`sgworld.sample` arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..theory.exact import epoch_stationary_moments, sghmc_stationary_moments, stepwise_stationary_moments

DEFAULT_SCHEMES = {"sgld": "wr", "sgworld": "wor", "ula": "full", "sgld_cv": "wr", "sghmc": "wr"}
LANGEVIN = ("sgld", "sgworld", "sgld_cv")  # the minibatch Langevin methods, which take a preconditioner
SCHEMES = ("wr", "iid", "wor", "full")
PRECONDITIONED = "pc"
SPEC_FORM = "NAME, NAME:SCHEME or NAME+pc[:SCHEME]"


@dataclass(frozen=True)
class MethodSpec:
    """One method of the study: sampler ``name``, minibatch ``scheme``, preconditioned or not."""

    name: str
    scheme: str
    preconditioned: bool = False
    label: str = ""


def parse_method(text: str) -> MethodSpec:
    """``"sghmc:wor"`` -> MethodSpec("sghmc", "wor", False, "sghmc:wor"); one-line errors name the fix."""
    raw = str(text).strip()
    head, _, scheme = raw.partition(":")
    name, _, flag = head.partition("+")
    if name not in DEFAULT_SCHEMES:
        raise ValueError(f"unknown method {name!r} in methods entry {raw!r}; choose one of: "
                         f"{', '.join(DEFAULT_SCHEMES)} (samplers with exact theory), as {SPEC_FORM}")
    if flag and flag != PRECONDITIONED:
        raise ValueError(f"unknown option {'+' + flag!r} in methods entry {raw!r}; the one option is '+pc' "
                         "(preconditioner = h_max H^-1), e.g. sgld+pc:wr")
    if flag and name not in LANGEVIN:
        raise ValueError(f"'+pc' in methods entry {raw!r} applies to the Langevin methods "
                         f"({', '.join(LANGEVIN)}), not to {name}")
    if ":" in raw and scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r} in methods entry {raw!r}; choose one of: {', '.join(SCHEMES)}")
    if name == "ula" and scheme not in ("", "full"):
        raise ValueError(f"methods entry {raw!r}: ula is full-batch Langevin (scheme full); use sgld:{scheme} "
                         "for minibatches")
    scheme = scheme or DEFAULT_SCHEMES[name]
    return MethodSpec(name, scheme, bool(flag), raw if (":" in raw or flag) else name)


def parse_methods(entries) -> list[MethodSpec]:
    specs = [parse_method(e) for e in entries]
    if not specs:
        raise ValueError(f"methods is empty; give at least one entry ({SPEC_FORM}), e.g. methods=sgld,sgworld")
    labels = [s.label for s in specs]
    repeated = sorted({lab for lab in labels if labels.count(lab) > 1})
    if repeated:
        raise ValueError(f"methods lists {', '.join(repeated)} more than once; give each method once")
    return specs


def preconditioner_for(H) -> np.ndarray:
    """``P = h_max H^{-1}``: whitens the curvature (``P H = h_max I``) at SGLD's step-size limit."""
    H = np.asarray(H, float)
    P = np.linalg.eigvalsh(H)[-1] * np.linalg.inv(H)
    return 0.5 * (P + P.T)


def exact_moments(spec: MethodSpec, A, g, lr: float, temperature: float, batch_size: int, *, map_point,
                  preconditioner, alpha: float, beta_hat: float, permutations: int, seed: int):
    """Exact stationary moments of the position for ``spec`` (:class:`sgworld.theory.exact.Moments`;
    epoch-boundary moments for ``wor``, with standard errors when averaged over ``permutations``)."""
    options = {}
    if spec.name == "sgld_cv":
        options["control_variate_centre"] = np.asarray(map_point, float)
    if spec.name == "sghmc":
        return sghmc_stationary_moments(A, g, lr, temperature, batch_size, spec.scheme, alpha=alpha,
                                        beta_hat=beta_hat, permutations=permutations, seed=seed, **options)
    if spec.preconditioned:
        options["preconditioner"] = np.asarray(preconditioner, float)
    if spec.scheme == "wor":
        return epoch_stationary_moments(A, g, lr, temperature, batch_size, permutations=permutations, seed=seed,
                                        **options)
    return stepwise_stationary_moments(A, g, lr, temperature, batch_size, scheme=spec.scheme, **options)


def sample_options(spec: MethodSpec, batch_size: int, n: int, *, map_point, preconditioner, alpha: float,
                   beta_hat: float) -> dict:
    """``method``, ``scheme``, ``batch_size`` and ``kernel_options`` of :func:`sgworld.sample` for ``spec``
    (``full`` is ``ula`` itself, or for another sampler ``wr`` batches of all N samples)."""
    options = {}
    if spec.name == "sgld_cv":
        options["centre"] = np.asarray(map_point, float)
    if spec.name == "sghmc":
        options.update(alpha=alpha, beta_hat=beta_hat)
    if spec.preconditioned:
        options["preconditioner"] = np.asarray(preconditioner, float)
    if spec.scheme == "full":
        scheme, batch_size = (None, batch_size) if spec.name == "ula" else ("wr", n)
    else:
        scheme = spec.scheme
    return {"method": spec.name, "scheme": scheme, "batch_size": batch_size, "kernel_options": options or None}


def mean_map(spec: MethodSpec, H, lr: float, preconditioner, alpha: float) -> np.ndarray:
    """The deterministic part of one step on the state (w for Langevin, (w, v) for SGHMC)."""
    H = np.asarray(H, float)
    p = H.shape[0]
    if spec.name == "sghmc":
        # v' = (1 - alpha) v - lr H w;  w' = w + v'
        top = np.hstack([np.eye(p) - lr * H, (1 - alpha) * np.eye(p)])
        bottom = np.hstack([-lr * H, (1 - alpha) * np.eye(p)])
        return np.vstack([top, bottom])
    P = np.asarray(preconditioner, float) if spec.preconditioned else np.eye(p)
    return np.eye(p) - lr * P @ H


def relaxation_steps(spec: MethodSpec, H, lr: float, preconditioner, alpha: float) -> float:
    """Steps for the slowest mode of the mean to shrink by e: ``-1 / log rho`` with ``rho`` the spectral
    radius of :func:`mean_map` (about ``1 / (lr h_min)`` for SGLD); the second moments relax twice as fast."""
    rho = float(np.max(np.abs(np.linalg.eigvals(mean_map(spec, H, lr, preconditioner, alpha)))))
    if not rho < 1:
        raise ValueError(f"{spec.label} has no stationary state at lr = {lr:.6g}: the mean map's spectral "
                         f"radius is {rho:.6g} >= 1; lower lr_max_factor or the lrs")
    return -1.0 / np.log(rho)


def family(label: str) -> tuple[str, str]:
    """(sampler family, scheme) of a method label: sgworld is the sgld family's wor member."""
    spec = parse_method(label)
    name = "sgld" if spec.name == "sgworld" else spec.name
    return name + ("+pc" if spec.preconditioned else ""), spec.scheme


def wr_wor_pairs(specs) -> list[tuple[str, str]]:
    """(wr label, wor label) for every sampler family run with both schemes, in the order given."""
    by = {}
    for s in specs:
        by.setdefault(family(s.label)[0], {})[s.scheme] = s.label
    return [(v["wr"], v["wor"]) for v in by.values() if "wr" in v and "wor" in v]
