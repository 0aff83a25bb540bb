"""``sample_weight`` and ``class_weight`` (issue 13, item 8): weighted losses and their backward passes.

Every loss's weighted gradient is checked against central differences of ``sum_i w_i L_i / n`` on every
backend; integer weights train exactly as repeated rows; compiled training equals eager with weights;
``"balanced"`` equals scikit-learn's ``compute_class_weight``.
"""

import warnings

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.checking import _loss_cases, _numeric
from portable_nn.datasets import sine_data, spiral_data
from portable_nn.losses import Loss


def loss_cases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4))
    forms = _loss_cases(rng, x)
    cases = []
    for name, cls in Loss.registry.items():
        if not cls.__module__.startswith("portable_nn."):
            continue
        for suffix, inp, targets in forms[cls.target_kind]:
            logits = cls.input_kind == "logits"
            cases.append(pytest.param(cls, x if logits else inp, targets.astype(np.int64) if logits else targets,
                                      id=name + suffix))
    return cases


@pytest.mark.parametrize(("cls", "inp", "targets"), loss_cases())
def test_weighted_loss_gradients(backend, xp, cls, inp, targets):
    w = np.array([0.0, 0.5, 1.0, 2.0, 3.5, 1.25])  # a zero weight too
    loss = cls()
    n = inp.shape[0]

    def weighted_mean(h):
        return float(backend.to_numpy(xp.sum(loss.forward(backend.asarray(h), backend.asarray(targets))
                                             * backend.asarray(w)))) / n

    loss_sum, dinput = loss.forward_backward(backend.asarray(inp), backend.asarray(targets), backend.asarray(w))
    assert float(backend.to_numpy(loss_sum)) == pytest.approx(weighted_mean(inp.copy()) * n, rel=1e-12)
    numeric = _numeric(weighted_mean, inp.copy(), 1e-6)
    np.testing.assert_allclose(backend.to_numpy(dinput), numeric, rtol=1e-6, atol=1e-9 + numeric.noise)
    assert np.all(backend.to_numpy(dinput)[0] == 0)  # weight 0: no gradient from that sample
    # unit weights: exactly the unweighted step
    plain_sum, plain = cls().forward_backward(backend.asarray(inp), backend.asarray(targets))
    ones_sum, ones = cls().forward_backward(backend.asarray(inp), backend.asarray(targets),
                                            backend.asarray(np.ones(n)))
    backend.assert_close(ones, backend.to_numpy(plain), rtol=1e-15)
    assert float(backend.to_numpy(ones_sum)) == pytest.approx(float(backend.to_numpy(plain_sum)), rel=1e-14)


def classifier(optimizer=None, dropout=False):
    m = pnn.Model().add(pnn.Dense(2, 16, seed=1, dtype="float64")).add(pnn.ReLU())
    if dropout:
        m.add(pnn.Dropout(0.1, seed=4))
    m.add(pnn.Dense(16, 3, seed=2, dtype="float64")).add(pnn.Softmax())
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=optimizer or pnn.SGD(0.5)).finalize()


def test_integer_weights_train_as_repeated_rows(backend):
    """Full batch, weights ``count_i * n / sum(count)``: the same mean loss and gradient as each row repeated
    ``count_i`` times (rows of count 0 dropped), so the same parameters, in float64."""
    X, y = spiral_data(30, 3, seed=0)
    counts = np.random.default_rng(0).integers(0, 4, size=90)
    weights = counts * 90 / counts.sum()
    a, b = classifier(), classifier()
    if backend.name == "dask":  # streamed training slices windows of X and y only: refused, clearly
        with pytest.raises(TypeError, match="sample_weight and class_weight need in-memory arrays"):
            a.train(backend.asarray(X), backend.asarray(y), verbose=False, sample_weight=weights)
        return
    ha = a.train(backend.asarray(X, dtype=np.float64), backend.asarray(y), epochs=backend.epochs(30),
                 verbose=False, sample_weight=weights)
    hb = b.train(backend.asarray(np.repeat(X, counts, axis=0), dtype=np.float64), backend.asarray(np.repeat(y, counts)),
                 epochs=backend.epochs(30), verbose=False)
    for p, q in zip(a.network.parameters(), b.network.parameters(), strict=True):
        backend.assert_close(p.value, backend.to_numpy(q.value), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-10)


