"""portable_nn: hand-written backpropagation on any array-API library.

The same code trains on NumPy, CuPy, PyTorch, JAX, Dask and array-api-strict:
layers look the array namespace up from their input
(``array_api_compat.array_namespace``) and use only the array API standard.
"""

from . import datasets
from .accuracy import Accuracy, CategoricalAccuracy, RegressionAccuracy
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
from .checking import GradcheckResult, check_all, gradcheck
from .model import History, Model
from .optimizers import SGD, Adagrad, Adam, Optimizer, RMSprop
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
    "Accuracy",
    "CategoricalAccuracy",
    "RegressionAccuracy",
    "Optimizer",
    "SGD",
    "Adagrad",
    "RMSprop",
    "Adam",
    "Model",
    "History",
    "datasets",
    "gradcheck",
    "check_all",
    "GradcheckResult",
]
