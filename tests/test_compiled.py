"""Compiled training (issue 11): the same hand-written step under jax.jit and torch.compile.

Compiled equals eager in float64 to 1e-12 over 50 steps, for every optimizer,
L1/L2, every loss and label form, batch sizes that do and do not divide the
data, and dropout (the same streams in both modes); compilations are counted.
"""

import warnings

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.datasets import sine_data, spiral_data
from portable_nn.training import compiled

compiled_backends = pytest.mark.only_xp_backends("jax", "torch", reason="the backends with a compiler")


def make(case):
    """A float64 model, its data and training options for one combination of the issue's list."""
    d = "float64"
    X, y = spiral_data(20, 3, seed=4)  # 60 samples
    m = pnn.Model()
    if case == "adam-l1l2-dropout-cce":
        m.add(pnn.Dense(2, 16, seed=0, dtype=d, weight_regularizer_l1=1e-4, weight_regularizer_l2=1e-3,
                        bias_regularizer_l1=1e-4, bias_regularizer_l2=1e-3))
        m.add(pnn.ReLU()).add(pnn.Dropout(0.2, seed=9)).add(pnn.Dense(16, 3, seed=1, dtype=d)).add(pnn.Softmax())
        m.set(loss=pnn.CategoricalCrossentropy(),
              optimizer=pnn.Adam(0.02, decay=1e-3, weight_decay=1e-2, clipnorm=0.05))
        return m, X, y, {"batch_size": 16, "shuffle": True, "seed": 3}  # 16 does not divide 60
    if case == "sgd-momentum-onehot":
        m.add(pnn.Dense(2, 16, seed=0, dtype=d)).add(pnn.Tanh()).add(pnn.Dense(16, 3, seed=1, dtype=d))
        m.add(pnn.Softmax())
        m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.SGD(0.5, decay=1e-2, momentum=0.9))
        return m, X, np.eye(3, dtype=np.int64)[y], {"batch_size": 20}  # 20 divides 60
    if case == "sgd-bce":
        m.add(pnn.Dense(2, 16, seed=0, dtype=d, weight_regularizer_l2=5e-4)).add(pnn.LeakyReLU())
        m.add(pnn.Dense(16, 1, seed=1, dtype=d)).add(pnn.Sigmoid())
        m.set(loss=pnn.BinaryCrossentropy(), optimizer=pnn.SGD(0.3))
        return m, X, (y % 2).reshape(-1, 1), {}
    if case == "rmsprop-mse":
        X, y = sine_data(60)
        m.add(pnn.Dense(1, 16, seed=0, dtype=d)).add(pnn.ReLU()).add(pnn.Dense(16, 1, seed=1, dtype=d))
        m.add(pnn.Linear())
        m.set(loss=pnn.MeanSquaredError(), optimizer=pnn.RMSprop(0.005, decay=1e-3, clipvalue=0.5),
              accuracy=pnn.RegressionAccuracy())
        return m, X, y, {"batch_size": 16}
    if case == "adagrad-mae":
        X, y = sine_data(60)
        m.add(pnn.Dense(1, 16, seed=0, dtype=d, bias_regularizer_l1=1e-3)).add(pnn.Sigmoid())
        m.add(pnn.Dense(16, 1, seed=1, dtype=d)).add(pnn.Linear())
        m.set(loss=pnn.MeanAbsoluteError(), optimizer=pnn.Adagrad(0.05), accuracy=pnn.RegressionAccuracy())
        return m, X, y, {}
    if case == "sgd-momentum-batchnorm":  # running statistics: carried through the compiled block, the guard, reports
        m.add(pnn.Dense(2, 16, seed=0, dtype=d, initializer="he_normal")).add(pnn.BatchNorm(16, dtype=d))
        m.add(pnn.ReLU()).add(pnn.Dense(16, 3, seed=1, dtype=d)).add(pnn.Softmax())
        # not Adam: the bias of a Dense before BatchNorm has a gradient of exactly zero in exact arithmetic (the
        # mean is subtracted), so what it gets is rounding, and Adam's normalization turns rounding into steps
        m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.SGD(0.2, momentum=0.9))
        return m, X, y, {"batch_size": 16, "shuffle": True, "seed": 5}
    raise AssertionError(case)


