"""Optional fast paths for one backend each, beside the portable reference path.

The portable code (``optimizers.py``) rebinds arrays and is the reference.
Where a backend allows it, the optimizers instead update *arrays the library
owns* in place, with the flat gradient copy as their work buffer (NumPy ufuncs with ``out=``)
or in one fused elementwise kernel per parameter (CuPy ``ElementwiseKernel``),
cutting the temporaries and launches of a dozen separate operations.

Switch them off with ``portable_nn.set_fast_paths(False)`` or the
environment variable ``PORTABLE_NN_FAST_PATHS=0``; the tests run both ways
and compare them.  An array a user assigned is never mutated: the first
fast update of a parameter replaces it with the library's own copy.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

__all__ = ["set_fast_paths", "fast_paths_enabled", "inplace_backend", "FlatParameters", "relu_backward"]

_ENABLED = os.environ.get("PORTABLE_NN_FAST_PATHS", "1") not in ("0", "false", "no", "off")


def set_fast_paths(enabled: bool) -> None:
    """Turn the backend-specific fast paths on or off (default on)."""
    global _ENABLED
    _ENABLED = bool(enabled)


def fast_paths_enabled() -> bool:
    return _ENABLED


def inplace_backend(param: Any) -> str | None:
    """'numpy' or 'cupy' when ``param`` can take an in-place fast update, else None."""
    if not _ENABLED:
        return None
    if type(param) is np.ndarray:
        return "numpy" if param.flags.writeable else None
    if type(param).__module__.startswith("cupy"):
        return "cupy"
    return None


class FlatParameters:
    """Every parameter (and its optimizer state) as a view into one flat buffer.

    Built from the layers' current arrays (copied: the buffer is the
    library's own, a user's array is never mutated), then the layers'
    attributes are rebound to views of it.  ``valid`` notices any attribute
    rebound since (a user assignment, ``set_parameters``, a load, a restore)
    and the optimizer then rebuilds.
    """

    def __init__(self, kind: str, xp: Any, entries: list[tuple[Any, str]], state_names: tuple[str, ...]) -> None:
        self.kind = kind
        self.layers = list(dict.fromkeys(layer for layer, _ in entries))
        params = [getattr(layer, name) for layer, name in entries]
        shapes = [tuple(p.shape) for p in params]
        sizes = [math.prod(s) for s in shapes]
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.param = xp.concatenate([p.reshape(-1) for p in params])
        self.state = []
        for s in state_names:
            existing = [getattr(layer, f"{name}_{s}", None) for layer, name in entries]
            self.state.append(xp.concatenate([
                xp.zeros(size, dtype=self.param.dtype) if e is None else xp.asarray(e, dtype=self.param.dtype).reshape(-1)
                for e, size in zip(existing, sizes)]))
        self.grad = xp.empty_like(self.param)
        self._scratch: Any = None
        self.views: list[tuple[Any, str, Any]] = []
        for (layer, name), off, size, shape in zip(entries, offsets, sizes, shapes):
            buffers = [(name, self.param)] + [(f"{name}_{s}", b) for s, b in zip(state_names, self.state)]
            for attr, buf in buffers:
                view = buf[off:off + size].reshape(shape)
                setattr(layer, attr, view)
                self.views.append((layer, attr, view))
        self.grad_names = [(layer, f"d{name}") for layer, name in entries]
        self.grad_views = [self.grad[off:off + size] for off, size in zip(offsets, sizes)]

    @classmethod
    def build(cls, layers: list[Any], state_names: tuple[str, ...]) -> FlatParameters | None:
        """A flat buffer for these layers, or None where the fast path does not apply."""
        entries = [(layer, name) for layer in layers for name in layer.parameter_names]
        if not entries:
            return None
        params = [getattr(layer, name) for layer, name in entries]
        grads = [getattr(layer, f"d{name}") for layer, name in entries]
        kind = inplace_backend(params[0])
        if kind is None:
            return None
        first = params[0]
        if any(type(a) is not type(first) or a.dtype != first.dtype for a in params + grads):
            return None
        if kind == "cupy" and any(a.device != first.device for a in params + grads):
            return None
        if kind == "numpy":
            xp: Any = np
        else:
            import cupy as xp
        return cls(kind, xp, entries, state_names)

    def valid(self, layers: list[Any]) -> bool:
        """Same layers, and every attribute still the view it was bound to."""
        if len(layers) != len(self.layers) or any(a is not b for a, b in zip(layers, self.layers)):
            return False
        return all(getattr(layer, attr) is view for layer, attr, view in self.views)

    @property
    def scratch(self) -> Any:
        """A work buffer for the rules that need one besides the (consumable) gradient copy."""
        if self._scratch is None:
            self._scratch = self.param.copy()  # NumPy or CuPy alike; no module reference (picklable)
        return self._scratch

    def gather_grads(self) -> None:
        """Copy the layers' gradients into the flat gradient buffer."""
        for (layer, attr), out in zip(self.grad_names, self.grad_views):
            g = getattr(layer, attr)
            out[...] = g.reshape(-1)


