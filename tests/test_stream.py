"""Training on Dask arrays streams windows of blocks (issue 12): bounded memory, the in-memory result."""

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.datasets import sine_data, spiral_data
from portable_nn.training import stream

da = pytest.importorskip("dask.array")
pytestmark = pytest.mark.only_xp_backends("dask", reason="Dask streaming (the session that has Dask)")


def classifier(dropout=False):
    m = pnn.Model().add(pnn.Dense(2, 16, seed=0, dtype="float64", weight_regularizer_l2=1e-3)).add(pnn.ReLU())
    if dropout:
        m.add(pnn.Dropout(0.1, seed=4))
    m.add(pnn.Dense(16, 3, seed=1, dtype="float64")).add(pnn.Softmax())
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.02, decay=1e-3)).finalize()


@pytest.mark.parametrize(("chunk", "batch_size"), [(50, 32), (7, 32), (64, 64), (100, None), (300, 5)])
def test_streaming_equals_in_memory_training(chunk, batch_size):
    """Without shuffle the streamed batches are the in-memory ones, partial batches completed across windows."""
    X, y = spiral_data(100, 3, seed=0)  # 300 rows
    Y = np.eye(3)[y]  # one-hot targets: 2-D blocks
    for targets in (y, Y):
        streamed, in_memory = classifier(dropout=True), classifier(dropout=True)
        h_s = streamed.train(da.from_array(X, chunks=(chunk, 1)), da.from_array(targets, chunks=chunk), epochs=3,
                             batch_size=batch_size, shuffle=False, verbose=False)
        h_m = in_memory.train(X, targets, epochs=3, batch_size=batch_size, shuffle=False, verbose=False)
        for a, b in zip(streamed.network.parameters(), in_memory.network.parameters(), strict=True):
            assert type(a.value).__module__.startswith("dask")  # the model still lives on Dask
            np.testing.assert_allclose(np.asarray(a.value), b.value, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(h_s.loss, h_m.loss, rtol=1e-12)


def test_streaming_holds_a_bounded_number_of_rows():
    """A lazily generated array 17 times the rows a window holds: the peak stays at a window plus one batch."""
    blocks, rows = 40, 100

    def make_block(block_id=None):
        i = block_id[0]
        rng = np.random.default_rng(i)
        return rng.standard_normal((rows, 1))

    X = da.map_blocks(make_block, dtype=np.float64, chunks=((rows,) * blocks, (1,)))
    y = da.sin(3 * X)
    m = pnn.Model().add(pnn.Dense(1, 16, seed=0, dtype="float64")).add(pnn.Tanh())
    m.add(pnn.Dense(16, 1, seed=1, dtype="float64")).add(pnn.Linear())
    m.set(loss=pnn.MeanSquaredError(), optimizer=pnn.Adam(0.01), accuracy=pnn.RegressionAccuracy()).finalize()
    ref = pnn.Model().add(pnn.Dense(1, 16, seed=0, dtype="float64")).add(pnn.Tanh())
    ref.add(pnn.Dense(16, 1, seed=1, dtype="float64")).add(pnn.Linear())
    ref.set(loss=pnn.MeanSquaredError(), optimizer=pnn.Adam(0.01), accuracy=pnn.RegressionAccuracy()).finalize()
    stream.PEAK["rows"] = 0
    m.train(X, y, epochs=2, batch_size=32, shuffle=False, verbose=False)
    window = stream.window_blocks((rows,) * blocks, 32) * rows
    assert stream.PEAK["rows"] < window + 32 and blocks * rows >= 10 * (window + 32)
    ref.train(X.compute(), y.compute(), epochs=2, batch_size=32, shuffle=False, verbose=False)
    for a, b in zip(m.network.parameters(), ref.network.parameters(), strict=True):
        np.testing.assert_allclose(np.asarray(a.value), b.value, rtol=1e-12, atol=1e-14)


def test_shuffled_streaming_is_seeded_and_learns():
    X, y = sine_data(400)
    runs = []
    for _ in range(2):
        m = pnn.Model().add(pnn.Dense(1, 16, seed=0, dtype="float64")).add(pnn.ReLU())
        m.add(pnn.Dense(16, 1, seed=1, dtype="float64")).add(pnn.Linear())
        m.set(loss=pnn.MeanSquaredError(), optimizer=pnn.Adam(0.01), accuracy=pnn.RegressionAccuracy()).finalize()
        h = m.train(da.from_array(X, chunks=(50, 1)), da.from_array(y, chunks=(50, 1)), epochs=30, batch_size=16,
                    shuffle=True, seed=3, verbose=False)
        runs.append(np.asarray(m.layers[0].weight))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.mean(h.loss[-3:]) < h.loss[0] / 2  # 0.20 from 0.52


def test_predict_on_a_process_cluster_equals_numpy():
    distributed = pytest.importorskip("distributed")
    X, y = spiral_data(50, 3, seed=1)
    m = classifier()
    m.train(da.from_array(X, chunks=(40, 2)), da.from_array(y, chunks=40), epochs=5, batch_size=32, seed=0,
            verbose=False)
    lazy = m.predict(da.from_array(X, chunks=(40, 2)))
    assert type(lazy).__module__.startswith("dask")
    graph = dict(lazy.__dask_graph__())
    for p in m.plan.parameters:  # each parameter is one key of the graph: sent to a worker once, not per task
        keys = [k for k in graph if isinstance(k, tuple) and k[0] == p.value.name]
        assert len(keys) == 1, keys
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster):
        got = lazy.compute()
    host = classifier()
    host.set_parameters([(np.asarray(w), np.asarray(b)) for w, b in m.get_parameters()])
    np.testing.assert_allclose(got, host.predict(X), rtol=1e-12)


