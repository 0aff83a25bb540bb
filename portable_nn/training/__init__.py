"""Training, split by job: the step (``step.py``), the loop (``loop.py``), the
divergence policy (``guard.py``), the data checks (``validate.py``) and the
compiled paths (``compiled.py``)."""

from . import compiled
from .loop import History, fit
from .step import Plan, StepResult, step, train_step

__all__ = ["History", "Plan", "StepResult", "compiled", "fit", "step", "train_step"]
