"""Test harness: one ``xp`` backend per run, chosen by ``--backend`` or $PORTABLE_NN_BACKEND.

Backends: numpy, array_api_strict, strictest (array-api-strict with boolean
indexing and data-dependent shapes off, newest API version), torch, jax
(x64 on), dask (chunked along the sample axis), cupy.  A backend that is not
installed -- or CuPy/CUDA without a device -- skips every test with the
reason, never errors.  ``--device`` picks the device (e.g. ``cuda``).
"""

from __future__ import annotations

import os

# scikit-learn's array API checks (run by tests/test_sklearn.py) need SciPy's
# array API mode, which is read once, when SciPy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from hypothesis import settings  # noqa: E402
import pytest  # noqa: E402
from array_api_compat import array_namespace, device  # noqa: E402

from portable_nn._xp import to_numpy  # noqa: E402
from portable_nn.backends import BACKENDS, Backend, BackendUnavailable, get_backend  # noqa: E402


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
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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

    def assert_close(self, actual: Any, desired: Any, *, rtol: float | None = None, atol: float = 0.0) -> None:
        """Namespace, shape and device of ``actual``, then values (dtype-aware rtol)."""
        assert array_namespace(actual) is self.xp, f"result is {type(actual)}, expected an array of {self.name}"
        assert device(actual) == self.device, f"device {device(actual)} != {self.device}"
        desired = np.asarray(desired)
        assert tuple(actual.shape) == desired.shape, f"shape {tuple(actual.shape)} != {desired.shape}"
        got = self.to_numpy(actual)
        if rtol is None:
            rtol = 1e-12 if got.dtype == np.float64 else 1e-5
        np.testing.assert_allclose(got, desired, rtol=rtol, atol=atol)


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
