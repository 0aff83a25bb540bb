"""Data-parallel training over MPI: run under ``mpiexec -n N python -m pytest tests/distributed`` (N = 1, 2, 3).

Every test runs on every rank, collectively (the same tests in the same
order).  N ranks on a global batch of B equal one process on B, in float64.
"""

import os
import signal
import tempfile

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.datasets import sine_data, spiral_data

MPI = pytest.importorskip("mpi4py.MPI")
COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()

OPTIMIZERS = {
    "sgd": lambda: pnn.SGD(0.5, decay=1e-3),
    "sgd-momentum": lambda: pnn.SGD(0.5, momentum=0.9),
    "adagrad": lambda: pnn.Adagrad(0.1),
    "rmsprop": lambda: pnn.RMSprop(0.01, decay=1e-3),
    "adam": lambda: pnn.Adam(0.02, decay=1e-3, weight_decay=1e-2),
    "adam-clipped": lambda: pnn.Adam(0.02, clipnorm=0.05, clipvalue=0.02),  # clipped after the all-reduce
}


def model(optimizer, dropout=False):
    m = pnn.Model()
    m.add(pnn.Dense(2, 16, seed=0, dtype="float64", weight_regularizer_l1=1e-4, weight_regularizer_l2=1e-3,
                    bias_regularizer_l1=1e-4, bias_regularizer_l2=1e-3)).add(pnn.ReLU())
    if dropout:
        m.add(pnn.Dropout(0.2, seed=5))
    m.add(pnn.Dense(16, 3, seed=1, dtype="float64")).add(pnn.Softmax())
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=optimizer).finalize()


