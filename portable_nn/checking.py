"""Finite-difference gradient check of any layer, activation or loss.

``gradcheck(obj, x, y_true=None)`` compares the hand-written backward pass
with central differences, evaluated by the object's own ``forward`` on the
caller's backend and device (like ``torch.autograd.gradcheck``).  Inputs
must be float64; a layer whose parameters are float32 is checked as a
float64 copy (the layer itself is left alone), so a correct layer is never
blamed for float32 rounding.

* A layer is checked through ``L = sum(forward(x) * G) + regularization``
  with a fixed random ``G``: ``backward(G)`` must give ``dL/dx`` and, for
  ``Dense``, ``dL/dweight`` and ``dL/dbias``.
* A loss is checked through ``L = mean(forward(y_pred, y_true))``:
  ``backward(y_pred, y_true)`` must give ``dL/dy_pred``.  For
  ``SoftmaxCategoricalCrossentropy`` ``x`` are logits and the backward is
  fed the stored probabilities.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _xp
from ._typing import Array
from .layers import Layer
from .losses import Loss, SoftmaxCategoricalCrossentropy
from .random import Generator

__all__ = ["gradcheck", "GradcheckResult", "check_all"]


@dataclass
class GradcheckResult:
    """Max relative error per checked gradient, and whether all passed."""

    name: str
    errors: dict[str, float] = field(default_factory=dict)
    ok: bool = True

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    def __str__(self) -> str:
        parts = ", ".join(f"{k}: {v:.2e}" for k, v in self.errors.items())
        return f"{self.name}: {'ok' if self.ok else 'FAILED'} (max rel. error {parts})"


def _compare(analytic: Any, numeric: np.ndarray, rtol: float, atol: float) -> tuple[float, bool]:
    """Max error relative to the largest numeric entry, and ``allclose`` with ``atol`` widened by the
    differences' own rounding (``numeric.noise``)."""
    a = np.asarray(_xp.to_numpy(analytic), dtype=np.float64)
    if a.shape != numeric.shape:
        return float("inf"), False
    scale = max(float(np.max(np.abs(numeric), initial=0.0)), 1e-300)
    err = float(np.max(np.abs(a - numeric), initial=0.0)) / scale
    return err, bool(np.allclose(a, numeric, rtol=rtol, atol=atol + getattr(numeric, "noise", 0.0)))


class _Differences(np.ndarray):
    """Central differences, with ``noise``: the rounding they carry, ``4 * eps_64 * max|f| / h``.

    A difference quotient of a function of size ``|f|`` is off by about
    ``ulp(f) / h`` from rounding alone: ~5e-10 for ``|f| ~ 5`` at ``h = 1e-6``.
    An absolute tolerance below that fails a correct backward pass on an
    entry near zero (BatchNorm's ``dinput`` has such entries), so it widens by that much.
    """

    noise: float = 0.0


