"""Weights that travel: a model's parameters as PyTorch's ``state_dict`` of the equivalent ``nn.Sequential``.

The keys and layouts are PyTorch's, with the positions of ``model.layers`` (activations and dropout count, as
they do in an ``nn.Sequential``):

* ``Dense`` at position ``i``: ``"i.weight"`` of shape ``(n_neurons, n_inputs)`` (``nn.Linear``'s, the
  transpose of ``Dense.weight``) and ``"i.bias"`` of shape ``(n_neurons,)``;
* ``LayerNorm``: ``"i.weight"``, ``"i.bias"`` of shape ``(n_features,)``;
* ``BatchNorm``: those, ``"i.running_mean"``, ``"i.running_var"`` and ``"i.num_batches_tracked"`` (a 0-d
  int64; PyTorch's ``load_state_dict`` expects it; portable_nn does not use it).

``Model.save_weights("w.safetensors")`` writes them with the ``safetensors`` package (atomically), so
``torch.nn.Sequential(...).load_state_dict(safetensors.torch.load_file("w.safetensors"))`` works, and
``Model.load_weights`` reads a PyTorch-trained MLP's file.  A key that is missing, left over or of another
shape is one ``ValueError`` naming it.  (The ``.npz`` model file stays the full format: architecture,
optimizer state, metadata.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _xp
from .files import atomic_write, read_bounded
from .layers import Dense

__all__ = ["from_state_dict", "load_safetensors", "load_weights", "save_safetensors", "save_weights", "to_state_dict"]

_EXTRA = "weights in safetensors files need the safetensors package: pip install 'portable_nn[safetensors]'"


def _layouts(layers: list[Any]) -> list[tuple[str, Any, str, bool]]:
    """``(key, layer, attribute, transposed)`` for every array of the state dict, in order."""
    out: list[tuple[str, Any, str, bool]] = []
    for i, layer in enumerate(layers):
        names = [p.name for p in getattr(layer, "parameters", list)()] + list(getattr(layer, "buffer_names", ()))
        if names and hasattr(layer, "window"):  # Conv2D
            raise ValueError(f"Model.save_weights/load_weights: layer {i} ({type(layer).__name__}) has no "
                             "equivalent in PyTorch's nn.Sequential state_dict layout (Conv2d takes channels-first "
                             "images, and nn.Flatten orders channels, rows, columns); use a .npz path or model.save")
        out.extend((f"{i}.{name}", layer, name, isinstance(layer, Dense) and name == "weight") for name in names)
    return out


def to_state_dict(layers: list[Any]) -> dict[str, np.ndarray]:
    """The layers' arrays as host NumPy arrays under PyTorch's keys and in its layouts."""
    state: dict[str, np.ndarray] = {}
    for key, layer, name, transposed in _layouts(layers):
        value = np.asarray(_xp.to_numpy(getattr(layer, name)))
        value = value.T if transposed else value.reshape(-1)  # (1, n) rows -> (n,), as PyTorch keeps them
        state[key] = np.ascontiguousarray(value)
    for i, layer in enumerate(layers):
        if "running_mean" in getattr(layer, "buffer_names", ()):
            state[f"{i}.num_batches_tracked"] = np.zeros((), dtype=np.int64)
    return state


def from_state_dict(layers: list[Any], state: dict[str, np.ndarray], source: Any) -> None:
    """Assign ``state`` (PyTorch's keys and layouts) to the layers; nothing is assigned unless every key fits."""
    layouts = _layouts(layers)
    expected = {key for key, *_ in layouts} | {f"{i}.num_batches_tracked" for i, layer in enumerate(layers)
                                                if "running_mean" in getattr(layer, "buffer_names", ())}
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise ValueError(f"{source}: the weights do not fit this model: missing {missing}, unexpected {extra} "
                         f"(keys are nn.Sequential's: the layer's position, then its parameter)")
    values = []
    for key, layer, name, transposed in layouts:
        current = getattr(layer, name)
        shape = tuple(current.shape)
        want = (shape[1], shape[0]) if transposed else (int(np.prod(shape)),)
        got = np.asarray(state[key])
        if tuple(got.shape) != want:
            raise ValueError(f"{source}: {key} has shape {tuple(got.shape)}, this model's is {want} "
                             f"({type(layer).__name__} at position {key.split('.')[0]})")
        if not np.issubdtype(got.dtype, np.floating):
            raise ValueError(f"{source}: {key} has dtype {got.dtype}, expected floating point")
        values.append((layer, name, got.T if transposed else got.reshape(shape), current))
    for layer, name, value, current in values:
        xp = _xp.namespace(current)
        setattr(layer, name, xp.asarray(_xp.move(np.ascontiguousarray(value), xp, _xp.array_device(current),
                                                 current.dtype), copy=True))


def save_safetensors(layers: list[Any], path: Any) -> None:
    """The layers' state dict in a ``.safetensors`` file, written atomically."""
    try:
        from safetensors.numpy import save
    except ImportError:
        raise ImportError(_EXTRA) from None
    data = save(to_state_dict(layers), metadata={"format": "pt", "writer": "portable_nn"})
    def write(f: Any) -> None:
        f.write(data)

    atomic_write(path, write)


def load_safetensors(layers: list[Any], path: Any) -> None:
    """A ``.safetensors`` state dict (PyTorch's keys and layouts) into the layers."""
    try:
        from safetensors import SafetensorError
        from safetensors.numpy import load
    except ImportError:
        raise ImportError(_EXTRA) from None
    try:
        state = load(read_bounded(path))
    except SafetensorError as exc:
        raise ValueError(f"{path}: not a valid safetensors file ({exc})") from None
    from_state_dict(layers, state, path)


def save_weights(model: Any, path: Any) -> None:
    """``Model.save_weights``: a ``.safetensors`` path in PyTorch's layout, any other the parameters file."""
    if str(path).endswith(".safetensors"):
        save_safetensors(model.layers, path)
    else:
        model.save_parameters(path)


def load_weights(model: Any, path: Any) -> None:
    """``Model.load_weights``: what ``save_weights`` wrote (or a PyTorch ``nn.Sequential``'s safetensors)."""
    if str(path).endswith(".safetensors"):
        load_safetensors(model.layers, path)
    else:
        model.load_parameters(path)
