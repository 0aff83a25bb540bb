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
