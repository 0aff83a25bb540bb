"""The training step as one function of explicit arrays: pure, equal to the in-place step, lazy-safe.

``lazy_xp_function`` (array-api-extra) proves on CPU what only a GPU sync
check showed before: on Dask the step never computes the graph (no host
sync inside a step), and on JAX it runs under ``jax.jit`` unchanged.
"""

import numpy as np
import pytest
from array_api_extra.testing import lazy_xp_function, patch_lazy_xp_functions

import portable_nn as pnn
from portable_nn.datasets import spiral_data
from portable_nn.training import step
from portable_nn.training.loop import prepared_targets

UNPATCHED = step
lazy_xp_function(step)


@pytest.fixture
def lazy(request, xp):
    with patch_lazy_xp_functions(request, xp=xp):
        yield


def model(optimizer):
    m = pnn.Model()
    m.add(pnn.Dense(2, 8, seed=0, dtype="float64", weight_regularizer_l2=1e-3)).add(pnn.ReLU())
    m.add(pnn.Dense(8, 3, seed=1, dtype="float64")).add(pnn.Softmax())
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=optimizer).finalize()


def arrays(m):
    params = m.network.parameters()
    return [p.value for p in params], [dict(p.state) for p in params]


@pytest.mark.parametrize("make_optimizer", [lambda: pnn.SGD(0.5, momentum=0.9), lambda: pnn.Adam(0.05)],
                         ids=["sgd-momentum", "adam"])
def test_step_equals_train_step_and_mutates_nothing(backend, xp, lazy, make_optimizer):
    X, y = spiral_data(10, 3, seed=0)
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    eager, functional = model(make_optimizer()), model(make_optimizer())
    eager.train(Xb, yb, epochs=2, verbose=False)  # the in-place path (kernels where they apply)
    functional.network.place(Xb)
    y_loss, y_acc = prepared_targets(functional.plan, xp, yb)
    params, state = arrays(functional)
    before = [backend.to_numpy(p) for p in params]
    # JAX: `step` is now jax.jit(step); Dask: `step` raises if it ever computes or persists the graph
    assert (step is not UNPATCHED) == (backend.name in ("jax", "dask"))
    for t in (1, 2):
        out = step(functional.plan, params, state, Xb, y_loss, y_acc, learning_rate=functional.optimizer.learning_rate,
                   iteration=t)
        params, state = out.params, out.state
    for p, b in zip(arrays(functional)[0], before, strict=True):  # the layers are as they were
        np.testing.assert_array_equal(backend.to_numpy(p), b)
    for got, p in zip(params, eager.network.parameters(), strict=True):
        backend.assert_close(got, backend.to_numpy(p.value), rtol=1e-10, atol=1e-13)
    assert int(backend.to_numpy(out.correct)) <= 30


def test_step_checks_its_arguments(backend):
    m = model(pnn.SGD())
    with pytest.raises(ValueError, match="step: the network has 4 parameters, got 1 values"):
        step(m.plan, [None], [{}], None, None, None, learning_rate=1.0, iteration=1)


def test_step_leaves_a_fresh_model_as_it_found_it(backend, xp):
    """Placement, cached inputs, dropout streams: nothing the step does survives it."""
    X, y = spiral_data(10, 3, seed=1)
    Xb, yb = backend.asarray(X), backend.asarray(y)
    m = pnn.Model().add(pnn.Dense(2, 8, seed=0)).add(pnn.ReLU()).add(pnn.Dropout(0.2, seed=3))
    m.add(pnn.Dense(8, 3, seed=1)).add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.05)).finalize()
    ref = copy_of(m)
    params = [backend.asarray(np.asarray(p.value)) for p in m.plan.parameters]
    y_loss, y_acc = prepared_targets(m.plan, xp, yb)
    out = step(m.plan, params, [{} for _ in params], Xb, y_loss, y_acc, learning_rate=0.05, iteration=1, seed=7)
    again = step(m.plan, params, [{} for _ in params], Xb, y_loss, y_acc, learning_rate=0.05, iteration=1, seed=7)
    backend.assert_close(again.params[0], backend.to_numpy(out.params[0]))  # same seed, same masks
    assert not m.layers[0]._placed and m.layers[0].input is None and m.layers[2].mask is None
    # training afterwards is what it would have been without the step
    m.train(Xb, yb, epochs=3, verbose=False)
    ref.train(Xb, yb, epochs=3, verbose=False)
    backend.assert_close(m.layers[0].weight, backend.to_numpy(ref.layers[0].weight))


def copy_of(model):
    import copy

    return copy.deepcopy(model)


@pytest.mark.only_xp_backends("jax", reason="jax.jit over the step, the way a user writes it")
def test_step_under_a_plain_jax_jit_leaks_no_tracer(backend, xp):
    import jax

    X, y = spiral_data(10, 3, seed=2)
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y)
    m = model(pnn.Adam(0.05))
    m.network.place(Xb)
    plan = m.plan
    y_loss, y_acc = prepared_targets(plan, xp, yb)
    jitted = jax.jit(lambda p, s, x, yl, ya, lr: step(plan, p, s, x, yl, ya, learning_rate=lr, iteration=1))
    params, state = arrays(m)
    out = jitted(params, state, Xb, y_loss, y_acc, 0.05)
    out2 = jitted(params, state, Xb, y_loss, y_acc, xp.asarray(0.05))  # a retrace with another argument type
    eager = step(plan, params, state, Xb, y_loss, y_acc, learning_rate=0.05, iteration=1)
    for a, b, c in zip(out.params, out2.params, eager.params, strict=True):
        backend.assert_close(a, backend.to_numpy(c), rtol=1e-12)
        backend.assert_close(b, backend.to_numpy(c), rtol=1e-12)
    m.train(Xb, yb, epochs=1, verbose=False)  # no tracer was left on a layer, the loss or the accuracy


def test_fast_path_scopes_belong_to_their_thread():
    import threading

    seen = []
    inside = threading.Event()
    release = threading.Event()

    def worker():
        with pnn.fast_paths(False):
            inside.set()
            release.wait(5)
            seen.append(pnn.fast_paths_enabled())

    t = threading.Thread(target=worker)
    before = pnn.fast_paths_enabled()
    t.start()
    inside.wait(5)
    seen.append(pnn.fast_paths_enabled())  # this thread is not inside the other's scope
    release.set()
    t.join()
    assert seen == [before, False] and pnn.fast_paths_enabled() == before
