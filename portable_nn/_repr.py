"""One-line reprs from ``get_config()``: only the arguments that differ from the constructor's defaults."""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["config_repr"]


def config_repr(obj: Any) -> str:
    """``Dense(n_inputs=2, n_neurons=64, seed=0)`` -- the class and its non-default constructor arguments."""
    config: dict[str, Any] = getattr(obj, "get_config", dict)()
    try:
        parameters = inspect.signature(type(obj).__init__).parameters
    except (TypeError, ValueError):  # pragma: no cover - a builtin __init__
        parameters = {}  # type: ignore[assignment]
    shown = []
    for key, value in config.items():
        default = parameters[key].default if key in parameters else inspect.Parameter.empty
        if default is inspect.Parameter.empty or default != value:
            shown.append(f"{key}={value!r}")
    return f"{type(obj).__name__}({', '.join(shown)})"
