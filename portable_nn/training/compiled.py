"""Compiled training: the same hand-written step under the backend's own compiler.

``compile="auto"`` (the default of ``Model.train``, ``evaluate`` and
``predict``) compiles where the backend has a compiler and it pays off:

* **JAX** (always): one ``jax.jit`` executable runs a *block of epochs* --
  ``lax.scan`` over each epoch's full batches, then the last partial batch --
  with the parameter and optimizer-state buffers donated, the decayed
  learning rate and the step counter traced (no recompilation per step) and
  dropout keys threaded through the carry (the same stream as the eager
  path).  A small model pays one dispatch per block, not one per step.  The
  divergence guard: the host reads the block's losses back once and, where one
  is not finite, discards the block, restores the latest kept state whose
  loss was finite (a block's start) and raises, naming the first bad step.
* **PyTorch** (``compile=True`` only: ``torch.compile`` costs seconds up
  front): the step -- forward, backward, update, loss and correct count --
  under ``torch.compile``, called once per batch by the ordinary loop, whose
  guard, reports and interrupts stay as they are.

Each compiled function is cached on the model's plan, keyed by what fixes its
shapes, so a second ``train`` call of the same shape compiles nothing;
``TRACES`` counts the traces (one trace = one compilation).
"""

from __future__ import annotations

import collections
import itertools
import math
import warnings
from typing import Any

import array_api_compat
import numpy as np

from .. import _xp, kernels
from .._typing import Array, Namespace
from .guard import HINT, Kept
from .step import Plan, StepResult, apply_step, count_correct, evaluate_sums, random_layers, regularization_loss

__all__ = ["TRACES", "adopt", "check_block", "choose", "evaluate_jax", "model_arrays", "placed_buffers", "predict_jax",
           "torch_step", "torch_stepper", "train_block"]

#: How many times each compiled function was traced (JAX: one trace, one XLA compilation).
TRACES: collections.Counter[str] = collections.Counter()
_STEP_IDS = itertools.count()


def choose(what: str, xp: Namespace, compile: Any) -> str | None:
    """The compiler to use for ``Model.<what>`` on ``xp``: ``"jax"``, ``"torch"`` or None."""
    if not (compile is True or compile is False or compile == "auto"):
        raise ValueError(f"Model.{what}: compile must be 'auto', True or False, got {compile!r}")
    if compile is False:
        return None
    if array_api_compat.is_jax_namespace(xp):
        return "jax"
    if array_api_compat.is_torch_namespace(xp):
        return "torch" if compile is True else None  # torch.compile costs seconds: opt-in
    if compile is True:
        name = getattr(xp, "__name__", str(xp)).split(".")[-1]
        raise ValueError(f"Model.{what}: compile=True, but {name} has no compiler; compiled steps run on JAX "
                         f"(jax.jit) and PyTorch (torch.compile)")
    return None


# -- JAX: blocks of epochs under one jax.jit -------------------------------------

def _jax_draw(rand: list[Any], keys: list[Any]) -> tuple[Any, Any]:
    """Dropout draws from traced JAX keys (the eager stream's keys, threaded through the carry):
    ``(draw, next_keys)`` -- ``next_keys()`` gives the keys after the draws."""
    streams = {id(layer): layer.generator.with_jax_key(key) for layer, key in zip(rand, keys, strict=True)}

    def draw(layer: Any, x: Array) -> Any:
        return layer.noise(x, True, streams.get(id(layer)))

    return draw, lambda: [streams[id(layer)].jax_key() for layer in rand]


def _schedule(plan: Plan, xp: Namespace, it: Array, rates: Array) -> tuple[Any, Any]:
    """The learning rate and the 1-based step of iteration ``it`` (0-based), traced, in the parameters' dtype.

    ``rates``: ``[learning_rate, current_learning_rate]``, traced (a change between calls recompiles nothing):
    with decay the rate follows ``learning_rate / (1 + decay * it)``, as ``pre_update_params`` sets it;
    without, it is ``current_learning_rate``, as the eager step uses it.
    """
    optimizer = plan.optimizer
    assert optimizer is not None
    itf = xp.astype(it, rates.dtype)
    return optimizer.rate_at(itf, xp, current=rates[1]), itf + 1.0