CASES = ["adam-l1l2-dropout-cce", "sgd-momentum-onehot", "sgd-bce", "rmsprop-mse", "adagrad-mae",
         "sgd-momentum-batchnorm"]


def quiet_train(m, X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.compile's notes about array-api-compat's lru_cache helpers
        return m.train(X, y, verbose=False, **{"seed": 0, **kwargs})  # one shuffle order for every run compared


@compiled_backends
@pytest.mark.parametrize("case", CASES)
def test_compiled_equals_eager_in_float64(backend, case):
    """50 steps (or the epochs holding them) compiled and eager: parameters, state and history agree to 1e-12."""
    eager, X, y, options = make(case)
    fast, *_ = make(case)
    eager.finalize()
    fast.finalize()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    steps_per_epoch = -(-60 // options.get("batch_size", 60))
    epochs = -(-50 // steps_per_epoch)
    h_eager = quiet_train(eager, Xb, yb, epochs=epochs, compile=False, **options)
    h_fast = quiet_train(fast, Xb, yb, epochs=epochs, compile=True, **options)
    for a, b in zip(eager.network.parameters(), fast.network.parameters(), strict=True):
        backend.assert_close(b.value, backend.to_numpy(a.value), rtol=1e-12, atol=1e-13)
        assert set(a.state) == set(b.state)
        for key in a.state:
            backend.assert_close(b.state[key], backend.to_numpy(a.state[key]), rtol=1e-12, atol=1e-13)
    for a, b in zip(eager.network.buffer_values(), fast.network.buffer_values(), strict=True):
        backend.assert_close(b, backend.to_numpy(a), rtol=1e-12, atol=1e-13)
    assert fast.optimizer.iterations == eager.optimizer.iterations == epochs * steps_per_epoch
    assert fast.optimizer.current_learning_rate == pytest.approx(eager.optimizer.current_learning_rate, rel=1e-15)
    np.testing.assert_allclose(h_fast.loss, h_eager.loss, rtol=1e-12)
    np.testing.assert_allclose(h_fast.accuracy, h_eager.accuracy, rtol=1e-12)
    np.testing.assert_allclose(h_fast.learning_rate, h_eager.learning_rate, rtol=1e-15)


@compiled_backends
def test_compiled_predictions_and_files_equal_eager_ones(backend, tmp_path):
    m, X, y, options = make("adam-l1l2-dropout-cce")
    m.finalize()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    quiet_train(m, Xb, yb, epochs=3, compile=True, **options)
    eager = m.predict(Xb, compile=False)
    fast = m.predict(Xb, compile=True)  # PyTorch: predict runs eagerly (torch.compile of inference does not pay)
    backend.assert_close(fast, backend.to_numpy(eager), rtol=1e-12)
    batched = m.predict(Xb, batch_size=16)  # 16 does not divide 60: a scan plus the remainder
    backend.assert_close(batched, backend.to_numpy(eager), rtol=1e-12)
    assert m.evaluate(Xb, yb, batch_size=16) == pytest.approx(m.evaluate(Xb, yb, compile=False), rel=1e-12)
    m.save(tmp_path / "m.npz")
    loaded = pnn.Model.load(tmp_path / "m.npz")  # NumPy
    np.testing.assert_allclose(loaded.predict(X.astype(np.float64)), backend.to_numpy(eager), rtol=1e-12)
    for a, b in zip(loaded.network.parameters(), m.network.parameters(), strict=True):
        np.testing.assert_array_equal(a.value, backend.to_numpy(b.value))
        for key in b.state:
            np.testing.assert_array_equal(a.state[key], backend.to_numpy(b.state[key]))


@pytest.mark.only_xp_backends("jax", reason="jax.jit's compilations, counted by the trace counter")
def test_jax_compiles_once_per_shape(backend):
    m, X, y, options = make("adam-l1l2-dropout-cce")
    m.finalize()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    before = compiled.TRACES["jax:train"]
    quiet_train(m, Xb, yb, epochs=4, compile=True, **options)  # 4 steps an epoch, the last one partial
    first = compiled.TRACES["jax:train"] - before
    assert 1 <= first <= 2
    quiet_train(m, Xb, yb, epochs=4, compile=True, **options)
    assert compiled.TRACES["jax:train"] - before == first  # the same shapes: nothing new
    # print_every spanning several epochs: blocks of epochs, one more compilation at most for a shorter last block
    quiet_train(m, Xb, yb, epochs=10, compile=True, print_every=12, **options)
    assert compiled.TRACES["jax:train"] - before <= first + 2


@pytest.mark.only_xp_backends("torch", reason="torch.compile's graphs and graph breaks, from dynamo's counters")
def test_torch_compiles_without_graph_breaks(backend):
    import torch
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    m, X, y, options = make("adam-l1l2-dropout-cce")
    m.finalize()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    quiet_train(m, Xb, yb, epochs=2, compile=True, **options)  # full batches of 16 and a last one of 12
    graphs = counters["stats"]["unique_graphs"]
    assert 1 <= graphs <= 2 and not counters["graph_break"], dict(counters["graph_break"])
    quiet_train(m, Xb, yb, epochs=2, compile=True, **options)
    assert counters["stats"]["unique_graphs"] == graphs and not counters["graph_break"]


@pytest.mark.only_xp_backends("torch", reason="dynamo's per-code-object cache limit")
def test_each_torch_model_keeps_its_own_compiled_step(backend):
    """Dynamo keeps at most recompile_limit graphs per code object: each model's step has a code object of its own."""
    import torch
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    with torch._dynamo.config.patch(recompile_limit=1):  # dynamo's own scoped setting: restored afterwards
        for hidden in (4, 5, 6):  # three models with different shapes: three graphs, none falls back to eager
            m = pnn.Model().add(pnn.Dense(2, hidden, seed=0, dtype="float64")).add(pnn.ReLU())
            m.add(pnn.Dense(hidden, 3, seed=1, dtype="float64")).add(pnn.Softmax())
            m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.01)).finalize()
            X, y = spiral_data(10, 3, seed=0)
            quiet_train(m, backend.asarray(X, dtype=np.float64), backend.asarray(y), epochs=1, compile=True)
    assert counters["stats"]["unique_graphs"] == 3


def test_compile_takes_auto_true_or_false(backend):
    m, X, y, _ = make("sgd-bce")
    m.finalize()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    with pytest.raises(ValueError, match="compile must be 'auto', True or False, got 'yes'"):
        m.train(Xb, yb, compile="yes", verbose=False)


@pytest.mark.skip_xp_backends("jax", "torch", reason="backends with a compiler")
def test_compile_true_needs_a_compiler(backend):
    m, X, y, _ = make("sgd-bce")
    m.finalize()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    with pytest.raises(ValueError, match=r"Model.train: compile=True, but \w+ has no compiler"):
        m.train(Xb, yb, compile=True, verbose=False)
    with pytest.raises(ValueError, match=r"Model.predict: compile=True, but \w+ has no compiler"):
        m.predict(Xb, compile=True)
    m.train(Xb, yb, verbose=False)  # "auto": eager where there is no compiler


@pytest.mark.only_xp_backends("jax", reason="the guard inside the compiled block")
def test_a_divergence_inside_a_compiled_block_keeps_the_last_finite_state(backend):
    X, y = sine_data(100)
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y * 100)

    def diverging():
        m = pnn.Model().add(pnn.Dense(1, 16, seed=0)).add(pnn.ReLU()).add(pnn.Dense(16, 1, seed=1))
        m.add(pnn.Linear())
        return m.set(loss=pnn.MeanSquaredError(), optimizer=pnn.SGD(learning_rate=3.0)).finalize()

    messages = []
    for mode in (False, True):
        m = diverging()
        with pytest.raises(FloatingPointError, match=r"loss became (nan|inf) at epoch \d+, step 1") as info:
            m.train(Xb, yb, epochs=500, print_every=10, verbose=False, compile=mode)
        messages.append(str(info.value).split(";")[0])
        assert "whose loss was finite" in str(info.value)
        assert np.all(np.isfinite(backend.to_numpy(m.predict(Xb))))
        history = m.set(optimizer=pnn.SGD(1e-3)).finalize().train(Xb, yb, epochs=3, verbose=False, compile=mode)
        assert np.all(np.isfinite(history.loss))
    assert messages[0] == messages[1]  # the same epoch and step in both modes


