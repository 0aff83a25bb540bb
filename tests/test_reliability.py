"""Bad input, files and concurrency: each way we found to break a promise, closed (issue 10's list, so far)."""

import threading

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.datasets import spiral_data


def spiral_model(loss=None, last=None, n_out=3):
    m = pnn.Model().add(pnn.Dense(2, 8, seed=0)).add(pnn.ReLU()).add(pnn.Dense(8, n_out, seed=1))
    m.add(last if last is not None else pnn.Softmax())
    m.set(loss=loss or pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.01))
    return m.finalize()


def test_no_samples_is_an_error_and_predict_of_nothing_is_empty(backend):
    empty = backend.asarray(np.zeros((0, 2), dtype=np.float32))
    labels = backend.asarray(np.zeros(0, dtype=np.int64))
    m = spiral_model()
    with pytest.raises(ValueError, match="Model.train: X has no samples"):
        m.train(empty, labels, verbose=False)
    with pytest.raises(ValueError, match="Model.evaluate: X has no samples"):
        m.evaluate(empty, labels)
    for batch_size in (None, 4):
        assert tuple(m.predict(empty, batch_size=batch_size).shape) == (0, 3)


def test_arrays_of_the_wrong_rank_and_pairs_that_are_not_pairs(backend):
    X, y = spiral_data(5, 3, seed=0)
    m = spiral_model()
    with pytest.raises(ValueError, match=r"Model.predict: X must have shape \(n_samples, n_features\), got \(\)"):
        m.predict(backend.asarray(np.float32(1.0)))
    with pytest.raises(TypeError, match="Model.train: validation_data must be an \\(X, y\\) pair, got tuple"):
        m.train(backend.asarray(X), backend.asarray(y), validation_data=(backend.asarray(X),), verbose=False)


def test_a_last_layer_without_predictions_is_refused_at_finalize():
    m = pnn.Model().add(pnn.Dense(2, 3)).add(pnn.Dropout(0.1))
    with pytest.raises(ValueError, match=r"the last layer \(Dropout\) has no predictions\(\)"):
        m.set(loss=pnn.MeanSquaredError()).finalize()


def test_binary_targets_must_be_zero_or_one(backend):
    X, y = spiral_data(10, 3, seed=1)  # labels 0, 1, 2
    m = spiral_model(pnn.BinaryCrossentropy(), pnn.Sigmoid(), n_out=1)
    with pytest.raises(ValueError, match="Model.train: binary targets must be 0 or 1"):
        m.train(backend.asarray(X), backend.asarray(y), verbose=False)


