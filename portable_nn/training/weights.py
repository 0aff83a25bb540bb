"""Per-sample weights for ``Model.train(sample_weight=, class_weight=)``.

Built once per call on the host (one read of the labels for ``class_weight``), checked, and sent to the
data's library and device once.  The weighted loss is ``sum_i w_i L_i / n`` (Keras's convention); the losses'
``forward_backward`` weights each sample's gradient row by ``w_i`` (``losses.Loss.forward_backward``).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .. import _xp

__all__ = ["host_weights", "sample_weights"]


def sample_weights(what: str, X: Any, y: Any, sample_weight: Any, class_weight: Any, *, target_kind: str,
                   n_outputs: int | None) -> np.ndarray | None:
    """The product of ``sample_weight`` and the weights of each sample's class (host float64), or None."""
    if sample_weight is None and class_weight is None:
        return None
    if _xp.is_lazy(X):
        raise TypeError(f"{what}: sample_weight and class_weight need in-memory arrays, got {_xp.describe(X)}; "
                        "compute the Dask arrays first")
    n = int(X.shape[0])
    weights = np.ones(n, dtype=np.float64)
    if sample_weight is not None:
        weights = weights * host_weights(what, sample_weight, n)
    if class_weight is not None:
        weights = weights * _class_weights(what, y, class_weight, target_kind, n_outputs)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(f"{what}: the sample weights must be finite and >= 0; got min {weights.min()!r}, "
                         f"max {weights.max()!r}")
    if not np.any(weights > 0):
        raise ValueError(f"{what}: every sample weight is 0: there is nothing to train on")
    return weights


def host_weights(what: str, sample_weight: Any, n: int) -> np.ndarray:
    """``sample_weight`` (any array, list or tuple) as a host float64 vector of ``n`` weights (checked)."""
    given = np.asarray(_xp.to_numpy(sample_weight) if _xp.array_api_compat.is_array_api_obj(sample_weight)
                       else sample_weight)
    if given.ndim != 1 or given.shape[0] != n:
        raise ValueError(f"{what}: sample_weight must have shape ({n},), one weight per sample, "
                         f"got {tuple(given.shape)}")
    if given.dtype.kind not in "biuf":
        raise TypeError(f"{what}: sample_weight must be real numbers, got dtype {given.dtype}")
    return given.astype(np.float64)


def _classes(what: str, y: Any, target_kind: str, n_outputs: int | None) -> tuple[np.ndarray, int]:
    """Each sample's class (host ints) and the number of classes."""
    labels = np.asarray(_xp.to_numpy(y))
    if target_kind == "classes":
        k = int(n_outputs or 0)
        return (labels.astype(np.int64) if labels.ndim == 1 else np.argmax(labels, axis=1)), k
    if target_kind == "binary" and (labels.ndim == 1 or labels.shape[1] == 1):
        return labels.reshape(-1).astype(np.int64), 2
    raise ValueError(f"{what}: class_weight needs one class per sample (a categorical loss, or a binary one "
                     f"with one output); this loss has {target_kind!r} targets of shape {tuple(labels.shape)}")


def _class_weights(what: str, y: Any, class_weight: Any, target_kind: str, n_outputs: int | None) -> np.ndarray:
    classes, k = _classes(what, y, target_kind, n_outputs)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"{what}: class_weight must be a dict {{class: weight}} or 'balanced', "
                             f"got {class_weight!r}")
        counts = np.bincount(classes, minlength=k).astype(np.float64)
        # scikit-learn's "balanced": n_samples / (n_classes present * count); an absent class weighs nothing
        present = int(np.count_nonzero(counts))
        table = np.divide(classes.size, present * counts, out=np.zeros(counts.size), where=counts > 0)
        return np.asarray(table[classes], dtype=np.float64)
    if not isinstance(class_weight, dict):
        raise TypeError(f"{what}: class_weight must be a dict {{class: weight}} or 'balanced', "
                        f"got {type(class_weight).__name__}")
    table = np.ones(k, dtype=np.float64)  # a class not named weighs 1 (Keras)
    for key, value in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, numbers.Integral) or not 0 <= int(key) < k:
            raise ValueError(f"{what}: class_weight keys must be class indices in [0, {k}), got {key!r}")
        table[int(key)] = float(value)
    return np.asarray(table[classes], dtype=np.float64)
