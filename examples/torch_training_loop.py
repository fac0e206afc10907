"""An ordinary PyTorch training loop turned into SGLD and SGWORLD posterior sampling.

Two lines change, the optimizer and the data loader; the loop itself (zero_grad, mean NLL,
backward, step) stays as it is. The data are the paper's 1-D regression, y = exp(-x^2) + noise on
[-3, 3] (arXiv 2306.03521), fitted by a small tanh network; the samplers start from the fitted network
and collect one network per epoch. Runs in seconds on a CPU:

    python examples/torch_training_loop.py
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sgworld.optim import SGLD, SGWORLD, WithReplacementSampler

N, B = 200, 20                  # data points, batch size
NOISE_STD = 0.1                 # the likelihood y ~ N(f(x), NOISE_STD^2)
PRIOR_PRECISION = 1.0           # prior w ~ N(0, I / PRIOR_PRECISION)
FIT_EPOCHS = 80                 # ordinary training (Adam)
LR = 1e-5                       # Langevin step on the N-scaled loss (SGD's lr on the mean loss is LR * N)
SAMPLE_EPOCHS, BURN_IN = 120, 20  # each sampler keeps one network per epoch after BURN_IN

torch.set_num_threads(1)        # a tiny network: one thread is fastest
gen = torch.Generator().manual_seed(0)
x = torch.arange(-3.0, 3.0, 0.03)[:, None]
y = torch.exp(-x**2) + NOISE_STD * torch.randn(x.shape, generator=gen)
data = TensorDataset(x, y)
x_held_out = 6 * torch.rand(500, 1, generator=gen) - 3
y_held_out = torch.exp(-x_held_out**2) + NOISE_STD * torch.randn(x_held_out.shape, generator=gen)
x_show = torch.arange(-4.0, 4.5, 1.0)[:, None]   # beyond the data at |x| = 4


def mean_nll(prediction, target):
    """The usual PyTorch loss: the Gaussian negative log-likelihood averaged over the batch."""
    return F.gaussian_nll_loss(prediction, target, torch.full_like(prediction, NOISE_STD**2))


def train(model, optimizer, loader, epochs, collect_after):
    """The user's loop, the same for Adam, SGLD and SGWORLD; returns the predictions, on the held-out
    and display points, of the networks after each epoch past ``collect_after``."""
    collected = []
    for epoch in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            mean_nll(model(xb), yb).backward()
            optimizer.step()
        if epoch >= collect_after:  # draws at epoch boundaries
            with torch.no_grad():
                collected.append((model(x_held_out), model(x_show)))
    return collected


def summary(name, collected):
    """Posterior predictive on held-out data: RMSE of the mean and log predictive density per point."""
    held_out = torch.stack([c[0] for c in collected])            # (draws, 500, 1)
    show = torch.stack([c[1] for c in collected]).squeeze(-1)   # (draws, len(x_show))
    log_lik = torch.distributions.Normal(held_out, NOISE_STD).log_prob(y_held_out)
    lpd = (torch.logsumexp(log_lik, 0) - math.log(len(collected))).mean()
    rmse = (held_out.mean(0) - y_held_out).pow(2).mean().sqrt()
    spread = show.std(0).tolist() if len(show) > 1 else [None] * show.shape[1]
    cells = "  ".join(f"{m:5.2f}±{s:4.2f}" if s is not None else f"{m:5.2f}     "
                      for m, s in zip(show.mean(0).tolist(), spread))
    print(f"{name:8s} {len(collected):5d} {rmse:6.3f} {lpd:8.3f}  {cells}")


def optimizer_and_loader(method, model):
    """The two lines that differ between ordinary training and posterior sampling."""
    if method == "Adam":  # ordinary training
        optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
        loader = DataLoader(data, batch_size=B, shuffle=True, generator=torch.Generator().manual_seed(0))
    elif method == "SGLD":  # b distinct examples drawn afresh every step
        optimizer = SGLD(model.parameters(), lr=LR, num_data=N, prior_precision=PRIOR_PRECISION, seed=1)
        loader = DataLoader(data, batch_sampler=WithReplacementSampler(N, B, seed=1))
    else:  # SGWORLD: the same update, a new permutation of the data every epoch, remainder dropped
        optimizer = SGWORLD(model.parameters(), lr=LR, num_data=N, prior_precision=PRIOR_PRECISION, seed=2)
        loader = DataLoader(data, batch_size=B, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(2))
    return optimizer, loader


torch.manual_seed(0)  # the network's initial weights
model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
runs = {"Adam": train(model, *optimizer_and_loader("Adam", model), FIT_EPOCHS, FIT_EPOCHS - 1)}
fit = {k: v.clone() for k, v in model.state_dict().items()}
for method in ("SGLD", "SGWORLD"):
    model.load_state_dict(fit)  # each chain starts at the fitted network
    runs[method] = train(model, *optimizer_and_loader(method, model), SAMPLE_EPOCHS, BURN_IN)

print(f"posterior predictive, {N} points, batch {B}, lr = {LR:.0e}; held-out RMSE (noise {NOISE_STD}) "
      "and log predictive density per point (higher is better)")
print(f"{'method':8s} {'draws':>5s} {'RMSE':>6s} {'LPD':>8s}  "
      + "  ".join(f"{f'f({v:g})':>9s}" for v in x_show.squeeze(1).tolist()))
truth = torch.exp(-x_show**2).squeeze(1).tolist()
print(f"{'truth':8s} {'':5s} {'':6s} {'':8s}  " + "  ".join(f"{v:9.2f}" for v in truth))
for method, collected in runs.items():
    summary(method, collected)
