"""Weight initializers: seeded host draws in float64, cast to the layer's dtype (bit-identical on every backend).

``fan_in`` = the layer's inputs, ``fan_out`` = its neurons:

* ``"book"``: ``weight_scale * N(0, 1)`` (the book's ``0.01 * np.random.randn``; the default);
* ``"glorot_uniform"``: ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio, 2010);
* ``"glorot_normal"``: ``N(0, 2 / (fan_in + fan_out))`` (a plain normal, not truncated);
* ``"he_uniform"``: ``U(-a, a)``, ``a = sqrt(6 / fan_in)`` (He et al., 2015: keeps the variance through ReLU);
* ``"he_normal"``: ``N(0, 2 / fan_in)``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["INITIALIZERS", "draw"]

INITIALIZERS = ("book", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal")


def draw(name: str, fan_in: int, fan_out: int, rng: np.random.Generator, weight_scale: float,
         shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A float64 weight array drawn from ``rng``: ``(fan_in, fan_out)``, or ``shape`` (a convolution's kernel)."""
    shape = (fan_in, fan_out) if shape is None else shape
    if name == "book":
        return weight_scale * rng.standard_normal(shape)
    if name == "glorot_uniform":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=shape)
    if name == "glorot_normal":
        return math.sqrt(2.0 / (fan_in + fan_out)) * rng.standard_normal(shape)
    if name == "he_uniform":
        limit = math.sqrt(6.0 / fan_in)
        return rng.uniform(-limit, limit, size=shape)
    if name == "he_normal":
        return math.sqrt(2.0 / fan_in) * rng.standard_normal(shape)
    raise ValueError(f"Dense: initializer must be one of {', '.join(map(repr, INITIALIZERS))}, got {name!r}")
