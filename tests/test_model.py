"""Model: the book's experiments (short), fused path, reports, placement, errors."""

import re
import warnings

import numpy as np
import pytest
from helpers import same_column_sums

import portable_nn as pnn
from portable_nn.datasets import sine_data, spiral_data


def spiral_model(dtype="float32", hidden=64, lr=0.05, l2=0.0, dropout=0.0, seed=0):
    m = pnn.Model()
    m.add(pnn.Dense(2, hidden, seed=seed, dtype=dtype, weight_regularizer_l2=l2, bias_regularizer_l2=l2))
    m.add(pnn.ReLU())
    if dropout:
        m.add(pnn.Dropout(dropout, seed=seed))
    m.add(pnn.Dense(hidden, 3, seed=seed + 1, dtype=dtype))
    m.add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(learning_rate=lr, decay=5e-7),
          accuracy=pnn.CategoricalAccuracy())
    return m.finalize()


def last(values, k=10):
    """The mean over the last ``k`` epochs: a learning test never reads one rounding-sensitive epoch."""
    return float(np.mean(values[-k:]))


def test_spiral_classification_learns(backend):
    """float64 (the same run on every machine to ~1e-12); loss ratio and means over epochs, never a last epoch."""
    X, y = spiral_data(100, 3, seed=0)
    m = spiral_model("float64")
    epochs = backend.epochs(400)
    hist = m.train(backend.asarray(X), backend.asarray(y), epochs=epochs, print_every=100, verbose=False)
    assert len(hist.loss) == epochs and hist.epoch == list(range(1, epochs + 1))
    assert last(hist.loss) < 0.8 * hist.loss[0]  # 0.37 at 400 epochs, 0.77 at 66
    assert last(hist.accuracy) > np.mean(hist.accuracy[:10]) + 0.15
    assert hist.learning_rate[-1] == pytest.approx(0.05 / (1 + 5e-7 * (epochs - 1)))


