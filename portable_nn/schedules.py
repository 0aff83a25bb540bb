"""Learning-rate schedules: ``Optimizer(..., schedule=CosineDecay(...))``.

A schedule maps the base ``learning_rate`` and the number ``t`` of steps
already taken to the step's rate.  It is evaluated by ``pre_update_params``
on the host in eager training, and traced on the device inside a compiled
step (``xp`` given: no recompilation per step, no host sync).  The book's
inverse-time ``decay`` stays the optimizers' default; a schedule replaces it.

* ``InverseTimeDecay(decay)``: ``lr / (1 + decay t)`` (the book's);
* ``ExponentialDecay(rate, steps)``: ``lr * rate ** (t / steps)``;
* ``StepDecay(factor, every)``: ``lr * factor ** floor(t / every)``;
* ``CosineDecay(total_steps, warmup_steps=0, final_fraction=0)``: a linear warm-up
  ``lr (t + 1) / warmup_steps``, then ``lr (f + (1 - f) (1 + cos(pi p)) / 2)`` with ``p`` the
  fraction of the remaining steps done (held at ``f * lr`` after ``total_steps``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from . import registries
from ._repr import config_repr

__all__ = ["CosineDecay", "ExponentialDecay", "InverseTimeDecay", "Schedule", "StepDecay", "from_config"]


def _positive(owner: str, name: str, value: Any, *, integer: bool = False) -> Any:
    if integer:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
        return value
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a finite number > 0, got {value!r}")
    return value


class Schedule:
    """``schedule(learning_rate, t, xp=None)``: the rate of step ``t + 1`` (``t``: steps taken, host or traced)."""

    registry: ClassVar[dict[str, type[Schedule]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        registries.register(Schedule.registry, cls, "schedule")

    def __call__(self, learning_rate: Any, t: Any, xp: Any = None) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    def spec(self) -> dict[str, Any]:
        """What a model file stores: ``{"type": ..., "config": ...}``."""
        return {"type": type(self).__name__, "config": self.get_config()}

    def __repr__(self) -> str:
        return config_repr(self)


class InverseTimeDecay(Schedule):
    """``lr / (1 + decay t)``: the book's decay."""

    def __init__(self, decay: float) -> None:
        self.decay = _positive("InverseTimeDecay", "decay", decay)

    def __call__(self, learning_rate: Any, t: Any, xp: Any = None) -> Any:
        return learning_rate / (1.0 + self.decay * t)

    def get_config(self) -> dict[str, Any]:
        return {"decay": self.decay}


class ExponentialDecay(Schedule):
    """``lr * rate ** (t / steps)``: multiplied by ``rate`` every ``steps`` steps, smoothly."""

    def __init__(self, rate: float, steps: int) -> None:
        self.rate = _positive("ExponentialDecay", "rate", rate)
        self.steps = _positive("ExponentialDecay", "steps", steps, integer=True)

    def __call__(self, learning_rate: Any, t: Any, xp: Any = None) -> Any:
        return learning_rate * self.rate ** (t / self.steps)

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate, "steps": self.steps}


class StepDecay(Schedule):
    """``lr * factor ** floor(t / every)``: multiplied by ``factor`` every ``every`` steps."""

    def __init__(self, factor: float, every: int) -> None:
        self.factor = _positive("StepDecay", "factor", factor)
        self.every = _positive("StepDecay", "every", every, integer=True)

    def __call__(self, learning_rate: Any, t: Any, xp: Any = None) -> Any:
        drops = math.floor(t / self.every) if xp is None else xp.floor(t / self.every)
        return learning_rate * self.factor ** drops

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "every": self.every}


class CosineDecay(Schedule):
    """Linear warm-up over ``warmup_steps``, then half a cosine down to ``final_fraction * lr`` at ``total_steps``."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, final_fraction: float = 0.0) -> None:
        self.total_steps = _positive("CosineDecay", "total_steps", total_steps, integer=True)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or not 0 <= warmup_steps < total_steps:
            raise ValueError(f"CosineDecay: warmup_steps must be an integer in [0, total_steps), got {warmup_steps!r}")
        final_fraction = float(final_fraction)
        if not 0.0 <= final_fraction <= 1.0:
            raise ValueError(f"CosineDecay: final_fraction must be in [0, 1], got {final_fraction!r}")
        self.warmup_steps, self.final_fraction = warmup_steps, final_fraction

    def __call__(self, learning_rate: Any, t: Any, xp: Any = None) -> Any:
        w, total, f = self.warmup_steps, self.total_steps, self.final_fraction
        if xp is None:
            if t < w:
                return learning_rate * (t + 1) / w
            p = min(1.0, (t - w) / (total - w))
            return learning_rate * (f + (1.0 - f) * 0.5 * (1.0 + math.cos(math.pi * p)))
        p = xp.clip((t - w) / (total - w), 0.0, 1.0)
        cosine = learning_rate * (f + (1.0 - f) * 0.5 * (1.0 + xp.cos(math.pi * p)))
        return cosine if w == 0 else xp.where(t < w, learning_rate * (t + 1) / w, cosine)

    def get_config(self) -> dict[str, Any]:
        return {"total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "final_fraction": self.final_fraction}


def from_config(spec: Any) -> Schedule | None:
    """A schedule from ``None``, a ``Schedule``, or a model file's ``{"type": ..., "config": ...}``."""
    if spec is None or isinstance(spec, Schedule):
        return spec
    if isinstance(spec, dict) and spec.get("type") in Schedule.registry and isinstance(spec.get("config", {}), dict):
        return Schedule.registry[spec["type"]](**spec.get("config", {}))
    raise ValueError(f"schedule must be a portable_nn.schedules.Schedule, got {spec!r}")
