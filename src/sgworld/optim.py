"""Drop-in PyTorch path: a ``torch.optim`` Langevin optimizer and a with-replacement batch sampler.

An ordinary training loop becomes a posterior sampler by changing two lines, the optimizer and the
data loader::

    opt = SGLD(model.parameters(), lr=lr, num_data=N, prior_precision=lam, seed=0)
    loader = DataLoader(ds, batch_sampler=WithReplacementSampler(N, b, seed=0))        # SGLD

    opt = SGWORLD(model.parameters(), lr=lr, num_data=N, prior_precision=lam, seed=0)
    loader = DataLoader(ds, batch_size=b, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))                    # SGWORLD

    opt = SGHMC(model.parameters(), lr=lr, num_data=N, alpha=0.1, seed=0)              # SGHMC (momentum)

The loop itself is unchanged: ``loss = mean NLL of the batch; loss.backward(); opt.step()``.
With the user's loss the mean negative log-likelihood over the minibatch, the optimizer forms

    grad L_B(w) = num_data * grad(mean NLL)(w) + prior_precision * w

(the minibatch loss of docs/concepts.md with a Gaussian prior ``N(0, I / prior_precision)``) and applies the
one update rule of sgworld, :func:`sgworld.samplers.base.langevin_update`::

    w <- w - lr * grad L_B(w) + sqrt(2 * lr * T) * xi,   xi ~ N(0, I).

It samples ``exp(-L/T)``, the posterior at ``T = 1``, up to an O(lr) bias. Welling & Teh's step size
is ``eps = 2 * lr``; plain SGD on the mean NLL with learning rate ``lr_sgd`` is ``lr = lr_sgd / num_data``
at ``T = 0`` and ``prior_precision = 0``. SGLD and SGWORLD differ only in the minibatches
(arXiv 2306.03521): SGLD draws b distinct indices afresh every step (``wr``,
:class:`WithReplacementSampler`), SGWORLD reshuffles the data every epoch and walks through it
(``wor``, ``DataLoader(shuffle=True, drop_last=True)``).

Reference: S. Adhikari, A. Kabakçıoğlu, A. Strang, D. Yuret, M. Hinczewski, "Machine learning in and
out of equilibrium", arXiv:2306.03521; M. Welling, Y. W. Teh, "Bayesian learning via stochastic
gradient Langevin dynamics", ICML 2011.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.optim import Optimizer
from torch.utils.data import Sampler

from ._checks import check_int_range, check_nonnegative, check_positive
from .batching import IndexStream
from .distributed import check_replicas
from .rng import CHAIN_GROUP, INDEX_STREAM, NOISE_STREAM, ChainRandom, stream_seed
from .samplers.base import langevin_update
from .samplers.integrators import sghmc_update
from .samplers.sghmc import check_friction

__all__ = ["SGLD", "SGWORLD", "SGHMC", "WithReplacementSampler"]

# ``seed=s`` seeds the index and noise generators as ``sgworld.sample(seed=s)`` seeds chain group 0's two
# streams (sgworld.rng): a batch sampler and an optimizer given the same seed draw independent streams.


def _generator(generator: torch.Generator | None, seed: int | None, stream: int, device) -> torch.Generator:
    """The generator to draw from: the user's, or a fresh one from ``seed`` (default 0) on ``device``."""
    if generator is not None:
        if seed is not None:
            raise ValueError("pass either generator= or seed=, not both")
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    seed = 0 if seed is None else check_int_range("seed", seed, 0)
    return torch.Generator(device=torch.device(device)).manual_seed(stream_seed(seed, stream))