def test_spiral_float32_fast_and_reference_paths_agree(monkeypatch):
    """The NumPy optimizer and ReLU kernels compute the reference formulas in the same order: 200 float32 Adam
    steps agree to the last bits.  (Dense's ``dbias`` kernel is equal to rounding: tested below.)"""
    X, y = spiral_data(100, 3, seed=0)
    fast, ref = spiral_model(), spiral_model()
    same_column_sums(monkeypatch)
    with pnn.fast_paths(True):  # also when PORTABLE_NN_FAST_PATHS=0 switched them off for the run
        fast.train(X, y, epochs=200, verbose=False)
    with pnn.fast_paths(False):
        ref.train(X, y, epochs=200, verbose=False)
    assert ref.optimizer._flat is None and fast.optimizer._flat is not None
    for (wf, bf), (wr, br) in zip(fast.get_parameters(), ref.get_parameters(), strict=False):
        np.testing.assert_allclose(wf, wr, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(bf, br, rtol=1e-5, atol=1e-7)


def test_column_sums_kernel_equals_the_portable_sum():
    rng = np.random.default_rng(0)
    for dtype, rtol in (("float32", 1e-5), ("float64", 1e-13)):
        d = rng.standard_normal((300, 64)).astype(dtype)
        fast = pnn.kernels.column_sums(d)
        with pnn.fast_paths(False):
            ref = pnn.kernels.column_sums(d)
        assert fast.shape == ref.shape == (1, 64) and fast.dtype == ref.dtype == d.dtype
        np.testing.assert_allclose(fast, ref, rtol=rtol, atol=rtol * 10)
        np.testing.assert_array_equal(ref, d.sum(axis=0, keepdims=True))


def test_binary_spiral_with_sigmoid_and_bce(backend):
    X, y = spiral_data(100, 2, seed=0)
    m = pnn.Model()
    m.add(pnn.Dense(2, 64, seed=0, dtype="float64", weight_regularizer_l2=5e-4, bias_regularizer_l2=5e-4))
    m.add(pnn.ReLU())
    m.add(pnn.Dense(64, 1, seed=1, dtype="float64"))
    m.add(pnn.Sigmoid())
    m.set(loss=pnn.BinaryCrossentropy(), optimizer=pnn.Adam(learning_rate=0.02, decay=5e-7),
          accuracy=pnn.CategoricalAccuracy(binary=True))
    m.finalize()
    epochs = backend.epochs(500)
    hist = m.train(backend.asarray(X), backend.asarray(y), epochs=epochs, print_every=epochs, verbose=False)
    assert hist.regularization_loss[-1] > 0
    assert hist.loss[-1] == pytest.approx(hist.data_loss[-1] + hist.regularization_loss[-1])
    assert last(hist.loss) < 0.85 * hist.loss[0]  # 0.34 at 500 epochs, 0.78 at 83
    assert last(hist.accuracy) > np.mean(hist.accuracy[:10]) + 0.1  # 0.58 -> 0.95 / 0.80


def test_sine_regression(backend):
    X, y = sine_data(1000)
    m = pnn.Model()
    m.add(pnn.Dense(1, 64, weight_scale=0.1, seed=0, dtype="float64"))
    m.add(pnn.ReLU())
    m.add(pnn.Dense(64, 64, weight_scale=0.1, seed=1, dtype="float64"))
    m.add(pnn.ReLU())
    m.add(pnn.Dense(64, 1, weight_scale=0.1, seed=2, dtype="float64"))
    m.add(pnn.Linear())
    m.set(loss=pnn.MeanSquaredError(), optimizer=pnn.Adam(learning_rate=0.005, decay=1e-3),
          accuracy=pnn.RegressionAccuracy())
    m.finalize()
    epochs = backend.epochs(400)
    hist = m.train(backend.asarray(X), backend.asarray(y), epochs=epochs, print_every=epochs, verbose=False)
    assert last(hist.loss) < hist.loss[0] / 3  # 7e-5 at 400 epochs, 0.11 at 66 (from 0.51)


def test_fused_softmax_crossentropy_step_equals_the_unfused_chain(backend):
    """finalize() fuses Softmax + CCE: the gradients equal softmax.backward(cce.backward(...))."""
    X, y = spiral_data(20, 3, seed=1)
    fused = spiral_model("float64", hidden=8)
    assert isinstance(fused.plan.fused, pnn.SoftmaxCategoricalCrossentropy)
    fused.set(optimizer=pnn.SGD(learning_rate=1e-9)).finalize()
    fused.train(backend.asarray(X), backend.asarray(y), epochs=1, verbose=False, compile=False)  # gradients stay
    layers = [pnn.Dense(2, 8, seed=0, dtype="float64"), pnn.ReLU(), pnn.Dense(8, 3, seed=1, dtype="float64"),
              pnn.Softmax()]
    x = backend.asarray(X, dtype=np.float64)
    for layer in layers:
        x = layer.forward(x)
    d = pnn.CategoricalCrossentropy().backward(x, backend.asarray(y))
    for layer in reversed(layers):
        d = layer.backward(d)
    for got, want in ((fused.layers[0].dweight, layers[0].dweight), (fused.layers[2].dbias, layers[2].dbias)):
        backend.assert_close(got, backend.to_numpy(want), rtol=1e-10, atol=1e-14)


def test_predict_returns_the_inputs_library_and_batches_agree(backend, xp):
    X, _y = spiral_data(30, 3, seed=2)
    m = spiral_model()
    Xb = backend.asarray(X)
    full = m.predict(Xb)
    batched = m.predict(Xb, batch_size=7)
    from array_api_compat import array_namespace

    assert array_namespace(full) is xp and full.shape == (90, 3)
    np.testing.assert_allclose(backend.to_numpy(batched), backend.to_numpy(full), rtol=1e-6)


def test_evaluate_returns_host_floats(backend):
    X, y = spiral_data(30, 3, seed=3)
    m = spiral_model()
    loss, acc = m.evaluate(backend.asarray(X), backend.asarray(y), batch_size=16)
    assert isinstance(loss, float) and isinstance(acc, float)
    assert loss == pytest.approx(np.log(3), rel=0.05) and 0 <= acc <= 1


def test_minibatches_shuffle_validation_and_dropout(backend):
    X, y = spiral_data(50, 3, seed=4)
    Xv, yv = spiral_data(20, 3, seed=5)
    m = spiral_model(dropout=0.1, l2=5e-4)
    hist = m.train(backend.asarray(X), backend.asarray(y), epochs=3, batch_size=64, shuffle=True, seed=0,
                   validation_data=(backend.asarray(Xv), backend.asarray(yv)), print_every=2, verbose=False)
    assert len(hist.val_loss) == len(hist.val_accuracy) == 3
    assert m.optimizer.iterations == 3 * 3  # 150 samples / 64 -> 3 steps per epoch


def test_float64_training_is_identical_to_numpy(backend):
    """Cross-backend determinism: same seed, float64 -> the same predictions to ~1e-12."""
    X, y = spiral_data(30, 3, seed=6)
    ref = spiral_model("float64", hidden=16)
    ref.train(X, y, epochs=20, verbose=False)
    m = spiral_model("float64", hidden=16)
    m.train(backend.asarray(X), backend.asarray(y), epochs=20, verbose=False)
    np.testing.assert_allclose(backend.to_numpy(m.predict(backend.asarray(X))), ref.predict(X), rtol=1e-10, atol=1e-12)


def test_same_seed_same_backend_is_bit_identical(backend):
    X, y = spiral_data(30, 3, seed=7)
    runs = []
    for _ in range(2):
        m = spiral_model(dropout=0.2)
        m.train(backend.asarray(X), backend.asarray(y), epochs=5, batch_size=32, shuffle=True, seed=3, verbose=False)
        runs.append(backend.to_numpy(m.layers[0].weight))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_divergence_raises_and_keeps_finite_parameters(backend):
    X, y = spiral_data(30, 3, seed=8)
    m = pnn.Model()
    m.add(pnn.Dense(2, 16, seed=0, weight_scale=1.0))
    m.add(pnn.ReLU())
    m.add(pnn.Dense(16, 1, seed=1, weight_scale=1.0))
    m.add(pnn.Linear())
    m.set(loss=pnn.MeanSquaredError(), optimizer=pnn.SGD(learning_rate=1e3))
    m.finalize()
    target = backend.asarray(y.astype(np.float32) * 1000)
    # NumPy's own overflow warnings are not what is tested here: our detection is
    with np.errstate(over="ignore", invalid="ignore"), \
            pytest.raises(FloatingPointError, match=r"loss became (nan|inf) at epoch \d+, step 1"):
        m.train(backend.asarray(X), target, epochs=200, print_every=5, verbose=False)
    for w, b in m.get_parameters():
        assert np.all(np.isfinite(backend.to_numpy(w))) and np.all(np.isfinite(backend.to_numpy(b)))


def test_train_checks_its_inputs_once(backend):
    X, y = spiral_data(10, 3, seed=9)
    m = spiral_model()
    Xb, yb = backend.asarray(X), backend.asarray(y)
    with pytest.raises(ValueError, match="Model.train: X has 30 samples but y has 29"):
        m.train(Xb, backend.asarray(y[:29]), verbose=False)
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 3\)"):
        m.train(Xb, backend.asarray(np.full(30, 3, dtype=np.uint8)), verbose=False)
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 3\)"):
        m.train(Xb, backend.asarray(np.full(30, -1, dtype=np.int64)), verbose=False)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="Model.train: X contains NaN or infinite values"):
        m.train(backend.asarray(bad), yb, verbose=False)
    with pytest.raises(TypeError, match="Model.train: X: expected a float32/float64 array"):
        m.train(backend.asarray(np.ones((30, 2), dtype=np.int32)), yb, verbose=False)
    for kwargs, msg in (({"epochs": 0}, "epochs must be a positive integer"),
                        ({"batch_size": -2}, "batch_size must be a positive integer"),
                        ({"print_every": 0}, "print_every must be a positive integer")):
        with pytest.raises(ValueError, match=msg):
            m.train(Xb, yb, verbose=False, **kwargs)


