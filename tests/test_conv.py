"""Conv2D, pooling and Flatten: forward and backward against PyTorch autograd (float64), on every backend; a
small CNN learns, saves and loads."""

import math
import sys
import warnings

import numpy as np
import pytest

import portable_nn as pnn


@pytest.fixture(autouse=True)
def lax_conv_on_cpu_too(monkeypatch):
    """JAX's kernel (``lax.conv_general_dilated``) is used on accelerators only: here it runs on CPU too, so that
    the kernel is what these tests compare (the portable path is compared under ``fast_paths(False)``)."""
    if "jax" in sys.modules:  # the jax session (where it is not, no JAX array is made)
        from portable_nn.kernels import jax as jax_kernels

        monkeypatch.setattr(jax_kernels, "used_for", lambda x: True)


def same_pads(size, k, s, d=1):
    total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def torch_conv(x, weight, bias, stride, padding, dilation, dvalue):
    """PyTorch's conv2d on NHWC data (permuted to NCHW), padded as Keras pads: output and autograd gradients."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    kh, kw = weight.shape[:2]
    if padding == "same":
        (t, b), (left, r) = same_pads(x.shape[1], kh, stride, dilation), same_pads(x.shape[2], kw, stride, dilation)
    else:
        p = 0 if padding == "valid" else padding
        t = b = left = r = p
    xt = torch.asarray(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    wt = torch.asarray(weight.transpose(3, 2, 0, 1).copy(), requires_grad=True)
    bt = torch.asarray(bias.reshape(-1).copy(), requires_grad=True)
    out = F.conv2d(F.pad(xt, (left, r, t, b)), wt, bt, stride=stride, dilation=dilation)
    out.backward(torch.asarray(dvalue.transpose(0, 3, 1, 2).copy()))
    return (out.detach().numpy().transpose(0, 2, 3, 1), xt.grad.numpy().transpose(0, 2, 3, 1),
            wt.grad.numpy().transpose(2, 3, 1, 0), bt.grad.numpy().reshape(1, -1))


CASES = [(k, s, p, d) for k in (1, 3, 5) for s in (1, 2) for p in ("valid", "same", 2) for d in (1,)
         ] + [(3, 1, "same", 2), (3, 2, 1, 2)]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "portable"])
@pytest.mark.parametrize(("k", "s", "padding", "d"), CASES)
def test_conv2d_equals_pytorch_autograd(backend, k, s, padding, d, fast):
    """Both paths: the backend's own convolution (NumPy's im2col kernel, PyTorch's, JAX's lax) and the portable
    slices."""
    rng = np.random.default_rng(k * 10 + s)
    cin, cout = (1, 4) if k == 5 else (3, 2)
    x = rng.standard_normal((2, 9, 8, cin))
    layer = pnn.Conv2D(cin, cout, k, stride=s, padding=padding, dilation=d, seed=1, dtype="float64")
    layer.bias = rng.standard_normal((1, cout))
    weight, bias = np.array(layer.weight), np.array(layer.bias)
    with pnn.fast_paths(fast):
        out = layer.forward(backend.asarray(x))
        dvalue = rng.standard_normal(tuple(out.shape))
        dinput = layer.backward(backend.asarray(dvalue))
    want, dx, dw, db = torch_conv(x, weight, bias, s, padding, d, dvalue)
    assert tuple(out.shape) == want.shape
    backend.assert_close(out, want, rtol=1e-9, atol=1e-12)
    backend.assert_close(dinput, dx, rtol=1e-9, atol=1e-12)
    backend.assert_close(layer.dweight, dw, rtol=1e-9, atol=1e-12)
    backend.assert_close(layer.dbias, db, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("cin", "k", "s", "padding", "d"),
                         [(1, 5, 1, "valid", 1), (1, 3, 2, "same", 1), (6, 5, 1, "valid", 1), (3, 3, 2, "same", 2)])
def test_conv2d_fast_path_equals_the_portable_path_in_float32(backend, cin, k, s, padding, d):
    """The kernels (NumPy's offset-major im2col for one channel, batched col2im; PyTorch's and JAX's convolutions)
    against the portable slices, float32: equal to rounding.  A first layer (no dinput) gets the same dweight."""
    rng = np.random.default_rng(cin + k)
    x = backend.asarray(rng.standard_normal((4, 12, 11, cin)).astype("float32"))
    layer = pnn.Conv2D(cin, 8, k, stride=s, padding=padding, dilation=d, seed=2)
    oh, ow = layer.window.output_size(12, 11)
    dvalue = backend.asarray(rng.standard_normal((4, oh, ow, 8)).astype("float32"))
    results = {}
    for fast in (True, False):
        with pnn.fast_paths(fast):
            out = layer.forward(x)
            layer.need_dinput = True
            dinput = layer.backward(dvalue)
            dweight = layer.dweight
            layer.need_dinput = False
            assert layer.backward(dvalue) is None
            backend.assert_close(layer.dweight, dweight, rtol=0, atol=0)
            results[fast] = [backend.to_numpy(a) for a in (out, dinput, dweight, layer.dbias)]
    for fast, portable in zip(results[True], results[False], strict=True):
        assert fast.dtype == portable.dtype == np.float32
        np.testing.assert_allclose(fast, portable, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize(("pool", "size", "stride", "padding"),
                         [("max", 2, None, "valid"), ("max", 3, 2, "same"), ("max", 2, 1, "valid"),
                          ("avg", 2, None, "valid"), ("avg", 3, 2, "same"), ("avg", 3, 1, "valid")])
def test_pooling_equals_pytorch_autograd(backend, pool, size, stride, padding):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    rng = np.random.default_rng(size)
    x = rng.standard_normal((2, 7, 6, 3))
    layer = (pnn.MaxPool2D if pool == "max" else pnn.AvgPool2D)(size, stride=stride, padding=padding)
    out = layer.forward(backend.asarray(x))
    dvalue = rng.standard_normal(tuple(out.shape))
    dinput = layer.backward(backend.asarray(dvalue))
    s = stride or size
    (t, b), (left, r) = (same_pads(7, size, s), same_pads(6, size, s)) if padding == "same" else ((0, 0), (0, 0))
    xt = torch.asarray(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    if pool == "max":
        ref = F.max_pool2d(F.pad(xt, (left, r, t, b), value=-math.inf), size, s)
    else:  # Keras's average: the padding not counted
        ones = F.pad(torch.ones_like(xt), (left, r, t, b))
        ref = F.avg_pool2d(F.pad(xt, (left, r, t, b)), size, s) / F.avg_pool2d(ones, size, s)
    ref.backward(torch.asarray(dvalue.transpose(0, 3, 1, 2).copy()))
    backend.assert_close(out, ref.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-14)
    backend.assert_close(dinput, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-14)


def test_max_pool_ties_send_the_gradient_to_the_first_maximum(backend):
    x = np.zeros((1, 2, 2, 1))  # one window, four equal values
    layer = pnn.MaxPool2D(2)
    layer.forward(backend.asarray(x))
    dinput = layer.backward(backend.asarray(np.ones((1, 1, 1, 1))))
    backend.assert_close(dinput, np.array([1.0, 0.0, 0.0, 0.0]).reshape(1, 2, 2, 1), rtol=0, atol=0)


def test_global_average_pooling_and_flatten(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    gap, flat = pnn.GlobalAvgPool2D(), pnn.Flatten()
    backend.assert_close(gap.forward(backend.asarray(x)), x.mean(axis=(1, 2)), rtol=1e-12)
    d = rng.standard_normal((2, 5))
    want = np.broadcast_to(d[:, None, None, :] / 12, x.shape).copy()
    backend.assert_close(gap.backward(backend.asarray(d)), want, rtol=1e-12)
    backend.assert_close(flat.forward(backend.asarray(x)), x.reshape(2, -1), rtol=0, atol=0)
    backend.assert_close(flat.backward(backend.asarray(x.reshape(2, -1))), x, rtol=0, atol=0)


def test_errors_name_the_layer_and_the_shapes(backend):
    conv = pnn.Conv2D(3, 4, 3, dtype="float64")
    with pytest.raises(ValueError, match=r"Conv2D.forward: expected channels-last images of shape "
                                         r"\(n, height, width, 3\), got \(2, 3, 8, 8\) \(from PyTorch's NCHW"):
        conv.forward(backend.asarray(np.zeros((2, 3, 8, 8))))
    with pytest.raises(ValueError, match=r"Conv2D.forward: a 2x2 input is smaller than the \(3, 3\) kernel"):
        conv.forward(backend.asarray(np.zeros((1, 2, 2, 3))))
    for bad, match in [({"kernel_size": 0}, "kernel_size must be a positive integer"),
                       ({"padding": "full"}, "padding must be 'valid', 'same' or a non-negative integer"),
                       ({"stride": (1, 2, 3)}, "stride must be a positive integer or a pair")]:
        with pytest.raises(ValueError, match=match):
            pnn.Conv2D(3, 4, **{"kernel_size": 3, **bad})
    with pytest.raises(ValueError, match="MaxPool2D: padding must be 'valid' or 'same'"):
        pnn.MaxPool2D(2, padding=1)


def cnn(dtype="float64", seed=0):
    m = pnn.Model().add(pnn.Conv2D(1, 8, 3, padding="same", seed=seed, dtype=dtype)).add(pnn.ReLU())
    m.add(pnn.MaxPool2D(2)).add(pnn.Flatten()).add(pnn.Dense(4 * 4 * 8, 10, seed=seed + 1, dtype=dtype,
                                                             initializer="glorot_uniform")).add(pnn.Softmax())
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.01)).finalize()


def digits():
    pytest.importorskip("sklearn")
    from portable_nn.datasets import load_digits

    X, y, Xt, yt = load_digits()
    return X.reshape(-1, 8, 8, 1), y, Xt.reshape(-1, 8, 8, 1), yt


def test_a_small_cnn_learns_the_digits_as_on_numpy(backend):
    """float64: every backend gives NumPy's run (to 1e-9); the loss falls by a large factor."""
    X, y, _, _ = digits()
    X, y = X[:256], y[:256]
    runs = []
    for b in (None, backend):
        m = cnn()
        Xb, yb = (X, y) if b is None else (b.asarray(X, dtype=np.float64), b.asarray(y))
        h = m.train(Xb, yb, epochs=3, batch_size=64, shuffle=False, verbose=False)  # Dask shuffles by window
        runs.append((h.loss, [np.asarray(backend.to_numpy(p.value)) if b is not None else p.value
                              for p in m.network.parameters()]))
    assert runs[0][0][-1] < 0.7 * runs[0][0][0]
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-9)
    for got, want in zip(runs[1][1], runs[0][1], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.only_xp_backends("jax", "torch", reason="the backends with a compiler")
@pytest.mark.parametrize("fast", [True, False], ids=["kernels", "portable"])
def test_a_compiled_cnn_equals_eager_numpy(backend, fast):
    """float64, ``compile=True`` (a ``jax.jit`` block; ``torch.compile``), with the backend's own convolution
    and with the portable slices traced: NumPy's eager run to 1e-9."""
    X, y, _, _ = digits()
    X, y = X[:128], y[:128]
    want, got = cnn(), cnn()
    h_want = want.train(X, y, epochs=2, batch_size=32, seed=3, verbose=False)
    with pnn.fast_paths(fast), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.compile's notes about array-api-compat's lru_cache helpers
        h_got = got.train(backend.asarray(X, dtype=np.float64), backend.asarray(y), epochs=2, batch_size=32, seed=3,
                          verbose=False, compile=True)
    np.testing.assert_allclose(h_got.loss, h_want.loss, rtol=1e-9)
    for a, b in zip(got.network.parameters(), want.network.parameters(), strict=True):
        backend.assert_close(a.value, b.value, rtol=1e-9, atol=1e-12)


def test_a_cnn_saves_loads_and_summarizes(tmp_path):
    X, y, _, _ = digits()
    m = cnn("float32")
    m.train(X[:128], y[:128], epochs=1, batch_size=64, seed=0, verbose=False)
    m.save(tmp_path / "cnn.npz")
    loaded = pnn.Model.load(tmp_path / "cnn.npz")
    np.testing.assert_array_equal(loaded.predict(X[:10]), m.predict(X[:10]))
    assert loaded.layers[0].window.kernel == (3, 3) and loaded.layers[0].padding == "same"
    text = m.summary()
    assert "Conv2D(in_channels=1, out_channels=8, kernel_size=3, padding='same', seed=0)  (n, ?, ?, 8)" in text
    assert "(n, 4, 4, 8)" in m.summary(input_shape=(8, 8, 1)) and "(n, 128)" in m.summary(input_shape=(8, 8, 1))
    assert "total parameters: 1,370" in text  # 3*3*1*8 + 8 + 128*10 + 10


def test_a_cnn_refuses_pytorchs_state_dict_layout_clearly(tmp_path):
    pytest.importorskip("safetensors")
    m = cnn("float32")
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2D\) has no equivalent in PyTorch's nn.Sequential"):
        m.save_weights(tmp_path / "w.safetensors")
    m.save_weights(tmp_path / "w.npz")  # the parameters file holds any model
    other = cnn("float32", seed=5)
    other.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(other.layers[0].weight, m.layers[0].weight)


@pytest.mark.only_xp_backends("dask", reason="lazy blockwise inference")
def test_predict_on_dask_images_stays_lazy_and_chunked_along_n(backend):
    """No rechunking of height, width or channels: each block of images is convolved on its own."""
    import dask.array as da

    X = np.random.default_rng(0).standard_normal((50, 8, 8, 1))
    want = cnn().predict(X)
    lazy = cnn().predict(da.from_array(X, chunks=(16, 8, 8, 1)))
    assert isinstance(lazy, da.Array) and lazy.chunks == ((16, 16, 16, 2), (10,))
    np.testing.assert_allclose(lazy.compute(), want, rtol=1e-12)
