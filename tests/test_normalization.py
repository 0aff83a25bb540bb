"""Normalization layers: LayerNorm against PyTorch; BatchNorm's training and inference modes, running
statistics, files, compiled steps.

``check_all`` gradient-checks training mode on every backend (``tests/test_gradcheck.py``); here inference
mode is gradient-checked, both modes are compared with PyTorch autograd, and the running statistics are
followed through training, files, the divergence guard and EarlyStopping.  (Compiled equals eager with
BatchNorm: ``tests/test_compiled.py``, case ``sgd-momentum-batchnorm``; data-parallel: ``tests/distributed``.)
"""

import numpy as np
import pytest
from helpers import torch_grad

import portable_nn as pnn
from portable_nn.checking import gradcheck
from portable_nn.datasets import spiral_data


class Inference:
    """A BatchNorm seen in inference mode, for ``gradcheck`` (which calls ``forward(x)``)."""

    def __init__(self, layer):
        self.layer = layer

    def parameters(self):
        return self.layer.parameters()

    def forward(self, x):
        return self.layer.forward(x, training=False)

    def backward(self, dvalue):
        return self.layer.backward(dvalue)


def example(rng, n=4):
    layer = pnn.BatchNorm(n, dtype="float64", momentum=0.8)
    layer.weight, layer.bias = rng.uniform(0.5, 1.5, (1, n)), rng.uniform(-0.5, 0.5, (1, n))
    layer.running_mean, layer.running_var = rng.standard_normal((1, n)), rng.uniform(0.5, 2.0, (1, n))
    return layer


def test_inference_mode_gradients(backend):
    rng = np.random.default_rng(0)
    layer = example(rng)
    result = gradcheck(Inference(layer), backend.asarray(rng.standard_normal((6, 4))), rtol=1e-6, atol=1e-10)
    assert result.ok and set(result.errors) == {"dinput", "dweight", "dbias"}


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_matches_torch(backend, training):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x, dvalue = rng.standard_normal((7, 4)) * 3 + 1, rng.standard_normal((7, 4))
    layer = example(rng)
    running = (layer.running_mean.copy(), layer.running_var.copy())
    weight, bias = layer.weight.copy(), layer.bias.copy()
    out = layer.forward(backend.asarray(x), training=training)
    dinput = layer.backward(backend.asarray(dvalue))
    t = torch.asarray(x.copy(), requires_grad=True)
    w, b = torch.asarray(weight[0], requires_grad=True), torch.asarray(bias[0], requires_grad=True)
    rm, rv = torch.asarray(running[0][0].copy()), torch.asarray(running[1][0].copy())
    # PyTorch's momentum is the weight of the new value: one minus ours
    ref = torch.nn.functional.batch_norm(t, rm, rv, w, b, training=training, momentum=0.2, eps=1e-5)
    ref.backward(torch.asarray(dvalue))
    backend.assert_close(out, ref.detach().numpy(), rtol=1e-12, atol=1e-13)
    backend.assert_close(dinput, t.grad.numpy(), rtol=1e-10, atol=1e-13)
    backend.assert_close(layer.dweight, w.grad.numpy()[None, :], rtol=1e-12, atol=1e-13)
    backend.assert_close(layer.dbias, b.grad.numpy()[None, :], rtol=1e-12, atol=1e-13)
    if training:  # the running mean as PyTorch's; the variance the biased one (Keras's), not PyTorch's unbiased
        backend.assert_close(layer.running_mean, rm.numpy()[None, :], rtol=1e-12)
        backend.assert_close(layer.running_var, 0.8 * running[1] + 0.2 * x.var(axis=0, keepdims=True), rtol=1e-12)
    else:
        backend.assert_close(layer.running_mean, running[0])
        backend.assert_close(layer.running_var, running[1])


def model(dtype="float64", momentum=0.9):
    m = pnn.Model()
    m.add(pnn.Dense(2, 32, seed=0, dtype=dtype, initializer="he_normal")).add(pnn.BatchNorm(32, dtype=dtype,
                                                                                          momentum=momentum))
    m.add(pnn.ReLU()).add(pnn.Dense(32, 3, seed=1, dtype=dtype)).add(pnn.Softmax())
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.02)).finalize()


