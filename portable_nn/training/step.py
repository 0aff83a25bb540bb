"""The training step: forward, loss, backward and update on one batch.

``train_step`` is the step ``Model.train`` runs: it works on the layers'
``Parameter`` objects and lets the delegation layer (``portable_nn.kernels``)
update them in place where the backend allows.

``step`` is the same step as **one function of explicit arrays**:
parameters, optimizer state, a batch, the learning rate and step counter (and
optionally a seed for dropout) in; new parameters, new state,
the batch's loss sum and correct count out.  It runs the portable reference
path only and writes nothing: the layers' pure core (``Layer.apply``/``vjp``)
and the optimizer's ``update`` take every array as an argument, so a
compiler (``jax.jit``, ``torch.compile``) or a data-parallel wrapper can take
it as it is, without reaching into layers.

Both run ``forward_backward``: the network's forward, the loss, the network's
backward, as functions of the layers' arrays.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from array_api_compat import size

from .. import _xp
from .._typing import Array
from ..accuracy import Accuracy
from ..losses import Loss
from ..network import Network
from ..optimizers import Optimizer
from ..random import Generator

__all__ = ["Plan", "StepResult", "apply_step", "evaluate_sums", "forward_backward", "random_layers",
           "regularization_loss", "step", "train_step"]


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
    # compiled functions (training/compiled.py), keyed by what fixes their shapes; never pickled
    compiled: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        # fixed from finalize() on (add() makes a new plan): not rebuilt every step
        self.parameters = self.network.parameters()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("compiled", "weights")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, compiled={}, weights=None)

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


def losses_and_output(plan: Plan, x: Array, y_loss: Array,
                      arrays: list[dict[str, Array]] | None = None) -> tuple[Array, Array]:
    """Inference: per-sample losses and the model's output (probabilities for a fused Softmax).

    Writes nothing to the layers or the loss: ``evaluate`` is safe from several threads, like ``predict``.
    ``arrays``: the layers' arrays (``Network.arrays``; default: their own).
    """
    loss = copy.copy(plan.fused if plan.fused is not None else plan.loss)
    inputs = plan.network.infer(x, upto=plan.body, arrays=arrays)
    losses = loss.forward(inputs, y_loss)
    return losses, loss.output if plan.fused is not None else inputs


Draw = Callable[[Any, Array], "Array | None"]


def forward_backward(plan: Plan, arrays: list[dict[str, Array]], x: Array, y_loss: Array,
                     draw: Draw | None = None) -> tuple[Array, Array, list[Array], list[Array]]:
    """The step's differentiation, pure: ``(loss sum, output, gradients, new buffers)``.

    ``arrays``: the layers' arrays (``Network.arrays``); gradients come in ``plan.parameters`` order, buffers
    in ``network.buffers()`` order; ``draw(layer, x)``: each dropout layer's U[0, 1) (default: the layer's
    own stream).  With ``plan.weights`` set, the last column of ``y_loss`` holds the samples' weights.
    """
    network = plan.network
    inputs, caches = network.apply(arrays, x, training=True, draw=draw, upto=plan.body)
    loss = plan.fused if plan.fused is not None else plan.loss
    if plan.weights is not None:
        loss_sum, dvalue, output = loss.value_and_grad(inputs, y_loss[:, :-1], y_loss[:, -1])
    else:
        loss_sum, dvalue, output = loss.value_and_grad(inputs, y_loss)
    return loss_sum, output, network.vjp(arrays, caches, dvalue), network.next_buffers(arrays, caches)


def count_correct(plan: Plan, output: Array, y_acc: Array) -> tuple[Array, int]:
    """The number of correct predictions (a 0-d integer array) and how many were compared."""
    correct = plan.accuracy.compare(plan.last.predictions(output), y_acc)
    return _xp.namespace(correct).count_nonzero(correct), int(size(correct) or 0)


def regularization_loss(plan: Plan, params: list[Array]) -> Array | float:
    """The L1/L2 penalties of ``params`` (``plan.parameters`` order): 0-d array, or 0.0."""
    total: Array | float = 0.0
    for p, value in zip(plan.parameters, params, strict=True):
        total = total + p.regularization_loss(value)
    return total


def train_step(plan: Plan, x: Array, y_loss: Array, y_acc: Array,
               before_update: Callable[[Array], Array | None] | None = None) -> tuple[Array, Array, int]:
    """One step on the layers' parameters: ``(loss sum, correct count, compared)``, all sums on the device.

    ``before_update(loss_sum)`` runs between the loss and the update: it may
    raise (host backends: a non-finite loss, before any parameter changes) or
    return a device flag that the backend kernels use to skip the update.
    The gradients land on the parameters (the book's ``dweight``), and the
    optimizer's kernels update them in place where the backend allows.
    """
    optimizer = plan.optimizer
    assert optimizer is not None
    network = plan.network
    loss_sum, output, grads, buffers = forward_backward(plan, network.arrays(), x, y_loss)
    ok = before_update(loss_sum) if before_update is not None else None
    correct, compared = count_correct(plan, output, y_acc)
    for p, grad in zip(plan.parameters, grads, strict=True):
        p.grad = grad
    if buffers:
        network.set_buffer_values(buffers)
    optimizer.pre_update_params()
    optimizer.update_parameters(plan.parameters, ok)
    optimizer.post_update_params()
    if _xp.is_lazy(x):
        network.persist()
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
    random layer (``seed=None``: a fresh stream of the layer's own seed), so
    the same arguments give the same result.  ``buffers``: the non-trained
    state in ``network.buffers()`` order (None: the layers' own); the step
    returns their new values.  Nothing is written to the layers.
    """
    plist = plan.parameters
    if len(params) != len(plist) or len(state) != len(plist):
        raise ValueError(f"step: the network has {len(plist)} parameters, got {len(params)} values "
                         f"and {len(state)} states")
    if plan.optimizer is None:
        raise RuntimeError("step: the plan has no optimizer")
    params = [p.conform(value) for p, value in zip(plist, params, strict=True)]
    streams = {id(layer): Generator(layer.generator.seed if seed is None else seed + i)
               for i, layer in enumerate(random_layers(plan))}
    return apply_step(plan, params, state, x, y_loss, y_acc, learning_rate, iteration, buffers,
                      lambda layer, xb: layer.noise(xb, True, streams.get(id(layer))))


def random_layers(plan: Plan) -> list[Any]:
    """The layers that draw random numbers (dropout), in order."""
    return [layer for layer in plan.network.layers if isinstance(getattr(layer, "generator", None), Generator)]


def apply_step(plan: Plan, params: list[Array], state: list[dict[str, Array]], x: Array, y_loss: Array,
               y_acc: Array, learning_rate: Any, iteration: Any, buffers: list[Array] | None = None,
               draw: Draw | None = None) -> StepResult:
    """The step's computation on explicit arrays: forward, loss, backward, the optimizer's ``update``."""
    optimizer = plan.optimizer
    assert optimizer is not None
    arrays = plan.network.arrays(params, buffers)
    loss_sum, output, grads, new_buffers = forward_backward(plan, arrays, x, y_loss, draw)
    correct, _ = count_correct(plan, output, y_acc)
    new_params, new_state = optimizer.update(grads, state, params, learning_rate, iteration)
    return StepResult(new_params, new_state, loss_sum, correct, new_buffers)


def evaluate_sums(plan: Plan, X: Array, y_loss: Array, y_acc: Array, batches: list[slice],
                  arrays: list[dict[str, Array]] | None = None) -> tuple[Array, Array]:
    """Mean loss and accuracy over ``X`` in ``batches`` (0-d device arrays, no host sync)."""
    xp = _xp.namespace(X)
    loss_sum: Any = 0.0
    correct_sum: Any = 0
    compared = 0
    losses = None
    for s in batches:
        losses, output = losses_and_output(plan, X[s, ...], y_loss[s, ...], arrays)
        correct, n = count_correct(plan, output, y_acc[s, ...])
        loss_sum = loss_sum + xp.sum(losses)
        correct_sum, compared = correct_sum + correct, compared + n
    assert losses is not None
    return loss_sum / X.shape[0], xp.astype(correct_sum, losses.dtype) / compared
