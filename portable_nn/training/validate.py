"""Data checks: once per call, never per step, with one host sync.

They name the call and the argument, the expected and the actual value.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

from .. import _xp, kernels
from .._typing import Array, Namespace

__all__ = ["check_data", "check_features", "check_pair", "positive_int"]


def positive_int(owner: str, name: str, value: Any, allow_none: bool = False) -> Any:
    """``value`` as an int >= 1 (or None when allowed); ``ValueError`` naming it otherwise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


def check_pair(owner: str, name: str, value: Any) -> tuple[Any, Any]:
    """``value`` as an ``(X, y)`` pair; ``TypeError`` naming it otherwise."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(f"{owner}: {name} must be an (X, y) pair, got {type(value).__name__}")
    return value[0], value[1]


def known_rows(what: str, name: str, a: Any) -> None:
    """``a``'s row count is known: a Dask array after boolean indexing has unknown chunk sizes (NaN)."""
    rows = getattr(a, "shape", (0,))[0] if getattr(a, "ndim", 1) else 0
    if rows is None or (isinstance(rows, float) and math.isnan(rows)):
        raise ValueError(f"Model.{what}: {name} has unknown chunk sizes (a Dask array after boolean indexing or a "
                         f"filter): call {name} = {name}.compute_chunk_sizes() first")


def check_features(what: str, X: Any, n_inputs: int | tuple[int | None, ...] | None = None) -> Namespace:
    """X is a floating array of some array library, ``(n_samples, *shape)`` (``n_inputs``: one sample's shape,
    or its width; default: vectors of any width); its namespace."""
    if not _xp.array_api_compat.is_array_api_obj(X):
        raise TypeError(f"Model.{what}: X must be an array (NumPy, CuPy, PyTorch, ...), got {type(X).__name__}")
    known_rows(what, "X", X)
    xp = _xp.namespace(X)
    _xp.check_floating(xp, X, f"Model.{what}: X")
    shape = (n_inputs,) if isinstance(n_inputs, int) else n_inputs
    if shape is None or len(shape) == 1:
        if X.ndim != 2:
            raise ValueError(f"Model.{what}: X must have shape (n_samples, n_features), got {tuple(X.shape)}")
    elif X.ndim != 1 + len(shape) or any(s is not None and X.shape[1 + i] != s for i, s in enumerate(shape)):
        described = ", ".join("?" if s is None else str(s) for s in shape)
        raise ValueError(f"Model.{what}: X must have shape (n_samples, {described}) for the model's first layer, "
                         f"got {tuple(X.shape)}")
    if getattr(X, "requires_grad", False):  # PyTorch autograd: the graph would chain across every step
        raise TypeError(f"Model.{what}: X requires grad (a PyTorch autograd tensor); pass X.detach()")
    if shape is not None and len(shape) == 1 and shape[0] is not None and X.shape[1] != shape[0]:
        raise ValueError(f"Model.{what}: X has {X.shape[1]} features but the model takes {shape[0]}")
    return xp


FLOAT32_MAX = 3.4028234663852886e38


def check_data(what: str, X: Any, y: Any, *, n_outputs: int | None, target_kind: str,
               n_inputs: Any = None, dtype: str | None = None, values: bool = True) -> dict[str, Array]:
    """Shapes, dtypes, label ranges and finiteness of a call's data (``target_kind`` from the loss).

    Shapes and dtypes are checked at once.  The value checks (finiteness, label ranges) are device booleans:
    with ``values`` they are read back and checked here (one host sync); without, they are returned unread,
    for a caller that reads them with the data's own pass (Dask: each block is read once) and hands them to
    ``verify``.
    """
    xp = check_features(what, X, n_inputs)
    if X.shape[0] == 0:
        raise ValueError(f"Model.{what}: X has no samples")
    if y is not None:
        _check_targets(what, xp, X, y, n_outputs, target_kind)
    fits = dtype == "float32" and X.dtype == xp.float64  # the model would compute inf from finite float64 data
    checks: dict[str, Array]
    if _xp.array_api_compat.is_jax_namespace(xp):  # one compilation for them all, not one per operation
        checks = _jax_value_checks()(X, y, fits, n_outputs, target_kind)
    else:
        checks = _value_checks(X, y, fits, n_outputs, target_kind)
    if values:
        verify(what, X, dict(zip(checks, _xp.to_host(xp, list(checks.values())), strict=True)), n_outputs)
    return checks


