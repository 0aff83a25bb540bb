"""The baselines a portable_nn training step is measured against.

Each baseline is a class with ``step(X, y)`` doing forward, backward and an
Adam update on one batch (float32, softmax + cross-entropy, ReLU hidden
layers), starting from the same initial weights as the portable_nn model.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

LR, B1, B2, EPS = 0.001, 0.9, 0.999, 1e-7


def init_weights(sizes: list[int], seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The same draws as ``Dense(n_in, n_out, seed=seed + i)``."""
    out = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        w = (0.01 * np.random.default_rng(seed + i).standard_normal((n_in, n_out))).astype(np.float32)
        out.append((w, np.zeros((1, n_out), dtype=np.float32)))
    return out


class NaiveNumpy:
    """The seed's way: per-sample softmax Jacobian loop, a separate CCE backward, book Adam."""

    name = "naive numpy (seed style)"

    def __init__(self, sizes: list[int], seed: int = 0) -> None:
        self.params = [[w.copy(), b.copy()] for w, b in init_weights(sizes, seed)]
        self.state = [[np.zeros_like(p) for p in layer] * 2 for layer in self.params]
        self.t = 0

    def step(self, X: np.ndarray, y: np.ndarray) -> None:
        acts = [X]
        h = X
        for i, (w, b) in enumerate(self.params):
            z = np.dot(h, w) + b
            h = np.maximum(0, z) if i < len(self.params) - 1 else z
            acts.append(h)
        exp = np.exp(h - np.max(h, axis=1, keepdims=True))
        probs = exp / np.sum(exp, axis=1, keepdims=True)
        n = len(y)
        clipped = np.clip(probs, 1e-7, 1 - 1e-7)
        loss = np.mean(-np.log(clipped[range(n), y]))  # noqa: F841 (computed, as the seed does)
        acc = np.mean(np.argmax(probs, axis=1) == y)  # noqa: F841
        label = np.zeros((n, probs.shape[1]))
        label[range(n), y] = 1
        dvalue = -label / probs / n
        dsoft = np.empty_like(dvalue)
        for k, (s, dv) in enumerate(zip(probs, dvalue, strict=False)):
            s = s.reshape(-1, 1)
            jac = np.diagflat(s) - np.dot(s, s.T)
            dsoft[k] = np.dot(jac, dv)
        d = dsoft
        grads = []
        for i in reversed(range(len(self.params))):
            w, b = self.params[i]
            if i < len(self.params) - 1:
                d = d.copy()
                d[acts[i + 1] <= 0] = 0
            grads.append((np.dot(acts[i].T, d), np.sum(d, axis=0, keepdims=True)))
            d = np.dot(d, w.T)
        grads.reverse()
        self.t += 1
        for (layer, st), g in zip(zip(self.params, self.state, strict=False), grads, strict=False):
            for j in range(2):
                st[j] = B1 * st[j] + (1 - B1) * g[j]
                st[j + 2] = B2 * st[j + 2] + (1 - B2) * g[j] ** 2
                m_hat = st[j] / (1 - B1**self.t)
                v_hat = st[j + 2] / (1 - B2**self.t)
                layer[j] = layer[j] + -LR * m_hat / (np.sqrt(v_hat) + EPS)


class TunedNumpy:
    """The best a NumPy user can write by hand: fused softmax-CE, in-place Adam, no temporaries to spare."""

    name = "hand-tuned numpy"

    def __init__(self, sizes: list[int], seed: int = 0) -> None:
        self.params = [p.copy() for layer in init_weights(sizes, seed) for p in layer]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def step(self, X: np.ndarray, y: np.ndarray) -> None:
        P = self.params
        L = len(P) // 2
        acts = [X]
        h = X
        for i in range(L):
            z = h @ P[2 * i]
            z += P[2 * i + 1]
            if i < L - 1:
                np.maximum(z, 0, out=z)
            acts.append(z)
            h = z
        n = X.shape[0]
        rows = np.arange(n)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        loss = -np.log(z[rows, y]).sum()  # noqa: F841 (kept like a real training loop would)
        correct = (z.argmax(axis=1) == y).sum()  # noqa: F841
        d = z
        d[rows, y] -= 1
        d *= 1.0 / n
        grads = [None] * len(P)
        for i in reversed(range(L)):
            grads[2 * i] = acts[i].T @ d
            grads[2 * i + 1] = d.sum(axis=0, keepdims=True)
            if i > 0:
                d = d @ P[2 * i].T
                d *= acts[i] > 0
        self.t += 1
        step = LR * math.sqrt(1 - B2**self.t) / (1 - B1**self.t)
        eps = EPS * math.sqrt(1 - B2**self.t)
        for p, g, m, v in zip(P, grads, self.m, self.v, strict=False):
            m *= B1
            m += (1 - B1) * g
            v *= B2
            g *= g
            g *= 1 - B2
            v += g
            np.sqrt(v, out=g)
            g += eps
            np.divide(m, g, out=g)
            g *= step
            p -= g


