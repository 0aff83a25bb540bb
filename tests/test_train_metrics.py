"""``train(..., metrics=[...])`` (issue 13, item 6): metrics scored at each epoch's end, eager and compiled.

The values are ``evaluate``'s (checked against scikit-learn in ``tests/test_metrics.py``) for the model as it is
at the epoch's end; they reach the History and the callbacks' logs.
"""

import warnings

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.datasets import spiral_data


def classifier():
    m = pnn.Model().add(pnn.Dense(2, 16, seed=1, dtype="float64")).add(pnn.ReLU())
    m.add(pnn.Dense(16, 3, seed=2, dtype="float64")).add(pnn.Softmax())
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.03)).finalize()


def data(backend):
    X, y = spiral_data(30, 3, seed=0)
    Xv, yv = spiral_data(10, 3, seed=1)
    return (backend.asarray(X, dtype=np.float64), backend.asarray(y),
            backend.asarray(Xv, dtype=np.float64), backend.asarray(yv))


def test_metrics_are_scored_every_epoch_as_evaluate_scores_them(backend):
    X, y, Xv, yv = data(backend)
    m = classifier()
    metrics = [pnn.metrics.F1(), pnn.metrics.Precision(average=None), pnn.metrics.TopKAccuracy(2)]
    h = m.train(X, y, epochs=4, batch_size=32, verbose=False, validation_data=(Xv, yv), metrics=metrics,
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
    again = classifier()
    h2 = again.train(X, backend.asarray(np.eye(3)[backend.to_numpy(y)]), epochs=4, batch_size=32, verbose=False,
                     metrics=[pnn.metrics.F1()], print_every=100)
    np.testing.assert_allclose(h2.metrics["f1"], h.metrics["f1"], rtol=1e-12)


@pytest.mark.only_xp_backends("jax", "torch", reason="the backends with a compiler")
def test_compiled_training_scores_the_same_metrics(backend):
    X, y, Xv, yv = data(backend)
    runs = []
    for compile in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.compile's notes about array-api-compat's lru_cache helpers
            h = classifier().train(X, y, epochs=5, batch_size=16, verbose=False, validation_data=(Xv, yv),
                                   metrics=[pnn.metrics.F1(), pnn.metrics.Recall()], compile=compile)
        runs.append(h)
    for key in runs[0].metrics:
        np.testing.assert_allclose(runs[1].metrics[key], runs[0].metrics[key], rtol=1e-12)


def test_a_metric_can_be_monitored():
    (X, y), (Xv, yv) = spiral_data(30, 3, seed=0), spiral_data(10, 3, seed=1)
    m = classifier()
    stop = pnn.callbacks.EarlyStopping(monitor="val_f1", mode="max", patience=2, min_delta=1.0)  # never improves
    h = m.train(X, y, epochs=20, verbose=False, validation_data=(Xv, yv), metrics=[pnn.metrics.F1()],
                callbacks=[stop])
    assert stop.best_epoch == 1 and stop.stopped_epoch == 3 and len(h.metrics["val_f1"]) == 3
    with pytest.raises(TypeError, match="metrics must be portable_nn.metrics objects"):
        m.train(X, y, verbose=False, metrics=["f1"])
    with pytest.raises(ValueError, match="needs class labels"):
        r = pnn.Model().add(pnn.Dense(2, 1, seed=0)).add(pnn.Linear())
        r.set(loss=pnn.MeanSquaredError(), optimizer=pnn.SGD(0.1), accuracy=pnn.RegressionAccuracy()).finalize()
        r.train(X, y.astype(np.float64), verbose=False, metrics=[pnn.metrics.F1()])


def test_one_metric_needs_no_list():
    X, y = spiral_data(20, 3, seed=0)
    m = classifier()
    h = m.train(X, y, epochs=2, verbose=False, metrics=pnn.metrics.F1())
    assert len(h.metrics["f1"]) == 2
    assert m.evaluate(X, y, metrics=pnn.metrics.F1())[2]["f1"] == pytest.approx(h.metrics["f1"][-1], rel=1e-12)