def verify(what: str, X: Any, ok: dict[str, Any], n_outputs: int | None) -> None:
    """Raise the error of the first value check that failed (``ok``: the checks read back, by name)."""
    xp = _xp.namespace(X)
    if not ok["X"]:  # a NaN/inf, or only an overflowing sum: decide exactly
        ok["X"] = _xp.to_host(xp, [xp.all(xp.isfinite(X))])[0]
    for name, passed in ok.items():
        if passed:
            continue
        if name in ("X", "y"):
            raise ValueError(f"Model.{what}: {name} contains NaN or infinite values")
        if name == "X fits float32":
            raise ValueError(f"Model.{what}: X holds values beyond float32's range, the model's dtype")
        if name == "binary targets":
            raise ValueError(f"Model.{what}: binary targets must be 0 or 1")
        raise ValueError(f"Model.{what}: class labels must be in [0, {n_outputs}), the model has {n_outputs} outputs")


def _check_targets(what: str, xp: Namespace, X: Array, y: Any, n_out: int | None, target_kind: str) -> None:
    """Shape and dtype errors at once (the values are checked by ``_value_checks``)."""
    if not _xp.array_api_compat.is_array_api_obj(y) or _xp.namespace(y) is not xp:
        raise TypeError(f"Model.{what}: y is a {_xp.describe(y)} but X is a {_xp.describe(X)}; use one library")
    known_rows(what, "y", y)
    if y.ndim == 0 or y.shape[0] != X.shape[0]:
        got = y.shape[0] if y.ndim else "a 0-d array"
        raise ValueError(f"Model.{what}: X has {X.shape[0]} samples but y has {got}")
    if not (xp.isdtype(y.dtype, "numeric") or y.dtype == xp.bool):
        raise TypeError(f"Model.{what}: y must be numeric or bool, got dtype {y.dtype}")
    classes = target_kind == "classes"
    wrong_width = n_out is not None and y.ndim == 2 and y.shape[1] != n_out
    flat_for_many = n_out is not None and y.ndim == 1 and n_out != 1 and not classes
    if y.ndim > 2 or wrong_width or flat_for_many:
        form = "(n,) class indices or (n, k) one-hot rows" if classes else "(n,) or (n, k) targets"
        raise ValueError(
            f"Model.{what}: y of shape {tuple(y.shape)} does not fit a model with {n_out} outputs "
            f"(expected {form}, k = {n_out})"
        )
    if classes and y.ndim == 1 and not xp.isdtype(y.dtype, "integral"):
        raise TypeError(f"Model.{what}: class labels must be integers, got dtype {y.dtype}")


def _value_checks(X: Array, y: Any, fits: bool, n_out: int | None, target_kind: str) -> dict[str, Array]:
    """The value checks as device booleans, by name: finiteness, float32 range (``fits``), label ranges."""
    xp = _xp.namespace(X)
    # A sum is finite iff every value in it is (NaN and inf propagate), unless
    # finite values overflow it: only then is the exact element-wise check run.
    # One pass over X and no X-sized temporary for the common, clean case.
    checks: dict[str, Array] = {"X": xp.all(xp.isfinite(kernels.sample_sums(X)))}
    if fits:
        checks["X fits float32"] = xp.max(xp.abs(X)) <= FLOAT32_MAX
    if y is None:
        return checks
    if target_kind == "classes" and y.ndim == 1:
        labels = xp.astype(y, xp.int64) if y.dtype in (xp.uint16, xp.uint32, xp.uint64) else y  # PyTorch: no min
        checks["labels >= 0"] = xp.min(labels) >= 0
        if n_out is not None:
            checks[f"labels < {n_out}"] = xp.max(labels) < n_out
    elif target_kind == "binary":
        checks["binary targets"] = xp.all((y == 0) | (y == 1))
    elif xp.isdtype(y.dtype, "real floating"):
        checks["y"] = xp.all(xp.isfinite(y))
    return checks


@functools.cache
def _jax_value_checks() -> Any:
    """``_value_checks`` under one ``jax.jit`` (compiled once per shape, not once per operation)."""
    import jax

    return jax.jit(_value_checks, static_argnums=(2, 3, 4))