class SGLD(Optimizer):
    """Stochastic-gradient Langevin dynamics as a ``torch.optim`` optimizer.

    Each :meth:`step` applies, to every parameter ``w`` that has a gradient,

        w <- w - lr * (num_data * w.grad + prior_precision * w) + sqrt(2 * lr * temperature) * xi,

    ``xi ~ N(0, I)`` drawn from this optimizer's own generator (never the global RNG). ``w.grad`` must
    be the gradient of the *mean* negative log-likelihood over the minibatch, the usual PyTorch loss
    (e.g. ``F.cross_entropy(model(x), y)``); the optimizer scales it to the full-data loss and adds the
    Gaussian prior. Feed it minibatches of b distinct indices drawn afresh every step
    (:class:`WithReplacementSampler`); the same update with reshuffled epochs is :class:`SGWORLD`.

    Parameters
    ----------
    params : iterable of parameters or of dicts (param groups); every hyperparameter below may be
        overridden per group, e.g. a different ``prior_precision`` for biases.
    lr : step size > 0. Welling & Teh's ``eps`` is ``2 * lr``; SGD's learning rate on the mean loss is
        ``num_data * lr``. A ``torch.optim.lr_scheduler`` may change it between steps.
    num_data : N, the number of training examples (the likelihood is N times the mean NLL).
    temperature : T >= 0; the target is ``posterior ** (1/T)``; 1 is the posterior, 0 is plain SGD.
    prior_precision : lambda >= 0 of the prior ``N(0, I / lambda)`` on each parameter (0: flat prior,
        i.e. plain likelihood; weight decay ``wd`` of SGD corresponds to ``lambda = num_data * wd``).
    generator : a ``torch.Generator`` on the parameters' device for the Langevin noise; or
    seed : an integer (default 0) from which one is made. Give each chain its own seed.
    replicas : under ``torch.distributed`` with several ranks, data-parallel replicas of one model (DDP)
        draw the same noise, so at the first step the generators of all ranks are compared and a rank
        whose state differs (another seed) is an error naming it (:mod:`sgworld.distributed`). Pass
        ``replicas=False`` for independent chains per rank (different seeds on purpose).

    ``state_dict()`` includes the generator's state, so a loop resumed from a checkpoint of the model,
    the optimizer and the data order continues bit for bit.

    Reference: Welling & Teh, ICML 2011; Adhikari et al., arXiv:2306.03521.
    """

    def __init__(self, params, lr: float, num_data: int, temperature: float = 1.0, prior_precision: float = 0.0,
                 *, generator: torch.Generator | None = None, seed: int | None = None, replicas: bool | None = None):
        defaults = dict(lr=lr, num_data=num_data, temperature=temperature, prior_precision=prior_precision)
        self.generator = None
        self._check_replicas = replicas is not False  # at the first step, under torch.distributed (see step)
        super().__init__(params, defaults)
        first = next((p for group in self.param_groups for p in group["params"]), None)
        self.generator = _generator(generator, seed, NOISE_STREAM, first.device if first is not None else "cpu")
        # The noise of all parameters is one flat vector per step, drawn as chain 0 of ``sample()`` draws it.
        self._noise = ChainRandom([self.generator], [1], CHAIN_GROUP)
        for group in self.param_groups:
            self._check_device(group)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["lr"] = check_positive("lr", group["lr"])
        group["num_data"] = check_int_range("num_data", group["num_data"], 1)
        group["temperature"] = check_nonnegative("temperature", group["temperature"])
        group["prior_precision"] = check_nonnegative("prior_precision", group["prior_precision"])
        if self.generator is not None:  # None while the constructor adds the first groups
            self._check_device(group)

    def _check_device(self, group: dict) -> None:
        want = self.generator.device.type
        for p in group["params"]:
            if p.device.type != want:
                raise ValueError(f"a parameter lives on {p.device} but the noise generator on {self.generator.device}; "
                                 f"pass generator=torch.Generator(device='{p.device.type}') or build the optimizer "
                                 "after moving the model")

    @torch.no_grad()
    def step(self, closure=None):
        """One Langevin step on every parameter with a gradient (others are skipped, and draw no noise).

        ``closure``, if given, re-evaluates the model and returns the loss (as in ``torch.optim``).
        """
        loss = None
        if self._check_replicas:  # data-parallel replicas (DDP) must draw the same noise on every rank
            self._check_replicas = False
            check_replicas(self.generator)
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        live = [(group, p) for group in self.param_groups for p in group["params"] if p.grad is not None]
        noisy = [p for group, p in live if group["temperature"] > 0]
        noise = iter(())
        if noisy:
            flat = self._noise.normal(torch.empty(1, sum(p.numel() for p in noisy), dtype=noisy[0].dtype,
                                                  device=noisy[0].device))[0]
            noise = iter(flat.split([p.numel() for p in noisy]))
        for group, p in live:
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            grad = p.grad.mul(group["num_data"])
            if group["prior_precision"]:
                grad.add_(p, alpha=group["prior_precision"])
            xi = next(noise).view_as(p) if group["temperature"] > 0 else None
            self._update(group, p, grad, xi)
        return loss

    def _update(self, group: dict, p: torch.Tensor, grad: torch.Tensor, xi: torch.Tensor | None) -> None:
        """Apply this optimizer's integrator to ``p`` given ``grad L_B`` and the noise ``xi`` (None at T = 0)."""
        p.copy_(langevin_update(p, grad, group["lr"], group["temperature"], None, xi))

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["generator"] = self._noise.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        if "generator" not in state_dict:
            raise ValueError(f"not a {type(self).__name__} state_dict: the 'generator' entry (the noise RNG state) "
                             "is missing")
        generator_state = state_dict.pop("generator")
        super().load_state_dict(state_dict)
        self._noise.load_state_dict(generator_state)


class SGWORLD(SGLD):
    """SGWORLD: Stochastic Gradient WithOut Replacement Langevin Dynamics (arXiv 2306.03521).

    The same update as :class:`SGLD`; what makes it SGWORLD is the data order: a fresh random
    permutation of the data every epoch, cut into ``floor(N/b)`` batches of b (the remainder dropped),
    which is exactly what PyTorch's own loader does with::

        DataLoader(ds, batch_size=b, shuffle=True, drop_last=True,
                   generator=torch.Generator().manual_seed(seed))   # seeded: reproducible

    Within an epoch the minibatch gradient errors cancel, so the minibatch noise is negligible next to
    the injected noise: the stationary state is, to leading order, in equilibrium, with an error of
    full-batch Langevin's O(lr) size instead of SGLD's (N/b)-amplified one. At equal lr SGWORLD is
    much closer to the posterior; for equal error it tolerates a much larger lr. Draw samples at
    epoch boundaries (the natural time unit of reshuffled minibatches).
    """