# --- NumPy: ufuncs with out=, on cache-sized chunks of the flat buffers ------

# Each update rule is a dozen passes; over chunks of 256 Ki elements (1 MiB of float32) the
# arrays of one chunk stay in the L2 cache between passes instead of
# streaming the whole buffer through memory a dozen times.
CHUNK = 1 << 18


def chunked(rule: Any) -> Any:
    """Apply ``rule(*arrays, **scalars)`` chunk by chunk over equally long flat arrays."""

    def apply(*arrays: Any, **scalars: Any) -> None:
        n = arrays[0].shape[0]
        if n <= CHUNK:
            rule(*arrays, **scalars)
            return
        for start in range(0, n, CHUNK):
            rule(*(a[start:start + CHUNK] for a in arrays), **scalars)

    apply.__doc__ = rule.__doc__
    return apply


# The rules below consume ``g``: it is the optimizer's own flat copy of the
# gradients, rewritten by the next gather, so it doubles as the work buffer.

@chunked
def numpy_sgd_momentum(p: Any, g: Any, u: Any, *, lr: float, momentum: float) -> None:
    u *= momentum
    g *= lr
    u -= g
    p += u


@chunked
def numpy_sgd_plain(p: Any, g: Any, *, lr: float) -> None:
    g *= lr
    p -= g


def numpy_sgd(p: Any, g: Any, state: list[Any], lr: float, momentum: float) -> None:
    if momentum:
        numpy_sgd_momentum(p, g, state[0], lr=lr, momentum=momentum)
    else:
        numpy_sgd_plain(p, g, lr=lr)


@chunked
def numpy_cache_rule(p: Any, g: Any, cache: Any, tmp: Any, *, lr: float, eps: float, rho: float | None) -> None:
    """Adagrad (rho None: cache += g^2) and RMSprop (cache = rho cache + (1-rho) g^2)."""
    np.multiply(g, g, out=tmp)
    if rho is None:
        cache += tmp
    else:
        cache *= rho
        tmp *= 1.0 - rho
        cache += tmp
    np.sqrt(cache, out=tmp)
    tmp += eps
    np.divide(g, tmp, out=tmp)
    tmp *= lr
    p -= tmp


@chunked
def numpy_adam(p: Any, g: Any, m: Any, v: Any, *, lr: float, wd: float, b1: float, b2: float,
               step: float, c2: float, eps: float) -> None:
    if wd:
        p *= 1.0 - lr * wd
    # m = b1 m + (1 - b1) g, written as b1 (m - g) + g: no temporary
    m -= g
    m *= b1
    m += g
    v *= b2
    g *= g
    g *= 1.0 - b2
    v += g
    # step * m / (c2 sqrt(v) + eps) == (step / c2) * m / (sqrt(v) + eps / c2): one pass fewer
    np.sqrt(v, out=g)
    g += eps / c2
    np.divide(m, g, out=g)
    g *= step / c2
    p -= g


