"""ONNX export: ``predict``'s forward pass run once on ``ndonnx`` arrays, which record an ONNX graph.

There is no exporter code per layer: ``ndonnx`` implements the array API standard, so the layers' own
``forward`` -- the code that runs on NumPy, CuPy, PyTorch and JAX -- builds the graph.  The parameters
become the graph's constants; Dropout is the identity and BatchNorm uses its running statistics, as in
``predict``.  ``pip install 'portable_nn[onnx]'`` (ndonnx, onnx; onnxruntime to run the file).
"""

from __future__ import annotations

import copy
import importlib
from typing import Any

from . import _xp
from .files import atomic_write

__all__ = ["export_onnx", "to_onnx"]

_EXTRA = "ONNX export needs ndonnx and onnx: pip install 'portable_nn[onnx]'"


def _modules() -> tuple[Any, Any]:
    try:
        return importlib.import_module("ndonnx"), importlib.import_module("onnx")
    except ImportError:
        raise ImportError(_EXTRA) from None


def to_onnx(model: Any, *, n_features: int | None = None, dtype: Any = None, batch: str | int = "N") -> Any:
    """The ONNX ``ModelProto`` of ``model.predict``: input ``"input"`` of shape ``(batch, n_features)``,
    output ``"output"``; ``batch`` a name (a dynamic dimension) or a fixed size.

    ``n_features`` defaults to the first layer's input width; ``dtype`` (``"float32"``/``"float64"``) to the
    model's.  The model is not changed (a copy of its layers runs).
    """
    ndx, onnx = _modules()
    network = model.network
    if not network.layers:
        raise ValueError("Model.export_onnx: the model has no layers")
    if n_features is None:
        n_features = network.n_inputs()
        if n_features is None:
            raise ValueError("Model.export_onnx: the first layer does not say its input width; pass n_features=")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features <= 0:
        raise ValueError(f"Model.export_onnx: n_features must be a positive integer, got {n_features!r}")
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
    net = type(network)(layers)
    x = ndx.argument(shape=(batch, n_features), dtype=getattr(ndx, name))
    net.to(x)  # every parameter and buffer becomes a constant of the graph
    out = net.infer(x)
    proto = ndx.build({"input": x}, {"output": out})
    from . import __version__

    proto.producer_name, proto.producer_version = "portable_nn", __version__
    proto.doc_string = f"portable_nn {model!r}"
    onnx.checker.check_model(proto)
    return proto


def export_onnx(model: Any, path: Any, *, n_features: int | None = None, dtype: Any = None,
                batch: str | int = "N") -> None:
    """Write ``to_onnx(model, ...)`` to ``path`` atomically (see ``Model.export_onnx``)."""
    proto = to_onnx(model, n_features=n_features, dtype=dtype, batch=batch)
    data = proto.SerializeToString()

    def write(f: Any) -> None:
        f.write(data)

    atomic_write(path, write)
