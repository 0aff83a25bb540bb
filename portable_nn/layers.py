"""Layers with parameters or state: ``Dense`` and ``Dropout``, and the ``Layer`` and ``ParametricLayer`` bases
(the normalization layers are in ``normalization.py``).

Each class keeps ``forward`` and ``backward`` side by side; the formula is in
the docstring.  Parameters are ``Parameter`` objects listed by
``parameters()``; the book's names (``weight``, ``dweight``,
``weight_momentum``, ...) are properties over them.  They are drawn on the
host from ``seed`` (bit-identical on every backend) and moved once, at the
first ``forward``, to the library and device of the input.

Every subclass is registered by name (``Layer.registry``): model files,
``check_all`` and the command line find a new layer without another edit.
"""

from __future__ import annotations

import copy
import numbers
from typing import Any, ClassVar

import numpy as np

from . import _xp, initializers, kernels, registries
from ._repr import config_repr
from ._typing import Array
from .parameter import Parameter, grad_of, regularizer_of, state_of, value_of
from .random import Generator

__all__ = ["Dense", "Dropout", "Layer", "ParametricLayer"]


class Layer:
    """Base of every layer and activation.

    **The pure core** (what training, compiling and data-parallel steps run): functions of explicit arrays
    that keep nothing between calls --

    * ``apply(arrays, x, *, training, noise) -> (output, cache)``: the forward pass; ``arrays`` is the
      layer's parameters and buffers by name (``layer.arrays()``), ``cache`` what ``vjp`` needs;
    * ``vjp(arrays, cache, dvalue) -> (dinput, grads)``: the backward pass, ``grads`` by parameter name
      (``dinput`` None where nothing consumes it: a first layer);
    * ``next_buffers(arrays, cache) -> {name: array}``: the buffers after a training forward pass
      (BatchNorm's running statistics; nothing for most layers).

    **The book's facade** over it: ``forward(x)`` stores ``input``, ``output`` and the cache on the layer,
    ``backward(dvalue)`` stores ``dinput`` and each parameter's gradient (``dweight``, ``dbias``).  A layer
    written the book's way (only ``forward``/``backward``) still works everywhere: its default ``apply``
    runs ``forward`` on a shallow copy, which becomes the cache.
    """

    registry: ClassVar[dict[str, type[Layer]]] = {}
    # Dropout-like layers take ``forward(x, training)``; the model passes it to those only.
    has_training_mode: ClassVar[bool] = False
    # State that is not trained but saved and carried with the parameters (BatchNorm's running statistics)
    buffer_names: ClassVar[tuple[str, ...]] = ()
    # The fewest rows a training batch may have (BatchNorm: 2); Model.train checks every batch before a step
    min_batch: ClassVar[int] = 1
    params: dict[str, Parameter]

    input: Array = None
    output: Array = None
    dinput: Array = None
    cache: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        registries.register(Layer.registry, cls, "layer")

    def __init__(self) -> None:
        self.params = {}

    def parameters(self) -> list[Parameter]:
        """The trainable parameters, in a fixed order (empty for activations)."""
        return list(self.__dict__.get("params", {}).values())

    def buffers(self) -> dict[str, Array]:
        """The non-trained state by name (empty for most layers): saved in files, carried by compiled steps."""
        return {name: getattr(self, name) for name in self.buffer_names}

    def arrays(self) -> dict[str, Array]:
        """The pure core's ``arrays``: each parameter's value, then each buffer, by name."""
        params = self.__dict__.get("params")
        out = {name: p._value for name, p in params.items()} if params else {}
        for name in self.buffer_names:
            out[name] = getattr(self, name)
        return out

    # -- the pure core ------------------------------------------------------------
    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        """The forward pass as a function: ``(output, cache)``.  Default: the book's ``forward`` on a shallow
        copy of the layer (for layers written with ``forward``/``backward`` only)."""
        if type(self).forward is Layer.forward:
            raise NotImplementedError(f"{type(self).__name__}: define apply/vjp (or forward/backward)")
        clone = copy.copy(self)
        return (clone.forward(x, training) if getattr(self, "has_training_mode", False) else clone.forward(x)), clone

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        """The backward pass as a function: ``(dinput, {parameter name: gradient})``, the gradients in the
        order of ``parameters()``.  Default: the book's ``backward`` on the copy that ``apply`` made."""
        dinput = cache.backward(dvalue)
        return dinput, {p.name: p.grad for p in getattr(cache, "parameters", list)()}

    def next_buffers(self, arrays: dict[str, Array], cache: Any) -> dict[str, Array]:
        """The buffers after a training forward pass (none change by default)."""
        return {}

    def conform(self, arrays: dict[str, Array], x: Array) -> Array:
        """The input checked for this layer (placement, width) and cast to its dtype: identity by default."""
        return x

    def noise(self, x: Array, training: bool, generator: Any = None) -> Array | None:
        """The random draw ``apply`` takes for input ``x`` (Dropout's U[0, 1)), from ``generator`` (default: the
        layer's own stream); None for layers that draw nothing."""
        return None

    # -- the book's facade ----------------------------------------------------------
    def forward(self, x: Array, training: bool = True) -> Array:
        """``output`` for ``x``; what ``backward`` needs is kept on the layer."""
        place = getattr(self, "place", None)
        if place is not None and not getattr(self, "_placed", True):
            place(x)  # host-held parameters (a seeded draw, a loaded file) go where the first input is
        arrays = self.arrays()
        x = self.conform(arrays, x)
        self.input = x
        self.output, self.cache = self.apply(arrays, x, training=training, noise=self.noise(x, training))
        if training and self.buffer_names:
            for name, value in self.next_buffers(arrays, self.cache).items():
                setattr(self, name, value)
        return self.output

    def backward(self, dvalue: Array) -> Array:
        """``dinput`` for ``dvalue`` (dL/d output); each parameter's gradient lands on it (``dweight``, ...)."""
        self._need_forward()
        self.dinput, grads = self.vjp(self.arrays(), self.cache, dvalue)
        for name, grad in grads.items():
            self.params[name].grad = grad
        return self.dinput

    def _need_forward(self) -> None:
        if self.input is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")

    def regularization_loss(self) -> Array | float:
        """Sum of the parameters' L1/L2 penalties (0-d array, or 0.0)."""
        total: Array | float = 0.0
        for p in self.parameters():
            total = total + p.regularization_loss()
        return total

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for saving the architecture as JSON."""
        return {}

    @classmethod
    def example(cls, seed: int) -> Layer:
        """An instance for ``check_all``'s gradient table (default: no arguments)."""
        return cls()

    def feature_shape(self) -> tuple[int | None, ...] | None:
        """The shape of one sample this layer takes (None: a dimension of any size), or None: any input."""
        return None

    def output_shape(self, shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """One output sample's shape for an input sample of ``shape`` (None: unknown); default: the same."""
        return shape

    @classmethod
    def example_input(cls, rng: np.random.Generator) -> np.ndarray:
        """An input for ``check_all``'s gradient table: float64 ``(6, 4)``, entries at least 0.1 from 0 (the
        ReLU kink stays out of each finite-difference step)."""
        x = rng.standard_normal((6, 4))
        return np.where(np.abs(x) < 0.1, 0.1 + np.abs(x), x)

    def __repr__(self) -> str:
        return config_repr(self)


def weight_and_bias(owner: str, weight: np.ndarray, dtype: str,
                    regularizers: tuple[float, float, float, float]) -> dict[str, Parameter]:
    """``{"weight": ..., "bias": zeros (1, n_out)}`` in ``dtype`` with the layer's L1/L2 factors (weight l1, l2,
    bias l1, l2), each checked: Dense's and Conv2D's parameters."""
    wl1, wl2, bl1, bl2 = (_check_factor(f"{owner}: {kind}_regularizer_{norm}", value)
                          for (kind, norm), value in zip((("weight", "l1"), ("weight", "l2"), ("bias", "l1"),
                                                          ("bias", "l2")), regularizers, strict=True))
    return {"weight": Parameter("weight", weight.astype(dtype), dtype, l1=wl1, l2=wl2),
            "bias": Parameter("bias", np.zeros((1, weight.shape[-1]), dtype=dtype), dtype, l1=bl1, l2=bl2)}


def _check_seed(owner: str, seed: Any) -> int | None:
    """``seed`` as a Python int (saved as JSON), or None."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{owner}: seed must be an integer >= 0 or None, got {seed!r}")
    return int(seed)


def _check_factor(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


class ParametricLayer(Layer):
    """A layer with parameters: held on the host from construction until the first forward places them."""

    abstract: ClassVar[bool] = True  # a base: not in the registry of classes a file may name

    dtype: str
    n_inputs: int
    _placed: bool = False
    # the book's names, over the parameters every layer of this kind has
    weight, bias = value_of("weight"), value_of("bias")
    dweight, dbias = grad_of("weight"), grad_of("bias")
    weight_momentum, weight_cache = state_of("weight", "momentum"), state_of("weight", "cache")
    bias_momentum, bias_cache = state_of("bias", "momentum"), state_of("bias", "cache")

    def conform(self, arrays: dict[str, Array], x: Array) -> Array:
        """The forward pass's input: the same library and device as each of ``arrays``, shape
        ``(n_samples, n_inputs)``, cast to the layer's dtype (autocast)."""
        for value in arrays.values():
            if type(x) is not np.ndarray or type(value) is not np.ndarray:  # NumPy: one device, nothing to ask
                self.check_places(arrays, x)
                break
        self.check_input_shape(x)
        dtype = arrays["weight"].dtype
        if x.dtype != dtype:
            xp = _xp.namespace(x)
            _xp.check_floating(xp, x, f"{type(self).__name__}.forward input")
            x = xp.astype(x, dtype)
        return x

    def check_places(self, arrays: dict[str, Array], x: Array) -> None:
        """A ``TypeError`` naming the layer and the array when ``x`` and one of ``arrays`` differ in library or
        device."""
        name = f"{type(self).__name__}.forward"
        for i, (key, value) in enumerate(arrays.items()):
            if key in self.buffer_names:
                _xp.check_same_place(x, value, f"{name} ({key})", held=f"its {key} is")
            else:
                _xp.check_same_place(x, value, name if i == 0 else f"{name} ({key})")

    def feature_shape(self) -> tuple[int | None, ...] | None:
        return (self.n_inputs,)

    def output_shape(self, shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*shape[:-1], getattr(self, "n_neurons", self.n_inputs))

    def check_input_shape(self, x: Array) -> None:
        """``(n_samples, n_inputs)``, else a ``ValueError`` naming the layer and both shapes."""
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"{type(self).__name__}.forward: expected input of shape (n_samples, {self.n_inputs}), "
                             f"got {tuple(x.shape)}")

    def place(self, like: Array) -> None:
        """Move host-held parameters and state (a seeded draw, a loaded file) to ``like``'s library and device.

        Arrays a user assigned in another library stay as they are (a
        mismatch is then reported by ``forward``).
        """
        xp, dev = _xp.namespace(like), _xp.array_device(like)
        for p in self.parameters():
            p.place(xp, dev)
        for name, value in self.buffers().items():
            if _xp.is_numpy_array(value):
                setattr(self, name, _xp.move(value, xp, dev, _xp.float_dtype(xp, self.dtype)))
        self._placed = True

    def move_buffers(self, xp: Any, device: Any) -> None:
        """Move the non-trained state to ``xp`` on ``device`` (``Network.to``)."""
        for name, value in self.buffers().items():
            setattr(self, name, _xp.move(value, xp, device))

    def to_dtype(self, dtype: Any) -> None:
        """Compute in ``dtype`` from now on: parameters, optimizer state and buffers are cast."""
        self.dtype = _xp.dtype_name(dtype)
        for p in self.parameters():
            p.to_dtype(self.dtype)
        for name, value in self.buffers().items():
            xp = _xp.namespace(value)
            setattr(self, name, xp.astype(value, _xp.float_dtype(xp, self.dtype)))