class TorchEager:
    """PyTorch eager: nn.Sequential, autograd, F.cross_entropy, torch.optim.Adam."""

    name = "pytorch eager"

    def __init__(self, sizes: list[int], seed: int = 0, device: str = "cpu") -> None:
        import torch

        self.torch = torch
        layers: list[Any] = []
        for i, (w, b) in enumerate(init_weights(sizes, seed)):
            lin = torch.nn.Linear(w.shape[0], w.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w.T.copy()))
                lin.bias.copy_(torch.from_numpy(b[0]))
            layers.append(lin)
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        self.net = torch.nn.Sequential(*layers).to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=LR, betas=(B1, B2), eps=EPS)
        self.device = device

    def step(self, X: Any, y: Any) -> None:
        logits = self.net(X)
        loss = self.torch.nn.functional.cross_entropy(logits, y)
        self.correct = (logits.argmax(dim=1) == y).sum()  # on device, like ours
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


class GemmOnly:
    """Only the matrix products a step needs: the practical floor."""

    name = "GEMM only"

    def __init__(self, sizes: list[int], seed: int = 0, xp: Any = np) -> None:
        self.xp = xp
        self.w = [xp.asarray(w) for w, _ in init_weights(sizes, seed)]

    def step(self, X: Any, y: Any) -> None:
        acts = [X]
        for w in self.w:
            acts.append(acts[-1] @ w)
        d = acts[-1]
        for i in reversed(range(len(self.w))):
            _ = acts[i].T @ d
            if i > 0:
                d = d @ self.w[i].T


class JaxJit:
    """Hand-written JAX: the same MLP, softmax cross-entropy and Adam in a few ``jax.numpy`` lines, the whole
    step under one ``jax.jit`` with the parameter and state buffers donated (one dispatch per step)."""

    name = "hand-written jax jit"

    def __init__(self, sizes: list[int], seed: int = 0) -> None:
        import jax
        import jax.numpy as jnp

        def loss_fn(params: Any, X: Any, y: Any) -> Any:
            h = X
            for i, (w, b) in enumerate(params):
                h = h @ w + b
                if i < len(params) - 1:
                    h = jnp.maximum(h, 0.0)
            logp = jax.nn.log_softmax(h, axis=1)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1)), h

        def step(params: Any, m: Any, v: Any, t: Any, X: Any, y: Any) -> Any:
            (loss, logits), g = jax.value_and_grad(loss_fn, has_aux=True)(params, X, y)
            t = t + 1
            m = jax.tree.map(lambda m, g: B1 * m + (1 - B1) * g, m, g)
            v = jax.tree.map(lambda v, g: B2 * v + (1 - B2) * g * g, v, g)
            lr = LR / (1 - B1**t)
            c2 = 1 / jnp.sqrt(1 - B2**t)
            params = jax.tree.map(lambda p, m, v: p - lr * m / (jnp.sqrt(v) * c2 + EPS), params, m, v)
            return params, m, v, t, loss, jnp.sum(jnp.argmax(logits, axis=1) == y)

        self.raw_step = step
        self.jit = jax.jit(step, donate_argnums=(0, 1, 2))
        self.params = [(jnp.asarray(w), jnp.asarray(b[0])) for w, b in init_weights(sizes, seed)]
        self.m = jax.tree.map(jnp.zeros_like, self.params)
        self.v = jax.tree.map(jnp.zeros_like, self.params)
        self.t = jnp.asarray(0.0, dtype=jnp.float32)

    def step(self, X: Any, y: Any) -> None:
        self.params, self.m, self.v, self.t, self.loss, self.correct = self.jit(self.params, self.m, self.v,
                                                                                self.t, X, y)

    def block(self) -> None:
        self.t.block_until_ready()


class JaxScan(JaxJit):
    """The hand-written JAX step fused over a whole epoch by ``lax.scan`` under one ``jax.jit`` (no dispatch
    per step): the ceiling for compiled portable_nn, which runs blocks of epochs the same way.  Like
    ``Model.train``, it reads the epoch's losses back to the host."""

    name = "hand-written jax lax.scan"

    def __init__(self, sizes: list[int], batch: int, seed: int = 0) -> None:
        import jax

        super().__init__(sizes, seed)
        step = self.raw_step

        def epoch(params: Any, m: Any, v: Any, t: Any, X: Any, y: Any) -> Any:
            xs = (X.reshape(-1, batch, X.shape[1]), y.reshape(-1, batch))

            def body(carry: Any, xy: Any) -> Any:
                params, m, v, t, loss, correct = step(*carry, *xy)
                return (params, m, v, t), (loss, correct)

            (params, m, v, t), (losses, correct) = jax.lax.scan(body, (params, m, v, t), xs)
            return params, m, v, t, losses, correct

        self.scan = jax.jit(epoch, donate_argnums=(0, 1, 2))

    def epoch(self, X: Any, y: Any) -> None:
        self.params, self.m, self.v, self.t, losses, self.correct = self.scan(self.params, self.m, self.v, self.t,
                                                                              X, y)
        self.losses = np.asarray(losses)


class TorchCompiled(TorchEager):
    """PyTorch eager's step with the network and the optimizer step under ``torch.compile`` (inductor)."""

    name = "pytorch torch.compile"

    def __init__(self, sizes: list[int], seed: int = 0, device: str = "cpu") -> None:
        super().__init__(sizes, seed, device)
        self.net = self.torch.compile(self.net)
        self.opt_step = self.torch.compile(self.opt.step)

    def step(self, X: Any, y: Any) -> None:
        logits = self.net(X)
        loss = self.torch.nn.functional.cross_entropy(logits, y)
        self.correct = (logits.argmax(dim=1) == y).sum()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_step()
