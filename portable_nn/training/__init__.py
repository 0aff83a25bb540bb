"""Training, split by job: the pure step (``step.py``), the one loop (``engine.py``), the runners that plug
into it (``runners.py``: eager, ``torch.compile``, ``jax.jit`` blocks; MPI through a reducer), the sources of
batches (``loop.InMemory``, ``stream.Streamed``), the divergence policy (``guard.py``), the data checks
(``validate.py``) and the compiled functions (``compiled.py``)."""

from . import calls, compiled
from .loop import History
from .runners import fit
from .step import Plan, StepResult, step, train_step

__all__ = ["History", "Plan", "StepResult", "calls", "compiled", "fit", "step", "train_step"]