def test_train_before_set_or_finalize_is_an_error(backend):
    m = pnn.Model()
    m.add(pnn.Dense(2, 3))
    X = backend.asarray(np.ones((2, 2), dtype=np.float32))
    first = r"Model.train: call model.set\(loss=..., optimizer=...\) and model.finalize\(\) first"
    with pytest.raises(RuntimeError, match=first):
        m.train(X, backend.asarray(np.zeros(2, dtype=np.uint8)))
    with pytest.raises(ValueError, match="Model.finalize: no loss"):
        m.finalize()
    with pytest.raises(ValueError, match="Model.finalize: the model has no layers"):
        pnn.Model().finalize()
    bad = pnn.Model().add(pnn.Dense(2, 4)).add(pnn.ReLU()).add(pnn.Dense(5, 3))
    chain = r"layer 2 \(Dense\) expects 5 inputs but the previous Dense layer has 4 neurons"
    with pytest.raises(ValueError, match=chain):
        bad.set(loss=pnn.MeanSquaredError()).finalize()


def test_print_every_prints_book_style_lines(backend, capsys):
    X, y = spiral_data(10, 3, seed=10)
    spiral_model().train(backend.asarray(X), backend.asarray(y), epochs=4, print_every=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch: 2, step: 1, acc: ") and "lr: " in lines[0]


def test_model_to_moves_parameters_and_state(backend, xp):
    from array_api_compat import array_namespace

    X, y = spiral_data(10, 3, seed=11)
    m = spiral_model()
    m.train(X, y, epochs=2, verbose=False)  # trained on NumPy
    like = backend.asarray(X)
    m.to(like=like)
    assert array_namespace(m.layers[0].weight) is xp and array_namespace(m.layers[0].weight_cache) is xp
    m.train(like, backend.asarray(y), epochs=2, verbose=False)
    m.to(like=np.zeros(1, dtype=np.float32))
    assert isinstance(m.layers[0].weight, np.ndarray) and isinstance(m.layers[2].bias_momentum, np.ndarray)


@pytest.mark.only_xp_backends("dask", reason="Dask's laziness")
def test_dask_predict_is_lazy(backend):
    import dask.array as da

    X, _ = spiral_data(20, 3, seed=12)
    out = spiral_model().predict(backend.asarray(X))
    assert isinstance(out, da.Array)
    assert out.shape == (60, 3)


def test_digits_reach_95_percent():
    """float64: the same run on any machine (a float32 end-of-training accuracy could flip on another BLAS)."""
    pytest.importorskip("sklearn")
    from portable_nn.datasets import load_digits

    X_train, y_train, X_test, y_test = load_digits()
    m = pnn.Model()
    m.add(pnn.Dense(64, 128, seed=0, weight_scale=0.1, dtype="float64"))
    m.add(pnn.ReLU())
    m.add(pnn.Dense(128, 10, seed=1, weight_scale=0.1, dtype="float64"))
    m.add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(learning_rate=0.01, decay=1e-4))
    m.finalize()
    m.train(X_train, y_train, epochs=10, batch_size=64, shuffle=True, seed=0, print_every=1000, verbose=False)
    _loss, acc = m.evaluate(X_test, y_test)
    assert acc > 0.95, acc  # 0.97 here


