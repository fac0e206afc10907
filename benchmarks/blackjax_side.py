"""BlackJAX's SGLD (``blackjax.sgld``) under ``jit`` + ``vmap`` over chains + ``lax.scan`` over steps.

Index draws happen inside the compiled scan, each in the fastest correct form for JAX:
``iid``  ``random.randint`` (duplicates allowed);
``wr``   b distinct indices per chain-step, by Floyd's algorithm (O(b^2), a ``fori_loop``) or by the
         top-k of n uniforms (O(n)); both are timed and the faster is reported;
``wor``  one ``random.permutation`` per chain and epoch, cut into M = floor(N/b) batches (SGWORLD).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import blackjax
from blackjax.sgmcmc.gradients import grad_estimator


def model(workload, dtype):
    """(logprior_fn, loglikelihood_fn, data): per-sample log-likelihood as BlackJAX expects it."""
    d, n = workload.data, workload.n
    if workload.name == "W1":
        scale, prior = 1 / d["noise_std"] ** 2, n * d["lam"] / d["noise_std"] ** 2
        data = (jnp.asarray(d["x"], dtype), jnp.asarray(d["y"], dtype))

        def loglik(w, xy):
            x, y = xy
            f = w[4] * jnp.tanh(w[0] * x + w[2]) + w[5] * jnp.tanh(w[1] * x + w[3]) + w[6]
            return -0.5 * scale * (y - f) ** 2

        return (lambda w: -0.5 * prior * jnp.sum(w * w)), loglik, data
    if workload.name == "W2":
        scale, prec = 1 / d["noise_std"] ** 2, 1 / d["prior_std"] ** 2
        data = (jnp.asarray(d["X"], dtype), jnp.asarray(d["y"], dtype))

        def loglik(w, xy):
            x, y = xy
            return -0.5 * scale * (y - x @ w) ** 2

        return (lambda w: -0.5 * prec * jnp.sum(w * w)), loglik, data
    prec = 1 / d["prior_std"] ** 2
    data = (jnp.asarray(d["X"], dtype), jnp.asarray(d["y"], jnp.int32))

    def loglik(w, xy):
        x, y = xy
        W1, b1 = w[:2048].reshape(32, 64), w[2048:2080]
        W2, b2 = w[2080:2400].reshape(10, 32), w[2400:2410]
        out = W2 @ jnp.tanh(W1 @ x + b1) + b2
        return jax.nn.log_softmax(out)[y]

    return (lambda w: -0.5 * prec * jnp.sum(w * w)), loglik, data


def floyd(key, n, b):
    def body(j, carry):
        out, key = carry
        key, sub = jax.random.split(key)
        top = n - b + j
        t = jax.random.randint(sub, (), 0, top + 1)
        seen = jnp.any((out == t) & (jnp.arange(b) < j))
        return out.at[j].set(jnp.where(seen, top, t)), key
    return jax.lax.fori_loop(0, b, body, (jnp.zeros(b, jnp.int32), key))[0]


def top_k(key, n, b):
    return jax.lax.top_k(jax.random.uniform(key, (n,)), b)[1]


def runner(workload, dtype_name: str, chains: int, scheme: str, block_steps: int):
    """``run(steps)`` with ``steps`` a multiple of ``block_steps`` (itself a multiple of M); the scan
    of ``block_steps`` steps is compiled once; ``run.compile_s`` holds the first call's time."""
    import time
    dtype = jnp.dtype(dtype_name)
    logprior, loglik, data = model(workload, dtype)
    n, b, lr = workload.n, workload.b, workload.lr
    m = workload.steps_per_epoch
    sgld = blackjax.sgld(grad_estimator(logprior, loglik, n))
    method = scheme.split("-")[1] if "-" in scheme else "floyd"
    base = scheme.split("-")[0]

    def step_one(key, w, idx):
        batch = jax.tree.map(lambda a: a[idx], data)
        return sgld.step(key, w, batch, lr)

    def draw(key):
        if base == "iid":
            return jax.random.randint(key, (b,), 0, n)
        return floyd(key, n, b) if method == "floyd" else top_k(key, n, b)

    def chain_block(key, w):
        if base == "wor":
            def epoch(w, key):
                kp, ks = jax.random.split(key)
                batches = jax.random.permutation(kp, n)[: m * b].reshape(m, b)

                def inner(w, xs):
                    k, idx = xs
                    return step_one(k, w, idx), None
                return jax.lax.scan(inner, w, (jax.random.split(ks, m), batches))[0], None
            return jax.lax.scan(epoch, w, jax.random.split(key, block_steps // m))[0]

        def one(w, key):
            ki, ks = jax.random.split(key)
            return step_one(ks, w, draw(ki)), None
        return jax.lax.scan(one, w, jax.random.split(key, block_steps))[0]

    block = jax.jit(jax.vmap(chain_block))
    w0 = jnp.broadcast_to(jnp.asarray(workload.init, dtype), (chains, workload.dim))
    keys = jax.random.split(jax.random.key(0), chains)
    tic = time.perf_counter()
    block(keys, w0).block_until_ready()
    compile_s = time.perf_counter() - tic

    def run(steps: int):
        w, ks = w0, keys
        for _ in range(max(1, steps // block_steps)):
            ks = jax.vmap(lambda k: jax.random.split(k)[0])(ks)
            w = block(ks, w)
        w.block_until_ready()
        return w

    run.compile_s = compile_s
    run.unit = block_steps
    return run
