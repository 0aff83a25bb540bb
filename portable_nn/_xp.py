"""Array-namespace helpers: lookup, placement, dtype names, labels.

Everything backend-aware lives here (and in :mod:`portable_nn.random`), so
the layers, losses and optimizers read as plain array-API code.
"""

from __future__ import annotations

import importlib
from typing import Any

import array_api_compat
import array_api_extra as xpx
import numpy as np
from array_api_compat import array_namespace, is_numpy_array
from array_api_compat import device as array_device

from ._typing import Array, Device, DType, Namespace

__all__ = [
    "array_api_compat",
    "is_numpy_array",
    "array_namespace",
    "array_device",
    "dtype_name",
    "float_dtype",
    "default_int",
    "library_name",
    "describe",
    "move",
    "to_numpy",
    "is_lazy",
    "labels_as",
    "one_hot",
    "check_floating",
]

FLOAT_NAMES = ("float32", "float64")


def dtype_name(dtype: DType) -> str:
    """The standard name of a floating dtype given by name or dtype object."""
    if dtype is None:
        name = "None"  # np.dtype(None) would silently mean float64
    elif isinstance(dtype, str):
        name = dtype
    else:
        # numpy/jax/cupy dtypes have .name; torch.float32 prints 'torch.float32';
        # array_api_strict dtypes print 'array_api_strict.float32'.
        try:
            name = np.dtype(dtype).name  # numpy, jax, cupy, dask dtypes and scalar types
        except TypeError:
            name = str(dtype).rsplit(".", 1)[-1]
    if name not in FLOAT_NAMES:
        raise ValueError(f"dtype must be one of {FLOAT_NAMES} (name or dtype object), got {dtype!r}")
    return name


def float_dtype(xp: Namespace, dtype: DType) -> DType:
    """The namespace's dtype object for a floating dtype name or object."""
    return getattr(xp, dtype_name(dtype))


def default_int(xp: Namespace, device: Device) -> DType:
    """The namespace's default integer dtype (int32 on JAX without x64)."""
    return xpx.default_dtype(xp, "integral", device=device)


def library_name(x: Array) -> str:
    """A short name of the array library of ``x`` for error messages."""
    module = type(x).__module__.split(".")[0]
    return {"jaxlib": "jax", "builtins": type(x).__name__}.get(module, module)


def describe(x: Array) -> str:
    """'torch array on cuda:0' -- the library and device of an array, for messages."""
    try:
        dev = array_device(x)
    except Exception:  # not an array at all
        return f"{type(x).__name__} object"
    return f"{library_name(x)} array on device {dev}"


_NUMPY = (np.ndarray, np.generic)  # isinstance tuples made once, not a union type built each call
_HOST = (float, int, np.generic, np.ndarray)


def is_array(x: Any) -> bool:
    """``array_api_compat.is_array_api_obj``, answering NumPy arrays and scalars first (per step, the generic
    probe's walk over every library costs microseconds)."""
    return isinstance(x, _NUMPY) or bool(array_api_compat.is_array_api_obj(x))


def is_lazy(x: Array) -> bool:
    """Whether ``x`` builds a task graph that grows with every operation (Dask): persist each step."""
    return type(x) is not np.ndarray and bool(array_api_compat.is_dask_array(x))


def cheap_sync(x: Array) -> bool:
    """Whether reading a value of ``x`` back is free: eager host arrays (NumPy, array-api-strict, PyTorch CPU)."""
    if array_api_compat.is_lazy_array(x):  # Dask, JAX: a read-back computes or waits
        return False
    if is_numpy_array(x) or array_api_compat.is_array_api_strict_namespace(namespace(x)):
        return True
    return array_api_compat.is_torch_array(x) and x.device.type == "cpu"


def to_numpy(x: Array) -> Array:
    """A host NumPy copy of any array (used for saving and reports only)."""
    if is_numpy_array(x):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if is_lazy(x):
        return np.asarray(x.compute())
    try:
        return np.asarray(x)
    except (TypeError, ValueError, RuntimeError):
        return np.from_dlpack(x)