def test_train_rejects_labels_of_the_wrong_shape_and_kind(backend):
    X, y = spiral_data(10, 3, seed=13)
    m = spiral_model()
    Xb = backend.asarray(X)
    with pytest.raises(ValueError, match=r"y of shape \(30, 4\) does not fit a model with 3 outputs"):
        m.train(Xb, backend.asarray(np.eye(4)[y % 4]), verbose=False)
    with pytest.raises(ValueError, match=r"y of shape \(30, 3, 1\) does not fit"):
        m.train(Xb, backend.asarray(np.eye(3)[y][..., None]), verbose=False)
    with pytest.raises(TypeError, match="class labels must be integers"):
        m.train(Xb, backend.asarray(y.astype(np.float32)), verbose=False)
    with pytest.raises(TypeError, match="X must be an array"):
        m.train(X.tolist(), y, verbose=False)
    with pytest.raises(TypeError, match="Model.train: X: expected a float32/float64 array"):
        m.train(np.array([["a", "b"]] * 30, dtype=object), y, verbose=False)


@pytest.mark.skip_xp_backends("numpy", reason="needs a second library")
def test_train_rejects_labels_of_another_library(backend):
    X, y = spiral_data(10, 3, seed=13)
    with pytest.raises(TypeError, match="y is a numpy array on device cpu but X is a"):
        spiral_model().train(backend.asarray(X), y, verbose=False)


