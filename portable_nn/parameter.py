"""``Parameter``: one trainable array with its gradient and optimizer state.

Every layer lists its parameters in ``parameters()`` (micrograd's habit); the
optimizer, the flat buffer of the fast paths, model files, ``gradcheck``, the
divergence guard and ``Model.set_parameters`` all go through that list.  The
book's names stay as properties over it: ``layer.weight`` is
``layer.params["weight"].value``, ``layer.dweight`` its ``.grad``,
``layer.weight_momentum`` its ``.state["momentum"]``.

The dtype rule, the same on every backend: **the layer's dtype wins.**  An
array assigned to a parameter (or to its optimizer state) with another
floating dtype is cast to the layer's dtype; a non-floating array is a
``TypeError`` naming the parameter.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from . import _xp
from ._typing import Array, Namespace

__all__ = ["Parameter", "value_of", "grad_of", "state_of", "regularizer_of", "FlatParameters"]


class Parameter:
    """A trainable array: ``value``, ``grad`` (set by ``backward``) and optimizer ``state``.

    ``l1``/``l2`` are the regularization factors of the value: the loss adds
    ``l1*sum|w| + l2*sum(w**2)``, the gradient ``l1*sign(w) + 2*l2*w``.
    """

    __slots__ = ("_state", "_value", "dtype", "grad", "l1", "l2", "name", "owner")

    def __init__(self, name: str, value: Array, dtype: str, *, l1: float = 0.0, l2: float = 0.0) -> None:
        self.name = name
        self.dtype = _xp.dtype_name(dtype)
        self.l1, self.l2 = float(l1), float(l2)
        self.grad: Array = None
        self._state: dict[str, Array] = {}
        self.owner: FlatParameters | None = None  # the flat buffer whose view ``value`` is, if any
        self._value: Array = None
        self._value = self._conform(value, name)

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={tuple(self._value.shape)}, dtype={self.dtype})"

    def __getstate__(self) -> dict[str, Any]:
        # A copy (pickle, deepcopy) keeps the arrays but not the flat buffer: a
        # copied view is a separate array, so the copy must not be updated through it.
        state = {name: getattr(self, name) for name in self.__slots__}
        state["owner"], state["_state"] = None, dict(self._state)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    @property
    def value(self) -> Array:
        return self._value

    @value.setter
    def value(self, value: Array) -> None:
        self._value = self._conform(value, self.name)
        self.detach()

    @property
    def state(self) -> Mapping[str, Array]:
        """The optimizer state by name (read-only: assign through ``set_state`` or ``layer.weight_momentum``)."""
        return MappingProxyType(self._state)

    def set_state(self, key: str, value: Array) -> None:
        """Set (or, with ``None``, drop) one optimizer state array, cast to the parameter's dtype."""
        if value is None:
            self._state.pop(key, None)
        else:
            self._state[key] = self._conform(value, f"{self.name}_{key}")
        self.detach()

    def conform(self, value: Array) -> Array:
        """``value`` checked to fit this parameter and cast to its dtype (not assigned)."""
        return self._conform(value, self.name)

    def adopt(self, value: Array, state: Mapping[str, Array]) -> None:
        """Take arrays a compiled step made from this parameter's own (no checks: they fit by construction)."""
        self.detach()
        self._value, self._state = value, dict(state)

    def detach(self) -> None:
        """Leave the flat buffer (the next fast update rebuilds it around the new arrays)."""
        if self.owner is not None:
            self.owner.valid = False
            self.owner = None

    def _conform(self, value: Array, what: str) -> Array:
        """``value`` checked (an array of the parameter's shape) and cast to the parameter's dtype."""
        if not _xp.array_api_compat.is_array_api_obj(value):
            raise TypeError(f"{what}: expected an array, got {type(value).__name__}")
        if self._value is not None and tuple(value.shape) != tuple(self._value.shape):
            raise ValueError(f"{what}: expected an array of shape {tuple(self._value.shape)}, got {tuple(value.shape)}")
        xp = _xp.namespace(value)
        dtype = _xp.float_dtype(xp, self.dtype)
        if value.dtype == dtype:
            return value
        _xp.check_floating(xp, value, what)
        return xp.astype(value, dtype)

    def to_dtype(self, dtype: str) -> None:
        """Cast the value and the state to ``dtype`` (``gradcheck`` checks a float64 copy)."""
        self.dtype = _xp.dtype_name(dtype)
        self.value = self._value
        for key, value in list(self._state.items()):
            self.set_state(key, value)

    def place(self, xp: Namespace, device: Any) -> None:
        """Move a host-held value and state (a seeded draw, a loaded file) to ``xp`` on ``device``."""
        dtype = _xp.float_dtype(xp, self.dtype)
        if _xp.is_numpy_array(self._value):
            with warnings.catch_warnings():  # JAX without x64 warns, then truncates: refused below instead
                warnings.simplefilter("ignore", UserWarning)
                moved = _xp.move(self._value, xp, device, dtype)
            if moved.dtype != dtype:
                raise TypeError(f"{self.name}: {_xp.library_name(moved)} stores {self.dtype} as {moved.dtype}; "
                                "with JAX, enable float64 first: jax.config.update('jax_enable_x64', True)")
            self.value = moved
        for key, value in list(self._state.items()):
            if _xp.is_numpy_array(value):
                self.set_state(key, _xp.move(value, xp, device, dtype))

    def move(self, xp: Namespace, device: Any) -> None:
        """Move value and state to ``xp`` on ``device``, whatever they are now."""
        self.value = _xp.move(self._value, xp, device)
        for key, value in list(self._state.items()):
            self.set_state(key, _xp.move(value, xp, device))

    def regularization_loss(self, value: Array | None = None) -> Array | float:
        """``l1*sum|w| + l2*sum(w**2)`` (0-d array) of ``value`` (default: the parameter's own), or 0.0 when
        not regularized."""
        if not (self.l1 or self.l2):
            return 0.0
        w = self._value if value is None else value
        xp = _xp.namespace(w)
        loss: Array | float = 0.0
        if self.l1:
            loss = loss + self.l1 * xp.sum(xp.abs(w))
        if self.l2:
            loss = loss + self.l2 * xp.sum(w * w)
        return loss

    def regularized(self, grad: Array, value: Array | None = None) -> Array:
        """``grad + l1*sign(w) + 2*l2*w``: the gradient of the regularization added (``w``: ``value``, default
        the parameter's own)."""
        w = self._value if value is None else value
        if self.l1:
            grad = grad + self.l1 * _xp.namespace(grad).sign(w)
        if self.l2:
            grad = grad + (2 * self.l2) * w
        return grad


