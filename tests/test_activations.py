"""Activations: forward against independent formulas, backward by finite differences."""

import numpy as np
import pytest
from helpers import torch_grad

import portable_nn as pnn
from portable_nn import gradcheck

RNG = np.random.default_rng(42)


def away_from_zero(shape):
    """Inputs with |x| >= 0.1, so the ReLU kink is never inside a difference step."""
    x = RNG.standard_normal(shape)
    return np.where(np.abs(x) < 0.1, 0.1 + np.abs(x), x)


# Every activation the library exports: a new class is covered without an edit here.
ACTIVATIONS = [getattr(pnn, name) for name in pnn.activations.__all__ if name not in ("Activation", "softmax_parts")]


def test_every_activation_is_exported_and_registered():
    names = {cls.__name__ for cls in ACTIVATIONS}
    assert names >= {"ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softmax", "Linear"}
    assert all(pnn.Layer.registry[name] is getattr(pnn, name) for name in names)


@pytest.mark.parametrize("cls", ACTIVATIONS)
def test_backward_matches_finite_differences(backend, cls):
    x = backend.asarray(away_from_zero((5, 4)), dtype=np.float64)
    result = gradcheck(cls(), x, rtol=1e-6, atol=1e-10)
    assert result.ok and result.max_error < 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_and_leaky_relu_forward_values(backend, dtype):
    x_host = away_from_zero((6, 3)).astype(dtype)
    x = backend.asarray(x_host)
    backend.assert_close(pnn.Tanh().forward(x), np.tanh(x_host), rtol=1e-6 if dtype == np.float32 else 1e-12)
    backend.assert_close(pnn.LeakyReLU(0.1).forward(x), np.where(x_host > 0, x_host, dtype(0.1) * x_host))
    layer = pnn.LeakyReLU(0.2)
    layer.forward(x)
    d = np.ones_like(x_host)
    backend.assert_close(layer.backward(backend.asarray(d)), np.where(x_host > 0, d, dtype(0.2) * d))


@pytest.mark.parametrize("alpha", [-0.1, 1.0, float("nan")])
def test_leaky_relu_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"LeakyReLU: alpha must be in \[0, 1\)"):
        pnn.LeakyReLU(alpha)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_values(backend, dtype):
    x_host = away_from_zero((6, 3)).astype(dtype)
    x = backend.asarray(x_host)
    backend.assert_close(pnn.ReLU().forward(x), np.maximum(x_host, 0))
    backend.assert_close(pnn.Linear().forward(x), x_host)
    backend.assert_close(pnn.Sigmoid().forward(x), (1 / (1 + np.exp(-x_host.astype(np.float64)))).astype(dtype),
                         rtol=1e-6 if dtype == np.float32 else 1e-12)
    e = np.exp(x_host.astype(np.float64))
    backend.assert_close(pnn.Softmax().forward(x), (e / e.sum(axis=1, keepdims=True)).astype(dtype),
                         rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_forward_keeps_dtype(backend, xp):
    for dtype in (np.float32, np.float64):
        x = backend.asarray(np.ones((2, 3), dtype=dtype))
        for cls in ACTIVATIONS:
            assert cls().forward(x).dtype == x.dtype, cls


def test_sigmoid_is_finite_for_huge_inputs(backend):
    x_host = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]])
    for dtype in (np.float32, np.float64):
        out = backend.to_numpy(pnn.Sigmoid().forward(backend.asarray(x_host, dtype=dtype)))
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(out[0, [0, 2, 4]], [0.0, 0.5, 1.0], atol=1e-12)


def test_softmax_is_finite_for_huge_logits(backend):
    x = backend.asarray(np.array([[1e4, -1e4, 0.0], [1e4, 1e4, 1e4]]), dtype=np.float32)
    out = backend.to_numpy(pnn.Softmax().forward(x))
    np.testing.assert_allclose(out, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)