@pytest.mark.only_xp_backends("jax", reason="reports of a compiled block")
def test_compiled_reports_every_print_every_steps(backend):
    m, X, y, options = make("sgd-momentum-onehot")
    m.finalize()
    seen = []
    quiet_train(m, backend.asarray(X, dtype=np.float64), backend.asarray(y), epochs=5, print_every=2,
                callback=seen.append, compile=True, **options)
    assert [i["global_step"] for i in seen] == [2, 4, 6, 8, 10, 12, 14, 15]
    assert [(i["epoch"], i["step"]) for i in seen][:3] == [(1, 2), (2, 1), (2, 3)]
    assert all(np.isfinite(i["loss"]) and 0 <= i["accuracy"] <= 1 for i in seen)


@pytest.mark.only_xp_backends("jax", reason="interrupts between compiled blocks")
def test_ctrl_c_stops_compiled_training_at_a_block_boundary(backend):
    import os
    import signal

    def press_ctrl_c(info, sent=[]):  # noqa: B006 (one press per test run)
        if not sent:
            sent.append(info["global_step"])
            os.kill(os.getpid(), signal.SIGINT)

    m, X, y, _ = make("sgd-bce")
    ref, *_ = make("sgd-bce")
    m.finalize()
    ref.finalize()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    with pytest.raises(KeyboardInterrupt, match="interrupted; the model is at the end of epoch 3, step 1") as info:
        m.train(Xb, yb, epochs=10, print_every=3, verbose=False, callback=press_ctrl_c, compile=True)
    assert m.optimizer.iterations == 3 and info.value.history.epoch == [1, 2, 3]
    ref.train(Xb, yb, epochs=3, verbose=False, compile=False)
    for a, b in zip(m.network.parameters(), ref.network.parameters(), strict=True):
        backend.assert_close(a.value, backend.to_numpy(b.value), rtol=1e-12)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.only_xp_backends("jax", reason="tracing on JAX while other threads predict")