@pytest.mark.skip_xp_backends("numpy", reason="needs a second library")
def test_predict_after_placement_refuses_another_library(backend):
    X, y = spiral_data(10, 3, seed=14)
    m = spiral_model()
    m.train(backend.asarray(X), backend.asarray(y), epochs=1, verbose=False)
    with pytest.raises(TypeError, match=r"input is a numpy array on device cpu but the parameters are a .* "
                                        r"move the model with model.to\(like=x\)"):
        m.predict(X)


@pytest.mark.only_xp_backends("torch", device="cuda", reason="torch.cuda.set_sync_debug_mode is PyTorch CUDA's")
def test_a_training_step_never_waits_for_the_device(backend):
    """PyTorch CUDA: with sync debug mode 'error', any device->host sync inside a step raises."""
    import torch

    from portable_nn.training.loop import prepared_targets
    from portable_nn.training.step import train_step

    X, y = spiral_data(50, 3, seed=15)
    m = spiral_model(dropout=0.1, l2=1e-4)
    Xb, yb = backend.asarray(X), backend.asarray(y)
    m.train(Xb, yb, epochs=1, verbose=False)  # placement and the per-call checks sync, once
    xp = backend.xp
    y_loss, y_acc = prepared_targets(m.plan, xp, yb)
    torch.cuda.synchronize()
    try:
        with warnings.catch_warnings():  # "a prototype feature": PyTorch's own warning
            warnings.simplefilter("ignore", UserWarning)
            torch.cuda.set_sync_debug_mode("error")
        for _ in range(3):
            train_step(m.plan, Xb, y_loss, y_acc, xp.isfinite)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_huge_but_finite_data_is_accepted(backend):
    """The fast finiteness check (a sum per sample) overflows here; the exact check must decide."""
    X = np.full((40, 2), 3e38, dtype=np.float32)  # finite, but 40 of them sum to inf
    y = np.zeros(40, dtype=np.uint8)
    from portable_nn.training.validate import check_data

    with np.errstate(over="ignore", invalid="ignore"):
        check_data("train", backend.asarray(X), backend.asarray(y), n_outputs=3, target_kind="classes")  # no error
        X[7, 1] = np.inf
        with pytest.raises(ValueError, match="X contains NaN or infinite values"):
            check_data("train", backend.asarray(X), backend.asarray(y), n_outputs=3, target_kind="classes")


