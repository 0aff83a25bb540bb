"""Convolution and pooling on channels-last images ``(n, height, width, channels)``, backward by hand.

Keras's default layout.  From PyTorch's ``(n, channels, height, width)``: ``xp.permute_dims(x, (0, 2, 3, 1))``.

The portable path uses the standard only.  A window position is an offset ``(i, j)`` of the kernel: the
input values it sees over all outputs are one strided slice of the padded input,
``xpad[:, i*d : i*d + s*(oh-1) + 1 : s, j*d : ... : s, :]``.  Forward stacks the ``kh*kw`` slices (im2col)
and multiplies once; backward multiplies once and adds each offset's share back where its slice came from
(col2im: array-api-extra's ``at(...).add`` on the same strided slices).  No data-dependent shape anywhere (Dask,
``jax.jit``).  ``padding="same"`` pads as Keras/TensorFlow do: the output has ``ceil(size / stride)`` rows,
the odd extra row of padding at the bottom (column at the right).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _xp, initializers, kernels
from ._typing import Array, Namespace
from .layers import Layer, ParametricLayer, _check_seed, weight_and_bias

__all__ = ["AvgPool2D", "Conv2D", "Flatten", "GlobalAvgPool2D", "MaxPool2D"]


def _pair(owner: str, name: str, value: Any) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, tuple | list) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1
                                 for v in pair):
        raise ValueError(f"{owner}: {name} must be a positive integer or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _compact(pair: tuple[int, int]) -> int | list[int]:
    """A pair as a model file and ``repr`` show it: one number when both are equal."""
    return pair[0] if pair[0] == pair[1] else list(pair)


def _padding(owner: str, padding: Any) -> str | tuple[int, int]:
    if padding in ("valid", "same"):
        return str(padding)
    if isinstance(padding, int | np.integer) and not isinstance(padding, bool) and padding >= 0:
        return int(padding), int(padding)
    if isinstance(padding, tuple | list) and len(padding) == 2 and all(
            isinstance(p, int | np.integer) and not isinstance(p, bool) and p >= 0 for p in padding):
        return int(padding[0]), int(padding[1])
    raise ValueError(f"{owner}: padding must be 'valid', 'same' or a non-negative integer (or a pair), "
                     f"got {padding!r}")


class Window:
    """The geometry of a sliding window along height and width: kernel, stride, dilation, padding."""

    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
                 padding: str | tuple[int, int]) -> None:
        self.kernel, self.stride, self.dilation, self.padding = kernel, stride, dilation, padding

    def pads(self, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((top, bottom), (left, right))`` for an input of ``h x w``."""
        out = []
        for size, k, s, d, axis in zip((h, w), self.kernel, self.stride, self.dilation, (0, 1), strict=True):
            if self.padding == "valid":
                out.append((0, 0))
            elif self.padding == "same":
                total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
                out.append((total // 2, total - total // 2))
            else:
                assert not isinstance(self.padding, str)
                p = self.padding[axis]
                out.append((p, p))
        return out[0], out[1]

    def output_shape(self, shape: tuple[int | None, ...], channels: int | None) -> tuple[int | None, ...]:
        """``(oh, ow, channels)`` for an image sample ``(h, w, c)`` (None where h or w is unknown)."""
        h, w = shape[0], shape[1]
        oh, ow = self.output_size(h, w) if h is not None and w is not None else (None, None)
        return oh, ow, channels if channels is not None else shape[2]

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        (t, b), (left, r) = self.pads(h, w)
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        return (h + t + b - dh * (kh - 1) - 1) // sh + 1, (w + left + r - dw * (kw - 1) - 1) // sw + 1

    def offset(self, k: int, oh: int, ow: int) -> tuple[slice, ...]:
        """The index of kernel offset ``k`` (row-major) in the padded input: what it sees for all outputs."""
        (i, j), (sh, sw), (dh, dw) = divmod(k, self.kernel[1]), self.stride, self.dilation
        return (slice(None), slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
                slice(j * dw, j * dw + sw * (ow - 1) + 1, sw), slice(None))

    def slices(self, xpad: Array, oh: int, ow: int) -> list[Array]:
        """Each kernel offset's view of the padded input, ``(n, oh, ow, c)``, offsets in row-major order."""
        return [xpad[self.offset(k, oh, ow)] for k in range(self.kernel[0] * self.kernel[1])]

    def scatter(self, xp: Namespace, parts: list[Array], hp: int, wp: int) -> Array:
        """col2im: the sum of each offset's ``(n, oh, ow, c)`` part added back where ``slices`` took it from, on
        the padded grid ``(n, hp, wp, c)`` (array-api-extra's ``at``: in place where the library allows, a
        functional update on JAX)."""
        first = parts[0]
        n, oh, ow, c = (int(v) for v in first.shape)
        total = xp.zeros((n, hp, wp, c), dtype=first.dtype, device=_xp.array_device(first))
        for k, part in enumerate(parts):  # a fresh array of ours: in place where the library allows
            total = kernels.add_at(total, self.offset(k, oh, ow), part)
        return total


def _pad(xp: Namespace, x: Array, pads: tuple[tuple[int, int], tuple[int, int]], value: float = 0.0) -> Array:
    """``x`` with ``value`` rows above and below, columns left and right: concatenated copies of a one-row
    (one-column) array of ``value``, so that no size but the padding's need be known (ndonnx's dynamic batch)."""
    (t, b), (left, r) = pads
    if t or b:
        row = xp.full_like(x[:, :1, ...], value)
        x = xp.concat([row] * t + [x] + [row] * b, axis=1)
    if left or r:
        column = xp.full_like(x[:, :, :1, :], value)
        x = xp.concat([column] * left + [x] + [column] * r, axis=2)
    return x


def _check_images(owner: str, x: Array, channels: int | None = None) -> None:
    if x.ndim != 4 or (channels is not None and x.shape[3] != channels):
        expected = f"(n, height, width, {channels})" if channels is not None else "(n, height, width, channels)"
        raise ValueError(f"{owner}.forward: expected channels-last images of shape {expected}, got "
                         f"{tuple(x.shape)} (from PyTorch's NCHW: permute_dims(x, (0, 2, 3, 1)))")


class Conv2D(ParametricLayer):
    """2-D convolution: ``output[n, y, x, o] = sum_{i, j, c} xpad[n, y*s + i*d, x*s + j*d, c] weight[i, j, c, o]
    + bias[o]``; backward ``dweight = patches.T @ dvalue``, ``dbias = sum(dvalue)``, ``dinput = col2im(dvalue @
    weight.T)``.

    ``weight``: ``(kh, kw, in_channels, out_channels)`` (Keras's layout); ``bias``: ``(1, out_channels)``.
    ``initializer`` as ``Dense``'s with ``fan_in = kh*kw*in_channels``, ``fan_out = kh*kw*out_channels``
    (default ``"he_uniform"``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], *,
                 stride: int | tuple[int, int] = 1, padding: Any = "valid", dilation: int | tuple[int, int] = 1,
                 seed: int | None = None, dtype: Any = "float32", initializer: str = "he_uniform",
                 weight_regularizer_l1: float = 0.0, weight_regularizer_l2: float = 0.0,
                 bias_regularizer_l1: float = 0.0, bias_regularizer_l2: float = 0.0) -> None:
        super().__init__()
        for name, size in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
                raise ValueError(f"Conv2D: {name} must be a positive integer, got {size!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.n_inputs, self.n_neurons = self.in_channels, self.out_channels  # the channels it takes and gives
        self.window = Window(_pair("Conv2D", "kernel_size", kernel_size), _pair("Conv2D", "stride", stride),
                             _pair("Conv2D", "dilation", dilation), _padding("Conv2D", padding))
        self.padding = padding if isinstance(padding, str) else self.window.padding
        if initializer not in initializers.INITIALIZERS:
            initializers.draw(str(initializer), 1, 1, np.random.default_rng(0), 0.0)  # the one-line error
        self.initializer, self.seed, self.dtype = initializer, _check_seed("Conv2D", seed), _xp.dtype_name(dtype)
        kh, kw = self.window.kernel
        rng = np.random.default_rng(self.seed)
        weight = initializers.draw(initializer, kh * kw * self.in_channels, kh * kw * self.out_channels, rng, 0.01,
                                   shape=(kh, kw, self.in_channels, self.out_channels))
        self.params = weight_and_bias("Conv2D", weight, self.dtype, (weight_regularizer_l1, weight_regularizer_l2,
                                                                     bias_regularizer_l1, bias_regularizer_l2))
        self.need_dinput = True
        self._placed = False

    def get_config(self) -> dict[str, Any]:
        p = self.params
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": _compact(self.window.kernel), "stride": _compact(self.window.stride),
                "padding": self.padding if isinstance(self.padding, str) else _compact(self.window.padding),  # type: ignore[arg-type]
                "dilation": _compact(self.window.dilation), "seed": self.seed, "dtype": self.dtype,
                "initializer": self.initializer, "weight_regularizer_l1": p["weight"].l1,
                "weight_regularizer_l2": p["weight"].l2, "bias_regularizer_l1": p["bias"].l1,
                "bias_regularizer_l2": p["bias"].l2}

    @classmethod
    def example(cls, seed: int) -> Layer:
        conv = cls(2, 3, 3, stride=2, padding="same", seed=seed, dtype="float64", weight_regularizer_l2=1e-3,
                   bias_regularizer_l1=1e-3)
        conv.bias = np.random.default_rng(seed).uniform(0.2, 1.0, size=(1, 3))
        return conv

    @classmethod
    def example_input(cls, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((2, 5, 6, 2))

    def feature_shape(self) -> tuple[int | None, ...] | None:
        return (None, None, self.in_channels)

    def output_shape(self, shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return self.window.output_shape(shape, self.out_channels)

    def check_input_shape(self, x: Array) -> None:
        _check_images("Conv2D", x, self.in_channels)

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        """``output = im2col(xpad) @ weight + bias``; the cache is what backward needs (the patches on the portable
        path) and the sizes."""
        xp = _xp.namespace(x)
        h, w = int(x.shape[1]), int(x.shape[2])
        oh, ow = self.window.output_size(h, w)
        if oh < 1 or ow < 1:
            raise ValueError(f"Conv2D.forward: a {h}x{w} input is smaller than the {self.window.kernel} kernel "
                             f"(dilation {self.window.dilation}) with padding {self.padding!r}")
        out, saved = kernels.conv_forward(xp, _pad(xp, x, self.window.pads(h, w)), arrays["weight"], self.window,
                                          oh, ow)
        out += arrays["bias"]  # (1, out_channels) broadcasts over (n, oh, ow, out_channels)
        return out, (saved, (x.shape[0], h, w, oh, ow))

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        """``dweight = patches.T @ dvalue``, ``dbias = sum(dvalue)``, ``dinput = col2im(dvalue @ weight.T)``."""
        saved, (n, h, w, oh, ow) = cache
        xp = _xp.namespace(dvalue)
        if tuple(dvalue.shape) != (n, oh, ow, self.out_channels):
            raise ValueError(f"Conv2D.backward: dvalue must have the output's shape (n, {oh}, {ow}, "
                             f"{self.out_channels}), got {tuple(dvalue.shape)}")
        (t, b), (left, r) = self.window.pads(h, w)
        dweight, dpad = kernels.conv_backward(xp, saved, dvalue, arrays["weight"], self.window, h + t + b,
                                              w + left + r, self.need_dinput)
        p = self.params
        grads = {"weight": p["weight"].regularized(dweight, arrays["weight"]),
                 "bias": p["bias"].regularized(kernels.column_sums(xp.reshape(dvalue, (-1, self.out_channels))),
                                               arrays["bias"])}
        return (None if dpad is None else dpad[:, t:t + h, left:left + w, :]), grads


class _Pool(Layer):
    """What MaxPool2D and AvgPool2D share: the window (``stride`` defaults to ``pool_size``)."""

    abstract = True

    def __init__(self, pool_size: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None = None,
                 padding: str = "valid") -> None:
        super().__init__()
        name = type(self).__name__
        if padding not in ("valid", "same"):
            raise ValueError(f"{name}: padding must be 'valid' or 'same', got {padding!r}")
        size = _pair(name, "pool_size", pool_size)
        self.pool_size, self.padding = size, padding
        self.stride = _pair(name, "stride", stride) if stride is not None else size
        self.window = Window(size, self.stride, (1, 1), padding)

    def get_config(self) -> dict[str, Any]:
        return {"pool_size": _compact(self.pool_size),
                "stride": None if self.stride == self.pool_size else _compact(self.stride), "padding": self.padding}

    def feature_shape(self) -> tuple[int | None, ...] | None:
        return (None, None, None)

    def output_shape(self, shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return self.window.output_shape(shape, None)

    @classmethod
    def example(cls, seed: int) -> Layer:
        return cls(2, stride=1 if cls is MaxPool2D else 2, padding="same")

    @classmethod
    def example_input(cls, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((2, 5, 4, 3))

    def _parts(self, x: Array, fill: float) -> tuple[list[Array], tuple[int, int, int, int]]:
        """Each window position's ``(n, oh, ow, c)`` slice of the input padded with ``fill``; ``(h, w, oh, ow)``."""
        _check_images(type(self).__name__, x)
        xp = _xp.namespace(x)
        h, w = int(x.shape[1]), int(x.shape[2])
        oh, ow = self.window.output_size(h, w)
        return self.window.slices(_pad(xp, x, self.window.pads(h, w), fill), oh, ow), (h, w, oh, ow)

    def _back(self, xp: Namespace, parts: list[Array], h: int, w: int) -> Array:
        """col2im of each window position's gradient ``(n, oh, ow, c)``, cropped to the input."""
        (t, b), (left, r) = self.window.pads(h, w)
        return self.window.scatter(xp, parts, h + t + b, w + left + r)[:, t:t + h, left:left + w, :]


class MaxPool2D(_Pool):
    """``output = max over each window``; backward: ``dvalue`` to the window's first maximum (PyTorch's rule for
    ties), zero elsewhere.  ``"same"`` pads with ``-inf`` (never the maximum).

    The window's positions are ``kh*kw`` strided slices of the input: the maximum is their elementwise
    maximum, and position ``k`` takes the gradient where it equals the maximum and no earlier position did.
    """

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        parts, (h, w, _, _) = self._parts(x, -math.inf)
        xp = _xp.namespace(x)
        out = parts[0]
        for part in parts[1:]:
            out = xp.maximum(out, part)
        return out, (parts, out, (h, w))  # the masks are made by backward: inference needs none

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        parts, out, (h, w) = cache
        xp = _xp.namespace(dvalue)
        shares, taken = [], None
        for part in parts:  # the first maximum of each window takes the gradient
            hit = part == out if taken is None else xp.logical_and(part == out, xp.logical_not(taken))
            taken = hit if taken is None else xp.logical_or(taken, hit)
            shares.append(xp.astype(hit, dvalue.dtype) * dvalue)
        return self._back(xp, shares, h, w), {}


class AvgPool2D(_Pool):
    """``output = mean over each window``, the padding of ``"same"`` not counted (Keras's rule); backward:
    ``dvalue / count`` to each position of the window."""

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        parts, (h, w, oh, ow) = self._parts(x, 0.0)
        xp = _xp.namespace(x)
        counts = self._counts(xp, x, h, w, oh, ow)
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total / counts, (counts, (h, w))

    def _counts(self, xp: Namespace, x: Array, h: int, w: int, oh: int, ow: int) -> Array:
        """How many input positions each window covers: ``(1, oh, ow, 1)``, in x's dtype and place."""
        ones = xp.ones((1, h, w, 1), dtype=x.dtype, device=_xp.array_device(x))
        total = None
        for part in self.window.slices(_pad(xp, ones, self.window.pads(h, w)), oh, ow):
            total = part if total is None else total + part
        assert total is not None
        return total

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        counts, (h, w) = cache
        xp = _xp.namespace(dvalue)
        share = dvalue / counts
        return self._back(xp, [share] * (self.pool_size[0] * self.pool_size[1]), h, w), {}


class GlobalAvgPool2D(Layer):
    """``output[n, c] = mean over height and width``; backward ``dinput = dvalue / (h*w)`` at every position."""

    def feature_shape(self) -> tuple[int | None, ...] | None:
        return (None, None, None)

    def output_shape(self, shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (shape[-1],)

    @classmethod
    def example_input(cls, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((2, 3, 4, 3))

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        _check_images("GlobalAvgPool2D", x)
        xp = _xp.namespace(x)
        return xp.mean(x, axis=(1, 2)), tuple(int(v) for v in x.shape)

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        n, h, w, c = cache
        xp = _xp.namespace(dvalue)
        return xp.broadcast_to(dvalue[:, None, None, :] / (h * w), (n, h, w, c)), {}


class Flatten(Layer):
    """``output = reshape(input, (n, -1))`` (row-major: height, width, channels); backward reshapes back."""

    reshapes = True  # the width after it depends on the image size: the chain check starts again

    def output_shape(self, shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (math.prod(shape),) if all(s is not None for s in shape) else (None,)  # type: ignore[arg-type]

    @classmethod
    def example_input(cls, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((2, 3, 2, 2))

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        xp = _xp.namespace(x)
        return xp.reshape(x, (int(x.shape[0]), -1)), tuple(int(v) for v in x.shape)

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        return _xp.namespace(dvalue).reshape(dvalue, cache), {}