def test_training_follows_the_running_statistics_and_inference_uses_them(backend, tmp_path):
    X, y = spiral_data(50, 3, seed=0)
    m = model()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    h = m.train(Xb, yb, epochs=backend.epochs(100), batch_size=32, shuffle=True, seed=1, verbose=False)
    assert np.mean(h.loss[-5:]) < 0.95 * h.loss[0]  # 0.82 of it at 100 epochs, 0.89 at 20 (float64)
    bn = m.network.layers[1]
    assert not np.allclose(backend.to_numpy(bn.running_mean), 0.0)  # trained away from their start
    # inference does not depend on the batch: one row alone gives that row of the whole prediction
    whole = backend.to_numpy(m.predict(Xb))
    alone = backend.to_numpy(m.predict(Xb[3:4, ...]))
    np.testing.assert_allclose(alone, whole[3:4], rtol=1e-12)
    # saved and loaded with the model (NumPy), and as parameters only
    m.save(tmp_path / "m.npz")
    loaded = pnn.Model.load(tmp_path / "m.npz")
    np.testing.assert_allclose(loaded.predict(X.astype(np.float64)), whole, rtol=1e-12)
    np.testing.assert_array_equal(loaded.network.layers[1].running_var, backend.to_numpy(bn.running_var))
    assert "non-trainable (running statistics): 64" in m.summary()


def test_running_statistics_follow_the_dtype_and_file_checks():
    m = model(dtype="float32")
    bn = m.network.layers[1]
    assert bn.running_var.dtype == np.float32
    m.network.layers[1].to_dtype("float64")
    assert bn.running_var.dtype == np.float64 and bn.weight.dtype == np.float64
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        pnn.BatchNorm(4, momentum=1.0)
    with pytest.raises(ValueError, match="n_features must be a positive integer"):
        pnn.BatchNorm(0)


def test_a_file_without_running_statistics_is_refused(tmp_path):
    m = model()
    m.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["1/running_var"] = -np.abs(arrays["1/running_var"])
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="a variance is >= 0"):
        pnn.Model.load(tmp_path / "bad.npz")


def test_an_empty_batch_changes_nothing(backend, xp):
    layer = example(np.random.default_rng(3))
    before = (layer.running_mean.copy(), layer.running_var.copy())
    x = backend.asarray(np.zeros((0, 4)))
    out = layer.forward(x, training=True)
    dinput = layer.backward(backend.asarray(np.zeros((0, 4))))
    assert tuple(out.shape) == (0, 4) and tuple(dinput.shape) == (0, 4)
    backend.assert_close(layer.running_mean, before[0])
    backend.assert_close(layer.running_var, before[1])
    backend.assert_close(layer.dweight, np.zeros((1, 4)))


