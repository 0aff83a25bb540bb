"""Normalization layers: ``LayerNorm`` (over each sample's features) and ``BatchNorm`` (over a batch's samples).

Both normalize ``xhat = (x - mean) / sqrt(var + eps)`` and learn a scale and shift; their backward passes
are one function along different axes (``normalized_backward``).  BatchNorm's running statistics are
*buffers*: state that is not trained but saved, carried by compiled steps and moved with the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _xp
from ._typing import Array
from .layers import Layer, ParametricLayer
from .parameter import Parameter, grad_of, value_of

__all__ = ["BatchNorm", "LayerNorm", "normalized_backward"]


def normalized_backward(layer: Any, dvalue: Array, axis: int | None) -> Array:
    """``dinput`` of ``output = xhat * weight + bias``, with the parameters' gradients set on ``layer``.

    ``dbias = sum_n dvalue``, ``dweight = sum_n dvalue * xhat``; with ``g = dvalue * weight``: when the mean and
    variance were taken along ``axis`` of this very input, ``dinput = (g - mean g - xhat * mean(g * xhat)) /
    sqrt(var + eps)`` (means along ``axis``: every entry moved them); with fixed statistics (``axis=None``,
    BatchNorm's inference) ``dinput = g / sqrt(var + eps)``.
    """
    xp = _xp.namespace(dvalue)
    weight, bias = layer.params["weight"], layer.params["bias"]
    xhat = layer.xhat
    bias.grad = bias.regularized(xp.sum(dvalue, axis=0, keepdims=True))
    weight.grad = weight.regularized(xp.sum(dvalue * xhat, axis=0, keepdims=True))
    g = dvalue * weight.value
    if axis is None:
        return g * layer.inv_std
    n = max(int(dvalue.shape[axis]), 1)  # an empty batch (a data-parallel shard) has nothing to average
    mean_g = xp.sum(g, axis=axis, keepdims=True) / n
    mean_gx = xp.sum(g * xhat, axis=axis, keepdims=True) / n
    return (g - mean_g - xhat * mean_gx) * layer.inv_std


class _Normalization(ParametricLayer):
    """What LayerNorm and BatchNorm share: ``n_features``, ``epsilon``, a scale ``weight`` (ones) and a shift
    ``bias`` (zeros), ``output = xhat * weight + bias``, and the backward pass (``normalized_backward`` along
    ``_axis``, the axis the forward pass took its statistics along; None for fixed statistics)."""

    weight, bias = value_of("weight"), value_of("bias")
    dweight, dbias = grad_of("weight"), grad_of("bias")
    _axis: int | None = None

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
        self.xhat: Array = None
        self.inv_std: Array = None

    @classmethod
    def example(cls, seed: int) -> Layer:
        rng = np.random.default_rng(seed)
        layer = cls(4, dtype="float64")
        layer.weight = rng.uniform(0.5, 1.5, size=(1, 4))
        layer.bias = rng.uniform(-0.5, 0.5, size=(1, 4))
        return layer

    def _scale_and_shift(self, xp: Any, centered: Array, var: Array) -> Array:
        """``xhat = centered / sqrt(var + eps)``, then ``output = xhat * weight + bias`` (kept for backward)."""
        self.inv_std = 1.0 / xp.sqrt(var + self.epsilon)
        self.xhat = centered * self.inv_std
        self.output = self.xhat * self.weight + self.bias
        return self.output

    def backward(self, dvalue: Array) -> Array:
        self._need_forward()
        self.dinput = normalized_backward(self, dvalue, self._axis)
        return self.dinput


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

    def forward(self, x: Array) -> Array:
        x = self._checked_input(x, self.n_features)
        xp = _xp.namespace(x)
        self.input = x
        centered = x - xp.mean(x, axis=1, keepdims=True)
        return self._scale_and_shift(xp, centered, xp.mean(centered * centered, axis=1, keepdims=True))


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

    def forward(self, x: Array, training: bool = True) -> Array:
        x = self._checked_input(x, self.n_features)
        xp = _xp.namespace(x)
        self.input, self._axis = x, 0 if training else None  # batch statistics: along the samples
        if training:
            if x.shape[0] == 1:
                raise ValueError("BatchNorm.forward: training needs batches of more than one row (one row has "
                                 "variance 0 and normalizes to 0); choose a batch_size that leaves no one-row "
                                 "batch (nor one-row shards across ranks)")
            n = max(int(x.shape[0]), 1)  # an empty shard (data-parallel) normalizes nothing and changes nothing
            mean = xp.sum(x, axis=0, keepdims=True) / n
            centered = x - mean
            var = xp.sum(centered * centered, axis=0, keepdims=True) / n
            if x.shape[0]:
                m = self.momentum
                self.running_mean = m * self.running_mean + (1.0 - m) * mean
                self.running_var = m * self.running_var + (1.0 - m) * var
        else:
            centered, var = x - self.running_mean, self.running_var
        return self._scale_and_shift(xp, centered, var)