@pytest.mark.only_xp_backends("jax", "torch", reason="the backends with a compiler")
def test_compiled_training_weights_as_eager_does(backend):
    X, y = spiral_data(20, 3, seed=4)
    w = np.random.default_rng(1).uniform(0.0, 2.0, size=60)
    runs = []
    for compile in (False, True):
        m = classifier(pnn.Adam(0.02), dropout=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.compile's notes about array-api-compat's lru_cache helpers
            h = m.train(backend.asarray(X, dtype=np.float64), backend.asarray(y), epochs=6, batch_size=16,
                        shuffle=True, seed=3, verbose=False, sample_weight=w, compile=compile)
        runs.append((m, h))
    (eager, he), (fast, hf) = runs
    for p, q in zip(eager.network.parameters(), fast.network.parameters(), strict=True):
        backend.assert_close(q.value, backend.to_numpy(p.value), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(hf.loss, he.loss, rtol=1e-12)
    # and an unweighted call afterwards traces anew (the weights column is gone), with its own result
    plain = classifier(pnn.Adam(0.02), dropout=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hp = plain.train(backend.asarray(X, dtype=np.float64), backend.asarray(y), epochs=6, batch_size=16,
                         shuffle=True, seed=3, verbose=False, compile=True)
    assert hp.loss[-1] != pytest.approx(hf.loss[-1], rel=1e-6)


@pytest.mark.skip_xp_backends(
    "dask", reason="Dask arrays take no weights (test_integer_weights_train_as_repeated_rows checks the error)")
def test_class_weights_balanced_and_by_dict(backend):
    X, y = spiral_data(40, 3, seed=2)
    keep = np.r_[0:40, 40:60, 80:90]  # unbalanced: 40, 20 and 10 rows
    X, y = X[keep], y[keep]
    expected = len(y) / (3 * np.bincount(y))
    sklearn = pytest.importorskip("sklearn.utils.class_weight")
    np.testing.assert_allclose(expected, sklearn.compute_class_weight("balanced", classes=np.arange(3), y=y))
    a, b, c = classifier(), classifier(), classifier()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    ha = a.train(Xb, yb, epochs=5, verbose=False, class_weight="balanced")
    hb = b.train(Xb, yb, epochs=5, verbose=False, sample_weight=expected[y])
    hc = c.train(Xb, backend.asarray(np.eye(3)[y]), epochs=5, verbose=False,  # one-hot rows: the same classes
                 class_weight={i: float(v) for i, v in enumerate(expected)})
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-12)
    np.testing.assert_allclose(hc.loss, hb.loss, rtol=1e-12)
    # a binary model: the class is the 0/1 target
    yb2 = (y == 0).astype(np.int64).reshape(-1, 1)
    m = pnn.Model().add(pnn.Dense(2, 8, seed=0, dtype="float64")).add(pnn.ReLU())
    m.add(pnn.Dense(8, 1, seed=1, dtype="float64")).add(pnn.Sigmoid())
    m.set(loss=pnn.BinaryCrossentropy(), optimizer=pnn.SGD(0.5)).finalize()
    h = m.train(Xb, backend.asarray(yb2), epochs=3, verbose=False, class_weight={0: 0.0, 1: 1.0})
    assert np.all(np.isfinite(h.loss))


def test_validation_split_splits_the_weights():
    X, y = spiral_data(20, 3, seed=5)
    w = np.linspace(0.5, 1.5, 60)
    a, b = classifier(), classifier()
    ha = a.train(X, y, epochs=3, verbose=False, sample_weight=w, validation_split=0.25)
    hb = b.train(X[:45], y[:45], epochs=3, verbose=False, sample_weight=w[:45], validation_data=(X[45:], y[45:]))
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-14)
    np.testing.assert_allclose(ha.val_loss, hb.val_loss, rtol=1e-14)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"sample_weight": np.ones(5)}, ValueError, r"sample_weight must have shape \(60,\), one weight per sample"),
    ({"sample_weight": -np.ones(60)}, ValueError, "must be finite and >= 0"),
    ({"sample_weight": np.full(60, np.nan)}, ValueError, "must be finite and >= 0"),
    ({"sample_weight": np.zeros(60)}, ValueError, "every sample weight is 0"),
    ({"sample_weight": np.array(["a"] * 60)}, TypeError, "sample_weight must be real numbers"),
    ({"class_weight": "even"}, ValueError, "or 'balanced', got 'even'"),
    ({"class_weight": {3: 1.0}}, ValueError, r"keys must be class indices in \[0, 3\), got 3"),
    ({"class_weight": [1, 2, 3]}, TypeError, "class_weight must be a dict"),
])
def test_bad_weights_are_refused(kwargs, error, match):
    X, y = spiral_data(20, 3, seed=5)
    with pytest.raises(error, match=match):
        classifier().train(X, y, epochs=1, verbose=False, **kwargs)


def test_class_weight_needs_classes():
    X, y = sine_data(50)
    m = pnn.Model().add(pnn.Dense(1, 8, seed=0)).add(pnn.ReLU()).add(pnn.Dense(8, 1, seed=1)).add(pnn.Linear())
    m.set(loss=pnn.MeanSquaredError(), optimizer=pnn.Adam(0.01), accuracy=pnn.RegressionAccuracy()).finalize()
    with pytest.raises(ValueError, match="class_weight needs one class per sample"):
        m.train(X, y, epochs=1, verbose=False, class_weight="balanced")
    h = m.train(X, y, epochs=2, verbose=False, sample_weight=np.linspace(0, 1, 50))  # sample weights do apply
    assert np.all(np.isfinite(h.loss))


def test_balanced_weights_come_from_the_rows_trained_on():
    """With validation_split, "balanced" counts the training part only; a class absent from it weighs nothing
    and the others are balanced over the classes present (scikit-learn's rule)."""
    X, y = spiral_data(20, 3, seed=6)
    order = np.r_[0:20, 20:25, 40:45, 25:40, 45:60]  # training part: 20/5/5 rows; validation: 0/15/15
    X, y = X[order], y[order]
    a, b = classifier(), classifier()
    ha = a.train(X, y, epochs=3, verbose=False, class_weight="balanced", validation_split=0.5)
    expected = 30 / (3 * np.array([20.0, 5.0, 5.0]))
    hb = b.train(X[:30], y[:30], epochs=3, verbose=False, sample_weight=expected[y[:30]],
                 validation_data=(X[30:], y[30:]))
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-14)
    two = classifier()
    keep = y != 2  # class 2 absent: the weights of classes 0 and 1 as scikit-learn's over the present classes
    h2 = two.train(X[keep], y[keep], epochs=2, verbose=False, class_weight="balanced")
    counts = np.bincount(y[keep], minlength=3)[:2]
    ref = classifier()
    hr = ref.train(X[keep], y[keep], epochs=2, verbose=False, sample_weight=(keep.sum() / (2 * counts))[y[keep]])
    np.testing.assert_allclose(h2.loss, hr.loss, rtol=1e-14)
