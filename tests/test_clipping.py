"""Gradient clipping (clipnorm, clipvalue) against PyTorch, and in training."""

import math

import numpy as np
import pytest
from helpers import classifier, data

import portable_nn as pnn
import portable_nn.schedules


def test_clipnorm_matches_torch_clip_grad_norm(backend, xp):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((5, 4)) * 3, rng.standard_normal((1, 4)), rng.standard_normal((4, 2)) * 0.1]
    for max_norm in (0.5, 100.0):
        ours = pnn.SGD(clipnorm=max_norm).clip_grads(xp, [backend.asarray(g) for g in grads])
        tensors = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
        for t, g in zip(tensors, grads, strict=True):
            t.grad = torch.asarray(g.copy())
        torch.nn.utils.clip_grad_norm_(tensors, max_norm)
        for a, t in zip(ours, tensors, strict=True):
            backend.assert_close(a, t.grad.numpy(), rtol=1e-13)
    clipped = pnn.Adam(clipvalue=0.5).clip_grads(xp, [backend.asarray(g) for g in grads])
    for a, g in zip(clipped, grads, strict=True):
        backend.assert_close(a, np.clip(g, -0.5, 0.5))


def test_training_with_clipping_takes_clipped_steps(backend):
    """One SGD step with clipnorm: the update is lr times the clipped gradient (global norm over all layers)."""
    X, y, _, _ = data(backend)
    m, ref = classifier(optimizer=pnn.SGD(1.0, clipnorm=1e-3)), classifier(optimizer=pnn.SGD(1.0))
    before = [backend.to_numpy(w) for w, _ in m.get_parameters()]
    with pnn.fast_paths(False):
        ref.train(X, y, epochs=1, verbose=False, compile=False)  # the gradients stay on the layers
    m.train(X, y, epochs=1, verbose=False)
    grads = [backend.to_numpy(p.grad) for p in ref.plan.parameters]
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
    assert norm > 1e-3  # 0.0027: the clip applies
    for (w, _), w0, g in zip(m.get_parameters(), before, grads[::2], strict=True):
        backend.assert_close(w, w0 - g * (1e-3 / (norm + 1e-6)), rtol=1e-9, atol=1e-15)
    assert pnn.SGD(clipnorm=2.0).get_config()["clipnorm"] == 2.0
    with pytest.raises(ValueError, match="clipnorm must be a finite number > 0"):
        pnn.Adam(clipnorm=0)
