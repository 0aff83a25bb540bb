"""Models and data the tests share."""

import numpy as np

import portable_nn as pnn
from portable_nn.datasets import spiral_data


def classifier(dtype="float64", optimizer=None, initializer="book"):
    m = pnn.Model().add(pnn.Dense(2, 32, seed=0, dtype=dtype, initializer=initializer)).add(pnn.ReLU())
    m.add(pnn.Dense(32, 3, seed=1, dtype=dtype)).add(pnn.Softmax())
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=optimizer or pnn.Adam(0.05)).finalize()


def data(backend):
    X, y = spiral_data(60, 3, seed=0)
    Xv, yv = spiral_data(30, 3, seed=1)
    return (backend.asarray(X, dtype=np.float64), backend.asarray(y), backend.asarray(Xv, dtype=np.float64),
            backend.asarray(yv))


def torch_grad(fn, x, dvalue):
    """PyTorch's output of ``fn`` at ``x`` and its autograd dL/dx for the upstream gradient ``dvalue``."""
    import torch

    t = torch.asarray(x.copy(), requires_grad=True)
    out = fn(t)
    out.backward(torch.asarray(dvalue))
    return out.detach().numpy(), t.grad.numpy()


def same_column_sums(monkeypatch):
    """Dense's ``dbias`` and the softmax's row sums as the ones products on both paths: the NumPy kernels that
    sum in another order than the portable path (equal to rounding; Adam turns a rounding sign on a near-zero
    gradient into a full step), so that a bit-for-bit comparison of the other kernels holds over many steps."""
    monkeypatch.setattr(pnn.kernels, "column_sums", lambda d: np.ones((1, d.shape[0]), dtype=d.dtype) @ d)
    monkeypatch.setattr(pnn.kernels, "row_sums", lambda z: z @ np.ones((z.shape[1], 1), dtype=z.dtype))
