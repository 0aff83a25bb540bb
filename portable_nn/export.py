"""ONNX export: ``predict``'s forward pass as an ONNX graph of standard operators.

The built-in layers map to one ONNX operator each (``Dense`` -> ``Gemm``, ``ReLU`` -> ``Relu``, ``Softmax`` ->
``Softmax``, ``BatchNorm`` -> ``Mul`` + ``Add`` of its folded statistics, ...): the graph PyTorch's exporter
makes, with no control flow.  Any other layer -- a subclass, an extension -- exports through the array API:
its own ``forward`` runs on ``ndonnx`` arrays, which record what it computes (ndonnx guards some operators
against empty arrays with ``If`` nodes; those graphs are larger, and equal).  The parameters become constants;
Dropout is the identity and BatchNorm uses its running statistics, as in ``predict``.
``pip install 'portable_nn[onnx]'`` (ndonnx, onnx; onnxruntime to run the file).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _xp
from .files import atomic_write

__all__ = ["export_onnx", "to_onnx"]

_EXTRA = "ONNX export needs ndonnx and onnx: pip install 'portable_nn[onnx]'"


def _modules() -> tuple[Any, Any]:
    try:
        return importlib.import_module("ndonnx"), importlib.import_module("onnx")
    except ImportError:
        raise ImportError(_EXTRA) from None


def to_onnx(model: Any, *, n_features: int | None = None, dtype: Any = None, batch: str | int = "N",
            input_shape: tuple[int, ...] | None = None) -> Any:
    """The ONNX ``ModelProto`` of ``model.predict``: input ``"input"`` of shape ``(batch, n_features)`` (or
    ``(batch, *input_shape)``: images ``(h, w, c)`` for a model that starts with a convolution), output
    ``"output"``; ``batch`` a name (a dynamic dimension) or a fixed size.

    ``n_features`` defaults to the first layer's input width; ``dtype`` (``"float32"``/``"float64"``) to the
    model's.  The model is not changed (a copy of its layers runs).
    """
    ndx, onnx = _modules()
    network = model.network
    if not network.layers:
        raise ValueError("Model.export_onnx: the model has no layers")
    sample = _sample_shape(network, n_features, input_shape)
    if not (isinstance(batch, str) and batch) and (isinstance(batch, bool) or not isinstance(batch, int)
                                                    or batch <= 0):
        raise ValueError(f"Model.export_onnx: batch must be a dimension name or a positive integer, got {batch!r}")
    try:
        name = _xp.dtype_name(dtype if dtype is not None else (network.dtype() or "float32"))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"Model.export_onnx: {exc}") from None
    layers = copy.deepcopy(network.layers)  # the model's own arrays stay where they are, in their dtype
    for layer in layers:
        if hasattr(layer, "to_dtype"):
            layer.to_dtype(name)
    type(network)(layers).to(np.zeros((1,), dtype=name))  # host NumPy copies: the graph's constants
    x = ndx.argument(shape=(batch, *sample), dtype=getattr(ndx, name))
    var, channels_first = x.unwrap_spox(), False
    for layer in layers:
        var, channels_first = _layer_graph(ndx, type(network), layer, var, channels_first)
    if channels_first:
        var = _channels_last(var)
    proto = _without_output_identity(ndx.build({"input": x}, {"output": ndx.asarray(var)}))
    from . import __version__

    proto.producer_name, proto.producer_version = "portable_nn", __version__
    proto.doc_string = f"portable_nn {model!r}"
    onnx.checker.check_model(proto)
    return proto


def _sample_shape(network: Any, n_features: int | None, input_shape: Any) -> tuple[int, ...]:
    """One input sample's shape: ``input_shape``, ``(n_features,)``, or the first layer's width."""
    if input_shape is not None:
        if n_features is not None:
            raise ValueError("Model.export_onnx: give n_features or input_shape, not both")
        shape = tuple(input_shape) if isinstance(input_shape, tuple | list) else (input_shape,)
        if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
            raise ValueError(f"Model.export_onnx: input_shape must be positive integers, got {input_shape!r}")
        wanted = network.input_shape()
        if wanted is not None and (len(wanted) != len(shape)
                                   or any(w is not None and w != s for w, s in zip(wanted, shape, strict=True))):
            described = ", ".join("?" if w is None else str(w) for w in wanted)
            raise ValueError(f"Model.export_onnx: the first layer takes samples of shape ({described}), "
                             f"got input_shape={shape}")
        return shape
    if n_features is None:
        n_features = network.n_inputs()
        if n_features is None:
            if network.input_shape() is not None:  # images: their height and width are not in the model
                raise ValueError("Model.export_onnx: the model takes images; pass input_shape=(height, width, "
                                 "channels)")
            raise ValueError("Model.export_onnx: the first layer does not say its input width; pass n_features=")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features <= 0:
        raise ValueError(f"Model.export_onnx: n_features must be a positive integer, got {n_features!r}")
    return (n_features,)


def export_onnx(model: Any, path: Any, *, n_features: int | None = None, dtype: Any = None,
                batch: str | int = "N", input_shape: tuple[int, ...] | None = None) -> None:
    """Write ``to_onnx(model, ...)`` to ``path`` atomically (see ``Model.export_onnx``)."""
    proto = to_onnx(model, n_features=n_features, dtype=dtype, batch=batch, input_shape=input_shape)
    data = proto.SerializeToString()

    def write(f: Any) -> None:
        f.write(data)

    atomic_write(path, write)


def _const(op: Any, a: Any, shape: tuple[int, ...] | None = None) -> Any:
    a = np.asarray(a)
    return op.const(a.reshape(shape) if shape is not None else a)


def _dense(op: Any, layer: Any, x: Any) -> Any:
    """``output = input @ weight + bias``: one ``Gemm``."""
    return op.gemm(x, _const(op, layer.weight), _const(op, layer.bias, (-1,)))


def _batch_norm(op: Any, layer: Any, x: Any) -> Any:
    """Inference ``(x - mean) / sqrt(var + eps) * weight + bias`` as ``x * s + t``, folded on the host in the
    layer's dtype: ``Mul`` and ``Add`` (ONNX's ``BatchNormalization`` takes epsilon as a float32)."""
    s = np.asarray(layer.weight) / np.sqrt(np.asarray(layer.running_var) + layer.epsilon)
    t = np.asarray(layer.bias) - np.asarray(layer.running_mean) * s
    return op.add(op.mul(x, _const(op, s)), _const(op, t))


def _float32(var: Any) -> bool:
    return bool(var.unwrap_tensor().dtype == np.float32)


def _layer_norm(op: Any, layer: Any, x: Any) -> Any:
    """ONNX's ``LayerNormalization`` in float32; in float64 onnxruntime's kernel computes its statistics in
    float32 (2e-12 off): traced instead."""
    if not _float32(x):
        return NotImplemented
    return op.layer_normalization(x, _const(op, layer.weight, (-1,)), _const(op, layer.bias, (-1,)),
                                  axis=-1, epsilon=layer.epsilon)[0]


def _gelu(op: Any, layer: Any, x: Any) -> Any:
    """ONNX's ``Gelu(approximate="tanh")`` in float32; float64 (onnxruntime's kernel is 6e-9 off) and the erf
    form (``predict`` needs ``erf`` from the array library) are traced."""
    if layer.approximate != "tanh" or not _float32(x):
        return NotImplemented
    return op.gelu(x, approximate="tanh")


def _op() -> Any:
    return importlib.import_module("spox.opset.ai.onnx.v21")  # the opset ndonnx records with (onnx extra)


def _channels_last(var: Any) -> Any:
    return _op().transpose(var, perm=[0, 2, 3, 1])


def _window(layer: Any, x: Any) -> dict[str, Any]:
    """ONNX's attributes of a layer's window on the channels-first ``x``: kernel, strides, pads."""
    h, w = x.unwrap_tensor().shape[2:]
    (t, b), (left, r) = layer.window.pads(int(h), int(w))
    return {"kernel_shape": list(layer.window.kernel), "strides": list(layer.window.stride),
            "pads": [t, left, b, r]}


def _conv(op: Any, layer: Any, x: Any) -> Any:
    """``Conv`` with the weight in ONNX's ``(out, in, kh, kw)`` layout."""
    weight = np.ascontiguousarray(np.asarray(layer.weight).transpose(3, 2, 0, 1))
    return op.conv(x, _const(op, weight), _const(op, layer.bias, (-1,)), dilations=list(layer.window.dilation),
                   **_window(layer, x))


