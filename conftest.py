"""Test harness: the ``portable_nn.testing`` plugin (one ``xp`` backend per run, ``--backend``/``--device``,
the ``backend`` and ``xp`` fixtures, the ``skip_xp_backends``/``only_xp_backends`` markers) -- the same plugin
other projects use -- plus what is this suite's own: ``--run-slow`` and the Hypothesis profiles.

Backends: numpy, array_api_strict, strictest (array-api-strict with boolean
indexing and data-dependent shapes off, newest API version), torch, jax
(x64 on), dask (chunked along the sample axis), cupy.  A backend that is not
installed -- or CuPy/CUDA without a device -- skips every test with the
reason, never errors.

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

import pytest
from hypothesis import settings

pytest_plugins = ["portable_nn.testing"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


# Property tests: fewer examples on the backends whose every operation is slow
# to dispatch (a finite-difference check runs hundreds of small forwards).
settings.register_profile("portable_nn", max_examples=30, deadline=None)
settings.register_profile("portable_nn-slow", max_examples=8, deadline=None)


def pytest_configure(config: pytest.Config) -> None:
    slow = config.getoption("--backend") in ("jax", "dask")
    settings.load_profile("portable_nn-slow" if slow else "portable_nn")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(pytest.mark.skip(reason="slow: pass --run-slow"))
    # A test that asks for no backend (no ``backend``/``xp`` fixture) is the same on every backend: it runs
    # once, in the numpy session, not again in each of the others -- unless it names the backends it is for
    # (``only_xp_backends``: a test of a library the numpy session does not install).
    if config.getoption("--backend") != "numpy":
        unused = [item for item in items if not {"backend", "xp"} & set(getattr(item, "fixturenames", ()))
                  and item.get_closest_marker("only_xp_backends") is None]
        if unused:
            config.hook.pytest_deselected(items=unused)
            dropped = {id(item) for item in unused}
            items[:] = [item for item in items if id(item) not in dropped]