def _make_train_block(model_plan: Plan, xp: Namespace, bs: int, capacity: int,
                      val_batches: list[slice] | None) -> Any:
    """One block of up to ``capacity`` epochs in batches of ``bs`` rows: it runs ``count`` of them (an argument,
    so that one compilation serves every block length up to the capacity; see ``_epochs_loop``).  Shapes and
    shuffling come from the arguments at trace time: the caller's cache key holds them."""
    import jax

    plan = model_plan  # the step reads the layers' settings only: every array is an argument
    rand = random_layers(plan)
    rates: Any = None

    def one(carry: Any, batch: Any) -> Any:
        params, state, bufs, keys, it = carry
        x, yl, ya = batch
        draw, next_keys = _jax_draw(rand, keys)
        lr, t = _schedule(plan, xp, it, rates)
        out: StepResult = apply_step(plan, params, state, x, yl, ya, lr, t, bufs, draw)
        # No finiteness select here: a block with a non-finite loss is discarded whole, the model restored to
        # the last verified block start and the first bad step named (``check_block``).
        compared = xp.asarray(int(math.prod(ya.shape)), dtype=it.dtype)
        figures = (out.loss_sum, xp.astype(out.correct, it.dtype), compared)
        return (out.params, out.state, out.buffers, next_keys(), it + 1), figures

    def epoch(carry: Any, order: Any, X: Array, yl: Array, ya: Array, val: Any) -> Any:
        data = (X, yl, ya) if order is None else tuple(xp.take(a, order, axis=0) for a in (X, yl, ya))
        carry, outs = _scan_batches(xp, one, carry, data, bs)
        losses, correct, compared = (xp.concat([o[i] for o in outs]) for i in range(3))
        return carry, (losses, correct, compared, _epoch_end(plan, xp, carry[0], carry[2], val, val_batches))

    def block(params: Any, state: Any, bufs: Any, keys: Any, it: Any, lrs: Any, count: Any, X: Array, yl: Array,
              ya: Array, orders: Any, val: Any) -> Any:
        nonlocal rates
        TRACES["jax:train"] += 1
        rates = lrs
        carry = (params, state, bufs, keys, it)
        carry, outs = _epochs_loop(xp, lambda c, order: epoch(c, order, X, yl, ya, val), carry, count, capacity,
                                   orders)
        params_new, state_new, bufs_new = carry[0], carry[1], carry[2]
        arrays = list(params_new) + [a for s in state_new for a in s.values()] + list(bufs_new)
        finite = xp.all(xp.stack([xp.all(xp.isfinite(a)) for a in arrays]))
        return (params_new, state_new, bufs_new, carry[3], carry[4]), outs, finite

    # No buffer donation: the model's arrays are the user's to read (a callback may keep a reference to a
    # weight; a donated buffer would be deleted under it), and the block's inputs are the kept snapshot.
    return jax.jit(block)


def _epochs_loop(xp: Namespace, epoch: Any, carry: Any, count: Array, capacity: int, orders: Any) -> Any:
    """``epoch(carry, order)`` ``count`` times (a traced number, at most ``capacity``): the carry, and each
    output stacked in ``capacity`` rows, the first ``count`` written (a ``while_loop``, not a scan over the
    capacity: no cost for the rows a short block leaves)."""
    import jax

    order = (lambda e: None) if orders is None else (lambda e: orders[e])
    shapes = jax.eval_shape(lambda c: epoch(c, order(0))[1], carry)
    outs = jax.tree_util.tree_map(lambda a: xp.zeros((capacity, *a.shape), dtype=a.dtype), shapes)

    def body(loop: Any) -> Any:  # epoch e: its outputs go to row e
        e, c, outs = loop
        c, out = epoch(c, order(e))
        return e + 1, c, jax.tree_util.tree_map(lambda rows, row: jax.lax.dynamic_update_index_in_dim(
            rows, row, e, 0), outs, out)

    _, carry, outs = jax.lax.while_loop(lambda loop: loop[0] < count, body,
                                        (xp.asarray(0, dtype=count.dtype), carry, outs))
    return carry, outs


def _epoch_end(plan: Plan, xp: Namespace, params: list[Array], bufs: list[Array], val: Any,
               val_batches: list[slice] | None) -> Array:
    """``[regularization loss, (validation loss, validation accuracy)]`` of the model at an epoch's end (traced);
    validation runs with the running statistics so far."""
    dtype = params[0].dtype
    figures = [xp.asarray(regularization_loss(plan, params), dtype=dtype)]
    if val is not None:
        Xv, ylv, yav = val
        arrays = plan.network.arrays(params, bufs)
        figures.extend(xp.asarray(v, dtype=dtype) for v in evaluate_sums(plan, Xv, ylv, yav, val_batches or [], arrays))
    return xp.stack(figures)


