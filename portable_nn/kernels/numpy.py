"""NumPy kernels: each update rule as ufuncs with ``out=`` over the flat buffers.

Every rule computes the portable formula of its optimizer (``optimizers.py``)
operation by operation in the same order, so the float32 results are the
same bits; only the temporaries are gone.  A rule reads the current buffers
(``p``, its state) and writes the new values into ``p2``, ...: the same
buffers (in place), or spare ones that then swap with them (double
buffering, where the guard keeps the step before).  The rules consume
``g``: it is the optimizer's own flat copy of the gradients, rewritten by the
next gather.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._typing import Array
from ..parameter import FlatParameters

__all__ = ["apply", "conv_patches", "conv_scatter"]

# Each rule is a dozen passes; over chunks of 256 Ki elements (1 MiB of float32)
# the arrays of one chunk stay in the L2 cache between passes instead of
# streaming the whole buffer through memory a dozen times.
CHUNK = 1 << 18


def sgd(p: Array, g: Array, tmp: Array, p2: Array, *, lr: float) -> None:
    """``p2 = p - lr * g``."""
    g *= lr
    np.subtract(p, g, out=p2)


def sgd_momentum(p: Array, g: Array, tmp: Array, u: Array, p2: Array, u2: Array, *, lr: float,
                 momentum: float) -> None:
    """``u2 = momentum * u - lr * g``; ``p2 = p + u2``."""
    np.multiply(u, momentum, out=u2)
    g *= lr
    u2 -= g
    np.add(p, u2, out=p2)


def cache_rule(p: Array, g: Array, tmp: Array, c: Array, p2: Array, c2: Array, *, lr: float, eps: float,
               rho: float | None) -> None:
    """Adagrad (``c2 = c + g*g``) and RMSprop (``c2 = rho*c + (1-rho)*(g*g)``);
    ``p2 = p - (lr*g) / (sqrt(c2) + eps)``."""
    np.multiply(g, g, out=tmp)
    if rho is not None:
        np.multiply(c, rho, out=c2)
        tmp *= 1.0 - rho
        c2 += tmp
    else:
        np.add(c, tmp, out=c2)
    np.sqrt(c2, out=tmp)
    tmp += eps
    g *= lr
    g /= tmp
    np.subtract(p, g, out=p2)


def adam(p: Array, g: Array, tmp: Array, m: Array, v: Array, p2: Array, m2: Array, v2: Array, *, lr: float,
         wd: float, b1: float, b2: float, step: float, c2: float, eps: float) -> None:
    """``m2 = b1*m + (1-b1)*g``, ``v2 = b2*v + (1-b2)*(g*g)``; ``p2 = p - (step*m2) / (sqrt(v2)*c2 + eps)``
    (after AdamW's ``p - lr*wd*p``)."""
    if wd:
        np.multiply(p, lr * wd, out=tmp)
        np.subtract(p, tmp, out=p2)
        p = p2
    np.multiply(m, b1, out=m2)
    np.multiply(g, 1.0 - b1, out=tmp)
    m2 += tmp
    np.multiply(v, b2, out=v2)
    g *= g
    g *= 1.0 - b2
    v2 += g
    np.sqrt(v2, out=g)
    g *= c2
    g += eps
    np.multiply(m2, step, out=tmp)
    tmp /= g
    np.subtract(p, tmp, out=p2)


KERNELS: dict[str, Callable[..., None]] = {
    "sgd": sgd, "sgd_momentum": sgd_momentum, "cache_rule": cache_rule, "adam": adam,
}


def apply(kernel: str, flat: FlatParameters, args: dict[str, Any], ok: Array | None = None) -> None:
    """Run rule ``kernel`` chunk by chunk over the flat buffers: in place, or -- where the flat buffer keeps the
    step before (``double_buffered``) -- into the spare buffers, which then swap with the current ones, so
    the divergence guard keeps the arrays of the last finite step by reference.  (The rules are elementwise:
    an output may be its input.)  ``ok`` is for device backends only."""
    rule = KERNELS[kernel]
    n = flat.param.shape[0]
    scratch = flat.work.get("numpy")
    if scratch is None:  # one chunk of scratch, not a parameter-sized buffer
        scratch = flat.work["numpy"] = np.empty(min(n, CHUNK), dtype=flat.param.dtype)
    out_param, out_state = flat.spares() if flat.double_buffered else (flat.param, flat.state)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        rule(flat.param[start:stop], flat.grad[start:stop], scratch[:stop - start],
             *(s[start:stop] for s in flat.state), out_param[start:stop],
             *(s[start:stop] for s in out_state), **args)
    if flat.double_buffered:
        flat.swap()


def conv_patches(xpad: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
                 oh: int, ow: int) -> np.ndarray:
    """im2col as one strided copy: ``(n, oh, ow, kh*kw*c)``, offsets row-major, then channels (the portable
    path's order: the same bits)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    view = np.lib.stride_tricks.sliding_window_view(xpad, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(1, 2))
    view = view[:, :sh * (oh - 1) + 1:sh, :sw * (ow - 1) + 1:sw, :, ::dh, ::dw]  # (n, oh, ow, c, kh, kw)
    return view.transpose(0, 1, 2, 4, 5, 3).reshape(xpad.shape[0], oh, ow, -1)


def conv_scatter(dpatches: np.ndarray, window: Any, hp: int, wp: int) -> np.ndarray:
    """col2im: ``(n, hp, wp, c)``, each offset's share added in place where ``window.offset`` took it from, the
    shares first copied offset-major (contiguous sources: 2x faster adds).  The portable path's sums, in order."""
    kk = window.kernel[0] * window.kernel[1]
    n, oh, ow, k = dpatches.shape
    c = k // kk
    shares = np.ascontiguousarray(np.moveaxis(dpatches.reshape(n, oh, ow, kk, c), 3, 0))
    total = np.zeros((n, hp, wp, c), dtype=dpatches.dtype)
    for m in range(kk):
        total[window.offset(m, oh, ow)] += shares[m]
    return total
