"""Metrics from counts on the device (issue 13, item 6), against scikit-learn's ``metrics``."""

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.datasets import sine_data, spiral_data

skm = pytest.importorskip("sklearn.metrics")


def test_classification_metrics_match_scikit_learn(backend, xp):
    rng = np.random.default_rng(0)
    n, k = 97, 5
    scores = rng.standard_normal((n, k))
    y = rng.integers(0, k, size=n)
    y[:3] = 4  # every class present
    outputs = [(backend.asarray(scores[s]), backend.asarray(y[s])) for s in (slice(0, 40), slice(40, n))]
    metrics = [pnn.metrics.Precision(), pnn.metrics.Recall(), pnn.metrics.F1(), pnn.metrics.TopKAccuracy(2)]
    got = pnn.metrics.evaluate_metrics(metrics, xp, outputs)
    pred = scores.argmax(axis=1)
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro", zero_division=0))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert got["top_k_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, scores, k=2, labels=range(k)))
    per_class = pnn.metrics.evaluate_metrics([pnn.metrics.F1(average=None)], xp, outputs)["f1"]
    np.testing.assert_allclose(per_class, skm.f1_score(y, pred, average=None, zero_division=0))


def test_evaluate_returns_metrics(backend):
    X, y = spiral_data(40, 3, seed=2)
    m = pnn.Model().add(pnn.Dense(2, 16, seed=0, dtype="float64")).add(pnn.ReLU())
    m.add(pnn.Dense(16, 3, seed=1, dtype="float64")).add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.05)).finalize()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    m.train(Xb, yb, epochs=20, verbose=False)
    loss, acc, results = m.evaluate(Xb, yb, batch_size=32, metrics=[pnn.metrics.Recall(), pnn.metrics.F1()])
    pred = backend.to_numpy(m.predict(Xb, compile=False)).argmax(axis=1)
    assert (loss, acc) == pytest.approx(m.evaluate(Xb, yb))
    assert results["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro", zero_division=0))
    assert results["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    onehot = backend.asarray(np.eye(3)[y])
    assert m.evaluate(Xb, onehot, metrics=[pnn.metrics.F1()])[2]["f1"] == pytest.approx(results["f1"])  # one-hot
    with pytest.raises(TypeError, match="metrics must be portable_nn.metrics objects"):
        m.evaluate(Xb, yb, metrics=["f1"])


def test_mae_for_regression(backend):
    X, y = sine_data(50)
    m = pnn.Model().add(pnn.Dense(1, 8, seed=0, dtype="float64")).add(pnn.Tanh())
    m.add(pnn.Dense(8, 1, seed=1, dtype="float64")).add(pnn.Linear())
    m.set(loss=pnn.MeanSquaredError(), optimizer=pnn.Adam(0.01)).finalize()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y, dtype=np.float64)
    _, _, results = m.evaluate(Xb, yb, metrics=[pnn.metrics.MAE()])
    assert results["mae"] == pytest.approx(skm.mean_absolute_error(y, backend.to_numpy(m.predict(Xb))))
    with pytest.raises(ValueError, match="needs class labels"):
        m.evaluate(Xb, yb, metrics=[pnn.metrics.F1()])


def test_a_binary_model_is_scored_as_two_classes(backend):
    """One sigmoid output: class 1 where p > 0.5 (the accuracy's rule), against scikit-learn on those labels."""
    X, y = spiral_data(40, 2, seed=3)
    y = y.reshape(-1, 1).astype(np.float64)
    m = pnn.Model().add(pnn.Dense(2, 16, seed=0, dtype="float64")).add(pnn.ReLU())
    m.add(pnn.Dense(16, 1, seed=1, dtype="float64")).add(pnn.Sigmoid())
    m.set(loss=pnn.BinaryCrossentropy(), optimizer=pnn.Adam(0.02)).finalize()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    h = m.train(Xb, yb, epochs=5, verbose=False, metrics=[pnn.metrics.F1(), pnn.metrics.Recall(average=None)],
                validation_data=(Xb, yb))  # val_: scored on every backend (Dask's streamed training data is not)
    pred = (backend.to_numpy(m.predict(Xb))[:, 0] > 0.5).astype(int)
    assert h.metrics["val_f1"][-1] == pytest.approx(skm.f1_score(y[:, 0], pred, average="macro", zero_division=0))
    np.testing.assert_allclose(h.metrics["val_recall"][-1], skm.recall_score(y[:, 0], pred, average=None,
                                                                             zero_division=0))
    _, _, results = m.evaluate(Xb, yb, metrics=[pnn.metrics.Precision()])
    assert results["precision"] == pytest.approx(skm.precision_score(y[:, 0], pred, average="macro",
                                                                     zero_division=0))