# Image layers: channels-first in ONNX (``Conv``, ``MaxPool``, ``AveragePool`` take NCHW).  The graph transposes
# the channels-last input once before the first of them and back before a layer that needs channels last.
# float32 only: onnxruntime has no float64 Conv kernel (a float64 model exports with dtype="float32").
CHANNELS_FIRST: dict[str, Callable[[Any, Any, Any], Any]] = {
    "Conv2D": _conv,
    "MaxPool2D": lambda op, layer, x: op.max_pool(x, **_window(layer, x))[0],
    "AvgPool2D": lambda op, layer, x: op.average_pool(x, count_include_pad=0, **_window(layer, x)),
}
# Elementwise layers: the same in either layout.
ANY_LAYOUT = {"ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Linear", "Dropout"}


# The built-in layers, by exact class (a subclass may compute something else: it is traced), and the ONNX
# operators of their inference forward pass.  None: the identity (no node); an emitter returning NotImplemented
# leaves the layer to be traced.
EMITTERS: dict[str, Callable[[Any, Any, Any], Any] | None] = {
    "Dense": _dense,
    "ReLU": lambda op, layer, x: op.relu(x),
    # onnxruntime has no float64 LeakyRelu kernel: traced there
    "LeakyReLU": lambda op, layer, x: op.leaky_relu(x, alpha=layer.alpha) if _float32(x) else NotImplemented,
    "Sigmoid": lambda op, layer, x: op.sigmoid(x),
    "Tanh": lambda op, layer, x: op.tanh(x),
    "Softmax": lambda op, layer, x: op.softmax(x, axis=-1),
    "Linear": None,
    "Dropout": None,
    "BatchNorm": _batch_norm,
    "LayerNorm": _layer_norm,
    "GELU": _gelu,
    "Flatten": lambda op, layer, x: op.flatten(x, axis=1),
    "GlobalAvgPool2D": lambda op, layer, x: op.reduce_mean(x, op.const(np.asarray([1, 2], np.int64)), keepdims=0),
}