class Dense(ParametricLayer):
    """Fully connected layer: ``output = input @ weight + bias``.

    Backward: ``dweight = input.T @ dvalue``, ``dbias = sum(dvalue, axis=0)``,
    ``dinput = dvalue @ weight.T`` (plus ``l1*sign(w) + 2*l2*w`` on the
    parameter gradients when regularized).  The layer computes in its own
    ``dtype``: inputs and assigned arrays of another precision are cast to it.
    """

    weight_regularizer_l1, weight_regularizer_l2 = regularizer_of("weight", "l1"), regularizer_of("weight", "l2")
    bias_regularizer_l1, bias_regularizer_l2 = regularizer_of("bias", "l1"), regularizer_of("bias", "l2")

    def __init__(
        self,
        n_inputs: int,
        n_neurons: int,
        *,
        weight_scale: float = 0.01,
        seed: int | None = None,
        dtype: Any = "float32",
        initializer: str = "book",
        weight_regularizer_l1: float = 0.0,
        weight_regularizer_l2: float = 0.0,
        bias_regularizer_l1: float = 0.0,
        bias_regularizer_l2: float = 0.0,
    ) -> None:
        super().__init__()
        for name, size in (("n_inputs", n_inputs), ("n_neurons", n_neurons)):
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
                raise ValueError(f"Dense: {name} must be a positive integer, got {size!r}")
        self.n_inputs, self.n_neurons = int(n_inputs), int(n_neurons)
        if initializer not in initializers.INITIALIZERS:
            initializers.draw(str(initializer), 1, 1, np.random.default_rng(0), 0.0)  # the one-line error
        if weight_scale != 0.01 and initializer != "book":
            raise ValueError(f"Dense: weight_scale scales the 'book' initializer only, not {initializer!r}")
        self.initializer = initializer
        self.weight_scale = _check_factor("Dense: weight_scale", weight_scale)
        self.seed = _check_seed("Dense", seed)
        self.dtype = _xp.dtype_name(dtype)
        # Host draw in float64, then cast: the same seed gives the same bits everywhere.
        rng = np.random.default_rng(self.seed)
        with np.errstate(over="ignore"):
            drawn = initializers.draw(initializer, self.n_inputs, self.n_neurons, rng, self.weight_scale)
            weight = drawn.astype(self.dtype)
        if not np.all(np.isfinite(weight)):
            raise ValueError(f"Dense: weight_scale={self.weight_scale!r} gives infinite {self.dtype} weights")
        self.params = weight_and_bias("Dense", weight, self.dtype, (weight_regularizer_l1, weight_regularizer_l2,
                                                                    bias_regularizer_l1, bias_regularizer_l2))
        # The model turns this off for a first layer: nothing consumes its dL/dX.
        self.need_dinput = True
        self._placed = False

    def get_config(self) -> dict[str, Any]:
        return {
            "n_inputs": self.n_inputs,
            "n_neurons": self.n_neurons,
            "weight_scale": self.weight_scale,
            "seed": self.seed,
            "dtype": self.dtype,
            "initializer": self.initializer,
            "weight_regularizer_l1": self.weight_regularizer_l1,
            "weight_regularizer_l2": self.weight_regularizer_l2,
            "bias_regularizer_l1": self.bias_regularizer_l1,
            "bias_regularizer_l2": self.bias_regularizer_l2,
        }

    @classmethod
    def example(cls, seed: int) -> Layer:
        rng = np.random.default_rng(seed)
        dense = cls(4, 3, seed=seed, dtype="float64", weight_scale=1.0,
                    weight_regularizer_l1=1e-3, weight_regularizer_l2=1e-3,
                    bias_regularizer_l1=1e-3, bias_regularizer_l2=1e-3)
        dense.bias = rng.uniform(0.2, 1.0, size=(1, 3))
        return dense

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        """``output = input @ weight + bias``; the cache is the input."""
        out = x @ arrays["weight"]
        out += arrays["bias"]  # a fresh array of ours: in place where the library allows, else rebound (JAX)
        return out, x

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        """``dweight = input.T @ dvalue``, ``dbias = sum(dvalue, axis=0)``, ``dinput = dvalue @ weight.T``."""
        x, weight, bias = cache, arrays["weight"], arrays["bias"]
        if tuple(dvalue.shape) != (x.shape[0], self.n_neurons):
            raise ValueError(f"Dense.backward: dvalue must have the output's shape {(x.shape[0], self.n_neurons)}, "
                             f"got {tuple(dvalue.shape)}")
        p = self.params
        grads = {"weight": p["weight"].regularized(x.T @ dvalue, weight),
                 "bias": p["bias"].regularized(kernels.column_sums(dvalue), bias)}
        return (dvalue @ weight.T if self.need_dinput else None), grads


