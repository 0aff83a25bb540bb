"""gradcheck itself: it must catch a wrong backward pass, not just pass good ones."""

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn import gradcheck


class HalfWrongReLU(pnn.ReLU):
    def backward(self, dvalue):
        return super().backward(dvalue) * 1.01  # a 1% error


class WrongDense(pnn.Dense):
    def backward(self, dvalue):
        out = super().backward(dvalue)
        self.dbias = self.dbias * 0.0  # forgets the bias gradient
        return out


def test_gradcheck_catches_a_wrong_activation(backend):
    x = backend.asarray(np.array([[0.5, -1.0, 2.0]]))
    with pytest.raises(AssertionError, match="gradcheck failed: HalfWrongReLU"):
        gradcheck(HalfWrongReLU(), x)
    result = gradcheck(HalfWrongReLU(), x, raise_on_failure=False)
    assert not result.ok and result.errors["dinput"] == pytest.approx(0.01, rel=1e-3)


def test_gradcheck_catches_a_wrong_parameter_gradient(backend):
    x = backend.asarray(np.array([[0.5, -1.0], [2.0, 1.0]]))
    result = gradcheck(WrongDense(2, 2, seed=0, dtype="float64"), x, raise_on_failure=False)
    assert not result.ok
    assert result.errors["dbias"] == pytest.approx(1.0)
    assert result.errors["dinput"] < 1e-8 and result.errors["dweight"] < 1e-8


def test_gradcheck_refuses_float32(backend):
    with pytest.raises(ValueError, match="use float64 inputs"):
        gradcheck(pnn.ReLU(), backend.asarray(np.ones((1, 2), dtype=np.float32)))


def test_gradcheck_leaves_the_checked_layer_alone_and_checks_a_models_first_layer(backend):
    """A model's first layer skips dL/dX; gradcheck checks a copy that computes it, and writes nothing back."""
    from portable_nn.datasets import spiral_data

    X, y = spiral_data(10, 3, seed=0)
    m = pnn.Model().add(pnn.Dense(2, 4, seed=0, dtype="float64")).add(pnn.ReLU())
    m.add(pnn.Dense(4, 3, seed=1, dtype="float64")).add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam()).finalize()
    m.train(backend.asarray(X, dtype=np.float64), backend.asarray(y), epochs=2, verbose=False)
    first = m.layers[0]
    before = (first.input, first.dweight, first.weight, first.weight_momentum)
    result = gradcheck(first, backend.asarray(np.array([[0.5, -1.0], [2.0, 1.0]])))
    assert result.ok and set(result.errors) == {"dinput", "dweight", "dbias"}
    after = (first.input, first.dweight, first.weight, first.weight_momentum)
    assert all(a is b for a, b in zip(before, after, strict=True)) and first.need_dinput is False
