"""Extensions written outside the package (examples/extension.py): a new activation, an optimizer whose state
is named "velocity", a new loss.  Each is gradient-checked, trains on every backend (compiled where the
backend compiles by default: JAX) to the same float64 weights as NumPy eager, and round-trips through a
model file with its optimizer state.  The registries refuse a second class of a taken name."""

import sys
from pathlib import Path

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.datasets import sine_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import extension  # the user's module, outside the package


def test_the_new_activation_and_loss_pass_the_gradient_check(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4))
    pnn.gradcheck(extension.Swish(), backend.asarray(x))
    pnn.gradcheck(extension.LogCosh(), backend.asarray(x), backend.asarray(rng.standard_normal((6, 4))))


def reference_weights(epochs):
    """The same run on NumPy, eagerly: what every backend must reproduce in float64."""
    X, y = sine_data(64)
    m = extension.model()
    m.train(X.astype(np.float64), y.astype(np.float64), epochs=epochs, batch_size=16, shuffle=False,
            verbose=False, compile=False)
    return [p.value for p in m.network.parameters()]


def test_extensions_train_on_every_backend_as_on_numpy(backend):
    X, y = sine_data(64)
    m = extension.model()
    history = m.train(backend.asarray(X, dtype=np.float64), backend.asarray(y, dtype=np.float64), epochs=30,
                      batch_size=16, shuffle=False, verbose=False)  # compile="auto": jax.jit on JAX; Dask streams
    assert history.loss[-1] < 0.5 * history.loss[0]
    for got, want in zip(m.network.parameters(), reference_weights(30), strict=True):
        backend.assert_close(got.value, want, rtol=1e-9, atol=1e-12)


def test_extensions_round_trip_through_a_model_file(backend, tmp_path):
    X, y = sine_data(64)
    Xb, yb = backend.asarray(X, dtype=np.float64), backend.asarray(y, dtype=np.float64)
    m = extension.model()
    m.train(Xb, yb, epochs=3, batch_size=16, verbose=False, seed=0)
    m.save(tmp_path / "ext.npz")
    loaded = pnn.Model.load(tmp_path / "ext.npz")
    assert isinstance(loaded.optimizer, extension.HeavyBall) and loaded.optimizer.momentum == 0.9
    assert isinstance(loaded.loss, extension.LogCosh) and isinstance(loaded.layers[1], extension.Swish)
    backend.assert_close(loaded.predict(Xb), backend.to_numpy(m.predict(Xb)), rtol=1e-12)  # placed on Xb's library
    for a, b in zip(m.network.parameters(), loaded.network.parameters(), strict=True):
        assert set(b.state) == {"velocity"}
        backend.assert_close(b.state["velocity"], backend.to_numpy(a.state["velocity"]), rtol=0, atol=0)
    # training goes on from the saved state exactly as the original does
    m.train(Xb, yb, epochs=2, batch_size=16, seed=0, verbose=False)
    loaded.train(Xb, yb, epochs=2, batch_size=16, seed=0, verbose=False)
    backend.assert_close(loaded.layers[0].weight, backend.to_numpy(m.layers[0].weight), rtol=1e-12)


def test_an_optimizer_with_only_a_rule_runs_it_on_every_backend(backend):
    """No kernel of its own: the fast paths step aside (NumPy used to raise a bare NotImplementedError)."""
    m = extension.model()
    m.set(optimizer=extension.HeavyBall(0.01)).finalize()
    X, y = sine_data(32)
    m.train(backend.asarray(X, dtype=np.float64), backend.asarray(y, dtype=np.float64), epochs=2, verbose=False)
    assert m.optimizer.iterations == 2


@pytest.mark.only_xp_backends("numpy", reason="class registries: no arrays involved")
def test_a_class_may_not_take_a_registered_name(backend):
    with pytest.raises(TypeError, match=r"the name 'Dense' is taken by portable_nn\.layers\.Dense"):
        type("Dense", (pnn.Layer,), {})
    with pytest.raises(TypeError, match="the name 'Adam' is taken"):
        type("Adam", (pnn.Optimizer,), {})
    with pytest.raises(TypeError, match="the name 'MeanSquaredError' is taken"):
        type("MeanSquaredError", (pnn.Loss,), {})
    assert pnn.Layer.registry["Dense"] is pnn.Dense