def test_predict_writes_no_layer_state(backend):
    """predict runs each layer as a shallow copy: the model's layers keep what training left."""
    X, y = spiral_data(10, 3, seed=16)
    m = spiral_model(dropout=0.1)
    Xb = backend.asarray(X)
    m.train(Xb, backend.asarray(y), epochs=1, verbose=False)
    kept = [(layer.input, layer.output) for layer in m.layers]
    out = m.predict(backend.asarray(X[:4]))
    assert all(layer.input is i and layer.output is o for layer, (i, o) in zip(m.layers, kept, strict=True))
    assert tuple(out.shape) == (4, 3)


def test_parameters_are_snapshots_and_never_shared_between_models(backend):
    """get_parameters copies; set_parameters copies: training one model never moves another's weights."""
    X, y = spiral_data(10, 3, seed=17)
    Xb, yb = backend.asarray(X), backend.asarray(y)
    m1, m2 = spiral_model(), spiral_model(seed=5)
    m1.train(Xb, yb, epochs=2, verbose=False)
    best = m1.get_parameters()
    kept = [backend.to_numpy(w) for w, _ in best]
    m2.set_parameters(best)
    before = backend.to_numpy(m2.predict(Xb))
    m1.train(Xb, yb, epochs=3, verbose=False)
    np.testing.assert_array_equal(backend.to_numpy(m2.predict(Xb)), before)
    assert all(np.array_equal(backend.to_numpy(w), k) for (w, _), k in zip(best, kept, strict=True))
    m1.set_parameters(best)  # back to the snapshot
    np.testing.assert_array_equal(backend.to_numpy(m1.predict(Xb)), before)
    with pytest.raises(TypeError, match="layer 0 weight must be a float32/float64 array"):
        m1.set_parameters([(backend.asarray(np.ones((2, 64), dtype=np.int32)), b) for _, b in best])


def test_an_overflowing_update_is_reported_truthfully(backend):
    """A finite loss whose update overflows: the guard never claims finite parameters it does not have."""
    X, y = spiral_data(30, 3, seed=18)
    m = spiral_model(hidden=16)
    m.set(optimizer=pnn.SGD(learning_rate=1e300)).finalize()
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(FloatingPointError) as info:
        m.train(backend.asarray(X), backend.asarray(y), epochs=50, batch_size=30, print_every=1, verbose=False, seed=0)
    # the update that overflowed is undone: the kept parameters are the last ones whose loss was finite
    assert "whose loss was finite" in str(info.value), str(info.value)
    for w, b in m.get_parameters():
        assert np.all(np.isfinite(backend.to_numpy(w))) and np.all(np.isfinite(backend.to_numpy(b)))
    assert np.isfinite(m.evaluate(backend.asarray(X), backend.asarray(y))[0])


def diverging_sine_model() -> pnn.Model:
    """Plain SGD at 3.0 on the sine data scaled by 100: finite for ~20 epochs, then the loss overflows."""
    m = pnn.Model().add(pnn.Dense(1, 16, seed=0)).add(pnn.ReLU()).add(pnn.Dense(16, 1, seed=1)).add(pnn.Linear())
    return m.set(loss=pnn.MeanSquaredError(), optimizer=pnn.SGD(learning_rate=3.0)).finalize()


@pytest.mark.parametrize("print_every", [1, 7, 1000])
def test_a_diverged_model_can_go_on_at_a_lower_learning_rate(backend, print_every):
    """Issue 10, item 8: after FloatingPointError the kept parameters predict finite values and train on."""
    X, y = sine_data(100)
    Xb, yb = backend.asarray(X), backend.asarray(y * 100)
    m = diverging_sine_model()
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(FloatingPointError) as info:
        m.train(Xb, yb, epochs=500, print_every=print_every, verbose=False)
    assert "whose loss was finite" in str(info.value) or "when this call began" in str(info.value)
    assert np.all(np.isfinite(backend.to_numpy(m.predict(Xb))))
    loss, _ = m.evaluate(Xb, yb)
    assert np.isfinite(loss)
    m.set(optimizer=pnn.SGD(learning_rate=1e-3)).finalize()
    history = m.train(Xb, yb, epochs=3, verbose=False)
    assert all(np.isfinite(history.loss))