# --- CuPy: one fused kernel per parameter --------------------------------------

_CUPY_KERNELS: dict[str, Any] = {}


def _cupy_kernel(name: str) -> Any:
    kernel = _CUPY_KERNELS.get(name)
    if kernel is None:
        import cupy

        if name == "adam":
            kernel = cupy.ElementwiseKernel(
                "T g, bool ok, float64 lr, float64 wd, float64 b1, float64 b2, float64 step, float64 c2, "
                "float64 eps",
                "T p, T m, T v",
                """
                if (ok) {
                    p = p * (T)(1.0 - lr * wd);
                    m = (T)b1 * m + (T)(1.0 - b1) * g;
                    v = (T)b2 * v + (T)(1.0 - b2) * (g * g);
                    p = p - (T)step * m / (sqrt(v) * (T)c2 + (T)eps);
                }
                """,
                "portable_nn_adam",
            )
        elif name == "sgd_momentum":
            kernel = cupy.ElementwiseKernel(
                "T g, bool ok, float64 lr, float64 momentum", "T p, T u",
                "if (ok) { u = (T)momentum * u - (T)lr * g; p = p + u; }", "portable_nn_sgd_momentum")
        elif name == "sgd":
            kernel = cupy.ElementwiseKernel("T g, bool ok, float64 lr", "T p", "if (ok) { p = p - (T)lr * g; }",
                                            "portable_nn_sgd")
        elif name == "cache_rule":
            kernel = cupy.ElementwiseKernel(
                "T g, bool ok, float64 lr, float64 eps, float64 rho, float64 keep", "T p, T c",
                "if (ok) { c = (T)keep * c + (T)rho * (g * g); p = p - (T)lr * g / (sqrt(c) + (T)eps); }",
                "portable_nn_cache_rule")
        _CUPY_KERNELS[name] = kernel
    return kernel


# `ok` is a 0-d device bool (the optimizer's finite_guard) or True: where it is
# False the kernels change nothing, so a non-finite loss never reaches the
# parameters and no host sync is needed to know it.

def relu_backward(x: Any, dvalue: Any) -> Any:
    """``where(x > 0, dvalue, 0)`` in one CuPy kernel; None where there is no fast path."""
    if not _ENABLED or not type(x).__module__.startswith("cupy") or type(dvalue) is not type(x) \
            or x.dtype != dvalue.dtype or x.shape != dvalue.shape:
        return None
    kernel = _CUPY_KERNELS.get("relu_backward")
    if kernel is None:
        import cupy

        kernel = _CUPY_KERNELS["relu_backward"] = cupy.ElementwiseKernel(
            "T x, T d", "T out", "out = x > (T)0 ? d : (T)0", "portable_nn_relu_backward")
    return kernel(x, dvalue)


def cupy_sgd(p: Any, g: Any, state: list[Any], lr: float, momentum: float, ok: Any = True) -> None:
    if momentum:
        _cupy_kernel("sgd_momentum")(g, ok, lr, momentum, p, state[0])
    else:
        _cupy_kernel("sgd")(g, ok, lr, p)


def cupy_cache_rule(p: Any, g: Any, cache: Any, lr: float, eps: float, rho: float | None, ok: Any = True) -> None:
    # Adagrad: c = 1*c + 1*g^2; RMSprop: c = rho*c + (1-rho)*g^2
    keep, add = (1.0, 1.0) if rho is None else (rho, 1.0 - rho)
    _cupy_kernel("cache_rule")(g, ok, lr, eps, add, keep, p, cache)


def cupy_adam(p: Any, g: Any, m: Any, v: Any, *, lr: float, wd: float, b1: float, b2: float,
              step: float, c2: float, eps: float, ok: Any = True) -> None:
    _cupy_kernel("adam")(g, ok, lr, wd, b1, b2, step, c2, eps, p, m, v)
