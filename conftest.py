"""Test harness: one ``xp`` backend per run, chosen by ``--backend`` or $PORTABLE_NN_BACKEND.

Backends: numpy, array_api_strict, strictest (array-api-strict with boolean
indexing and data-dependent shapes off, newest API version), torch, jax
(x64 on), dask (chunked along the sample axis), cupy.  A backend that is not
installed -- or CuPy/CUDA without a device -- skips every test with the
reason, never errors.  ``--device`` picks the device (e.g. ``cuda``).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

BACKENDS = ("numpy", "array_api_strict", "strictest", "torch", "jax", "dask", "cupy")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        default=os.environ.get("PORTABLE_NN_BACKEND", "numpy"),
        choices=BACKENDS,
        help="array library the tests run on (default: $PORTABLE_NN_BACKEND or numpy)",
    )
    parser.addoption(
        "--device",
        default=os.environ.get("PORTABLE_NN_DEVICE"),
        help="device for the backend (e.g. cuda); default: the library's default device",
    )
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str:
    return f"portable_nn backend: {config.getoption('--backend')} device: {config.getoption('--device')}"


@dataclass
class Backend:
    """The backend under test: its namespace, device and conversions."""

    name: str
    xp: Any
    device: Any
    _asarray: Callable[[np.ndarray], Any]

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """A NumPy array (built on the host) converted once to this backend."""
        a = np.asarray(a)
        if dtype is not None:
            a = a.astype(dtype)
        return self._asarray(a)

    def to_numpy(self, x: Any) -> np.ndarray:
        from portable_nn._xp import to_numpy

        return np.asarray(to_numpy(x))

    def assert_close(self, actual: Any, desired: Any, *, rtol: float | None = None, atol: float = 0.0) -> None:
        """Namespace, shape and dtype of ``actual``, then values (dtype-aware rtol)."""
        import array_api_compat

        assert array_api_compat.array_namespace(actual) is self.xp, (
            f"result is {type(actual)}, expected an array of {self.name}"
        )
        desired = np.asarray(desired)
        assert tuple(actual.shape) == desired.shape, f"shape {tuple(actual.shape)} != {desired.shape}"
        got = self.to_numpy(actual)
        if rtol is None:
            rtol = 1e-12 if got.dtype == np.float64 else 1e-5
        np.testing.assert_allclose(got, desired, rtol=rtol, atol=atol)


def _make_backend(name: str, device: str | None) -> Backend:
    def need(module: str) -> Any:
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            pytest.skip(f"backend {name!r} is not installed ({exc})")

    if name == "numpy":
        import array_api_compat.numpy as xp

        return Backend(name, xp, "cpu", lambda a: a)
    if name in ("array_api_strict", "strictest"):
        xp = need("array_api_strict")
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
    if name == "torch":
        torch = need("torch")
        import array_api_compat.torch as xp

        dev = torch.device(device or "cpu")
        if dev.type == "cuda" and not torch.cuda.is_available():
            pytest.skip("torch: no CUDA device")
        return Backend(name, xp, dev, lambda a: xp.asarray(a, device=dev))
    if name == "jax":
        jax = need("jax")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as xp

        dev = jax.devices(device)[0] if device else jax.devices()[0]
        return Backend(name, xp, dev, lambda a: jax.device_put(xp.asarray(a), dev))
    if name == "dask":
        da = need("dask.array")
        import array_api_compat.dask.array as xp

        def to_dask(a: np.ndarray) -> Any:
            # chunked along the sample axis, as real data would be
            chunks = (max(1, -(-a.shape[0] // 2)),) + a.shape[1:] if a.ndim else ()
            return da.from_array(a, chunks=chunks)

        return Backend(name, xp, "cpu", to_dask)
    if name == "cupy":
        cupy = need("cupy")
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # no driver / no device
            pytest.skip(f"cupy: no CUDA device ({exc})")
        if count == 0:
            pytest.skip("cupy: no CUDA device")
        import array_api_compat.cupy as xp

        dev = cupy.cuda.Device(int(device.split(":")[-1]) if device and ":" in device else 0)

        def to_cupy(a: np.ndarray) -> Any:
            with dev:
                return cupy.asarray(a)

        return Backend(name, xp, dev, to_cupy)
    raise ValueError(f"unknown backend {name!r}; choose from {BACKENDS}")


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> Backend:
    return _make_backend(request.config.getoption("--backend"), request.config.getoption("--device"))


@pytest.fixture(scope="session")
def xp(backend: Backend) -> Any:
    return backend.xp