def _scan_batches(xp: Namespace, one: Any, carry: Any, data: tuple[Array, ...], bs: int) -> tuple[Any, list[Any]]:
    """``one(carry, batch)`` over the batches of ``bs`` rows of ``data``: a ``lax.scan`` over the full batches,
    then one call on the last partial batch.  The outputs come as a list of stacked trees (one or two)."""
    import jax

    n = int(data[0].shape[0])
    nb, rem = divmod(n, bs)
    outs = []
    if nb:
        xs = tuple(xp.reshape(a[:nb * bs, ...], (nb, bs, *a.shape[1:])) for a in data)
        carry, out = jax.lax.scan(one, carry, xs)
        outs.append(out)
    if rem:
        carry, out = one(carry, tuple(a[nb * bs:, ...] for a in data))
        outs.append(jax.tree_util.tree_map(lambda v: v[None, ...], out))
    return carry, outs


def _signature(plan: Plan) -> str:
    """What a trace bakes in besides shapes: every layer's, the loss's, the accuracy's and the optimizer's
    settings (not the learning rates: they are traced inputs)."""
    objects = [*plan.network.layers, plan.loss, plan.accuracy, plan.optimizer]
    configs = [(type(o).__name__, {k: v for k, v in getattr(o, "get_config", dict)().items()
                                   if k != "learning_rate"}) for o in objects]
    regularizers = [(p.l1, p.l2) for p in plan.parameters]
    return repr((configs, regularizers, getattr(plan.accuracy, "precision", None), plan.weights is not None))


def _cached(plan: Plan, key: tuple[Any, ...], make: Any) -> Any:
    key = (*key, _signature(plan), kernels.fast_paths_enabled())  # the kernels or the portable path, at trace time
    fn = plan.compiled.get(key)
    if fn is None:
        fn = plan.compiled[key] = make()
    return fn


def train_block(plan: Plan, xp: Namespace, n: int, bs: int, capacity: int, shuffle: bool,
                val_batches: list[slice] | None) -> Any:
    """The compiled block of up to ``capacity`` epochs over ``n`` rows in batches of ``bs`` (cached on the plan):
    ``fn(params, state, bufs, keys, it, rates, count, X, y_loss, y_acc, orders, val)`` runs ``count`` epochs."""
    key = ("jax:train", n, bs, capacity, shuffle, val_batches and tuple((s.start, s.stop) for s in val_batches))
    return _cached(plan, key, lambda: _make_train_block(plan, xp, bs, capacity, val_batches))


def model_arrays(plan: Plan, X: Array) -> tuple[list[Array], list[dict[str, Array]]]:
    """The model's parameters and optimizer state (zeros where the optimizer has none yet), checked to live
    where X lives."""
    optimizer = plan.optimizer
    assert optimizer is not None
    xp = _xp.namespace(X)
    params, state = [], []
    for p in plan.parameters:
        _xp.check_same_place(X, p.value, f"Model.train: {p.name}")
        params.append(p.value)
        state.append({k: p.state[k] if p.state.get(k) is not None else _zeros_like(xp, p.value)
                      for k in optimizer.state_names})
    return params, state


def _zeros_like(xp: Namespace, value: Array) -> Array:
    """``zeros_like``; on JAX host zeros placed where ``value`` is (``_xp.move``: a transfer, no compilation per
    shape)."""
    if array_api_compat.is_jax_namespace(xp):
        return _xp.move(np.zeros(value.shape, dtype=value.dtype), xp, _xp.array_device(value))
    return xp.zeros_like(value)


def placed_buffers(plan: Plan, X: Array, what: str) -> list[Array]:
    """The network's buffers (running statistics), checked to live where X lives."""
    values = plan.network.buffer_values()
    for (layer, name), value in zip(plan.network.buffers(), values, strict=True):
        _xp.check_same_place(X, value, f"Model.{what}: {type(layer).__name__}.{name}")
    return values


