"""portable_nn: hand-written backpropagation on any array-API library.

The same code trains on NumPy, CuPy, PyTorch, JAX, Dask and array-api-strict:
layers look the array namespace up from their input
(``array_api_compat.array_namespace``) and use only the array API standard.
"""

from .activations import Linear, ReLU, Sigmoid, Softmax
from .layers import Dense, Dropout, Layer
from .losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
    SoftmaxCategoricalCrossentropy,
)
from .gradcheck import GradcheckResult, gradcheck
from .random import Generator

__version__ = "0.1.0"

__all__ = [
    "Dense",
    "Dropout",
    "Layer",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Linear",
    "Loss",
    "CategoricalCrossentropy",
    "BinaryCrossentropy",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "SoftmaxCategoricalCrossentropy",
    "Generator",
    "gradcheck",
    "GradcheckResult",
]
