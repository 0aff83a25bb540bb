"""Losses: values against formulas, gradients by finite differences for every label form."""

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn import gradcheck

RNG = np.random.default_rng(3)
N, K = 6, 4
INT_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.int64]


def probabilities(n=N, k=K):
    """Rows of probabilities kept inside (0.05, 0.95): no clip inside a difference step."""
    p = RNG.uniform(0.2, 1.0, size=(n, k))
    return p / p.sum(axis=1, keepdims=True)


def class_labels(n=N, k=K):
    return np.arange(n) % k  # every class present, deterministic


def label_forms(backend):
    """Class indices of every integer dtype and one-hot rows of several numeric dtypes."""
    y = class_labels()
    forms = [(f"indices-{np.dtype(d).name}", y.astype(d)) for d in INT_DTYPES]
    onehot = np.eye(K)[y]
    forms += [(f"onehot-{np.dtype(d).name}", onehot.astype(d)) for d in (np.float32, np.float64, np.uint8, np.int64)]
    return [(name, backend.asarray(v)) for name, v in forms]


def test_categorical_crossentropy_value_and_gradient_for_every_label_form(backend):
    p_host = probabilities()
    expected = -np.log(p_host[np.arange(N), class_labels()])
    loss = pnn.CategoricalCrossentropy()
    for name, y in label_forms(backend):
        p = backend.asarray(p_host)
        backend.assert_close(loss.forward(p, y), expected, rtol=1e-12)
        backend.assert_close(loss.calculate(p, y), expected.mean(), rtol=1e-12)
        result = gradcheck(loss, p, y, rtol=1e-6, atol=1e-10)
        assert result.max_error < 1e-6, name


def test_softmax_crossentropy_value_and_gradient_for_every_label_form(backend):
    z_host = RNG.standard_normal((N, K))
    log_softmax = z_host - np.log(np.exp(z_host).sum(axis=1, keepdims=True))
    expected = -log_softmax[np.arange(N), class_labels()]
    loss = pnn.SoftmaxCategoricalCrossentropy()
    for name, y in label_forms(backend):
        z = backend.asarray(z_host)
        backend.assert_close(loss.forward(z, y), expected, rtol=1e-12)
        backend.assert_close(loss.output, np.exp(log_softmax), rtol=1e-12)
        assert gradcheck(loss, z, y, rtol=1e-6, atol=1e-10).max_error < 1e-6, name


def test_fused_backward_equals_softmax_then_crossentropy(backend):
    z = backend.asarray(RNG.standard_normal((N, K)))
    y = backend.asarray(class_labels().astype(np.uint8))
    fused = pnn.SoftmaxCategoricalCrossentropy()
    fused.forward(z, y)
    softmax, cce = pnn.Softmax(), pnn.CategoricalCrossentropy()
    probs = softmax.forward(z)
    chained = softmax.backward(cce.backward(probs, y))
    backend.assert_close(fused.backward(fused.output, y), backend.to_numpy(chained), rtol=1e-10, atol=1e-15)


def test_softmax_crossentropy_is_finite_for_huge_logits(backend):
    z = backend.asarray(np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]]), dtype=np.float32)
    y = backend.asarray(np.array([0, 0], dtype=np.uint8))
    loss = pnn.SoftmaxCategoricalCrossentropy()
    values = backend.to_numpy(loss.forward(z, y))
    np.testing.assert_allclose(values, [0.0, 2e4], rtol=1e-6)
    dinput = backend.to_numpy(loss.backward(loss.output, y))
    assert np.all(np.isfinite(dinput))


@pytest.mark.parametrize("cls", [pnn.CategoricalCrossentropy, pnn.BinaryCrossentropy])
def test_crossentropy_is_finite_at_exact_zero_and_one(backend, cls):
    p = backend.asarray(np.array([[0.0, 1.0], [1.0, 0.0]]), dtype=np.float32)
    y = backend.asarray(np.array([[0, 1], [0, 1]], dtype=np.uint8))
    loss = cls()
    values = backend.to_numpy(loss.forward(p, y))
    grads = backend.to_numpy(loss.backward(p, y))
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads))
    # the confidently wrong sample costs about -log(1e-7) = 16.1 (the seed's clip; float32
    # rounds 1 - 1e-7), the right one about 0
    assert 15.9 < values[1] < 16.2 and values[0] < 1e-5


def test_uint8_labels_never_wrap(backend):
    """The seed's trap: -y_true on uint8 is 255, not -1.  Labels are cast first."""
    p_host = np.array([[0.9, 0.1], [0.2, 0.8]])
    y8 = backend.asarray(np.array([[1, 0], [0, 1]], dtype=np.uint8))
    y64 = backend.asarray(np.array([[1.0, 0.0], [0.0, 1.0]]))
    for loss in (pnn.CategoricalCrossentropy(), pnn.BinaryCrossentropy(), pnn.MeanSquaredError()):
        a = backend.to_numpy(loss.backward(backend.asarray(p_host), y8))
        b = backend.to_numpy(loss.backward(backend.asarray(p_host), y64))
        np.testing.assert_array_equal(a, b)


