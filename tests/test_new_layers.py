"""LayerNorm, GELU and HuberLoss (issue 13, item 7): hand-written backward passes against PyTorch autograd.

``check_all`` gradient-checks them on every backend (``tests/test_gradcheck.py``) from the registries;
here each is compared with PyTorch's own implementation and autograd, and trained inside a model.
"""

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.datasets import sine_data, spiral_data

torch = pytest.importorskip("torch")


def torch_grad(fn, x, dvalue):
    t = torch.asarray(x.copy(), requires_grad=True)
    out = fn(t)
    out.backward(torch.asarray(dvalue))
    return out.detach().numpy(), t.grad.numpy()


def test_layernorm_matches_torch(backend):
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


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_matches_torch(backend, xp, approximate):
    rng = np.random.default_rng(1)
    x, dvalue = rng.standard_normal((4, 5)) * 2, rng.standard_normal((4, 5))
    layer = pnn.GELU(approximate)
    if approximate == "none" and getattr(xp, "erf", None) is None:
        with pytest.raises(TypeError, match=r"GELU\(approximate='none'\): .* has no erf"):
            layer.forward(backend.asarray(x))
        return
    out = layer.forward(backend.asarray(x))
    dinput = layer.backward(backend.asarray(dvalue))
    expected, expected_dx = torch_grad(lambda t: torch.nn.functional.gelu(t, approximate=approximate), x, dvalue)
    backend.assert_close(out, expected, rtol=1e-12, atol=1e-14)
    backend.assert_close(dinput, expected_dx, rtol=1e-10, atol=1e-13)


def test_huber_matches_torch(backend):
    rng = np.random.default_rng(2)
    p, y = rng.standard_normal((6, 3)) * 2, rng.standard_normal((6, 3))
    loss = pnn.HuberLoss(delta=0.7)
    value = loss.calculate(backend.asarray(p), backend.asarray(y))
    dinput = loss.backward(backend.asarray(p), backend.asarray(y))
    t = torch.asarray(p.copy(), requires_grad=True)
    ref = torch.nn.functional.huber_loss(t, torch.asarray(y), delta=0.7)  # mean over every element
    ref.backward()
    assert abs(float(backend.to_numpy(value)) - float(ref.detach())) < 1e-14
    backend.assert_close(dinput, t.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert np.any(np.abs(p - y) > 0.7) and np.any(np.abs(p - y) < 0.7)  # both branches
    with pytest.raises(ValueError, match="delta must be a finite number > 0"):
        pnn.HuberLoss(0)


def test_the_new_pieces_train_save_and_load(backend, tmp_path):
    X, y = spiral_data(50, 3, seed=0)
    m = pnn.Model().add(pnn.Dense(2, 32, seed=0, initializer="he_uniform")).add(pnn.LayerNorm(32)).add(pnn.GELU())
    m.add(pnn.Dense(32, 3, seed=1)).add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.05)).finalize()
    h = m.train(backend.asarray(X), backend.asarray(y), epochs=200, verbose=False)
    assert np.mean(h.loss[-5:]) < 0.85 * h.loss[0]  # 0.79 from 1.10 at 200 epochs
    m.save(tmp_path / "m.npz")
    loaded = pnn.Model.load(tmp_path / "m.npz")
    np.testing.assert_allclose(loaded.predict(X.astype(np.float32)), backend.to_numpy(m.predict(backend.asarray(X))),
                               rtol=1e-5, atol=1e-6)
    Xs, ys = sine_data(100)
    r = pnn.Model().add(pnn.Dense(1, 16, seed=0)).add(pnn.GELU()).add(pnn.Dense(16, 1, seed=1)).add(pnn.Linear())
    r.set(loss=pnn.HuberLoss(0.5), optimizer=pnn.Adam(0.01)).finalize()
    hr = r.train(backend.asarray(Xs), backend.asarray(ys), epochs=100, verbose=False)
    assert np.mean(hr.loss[-5:]) < 0.5 * hr.loss[0]