def test_softmax_backward_equals_jacobian_product(backend):
    """The vectorized formula equals the seed's per-sample Jacobian loop."""
    z = RNG.standard_normal((4, 5))
    d = RNG.standard_normal((4, 5))
    s = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    expected = np.stack([(np.diagflat(si) - np.outer(si, si)) @ di for si, di in zip(s, d, strict=False)])
    layer = pnn.Softmax()
    layer.forward(backend.asarray(z))
    backend.assert_close(layer.backward(backend.asarray(d)), expected, rtol=1e-10)


def test_relu_backward_masks_nonpositive_inputs(backend):
    x = backend.asarray(np.array([[-1.0, 0.0, 2.0]]))
    layer = pnn.ReLU()
    layer.forward(x)
    backend.assert_close(layer.backward(backend.asarray(np.array([[5.0, 6.0, 7.0]]))), [[0.0, 0.0, 7.0]])


def test_predictions(backend, xp):
    probs = backend.asarray(np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]]))
    assert backend.to_numpy(pnn.Softmax().predictions(probs)).tolist() == [1, 0]
    sig = pnn.Sigmoid().predictions(backend.asarray(np.array([[0.2], [0.9]])))
    assert xp.isdtype(sig.dtype, "integral")
    assert backend.to_numpy(sig).tolist() == [[0], [1]]
    out = backend.asarray(np.array([[1.5]]))
    assert pnn.ReLU().predictions(out) is out and pnn.Linear().predictions(out) is out


@pytest.mark.parametrize("cls", [pnn.ReLU, pnn.Sigmoid, pnn.Softmax, pnn.Linear, pnn.Dense])
def test_backward_before_forward_is_an_error(backend, cls):
    layer = cls(2, 2) if cls is pnn.Dense else cls()
    with pytest.raises(RuntimeError, match=f"{cls.__name__}.backward called before forward"):
        layer.backward(backend.asarray(np.ones((1, 2))))


def test_relu_backward_fast_path_equals_reference(backend):
    x = backend.asarray(away_from_zero((7, 5)))
    d = backend.asarray(RNG.standard_normal((7, 5)))
    results = []
    before = pnn.fast_paths_enabled()
    for enabled in (True, False):
        with pnn.fast_paths(enabled):
            layer = pnn.ReLU()
            layer.forward(x)
            results.append(backend.to_numpy(layer.backward(d)))
    assert pnn.fast_paths_enabled() == before  # the scope restored the switch
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("k", [1, 2, 3, 16, 17, 64, 65])
def test_row_max_kernel_equals_the_reduction_nan_included(backend, k):
    """The softmax's row maximum: a reduction over the transposed copy's rows on NumPy (up to 64 columns), the
    reduction elsewhere; the same values either way, a NaN in a row propagating to that row's maximum."""
    z = RNG.standard_normal((6, k)).astype(np.float32)
    z[2, k // 2] = np.nan
    want = np.max(z, axis=1, keepdims=True)
    for enabled in (True, False):
        with pnn.fast_paths(enabled):
            got = backend.to_numpy(pnn.kernels.row_max(backend.asarray(z)))
        assert got.shape == (6, 1) and got.dtype == np.float32
        np.testing.assert_array_equal(got, want)  # NaN equals NaN here


@pytest.mark.parametrize("k", [1, 3, 10, 100])
def test_row_sums_kernel_equals_the_reduction(backend, k):
    """The softmax's row sums: a product with a column of ones on NumPy and CuPy, the reduction elsewhere; equal
    to rounding, and NaN and inf propagate to their row only."""
    z = RNG.standard_normal((6, k))
    z[2, k // 2], z[4, 0] = np.nan, np.inf
    want = np.sum(z, axis=1, keepdims=True)
    for enabled in (True, False):
        with pnn.fast_paths(enabled):
            got = backend.to_numpy(pnn.kernels.row_sums(backend.asarray(z)))
        assert got.shape == (6, 1) and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-13)  # NaN equals NaN, inf equals inf here


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_matches_torch(backend, xp, approximate):
    torch = pytest.importorskip("torch")
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