def test_unknown_chunk_sizes_are_named_with_the_fix(backend):
    """After boolean indexing a Dask array's row count is NaN: every entry point says so and names the fix
    (they said "X has nan samples but y has nan" or "cannot convert float NaN to integer")."""
    X, y = spiral_data(20, 3, seed=0)
    Xd, yd = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    keep = yd >= 0
    Xf, yf = Xd[keep], yd[keep]
    m = classifier()
    message = r"X has unknown chunk sizes \(a Dask array after boolean indexing or a filter\): call " \
              r"X = X.compute_chunk_sizes\(\) first"
    for call in (lambda: m.train(Xf, yf, verbose=False), lambda: m.predict(Xf), lambda: m.evaluate(Xf, yf),
                 lambda: m.train(Xf, yf, validation_split=0.2, verbose=False)):
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(ValueError, match=r"y has unknown chunk sizes"):
        m.train(Xd, yf, verbose=False)
    m.train(Xf.compute_chunk_sizes(), yf.compute_chunk_sizes(), verbose=False)  # the fix works


def counted(X, chunk):
    """``X`` as a Dask array whose blocks count how often they are computed (as data read from storage)."""
    reads = {"rows": 0}

    def read(block):
        reads["rows"] += block.shape[0]
        return block

    lazy = da.from_array(X, chunks=(chunk, X.shape[1])).map_blocks(read, dtype=X.dtype, meta=np.empty((0, 0)))
    return lazy, reads


def test_streamed_data_are_read_once_a_pass():
    """train(epochs=1) reads every row of X once (the checks ride on the streaming pass), and so do
    evaluate and evaluate with metrics (checks, sums and counts in one graph run)."""
    X, y = spiral_data(50, 3, seed=0)  # 150 rows
    X = X.astype(np.float64)
    yd = da.from_array(y, chunks=25)
    m = classifier()
    Xd, reads = counted(X, 25)
    m.train(Xd, yd, epochs=1, batch_size=32, verbose=False, seed=0)
    assert reads["rows"] == 150
    reads["rows"] = 0
    m.evaluate(Xd, yd)
    assert reads["rows"] == 150
    reads["rows"] = 0
    m.evaluate(Xd, yd, metrics=[pnn.metrics.F1(), pnn.metrics.Precision()])
    assert reads["rows"] == 150


def test_a_bad_value_in_streamed_data_is_found_by_the_streaming_pass():
    X, y = spiral_data(50, 3, seed=0)
    X = X.astype(np.float64)
    X[140, 1] = np.nan  # in the last window
    m = classifier()
    with pytest.raises(ValueError, match="Model.train: X contains NaN or infinite values"):
        m.train(da.from_array(X, chunks=25), da.from_array(y, chunks=25), epochs=3, batch_size=32, seed=0,
                verbose=False)
    bad_labels = y.copy()
    bad_labels[3] = 7
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 3\)"):
        classifier().evaluate(da.from_array(X[:100], chunks=25), da.from_array(bad_labels[:100], chunks=25))