@pytest.mark.only_xp_backends("torch", reason="PyTorch autograd tensors")
def test_autograd_inputs_are_refused(backend):
    X, y = spiral_data(5, 3, seed=2)
    Xb = backend.asarray(X)
    Xb.requires_grad_(True)
    with pytest.raises(TypeError, match=r"X requires grad .* pass X.detach\(\)"):
        spiral_model().train(Xb, backend.asarray(y), verbose=False)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: pnn.Dense(2, 3, dtype=None), "dtype must be one of"),
    (lambda: pnn.Dense(2, 3, weight_scale=1e300), "weight_scale=1e.300 gives infinite float32 weights"),
    (lambda: pnn.Dropout(0.1, seed=-1), "Dropout: seed must be an integer >= 0 or None, got -1"),
])
def test_constructors_refuse_what_would_fail_later(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_gradcheck_refuses_a_zero_step_and_handles_fortran_ordered_inputs(backend):
    with pytest.raises(ValueError, match="gradcheck: eps must be a finite number > 0, got 0"):
        pnn.gradcheck(pnn.ReLU(), backend.asarray(np.ones((2, 2))), eps=0)
    x = np.asfortranarray(np.random.default_rng(0).standard_normal((4, 3)))
    assert pnn.gradcheck(pnn.Dense(3, 2, seed=0, dtype="float64"), backend.asarray(x)).ok


def saved(tmp_path, arrays_update=None, header_update=None):
    """A valid model file, then rewritten with some arrays or header fields replaced."""
    import json

    m = spiral_model()
    X, y = spiral_data(5, 3, seed=3)
    m.train(X, y, epochs=2, verbose=False)
    path = tmp_path / "m.npz"
    m.save(path)
    with np.load(path) as f:
        content = {k: f[k] for k in f.files}
    header = json.loads(content["__portable_nn__"].tobytes())
    header.update(header_update or {})
    content.update(arrays_update or {})
    content["__portable_nn__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **content)
    return path


@pytest.mark.parametrize(("arrays", "header", "message"), [
    ({"0/weight": np.full((2, 8), np.nan, dtype=np.float32)}, None, "'0/weight' holds NaN or infinite values"),
    ({"1/bias_cache": np.full((1, 3), -1.0, dtype=np.float32)}, None, "'1/bias_cache' holds negative values"),
    (None, {"version": True}, "format version True"),
    (None, {"optimizer": {"type": "Adam", "config": {}, "iterations": 10**400}}, "invalid optimizer iterations"),
])
def test_well_formed_files_with_bad_values_are_refused(tmp_path, arrays, header, message):
    path = saved(tmp_path, arrays, header)
    with pytest.raises(ValueError, match=message):
        pnn.Model.load(path)


def test_predict_from_eight_threads_equals_serial(backend):
    X, y = spiral_data(40, 3, seed=4)
    m = spiral_model()
    m.train(backend.asarray(X), backend.asarray(y), epochs=3, verbose=False)
    inputs = [backend.asarray(X[i * 10:(i + 1) * 10 + i]) for i in range(8)]  # different batch sizes
    serial = [backend.to_numpy(m.predict(x)) for x in inputs]
    results: list = [None] * 8

    def work(i):
        for _ in range(20):
            results[i] = backend.to_numpy(m.predict(inputs[i]))
            np.testing.assert_array_equal(results[i], serial[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, serial, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("form", ["uint16", "uint64", "bool one-hot"])
def test_every_label_form_trains(backend, form):
    X, y = spiral_data(5, 3, seed=5)
    labels = np.eye(3, dtype=bool)[y] if form == "bool one-hot" else y.astype(form)
    hist = spiral_model().train(backend.asarray(X), backend.asarray(labels), epochs=2, verbose=False)
    assert np.isfinite(hist.loss[-1]) and 0.0 <= hist.accuracy[-1] <= 1.0


@pytest.mark.parametrize("dtype", [np.int32, np.bool_])
def test_integer_and_bool_regression_targets_train(backend, dtype):
    X, y = spiral_data(5, 2, seed=6)
    m = spiral_model(pnn.MeanSquaredError(), pnn.Linear(), n_out=1)
    hist = m.train(backend.asarray(X), backend.asarray(y.astype(dtype)), epochs=2, verbose=False)
    assert np.isfinite(hist.loss[-1])


def test_a_new_optimizer_starts_from_fresh_state(backend):
    X, y = spiral_data(5, 3, seed=7)
    m = spiral_model()
    m.train(backend.asarray(X), backend.asarray(y), epochs=2, verbose=False)
    assert m.layers[0].weight_cache is not None
    m.set(optimizer=pnn.RMSprop(1e-3)).finalize()
    assert m.layers[0].weight_cache is None and m.layers[0].weight_momentum is None
    m.train(backend.asarray(X), backend.asarray(y), epochs=1, verbose=False)
    assert m.layers[0].weight_momentum is None and m.layers[0].weight_cache is not None


def test_ctrl_c_stops_training_at_a_step_boundary():
    """The interrupt lands mid-report; train stops after that step, with its history, never mid-update."""
    import os
    import signal

    X, y = spiral_data(20, 3, seed=8)
    m = spiral_model()
    sent = []

    def press_ctrl_c(info):
        if not sent:
            sent.append(info["global_step"])
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt, match="interrupted; the model is at the end of epoch 3, step 1") as info:
        m.train(X, y, epochs=10, print_every=3, verbose=False, callback=press_ctrl_c)
    assert sent == [3] and m.optimizer.iterations == 3 and info.value.history.epoch == [1, 2, 3]
    ref = spiral_model()
    ref.train(X, y, epochs=3, verbose=False)
    for (w, b), (wr, br) in zip(m.get_parameters(), ref.get_parameters(), strict=True):
        np.testing.assert_array_equal(w, wr)
        np.testing.assert_array_equal(b, br)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_float64_data_beyond_float32s_range_is_refused_by_a_float32_model(backend):
    X, y = spiral_data(5, 3, seed=9)
    big = X.astype(np.float64)
    big[0, 0] = 1e300
    m = spiral_model()
    with pytest.raises(ValueError, match="Model.evaluate: X holds values beyond float32's range"):
        m.evaluate(backend.asarray(big), backend.asarray(y))


@pytest.mark.only_xp_backends("jax", reason="JAX without float64, in a subprocess (the session that has JAX)")
def test_float64_layers_on_jax_without_x64_are_refused():
    pytest.importorskip("jax")
    import subprocess
    import sys

    code = ("import jax.numpy as jnp, portable_nn as pnn\n"
            "pnn.Dense(2, 3, dtype='float64').forward(jnp.ones((1, 2), dtype=jnp.float32))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "jax.config.update('jax_enable_x64', True)" in proc.stderr, proc.stderr


def test_evaluate_from_eight_threads_equals_serial(backend):
    X, y = spiral_data(40, 3, seed=10)
    m = spiral_model()
    m.train(backend.asarray(X), backend.asarray(y), epochs=3, verbose=False)
    parts = [(backend.asarray(X[i * 10:(i + 1) * 10 + i]), backend.asarray(y[i * 10:(i + 1) * 10 + i]))
             for i in range(8)]
    serial = [m.evaluate(*part) for part in parts]
    results: list = [None] * 8

    def work(i):
        for _ in range(10):
            results[i] = m.evaluate(*parts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == serial


def test_an_optimizer_state_that_overflows_is_a_divergence(backend):
    """RMSprop(1e6) keeps a finite loss while its cache overflows: train must not return as if all were well."""
    from portable_nn.datasets import sine_data

    X, y = sine_data(200)
    m = pnn.Model().add(pnn.Dense(1, 16, seed=0)).add(pnn.ReLU()).add(pnn.Dense(16, 1, seed=1)).add(pnn.Linear())
    m.set(loss=pnn.MeanSquaredError(), optimizer=pnn.RMSprop(learning_rate=1e6)).finalize()
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(FloatingPointError, match="non-finite"):
        m.train(backend.asarray(X), backend.asarray(y), epochs=100, print_every=10, verbose=False)