def _numeric(f: Any, host: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of scalar ``f(host_array)`` w.r.t. every element (``host``: C-ordered, written in place)."""
    grad = np.zeros(host.shape, dtype=np.float64)
    flat = host.reshape(-1)
    out = grad.reshape(-1)
    largest = 0.0
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f(host)
        flat[i] = old - eps
        minus = f(host)
        flat[i] = old
        out[i] = (plus - minus) / (2 * eps)
        largest = max(largest, abs(plus), abs(minus))
    result = grad.view(_Differences)
    result.noise = 4 * float(np.finfo(np.float64).eps) * largest / eps
    return result


def gradcheck(
    obj: Any,
    x: Any,
    y_true: Any = None,
    *,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> GradcheckResult:
    """Check ``obj.backward`` against central differences of ``obj.forward``.

    ``x`` (and ``y_true`` for losses) are arrays of the backend to check;
    every forward runs there.  Returns a :class:`GradcheckResult`; raises
    ``AssertionError`` with the errors when a gradient is off, unless
    ``raise_on_failure=False``.
    """
    xp = _xp.namespace(x)
    _xp.check_floating(xp, x, "gradcheck: x")
    if x.dtype != xp.float64:
        raise ValueError(f"gradcheck: use float64 inputs for finite differences, got {x.dtype}")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"gradcheck: eps must be a finite number > 0, got {eps!r}")
    name = type(obj).__name__
    obj = _checked_copy(obj)
    parameters = list(obj.parameters()) if hasattr(obj, "parameters") else []
    dev = _xp.array_device(x)
    rng = np.random.default_rng(seed)
    result = GradcheckResult(name)
    is_loss = isinstance(obj, Loss)
    generator_seed = getattr(getattr(obj, "generator", None), "seed", None)

    def to_backend(host: np.ndarray) -> Any:
        return xp.asarray(host, dtype=xp.float64, device=dev)

    def run_forward(inp: Any) -> Any:
        if generator_seed is not None:  # random layers: the same mask at every evaluation
            obj.generator = Generator(generator_seed)
        return obj.forward(inp) if not is_loss else obj.forward(inp, y_true)

    if is_loss:
        analytic, numeric = _loss_gradients(obj, x, y_true, run_forward, to_backend, eps)
    else:
        analytic, numeric = _layer_gradients(obj, parameters, x, run_forward, to_backend, rng, eps)
    for key, num in numeric.items():
        err, ok = _compare(analytic[key], num, rtol, atol)
        result.errors[key] = err
        result.ok = result.ok and ok
    if raise_on_failure and not result.ok:
        raise AssertionError(f"gradcheck failed: {result}")
    return result


def _checked_copy(obj: Any) -> Any:
    """What ``gradcheck`` runs: a copy sharing nothing the check writes, in float64, computing dL/dX.

    The caller's layer keeps its gradients, cached inputs, random stream and
    dtype; a float32 layer is checked as float64 (rounding is not a wrong
    gradient); a model's first layer, which skips dL/dX, computes it here.
    """
    checked = copy.copy(obj)
    params = getattr(obj, "params", None)
    if isinstance(params, dict) and params:
        checked.params = {key: copy.copy(p) for key, p in params.items()}
        if any(p.dtype != "float64" for p in checked.params.values()):
            if hasattr(checked, "to_dtype"):
                checked.to_dtype("float64")
            else:
                for p in checked.params.values():
                    p.to_dtype("float64")
    if hasattr(checked, "need_dinput"):
        checked.need_dinput = True
    return checked


def _loss_gradients(obj: Any, x: Array, y_true: Array, run_forward: Callable[[Array], Array],
                    to_backend: Callable[[np.ndarray], Array], eps: float) -> tuple[dict[str, Array], dict[str, Any]]:
    """Analytic and numeric gradients of the mean loss w.r.t. its input."""
    xp = _xp.namespace(x)

    def scalar(inp: Any) -> float:
        return float(_xp.to_numpy(xp.mean(run_forward(inp))))

    scalar(x)
    fed = obj.output if isinstance(obj, SoftmaxCategoricalCrossentropy) else x
    host_x = np.array(_xp.to_numpy(x), dtype=np.float64, order="C")
    return {"dinput": obj.backward(fed, y_true)}, {"dinput": _numeric(lambda h: scalar(to_backend(h)), host_x, eps)}


def _layer_gradients(obj: Any, parameters: list[Any], x: Array, run_forward: Callable[[Array], Array],
                     to_backend: Callable[[np.ndarray], Array], rng: np.random.Generator,
                     eps: float) -> tuple[dict[str, Array], dict[str, np.ndarray]]:
    """Analytic and numeric gradients of ``L = sum(forward(x) * G) + regularization`` w.r.t. x and parameters."""
    xp = _xp.namespace(x)
    g = to_backend(rng.standard_normal(tuple(run_forward(x).shape)))

    def scalar(inp: Array) -> float:
        total = xp.sum(run_forward(inp) * g)
        if hasattr(obj, "regularization_loss"):
            total = total + obj.regularization_loss()
        return float(_xp.to_numpy(total))

    run_forward(x)
    analytic = {"dinput": obj.backward(g)}
    analytic.update({f"d{p.name}": p.grad for p in parameters})
    host_x = np.array(_xp.to_numpy(x), dtype=np.float64, order="C")
    numeric = {"dinput": _numeric(lambda h: scalar(to_backend(h)), host_x, eps)}
    for p in parameters:
        original = p.value
        host_p = np.array(_xp.to_numpy(original), dtype=np.float64, order="C")

        def scalar_p(h: np.ndarray, p: Any = p) -> float:
            p.value = to_backend(h)
            return scalar(x)

        try:
            numeric[f"d{p.name}"] = _numeric(scalar_p, host_p, eps)
        finally:
            p.value = original
    return analytic, numeric


def _loss_cases(rng: np.random.Generator, x: np.ndarray) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """Inputs and label forms per ``target_kind`` of a loss: (suffix, input, targets)."""
    p = rng.uniform(0.2, 1.0, size=x.shape)
    p /= p.sum(axis=1, keepdims=True)
    labels = np.arange(x.shape[0]) % x.shape[1]
    targets = p + rng.choice([-1, 1], size=p.shape) * rng.uniform(0.1, 1.0, size=p.shape)
    binary = (rng.uniform(size=x.shape) > 0.5).astype(np.float64)
    return {
        "classes": [(" (indices)", p, labels.astype(np.uint8)), (" (one-hot)", p, np.eye(x.shape[1])[labels])],
        "binary": [("", p, binary)],
        "values": [("", p, targets)],
    }


def _library_classes(registry: dict[str, Any], base: Any, method: str) -> list[Any]:
    """The library's own concrete classes of a registry (those that define ``method``), in definition order."""
    return [cls for cls in registry.values()
            if cls.__module__.startswith("portable_nn.") and getattr(cls, method) is not getattr(base, method)]


def check_all(asarray: Callable[[np.ndarray], Array], *, seed: int = 0) -> list[GradcheckResult]:
    """Gradient-check every layer, activation and loss of the library on one backend.

    ``asarray`` converts a host float64 NumPy array to the backend to check
    (e.g. ``lambda a: torch.asarray(a, device="cuda")``).  Returns one
    result per case, never raises for a failed check.  The cases come from
    the registries: a new layer or loss class is checked without an edit here.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 4))
    x = np.where(np.abs(x) < 0.1, 0.1 + np.abs(x), x)  # keep the ReLU kink out of each step
    cases: list[tuple[str, Any, np.ndarray, np.ndarray | None]] = [
        (cls.__name__, cls.example(seed), cls.example_input(np.random.default_rng(seed)), None)
        for cls in _library_classes(Layer.registry, Layer, "apply")]
    forms = _loss_cases(rng, x)
    for cls in _library_classes(Loss.registry, Loss, "forward"):
        for suffix, inp, targets in forms[cls.target_kind]:
            cases.append((cls.__name__ + suffix, cls(), x if cls.input_kind == "logits" else inp,
                          targets.astype(np.int64) if cls.input_kind == "logits" else targets))
    results = []
    for label, obj, inp, y in cases:
        result = gradcheck(obj, asarray(inp), None if y is None else asarray(y), rtol=1e-6, atol=1e-10,
                           seed=seed, raise_on_failure=False)
        result.name = label
        results.append(result)
    return results
