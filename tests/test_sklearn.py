"""scikit-learn estimators: check_estimator, and array API dispatch keeping data on its device."""

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import config_context  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402

from portable_nn.sklearn import NeuralNetClassifier, NeuralNetRegressor  # noqa: E402


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")  # missing cupy, pandas, MPS...
@pytest.mark.parametrize("estimator", [NeuralNetClassifier(random_state=0), NeuralNetRegressor(random_state=0)],
                         ids=["classifier", "regressor"])
@pytest.mark.only_xp_backends("numpy", reason="check_estimator makes its own arrays (NumPy and its array API "
                                              "checks): run once")
def test_check_estimator(backend, estimator):
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(estimator, on_fail=None)
    failed = [(r["check_name"], repr(r["exception"])) for r in results if r["status"] == "failed"]
    assert not failed, failed
    ran = [r["check_name"] for r in results if r["status"] == "passed"]
    assert len(ran) > 50 and "check_array_api_input" in ran


DISPATCH = ("array_api_strict", "torch", "cupy")


@pytest.mark.only_xp_backends(*DISPATCH, reason=f"scikit-learn's array API dispatch supports {DISPATCH}")
def test_dispatch_keeps_arrays_on_their_backend(backend, xp):
    from array_api_compat import array_namespace, device

    X, y = make_classification(n_samples=120, n_features=6, n_informative=4, random_state=0)
    Xb, yb = backend.asarray(X), backend.asarray(y)
    with config_context(array_api_dispatch=True):
        clf = NeuralNetClassifier(epochs=100, random_state=0).fit(Xb, yb)
        proba = clf.predict_proba(Xb)
        pred = clf.predict(Xb)
        assert array_namespace(proba) is xp and device(proba) == device(Xb)
        assert array_namespace(pred) is xp and device(pred) == device(Xb)
        assert array_namespace(clf.model_.layers[0].weight) is xp
        assert float(xp.mean(xp.astype(pred == yb, xp.float64))) > 0.85
        with pytest.raises(ValueError, match=r"NeuralNetClassifier.predict\(\) must use the same namespace"):
            clf.predict(X)
    Xr, yr = make_regression(n_samples=100, n_features=4, noise=0.1, random_state=0)
    yr = yr / yr.std()
    with config_context(array_api_dispatch=True):
        reg = NeuralNetRegressor(epochs=200, random_state=0).fit(backend.asarray(Xr), backend.asarray(yr))
        out = reg.predict(backend.asarray(Xr))
        assert array_namespace(out) is xp and out.shape == (100,)
        assert reg.score(backend.asarray(Xr), backend.asarray(yr)) > 0.9


def test_numpy_use_without_dispatch():
    X, y = make_classification(n_samples=120, n_features=6, n_informative=4, random_state=1)
    clf = NeuralNetClassifier(hidden_layer_sizes=(32, 16), dropout=0.1, l2=1e-4, batch_size=32,
                              epochs=60, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.85
    assert clf.predict_proba(X).shape == (120, 2)
    assert len(clf.history_.loss) == 60


@pytest.mark.only_xp_backends("numpy", reason="scikit-learn's parameter handling, once")
def test_parameters_are_taken_as_mlpclassifier_takes_them(backend):
    X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    clf = NeuralNetClassifier(hidden_layer_sizes=5, epochs=2, random_state=np.random.RandomState(0)).fit(X, y)
    assert clf.model_.layers[0].n_neurons == 5
    with pytest.raises(ValueError, match=r"hidden_layer_sizes must be positive integers, got \(2.5,\)"):
        NeuralNetClassifier(hidden_layer_sizes=(2.5,), epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="random_state must be None, an int or a numpy RandomState"):
        NeuralNetClassifier(epochs=1, random_state=np.random.default_rng(0)).fit(X, y)
