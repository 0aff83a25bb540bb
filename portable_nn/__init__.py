"""portable_nn: hand-written backpropagation on any array-API library.

The same code trains on NumPy, CuPy, PyTorch, JAX, Dask and array-api-strict:
layers look the array namespace up from their input
(``array_api_compat.array_namespace``) and use only the array API standard.
"""

from . import activations, callbacks, datasets, metrics, schedules
from .accuracy import Accuracy, CategoricalAccuracy, RegressionAccuracy
from .activations import *  # noqa: F403 - every activation class, listed in activations.__all__
from .checking import GradcheckResult, check_all, gradcheck
from .conv import AvgPool2D, Conv2D, Flatten, GlobalAvgPool2D, MaxPool2D
from .kernels import fast_paths, fast_paths_enabled, set_fast_paths
from .layers import Dense, Dropout, Layer
from .losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    HuberLoss,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
    SoftmaxCategoricalCrossentropy,
)
from .model import History, Model
from .normalization import BatchNorm, LayerNorm
from .optimizers import SGD, Adagrad, Adam, Optimizer, RMSprop
from .parameter import Parameter
from .random import Generator
from .training import step

__version__ = "0.1.0"

__all__ = [
    "Dense",
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
    "GlobalAvgPool2D",
    "Flatten",
    "Dropout",
    "Layer",
    "LayerNorm",
    "BatchNorm",
    "HuberLoss",
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
    "callbacks",
    "metrics",
    "schedules",
    "gradcheck",
    "check_all",
    "GradcheckResult",
    "Parameter",
    "fast_paths",
    "fast_paths_enabled",
    "set_fast_paths",
    "step",
]
__all__ += activations.__all__
