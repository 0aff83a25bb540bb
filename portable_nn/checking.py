"""Finite-difference gradient check of any layer, activation or loss.

``gradcheck(obj, x, y_true=None)`` compares the hand-written backward pass
with central differences, evaluated by the object's own ``forward`` on the
caller's backend and device (like ``torch.autograd.gradcheck``).  Use float64.

* A layer is checked through ``L = sum(forward(x) * G) + regularization``
  with a fixed random ``G``: ``backward(G)`` must give ``dL/dx`` and, for
  ``Dense``, ``dL/dweight`` and ``dL/dbias``.
* A loss is checked through ``L = mean(forward(y_pred, y_true))``:
  ``backward(y_pred, y_true)`` must give ``dL/dy_pred``.  For
  ``SoftmaxCategoricalCrossentropy`` ``x`` are logits and the backward is
  fed the stored probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _xp
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
    a = np.asarray(_xp.to_numpy(analytic), dtype=np.float64)
    if a.shape != numeric.shape:
        return float("inf"), False
    scale = max(float(np.max(np.abs(numeric), initial=0.0)), 1e-300)
    err = float(np.max(np.abs(a - numeric), initial=0.0)) / scale
    return err, bool(np.allclose(a, numeric, rtol=rtol, atol=atol))


def _numeric(f: Any, host: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of scalar ``f(host_array)`` w.r.t. every element."""
    grad = np.zeros(host.shape, dtype=np.float64)
    flat = host.reshape(-1)
    out = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f(host)
        flat[i] = old - eps
        minus = f(host)
        flat[i] = old
        out[i] = (plus - minus) / (2 * eps)
    return grad


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
    dev = _xp.array_device(x)
    rng = np.random.default_rng(seed)
    result = GradcheckResult(type(obj).__name__)
    is_loss = isinstance(obj, Loss)
    generator_seed = getattr(getattr(obj, "generator", None), "seed", None)

    def to_backend(host: np.ndarray) -> Any:
        return xp.asarray(host, dtype=xp.float64, device=dev)

    def run_forward(inp: Any) -> Any:
        if generator_seed is not None:  # random layers: the same mask at every evaluation
            obj.generator = Generator(generator_seed)
        return obj.forward(inp) if not is_loss else obj.forward(inp, y_true)

    host_x = np.array(_xp.to_numpy(x), dtype=np.float64)
    if is_loss:
        def scalar(inp: Any) -> float:
            return float(_xp.to_numpy(xp.mean(run_forward(inp))))

        scalar(x)
        fed = obj.output if isinstance(obj, SoftmaxCategoricalCrossentropy) else x
        analytic = {"dinput": obj.backward(fed, y_true)}
        numeric = {"dinput": _numeric(lambda h: scalar(to_backend(h)), host_x, eps)}
    else:
        out = run_forward(x)
        g_host = rng.standard_normal(tuple(out.shape))
        g = to_backend(g_host)
        params = [n for n in getattr(obj, "parameter_names", ()) if getattr(obj, n, None) is not None]

        def scalar(inp: Any) -> float:
            total = xp.sum(run_forward(inp) * g)
            if hasattr(obj, "regularization_loss"):
                total = total + obj.regularization_loss()
            return float(_xp.to_numpy(total))

        run_forward(x)
        analytic = {"dinput": obj.backward(g)}
        analytic.update({f"d{n}": getattr(obj, f"d{n}") for n in params})
        numeric = {"dinput": _numeric(lambda h: scalar(to_backend(h)), host_x, eps)}
        for n in params:
            original = getattr(obj, n)
            host_p = np.array(_xp.to_numpy(original), dtype=np.float64)

            def scalar_p(h: np.ndarray, n: str = n) -> float:
                setattr(obj, n, to_backend(h))
                return scalar(x)

            try:
                numeric[f"d{n}"] = _numeric(scalar_p, host_p, eps)
            finally:
                setattr(obj, n, original)
    for key, num in numeric.items():
        err, ok = _compare(analytic[key], num, rtol, atol)
        result.errors[key] = err
        result.ok = result.ok and ok
    if raise_on_failure and not result.ok:
        raise AssertionError(f"gradcheck failed: {result}")
    return result


def check_all(asarray: Any, *, seed: int = 0) -> list[GradcheckResult]:
    """Gradient-check every layer, activation and loss on one backend.

    ``asarray`` converts a host float64 NumPy array to the backend to check
    (e.g. ``lambda a: torch.asarray(a, device="cuda")``).  Returns one
    result per case, never raises for a failed check.
    """
    from .activations import Linear, ReLU, Sigmoid, Softmax
    from .layers import Dense, Dropout
    from .losses import (
        BinaryCrossentropy,
        CategoricalCrossentropy,
        MeanAbsoluteError,
        MeanSquaredError,
    )

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 4))
    x = np.where(np.abs(x) < 0.1, 0.1 + np.abs(x), x)  # keep the ReLU kink out of each step
    p = rng.uniform(0.2, 1.0, size=(6, 4))
    p /= p.sum(axis=1, keepdims=True)
    labels = np.arange(6) % 4
    targets = p + rng.choice([-1, 1], size=p.shape) * rng.uniform(0.1, 1.0, size=p.shape)
    binary = (rng.uniform(size=(6, 4)) > 0.5).astype(np.float64)
    dense = Dense(4, 3, seed=seed, dtype="float64", weight_scale=1.0,
                  weight_regularizer_l1=1e-3, weight_regularizer_l2=1e-3,
                  bias_regularizer_l1=1e-3, bias_regularizer_l2=1e-3)
    dense.bias = rng.uniform(0.2, 1.0, size=(1, 3))
    cases: list[tuple[str, Any, Any, Any]] = [
        ("Dense (L1+L2)", dense, x, None),
        ("ReLU", ReLU(), x, None),
        ("Sigmoid", Sigmoid(), x, None),
        ("Softmax", Softmax(), x, None),
        ("Linear", Linear(), x, None),
        ("Dropout(0.3)", Dropout(0.3, seed=seed), x, None),
        ("CategoricalCrossentropy (indices)", CategoricalCrossentropy(), p, labels.astype(np.uint8)),
        ("CategoricalCrossentropy (one-hot)", CategoricalCrossentropy(), p, np.eye(4)[labels]),
        ("SoftmaxCategoricalCrossentropy", SoftmaxCategoricalCrossentropy(), x, labels.astype(np.int64)),
        ("BinaryCrossentropy", BinaryCrossentropy(), p, binary),
        ("MeanSquaredError", MeanSquaredError(), p, targets),
        ("MeanAbsoluteError", MeanAbsoluteError(), p, targets),
    ]
    results = []
    for name, obj, inp, y in cases:
        result = gradcheck(obj, asarray(inp), None if y is None else asarray(y), rtol=1e-6, atol=1e-10,
                           seed=seed, raise_on_failure=False)
        result.name = name
        results.append(result)
    return results