# -- the book's names as properties over parameters ----------------------------
# Declared once per class (``weight = value_of("weight")``): explicit attributes,
# no attribute names composed from strings at run time.

class _field:
    """``layer.<attribute>`` is an attribute of ``layer.params[name]``."""

    def __init__(self, name: str, attribute: str) -> None:
        self.name, self.attribute = name, attribute

    def __get__(self, layer: Any, owner: type | None = None) -> Any:
        return self if layer is None else getattr(layer.params[self.name], self.attribute)

    def __set__(self, layer: Any, value: Array) -> None:
        setattr(layer.params[self.name], self.attribute, value)


def value_of(name: str) -> Any:
    """``layer.<name>`` is ``layer.params[name].value``; assignment casts to the layer's dtype."""
    return _field(name, "value")


def grad_of(name: str) -> Any:
    """``layer.d<name>`` is ``layer.params[name].grad``."""
    return _field(name, "grad")


class state_of:
    """``layer.<name>_<key>`` is ``layer.params[name].state[key]`` (None until the optimizer creates it)."""

    def __init__(self, name: str, key: str) -> None:
        self.name, self.key = name, key

    def __get__(self, layer: Any, owner: type | None = None) -> Any:
        return self if layer is None else layer.params[self.name].state.get(self.key)

    def __set__(self, layer: Any, value: Array) -> None:
        layer.params[self.name].set_state(self.key, value)


