"""``Network``: the layer stack -- forward, backward, parameters, placement.

The model composes one; the training step runs through it (``upto=-1``
stops before a last layer that the loss fuses with, see ``losses.fused_loss``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from . import _xp
from ._typing import Array
from .layers import Layer
from .parameter import Parameter

__all__ = ["Network"]


class Network:
    """An ordered list of layers with their parameters."""

    def __init__(self, layers: list[Any]) -> None:
        self.layers = layers  # the model's own list: add() appends to it
        self.skip_first_dinput()

    @property
    def trainable(self) -> list[Any]:
        """Layers with parameters, in order."""
        return [layer for layer in self.layers if _parameters(layer)]

    def parameters(self) -> list[Parameter]:
        """Every parameter of every layer, in order."""
        return [p for layer in self.layers for p in _parameters(layer)]

    def buffers(self) -> list[tuple[Any, str]]:
        """Every layer's non-trained state (BatchNorm's running statistics) as ``(layer, name)``, in order."""
        return [(layer, name) for layer in self.layers for name in getattr(layer, "buffer_names", ())]

    def buffer_values(self, pairs: list[tuple[Any, str]] | None = None) -> list[Array]:
        """The buffers' current arrays, of ``pairs`` (``buffers()``, which a caller may keep) or of every layer."""
        return [getattr(layer, name) for layer, name in (self.buffers() if pairs is None else pairs)]

    def set_buffer_values(self, values: list[Array]) -> None:
        for (layer, name), value in zip(self.buffers(), values, strict=True):
            setattr(layer, name, value)

    def n_outputs(self) -> int | None:
        """The output width: ``n_neurons`` of the last layer that has one."""
        for layer in reversed(self.layers):
            width = getattr(layer, "n_neurons", None)
            if width is not None:
                return int(width)
        return None

    def dtype(self) -> str | None:
        """The dtype name of the first parameter (what targets are cast to), or None."""
        params = self.parameters()
        return params[0].dtype if params else None

    def n_inputs(self) -> int | None:
        """The input width: ``n_inputs`` of the first layer that has one, where samples are vectors."""
        shape = self.input_shape()
        return shape[0] if shape is not None and len(shape) == 1 else None

    def input_shape(self) -> tuple[int | None, ...] | None:
        """The shape of one input sample, from the first layer that says (None: a dimension of any size)."""
        for layer in self.layers:
            shape = layer.feature_shape() if hasattr(layer, "feature_shape") else (
                (int(layer.n_inputs),) if getattr(layer, "n_inputs", None) is not None else None)
            if shape is not None:
                return shape
        return None

    def check_chain(self) -> None:
        """Each sized layer takes the previous one's width, and the last one has ``predictions`` (``ValueError``)."""
        width, previous = None, ""
        for i, layer in enumerate(self.layers):
            n_in, n_out = getattr(layer, "n_inputs", None), getattr(layer, "n_neurons", None)
            if getattr(layer, "reshapes", False):
                width = None  # Flatten: the next width depends on the input's size
            if n_in is None or n_out is None:
                continue
            if width is not None and n_in != width:
                raise ValueError(
                    f"Model.finalize: layer {i} ({type(layer).__name__}) expects {n_in} inputs "
                    f"but the previous {previous} layer has {width} neurons"
                )
            width, previous = n_out, type(layer).__name__
        if self.layers and not hasattr(self.layers[-1], "predictions"):
            raise ValueError(f"Model.finalize: the last layer ({type(self.layers[-1]).__name__}) has no "
                             "predictions(); end the model with an activation (Softmax, Sigmoid, Linear, ...)")

    def skip_first_dinput(self) -> None:
        """Nothing consumes dL/dX of the model's input: the first layers skip computing it."""
        first = True
        for layer in self.layers:
            if hasattr(layer, "need_dinput"):
                layer.need_dinput = not first
            if _parameters(layer):
                first = False

    # -- the pure core: the stack as functions of explicit arrays ----------------------
    def arrays(self, params: list[Array] | None = None, buffers: list[Array] | None = None) -> list[dict[str, Array]]:
        """Per layer, its arrays by name (``Layer.arrays``): the layers' own, or from flat lists in
        ``parameters()`` and ``buffers()`` order (what a pure step is given)."""
        if params is None and buffers is None:
            return [_arrays(layer) for layer in self.layers]
        values, extra = iter(params if params is not None else [p.value for p in self.parameters()]), \
            iter(buffers if buffers is not None else self.buffer_values())
        return [{**{p.name: next(values) for p in _parameters(layer)},
                 **{name: next(extra) for name in getattr(layer, "buffer_names", ())}} for layer in self.layers]

    def apply(self, arrays: list[dict[str, Array]], x: Array, *, training: bool,
              draw: Callable[[Any, Array], Array | None] | None = None,
              upto: int | None = None) -> tuple[Array, list[Any]]:
        """``layers[:upto]`` forward as a function: ``(output, caches)``.  ``draw(layer, x)`` gives each layer's
        random input (default: the layer's own stream, ``layer.noise``)."""
        caches = []
        for layer, a in zip(self.layers[:upto], arrays, strict=False):
            if not isinstance(layer, Layer):  # duck-typed: the book's forward on a copy
                layer = Layer.apply.__get__(layer)  # noqa: PLW2901
                x, cache = layer(a, x, training=training)
            else:
                x = layer.conform(a, x)
                noise = (draw(layer, x) if draw is not None else layer.noise(x, training)) if training else None
                x, cache = layer.apply(a, x, training=training, noise=noise)
            caches.append(cache)
        return x, caches

    def vjp(self, arrays: list[dict[str, Array]], caches: list[Any], dvalue: Array) -> list[Array]:
        """Backpropagate ``dvalue`` through the layers ``apply`` ran, in reverse: the gradients in
        ``parameters()`` order."""
        by_layer: list[dict[str, Array]] = [{} for _ in caches]
        for i in range(len(caches) - 1, -1, -1):
            layer = self.layers[i]
            vjp = layer.vjp if isinstance(layer, Layer) else Layer.vjp.__get__(layer)
            dvalue, by_layer[i] = vjp(arrays[i], caches[i], dvalue)
            if dvalue is None:  # a first layer skipped the unused dL/dX
                break
        return [grad for grads in by_layer for grad in grads.values()]  # each layer's in parameters() order

    def next_buffers(self, arrays: list[dict[str, Array]], caches: list[Any]) -> list[Array]:
        """The buffers after a training forward pass, in ``buffers()`` order."""
        out: list[Array] = []
        for layer, a, cache in zip(self.layers, arrays, caches, strict=False):
            names = getattr(layer, "buffer_names", ())
            if not names:
                continue
            new = layer.next_buffers(a, cache) if isinstance(layer, Layer) else {}
            out.extend(new.get(name, a[name]) for name in names)
        return out

    # -- the book's facade --------------------------------------------------------------
    def forward(self, x: Array, training: bool = False, upto: int | None = None) -> Array:
        """The output of ``layers[:upto]`` (all layers by default), kept on each layer for ``backward``."""
        for layer in self.layers[:upto]:
            x = layer.forward(x, training) if getattr(layer, "has_training_mode", False) else layer.forward(x)
        return x

    def infer(self, x: Array, upto: int | None = None, arrays: list[dict[str, Array]] | None = None) -> Array:
        """Inference that writes nothing to the layers (safe from several threads once placed)."""
        return self.apply(self.arrays() if arrays is None else arrays, x, training=False, upto=upto)[0]

    def backward(self, dvalue: Array, upto: int | None = None) -> None:
        """Backpropagate through ``layers[:upto]`` in reverse; gradients land on the parameters."""
        for layer in reversed(self.layers[:upto]):
            dvalue = layer.backward(dvalue)
            if dvalue is None:  # a first layer skipped the unused dL/dX
                break

    # -- placement --------------------------------------------------------------
    def place(self, like: Array) -> None:
        """Place every layer's host-held parameters on ``like``'s library and device (first use only)."""
        for layer in self.layers:
            if hasattr(layer, "place") and not getattr(layer, "_placed", True):
                layer.place(like)

    def to(self, like: Array) -> None:
        """Move every parameter and optimizer state to ``like``'s library and device."""
        xp, dev = _xp.namespace(like), _xp.array_device(like)
        for layer in self.layers:
            for p in _parameters(layer):
                p.move(xp, dev)
            if hasattr(layer, "move_buffers"):
                layer.move_buffers(xp, dev)
            if hasattr(layer, "_placed"):
                layer._placed = True

    def persist(self) -> None:
        """Dask: compute the new parameters and state now, or the graph would grow every step."""
        dask: Any = importlib.import_module("dask")
        params = self.parameters()
        refs = [(p, None) for p in params] + [(p, key) for p in params for key in p.state]
        buffers = self.buffer_values()
        values = dask.persist(*[p.value if key is None else p.state[key] for p, key in refs], *buffers)
        for (p, key), value in zip(refs, values, strict=True):
            if key is None:
                p.value = value
            else:
                p.set_state(key, value)
        self.set_buffer_values(list(values[len(refs):]))


def _arrays(layer: Any) -> dict[str, Array]:
    method = getattr(layer, "arrays", None)
    return method() if method is not None else {}


def _parameters(layer: Any) -> list[Parameter]:
    method = getattr(layer, "parameters", None)
    return list(method()) if method is not None else []


def is_layer(obj: Any) -> bool:
    """Whether ``obj`` can be added to a model (has ``forward`` and ``backward``)."""
    return isinstance(obj, Layer) or (hasattr(obj, "forward") and hasattr(obj, "backward"))
