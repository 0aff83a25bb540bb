"""The delegation layer: one dispatch point between the portable code and backend kernels.

The portable array-API code is the reference and the default.  Where a
backend can do better, a kernel beside it takes over, chosen here by
*capability* (``array_api_compat.is_writeable_array``, ``is_cupy_array``),
never by module-name strings:

* optimizer updates: NumPy (writeable arrays) runs ufuncs with ``out=`` over
  one flat buffer (:mod:`.numpy`); CuPy one fused elementwise kernel
  (:mod:`.cupy`); everything else the optimizer's portable rule per parameter;
* ReLU's backward: one CuPy kernel; on NumPy a multiply by the boolean mask
  (no cast of the mask); elsewhere the portable mask multiply;
* Conv2D: PyTorch's own convolution on its tensors, ``lax.conv_general_dilated`` on JAX's on accelerators (on
  CPU XLA's is slower than the portable im2col); on NumPy im2col by
  one strided copy (``sliding_window_view``) and col2im by in-place adds of contiguous shares; elsewhere
  (array-api-strict, Dask, CuPy) the portable slices and array-api-extra's ``at(...).add``;
* Dense's ``dbias`` (column sums): on NumPy and CuPy a product with a cached
  row of ones (one BLAS call, 3-4x faster than the reduction); elsewhere
  ``sum(axis=0)``.

A kernel computes **the reference formula in the same order**, so float32
results agree with the portable path to the last bits (tested over 200 Adam
steps).  Switch the kernels off with ``with portable_nn.fast_paths(False):``,
``portable_nn.set_fast_paths(False)`` or ``PORTABLE_NN_FAST_PATHS=0``.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any

import array_api_extra as xpx
import numpy as np
from array_api_compat import is_cupy_array, is_jax_array, is_torch_array

from .. import _xp
from .._typing import Array

if TYPE_CHECKING:
    from ..optimizers import Optimizer
    from ..parameter import Parameter

__all__ = ["add_at", "column_sums", "conv_backward", "conv_forward", "fast_paths", "fast_paths_enabled",
           "optimizer_kernels", "relu", "relu_backward", "row_max", "row_sums", "sample_sums", "set_fast_paths",
           "update"]

_ENABLED = os.environ.get("PORTABLE_NN_FAST_PATHS", "1").strip().lower() not in ("0", "false", "no", "off")


class _Scope(threading.local):
    """The innermost ``with fast_paths(...)`` of each thread (None: none; a class default, so that reading it
    never raises and catches an AttributeError, a microsecond a call)."""

    enabled: bool | None = None


_SCOPE = _Scope()


def set_fast_paths(enabled: bool) -> None:
    """Turn the backend kernels on or off for the whole process (default: on)."""
    global _ENABLED  # noqa: PLW0603 - one process-wide switch, like numpy.seterr
    _ENABLED = bool(enabled)


def fast_paths_enabled() -> bool:
    """Whether the backend kernels are on in this thread (its innermost scope, else the process switch)."""
    scoped = _SCOPE.enabled
    return _ENABLED if scoped is None else scoped


@contextmanager
def fast_paths(enabled: bool) -> Iterator[None]:
    """``with fast_paths(False):`` runs the block on the portable reference path only.

    The scope belongs to the calling thread: other threads keep their own setting.
    """
    previous = _SCOPE.enabled
    _SCOPE.enabled = bool(enabled)
    try:
        yield
    finally:
        _SCOPE.enabled = previous


def optimizer_kernels(x: Array) -> ModuleType | None:
    """The kernel module that can update ``x`` in place, or None for the portable path."""
    if not fast_paths_enabled():
        return None
    if isinstance(x, np.ndarray) and x.flags.writeable:  # is_writeable_array, without its generic dispatch
        return _numpy_kernels()
    if is_cupy_array(x):
        from . import cupy as cupy_kernels

        return cupy_kernels
    return None


@functools.cache
def _numpy_kernels() -> ModuleType:
    """The NumPy kernel module (imported once: an import statement costs a microsecond a step)."""
    from . import numpy as numpy_kernels

    return numpy_kernels


def update(optimizer: Optimizer, params: list[Parameter], ok: Array | None = None) -> None:
    """One optimizer step over ``params``: a kernel over a flat buffer where one applies, else the rule.

    ``ok`` is an optional 0-d device bool (the loss was finite): the CuPy
    kernels leave the parameters unchanged where it is False, without a host
    sync.  The portable path ignores it (the guard restores a snapshot).
    """
    kernels = optimizer_kernels(params[0].value) if params and optimizer.kernel else None
    if kernels is not None and optimizer.kernel not in kernels.KERNELS:
        kernels = None  # an optimizer with a kernel name this backend does not have: its rule
    flat = optimizer.flat_buffer(params) if kernels is not None else None
    if kernels is None or flat is None or not flat.gather_grads(getattr(kernels, "DIRECT", None)):
        for p in params:
            optimizer.update_parameter(p)
        return
    lr, t = optimizer.current_learning_rate, optimizer.iterations + 1
    kernels.apply(optimizer.kernel, flat, optimizer.kernel_args(lr, t), ok)


def relu(x: Array) -> Array:
    """``max(x, 0)``.  A 0-d zero of ``x``'s dtype, not 0.0: array-api-compat promotes a Python scalar with
    ``torch.result_type``, which breaks the graph under ``torch.compile``.  On NumPy the ufunc with a Python 0
    (the same values; NEP 50 keeps the dtype), without making that zero each call."""
    if type(x) is np.ndarray and fast_paths_enabled():
        return np.maximum(x, 0)
    xp = _xp.namespace(x)
    return xp.maximum(x, xp.zeros((), dtype=x.dtype, device=_xp.array_device(x)))


def relu_backward(x: Array, dvalue: Array) -> Array:
    """``dvalue * (x > 0)``: one fused kernel on CuPy, the portable mask multiply elsewhere."""
    if is_cupy_array(x) and fast_paths_enabled() and type(dvalue) is type(x) and x.dtype == dvalue.dtype \
            and x.shape == dvalue.shape:
        from . import cupy as kernels

        return kernels.relu_backward(x, dvalue)
    if type(x) is np.ndarray and type(dvalue) is np.ndarray and fast_paths_enabled():
        return np.multiply(dvalue, x > 0)  # NumPy multiplies by the boolean mask without casting it first
    xp = _xp.namespace(dvalue)
    # a multiply by the 0/1 mask: three times faster than where() on NumPy
    return dvalue * xp.astype(x > 0, dvalue.dtype)




_ONES: dict[tuple[object, ...], Array] = {}  # arrays of ones by (type, shape, dtype, device); a few at most


def _ones(like: Array, shape: tuple[int, int]) -> Array:
    """A cached array of ones of ``shape`` in ``like``'s library, dtype and device (a few shapes at a time: the
    last batch of an epoch, validation)."""
    device = "cpu" if type(like) is np.ndarray else _xp.array_device(like)
    key = (type(like), shape, like.dtype, device)
    ones = _ONES.get(key)
    if ones is None:
        if len(_ONES) >= 16:
            _ONES.clear()
        ones = _ONES[key] = _xp.namespace(like).ones(shape, dtype=like.dtype, device=device)
    return ones


def _blas(x: Array) -> bool:
    """Whether ``x`` takes the ones-product sums: a NumPy or CuPy array (traced code keeps no arrays)."""
    return (type(x) is np.ndarray or is_cupy_array(x)) and fast_paths_enabled()


def column_sums(dvalue: Array) -> Array:
    """``sum(dvalue, axis=0)`` as a ``(1, n)`` row.  On NumPy and CuPy a product with a cached row of ones (one
    BLAS call, 3-4x faster than the reduction); elsewhere the portable sum."""
    if not _blas(dvalue):
        return _xp.namespace(dvalue).sum(dvalue, axis=0, keepdims=True)
    return _ones(dvalue, (1, dvalue.shape[0])) @ dvalue


def row_sums(z: Array) -> Array:
    """``sum(z, axis=1, keepdims=True)`` of a 2-D array.  On NumPy and CuPy a product with a cached column of
    ones: NumPy reduces short rows slowly (300x3: 4.2 us, against 0.7); elsewhere the portable sum.  Equal to
    rounding (another order of the same additions)."""
    if not (_blas(z) and z.ndim == 2):
        return _xp.namespace(z).sum(z, axis=1, keepdims=True)
    return z @ _ones(z, (z.shape[1], 1))


def sample_sums(X: Array) -> Array:
    """One finite number per sample iff the sample's values are all finite (NaN and inf propagate), unless finite
    values overflow it: the data check's one pass over ``X``.  On NumPy and CuPy the product of the samples with a
    column of ones (BLAS: 2.7x faster than NumPy's reduction over MNIST's 60000x784 on two cores); elsewhere the
    portable sum over the samples (one finite number per feature, the same property)."""
    if _blas(X) and X.ndim >= 2 and X.shape[0] > 0:
        flat = X.reshape(X.shape[0], -1)  # a view of contiguous samples
        with np.errstate(over="ignore"):  # finite values that overflow a sum: the caller checks them exactly
            return flat @ _ones(flat, (flat.shape[1], 1))
    return _xp.namespace(X).sum(X, axis=0)


def add_at(total: Array, index: tuple[slice, ...], part: Array) -> Array:
    """``total[index] += part`` on a fresh array of ours (col2im's adds): array-api-extra's ``at(...).add`` (in place
    where the library allows, a functional update on JAX); on PyTorch the in-place add itself, which is what
    ``at`` does there too, but ``torch.compile`` cannot trace ``at``'s check of a tuple index."""
    if is_torch_array(total):
        total[index] += part
        return total
    return xpx.at(total)[index].add(part, copy=None)


def row_max(z: Array) -> Array:
    """``max(z, axis=1, keepdims=True)`` of a 2-D array.  On NumPy with 2 to 64 columns, the maximum over the rows
    of the transposed copy: NumPy reduces a short row slowly (128x10: 7 us; 1024x10: 57 us) but a column of rows
    fast (1.5 us; 4.6 us with the copy), and a maximum is exact in any order, so the values are the reduction's
    (NaN propagates as there)."""
    if type(z) is np.ndarray and z.ndim == 2 and 2 <= z.shape[1] <= 64 and fast_paths_enabled():
        return np.ascontiguousarray(z.T).max(axis=0).reshape(-1, 1)
    return _xp.namespace(z).max(z, axis=1, keepdims=True)


def _conv_kernels(x: Array) -> ModuleType | None:
    """The module with a convolution for ``x``'s library (by the array's type), or None for the portable path."""
    if not fast_paths_enabled():
        return None
    if type(x) is np.ndarray:
        from . import numpy as numpy_kernels

        return numpy_kernels
    if is_torch_array(x):
        from . import torch as torch_kernels

        return torch_kernels
    if is_jax_array(x):
        from . import jax as jax_kernels

        return jax_kernels if jax_kernels.used_for(x) else None  # XLA:CPU's convolution is slower than im2col
    return None


def conv_forward(xp: Any, xpad: Array, weight: Array, window: Any, oh: int, ow: int) -> tuple[Array, Any]:
    """The convolution of the padded input ``(n, hp, wp, in)`` with ``weight`` ``(kh, kw, in, out)`` (``conv.Window``'s
    geometry, no bias): ``(n, oh, ow, out)``, and what ``conv_backward`` needs.  Portable: im2col by the
    ``kh*kw`` strided slices, concatenated, and one product (no reshape across n: Dask keeps its chunks)."""
    kernels = _conv_kernels(xpad)
    if kernels is not None:
        out, saved = kernels.conv_forward(xpad, weight, window, oh, ow)
        return out, (kernels, saved)
    patches = xp.concat(window.slices(xpad, oh, ow), axis=-1)
    return patches @ xp.reshape(weight, (-1, int(weight.shape[3]))), (None, patches)


def conv_backward(xp: Any, saved: Any, dvalue: Array, weight: Array, window: Any, hp: int, wp: int,
                  need_dinput: bool) -> tuple[Array, Array | None]:
    """``dweight = patches.T @ dvalue`` ``(kh, kw, in, out)`` and the padded ``dinput = col2im(dvalue @ weight.T)``
    ``(n, hp, wp, in)`` (None unless ``need_dinput``), by the kernel that ran the forward."""
    kernels, payload = saved
    if kernels is not None:
        return kernels.conv_backward(payload, dvalue, weight, window, hp, wp, need_dinput)  # type: ignore[no-any-return]
    out = int(weight.shape[3])
    k = int(payload.shape[3])
    d2 = xp.reshape(dvalue, (-1, out))
    dweight = xp.reshape(xp.reshape(payload, (-1, k)).T @ d2, tuple(weight.shape))
    if not need_dinput:
        return dweight, None
    dpatches = xp.reshape(d2 @ xp.reshape(weight, (k, out)).T, tuple(payload.shape))
    c = int(weight.shape[2])
    parts = [dpatches[..., m * c:(m + 1) * c] for m in range(k // c)]
    return dweight, window.scatter(xp, parts, hp, wp)