class SGHMC(SGLD):
    """Stochastic-gradient HMC (Chen, Fox & Guestrin 2014) as a ``torch.optim`` optimizer.

    Each :meth:`step` applies to every parameter ``w`` with a gradient, with ``g = num_data * w.grad +
    prior_precision * w`` (as :class:`SGLD`) and the momentum ``v`` kept in the optimizer state
    (``v_0 = 0``), the update of ``sgworld.sample(method="sghmc")``
    (:func:`sgworld.samplers.integrators.sghmc_update`)::

        v <- (1 - alpha) v - lr g + sqrt(2 (alpha - beta_hat) lr T) xi,     w <- w + v,

    friction ``alpha`` in (0, 1], noise estimate ``beta_hat`` in [0, alpha). The noise ``xi`` is drawn as
    for :class:`SGLD` (one flat vector per step, as chain 0 of ``sample()`` draws it), so with the same
    seed and batches the loop reproduces the functional sampler's chain. At ``T = 0`` this is exactly
    ``torch.optim.SGD(params, lr=lr, momentum=1 - alpha, dampening=0)`` on ``g``: SGD keeps
    ``buf <- (1 - alpha) buf + g`` and ``w <- w - lr buf``, i.e. ``v = -lr buf``. In the mean-loss units of
    SGD (``lr_sgd`` on the mean NLL) ``lr = lr_sgd / num_data``. Feed it ``wr`` minibatches
    (:class:`WithReplacementSampler`) or reshuffled epochs (``beta_hat = 0`` then).

    Parameters as :class:`SGLD`, plus ``alpha`` (default 0.1) and ``beta_hat`` (default 0), per group
    if wished. ``state_dict()`` holds the momenta and the generator's state.

    Reference: T. Chen, E. B. Fox, C. Guestrin, "Stochastic gradient Hamiltonian Monte Carlo", ICML 2014.
    """

    def __init__(self, params, lr: float, num_data: int, temperature: float = 1.0, prior_precision: float = 0.0,
                 alpha: float = 0.1, beta_hat: float = 0.0, *, generator: torch.Generator | None = None,
                 seed: int | None = None):
        self._friction = dict(alpha=alpha, beta_hat=beta_hat)
        super().__init__(params, lr, num_data, temperature, prior_precision, generator=generator, seed=seed)

    def add_param_group(self, param_group: dict) -> None:
        param_group = {**self._friction, **param_group}
        param_group["alpha"], param_group["beta_hat"] = check_friction(param_group["alpha"], param_group["beta_hat"])
        super().add_param_group(param_group)

    def _update(self, group: dict, p: torch.Tensor, grad: torch.Tensor, xi: torch.Tensor | None) -> None:
        state = self.state[p]
        if "momentum" not in state:
            state["momentum"] = torch.zeros_like(p)
        temperature = group["temperature"] if xi is not None else 0.0
        position, state["momentum"] = sghmc_update(p, state["momentum"], grad, group["lr"], temperature,
                                                   group["alpha"], group["beta_hat"], None, xi)
        p.copy_(position)


class WithReplacementSampler(Sampler[list[int]]):
    """Batch sampler for ``DataLoader(ds, batch_sampler=...)``: the ``wr`` scheme of SGLD.

    Every step yields b *distinct* indices of ``range(num_data)``, a uniform b-subset drawn
    independently of all other steps (:class:`sgworld.batching.IndexStream` with scheme ``"wr"``).
    One pass (``len(sampler)``) is ``num_batches`` steps, by default ``floor(num_data / batch_size)``,
    an epoch's worth; successive passes continue the same stream.

    ``generator`` (a CPU ``torch.Generator``) or ``seed`` (default 0) fixes the stream; with the same
    ``seed``, the optimizer and this sampler draw independent streams, those of
    ``sgworld.sample(seed=seed)``. ``state_dict()`` / ``load_state_dict()`` resume it exactly.
    """

    def __init__(self, num_data: int, batch_size: int, num_batches: int | None = None, *,
                 generator: torch.Generator | None = None, seed: int | None = None):
        super().__init__()
        n = check_int_range("num_data", num_data, 1)
        b = check_int_range("batch_size", batch_size, 1, n)
        self.num_batches = n // b if num_batches is None else check_int_range("num_batches", num_batches, 1)
        generator = _generator(generator, seed, INDEX_STREAM, "cpu")
        if generator.device.type != "cpu":
            raise ValueError(f"the index generator must be a CPU torch.Generator, got one on {generator.device}")
        self._stream = IndexStream("wr", n, b, 1, ChainRandom([generator], [1], CHAIN_GROUP))

    @property
    def num_data(self) -> int:
        return self._stream.n

    @property
    def batch_size(self) -> int:
        return self._stream.batch_size

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.num_batches):
            yield next(self._stream)[0].tolist()

    def state_dict(self) -> dict:
        return self._stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._stream.load_state_dict(state)
