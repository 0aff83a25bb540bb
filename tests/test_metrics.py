"""Metrics from counts on the device (issue 13, item 6), against scikit-learn's ``metrics``."""

import warnings

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
    with pytest.raises(TypeError, match="metrics must be portable_nn.metrics objects or their names, got 42"):
        m.evaluate(Xb, yb, metrics=[42])  # names are taken (test_metrics_by_name_as_keras_takes_them)


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


# -- metrics in train(metrics=[...]): scored at each epoch's end, eager and compiled ----------------------

def train_classifier():
    m = pnn.Model().add(pnn.Dense(2, 16, seed=1, dtype="float64")).add(pnn.ReLU())
    m.add(pnn.Dense(16, 3, seed=2, dtype="float64")).add(pnn.Softmax())
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.03)).finalize()


def train_data(backend):
    X, y = spiral_data(30, 3, seed=0)
    Xv, yv = spiral_data(10, 3, seed=1)
    return (backend.asarray(X, dtype=np.float64), backend.asarray(y),
            backend.asarray(Xv, dtype=np.float64), backend.asarray(yv))


def test_metrics_are_scored_every_epoch_as_evaluate_scores_them(backend):
    X, y, Xv, yv = train_data(backend)
    m = train_classifier()
    metrics = [pnn.metrics.F1(), pnn.metrics.Precision(average=None), pnn.metrics.TopKAccuracy(2)]
    h = m.train(X, y, epochs=4, batch_size=32, seed=0, verbose=False, validation_data=(Xv, yv), metrics=metrics,
                print_every=100)
    val_names = {"val_f1", "val_precision", "val_top_k_accuracy"}
    _, _, val_scores = m.evaluate(Xv, yv, metrics=metrics)
    if backend.name == "dask":  # streamed training data are read once an epoch: only the validation data are scored
        assert set(h.metrics) == val_names
        assert h.metrics["val_f1"][-1] == pytest.approx(val_scores["f1"], rel=1e-12)
        return
    assert set(h.metrics) == {"f1", "precision", "top_k_accuracy"} | val_names
    assert all(len(v) == 4 for v in h.metrics.values())
    _, _, train_scores = m.evaluate(X, y, metrics=metrics)
    assert h.metrics["f1"][-1] == pytest.approx(train_scores["f1"], rel=1e-12)
    assert h.metrics["val_top_k_accuracy"][-1] == pytest.approx(val_scores["top_k_accuracy"], rel=1e-12)
    np.testing.assert_allclose(h.metrics["val_precision"][-1], val_scores["precision"], rtol=1e-12)
    assert h.as_dict()["val_f1"] == h.metrics["val_f1"]
    # one-hot targets: the same classes
    again = train_classifier()
    h2 = again.train(X, backend.asarray(np.eye(3)[backend.to_numpy(y)]), epochs=4, batch_size=32, seed=0,
                     verbose=False, metrics=[pnn.metrics.F1()], print_every=100)
    np.testing.assert_allclose(h2.metrics["f1"], h.metrics["f1"], rtol=1e-12)


@pytest.mark.only_xp_backends("jax", "torch", reason="the backends with a compiler")
def test_compiled_training_scores_the_same_metrics(backend):
    X, y, Xv, yv = train_data(backend)
    runs = []
    for compile in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.compile's notes about array-api-compat's lru_cache helpers
            h = train_classifier().train(X, y, epochs=5, batch_size=16, seed=0, verbose=False, validation_data=(Xv, yv),
                                   metrics=[pnn.metrics.F1(), pnn.metrics.Recall()], compile=compile)
        runs.append(h)
    for key in runs[0].metrics:
        np.testing.assert_allclose(runs[1].metrics[key], runs[0].metrics[key], rtol=1e-12)


def test_a_metric_can_be_monitored():
    (X, y), (Xv, yv) = spiral_data(30, 3, seed=0), spiral_data(10, 3, seed=1)
    m = train_classifier()
    stop = pnn.callbacks.EarlyStopping(monitor="val_f1", mode="max", patience=2, min_delta=1.0)  # never improves
    h = m.train(X, y, epochs=20, verbose=False, validation_data=(Xv, yv), metrics=[pnn.metrics.F1()],
                callbacks=[stop])
    assert stop.best_epoch == 1 and stop.stopped_epoch == 3 and len(h.metrics["val_f1"]) == 3
    with pytest.raises(TypeError, match="metrics must be portable_nn.metrics objects or their names"):
        m.train(X, y, verbose=False, metrics=[len])
    with pytest.raises(ValueError, match="needs class labels"):
        r = pnn.Model().add(pnn.Dense(2, 1, seed=0)).add(pnn.Linear())
        r.set(loss=pnn.MeanSquaredError(), optimizer=pnn.SGD(0.1), accuracy=pnn.RegressionAccuracy()).finalize()
        r.train(X, y.astype(np.float64), verbose=False, metrics=[pnn.metrics.F1()])


def test_one_metric_needs_no_list():
    X, y = spiral_data(20, 3, seed=0)
    m = train_classifier()
    h = m.train(X, y, epochs=2, verbose=False, metrics=pnn.metrics.F1())
    assert len(h.metrics["f1"]) == 2
    assert m.evaluate(X, y, metrics=pnn.metrics.F1())[2]["f1"] == pytest.approx(h.metrics["f1"][-1], rel=1e-12)


def test_a_regression_metric_on_a_classifier_is_refused_before_training(backend):
    X, y = spiral_data(10, 3, seed=0)
    m = train_classifier()
    with pytest.raises(ValueError, match=r"Model.train: MAE\(\) compares outputs with regression targets; this "
                                         r"model's loss CategoricalCrossentropy\(\) takes classes"):
        m.train(backend.asarray(X), backend.asarray(y), metrics=[pnn.metrics.MAE()], verbose=False)
    assert m.optimizer.iterations == 0
    with pytest.raises(ValueError, match=r"Model.evaluate: MAE\(\) compares outputs"):
        m.evaluate(backend.asarray(X), backend.asarray(y), metrics=[pnn.metrics.MAE()])


def test_metrics_by_name_as_keras_takes_them(backend):
    X, y = spiral_data(20, 3, seed=1)
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    m = train_classifier()
    history = m.train(Xb, yb, epochs=2, verbose=False, validation_data=(Xb, yb),  # Dask scores validation data
                      metrics=["f1", "precision", "recall", "top_k_accuracy"])
    assert {"val_f1", "val_precision", "val_recall", "val_top_k_accuracy"} <= set(history.metrics)
    _, _, by_name = m.evaluate(Xb, yb, metrics=["f1", "recall"])
    _, _, by_object = m.evaluate(Xb, yb, metrics=[pnn.metrics.F1(), pnn.metrics.Recall()])
    assert by_name == by_object
    with pytest.raises(ValueError, match=r"unknown metric 'auc'; known: \['f1', 'mae', 'precision', 'recall', "
                                         r"'top_k_accuracy'\]"):
        m.evaluate(Xb, yb, metrics=["auc"])
    with pytest.raises(ValueError, match=r"MAE\(\) compares outputs with regression targets"):
        m.evaluate(Xb, yb, metrics="mae")