def move(x: Array, xp: Array, device: Device, dtype: DType = None) -> Array:
    """``x`` as an array of namespace ``xp`` on ``device`` (and ``dtype``).

    Same namespace: a device move (``to_device``).  Other namespace: DLPack
    when the producer and consumer can share memory, else the host as the
    bridge.  Used at placement and by explicit moves, never inside a step.
    """
    if array_api_compat.is_array_api_obj(x) and array_namespace(x) is xp:
        out = x if array_device(x) == device else array_api_compat.to_device(x, device)
    elif is_numpy_array(x):
        if dtype is not None:  # cast on the host: on JAX a device cast compiles once per shape
            x = x.astype(dtype_name(dtype), copy=False)
        if array_api_compat.is_jax_namespace(xp):  # asarray(device=) compiles a copy per shape; device_put: none
            out = importlib.import_module("jax").device_put(x, device)
        else:
            out = xp.asarray(x, device=device)
    else:
        try:
            out = xp.from_dlpack(x)
            if array_device(out) != device:
                out = array_api_compat.to_device(out, device)
        except Exception:  # no DLPack path between these two: go through the host
            out = xp.asarray(to_numpy(x), device=device)
    if dtype is not None and out.dtype != dtype:
        out = xp.astype(out, dtype)
    return out


def check_floating(xp: Namespace, x: Array, what: str) -> None:
    """Raise TypeError naming ``what`` unless ``x`` has a real floating dtype."""
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{what}: expected a float32/float64 array, got dtype {x.dtype}")


def labels_as(xp: Namespace, y_true: Array, like: Array, what: str) -> Array:
    """``y_true`` cast to the floating dtype of ``like`` (never uint8 arithmetic).

    Checks the namespace and device of the labels against the predictions.
    """
    if type(y_true) is not type(like) and (
        not array_api_compat.is_array_api_obj(y_true) or namespace(y_true) is not xp
    ):
        raise TypeError(
            f"{what}: labels are a {describe(y_true)} but predictions are a {describe(like)}; "
            "convert the labels with the same library (e.g. xp.asarray(y, device=...))"
        )
    if not same_device(y_true, like):
        raise TypeError(
            f"{what}: labels are a {describe(y_true)} but predictions are a {describe(like)}; "
            "move the labels to the predictions' device"
        )
    if y_true.dtype == like.dtype:
        return y_true
    return xp.astype(y_true, like.dtype)


def one_hot(xp: Namespace, labels: Array, n_classes: int, dtype: DType) -> Array:
    """One-hot rows of class indices ``labels`` (any integer, bool or float dtype) as ``dtype``.

    ``array_api_extra.one_hot``: a comparison with ``arange`` (no item
    assignment, no data-dependent shapes), or the library's own one-hot.
    """
    if not xp.isdtype(labels.dtype, "integral"):
        labels = xp.astype(labels, default_int(xp, array_device(labels)))
    return xpx.one_hot(labels, n_classes, dtype=dtype, xp=xp)


_NAMESPACES: dict[type, Namespace] = {}


def namespace(x: Array) -> Namespace:
    """``array_namespace(x)``, cached by array type (one lookup per type, ever).

    The lookup walks several library checks; a training step calls this for
    every layer, so the type -> namespace map is kept.
    """
    xp = _NAMESPACES.get(type(x))
    if xp is None:
        if not array_api_compat.is_array_api_obj(x):
            raise TypeError(f"expected an array, got {type(x).__name__}")
        xp = array_namespace(x)
        _NAMESPACES[type(x)] = xp
    return xp


def same_device(a: Array, b: Array) -> bool:
    """Whether two arrays of one library share a device (NumPy: always, without asking)."""
    if type(a) is np.ndarray and type(b) is np.ndarray:
        return True
    return bool(array_device(a) == array_device(b))


def check_same_place(x: Array, param: Array, what: str, held: str = "the parameters are") -> None:
    """TypeError naming both sides when ``x`` and ``param`` differ in library or device (``held``: what
    ``param`` is, for the message)."""
    if type(x) is not type(param) and namespace(x) is not namespace(param):
        raise TypeError(
            f"{what}: input is a {describe(x)} but {held} a {describe(param)}; "
            f"pass {library_name(param)} arrays, or move the model with model.to(like=x)"
        )
    if not same_device(x, param):
        raise TypeError(
            f"{what}: input is a {describe(x)} but {held} a {describe(param)}; "
            "move the input to the parameters' device, or move the model with model.to(like=x)"
        )


def to_host(xp: Namespace, values: list[Array]) -> list[float]:
    """Python floats of 0-d arrays (or numbers): the one host sync of a report.

    Dask computes all of them in one graph run.
    """
    arrays = [(i, v) for i, v in enumerate(values)  # host values first: a report can read thousands of them
              if not isinstance(v, _HOST) and array_api_compat.is_array_api_obj(v)]
    if arrays and is_lazy(arrays[0][1]):
        dask: Any = importlib.import_module("dask")
        computed = dask.compute(*[v for _, v in arrays])
        values = list(values)
        for (i, _), c in zip(arrays, computed, strict=False):
            values[i] = c
    return [float(v) for v in values]
