"""The training step: forward, loss, backward and update on one batch.

``train_step`` is the step ``Model.train`` runs: it works on the layers'
``Parameter`` objects and lets the delegation layer (``portable_nn.kernels``)
update them in place where the backend allows.

``step`` is the same step as **one function of explicit arrays**:
parameters, optimizer state, a batch, the learning rate and step counter (and
optionally a seed for dropout) in; new parameters, new state,
the batch's loss sum and correct count out.  It runs the portable reference
path only, mutates none of its inputs and leaves the layers as it found
them, so a compiler (``jax.jit``, ``torch.compile``) or a data-parallel
wrapper can take it as it is, without reaching into layers.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from array_api_compat import size

from .. import _xp, kernels
from .._typing import Array
from ..accuracy import Accuracy
from ..losses import Loss
from ..network import Network
from ..optimizers import Optimizer
from ..random import Generator

__all__ = ["Plan", "StepResult", "apply_step", "bound", "evaluate_sums", "loss_sum_and_grad", "random_layers", "step",
           "train_step"]


@dataclass
class Plan:
    """What ``Model.finalize`` decided: the network, the loss (fused with the last layer or not), the rest."""

    network: Network
    loss: Loss
    accuracy: Accuracy
    optimizer: Optimizer | None
    fused: Loss | None = None

    # per-sample weights of a train call (Model.train sets them for the call): they ride as the last column of
    # the loss targets (loop.prepared_targets), so every batching path slices them with the targets
    weights: Any = field(default=None, compare=False, repr=False)
    lock: Any = field(default_factory=threading.Lock, compare=False, repr=False)
    # compiled functions (training/compiled.py), keyed by what fixes their shapes; never pickled
    compiled: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        # fixed from finalize() on (add() makes a new plan): not rebuilt every step
        self.parameters = self.network.parameters()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("lock", "compiled", "weights")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, lock=threading.Lock(), compiled={}, weights=None)

    @property
    def body(self) -> int | None:
        """How far the network runs before the loss: all layers, or all but the fused last one."""
        return -1 if self.fused is not None else None

    @property
    def last(self) -> Any:
        return self.network.layers[-1]


class StepResult(NamedTuple):
    """What one step gives back: new parameters and state (in ``parameters()`` order), loss sum, correct count,
    and the new buffers (``Network.buffers()`` order: BatchNorm's running statistics; empty for most models).

    A named tuple: compilers take it as a tree of arrays (``jax.jit`` returns it as is).
    """

    params: list[Array]
    state: list[dict[str, Array]]
    loss_sum: Array
    correct: Array
    buffers: list[Array]


def losses_and_output(plan: Plan, x: Array, y_loss: Array) -> tuple[Array, Array]:
    """Inference: per-sample losses and the model's output (probabilities for a fused Softmax).

    Writes nothing to the layers or the loss (copies run instead): ``evaluate``
    is safe from several threads, like ``predict``.
    """
    loss = copy.copy(plan.fused if plan.fused is not None else plan.loss)
    inputs = plan.network.infer(x, upto=plan.body)
    losses = loss.forward(inputs, y_loss)
    return losses, loss.output if plan.fused is not None else inputs


def loss_sum_and_grad(plan: Plan, x: Array, y_loss: Array) -> tuple[Array, Array, Array]:
    """Training: the summed loss, the output and dL/d(output) -- dL/d(logits) when fused.

    With ``plan.weights`` set, the last column of ``y_loss`` holds the samples' weights.
    """
    loss = plan.fused if plan.fused is not None else plan.loss
    inputs = plan.network.forward(x, True, upto=plan.body)
    if plan.weights is not None:
        loss_sum, dvalue = loss.forward_backward(inputs, y_loss[:, :-1], y_loss[:, -1])
    else:
        loss_sum, dvalue = loss.forward_backward(inputs, y_loss)
    return loss_sum, _fused_output(plan) if plan.fused is not None else inputs, dvalue


def _fused_output(plan: Plan) -> Array:
    """The fused loss stores the last layer's output (the probabilities); the last layer keeps it too."""
    output = plan.fused.output  # type: ignore[union-attr]
    plan.last.output = output
    return output


def count_correct(plan: Plan, output: Array, y_acc: Array) -> tuple[Array, int]:
    """The number of correct predictions (a 0-d integer array) and how many were compared."""
    correct = plan.accuracy.compare(plan.last.predictions(output), y_acc)
    return _xp.namespace(correct).count_nonzero(correct), int(size(correct) or 0)


def train_step(plan: Plan, x: Array, y_loss: Array, y_acc: Array,
               before_update: Callable[[Array], Array | None] | None = None) -> tuple[Array, Array, int]:
    """One step on the layers' parameters: ``(loss sum, correct count, compared)``, all sums on the device.

    ``before_update(loss_sum)`` runs between the loss and the update: it may
    raise (host backends: a non-finite loss, before any parameter changes) or
    return a device flag that the backend kernels use to skip the update.
    """
    optimizer = plan.optimizer
    assert optimizer is not None
    loss_sum, output, dvalue = loss_sum_and_grad(plan, x, y_loss)
    ok = before_update(loss_sum) if before_update is not None else None
    correct, compared = count_correct(plan, output, y_acc)
    plan.network.backward(dvalue, upto=plan.body)
    optimizer.pre_update_params()
    optimizer.update_parameters(plan.parameters, ok)
    optimizer.post_update_params()
    if _xp.is_lazy(x):
        plan.network.persist()
    return loss_sum, correct, compared


def step(plan: Plan, params: list[Array], state: list[dict[str, Array]], x: Array, y_loss: Array, y_acc: Array,
         *, learning_rate: Any, iteration: Any, seed: int | None = None,
         buffers: list[Array] | None = None) -> StepResult:
    """One training step as a pure function of explicit arrays (the portable reference path).

    ``params``/``state``: arrays in ``plan.parameters`` order (state: one dict
    per parameter, missing keys start at zero); ``y_loss``/``y_acc``: targets
    prepared for the loss and the accuracy (``training.loop.prepared_targets``);
    ``learning_rate`` and ``iteration`` (1-based) may be arrays (traced by a
    compiler).  Dropout masks come from ``Generator(seed + i)`` for the i-th
    random layer (``seed=None``: the layers' own seeds), so the same arguments
    give the same result.  The arrays are bound to the layers while the step
    runs, under the plan's lock, and everything the layers, the loss and the
    accuracy held before is put back afterwards: nothing leaks out of a trace.
    ``buffers``: the non-trained state in ``network.buffers()`` order (None:
    the layers' own); the step returns their new values.
    """
    plist = plan.parameters
    if len(params) != len(plist) or len(state) != len(plist):
        raise ValueError(f"step: the network has {len(plist)} parameters, got {len(params)} values "
                         f"and {len(state)} states")
    if plan.optimizer is None:
        raise RuntimeError("step: the plan has no optimizer")
    with bound(plan):
        for i, layer in enumerate(random_layers(plan)):
            layer.generator = Generator(layer.generator.seed if seed is None else seed + i)
        return apply_step(plan, params, state, x, y_loss, y_acc, learning_rate, iteration, buffers)


def random_layers(plan: Plan) -> list[Any]:
    """The layers that draw random numbers (dropout), in order."""
    return [layer for layer in plan.network.layers if isinstance(getattr(layer, "generator", None), Generator)]


@contextlib.contextmanager
def bound(plan: Plan) -> Iterator[None]:
    """A scope in which a pure step may bind arrays to the layers: everything is put back at its end.

    Holds the plan's lock and runs the portable reference path (no kernels).
    """
    plist = plan.parameters
    objects = [*plan.network.layers, plan.loss, plan.accuracy, *([plan.fused] if plan.fused is not None else [])]
    with plan.lock, kernels.fast_paths(False):
        saved_objects = [(obj, dict(obj.__dict__)) for obj in objects]
        saved_params = [(p, p._value, p._state, p.grad) for p in plist]
        try:
            yield
        finally:
            for obj, attributes in saved_objects:
                obj.__dict__.clear()
                obj.__dict__.update(attributes)
            for p, value, st, grad in saved_params:
                p._value, p._state, p.grad = value, st, grad


def apply_step(plan: Plan, params: list[Array], state: list[dict[str, Array]], x: Array, y_loss: Array,
               y_acc: Array, learning_rate: Any, iteration: Any, buffers: list[Array] | None = None) -> StepResult:
    """The step's computation, inside ``bound(plan)``: bind, forward, backward, the update rule."""
    optimizer = plan.optimizer
    assert optimizer is not None
    plist = plan.parameters
    for p, value in zip(plist, params, strict=True):
        p._value, p._state = p._conform(value, p.name), {}  # not the setter: the flat buffer stays valid
    if buffers is not None:
        plan.network.set_buffer_values(buffers)
    loss_sum, output, dvalue = loss_sum_and_grad(plan, x, y_loss)
    new_buffers = plan.network.buffer_values()  # the forward pass's running statistics
    correct, _ = count_correct(plan, output, y_acc)
    plan.network.backward(dvalue, upto=plan.body)
    new_params, new_state = [], []
    grads = optimizer.clip_grads(_xp.namespace(plist[0].value), [p.grad for p in plist])
    for p, s, grad in zip(plist, state, grads, strict=True):
        xp = _xp.namespace(p.value)
        current = {key: s[key] if s.get(key) is not None else xp.zeros_like(p.value)
                   for key in optimizer.state_names}
        value, current = optimizer.rule(xp, p.value, grad, current, learning_rate, iteration)
        new_params.append(value)
        new_state.append(current)
    return StepResult(new_params, new_state, loss_sum, correct, new_buffers)


def evaluate_sums(plan: Plan, X: Array, y_loss: Array, y_acc: Array,
                  batches: list[slice]) -> tuple[Array, Array]:
    """Mean loss and accuracy over ``X`` in ``batches`` (0-d device arrays, no host sync)."""
    xp = _xp.namespace(X)
    loss_sum: Any = 0.0
    correct_sum: Any = 0
    compared = 0
    losses = None
    for s in batches:
        losses, output = losses_and_output(plan, X[s, ...], y_loss[s, ...])
        correct, n = count_correct(plan, output, y_acc[s, ...])
        loss_sum = loss_sum + xp.sum(losses)
        correct_sum, compared = correct_sum + correct, compared + n
    assert losses is not None
    return loss_sum / X.shape[0], xp.astype(correct_sum, losses.dtype) / compared
