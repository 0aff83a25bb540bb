"""Training, split by job: the step (``step.py``), the loop (``loop.py``), the
divergence policy (``guard.py``) and the data checks (``validate.py``)."""

from .loop import History, fit
from .step import Plan, StepResult, step, train_step

__all__ = ["History", "Plan", "StepResult", "fit", "step", "train_step"]