def test_the_kept_state_is_the_last_one_whose_loss_was_finite():
    """On the eager path the restored parameters are exactly those of the last finite step (NumPy, both paths)."""
    X, y = sine_data(100)
    for fast in (True, False):
        m = diverging_sine_model()
        seen: list[list[np.ndarray]] = []

        def remember(info, m=m, seen=seen):
            seen.append([np.array(w, copy=True) for w, _ in m.get_parameters()])

        with pnn.fast_paths(fast), np.errstate(over="ignore", invalid="ignore"), \
                pytest.raises(FloatingPointError, match=r"at epoch (\d+), step 1; .*epoch (\d+), step 1,") as info:
            m.train(X, y * 100, epochs=500, print_every=1, verbose=False, callback=remember)
        failed, kept = map(int, re.search(r"at epoch (\d+).*epoch (\d+)", str(info.value)).groups())
        assert kept == failed - 1
        # seen[k] are the parameters after epoch k+1's update, i.e. those epoch k+2 computed its loss with
        for w, expected in zip((w for w, _ in m.get_parameters()), seen[kept - 2], strict=True):
            np.testing.assert_array_equal(w, expected)


def test_features_that_do_not_fit_the_model_are_named(backend):
    _, y = spiral_data(10, 3, seed=19)
    m = spiral_model()
    wide = backend.asarray(np.ones((30, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="Model.evaluate: X has 5 features but the model takes 2"):
        m.evaluate(wide, backend.asarray(y))


def test_regression_accuracy_moves_with_the_model(backend):
    X, y = sine_data(50)
    m = pnn.Model().add(pnn.Dense(1, 8, seed=0)).add(pnn.ReLU()).add(pnn.Dense(8, 1, seed=1)).add(pnn.Linear())
    m.set(loss=pnn.MeanSquaredError(), optimizer=pnn.Adam(0.01)).finalize()
    m.train(X, y, epochs=2, verbose=False)  # NumPy: the precision is a NumPy scalar
    m.to(like=backend.asarray(X))
    loss, acc = m.evaluate(backend.asarray(X), backend.asarray(y))
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0


def test_defaults_report_each_epoch_and_shuffle_mini_batches(capsys):
    """One line an epoch (not one a step), and mini-batches shuffled from ``seed``: not the book's defaults,
    under which class-sorted data (spiral_data) silently fail to learn in mini-batches."""
    X, y = spiral_data(30, 3, seed=0)  # 90 rows sorted by class: 3 batches of 32 an epoch
    calls = []
    runs = {}
    for name, kwargs in {"default": {"seed": 1}, "again": {"seed": 1}, "other seed": {"seed": 2},
                         "book order": {"shuffle": False}, "shuffled": {"shuffle": True, "seed": 1}}.items():
        m = spiral_model("float64")
        m.train(X, y, epochs=4, batch_size=32, callback=calls.append, **kwargs)
        runs[name] = np.concatenate([np.ravel(p) for pair in m.get_parameters() for p in pair])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 5 * 4 and [c["step"] for c in calls] == [3] * 20  # every epoch's last step only
    np.testing.assert_array_equal(runs["default"], runs["again"])
    np.testing.assert_array_equal(runs["default"], runs["shuffled"])
    assert not np.array_equal(runs["default"], runs["other seed"])
    assert not np.array_equal(runs["default"], runs["book order"])
    # full batch: the order is kept (a permutation would only change the rounding of the sums)
    a, b = spiral_model("float64"), spiral_model("float64")
    a.train(X, y, epochs=3, verbose=False)
    b.train(X, y, epochs=3, shuffle=False, verbose=False)
    for (wa, ba), (wb, bb) in zip(a.get_parameters(), b.get_parameters(), strict=True):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ba, bb)