def bce_targets(backend, k):
    t = (RNG.uniform(size=(N, k)) > 0.5)
    forms = [(f"{np.dtype(d).name}", t.astype(d)) for d in (np.bool_, np.uint8, np.int32, np.float32, np.float64)]
    if k == 1:
        forms += [(f"flat-{np.dtype(d).name}", t[:, 0].astype(d)) for d in (np.bool_, np.uint8, np.int64)]
    return t.astype(np.float64), [(name, backend.asarray(v)) for name, v in forms]


@pytest.mark.parametrize("k", [1, 3])
def test_binary_crossentropy_value_and_gradient(backend, k):
    p_host = RNG.uniform(0.05, 0.95, size=(N, k))
    t, forms = bce_targets(backend, k)
    expected = np.mean(-(t * np.log(p_host) + (1 - t) * np.log(1 - p_host)), axis=1)
    loss = pnn.BinaryCrossentropy()
    for name, y in forms:
        p = backend.asarray(p_host)
        backend.assert_close(loss.forward(p, y), expected, rtol=1e-12)
        assert gradcheck(loss, p, y, rtol=1e-6, atol=1e-10).max_error < 1e-6, name


@pytest.mark.parametrize("k", [1, 3])
def test_regression_losses_value_and_gradient(backend, k):
    p_host = RNG.standard_normal((N, k))
    # targets at least 0.1 away from the predictions: |y - p| has a kink at 0
    y_host = p_host + RNG.choice([-1, 1], size=(N, k)) * RNG.uniform(0.1, 1.0, size=(N, k))
    for loss, expected in (
        (pnn.MeanSquaredError(), np.mean((y_host - p_host) ** 2, axis=1)),
        (pnn.MeanAbsoluteError(), np.mean(np.abs(y_host - p_host), axis=1)),
    ):
        for y in (backend.asarray(y_host),) + ((backend.asarray(y_host[:, 0]),) if k == 1 else ()):
            p = backend.asarray(p_host)
            backend.assert_close(loss.forward(p, y), expected, rtol=1e-12)
            assert gradcheck(loss, p, y, rtol=1e-6, atol=1e-10).max_error < 1e-6, type(loss).__name__


def test_calculate_returns_a_0d_array_of_the_namespace(backend, xp):
    loss = pnn.MeanSquaredError()
    value = loss.calculate(backend.asarray(np.ones((3, 1))), backend.asarray(np.zeros(3)))
    assert value.shape == () and value.dtype == xp.float64
    backend.assert_close(value, 1.0)


def test_loss_label_errors_name_the_loss_and_shapes(backend):
    p = backend.asarray(probabilities())
    cce = pnn.CategoricalCrossentropy()
    with pytest.raises(ValueError, match="CategoricalCrossentropy: y_true has 5 samples but y_pred has 6"):
        cce.forward(p, backend.asarray(np.zeros(5, dtype=np.int64)))
    with pytest.raises(ValueError, match=r"one-hot y_true must have y_pred's shape \(6, 4\), got \(6, 3\)"):
        cce.forward(p, backend.asarray(np.zeros((6, 3))))
    with pytest.raises(ValueError, match=r"BinaryCrossentropy: y_true must have shape \(6, 4\)"):
        pnn.BinaryCrossentropy().forward(p, backend.asarray(np.zeros(6)))
    with pytest.raises(TypeError, match="CategoricalCrossentropy: y_pred: expected a float32/float64 array"):
        cce.forward(backend.asarray(np.ones((2, 2), dtype=np.int32)), backend.asarray(np.zeros(2, dtype=np.int32)))


def test_huber_matches_torch(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    p, y = rng.standard_normal((6, 3)) * 2, rng.standard_normal((6, 3))
    loss = pnn.HuberLoss(delta=0.7)
    value = loss.calculate(backend.asarray(p), backend.asarray(y))
    dinput = loss.backward(backend.asarray(p), backend.asarray(y))
    t = torch.asarray(p.copy(), requires_grad=True)
    ref = torch.nn.functional.huber_loss(t, torch.asarray(y), delta=0.7)  # mean over every element
    ref.backward()
    assert abs(float(backend.to_numpy(value)) - float(ref.detach())) < 1e-14
    backend.assert_close(dinput, t.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert np.any(np.abs(p - y) > 0.7) and np.any(np.abs(p - y) < 0.7)  # both branches
    with pytest.raises(ValueError, match="delta must be a finite number > 0"):
        pnn.HuberLoss(0)
