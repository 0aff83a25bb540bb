"""``Model.summary()``: the architecture as a text table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _xp
from ._repr import config_repr

__all__ = ["table"]


def table(model: Any, input_shape: tuple[int, ...] | None = None) -> str:
    """``Model.summary()``: each layer, its output shape, parameter count and dtype; totals; the placement.
    ``input_shape``: one sample's shape (an image's height and width are not in the model; else ``?``)."""
    rows = [("layer", "output shape", "params", "dtype")]
    shape: tuple[Any, ...] | None = tuple(input_shape) if input_shape is not None else model.network.input_shape()
    width: int | None = None
    total = 0
    nbytes = 0
    fixed = 0  # buffers: saved, not trained
    for i, layer in enumerate(model.layers):
        width = getattr(layer, "n_neurons", width if width is not None else getattr(layer, "n_inputs", None))
        shape = layer.output_shape(shape) if shape is not None and hasattr(layer, "output_shape") else None
        params = list(layer.parameters()) if hasattr(layer, "parameters") else []
        count = sum(math.prod(p.value.shape) for p in params)
        total += count
        fixed += sum(math.prod(b.shape) for b in (layer.buffers() if hasattr(layer, "buffers") else {}).values())
        nbytes += sum(math.prod(p.value.shape) * np.dtype(p.dtype).itemsize for p in params)
        dtype = params[0].dtype if params else ""
        dims = [width] if shape is None else list(shape)
        rows.append((f"{i} {config_repr(layer)}", f"(n, {', '.join('?' if d is None else str(d) for d in dims)})",
                     f"{count:,}", dtype))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    lines = [f"Model: {len(model.layers)} layers, loss {model.loss!r}, optimizer {model.optimizer!r}"
             + (", softmax and cross-entropy fused" if model.plan is not None and model.plan.fused else "")]
    for j, r in enumerate(rows):
        cells = (c.rjust(w) if k == 2 else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths, strict=True)))
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("-" * len(lines[-1]))
    lines.append(f"total parameters: {total:,} ({nbytes / 1024:,.1f} KiB)"
                 + (f"; non-trainable (running statistics): {fixed:,}" if fixed else ""))
    first = next((p.value for p in model.network.parameters()), None)
    placed = all(getattr(layer, "_placed", True) for layer in model.layers)
    if first is not None:
        lines.append(f"placed on: {_xp.describe(first)}" if placed
                     else "not placed yet: host NumPy until the first forward")
    return "\n".join(lines)
