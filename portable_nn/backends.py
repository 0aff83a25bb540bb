"""Backends by name: the namespace, the device and a host-to-backend conversion.

Used by the command line and the test harness: the library itself never
needs this -- it takes whatever arrays it is given.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "get_backend"]

BACKENDS = ("numpy", "array_api_strict", "strictest", "torch", "jax", "dask", "cupy")


class BackendUnavailable(RuntimeError):
    """The backend's library is not installed, or its device is missing."""


@dataclass
class Backend:
    """A named backend: its namespace, device and a NumPy -> backend conversion."""

    name: str
    xp: Any
    device: Any
    convert: Callable[[np.ndarray], Any]

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """A host array (built with NumPy) converted once to this backend."""
        a = np.asarray(a)
        if dtype is not None:
            a = a.astype(dtype)
        return self.convert(a)


_EXTRAS = {"torch": "torch", "jax": "jax", "dask": "dask", "cupy": "cupy-cuda12x", "array_api_strict": "test",
           "strictest": "test"}


def _need(name: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} is not installed ({exc}); pip install "
                                 f"\"portable_nn[{_EXTRAS.get(name, name)}]\"") from None


def _numpy(name: str, device: str | None) -> Backend:
    xp = importlib.import_module("array_api_compat.numpy")
    if device not in (None, "cpu"):
        raise BackendUnavailable(f"numpy runs on the cpu only, got device {device!r}")
    return Backend(name, xp, "cpu", lambda a: a)


def _strict(name: str, device: str | None) -> Backend:
    xp = _need(name, "array_api_strict")
    if name == "strictest":
        versions = [v for v in getattr(xp, "__array_api_supported_versions__", ()) if v[0].isdigit()]
        xp.set_array_api_strict_flags(
            api_version=max(versions) if versions else xp.__array_api_version__,
            boolean_indexing=False,
            data_dependent_shapes=False,
        )
    else:
        xp.reset_array_api_strict_flags()
    dev = xp.Device(device) if device else xp.Device()
    return Backend(name, xp, dev, lambda a: xp.asarray(a, device=dev))


def _torch(name: str, device: str | None) -> Backend:
    torch = _need(name, "torch")
    xp = importlib.import_module("array_api_compat.torch")
    dev = torch.device(device or "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("torch: no CUDA device available")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())  # tensors report cuda:0, not cuda
    return Backend(name, xp, dev, lambda a: xp.asarray(a, device=dev))


def _jax(name: str, device: str | None) -> Backend:
    jax = _need(name, "jax")
    jax.config.update("jax_enable_x64", True)  # float64 for gradient checks
    xp = importlib.import_module("jax.numpy")
    try:
        dev = jax.devices(device)[0] if device else jax.devices()[0]
    except RuntimeError as exc:
        raise BackendUnavailable(f"jax: no {device} device ({exc})") from None
    return Backend(name, xp, dev, lambda a: jax.device_put(xp.asarray(a), dev))


def _dask(name: str, device: str | None) -> Backend:
    if device not in (None, "cpu"):  # NumPy-backed chunks: never silently on the CPU when a GPU was asked for
        raise BackendUnavailable(f"dask runs on NumPy chunks on the cpu here, got device {device!r}")
    da = _need(name, "dask.array")
    xp = importlib.import_module("array_api_compat.dask.array")

    def to_dask(a: np.ndarray) -> Any:
        # chunked along the sample axis, as real data would be
        chunks = (max(1, -(-a.shape[0] // 2)), *a.shape[1:]) if a.ndim else ()
        return da.from_array(a, chunks=chunks)

    return Backend(name, xp, "cpu", to_dask)


def _cupy(name: str, device: str | None) -> Backend:
    cupy = _need(name, "cupy")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, no device: CuPy raises its own error types
        raise BackendUnavailable(f"cupy: no CUDA device ({exc})") from None
    if count == 0:
        raise BackendUnavailable("cupy: no CUDA device")
    xp = importlib.import_module("array_api_compat.cupy")
    dev = cupy.cuda.Device(int(device.split(":")[-1]) if device and ":" in device else 0)

    def to_cupy(a: np.ndarray) -> Any:
        with dev:
            return cupy.asarray(a)

    return Backend(name, xp, dev, to_cupy)


_MAKERS: dict[str, Callable[[str, str | None], Backend]] = {
    "numpy": _numpy, "array_api_strict": _strict, "strictest": _strict, "torch": _torch, "jax": _jax,
    "dask": _dask, "cupy": _cupy,
}


def get_backend(name: str, device: str | None = None) -> Backend:
    """The backend ``name`` on ``device`` (default: the library's default device)."""
    make = _MAKERS.get(name)
    if make is None:
        raise BackendUnavailable(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return make(name, device)