def test_compiled_predict_is_safe_from_threads_that_trigger_new_traces(backend):
    """Each thread asks for another row count (a new trace): traces run on a private copy of the model."""
    import threading

    m, X, _y, _ = make("sgd-momentum-onehot")
    m.finalize()
    Xb = backend.asarray(X, dtype=np.float64)
    expected = {n: backend.to_numpy(m.predict(Xb[:n, ...], compile=False)) for n in range(3, 11)}
    results, errors = {}, []

    def work(n):
        try:
            results[n] = backend.to_numpy(m.predict(Xb[:n, ...]))
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(n,)) for n in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for n, want in expected.items():
        np.testing.assert_allclose(results[n], want, rtol=1e-12)


@pytest.mark.only_xp_backends("jax", reason="what a callback sees and changes during a compiled train")
def test_a_callback_keeps_and_changes_the_model_as_in_eager_training(backend):
    """A kept weight stays readable (no donated buffer under it); set_parameters and the learning rate set in
    a callback take effect at the next block, as they do at the next step of eager training."""
    results = {}
    for mode in (False, True):
        m, X, y, _ = make("sgd-momentum-onehot")
        m.set(optimizer=pnn.SGD(0.5)).finalize()
        Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
        kept = []

        def callback(info, m=m, kept=kept):
            kept.append(m.layers[0].weight)
            if info["epoch"] == 5:
                m.set_parameters([(w * 0.5, b) for w, b in m.get_parameters()])
                m.optimizer.current_learning_rate = 0.05

        history = m.train(Xb, yb, epochs=10, print_every=5, verbose=False, callback=callback, compile=mode)
        assert all(np.all(np.isfinite(backend.to_numpy(w))) for w in kept)  # none deleted
        results[mode] = (history.loss, history.learning_rate, [backend.to_numpy(p.value) for p in m.plan.parameters])
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-12)
    assert results[True][1] == results[False][1] and results[True][1][-1] == 0.05
    for a, b in zip(results[True][2], results[False][2], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.only_xp_backends("jax", reason="what a compiled function may bake in")
def test_a_changed_precision_or_learning_rate_is_used(backend):
    m, X, y, _ = make("rmsprop-mse")
    m.finalize()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    before = m.evaluate(Xb, yb)
    m.accuracy.precision *= 100
    assert m.evaluate(Xb, yb) == pytest.approx(m.evaluate(Xb, yb, compile=False), rel=1e-12)
    assert m.evaluate(Xb, yb)[1] > before[1]
    traces = compiled.TRACES["jax:train"]
    m.train(Xb, yb, epochs=1, verbose=False)
    m.optimizer.learning_rate = m.optimizer.current_learning_rate = 0.001  # traced: no new compilation
    m.train(Xb, yb, epochs=1, verbose=False)
    assert compiled.TRACES["jax:train"] == traces + 1


@pytest.mark.only_xp_backends("torch", reason="dynamo's recompile limit")
def test_torch_compile_past_its_recompile_limit_keeps_training(backend):
    """Each last-batch shape compiles a graph; past dynamo's limit (8; 2 here) the step of a new shape runs
    eagerly with one warning, and the results stay those of the eager step (train used to die mid-epoch)."""
    import torch

    torch._dynamo.reset()
    with torch._dynamo.config.patch(recompile_limit=2):
        compiled_model, eager_model = (make("sgd-bce")[0].finalize() for _ in range(2))
        with pytest.warns(RuntimeWarning, match="torch.compile reached its recompile limit") as caught:
            for rows in (60, 59, 58, 57, 56):  # batches of 16: last batches of 12, 11, 10, 9 and 8 rows
                _, X, y, _ = make("sgd-bce")
                Xb, yb = backend.asarray(X[:rows], dtype=np.float64), backend.asarray(y[:rows])
                compiled_model.train(Xb, yb, epochs=1, batch_size=16, seed=0, verbose=False, compile=True)
                eager_model.train(Xb, yb, epochs=1, batch_size=16, seed=0, verbose=False, compile=False)
    assert len([w for w in caught if "recompile limit" in str(w.message)]) == 1
    for a, b in zip(compiled_model.network.parameters(), eager_model.network.parameters(), strict=True):
        backend.assert_close(a.value, backend.to_numpy(b.value), rtol=1e-12)


@pytest.mark.only_xp_backends("jax", reason="the length of a compiled block")
def test_ctrl_c_is_honoured_within_about_a_second_on_jax(backend):
    """A run whose reports are all at its end used to be one compiled block: Ctrl-C waited for the whole run.
    Blocks now last about half a second: the interrupt lands at a block's end, soon after."""
    import os
    import signal
    import threading
    import time

    m, X, y, _ = make("sgd-bce")
    m.finalize()
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    epochs = 2_000_000  # minutes of work in one block
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt, match=r"interrupted; the model is at the end of epoch (\d+), step 1") \
                as info:
            m.train(Xb, yb, epochs=epochs, print_every=10**9, verbose=False, compile=True)
    finally:
        timer.cancel()
    elapsed = time.perf_counter() - started
    assert elapsed < 3.0 + 8.0, elapsed  # a block of about 0.5 s, and at most one compilation, after the signal
    assert m.optimizer.iterations == info.value.history.epoch[-1] < epochs