def _layer_graph(ndx: Any, network_type: Any, layer: Any, var: Any, channels_first: bool) -> tuple[Any, bool]:
    """The graph of ``layer``'s inference forward pass on the ONNX value ``var``: its operators where the layer
    is a built-in one, else what its own ``forward`` records on ndonnx arrays; and whether the result is
    channels-first (see ``CHANNELS_FIRST``)."""
    from .layers import Layer

    name = type(layer).__name__
    builtin = type(layer) is Layer.registry.get(name)  # a class of ours (a file's names are collision-checked)
    if builtin and name in CHANNELS_FIRST:
        if not _float32(var):
            raise ValueError(f"Model.export_onnx: {name} in float64: onnxruntime has no float64 {name[:-2]} kernel "
                             "(and ndonnx cannot trace the image's shape); export with dtype='float32'")
        x = var if channels_first else _op().transpose(var, perm=[0, 3, 1, 2])
        return CHANNELS_FIRST[name](_op(), layer, x), True
    if channels_first and not (builtin and name in ANY_LAYOUT):
        var, channels_first = _channels_last(var), False
    emit = EMITTERS.get(name, NotImplemented) if builtin else NotImplemented
    if emit is None:
        return var, channels_first
    if emit is not NotImplemented:
        out = emit(_op(), layer, var)
        if out is not NotImplemented:
            return out, channels_first
    if channels_first:  # an elementwise layer its emitter declined (a dtype): traced channels-last
        var = _channels_last(var)
    x = ndx.asarray(var)
    single = network_type([layer])
    single.to(x)  # its parameters and buffers become constants of the graph
    return single.infer(x).unwrap_spox(), False


def _without_output_identity(proto: Any) -> Any:
    """The node that computes the output writes ``"output"`` itself: the ``Identity`` that names it goes."""
    graph = proto.graph
    last = graph.node[len(graph.node) - 1] if len(graph.node) else None
    produced = {out for node in graph.node for out in node.output}
    if last is not None and last.op_type == "Identity" and list(last.output) == ["output"] \
            and last.input[0] in produced:
        source = last.input[0]
        graph.node.remove(last)
        for node in graph.node:
            node.output[:] = ["output" if out == source else out for out in node.output]
            node.input[:] = ["output" if name == source else name for name in node.input]
        for info in graph.value_info:
            if info.name == source:
                info.name = "output"
    return proto
