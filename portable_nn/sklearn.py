"""scikit-learn estimators: ``NeuralNetClassifier`` and ``NeuralNetRegressor``.

They pass scikit-learn's ``check_estimator`` and support its array API
dispatch: with ``sklearn.set_config(array_api_dispatch=True)``, PyTorch or
CuPy inputs are trained on and predicted on their own device (no host copy).
Needs scikit-learn (``pip install portable_nn[sklearn]``).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _xp
from .accuracy import CategoricalAccuracy, RegressionAccuracy
from .activations import Linear, ReLU, Softmax
from .layers import Dense, Dropout
from .losses import CategoricalCrossentropy, MeanSquaredError
from .model import Model
from .optimizers import Adam

__all__ = ["NeuralNetClassifier", "NeuralNetRegressor"]


def _dispatching() -> bool:
    import sklearn

    return bool(sklearn.get_config().get("array_api_dispatch", False))


def _float_dtypes(X: Any) -> list[Any]:
    """float64/float32 of X's namespace (dispatch on) or NumPy's, for validate_data."""
    if _dispatching() and _xp.array_api_compat.is_array_api_obj(X) and not _xp.is_numpy_array(X):
        xp = _xp.namespace(X)
        return [xp.float64, xp.float32]
    return [np.float64, np.float32]


class _NeuralNetBase(BaseEstimator):
    """Shared hyper-parameters and the network builder."""

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (64,),
        *,
        learning_rate: float = 0.01,
        decay: float = 0.0,
        epochs: int = 200,
        batch_size: int | None = None,
        l2: float = 0.0,
        dropout: float = 0.0,
        dtype: str = "float64",
        random_state: int | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.learning_rate = learning_rate
        self.decay = decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.l2 = l2
        self.dropout = dropout
        self.dtype = dtype
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        return tags

    def _seed(self) -> int:
        """A seed from ``random_state``: None, an int or a ``RandomState``, as ``MLPClassifier`` takes them."""
        state = self.random_state
        if state is None:
            return int(np.random.SeedSequence().generate_state(1)[0] % (2**31))
        if isinstance(state, numbers.Integral) and not isinstance(state, bool):
            return int(state)
        if isinstance(state, np.random.RandomState):
            return int(state.randint(2**31))
        raise ValueError(f"{type(self).__name__}: random_state must be None, an int or a numpy RandomState "
                         f"(as for MLPClassifier), got {state!r}")

    def _sizes(self) -> tuple[int, ...]:
        """``hidden_layer_sizes`` as a tuple of positive ints (an int is one layer, as for MLPClassifier)."""
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if isinstance(sizes, numbers.Integral) else tuple(sizes)
        if any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in sizes):
            raise ValueError(f"{type(self).__name__}: hidden_layer_sizes must be positive integers, "
                             f"got {self.hidden_layer_sizes!r}")
        return tuple(int(h) for h in sizes)

    def _build(self, n_in: int, n_out: int, output: Any, loss: Any, accuracy: Any) -> Model:
        sizes = self._sizes()
        seed = self._seed()
        model = Model()
        width = n_in
        for i, h in enumerate(sizes):
            model.add(Dense(width, h, seed=seed + i, weight_scale=(2.0 / width) ** 0.5, dtype=self.dtype,
                            weight_regularizer_l2=self.l2, bias_regularizer_l2=self.l2))
            model.add(ReLU())
            if self.dropout:
                model.add(Dropout(self.dropout, seed=seed + 1000 + i))
            width = h
        model.add(Dense(width, n_out, seed=seed + len(sizes), weight_scale=(1.0 / width) ** 0.5, dtype=self.dtype))
        model.add(output)
        model.set(loss=loss, optimizer=Adam(learning_rate=self.learning_rate, decay=self.decay), accuracy=accuracy)
        return model.finalize()

    def _fit_model(self, X: Any, y: Any) -> None:
        self.history_ = self.model_.train(X, y, epochs=self.epochs, batch_size=self.batch_size,
                                          shuffle=self.batch_size is not None, seed=self._seed(),
                                          print_every=10**9, verbose=False)
        self.n_iter_ = self.epochs

    def _float_input(self, X: Any, method: str) -> Any:
        """Validated X for a predict method, in the namespace and on the device of the fit."""
        check_is_fitted(self)
        if _dispatching():
            fitted = self.model_.layers[0].weight
            same = not _xp.array_api_compat.is_array_api_obj(X) and _xp.is_numpy_array(fitted)
            if _xp.array_api_compat.is_array_api_obj(X):
                same = _xp.namespace(X) is _xp.namespace(fitted) and _xp.same_device(X, fitted)
            if not same:
                raise ValueError(
                    f"Inputs passed to {type(self).__name__}.{method}() must use the same namespace and the "
                    f"same device as those passed to fit(): got a {_xp.describe(X)}, fitted on a "
                    f"{_xp.describe(fitted)}"
                )
        return validate_data(self, X, reset=False, dtype=_float_dtypes(X))

    @staticmethod
    def _follow_X(X: Any, y: Any) -> Any:
        """Under array API dispatch, y follows X's namespace and device (sklearn's rule)."""
        if _dispatching() and _xp.array_api_compat.is_array_api_obj(y):
            return _xp.move(y, _xp.namespace(X), _xp.array_device(X))
        return y


class NeuralNetClassifier(ClassifierMixin, _NeuralNetBase):
    """A ReLU network with a softmax output trained on cross-entropy (portable_nn.Model)."""

    def fit(self, X: Any, y: Any) -> NeuralNetClassifier:
        X, y = validate_data(self, X, y, dtype=_float_dtypes(X))
        y = self._follow_X(X, y)
        check_classification_targets(y)
        if _dispatching() and not _xp.is_numpy_array(X):
            xp = _xp.namespace(X)
            self.classes_, y_index = xp.unique_inverse(y)
        else:
            self.classes_, y_index = np.unique(np.asarray(y), return_inverse=True)
        n_classes = int(self.classes_.shape[0])
        if n_classes < 2:
            raise ValueError(
                f"NeuralNetClassifier needs samples of at least 2 classes in the data, but the data contains "
                f"only one class: {self.classes_[0]!r}"
            )
        self.model_ = self._build(X.shape[1], n_classes, Softmax(), CategoricalCrossentropy(), CategoricalAccuracy())
        self._fit_model(X, y_index)
        return self

    def predict_proba(self, X: Any) -> Any:
        X = self._float_input(X, "predict_proba")
        return self.model_.predict(X)

    def predict(self, X: Any) -> Any:
        X = self._float_input(X, "predict")
        proba = self.model_.predict(X)
        xp = _xp.namespace(proba)
        index = xp.argmax(proba, axis=1)
        if _xp.is_numpy_array(self.classes_):
            return self.classes_[_xp.to_numpy(index)]
        return xp.take(self.classes_, index, axis=0)


class NeuralNetRegressor(RegressorMixin, _NeuralNetBase):
    """A ReLU network with a linear output trained on mean squared error (portable_nn.Model)."""

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any) -> NeuralNetRegressor:
        X, y = validate_data(self, X, y, dtype=_float_dtypes(X), multi_output=True, y_numeric=True)
        y = self._follow_X(X, y)
        xp = _xp.namespace(X)
        self._y_1d = y.ndim == 1
        y2 = xp.reshape(y, (-1, 1)) if y.ndim == 1 else y
        self.model_ = self._build(X.shape[1], int(y2.shape[1]), Linear(), MeanSquaredError(), RegressionAccuracy())
        self._fit_model(X, xp.astype(y2, X.dtype) if y2.dtype != X.dtype else y2)
        return self

    def predict(self, X: Any) -> Any:
        X = self._float_input(X, "predict")
        out = self.model_.predict(X)
        xp = _xp.namespace(out)
        return xp.reshape(out, (-1,)) if self._y_1d else out