def check_block(kept: Kept, snapshot: Any, losses: Any, finite: bool, done: int, k: int, steps: int) -> None:
    """After a block: keep its start if its first loss was finite; on a divergence restore and raise."""
    flat = losses.reshape(-1)
    bad = np.flatnonzero(~np.isfinite(flat))
    if flat.size and math.isfinite(flat[0]):
        kept.verified = (snapshot, done + 1, 1)
    if bad.size or not finite:
        where = kept.restore_verified(fallback=snapshot)
        if bad.size:
            e, s = divmod(int(bad[0]), steps)
            raise FloatingPointError(f"Model.train: the loss became {flat[bad[0]]} at epoch {done + 1 + e}, "
                                     f"step {s + 1}; {where} {HINT}")
        raise FloatingPointError(f"Model.train: the parameters or the optimizer state became non-finite by epoch "
                                 f"{done + k}, step {steps} (an update overflowed); {where} {HINT}")


def adopt(plan: Plan, params: list[Array], state: list[dict[str, Array]], keys: list[Any],
           iterations: int) -> None:
    """A finished block's arrays become the model's: parameters, state, dropout keys, the optimizer's counters."""
    optimizer = plan.optimizer
    assert optimizer is not None
    for p, value, st in zip(plan.parameters, params, state, strict=True):
        p.adopt(value, st)
    for layer, key in zip(random_layers(plan), keys, strict=True):
        layer.generator.continue_jax(key)
    optimizer.iterations = iterations - 1
    optimizer.pre_update_params()  # the learning rate of the last step, as the eager loop leaves it
    optimizer.iterations = iterations


# -- JAX: inference -----------------------------------------------------------------

def _make_infer(model_plan: Plan, xp: Namespace, n: int, bs: int, with_loss: bool) -> Any:
    import jax

    from .step import losses_and_output

    plan = model_plan  # inference writes nothing: every array is an argument

    def run(params: Any, bufs: Any, X: Array, yl: Any, ya: Any) -> Any:
        TRACES["jax:evaluate" if with_loss else "jax:predict"] += 1
        arrays = plan.network.arrays(params, bufs)  # inputs, not constants of the trace: they change in training

        def one(carry: Any, batch: Any) -> Any:
            if not with_loss:
                return carry, plan.network.infer(batch[0], arrays=arrays)
            x, ylb, yab = batch
            losses, output = losses_and_output(plan, x, ylb, arrays)
            correct, compared = count_correct(plan, output, yab)
            return carry, (xp.sum(losses), xp.astype(correct, losses.dtype), xp.asarray(compared + 0.0,
                                                                                       dtype=losses.dtype))

        data = (X,) if not with_loss else (X, yl, ya)
        _, outs = _scan_batches(xp, one, None, data, bs)
        if not with_loss:
            return xp.concat([xp.reshape(o, (-1, *o.shape[2:])) for o in outs], axis=0)
        loss_sum, correct, compared = (xp.sum(xp.concat([o[i] for o in outs])) for i in range(3))
        return loss_sum / n, correct / compared

    return jax.jit(run)


def _placed_values(plan: Plan, X: Array, what: str) -> list[Array]:
    values = [p.value for p in plan.parameters]
    for p, value in zip(plan.parameters, values, strict=True):
        _xp.check_same_place(X, value, f"Model.{what}: {p.name}")
    return values


def predict_jax(plan: Plan, X: Array, batch_size: int | None) -> Array:
    xp = _xp.namespace(X)
    n = int(X.shape[0])
    bs = n if not batch_size else min(batch_size, n)
    fn = _cached(plan, ("jax:predict", n, bs), lambda: _make_infer(plan, xp, n, bs, False))
    return fn(_placed_values(plan, X, "predict"), placed_buffers(plan, X, "predict"), X, None, None)


def evaluate_jax(plan: Plan, X: Array, y_loss: Array, y_acc: Array, batch_size: int | None) -> tuple[Array, Array]:
    xp = _xp.namespace(X)
    n = int(X.shape[0])
    bs = n if not batch_size else min(batch_size, n)
    fn = _cached(plan, ("jax:evaluate", n, bs), lambda: _make_infer(plan, xp, n, bs, True))
    loss, acc = fn(_placed_values(plan, X, "evaluate"), placed_buffers(plan, X, "evaluate"), X, y_loss, y_acc)
    return loss, acc


# -- PyTorch: the step under torch.compile ---------------------------------------------

