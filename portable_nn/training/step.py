"""The training step: forward, loss, backward and update on one batch.

``train_step`` is the step ``Model.train`` runs: it works on the layers'
``Parameter`` objects and lets the delegation layer (``portable_nn.kernels``)
update them in place where the backend allows.

``step`` is the same step as **one function of explicit arrays**:
parameters, optimizer state, a batch, the learning rate and step counter (and
optionally a random generator for dropout) in; new parameters, new state,
the batch's loss sum and correct count out.  It runs the portable reference
path only, mutates none of its inputs and leaves the layers as it found
them, so a compiler (``jax.jit``, ``torch.compile``) or a data-parallel
wrapper can take it as it is, without reaching into layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from array_api_compat import size

from .. import _xp, kernels
from .._typing import Array
from ..accuracy import Accuracy
from ..losses import Loss
from ..network import Network
from ..optimizers import Optimizer

__all__ = ["Plan", "StepResult", "evaluate_sums", "loss_sum_and_grad", "step", "train_step"]


@dataclass
class Plan:
    """What ``Model.finalize`` decided: the network, the loss (fused with the last layer or not), the rest."""

    network: Network
    loss: Loss
    accuracy: Accuracy
    optimizer: Optimizer | None
    fused: Loss | None = None

    def __post_init__(self) -> None:
        # fixed from finalize() on (add() makes a new plan): not rebuilt every step
        self.trainable = self.network.trainable
        self.parameters = self.network.parameters()

    @property
    def body(self) -> int | None:
        """How far the network runs before the loss: all layers, or all but the fused last one."""
        return -1 if self.fused is not None else None

    @property
    def last(self) -> Any:
        return self.network.layers[-1]


@dataclass(frozen=True)
class StepResult:
    """What one step gives back: new parameters and state (in ``parameters()`` order), loss sum, correct count."""

    params: list[Array]
    state: list[dict[str, Array]]
    loss_sum: Array
    correct: Array


def losses_and_output(plan: Plan, x: Array, y_loss: Array, training: bool) -> tuple[Array, Array]:
    """Per-sample losses and the model's output (probabilities for a fused Softmax)."""
    if plan.fused is not None:
        losses = plan.fused.forward(plan.network.forward(x, training, upto=plan.body), y_loss)
        output = _fused_output(plan)
        return losses, output
    output = plan.network.forward(x, training)
    return plan.loss.forward(output, y_loss), output


def loss_sum_and_grad(plan: Plan, x: Array, y_loss: Array) -> tuple[Array, Array, Array]:
    """Training: the summed loss, the output and dL/d(output) -- dL/d(logits) when fused."""
    loss = plan.fused if plan.fused is not None else plan.loss
    inputs = plan.network.forward(x, True, upto=plan.body)
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
         *, learning_rate: Any, iteration: Any, generator: Any = None) -> StepResult:
    """One training step as a pure function of explicit arrays (the portable reference path).

    ``params``/``state``: arrays in ``plan.network.parameters()`` order (state:
    one dict per parameter, missing keys start at zero); ``y_loss``/``y_acc``:
    targets prepared for the loss and the accuracy; ``learning_rate`` and
    ``iteration`` (1-based) may be arrays (traced by a compiler).  ``generator``
    (a ``portable_nn.Generator``) draws this step's dropout masks.
    """
    plist = plan.network.parameters()
    if len(params) != len(plist) or len(state) != len(plist):
        raise ValueError(f"step: the network has {len(plist)} parameters, got {len(params)} values "
                         f"and {len(state)} states")
    optimizer = plan.optimizer
    if optimizer is None:
        raise RuntimeError("step: the plan has no optimizer")
    saved = [(p.value, dict(p.state), p.grad) for p in plist]
    random_layers = [layer for layer in plan.network.layers if hasattr(layer, "generator")]
    saved_generators = [layer.generator for layer in random_layers]
    try:
        with kernels.fast_paths(False):
            for p, value in zip(plist, params, strict=True):
                p.value = value
            if generator is not None:
                for layer in random_layers:
                    layer.generator = generator
            loss_sum, output, dvalue = loss_sum_and_grad(plan, x, y_loss)
            correct, _ = count_correct(plan, output, y_acc)
            plan.network.backward(dvalue, upto=plan.body)
            new_params, new_state = [], []
            for p, s in zip(plist, state, strict=True):
                xp = _xp.namespace(p.value)
                current = {key: s[key] if s.get(key) is not None else xp.zeros_like(p.value)
                           for key in optimizer.state_names}
                value, current = optimizer.rule(xp, p.value, p.grad, current, learning_rate, iteration)
                new_params.append(value)
                new_state.append(current)
    finally:
        for p, (value, st, grad) in zip(plist, saved, strict=True):
            p._value, p.state, p.grad = value, st, grad
        for layer, g in zip(random_layers, saved_generators, strict=True):
            layer.generator = g
    return StepResult(new_params, new_state, loss_sum, correct)


def evaluate_sums(plan: Plan, X: Array, y_loss: Array, y_acc: Array,
                  batches: list[slice]) -> tuple[Array, Array]:
    """Mean loss and accuracy over ``X`` in ``batches`` (0-d device arrays, no host sync)."""
    xp = _xp.namespace(X)
    loss_sum: Any = 0.0
    correct_sum: Any = 0
    compared = 0
    losses = None
    for s in batches:
        losses, output = losses_and_output(plan, X[s, ...], y_loss[s, ...], training=False)
        correct, n = count_correct(plan, output, y_acc[s, ...])
        loss_sum = loss_sum + xp.sum(losses)
        correct_sum, compared = correct_sum + correct, compared + n
    assert losses is not None
    return loss_sum / X.shape[0], xp.astype(correct_sum, losses.dtype) / compared
