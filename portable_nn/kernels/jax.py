"""JAX kernels: Conv2D by ``lax.conv_general_dilated`` (channels-last ``NHWC`` with ``HWIO`` weights, our layouts)
on GPUs and TPUs.  On CPU, XLA's convolution is 1-2.5x slower than the portable im2col and one product (forward
and backward of LeNet's and 3x3 layers, ``jax.jit``, 2 cores), so there the portable path runs (``used_for``).

Backward is JAX's transpose of the same convolution (``jax.vjp``; under ``jax.jit`` the recomputed forward is
dead code and XLA drops it).  The padding is done by the layer, so the convolution is ``VALID``; precision is
``HIGHEST`` (no TF32 on GPUs).  Equal to the portable path to rounding.
"""

from __future__ import annotations

from typing import Any

import jax
from jax import lax

__all__ = ["conv_backward", "conv_forward", "used_for"]


def used_for(x: jax.Array) -> bool:
    """Whether ``x``'s convolutions go to XLA: on an accelerator (a traced array: where ``jax.jit`` runs)."""
    platform = jax.default_backend() if isinstance(x, jax.core.Tracer) else next(iter(x.devices())).platform
    return bool(platform != "cpu")


def _conv(window: Any) -> Any:
    def conv(x: jax.Array, weight: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(x, weight, window.stride, "VALID", rhs_dilation=window.dilation,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=lax.Precision.HIGHEST)
    return conv


def conv_forward(xpad: jax.Array, weight: jax.Array, window: Any, oh: int, ow: int) -> tuple[jax.Array, Any]:
    """``conv(xpad, weight)`` as ``(n, oh, ow, out)`` (no bias); backward needs the padded input."""
    return _conv(window)(xpad, weight), xpad


def conv_backward(saved: Any, dvalue: jax.Array, weight: jax.Array, window: Any, hp: int, wp: int,
                  need_dinput: bool) -> tuple[jax.Array, jax.Array | None]:
    """``dweight`` ``(kh, kw, in, out)`` and the padded ``dinput`` (None unless asked)."""
    conv = _conv(window)
    if not need_dinput:
        _, vjp = jax.vjp(lambda w: conv(saved, w), weight)
        return vjp(dvalue)[0], None
    _, vjp = jax.vjp(conv, saved, weight)
    dinput, dweight = vjp(dvalue)
    return dweight, dinput
