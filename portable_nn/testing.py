"""A pytest plugin: run one test suite on one array backend, chosen on the command line.

Opt-in (an installed entry point would load into every pytest run in the environment, and its options could
clash with another project's own ``--backend``)::

    # conftest.py at your project's root
    pytest_plugins = ["portable_nn.testing"]

    # or, for one run
    pytest -p portable_nn.testing --backend torch

It gives:

* ``--backend`` (numpy, array_api_strict, strictest, torch, jax, dask, cupy; default ``$PORTABLE_NN_BACKEND``
  or numpy) and ``--device`` (e.g. ``cuda``; default ``$PORTABLE_NN_DEVICE`` or the library's default).
  A backend that is not installed -- or CuPy/CUDA without a device -- skips every test that uses it, with the
  reason, never an error;
* the fixtures ``backend`` (a :class:`BackendUnderTest`: ``.xp``, ``.device``, ``.asarray(numpy_array)``,
  ``.to_numpy(x)``, ``.assert_close(actual, desired)``) and ``xp`` (the namespace), both session-scoped;
* the markers ``@pytest.mark.skip_xp_backends("numpy", reason=...)`` and
  ``@pytest.mark.only_xp_backends("torch", device="cuda", reason=...)`` (SciPy's habit: a backend-specific
  test says so in a marker, not with ``if`` inside the test).

portable_nn's own suite runs on it (its root ``conftest.py``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from ._xp import to_numpy
from .backends import BACKENDS, Backend, BackendUnavailable, get_backend

__all__ = ["BackendUnderTest"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("portable_nn", "array backend (portable_nn.testing)")
    group.addoption(
        "--backend",
        default=os.environ.get("PORTABLE_NN_BACKEND", "numpy"),
        choices=BACKENDS,
        help="array library the tests run on (default: $PORTABLE_NN_BACKEND or numpy)",
    )
    group.addoption(
        "--device",
        default=os.environ.get("PORTABLE_NN_DEVICE"),
        help="device for the backend (e.g. cuda); default: $PORTABLE_NN_DEVICE or the library's default device",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "skip_xp_backends(*names, reason): skip on these backends")
    config.addinivalue_line("markers", "only_xp_backends(*names, reason, device=None): run on these backends only "
                                       "(and on that device type)")
    name = config.getoption("--backend")
    if name not in BACKENDS:  # argparse checks --backend's choices, not a default from the environment
        raise pytest.UsageError(f"PORTABLE_NN_BACKEND={name!r} is not a backend; choose from {', '.join(BACKENDS)}")
    if name == "jax":
        # float64 on from the start, for every test: not from whichever test first asks for the fixture
        with contextlib.suppress(BackendUnavailable):
            get_backend(name, config.getoption("--device"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    name, dev = config.getoption("--backend"), config.getoption("--device") or "cpu"
    for item in items:  # every marker says why, whichever backend is selected
        for marker in [*item.iter_markers("skip_xp_backends"), *item.iter_markers("only_xp_backends")]:
            _reason(marker)
    for item in items:
        for marker in item.iter_markers("skip_xp_backends"):
            if name in marker.args:
                item.add_marker(pytest.mark.skip(reason=f"{name}: {_reason(marker)}"))
        for marker in item.iter_markers("only_xp_backends"):
            wrong_device = marker.kwargs.get("device") not in (None, dev.split(":")[0])
            if name not in marker.args or wrong_device:
                item.add_marker(pytest.mark.skip(reason=f"{name} on {dev}: {_reason(marker)}"))


def _reason(marker: pytest.Mark) -> str:
    reason = marker.kwargs.get("reason")
    if not reason:
        raise pytest.UsageError(f"@pytest.mark.{marker.name}{marker.args} needs reason=: say why")
    return str(reason)


def pytest_report_header(config: pytest.Config) -> str:
    return f"portable_nn backend: {config.getoption('--backend')} device: {config.getoption('--device')}"


@dataclass
class BackendUnderTest:
    """The backend under test, with conversion and assertion helpers."""

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
        expected one; the default rtol follows the dtype (1e-12 for float64, 1e-5 otherwise).
        """
        import array_api_extra as xpx

        desired = np.asarray(desired)
        if rtol is None:
            rtol = 1e-12 if desired.dtype == np.float64 else 1e-5
        assert tuple(actual.shape) == desired.shape, f"shape {tuple(actual.shape)} != {desired.shape}"
        xpx.testing.assert_close(actual, self.asarray(desired), rtol=rtol, atol=atol, xp=self.xp)


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> BackendUnderTest:
    """The backend chosen by ``--backend``/``--device`` (skips, with the reason, when it is unavailable)."""
    try:
        b = get_backend(request.config.getoption("--backend"), request.config.getoption("--device"))
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    return BackendUnderTest(b.name, b.xp, b.device, b)


@pytest.fixture(scope="session")
def xp(backend: BackendUnderTest) -> Any:
    """The array namespace of the backend under test."""
    return backend.xp
