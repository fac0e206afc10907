import numpy as np
import pytest
import torch
from torch import nn

from sgworld import BayesianLinearRegression, GaussianLocation, Problem, QuadraticProblem, from_module


def test_loss_is_mean_of_potentials_and_minus_log_posterior(blr_problem):
    # L(w) - L(w') must equal -log post(w) + log post(w') for the closed-form posterior.
    p = blr_problem
    post = p.target()
    w = torch.tensor([[0.1, 0.2], [0.4, -0.7]], dtype=torch.float64)
    L = p.loss(w).numpy()
    prec = np.linalg.inv(post.cov)
    nlp = 0.5 * np.einsum("ki,ij,kj->k", w.numpy() - post.mean, prec, w.numpy() - post.mean)
    assert L[0] - L[1] == pytest.approx(nlp[0] - nlp[1], rel=1e-10)


def test_batch_grad_paths_agree(blr_problem):
    # Analytic (linear regression), generic quadratic and autodiff (vmap of grad) batch gradients.
    p = blr_problem
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 2, generator=g, dtype=torch.float64)
    idx = torch.randint(p.n, (5, 7), generator=g)
    a = p.batch_grad(w, idx)
    b = QuadraticProblem.batch_grad(p, w, idx)
    c = Problem.batch_grad(p, w, idx)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    torch.testing.assert_close(p.grad(w), Problem.grad(p, w))


def test_each_chain_uses_its_own_batch(blr_problem):
    p = blr_problem
    w = torch.zeros(2, 2, dtype=torch.float64)
    idx = torch.tensor([[0, 1], [2, 3]])
    out = p.batch_grad(w, idx)
    torch.testing.assert_close(out[0], p.batch_grad(w[:1], idx[:1])[0])
    torch.testing.assert_close(out[1], p.batch_grad(w[1:], idx[1:])[0])


def test_from_module_gaussian_matches_linear_regression(blr_problem):
    p = blr_problem
    net = nn.Linear(2, 1, bias=False)
    q = from_module(net, p.X, p.y[:, None], noise_std=p.noise_std, prior_std=p.prior_std)
    w = torch.randn(3, 2, dtype=torch.float64)
    idx = torch.randint(p.n, (3, 5))
    torch.testing.assert_close(q.batch_grad(w, idx), p.batch_grad(w, idx))
    torch.testing.assert_close(q.hessian(w[0]), p.hessian())
    torch.testing.assert_close(q.initial_params(), net.weight.detach().reshape(-1).double())


def test_from_module_categorical_is_scaled_cross_entropy():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    X, y = torch.randn(10, 3), torch.randint(3, (10,))
    q = from_module(net, X, y, likelihood="categorical", prior_std=2.0)
    w = q.initial_params()[None]
    expected = 10 * nn.functional.cross_entropy(net.double()(X.double()), y, reduction="none") \
        + 0.5 * (w ** 2).sum() / 4.0
    torch.testing.assert_close(q.potentials(w)[0], expected)
    assert q.batch_grad(w.expand(4, -1), torch.randint(10, (4, 3))).shape == (4, q.dim)


def test_gaussian_location_posterior():
    y = torch.tensor([[1.0, 2.0], [3.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    p = GaussianLocation(y, noise_std=1.0, prior_std=10.0)
    t = p.target()
    prec = 3 / 1.0 + 1 / 100.0
    np.testing.assert_allclose(t.cov, np.eye(2) / prec)
    np.testing.assert_allclose(t.mean, y.sum(0).numpy() / prec)


def test_per_sample_grads_average_to_full_grad(blr_problem):
    w = torch.tensor([0.3, -0.2], dtype=torch.float64)
    per = blr_problem.per_sample_grads(w, chunk_size=7)
    torch.testing.assert_close(per.mean(0), blr_problem.grad(w[None])[0])


@pytest.mark.parametrize("make, error", [
    (lambda: BayesianLinearRegression(torch.tensor([[1.0], [float("nan")]]), torch.zeros(2)), "X contains 1 non-finite"),
    (lambda: BayesianLinearRegression(torch.zeros(3, 2), torch.zeros(4)), r"y must have shape \(3,\)"),
    (lambda: BayesianLinearRegression(torch.zeros(3), torch.zeros(3)), r"X must have shape \(N, d\)"),
    (lambda: BayesianLinearRegression(torch.zeros(3, 1), torch.zeros(3), noise_std=0.0), "noise_std must be"),
    (lambda: GaussianLocation(torch.tensor([1.0, float("inf")])), "y contains 1 non-finite"),
    (lambda: from_module(nn.Linear(2, 1), torch.zeros(3, 2), torch.zeros(4, 1)), "X has 3 samples but y has 4"),
    (lambda: from_module(nn.Linear(2, 1), torch.zeros(3, 2), torch.zeros(3, 1), likelihood="poisson"),
     "unknown likelihood 'poisson'"),
    (lambda: QuadraticProblem(torch.zeros(3, 2, 2), torch.zeros(3, 3)), "linear terms must have shape"),
])
def test_bad_problem_inputs(make, error):
    with pytest.raises(ValueError, match=error):
        make()


def test_wrong_parameter_shape(blr_problem):
    with pytest.raises(ValueError, match=r"parameters must have shape \(chains, 2\)"):
        blr_problem.batch_grad(torch.zeros(2, 3, dtype=torch.float64), None)
