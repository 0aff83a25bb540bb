"""CuPy kernels: each update rule as one fused elementwise kernel over the flat buffers.

The kernel body is the portable formula of its optimizer, in the same order,
compiled with ``--fmad=false`` so that no multiply-add is contracted: the
float32 results are those of the portable path, in one launch instead of a
dozen.  ``ok`` (a 0-d device bool, "the loss was finite") gates the update,
so a non-finite loss never reaches the parameters and no host sync is needed.
"""

from __future__ import annotations

from typing import Any

from .._typing import Array
from ..parameter import FlatParameters

__all__ = ["apply", "relu_backward"]

_OPTIONS = ("--fmad=false",)

# name: (scalar inputs, in/out arrays besides p, body)
_SOURCES = {
    "sgd": ("float64 lr", "", "p = p - (T)lr * g;"),
    "sgd_momentum": ("float64 lr, float64 momentum", ", T u", "u = (T)momentum * u - (T)lr * g; p = p + u;"),
    "cache_rule": (
        "float64 lr, float64 eps, float64 keep, float64 add", ", T c",
        "c = (T)keep * c + (T)add * (g * g); p = p - ((T)lr * g) / (sqrt(c) + (T)eps);",
    ),
    "adam": (
        "float64 lr, float64 wd, float64 b1, float64 b2, float64 step, float64 eps", ", T m, T v",
        """
        if (wd != 0.0) { p = p - (T)(lr * wd) * p; }
        m = (T)b1 * m + (T)(1.0 - b1) * g;
        v = (T)b2 * v + (T)(1.0 - b2) * (g * g);
        p = p - (m / (sqrt(v) + (T)eps)) * (T)step;
        """,
    ),
}
KERNELS = frozenset(_SOURCES)  # the optimizer kernels this backend has (kernels.update asks)
_COMPILED: dict[str, Any] = {}


def _kernel(name: str) -> Any:
    kernel = _COMPILED.get(name)
    if kernel is None:
        import cupy

        if name == "relu_backward":
            kernel = cupy.ElementwiseKernel("T x, T d", "T out", "out = x > (T)0 ? d : (T)0",
                                            "portable_nn_relu_backward")
        else:
            scalars, arrays, body = _SOURCES[name]
            kernel = cupy.ElementwiseKernel(f"T g, bool ok, {scalars}", f"T p{arrays}",
                                            f"if (ok) {{ {body} }}", f"portable_nn_{name}", options=_OPTIONS)
        _COMPILED[name] = kernel
    return kernel


def apply(kernel: str, flat: FlatParameters, args: dict[str, Any], ok: Array | None = None) -> None:
    """Run rule ``kernel`` as one launch over the flat buffers."""
    gate = True if ok is None else ok
    if kernel == "cache_rule":  # Adagrad: c = 1*c + 1*g^2; RMSprop: c = rho*c + (1-rho)*g^2
        rho = args["rho"]
        keep, add = (1.0, 1.0) if rho is None else (rho, 1.0 - rho)
        _kernel(kernel)(flat.grad, gate, args["lr"], args["eps"], keep, add, flat.param, *flat.state)
        return
    _kernel(kernel)(flat.grad, gate, *args.values(), flat.param, *flat.state)


def relu_backward(x: Array, dvalue: Array) -> Array:
    """``where(x > 0, dvalue, 0)`` in one kernel."""
    return _kernel("relu_backward")(x, dvalue)
