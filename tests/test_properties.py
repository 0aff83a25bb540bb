"""Property-based tests: random shapes, dtypes, label forms and architectures on the backend."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import portable_nn as pnn
from portable_nn import gradcheck

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def matrices(draw, min_side=1, max_side=5, away_from=None):
    n, k = draw(st.integers(min_side, max_side)), draw(st.integers(min_side, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).standard_normal((n, k))
    if away_from is not None:  # keep kinks (ReLU at 0) out of the difference step
        x = np.where(np.abs(x - away_from) < 0.05, away_from + 0.05 + np.abs(x), x)
    return x


@SETTINGS
@given(x=matrices(away_from=0.0), cls=st.sampled_from([pnn.ReLU, pnn.Sigmoid, pnn.Softmax, pnn.Linear]))
def test_activation_gradients_for_random_shapes(backend, x, cls):
    assert gradcheck(cls(), backend.asarray(x), rtol=1e-5, atol=1e-9).ok


@SETTINGS
@given(x=matrices(), n_out=st.integers(1, 4), seed=st.integers(0, 1000),
       l1=st.sampled_from([0.0, 1e-3]), l2=st.sampled_from([0.0, 1e-2]))
def test_dense_gradients_for_random_shapes(backend, x, n_out, seed, l1, l2):
    layer = pnn.Dense(x.shape[1], n_out, seed=seed, dtype="float64", weight_scale=1.0,
                      weight_regularizer_l1=l1, weight_regularizer_l2=l2,
                      bias_regularizer_l1=l1, bias_regularizer_l2=l2)
    layer.bias = np.random.default_rng(seed).uniform(0.1, 1.0, (1, n_out))  # away from sign(0)
    layer.weight = np.where(np.abs(layer.weight) < 0.05, 0.1, layer.weight)
    assert gradcheck(layer, backend.asarray(x), rtol=1e-5, atol=1e-9).ok


@st.composite
def categorical_case(draw):
    n, k = draw(st.integers(1, 6)), draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = rng.uniform(0.2, 1.0, (n, k))
    p /= p.sum(axis=1, keepdims=True)
    labels = rng.integers(0, k, n)
    form = draw(st.sampled_from(["uint8", "int8", "int32", "int64", "onehot-float32", "onehot-uint8"]))
    y = np.eye(k)[labels].astype(form.split("-")[1]) if form.startswith("onehot") else labels.astype(form)
    return p, y


@SETTINGS
@given(case=categorical_case(), fused=st.booleans())
def test_categorical_losses_for_random_label_forms(backend, case, fused):
    p, y = case
    if fused:
        loss, x = pnn.SoftmaxCategoricalCrossentropy(), np.log(p) + 0.3  # logits
    else:
        loss, x = pnn.CategoricalCrossentropy(), p
    assert gradcheck(loss, backend.asarray(x), backend.asarray(y), rtol=1e-5, atol=1e-9).ok


@SETTINGS
@given(n=st.integers(1, 6), k=st.integers(1, 3), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from(["bool", "uint8", "int64", "float32", "float64"]), flat=st.booleans())
def test_binary_crossentropy_for_random_targets(backend, n, k, seed, dtype, flat):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, (n, k))
    t = rng.uniform(size=(n, k)) > 0.5
    y = t[:, 0] if (flat and k == 1) else t
    assert gradcheck(pnn.BinaryCrossentropy(), backend.asarray(p), backend.asarray(y.astype(dtype)),
                     rtol=1e-5, atol=1e-9).ok


@SETTINGS
@given(x=matrices(), dtype=st.sampled_from([np.float32, np.float64]))
def test_forward_in_float32_and_float64_agree(backend, x, dtype):
    for cls in (pnn.Sigmoid, pnn.Softmax):
        got = backend.to_numpy(cls().forward(backend.asarray(x.astype(dtype))))
        want = backend.to_numpy(cls().forward(backend.asarray(x)))
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-7)


@st.composite
def architectures(draw):
    n_in = draw(st.integers(1, 4))
    hidden = draw(st.lists(st.integers(1, 6), min_size=0, max_size=2))
    head = draw(st.sampled_from(["softmax", "sigmoid", "linear"]))
    n_out = draw(st.integers(2, 4)) if head == "softmax" else draw(st.integers(1, 2))
    return n_in, hidden, head, n_out, draw(st.booleans()), draw(st.integers(0, 1000))


@settings(deadline=None, max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arch=architectures())
def test_random_architectures_train_save_and_load(backend, tmp_path, arch):
    n_in, hidden, head, n_out, dropout, seed = arch
    m = pnn.Model()
    width = n_in
    for i, h in enumerate(hidden):
        m.add(pnn.Dense(width, h, seed=seed + i, weight_scale=0.5)).add(pnn.ReLU())
        if dropout:
            m.add(pnn.Dropout(0.2, seed=seed))
        width = h
    m.add(pnn.Dense(width, n_out, seed=seed + 99, weight_scale=0.5))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((12, n_in)).astype(np.float32)
    if head == "softmax":
        m.add(pnn.Softmax()).set(loss=pnn.CategoricalCrossentropy())
        y = rng.integers(0, n_out, 12).astype(np.uint8)
    elif head == "sigmoid":
        m.add(pnn.Sigmoid()).set(loss=pnn.BinaryCrossentropy())
        y = rng.integers(0, 2, (12, n_out)).astype(np.int32)
    else:
        m.add(pnn.Linear()).set(loss=pnn.MeanSquaredError())
        y = rng.standard_normal((12, n_out)).astype(np.float32)
    m.set(optimizer=pnn.Adam(learning_rate=0.01)).finalize()
    hist = m.train(backend.asarray(X), backend.asarray(y), epochs=3, batch_size=5, verbose=False, seed=0)
    assert all(np.isfinite(hist.loss))
    path = tmp_path / "m.npz"
    m.save(path)
    loaded = pnn.Model.load(path)
    np.testing.assert_array_equal(backend.to_numpy(loaded.predict(backend.asarray(X))),
                                  backend.to_numpy(m.predict(backend.asarray(X))))
