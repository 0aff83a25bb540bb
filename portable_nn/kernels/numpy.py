"""NumPy kernels: each update rule as ufuncs with ``out=`` over the flat buffers.

Every rule computes the portable formula of its optimizer (``optimizers.py``)
operation by operation in the same order, so the float32 results are the
same bits; only the temporaries are gone.  A rule reads the current buffers
(``p``, its state) and writes the new values into ``p2``, ...: the same
buffers (in place), or spare ones that then swap with them (double
buffering, where the guard keeps the step before).  Intermediate values go
to ``t1`` and ``t2``; ``g`` is read before ``t2`` is first written, so ``t2``
may be ``g`` itself where ``g`` is the optimizer's own flat copy of the
gradients (the small working set of the old in-place rules), and is a second
chunk of scratch where ``g`` is a large parameter's own gradient (the book's
``dweight``, read where it is and left as it was).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._typing import Array
from ..parameter import FlatParameters

__all__ = ["apply", "conv_backward", "conv_forward"]

# Each rule is a dozen passes; over chunks of 256 Ki elements (1 MiB of float32)
# the arrays of one chunk stay in the L2 cache between passes instead of
# streaming the whole buffer through memory a dozen times.
CHUNK = 1 << 18
# Parameters of at least 64 Ki elements (256 KiB of float32) are updated from
# their own gradient arrays: copying a gradient into the flat buffer costs more
# than the rule's dozen extra calls (wide's 7 MiB of gradients: a 1-2 ms copy).
DIRECT = 1 << 16


def sgd(p: Array, g: Array, t1: Array, t2: Array, p2: Array, *, lr: float) -> None:
    """``p2 = p - lr * g``."""
    np.multiply(g, lr, out=t1)
    np.subtract(p, t1, out=p2)


def sgd_momentum(p: Array, g: Array, t1: Array, t2: Array, u: Array, p2: Array, u2: Array, *, lr: float,
                 momentum: float) -> None:
    """``u2 = momentum * u - lr * g``; ``p2 = p + u2``."""
    np.multiply(u, momentum, out=u2)
    np.multiply(g, lr, out=t1)
    u2 -= t1
    np.add(p, u2, out=p2)


def cache_rule(p: Array, g: Array, t1: Array, t2: Array, c: Array, p2: Array, c2: Array, *, lr: float, eps: float,
               rho: float | None) -> None:
    """Adagrad (``c2 = c + g*g``) and RMSprop (``c2 = rho*c + (1-rho)*(g*g)``);
    ``p2 = p - (lr*g) / (sqrt(c2) + eps)``."""
    np.multiply(g, g, out=t1)
    if rho is not None:
        np.multiply(c, rho, out=c2)
        t1 *= 1.0 - rho
        c2 += t1
    else:
        np.add(c, t1, out=c2)
    np.sqrt(c2, out=t1)
    t1 += eps
    np.multiply(g, lr, out=t2)
    t2 /= t1
    np.subtract(p, t2, out=p2)


def adam(p: Array, g: Array, t1: Array, t2: Array, m: Array, v: Array, p2: Array, m2: Array, v2: Array, *,
         lr: float, wd: float, b1: float, b2: float, step: float, eps: float) -> None:
    """``m2 = b1*m + (1-b1)*g``, ``v2 = b2*v + (1-b2)*(g*g)``; ``p2 = p - (m2 / (sqrt(v2) + eps)) * step``
    (after AdamW's ``p - lr*wd*p``; ``step`` and ``eps`` carry the bias corrections)."""
    if wd:
        np.multiply(p, lr * wd, out=t1)
        np.subtract(p, t1, out=p2)
        p = p2
    np.multiply(m, b1, out=m2)
    np.multiply(g, 1.0 - b1, out=t1)
    m2 += t1
    np.multiply(v, b2, out=v2)
    np.multiply(g, g, out=t1)
    t1 *= 1.0 - b2
    v2 += t1
    np.sqrt(v2, out=t1)
    t1 += eps
    np.divide(m2, t1, out=t1)
    t1 *= step
    np.subtract(p, t1, out=p2)


KERNELS: dict[str, Callable[..., None]] = {
    "sgd": sgd, "sgd_momentum": sgd_momentum, "cache_rule": cache_rule, "adam": adam,
}


def apply(kernel: str, flat: FlatParameters, args: dict[str, Any], ok: Array | None = None) -> None:
    """Run rule ``kernel`` chunk by chunk over the flat buffers: in place, or -- where the flat buffer keeps the
    step before (``double_buffered``) -- into the spare buffers, which then swap with the current ones, so
    the divergence guard keeps the arrays of the last finite step by reference.  (The rules are elementwise:
    an output may be its input.)  The gradients come in ``flat.segments``: large parameters' own (read only),
    the rest copied into the flat gradient buffer.  ``ok`` is for device backends only."""
    rule = KERNELS[kernel]
    n = flat.param.shape[0]
    scratch = flat.work.get("numpy")
    if scratch is None:  # chunks of scratch, not parameter-sized buffers
        scratch = flat.work["numpy"] = np.empty((2, min(n, CHUNK)), dtype=flat.param.dtype)
    out_param, out_state = flat.spares() if flat.double_buffered else (flat.param, flat.state)
    if n <= CHUNK and flat.segments is flat.copied_all:  # one chunk, every gradient copied
        rule(flat.param, flat.grad, scratch[0], flat.grad, *flat.state, out_param, *out_state, **args)
        if flat.double_buffered:
            flat.swap()
        return
    for first, end, grad in flat.segments:
        own = grad.base is flat.grad or grad is flat.grad  # the flat copy: the rule may use it as its t2
        for start in range(first, end, CHUNK):
            stop = min(start + CHUNK, end)
            g = grad[start - first:stop - first]
            rule(flat.param[start:stop], g, scratch[0, :stop - start], g if own else scratch[1, :stop - start],
                 *(s[start:stop] for s in flat.state), out_param[start:stop], *(s[start:stop] for s in out_state),
                 **args)
    if flat.double_buffered:
        flat.swap()


def conv_forward(xpad: np.ndarray, weight: np.ndarray, window: Any, oh: int, ow: int) -> tuple[np.ndarray, Any]:
    """``im2col(xpad) @ weight`` as ``(n, oh, ow, out)`` and the patches backward needs.

    im2col is one strided copy (``sliding_window_view``): ``(n, oh, ow, kh*kw*c)``, offsets row-major, then
    channels, the portable path's order.  One input channel (a first layer on grey images) copies offset-major
    instead, ``(kh*kw, n*oh*ow)``, a row per offset from contiguous runs: the same matrix transposed, 3x faster to
    fill, and the products take it transposed (the same sums)."""
    (kh, kw), (sh, sw), (dh, dw) = window.kernel, window.stride, window.dilation
    n, c, out = xpad.shape[0], xpad.shape[3], weight.shape[3]
    w2 = weight.reshape(-1, out)
    if c == 1:
        rows = np.empty((kh * kw, n, oh, ow), dtype=xpad.dtype)
        for m in range(kh * kw):
            rows[m] = xpad[window.offset(m, oh, ow)][..., 0]
        rows2 = rows.reshape(kh * kw, -1)
        return (rows2.T @ w2).reshape(n, oh, ow, out), ("rows", rows2)
    view = np.lib.stride_tricks.sliding_window_view(xpad, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(1, 2))
    view = view[:, :sh * (oh - 1) + 1:sh, :sw * (ow - 1) + 1:sw, :, ::dh, ::dw]  # (n, oh, ow, c, kh, kw)
    patches = view.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, -1)
    return (patches @ w2).reshape(n, oh, ow, out), ("columns", patches)


def conv_backward(saved: Any, dvalue: np.ndarray, weight: np.ndarray, window: Any, hp: int, wp: int,
                  need_dinput: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``dweight = patches.T @ dvalue`` and the padded ``dinput``: col2im of ``dvalue @ weight.T``.

    ``dvalue @ weight.T`` is computed offset-major, ``(kh*kw, n*oh*ow, c)``, by one batched product (each offset's
    ``(out, c)`` block of the weight), so that each offset's share is contiguous and is added in place where
    ``window.offset`` took it from (the portable path's sums, in order)."""
    layout, patches = saved
    kh, kw, c, out = weight.shape
    n, oh, ow = dvalue.shape[:3]
    d2 = dvalue.reshape(-1, out)
    dweight = (patches @ d2 if layout == "rows" else patches.T @ d2).reshape(weight.shape)
    if not need_dinput:
        return dweight, None
    shares = np.matmul(d2, weight.reshape(kh * kw, c, out).transpose(0, 2, 1))  # (kh*kw, n*oh*ow, c)
    total = np.zeros((n, hp, wp, c), dtype=dvalue.dtype)
    for m in range(kh * kw):
        total[window.offset(m, oh, ow)] += shares[m].reshape(n, oh, ow, c)
    return dweight, total