class _factor(_field):
    """A ``_field`` holding a regularization factor: a finite number >= 0."""

    def __set__(self, layer: Any, value: Any) -> None:
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{type(layer).__name__}: {self.name}_regularizer_{self.attribute} must be a finite "
                             f"number >= 0, got {value!r}")
        super().__set__(layer, value)


def regularizer_of(name: str, kind: str) -> Any:
    """``layer.<name>_regularizer_<kind>`` is ``layer.params[name].<kind>`` (``kind``: ``"l1"`` or ``"l2"``)."""
    return _factor(name, kind)


class FlatParameters:
    """Parameters, their optimizer state and gradients as views of one flat buffer each.

    Built from the parameters' current arrays (copied: the buffer is the
    library's own, a user's array is never mutated); each parameter's value
    and state are then rebound to views of it.  Any later assignment to a
    parameter detaches it and marks the buffer invalid (the setter knows), and
    the optimizer rebuilds.  Used only where arrays are writeable (NumPy, CuPy).
    """

    def __init__(self, params: list[Parameter], state_names: tuple[str, ...]) -> None:
        self.params = list(params)
        self.state_names = state_names
        first = params[0].value
        xp = _xp.namespace(first)
        dev = _xp.array_device(first)
        shapes = [tuple(p.value.shape) for p in params]
        sizes = [math.prod(s) for s in shapes]
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.param = xp.concat([xp.reshape(p.value, (-1,)) for p in params])
        self.state = []
        for key in state_names:
            parts = [xp.zeros(size, dtype=self.param.dtype, device=dev) if p.state.get(key) is None
                     else xp.reshape(p.state[key], (-1,)) for p, size in zip(params, sizes, strict=True)]
            self.state.append(xp.concat(parts))
        self.grad = xp.empty_like(self.param)
        self.copied_all = [(0, self.grad.shape[0], self.grad)]  # ``segments`` when every gradient is copied
        self.segments: list[tuple[int, int, Array]] = self.copied_all  # the gradients' runs (``gather_grads``)
        self._layouts: dict[int | None, Any] = {}  # gather_grads' plan by ``direct_from``
        self._xp = xp
        self.work: dict[str, Array] = {}  # the kernels' own work buffers (NumPy: one chunk-sized scratch)
        self.valid = True
        self.grad_views = []
        self.offsets = list(zip(offsets, sizes, shapes, strict=True))
        self._spare: tuple[Array, list[Array]] | None = None
        self.keep_previous = False
        for p, (off, size, shape) in zip(params, self.offsets, strict=True):
            p.detach()
            p.owner = self
            self.grad_views.append(xp.reshape(self.grad[off:off + size], shape))
        self._views = self._views_of(self.param, self.state)
        self._spare_views: list[tuple[Array, dict[str, Array]]] = []
        self._bind()

    def _views_of(self, param: Array, state: list[Array]) -> list[tuple[Array, dict[str, Array]]]:
        """Per parameter, its value and state as views of the buffers ``param`` and ``state``."""
        xp = _xp.namespace(param)
        names = self.state_names
        return [(xp.reshape(param[off:off + size], shape),
                 {key: xp.reshape(buf[off:off + size], shape) for key, buf in zip(names, state, strict=True)})
                for off, size, shape in self.offsets]

    def _bind(self) -> None:
        """Rebind each parameter's value and state to the views of the current buffers."""
        for p, (value, state) in zip(self.params, self._views, strict=True):
            p._value = value
            p._state.update(state)

    @property
    def views(self) -> list[tuple[Array, dict[str, Array]]]:
        """Per parameter, its current value and state (views of the current buffers; not written by the next
        double-buffered update)."""
        return self._views

    @property
    def double_buffered(self) -> bool:
        """Whether updates go to spare buffers (so the arrays of the step before stay intact): the optimizer's
        ``keep_previous``, which the divergence guard sets where it would otherwise copy often."""
        return self.keep_previous

    def spares(self) -> tuple[Array, list[Array]]:
        """The spare parameter and state buffers (made at the first double-buffered update)."""
        if self._spare is None:
            xp = _xp.namespace(self.param)
            self._spare = (xp.empty_like(self.param), [xp.empty_like(s) for s in self.state])
            self._spare_views = self._views_of(*self._spare)
        return self._spare

    def swap(self) -> None:
        """The spares (just written) become the current buffers, and the parameters' views follow."""
        assert self._spare is not None
        (self.param, self.state), self._spare = self._spare, (self.param, self.state)
        self._views, self._spare_views = self._spare_views, self._views
        self._bind()

    @staticmethod
    def fits(params: list[Parameter]) -> bool:
        """Whether the values are arrays of one type, dtype and device (one buffer can hold them)."""
        first = params[0].value
        return all(type(p.value) is type(first) and p.value.dtype == first.dtype
                   and _xp.same_device(p.value, first) for p in params)

    def serves(self, params: list[Parameter], state_names: tuple[str, ...]) -> bool:
        """Still valid, and built for these parameters and this optimizer's state."""
        # list equality compares Parameters by identity (they define no __eq__), in C
        return self.valid and state_names == self.state_names and params == self.params

    def gather_grads(self, direct_from: int | None = None) -> bool:
        """Copy the gradients into the flat gradient buffer; False if one is not an array of the buffer's kind.

        ``direct_from``: parameters of at least that many elements are not copied; the kernel reads their own
        gradients (and never writes them).  ``segments`` then lists ``(start, stop, flat gradient)`` runs in
        buffer order: the buffer's own for the copied parameters, a parameter's gradient for the others.
        """
        layout = self._layouts.get(direct_from)
        if layout is None:
            layout = self._layouts[direct_from] = self._layout(direct_from)
        direct, runs = layout
        kind = type(self.grad)
        for p, out, own in zip(self.params, self.grad_views, direct, strict=True):
            grad = p.grad
            if type(grad) is not kind or grad.dtype != out.dtype or grad.shape != out.shape:
                return False
            if not own:
                out[...] = grad
        if runs is None:
            self.segments = self.copied_all
        else:
            flat = self._xp.reshape
            self.segments = [(start, stop, run if i is None else flat(self.params[i].grad, (-1,)))
                             for start, stop, i, run in runs]
        return True

    def _layout(self, direct_from: int | None) -> tuple[list[bool], list[tuple[int, int, int | None, Any]] | None]:
        """``gather_grads``'s plan for ``direct_from`` (made once): per parameter whether its gradient is read
        where it is, and the runs ``(start, stop, that parameter's index, None)`` and ``(start, stop, None,
        the buffer's run)`` of the copied parameters between them (None: every gradient copied)."""
        direct = [direct_from is not None and size >= direct_from for _, size, _ in self.offsets]
        if not any(direct):
            return direct, None
        runs: list[tuple[int, int, int | None, Any]] = []
        copied: list[int] | None = None  # [start, stop] of copied parameters
        for i, ((off, size, _), own) in enumerate(zip(self.offsets, direct, strict=True)):
            if own:
                if copied is not None:
                    runs.append((copied[0], copied[1], None, self.grad[copied[0]:copied[1]]))
                    copied = None
                runs.append((off, off + size, i, None))
            elif copied is None:
                copied = [off, off + size]
            else:
                copied[1] = off + size
        if copied is not None:
            runs.append((copied[0], copied[1], None, self.grad[copied[0]:copied[1]]))
        return direct, runs
