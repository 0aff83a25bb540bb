"""The typed boundary: names for arrays, namespaces, devices, dtypes, and the
protocols the training code relies on.

Arrays come from any array-API library, so ``Array`` cannot be narrower than
``Any`` for a static checker; naming it still says what a value *is*.  The
protocols say what ``Model`` and the training step need from a layer, a loss,
an optimizer and an accuracy -- any object that has these methods works.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from .parameter import Parameter

__all__ = ["AccuracyLike", "Array", "DType", "Device", "HasParameters", "LayerLike", "LossLike", "Namespace",
           "OptimizerLike"]

Array: TypeAlias = Any
"""An array of any array-API library (NumPy, CuPy, PyTorch, JAX, Dask, array-api-strict)."""
Namespace: TypeAlias = Any
"""An array-API namespace, as returned by ``array_api_compat.array_namespace``."""
Device: TypeAlias = Any
"""A device object of some library (compare with ``==`` only within one library)."""
DType: TypeAlias = Any
"""A dtype object of some library, or a dtype name such as ``"float32"``."""


@runtime_checkable
class LayerLike(Protocol):
    """What a model needs from a layer or activation."""

    def forward(self, x: Array) -> Array: ...
    def backward(self, dvalue: Array) -> Array: ...


@runtime_checkable
class HasParameters(Protocol):
    """A layer with trainable parameters (``Parameter`` objects, in a fixed order)."""

    def parameters(self) -> list[Parameter]: ...


class LossLike(Protocol):
    """What the training step needs from a loss."""

    def forward(self, y_pred: Array, y_true: Array) -> Array: ...
    def backward(self, y_pred: Array, y_true: Array) -> Array: ...


class OptimizerLike(Protocol):
    """The book's optimizer protocol."""

    iterations: int
    current_learning_rate: float

    def pre_update_params(self) -> None: ...
    def update_params(self, layer: Any) -> None: ...
    def post_update_params(self) -> None: ...


class AccuracyLike(Protocol):
    """What the training loop needs from an accuracy."""

    def init(self, y: Array, reinit: bool = False) -> None: ...
    def compare(self, predictions: Array, y: Array) -> Array: ...