def test_early_stopping_and_the_guard_restore_the_running_statistics(backend):
    X, y = spiral_data(30, 3, seed=1)
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    # EarlyStopping: the best epoch's running statistics come back with its parameters
    m = model()
    seen = {}

    class Record(pnn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            seen[epoch] = backend.to_numpy(m.network.layers[1].running_mean).copy()

    stop = pnn.callbacks.EarlyStopping(monitor="loss", patience=2, min_delta=10.0)  # nothing improves by 10
    m.train(Xb, yb, epochs=10, batch_size=16, verbose=False, callbacks=[Record(), stop], seed=0)
    assert stop.best_epoch == 1 and stop.stopped_epoch == 3
    np.testing.assert_array_equal(backend.to_numpy(m.network.layers[1].running_mean), seen[1])
    # the guard: a divergence restores running statistics whose forward pass is finite
    d = model()
    d.optimizer.learning_rate = d.optimizer.current_learning_rate = 1e300
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(FloatingPointError, match="loss became"):
        d.train(Xb, yb, epochs=5, batch_size=16, verbose=False, seed=0)
    assert np.all(np.isfinite(backend.to_numpy(d.network.layers[1].running_var)))
    assert np.all(np.isfinite(backend.to_numpy(d.predict(Xb))))


def test_an_assigned_running_statistic_takes_the_layers_dtype_and_is_checked(backend):
    X, y = spiral_data(20, 3, seed=2)
    m = model(dtype="float32")
    bn = m.network.layers[1]
    bn.running_var = np.full((1, 32), 2.0)  # float64, before placement: cast now
    assert bn.running_var.dtype == np.float32
    with pytest.raises(ValueError, match=r"running_mean must have shape \(1, 32\), got \(32,\)"):
        bn.running_mean = np.zeros(32)
    with pytest.raises(TypeError, match="running_mean must be a floating array"):
        bn.running_mean = np.zeros((1, 32), dtype=np.int64)
    Xb = backend.asarray(X)
    m.train(Xb, backend.asarray(y), epochs=2, batch_size=32, verbose=False, seed=0)
    assert bn.running_var.dtype == m.network.layers[0].weight.dtype  # float32 in the backend's library
    if backend.name != "numpy":  # a NumPy array assigned after placement on another library: a clear error
        bn.running_mean = np.zeros((1, 32))
        with pytest.raises(TypeError, match=r"BatchNorm.forward \(running_mean\): input is a .* but its "
                                            r"running_mean is a numpy"):
            m.predict(Xb, compile=False)


def test_training_on_a_one_row_batch_is_refused_before_any_step(backend):
    """Batch sizes are known before the first step: the ValueError comes before anything is trained."""
    one_row_batch_is_refused(backend, compile=False)


@pytest.mark.only_xp_backends("jax", "torch", reason="the compiled steps")
def test_compiled_training_on_a_one_row_batch_is_refused_before_any_step(backend):
    """The same ValueError compiled (PyTorch raised a multi-line dynamo error, after the epoch's earlier steps)."""
    one_row_batch_is_refused(backend, compile=True)


def one_row_batch_is_refused(backend, compile):
    X, y = spiral_data(11, 3, seed=3)  # 33 rows in batches of 16: a last batch of one row
    m = model()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    before = np.array(m.layers[0].weight)
    with pytest.raises(ValueError, match=r"BatchNorm.forward: training needs batches of more than one row; "
                                         r"batch_size=16 leaves a batch of 1 row\(s\) of the 33 rows"):
        m.train(Xb, yb, epochs=1, batch_size=16, verbose=False, compile=compile)
    assert m.optimizer.iterations == 0
    np.testing.assert_array_equal(np.asarray(m.layers[0].params["weight"].value), before)
    assert tuple(m.predict(Xb[:1, ...]).shape) == (1, 3)  # inference on one row is fine
    m.train(Xb, yb, epochs=1, batch_size=11, seed=0, verbose=False, compile=compile)  # 3 batches of 11: fine


def test_layernorm_matches_torch(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, dvalue = rng.standard_normal((5, 6)), rng.standard_normal((5, 6))
    layer = pnn.LayerNorm(6, dtype="float64", epsilon=1e-5)
    weight, bias = rng.uniform(0.5, 1.5, (1, 6)), rng.uniform(-0.5, 0.5, (1, 6))
    layer.weight, layer.bias = weight, bias
    out = layer.forward(backend.asarray(x))
    dinput = layer.backward(backend.asarray(dvalue))
    ref = torch.nn.LayerNorm(6, eps=1e-5, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.asarray(weight[0]))
        ref.bias.copy_(torch.asarray(bias[0]))
    expected, expected_dx = torch_grad(ref, x, dvalue)
    backend.assert_close(out, expected, rtol=1e-12, atol=1e-14)
    backend.assert_close(dinput, expected_dx, rtol=1e-10, atol=1e-13)
    backend.assert_close(layer.dweight, ref.weight.grad.numpy()[None, :], rtol=1e-12, atol=1e-14)
    backend.assert_close(layer.dbias, ref.bias.grad.numpy()[None, :], rtol=1e-12, atol=1e-14)