class Dropout(Layer):
    """Inverted dropout: ``output = input * mask``, ``mask = (u >= rate) / (1 - rate)``.

    Backward: ``dinput = dvalue * mask`` (the same mask).  Identity when
    ``training=False``.  The mask is drawn on the input's library and device.
    """

    has_training_mode = True

    def __init__(self, rate: float, *, seed: int | None = None) -> None:
        super().__init__()
        rate = float(rate)
        if not (0.0 <= rate < 1.0):
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate!r}")
        self.rate = rate
        self.seed = _check_seed("Dropout", seed)
        self.generator = Generator(self.seed)

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate, "seed": self.seed}

    @classmethod
    def example(cls, seed: int) -> Layer:
        return cls(0.3, seed=seed)

    def noise(self, x: Array, training: bool, generator: Any = None) -> Array | None:
        """U[0, 1) of ``x``'s shape from ``generator`` (default: the layer's own stream); None when the layer
        is the identity."""
        if not training or self.rate == 0.0:
            return None
        xp = _xp.namespace(x)
        _xp.check_floating(xp, x, "Dropout.forward input")
        return (generator or self.generator).uniform(xp, tuple(x.shape), dtype=x.dtype, device=_xp.array_device(x))

    def apply(self, arrays: dict[str, Array], x: Array, *, training: bool = False,
              noise: Array | None = None) -> tuple[Array, Any]:
        """``output = input * mask`` with ``mask = (noise >= rate) / (1 - rate)``; the cache is the mask."""
        if not training or noise is None:
            return x, None
        mask = _xp.namespace(x).astype(noise >= self.rate, x.dtype) / (1.0 - self.rate)
        return x * mask, mask

    def vjp(self, arrays: dict[str, Array], cache: Any, dvalue: Array) -> tuple[Array | None, dict[str, Array]]:
        """``dinput = dvalue * mask``."""
        return (dvalue if cache is None else dvalue * cache), {}

    @property
    def mask(self) -> Array:
        """The mask of the last ``forward`` (None when it was the identity)."""
        return self.cache
