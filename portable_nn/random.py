"""One seedable random-number interface with native paths per backend.

``Generator(seed).uniform(xp, shape, dtype=..., device=...)`` draws U[0, 1)
directly on the array's library and device: NumPy ``Generator``, CuPy's
generator, a ``torch.Generator`` on the device, JAX keys split per draw,
Dask's generator.  Other namespaces (array-api-strict, unknown libraries)
draw on the host and convert -- they are host libraries already.

A generator is seeded once and keeps one native state per (library, device),
so a run is reproducible on a given backend; streams differ across backends.
"""

from __future__ import annotations

import importlib
from typing import Any

import array_api_compat
import numpy as np

__all__ = ["Generator"]


class Generator:
    """Seedable U[0, 1) source that stays on the caller's device."""

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        self.seed = int(seed)
        self._states: dict[Any, Any] = {}

    def _state(self, key: Any, make: Any) -> Any:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = make()
        return state

    def jax_key(self) -> Any:
        """The JAX key the next draw splits (a compiled step threads it through as an array)."""
        import jax

        return self._state("jax", lambda: [jax.random.key(self.seed)])[0]

    def continue_jax(self, key: Any) -> None:
        """Go on with the JAX stream from ``key`` (the key a compiled block handed back)."""
        self._states["jax"] = [key]

    def with_jax_key(self, key: Any) -> Generator:
        """A generator with this seed whose JAX stream continues from ``key`` (possibly traced)."""
        g = Generator(self.seed)
        g.continue_jax(key)
        return g

    def uniform(self, xp: Any, shape: tuple[int, ...], *, dtype: Any, device: Any) -> Any:
        """An array of U[0, 1) draws of ``shape`` in namespace ``xp`` on ``device``."""
        name = xp.__name__
        if array_api_compat.is_numpy_namespace(xp):
            rng = self._state("numpy", lambda: np.random.default_rng(self.seed))
            return rng.random(shape, dtype=np.dtype(dtype))
        if array_api_compat.is_torch_namespace(xp):
            import torch

            def make() -> Any:
                g = torch.Generator(device=device)
                g.manual_seed(self.seed)
                return g

            g = self._state(("torch", str(device)), make)
            return torch.rand(shape, generator=g, dtype=dtype, device=device)
        if array_api_compat.is_cupy_namespace(xp):
            import cupy

            dev = device if isinstance(device, cupy.cuda.Device) else cupy.cuda.Device(device)
            with dev:
                rng = self._state(("cupy", str(device)), lambda: cupy.random.default_rng(self.seed))
                return rng.random(shape, dtype=dtype)
        if array_api_compat.is_jax_namespace(xp):
            import jax

            key = self._state("jax", lambda: [jax.random.key(self.seed)])
            key[0], sub = jax.random.split(key[0])
            out = jax.random.uniform(sub, shape, dtype=dtype)
            return jax.device_put(out, device)
        if array_api_compat.is_dask_namespace(xp):
            da: Any = importlib.import_module("dask.array")
            rng = self._state("dask", lambda: da.random.default_rng(self.seed))
            return rng.random(shape, dtype=np.dtype(dtype))
        # Host libraries (array-api-strict and others): draw on the host, convert once.
        rng = self._state(("host", name), lambda: np.random.default_rng(self.seed))
        host = rng.random(shape, dtype=np.float64 if "64" in str(dtype) else np.float32)
        return xp.asarray(host, dtype=dtype, device=device)