def same_on_every_rank(values):
    gathered = COMM.allgather([np.asarray(v) for v in values])
    for other in gathered[1:]:
        for a, b in zip(gathered[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("batch_size", [30, 32, None])  # 150 samples: 30 divides 2 and 3 ranks; 32 divides neither
def test_n_ranks_equal_one_process(name, batch_size):
    X, y = spiral_data(50, 3, seed=0)
    parallel, single = model(OPTIMIZERS[name]()), model(OPTIMIZERS[name]())
    h_par = parallel.train(X, y, epochs=4, batch_size=batch_size, shuffle=True, seed=2, verbose=False,
                           distributed=True)
    h_one = single.train(X, y, epochs=4, batch_size=batch_size, shuffle=True, seed=2, verbose=False)
    # absolute 1e-12 on parameters of order 0.01-1: RMSprop and Adam divide a gradient by its own running
    # scale, so an entry that is a sum cancelling to ~0 carries rounding noise of relative size 1e-9 into the step
    for a, b in zip(parallel.network.parameters(), single.network.parameters(), strict=True):
        np.testing.assert_allclose(a.value, b.value, rtol=1e-12, atol=1e-12)
        for key in b.state:
            np.testing.assert_allclose(a.state[key], b.state[key], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(h_par.loss, h_one.loss, rtol=1e-12)
    np.testing.assert_allclose(h_par.accuracy, h_one.accuracy, rtol=1e-12)
    assert parallel.optimizer.iterations == single.optimizer.iterations
    same_on_every_rank([p.value for p in parallel.network.parameters()])


def test_extensions_written_outside_the_package_train_data_parallel():
    """examples/extension.py: a new activation, loss and optimizer (state "velocity"), N ranks = one process."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    import extension

    X, y = (a.astype(np.float64) for a in sine_data(96))
    parallel, single = extension.model(), extension.model()
    parallel.train(X, y, epochs=3, batch_size=32, shuffle=True, seed=1, verbose=False, distributed=True)
    single.train(X, y, epochs=3, batch_size=32, shuffle=True, seed=1, verbose=False)
    for a, b in zip(parallel.network.parameters(), single.network.parameters(), strict=True):
        np.testing.assert_allclose(a.value, b.value, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(a.state["velocity"], b.state["velocity"], rtol=1e-10, atol=1e-14)
    same_on_every_rank([p.value for p in parallel.network.parameters()])
    with tempfile.TemporaryDirectory() as folder:  # not pytest's tmp_path: ranks would race on its numbering
        path = os.path.join(folder, "ext.npz")
        parallel.save(path)
        loaded = pnn.Model.load(path)
    np.testing.assert_array_equal(loaded.predict(X), parallel.predict(X))


@pytest.mark.skipif(SIZE < 2, reason="needs two ranks")
def test_a_rank_whose_data_fail_the_checks_fails_every_rank():
    """NaN in X on rank 1 only: every rank raises the same ValueError naming rank 1 (rank 0 used to wait in
    the start-of-call broadcast forever)."""
    X, y = spiral_data(20, 3, seed=2)
    if RANK == 1:
        X = X.copy()
        X[3, 0] = np.nan
    m = model(pnn.Adam(0.02))
    with pytest.raises(ValueError, match=r"Model.train: rank 1 of \d+ refused its data: ValueError: .*NaN"):
        m.train(X, y, epochs=2, batch_size=20, verbose=False, distributed=True)
    assert m.optimizer.iterations == 0


@pytest.mark.skipif(SIZE < 2, reason="needs two ranks")
@pytest.mark.parametrize("what", ["X", "epochs", "batch_size", "print_every"])
def test_ranks_that_disagree_on_the_call_fail_every_rank_alike(what):
    X, y = spiral_data(20, 3, seed=2)
    arguments = {"epochs": 2, "batch_size": 20, "print_every": 1}
    if RANK == 1 and what == "X":
        X, y = X[:44], y[:44]  # 44 rows against 60
    elif RANK == 1:
        arguments[what] += 1
    m = model(pnn.Adam(0.02))
    with pytest.raises(ValueError, match=f"Model.train: the ranks disagree on {what}: "):
        m.train(X, y, verbose=False, distributed=True, **arguments)
    assert m.optimizer.iterations == 0


def test_the_rank_is_the_calls_own():
    """After a distributed call the model is a process of its own again: a later ordinary train on any rank
    with ModelCheckpoint writes its file."""
    X, y = spiral_data(20, 3, seed=2)
    m = model(pnn.Adam(0.02))
    m.train(X, y, epochs=1, batch_size=20, verbose=False, distributed=True)
    assert m.rank == 0
    with tempfile.TemporaryDirectory() as folder:  # not pytest's tmp_path: ranks would race on its numbering
        path = os.path.join(folder, "ck.npz")
        m.train(X, y, epochs=1, verbose=False, callbacks=[pnn.callbacks.ModelCheckpoint(path, monitor="loss")])
        assert os.path.exists(path)


def test_a_batch_smaller_than_the_ranks_leaves_some_shards_empty():
    X, y = spiral_data(5, 3, seed=1)  # 15 samples, batches of 2: with 3 ranks one shard is empty every step
    parallel, single = model(pnn.Adam(0.05)), model(pnn.Adam(0.05))
    parallel.train(X, y, epochs=2, batch_size=2, seed=0, verbose=False, distributed=True)
    single.train(X, y, epochs=2, batch_size=2, seed=0, verbose=False)
    for a, b in zip(parallel.network.parameters(), single.network.parameters(), strict=True):
        np.testing.assert_allclose(a.value, b.value, rtol=1e-12, atol=1e-14)


def test_pytorch_cpu_tensors_join_the_all_reduce():
    torch = pytest.importorskip("torch")
    X, y = spiral_data(50, 3, seed=3)
    parallel, single = model(pnn.Adam(0.02)), model(pnn.Adam(0.02))
    parallel.train(torch.asarray(X), torch.asarray(y), epochs=3, batch_size=32, seed=0, verbose=False, distributed=True)
    single.train(X, y, epochs=3, batch_size=32, seed=0, verbose=False)
    for a, b in zip(parallel.network.parameters(), single.network.parameters(), strict=True):
        np.testing.assert_allclose(a.value.numpy(), b.value, rtol=1e-12, atol=1e-14)


def test_dropout_draws_per_rank_streams_deterministically():
    X, y = spiral_data(50, 3, seed=4)
    runs = []
    for _ in range(2):
        m = model(pnn.Adam(0.02), dropout=True)
        m.train(X, y, epochs=3, batch_size=32, shuffle=True, seed=5, verbose=False, distributed=True)
        runs.append([np.array(p.value) for p in m.network.parameters()])
        same_on_every_rank(runs[-1])
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)  # same seed, same ranks: the same result
    masks = COMM.allgather(m.layers[2].generator.seed)
    assert len(set(masks)) == SIZE  # each rank its own stream


def test_shuffling_without_a_seed_uses_rank_zeros_order():
    X, y = spiral_data(50, 3, seed=6)
    m = model(pnn.Adam(0.02))
    m.train(X, y, epochs=2, batch_size=32, shuffle=True, seed=None, verbose=False, distributed=True)
    same_on_every_rank([p.value for p in m.network.parameters()])


def test_every_rank_starts_from_rank_zeros_parameters():
    X, y = spiral_data(50, 3, seed=7)
    m = pnn.Model().add(pnn.Dense(2, 8, seed=RANK, dtype="float64")).add(pnn.ReLU())  # a different start per rank
    m.add(pnn.Dense(8, 3, seed=10 + RANK, dtype="float64")).add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.02)).finalize()
    m.train(X, y, epochs=2, batch_size=32, verbose=False, distributed=True)
    same_on_every_rank([p.value for p in m.network.parameters()])


def test_a_divergence_stops_every_rank_at_the_same_step():
    X, y = sine_data(100)
    m = pnn.Model().add(pnn.Dense(1, 16, seed=0, dtype="float64")).add(pnn.ReLU())
    m.add(pnn.Dense(16, 1, seed=1, dtype="float64")).add(pnn.Linear())
    m.set(loss=pnn.MeanSquaredError(), optimizer=pnn.SGD(learning_rate=3.0)).finalize()
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(FloatingPointError) as info:
        m.train(X, y * 100, epochs=500, print_every=10, verbose=False, distributed=True)
    messages = COMM.allgather(str(info.value))
    assert len(set(messages)) == 1 and "whose loss was finite" in messages[0]
    same_on_every_rank([p.value for p in m.network.parameters()])


def test_ctrl_c_on_one_rank_stops_every_rank_at_the_same_step():
    X, y = spiral_data(50, 3, seed=8)
    m = model(pnn.Adam(0.02))
    pressed = []

    def press_on_the_last_rank(info):
        if RANK == SIZE - 1 and not pressed:
            pressed.append(info["global_step"])
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt, match="interrupted") as info:
        m.train(X, y, epochs=20, batch_size=32, print_every=3, verbose=False, callback=press_on_the_last_rank,
                distributed=True)
    assert len(set(COMM.allgather(str(info.value)))) == 1
    same_on_every_rank([p.value for p in m.network.parameters()])
    assert len(set(COMM.allgather(m.optimizer.iterations))) == 1


@pytest.mark.skipif(SIZE < 2, reason="needs two ranks")
def test_a_rank_whose_parameters_drift_is_caught_at_the_next_report():
    X, y = spiral_data(50, 3, seed=9)
    m = model(pnn.Adam(0.02))

    def drift(info):
        if RANK == 1 and info["global_step"] == 5:
            m.layers[0].weight = m.layers[0].weight + 1.0

    with pytest.raises(RuntimeError, match=r"the parameters of rank\(s\) \[1\] differ from rank 0's"):
        m.train(X, y, epochs=4, batch_size=32, print_every=5, verbose=False, callback=drift, distributed=True)


def test_arguments_are_checked():
    X, y = spiral_data(10, 3, seed=10)
    m = model(pnn.Adam(0.02))
    with pytest.raises(TypeError, match="distributed must be True, False or an MPI communicator, got str"):
        m.train(X, y, verbose=False, distributed="yes")
    jnp = pytest.importorskip("jax.numpy")
    m32 = pnn.Model().add(pnn.Dense(2, 3, seed=0)).add(pnn.Softmax())
    m32.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.02)).finalize()
    with pytest.raises(ValueError, match="distributed training runs the eager step; pass compile=False"):
        m32.train(jnp.asarray(X, dtype=jnp.float32), jnp.asarray(y), verbose=False, distributed=True, compile=True)
    with pytest.raises(TypeError, match="distributed training runs on NumPy, PyTorch and CuPy arrays, got jax array"):
        m32.train(jnp.asarray(X, dtype=jnp.float32), jnp.asarray(y), verbose=False, distributed=True)


def batchnorm_model(optimizer):
    m = pnn.Model()
    m.add(pnn.Dense(2, 8, seed=0, dtype="float64")).add(pnn.BatchNorm(8, dtype="float64", momentum=0.7))
    m.add(pnn.ReLU()).add(pnn.Dense(8, 3, seed=1, dtype="float64")).add(pnn.Softmax())
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=optimizer).finalize()


def test_batchnorm_keeps_per_rank_statistics_averaged_at_reports():
    """The documented policy: each rank normalizes its shard by the shard's statistics; the running statistics
    are averaged over the ranks at report points.  With a learning rate of ~0 the parameters stay, so one batch
    of 30 rows gives ``0.7 * start + 0.3 * mean over ranks of the shard's mean (variance)``."""
    X, y = spiral_data(10, 3, seed=6)  # 30 rows: one batch, equal shards for 1, 2 and 3 ranks
    m = batchnorm_model(pnn.SGD(1e-300))  # a rate > 0 that changes no parameter
    m.train(X, y, epochs=1, verbose=False, distributed=True)
    hidden = X @ m.network.layers[0].weight + m.network.layers[0].bias
    shards = np.array_split(hidden, SIZE)
    bn = m.network.layers[1]
    np.testing.assert_allclose(bn.running_mean, 0.3 * np.mean([s.mean(axis=0) for s in shards], axis=0)[None],
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(bn.running_var, 0.7 + 0.3 * np.mean([s.var(axis=0) for s in shards], axis=0)[None],
                               rtol=1e-12)
    # training proper: every rank ends with the same parameters and the same running statistics
    X, y = spiral_data(50, 3, seed=7)
    t = batchnorm_model(pnn.SGD(0.2, momentum=0.9))
    h = t.train(X, y, epochs=6, batch_size=30, shuffle=True, seed=1, verbose=False, distributed=True)
    assert h.loss[-1] < h.loss[0]
    same_on_every_rank([p.value for p in t.network.parameters()] + t.network.buffer_values())


def test_sample_weights_travel_with_the_shards():
    X, y = spiral_data(50, 3, seed=8)
    w = np.random.default_rng(2).uniform(0.0, 2.0, size=150)
    parallel, single = model(pnn.SGD(0.5, momentum=0.9)), model(pnn.SGD(0.5, momentum=0.9))
    h_par = parallel.train(X, y, epochs=3, batch_size=32, shuffle=True, seed=4, verbose=False, distributed=True,
                           sample_weight=w, class_weight={0: 2.0})
    h_one = single.train(X, y, epochs=3, batch_size=32, shuffle=True, seed=4, verbose=False, sample_weight=w,
                         class_weight={0: 2.0})
    for a, b in zip(parallel.network.parameters(), single.network.parameters(), strict=True):
        np.testing.assert_allclose(a.value, b.value, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(h_par.loss, h_one.loss, rtol=1e-12)


def test_batchnorm_validation_figures_and_callbacks_agree_on_every_rank():
    """The running statistics are averaged at each epoch's end, before the validation figures: every rank sees
    the same val_loss and metrics, so a callback stops every rank at the same epoch (no rank left waiting)."""
    X, y = spiral_data(50, 3, seed=9)
    Xv, yv = spiral_data(10, 3, seed=10)
    m = batchnorm_model(pnn.SGD(0.2, momentum=0.9))
    stop = pnn.callbacks.EarlyStopping("val_loss", patience=1, min_delta=0.05)
    h = m.train(X, y, epochs=30, batch_size=30, shuffle=True, seed=3, verbose=False, validation_data=(Xv, yv),
                metrics=[pnn.metrics.F1()], callbacks=[stop], distributed=True)
    same_on_every_rank([np.asarray(h.val_loss), np.asarray(h.metrics["val_f1"]), np.asarray(h.metrics["f1"])])
    assert len(h.epoch) < 30  # stopped early, on every rank alike


def test_a_cnn_trains_data_parallel_as_in_one_process():
    """Conv2D, MaxPool2D, Flatten: N ranks on a global batch equal one process, in float64; no engine code."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 8, 8, 1)), rng.integers(0, 3, 60)

    def cnn():
        m = pnn.Model().add(pnn.Conv2D(1, 4, 3, padding="same", seed=0, dtype="float64")).add(pnn.ReLU())
        m.add(pnn.MaxPool2D(2)).add(pnn.Flatten()).add(pnn.Dense(64, 3, seed=1, dtype="float64")).add(pnn.Softmax())
        return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.01)).finalize()

    parallel, single = cnn(), cnn()
    h_par = parallel.train(X, y, epochs=3, batch_size=20, seed=1, verbose=False, distributed=True)
    h_one = single.train(X, y, epochs=3, batch_size=20, seed=1, verbose=False)
    for a, b in zip(parallel.network.parameters(), single.network.parameters(), strict=True):
        np.testing.assert_allclose(a.value, b.value, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_par.loss, h_one.loss, rtol=1e-12)
    same_on_every_rank([p.value for p in parallel.network.parameters()])
