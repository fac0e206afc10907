"""The point the theory expands around (sgworld.theory.minimum): Newton's method and the gradient
covariance S, against closed forms. Deterministic checks state the size of the effect they bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgworld import Problem
from sgworld.theory.minimum import find_minimum, gradient_covariance

from conftest import shifted_seed
from scenarios import blr, blr_closed_forms, double_well, generic, one_torch_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- S, H


def test_gradient_covariance_matches_hand_computed_covariance():
    """U_i = a_i w0^2 + b_i w0 w1 + c_i sin(w1): grad U_i = (2 a_i w0 + b_i w1, b_i w0 + c_i cos w1)."""
    rng = np.random.default_rng(shifted_seed(0))
    a, b, c = rng.normal(size=(3, 7))
    problem = Problem(lambda w, a, b, c: a * w[0] ** 2 + b * w[0] * w[1] + c * torch.sin(w[1]),
                      (torch.tensor(a), torch.tensor(b), torch.tensor(c)), 2)
    w = np.array([0.3, -1.1])
    grads = np.stack([2 * a * w[0] + b * w[1], b * w[0] + c * np.cos(w[1])], axis=1)
    centred = grads - grads.mean(0)
    expected = centred.T @ centred / 7
    for chunk in (1, 3, 1024):  # chunked merging must not change the answer
        np.testing.assert_allclose(gradient_covariance(problem, w, chunk_size=chunk), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("as_generic", [False, True], ids=["blr", "torch.func"])
def test_hessian_and_gradient_covariance_of_linear_regression(as_generic):
    problem = blr(30)
    w = np.array([0.7, -0.2])
    H_exact, S_exact = blr_closed_forms(problem, w)
    p = generic(problem) if as_generic else problem
    np.testing.assert_allclose(p.hessian(torch.tensor(w)).numpy(), H_exact, rtol=1e-12)
    np.testing.assert_allclose(gradient_covariance(p, w), S_exact, rtol=1e-10)


# --------------------------------------------------------------------------- Newton


def test_newton_finds_the_minimum_of_a_quadratic_in_one_step():
    problem = blr(30)
    w_star, result = find_minimum(problem, [5.0, -3.0])
    assert result.iterations == 1
    np.testing.assert_allclose(w_star, problem.target().mean, rtol=1e-12)


def test_newton_leaves_a_region_of_negative_curvature():
    w_star, result = find_minimum(double_well(), [0.2])
    assert result.regularised_steps >= 1
    assert abs(abs(w_star[0]) - 1) < 0.05 and result.grad_norm < 1e-10


def test_newton_reports_non_convergence_with_advice():
    with pytest.raises(ValueError, match="did not converge.*SGD"):
        find_minimum(double_well(), [0.2], max_iter=1)
