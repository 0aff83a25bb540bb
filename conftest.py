"""Test harness: one ``xp`` backend per run, chosen by ``--backend`` or $PORTABLE_NN_BACKEND.

Backends: numpy, array_api_strict, strictest (array-api-strict with boolean
indexing and data-dependent shapes off, newest API version), torch, jax
(x64 on), dask (chunked along the sample axis), cupy.  A backend that is not
installed -- or CuPy/CUDA without a device -- skips every test with the
reason, never errors.  ``--device`` picks the device (e.g. ``cuda``).

Backend-specific tests say so with markers that the harness reads (SciPy's
habit), never with ``if backend.name == ...`` inside a test:

    @pytest.mark.skip_xp_backends("numpy", reason="needs a second library")
    @pytest.mark.only_xp_backends("torch", device="cuda", reason="sync debug mode is PyTorch CUDA's")
"""

from __future__ import annotations

import os

# scikit-learn's array API checks (run by tests/test_sklearn.py) need SciPy's
# array API mode, which is read once, when SciPy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

from dataclasses import dataclass
from typing import Any

import array_api_extra as xpx
import numpy as np
import pytest
from hypothesis import settings

from portable_nn._xp import to_numpy
from portable_nn.backends import BACKENDS, Backend, BackendUnavailable, get_backend


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


# Property tests: fewer examples on the backends whose every operation is slow
# to dispatch (a finite-difference check runs hundreds of small forwards).
settings.register_profile("portable_nn", max_examples=30, deadline=None)
settings.register_profile("portable_nn-slow", max_examples=8, deadline=None)


def pytest_configure(config: pytest.Config) -> None:
    slow = config.getoption("--backend") in ("jax", "dask")
    settings.load_profile("portable_nn-slow" if slow else "portable_nn")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    name, dev = config.getoption("--backend"), config.getoption("--device") or "cpu"
    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(pytest.mark.skip(reason="slow: pass --run-slow"))
        for marker in item.iter_markers("skip_xp_backends"):
            if name in marker.args:
                item.add_marker(pytest.mark.skip(reason=f"{name}: {marker.kwargs['reason']}"))
        for marker in item.iter_markers("only_xp_backends"):
            wrong_device = marker.kwargs.get("device") not in (None, dev.split(":")[0])
            if name not in marker.args or wrong_device:
                item.add_marker(pytest.mark.skip(reason=f"{name} on {dev}: {marker.kwargs['reason']}"))


def pytest_report_header(config: pytest.Config) -> str:
    return f"portable_nn backend: {config.getoption('--backend')} device: {config.getoption('--device')}"


@dataclass
class BackendUnderTest:
    """The backend under test, with the suite's conversion and assertion helpers."""

    name: str
    xp: Any
    device: Any
    _backend: Backend

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """A NumPy array (built on the host) converted once to this backend."""
        return self._backend.asarray(a, dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(to_numpy(x))

    @property
    def slow_dispatch(self) -> bool:
        """Every operation builds a graph or dispatches slowly (Dask): long runs get fewer epochs."""
        return self.name == "dask"

    def epochs(self, n: int) -> int:
        """``n`` epochs, or a sixth of them where every operation is slow to dispatch."""
        return max(20, n // 6) if self.slow_dispatch else n

    def assert_close(self, actual: Any, desired: Any, *, rtol: float | None = None, atol: float = 0.0) -> None:
        """array-api-extra's assertion: namespace, shape, dtype and device, then values.

        ``desired`` is a NumPy array (built on the host) whose dtype is the
        expected one; the default rtol follows the dtype.
        """
        desired = np.asarray(desired)
        if rtol is None:
            rtol = 1e-12 if desired.dtype == np.float64 else 1e-5
        assert tuple(actual.shape) == desired.shape, f"shape {tuple(actual.shape)} != {desired.shape}"
        xpx.testing.assert_close(actual, self.asarray(desired), rtol=rtol, atol=atol, xp=self.xp)


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> BackendUnderTest:
    try:
        b = get_backend(request.config.getoption("--backend"), request.config.getoption("--device"))
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    return BackendUnderTest(b.name, b.xp, b.device, b)


@pytest.fixture(scope="session")
def xp(backend: BackendUnderTest) -> Any:
    return backend.xp
