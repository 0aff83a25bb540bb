"""Array-namespace helpers: lookup, placement, dtype names, labels.

Everything backend-aware lives here (and in :mod:`portable_nn.random`), so
the layers, losses and optimizers read as plain array-API code.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np
from array_api_compat import array_namespace, device as array_device
from array_api_compat import is_numpy_array

__all__ = [
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


def dtype_name(dtype: Any) -> str:
    """The standard name of a floating dtype given by name or dtype object."""
    if isinstance(dtype, str):
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


def float_dtype(xp: Any, dtype: Any) -> Any:
    """The namespace's dtype object for a floating dtype name or object."""
    return getattr(xp, dtype_name(dtype))


def default_int(xp: Any, device: Any) -> Any:
    """The namespace's default integer dtype (int32 on JAX without x64)."""
    return xp.__array_namespace_info__().default_dtypes(device=device)["integral"]


def library_name(x: Any) -> str:
    """A short name of the array library of ``x`` for error messages."""
    module = type(x).__module__.split(".")[0]
    return {"jaxlib": "jax", "builtins": type(x).__name__}.get(module, module)


def describe(x: Any) -> str:
    """'torch array on cuda:0' -- the library and device of an array, for messages."""
    try:
        dev = array_device(x)
    except Exception:  # not an array at all
        return f"{type(x).__name__} object"
    return f"{library_name(x)} array on device {dev}"


def is_lazy(x: Any) -> bool:
    """Whether ``x`` builds a graph instead of computing (Dask)."""
    return array_api_compat.is_dask_array(x)


def cheap_sync(x: Any) -> bool:
    """Whether reading a value of ``x`` back is free: eager host arrays (NumPy, array-api-strict, PyTorch CPU)."""
    if is_numpy_array(x) or type(x).__module__.startswith("array_api_strict"):
        return True
    return array_api_compat.is_torch_array(x) and x.device.type == "cpu"


def to_numpy(x: Any) -> Any:
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


def move(x: Any, xp: Any, device: Any, dtype: Any = None) -> Any:
    """``x`` as an array of namespace ``xp`` on ``device`` (and ``dtype``).

    Same namespace: a device move (``to_device``).  Other namespace: DLPack
    when the producer and consumer can share memory, else the host as the
    bridge.  Used at placement and by explicit moves, never inside a step.
    """
    if array_api_compat.is_array_api_obj(x) and array_namespace(x) is xp:
        out = x if array_device(x) == device else array_api_compat.to_device(x, device)
    elif is_numpy_array(x):
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


def check_floating(xp: Any, x: Any, what: str) -> None:
    """Raise TypeError naming ``what`` unless ``x`` has a real floating dtype."""
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{what}: expected a float32/float64 array, got dtype {x.dtype}")


def labels_as(xp: Any, y_true: Any, like: Any, what: str) -> Any:
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


def one_hot(xp: Any, labels: Any, n_classes: int, like: Any) -> Any:
    """One-hot rows of float ``labels`` (class indices already cast to float).

    A comparison with ``arange`` -- no item assignment (JAX) and no
    data-dependent shapes (Dask).  Class indices are exact in float32 up to
    2**24, far beyond any class count.
    """
    classes = xp.arange(n_classes, dtype=like.dtype, device=array_device(like))
    return xp.astype(labels[:, None] == classes[None, :], like.dtype)


_NAMESPACES: dict[type, Any] = {}


def namespace(x: Any) -> Any:
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


def same_device(a: Any, b: Any) -> bool:
    """Whether two arrays of one library share a device (NumPy: always, without asking)."""
    if type(a) is np.ndarray and type(b) is np.ndarray:
        return True
    return bool(array_device(a) == array_device(b))


def check_same_place(x: Any, param: Any, what: str) -> None:
    """TypeError naming both sides when ``x`` and ``param`` differ in library or device."""
    if type(x) is not type(param) and namespace(x) is not namespace(param):
        raise TypeError(
            f"{what}: input is a {describe(x)} but the parameters are a {describe(param)}; "
            f"pass {library_name(param)} arrays, or move the model with model.to(like=x)"
        )
    if not same_device(x, param):
        raise TypeError(
            f"{what}: input is a {describe(x)} but the parameters are a {describe(param)}; "
            "move the input to the parameters' device, or move the model with model.to(like=x)"
        )


def to_host(xp: Any, values: list[Any]) -> list[float]:
    """Python floats of 0-d arrays (or numbers): the one host sync of a report.

    Dask computes all of them in one graph run.
    """
    arrays = [(i, v) for i, v in enumerate(values) if array_api_compat.is_array_api_obj(v)]
    if arrays and is_lazy(arrays[0][1]):
        import dask

        computed = dask.compute(*[v for _, v in arrays])
        values = list(values)
        for (i, _), c in zip(arrays, computed):
            values[i] = c
    return [float(v) for v in values]
