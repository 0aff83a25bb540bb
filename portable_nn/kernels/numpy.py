"""NumPy kernels: each update rule as ufuncs with ``out=`` over the flat buffers.

Every rule computes the portable formula of its optimizer (``optimizers.py``)
operation by operation in the same order, so the float32 results are the
same bits; only the temporaries are gone.  The rules consume ``g``: it is the
optimizer's own flat copy of the gradients, rewritten by the next gather.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._typing import Array
from ..parameter import FlatParameters

__all__ = ["apply"]

# Each rule is a dozen passes; over chunks of 256 Ki elements (1 MiB of float32)
# the arrays of one chunk stay in the L2 cache between passes instead of
# streaming the whole buffer through memory a dozen times.
CHUNK = 1 << 18


def sgd(p: Array, g: Array, tmp: Array, *, lr: float) -> None:
    """``p = p - lr * g``."""
    g *= lr
    p -= g


def sgd_momentum(p: Array, g: Array, tmp: Array, u: Array, *, lr: float, momentum: float) -> None:
    """``u = momentum * u - lr * g``; ``p = p + u``."""
    u *= momentum
    g *= lr
    u -= g
    p += u


def cache_rule(p: Array, g: Array, tmp: Array, c: Array, *, lr: float, eps: float, rho: float | None) -> None:
    """Adagrad (``c = c + g*g``) and RMSprop (``c = rho*c + (1-rho)*(g*g)``); ``p = p - (lr*g) / (sqrt(c) + eps)``."""
    np.multiply(g, g, out=tmp)
    if rho is not None:
        c *= rho
        tmp *= 1.0 - rho
    c += tmp
    np.sqrt(c, out=tmp)
    tmp += eps
    g *= lr
    g /= tmp
    p -= g


def adam(p: Array, g: Array, tmp: Array, m: Array, v: Array, *, lr: float, wd: float, b1: float, b2: float,
         step: float, c2: float, eps: float) -> None:
    """``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*(g*g)``; ``p = p - (step*m) / (sqrt(v)*c2 + eps)``."""
    if wd:
        np.multiply(p, lr * wd, out=tmp)
        p -= tmp
    m *= b1
    np.multiply(g, 1.0 - b1, out=tmp)
    m += tmp
    v *= b2
    g *= g
    g *= 1.0 - b2
    v += g
    np.sqrt(v, out=g)
    g *= c2
    g += eps
    np.multiply(m, step, out=tmp)
    tmp /= g
    p -= tmp


KERNELS: dict[str, Callable[..., None]] = {
    "sgd": sgd, "sgd_momentum": sgd_momentum, "cache_rule": cache_rule, "adam": adam,
}


def apply(kernel: str, flat: FlatParameters, args: dict[str, Any], ok: Array | None = None) -> None:
    """Run rule ``kernel`` chunk by chunk over the flat buffers (``ok`` is for device backends only)."""
    rule = KERNELS[kernel]
    n = flat.param.shape[0]
    scratch = flat.work.get("numpy")
    if scratch is None:  # one chunk of scratch, not a parameter-sized buffer
        scratch = flat.work["numpy"] = np.empty(min(n, CHUNK), dtype=flat.param.dtype)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        rule(flat.param[start:stop], flat.grad[start:stop], scratch[:stop - start],
             *(s[start:stop] for s in flat.state), **args)