def torch_step(plan: Plan) -> Any:
    """The plan's step under ``torch.compile`` (cached):
    ``(params, state, x, yl, ya, lr, t, noise, buffers) -> StepResult`` (``noise``: each dropout layer's
    U[0, 1) draw, made eagerly from the layer's own stream: ``torch.Generator`` cannot be traced).  The
    uncompiled function is its ``eager`` attribute: what runs once dynamo's recompile limit is reached."""
    def make() -> Any:
        import torch

        rand = random_layers(plan)

        def run(params: Any, state: Any, x: Array, yl: Array, ya: Array, lr: Array, t: Array,
                noise: list[Array], buffers: list[Array]) -> StepResult:
            draws = {id(layer): u for layer, u in zip(rand, noise, strict=True)}  # drawn eagerly, passed in
            return apply_step(plan, params, state, x, yl, ya, lr, t, buffers, lambda layer, _: draws.get(id(layer)))

        # dynamo caches compiled graphs per *code object*, at most recompile_limit (8) of them: a code object
        # of its own per model, so that many models in one process each keep their compiled step
        run.__code__ = run.__code__.replace(co_name=f"portable_nn_step_{next(_STEP_IDS)}")
        compiled: Any = torch.compile(run, dynamic=False, fullgraph=True)
        compiled.eager = run
        return compiled

    return _cached(plan, ("torch:step",), make)


def _warn_once(plan: Plan, message: str) -> None:
    """A ``RuntimeWarning`` the first time for this model only."""
    if not plan.compiled.get("torch:warned"):
        plan.compiled["torch:warned"] = True
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _noise(plan: Plan, xp: Namespace, x: Array) -> list[Array]:
    """Each dropout layer's U[0, 1) draw for batch ``x``, from the layer's own stream (as the eager step)."""
    width, draws = int(x.shape[1]), []
    rand = random_layers(plan)
    for layer in plan.network.layers:
        if any(layer is r for r in rand):  # no draw at rate 0, as in the eager step
            draws.append(layer.generator.uniform(xp, (int(x.shape[0]), width), dtype=x.dtype,
                                                 device=_xp.array_device(x)) if layer.rate else None)
        width = getattr(layer, "n_neurons", width)
    return draws


def torch_stepper(plan: Plan) -> Any:
    """A ``train_step`` for ``fit`` that runs the compiled step; the guard sees the loss before any assignment."""
    import torch

    compiled_step = torch_step(plan)
    optimizer = plan.optimizer
    assert optimizer is not None
    plist = plan.parameters

    def train_step(plan: Plan, x: Array, y_loss: Array, y_acc: Array, before_update: Any) -> tuple[Any, Any, int]:
        first = plist[0].value
        params = [p.value for p in plist]
        state = [{k: p.state[k] if p.state.get(k) is not None else torch.zeros_like(p.value)
                  for k in optimizer.state_names} for p in plist]
        optimizer.pre_update_params()
        lr = torch.tensor(optimizer.current_learning_rate, dtype=first.dtype, device=first.device)
        t = torch.tensor(optimizer.iterations + 1, dtype=first.dtype, device=first.device)
        noise = _noise(plan, _xp.namespace(x), x)
        with warnings.catch_warnings():
            # dynamo's note that it traces through array-api-compat's lru_cache'd type checks: not ours to act on
            warnings.filterwarnings("ignore", message=".*functools.lru_cache.*", category=UserWarning)
            # and inductor's own deprecation notes while it compiles (torch.jit internals): not the user's code
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch(\..*)?$")
            args = (params, state, x, y_loss, y_acc, lr, t, noise, plan.network.buffer_values())
            try:
                out = compiled_step(*args)
            except torch._dynamo.exc.FailOnRecompileLimitHit:  # one graph per batch shape, and no more allowed
                _warn_once(plan, f"Model.train: torch.compile reached its recompile limit with batches of "
                                 f"{int(x.shape[0])} rows (each new batch shape compiles a graph); steps of "
                                 "shapes without a graph run eagerly, with the same results")
                out = compiled_step.eager(*args)  # the step is pure: nothing of the failed call remains
        if before_update is not None:
            before_update(out.loss_sum)  # may raise: nothing has been assigned yet
        plan.network.set_buffer_values(out.buffers)
        for p, value, st in zip(plist, out.params, out.state, strict=True):
            p.value = value
            for key, s in st.items():
                p.set_state(key, s)
        optimizer.post_update_params()
        return out.loss_sum, out.correct, int(math.prod(y_acc.shape))

    return train_step
