"""Normalization layers: ``LayerNorm`` (over each sample's features) and ``BatchNorm`` (over a batch's samples).

Both normalize ``xhat = (x - mean) / sqrt(var + eps)`` and learn a scale and shift; their backward passes
are one function along different axes (``normalized_backward``).  BatchNorm's running statistics are
*buffers*: state that is not trained but saved, carried by compiled steps and moved with the model.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from . import _xp
from ._typing import Array
from .layers import Layer, ParametricLayer
from .parameter import Parameter

__all__ = ["BatchNorm", "LayerNorm", "normalized_backward"]


def normalized_backward(layer: Any, arrays: dict[str, Array], cache: Any, dvalue: Array,
                        axis: int | None) -> tuple[Array, dict[str, Array]]:
    """``(dinput, grads)`` of ``output = xhat * weight + bias``; ``cache`` is ``(xhat, 1 / sqrt(var + eps))``.

    ``dbias = sum_n dvalue``, ``dweight = sum_n dvalue * xhat``; with ``g = dvalue * weight``: when the mean and
    variance were taken along ``axis`` of this very input, ``dinput = (g - mean g - xhat * mean(g * xhat)) /
    sqrt(var + eps)`` (means along ``axis``: every entry moved them); with fixed statistics (``axis=None``,
    BatchNorm's inference) ``dinput = g / sqrt(var + eps)``.
    """
    xp = _xp.namespace(dvalue)
    xhat, inv_std = cache
    weight, bias = arrays["weight"], arrays["bias"]
    grads = {"weight": layer.params["weight"].regularized(xp.sum(dvalue * xhat, axis=0, keepdims=True), weight),
             "bias": layer.params["bias"].regularized(xp.sum(dvalue, axis=0, keepdims=True), bias)}
    g = dvalue * weight
    if axis is None:
        return g * inv_std, grads
    n = max(int(dvalue.shape[axis]), 1)  # an empty batch (a data-parallel shard) has nothing to average
    mean_g = xp.sum(g, axis=axis, keepdims=True) / n
    mean_gx = xp.sum(g * xhat, axis=axis, keepdims=True) / n
    return (g - mean_g - xhat * mean_gx) * inv_std, grads


class _Normalization(ParametricLayer):
    """What LayerNorm and BatchNorm share: ``n_features``, ``epsilon``, a scale ``weight`` (ones) and a shift
    ``bias`` (zeros), ``output = xhat * weight + bias``, and the backward pass (``normalized_backward`` along
    the axis the forward pass took its statistics along; None for fixed statistics)."""


    def __init__(self, n_features: int, *, epsilon: float = 1e-5, dtype: Any = "float32") -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)) or n_features <= 0:
            raise ValueError(f"{name}: n_features must be a positive integer, got {n_features!r}")
        epsilon = float(epsilon)
        if not np.isfinite(epsilon) or epsilon <= 0:
            raise ValueError(f"{name}: epsilon must be a finite number > 0, got {epsilon!r}")
        self.n_features, self.epsilon = int(n_features), epsilon
        self.n_inputs = self.n_neurons = self.n_features  # the width it keeps (summary, checks)
        self.dtype = _xp.dtype_name(dtype)
        self.params = {
            "weight": Parameter("weight", np.ones((1, self.n_features), dtype=self.dtype), self.dtype),
            "bias": Parameter("bias", np.zeros((1, self.n_features), dtype=self.dtype), self.dtype),
        }
        self._placed = False

    @classmethod
    def example(cls, seed: int) -> Layer:
        rng = np.random.default_rng(seed)
        layer = cls(4, dtype="float64")
        layer.weight = rng.uniform(0.5, 1.5, size=(1, 4))
        layer.bias = rng.uniform(-0.5, 0.5, size=(1, 4))
        return layer

    def _scale_and_shift(self, xp: Any, arrays: dict[str, Array], centered: Array, var: Array,
                         axis: int | None) -> tuple[Array, Any]:
        """``xhat = centered / sqrt(var + eps)``, ``output = xhat * weight + bias``; the cache for ``vjp``."""
        inv_std = 1.0 / xp.sqrt(var + self.epsilon)
        xhat = centered * inv_std
        return xhat * arrays["weight"] + arrays["bias"], (xhat, inv_std, axis)

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        xhat, inv_std, axis = cache
        return normalized_backward(self, arrays, (xhat, inv_std), dvalue, axis)

    @property
    def xhat(self) -> Array:
        """The normalized input of the last ``forward``."""
        return None if self.cache is None else self.cache[0]


class LayerNorm(_Normalization):
    """Layer normalization over the features of each sample, then a learned scale and shift.

    ``xhat = (x - mean) / sqrt(var + eps)`` (per row), ``output = xhat * weight + bias``.
    Backward: ``dbias = sum_n dvalue``, ``dweight = sum_n dvalue * xhat``; with ``g = dvalue * weight``,
    ``dinput = (g - mean_j g - xhat * mean_j(g * xhat)) / sqrt(var + eps)`` -- the mean and the variance
    depend on every feature of the row, hence the two subtracted means.
    """

    _axis = 1  # the statistics of each row: its features

    def get_config(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "epsilon": self.epsilon, "dtype": self.dtype}

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        xp = _xp.namespace(x)
        centered = x - xp.mean(x, axis=1, keepdims=True)
        return self._scale_and_shift(xp, arrays, centered, xp.mean(centered * centered, axis=1, keepdims=True), 1)


class _Buffer:
    """A layer's non-trained array (``layer.running_mean``): assigned arrays take the layer's dtype (as a
    parameter's do); it is stored by rebinding, never written in place, so a snapshot can hold a reference."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.slot = name, "_" + name

    def __get__(self, layer: Any, owner: type | None = None) -> Any:
        if layer is None:
            return self
        return layer.__dict__[self.slot]

    def __set__(self, layer: Any, value: Any) -> None:
        if isinstance(value, (list, tuple, float, int)):
            value = np.asarray(value, dtype=layer.dtype)
        if not _xp.array_api_compat.is_array_api_obj(value):
            raise TypeError(f"{type(layer).__name__}.{self.name} must be an array, got {type(value).__name__}")
        xp = _xp.namespace(value)
        if not xp.isdtype(value.dtype, "real floating"):
            raise TypeError(f"{type(layer).__name__}.{self.name} must be a floating array, got {value.dtype}")
        expected = (1, layer.n_features)
        if tuple(value.shape) != expected:
            raise ValueError(f"{type(layer).__name__}.{self.name} must have shape {expected}, got "
                             f"{tuple(value.shape)}")
        dtype = _xp.float_dtype(xp, layer.dtype)
        layer.__dict__[self.slot] = value if value.dtype == dtype else xp.astype(value, dtype)


class BatchNorm(_Normalization):
    """Batch normalization: each feature normalized over the batch's samples, then a learned scale and shift.

    Training: ``xhat = (x - mean_n x) / sqrt(var_n x + eps)``, ``output = xhat * weight + bias``, and the running
    statistics follow ``running = momentum * running + (1 - momentum) * batch`` (Keras's convention: PyTorch's
    ``momentum`` is one minus this; the variance is the biased one, as Keras keeps it).  Inference: the running
    statistics stand in for the batch's, so a prediction does not depend on its batch.
    Backward (training): LayerNorm's along the other axis -- every sample's output depends on the whole batch
    through its mean and variance: with ``g = dvalue * weight``,
    ``dinput = (g - mean_n g - xhat * mean_n(g * xhat)) / sqrt(var + eps)``; ``dweight = sum_n dvalue * xhat``,
    ``dbias = sum_n dvalue``.  (Inference: ``dinput = g / sqrt(running_var + eps)``.)
    """

    has_training_mode = True
    min_batch: ClassVar[int] = 2  # one row has variance 0: Model.train refuses such batches before any step
    buffer_names = ("running_mean", "running_var")
    running_mean, running_var = _Buffer(), _Buffer()

    def __init__(self, n_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5,
                 dtype: Any = "float32") -> None:
        super().__init__(n_features, epsilon=epsilon, dtype=dtype)
        momentum = float(momentum)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"BatchNorm: momentum must be in [0, 1) (the weight of the running value; "
                             f"Keras's convention), got {momentum!r}")
        self.momentum = momentum
        self.running_mean = np.zeros((1, self.n_features), dtype=self.dtype)
        self.running_var = np.ones((1, self.n_features), dtype=self.dtype)

    def get_config(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "momentum": self.momentum, "epsilon": self.epsilon,
                "dtype": self.dtype}

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        """Training: the batch's statistics (along the samples); inference: the running ones."""
        xp = _xp.namespace(x)
        if not training:
            return self._scale_and_shift(xp, arrays, x - arrays["running_mean"], arrays["running_var"], None)
        if x.shape[0] == 1:
            raise ValueError("BatchNorm.forward: training needs batches of more than one row (one row has "
                             "variance 0 and normalizes to 0); choose a batch_size that leaves no one-row "
                             "batch (nor one-row shards across ranks)")
        n = max(int(x.shape[0]), 1)  # an empty shard (data-parallel) normalizes nothing and changes nothing
        mean = xp.sum(x, axis=0, keepdims=True) / n
        centered = x - mean
        var = xp.sum(centered * centered, axis=0, keepdims=True) / n
        y, (xhat, inv_std, axis) = self._scale_and_shift(xp, arrays, centered, var, 0)
        return y, (xhat, inv_std, axis, mean, var, int(x.shape[0]))

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        return normalized_backward(self, arrays, cache[:2], dvalue, cache[2])

    def next_buffers(self, arrays: dict[str, Array], cache: Any) -> dict[str, Array]:
        """``running = momentum * running + (1 - momentum) * batch`` (unchanged after an empty shard)."""
        if len(cache) < 6 or not cache[5]:
            return {}
        mean, var, m = cache[3], cache[4], self.momentum
        return {"running_mean": m * arrays["running_mean"] + (1.0 - m) * mean,
                "running_var": m * arrays["running_var"] + (1.0 - m) * var}
