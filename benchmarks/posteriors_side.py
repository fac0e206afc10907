"""posteriors' SGLD (``posteriors.sgld``): one ``update`` per step on a (K, p) parameter tensor.

The log posterior is written batched over chains (its value is the sum of the chains' log
posteriors, so its gradient holds each chain's own gradient): one ``torch.func`` gradient per step
for all chains, the fastest correct use of the library for many chains. Batches come from
sgworld's ``IndexStream`` (blocks of steps), the fastest index draws available in torch.
"""

from __future__ import annotations

import posteriors.sgmcmc.sgld
import torch

from sgworld.batching import IndexStream

from common import THREADS

_NO_AUX = torch.tensor([])


def log_posterior_fn(workload, dtype):
    d, n = workload.data, workload.n
    if workload.name == "W1":
        x = torch.as_tensor(d["x"], dtype=dtype)
        y = torch.as_tensor(d["y"], dtype=dtype)
        scale, prior = n / d["noise_std"] ** 2, n * d["lam"] / d["noise_std"] ** 2

        def log_post(w, idx):
            xb, yb = x[idx], y[idx]
            c = lambda j: w[:, j:j + 1]  # noqa: E731
            f = c(4) * torch.tanh(c(0) * xb + c(2)) + c(5) * torch.tanh(c(1) * xb + c(3)) + c(6)
            u = 0.5 * scale * ((yb - f) ** 2).mean(1) + 0.5 * prior * (w * w).sum(1)
            return -u.sum(), _NO_AUX
        return log_post
    if workload.name == "W2":
        X = torch.as_tensor(d["X"], dtype=dtype)
        y = torch.as_tensor(d["y"], dtype=dtype)
        scale, prec = n / d["noise_std"] ** 2, 1 / d["prior_std"] ** 2

        def log_post(w, idx):
            r = torch.bmm(X[idx], w.unsqueeze(-1)).squeeze(-1) - y[idx]
            u = 0.5 * scale * (r * r).mean(1) + 0.5 * prec * (w * w).sum(1)
            return -u.sum(), _NO_AUX
        return log_post
    X = torch.as_tensor(d["X"], dtype=dtype)
    y = torch.as_tensor(d["y"], dtype=torch.long)
    prec = 1 / d["prior_std"] ** 2

    def log_post(w, idx):
        k = w.shape[0]
        W1, b1 = w[:, :2048].view(k, 32, 64), w[:, 2048:2080]
        W2, b2 = w[:, 2080:2400].view(k, 10, 32), w[:, 2400:2410]
        h = torch.tanh(torch.baddbmm(b1.unsqueeze(1), X[idx], W1.transpose(1, 2)))
        out = torch.baddbmm(b2.unsqueeze(1), h, W2.transpose(1, 2))
        nll = -torch.log_softmax(out, -1).gather(-1, y[idx].unsqueeze(-1)).squeeze(-1)
        u = n * nll.mean(1) + 0.5 * prec * (w * w).sum(1)
        return -u.sum(), _NO_AUX
    return log_post


def runner(workload, dtype_name: str, chains: int, scheme: str):
    dtype = getattr(torch, dtype_name)
    transform = posteriors.sgmcmc.sgld.build(log_posterior_fn(workload, dtype), lr=workload.lr, temperature=1.0)
    init = torch.as_tensor(workload.init, dtype=dtype).expand(chains, -1).clone()

    def run(steps: int):
        torch.set_num_threads(THREADS)
        stream = IndexStream(scheme, workload.n, workload.b, chains, torch.Generator().manual_seed(0))
        state = transform.init(init.clone())
        with torch.no_grad():
            for _ in range(steps):
                state, _ = transform.update(state, next(stream), inplace=True)
        return state.params

    return run
