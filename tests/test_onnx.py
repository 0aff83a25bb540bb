"""ONNX export (issue 14): the forward pass of ``predict`` run on ndonnx arrays, then run by onnxruntime.

For every layer and activation and several architectures (softmax, sigmoid and linear heads), onnxruntime's
outputs equal ``model.predict`` on NumPy (float32 to ~1e-6, float64 to 1e-12) for batches of 1, 7 and 1000;
every file passes ``onnx.checker.check_model`` and holds standard ONNX operators only.
"""

import subprocess
import sys

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.datasets import sine_data, spiral_data

pytestmark = pytest.mark.only_xp_backends("numpy", reason="export runs on the host; compared with NumPy's predict")

ndx = pytest.importorskip("ndonnx", reason="the onnx extra is not installed: pip install 'portable_nn[onnx]'")
onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'portable_nn[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'portable_nn[onnx]'")

HIDDEN = ["ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Linear", "GELU", "LayerNorm", "BatchNorm", "Dropout"]


def hidden(name, width, dtype):
    if name in ("LayerNorm", "BatchNorm"):
        return getattr(pnn, name)(width, dtype=dtype)
    if name == "Dropout":
        return pnn.Dropout(0.3, seed=1)
    return getattr(pnn, name)()


def classifier(name, dtype, head="softmax"):
    m = pnn.Model().add(pnn.Dense(2, 16, seed=0, dtype=dtype, initializer="he_normal")).add(hidden(name, 16, dtype))
    if name in ("LayerNorm", "BatchNorm", "Dropout"):
        m.add(pnn.ReLU())
    if head == "softmax":
        m.add(pnn.Dense(16, 3, seed=1, dtype=dtype)).add(pnn.Softmax())
        return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.02)).finalize(), 3
    m.add(pnn.Dense(16, 1, seed=1, dtype=dtype)).add(pnn.Sigmoid())
    return m.set(loss=pnn.BinaryCrossentropy(), optimizer=pnn.Adam(0.02)).finalize(), 2


def run(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": X})[0]


def check_file(path):
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    domains = {node.domain for node in proto.graph.node}
    assert domains <= {"", "ai.onnx"}, f"non-standard operator domains {domains}"
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["output"]
    return proto


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", HIDDEN)
def test_every_layer_exports_and_runs_as_predict(tmp_path, name, dtype):
    X, y = spiral_data(40, 3, seed=0)
    m, classes = classifier(name, dtype, head="softmax" if name != "Sigmoid" else "sigmoid")
    m.train(X.astype(dtype), y if classes == 3 else (y == 0).astype(np.int64).reshape(-1, 1), epochs=20,
            batch_size=32, shuffle=True, seed=1, verbose=False)
    path = tmp_path / "m.onnx"
    m.export_onnx(path)
    proto = check_file(path)
    dim = proto.graph.input[0].type.tensor_type.shape.dim
    assert dim[0].dim_param == "N" and dim[1].dim_value == 2  # a dynamic batch, 2 features
    rng = np.random.default_rng(3)
    tol = {"float32": (2e-6, 1e-6), "float64": (1e-12, 1e-13)}[dtype]
    for n in (1, 7, 1000):
        Xn = rng.uniform(-1, 1, size=(n, 2)).astype(dtype)
        got = run(path, Xn)
        assert got.dtype == np.dtype(dtype) and got.shape == (n, classes if classes == 3 else 1)
        np.testing.assert_allclose(got, m.predict(Xn), rtol=tol[0], atol=tol[1])


# float64 layers onnxruntime has no exact kernel for (LeakyRelu, Gelu, LayerNormalization): traced through ndonnx
TRACED_IN_FLOAT64 = {"LeakyReLU", "GELU", "LayerNorm"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", HIDDEN)
def test_built_in_layers_export_as_a_few_standard_operators(tmp_path, name, dtype):
    """At most 3 operators a layer, no control flow: PyTorch's exporter's graph (Gemm, Relu, Softmax, ...)."""
    m, _ = classifier(name, dtype)
    m.export_onnx(tmp_path / "m.onnx")
    ops = [node.op_type for node in check_file(tmp_path / "m.onnx").graph.node if node.op_type != "Constant"]
    if dtype == "float64" and name in TRACED_IN_FLOAT64:
        assert ops[0] == "Gemm" and ops[-2:] == ["Gemm", "Softmax"] and not {"If", "Loop", "Scan"} & set(ops)
        return
    assert len(ops) <= 3 * len(m.layers) and not {"If", "Loop", "Scan", "Identity"} & set(ops), ops
    expected = {"ReLU": ["Relu"], "LeakyReLU": ["LeakyRelu"], "Tanh": ["Tanh"], "Sigmoid": ["Sigmoid"], "Linear": [],
                "GELU": ["Gelu"], "LayerNorm": ["LayerNormalization", "Relu"], "BatchNorm": ["Mul", "Add", "Relu"],
                "Dropout": ["Relu"]}[name]
    assert ops == ["Gemm", *expected, "Gemm", "Softmax"]


def test_a_layer_of_your_own_exports_through_the_array_api(tmp_path):
    """No emitter for it: its own forward runs on ndonnx arrays, between the built-in layers' operators."""

    class Cube(pnn.ReLU):  # a subclass computes something else: it is traced, not exported as Relu
        def apply(self, arrays, x, *, training=False, noise=None):
            return x * x * x, x

    m = pnn.Model().add(pnn.Dense(2, 8, seed=0, dtype="float64")).add(Cube())
    m.add(pnn.Dense(8, 3, seed=1, dtype="float64")).add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.SGD()).finalize()
    m.export_onnx(tmp_path / "c.onnx")
    ops = [node.op_type for node in check_file(tmp_path / "c.onnx").graph.node if node.op_type != "Constant"]
    assert ops == ["Gemm", "Mul", "Mul", "Gemm", "Softmax"]
    X = np.random.default_rng(0).uniform(-1, 1, (5, 2))
    np.testing.assert_allclose(run(tmp_path / "c.onnx", X), m.predict(X), rtol=1e-12, atol=1e-13)


def test_a_regression_model_and_a_fixed_batch(tmp_path):
    X, y = sine_data(200)
    m = pnn.Model().add(pnn.Dense(1, 32, seed=0)).add(pnn.Tanh()).add(pnn.Dense(32, 1, seed=1)).add(pnn.Linear())
    m.set(loss=pnn.MeanSquaredError(), optimizer=pnn.Adam(0.01), accuracy=pnn.RegressionAccuracy()).finalize()
    m.train(X, y, epochs=50, verbose=False)
    m.export_onnx(tmp_path / "fixed.onnx", batch=200)
    proto = check_file(tmp_path / "fixed.onnx")
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 200
    np.testing.assert_allclose(run(tmp_path / "fixed.onnx", X), m.predict(X), rtol=2e-6, atol=1e-6)
    # a float32 model exported as float64: its parameters widened, the graph computes in float64
    m.export_onnx(tmp_path / "wide.onnx", dtype="float64")
    wide = run(tmp_path / "wide.onnx", X.astype(np.float64))
    assert wide.dtype == np.float64
    np.testing.assert_allclose(wide, m.predict(X), rtol=1e-5, atol=1e-6)
    assert m.network.dtype() == "float32"  # the model itself is unchanged


def test_a_model_trained_on_another_backend_exports(tmp_path):
    """array-api-strict (in the test extra, so this runs in CI): the same as a PyTorch or JAX model would."""
    xps = pytest.importorskip("array_api_strict")
    X, y = spiral_data(30, 3, seed=2)
    X = X.astype(np.float64)
    m, _ = classifier("BatchNorm", "float64")
    m.train(xps.asarray(X), xps.asarray(y), epochs=5, batch_size=32, verbose=False, seed=0)
    m.export_onnx(tmp_path / "t.onnx")
    np.testing.assert_allclose(run(tmp_path / "t.onnx", X), np.asarray(m.predict(xps.asarray(X))), rtol=1e-12,
                               atol=1e-13)
    assert type(m.network.layers[0].weight).__module__.startswith("array_api_strict")  # still where it was
    assert type(m.network.layers[1].running_var).__module__.startswith("array_api_strict")


def test_export_errors_are_clear(tmp_path):
    m = pnn.Model().add(pnn.Dense(2, 4, seed=0)).add(pnn.GELU("none")).add(pnn.Dense(4, 3, seed=1))
    m.add(pnn.Softmax()).set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.SGD()).finalize()
    with pytest.raises(TypeError, match="ndonnx has no erf"):
        m.export_onnx(tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    ok = pnn.Model().add(pnn.Dense(2, 3, seed=0)).add(pnn.Softmax())
    ok.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.SGD()).finalize()
    for kwargs, match in [({"dtype": "int32"}, r"Model.export_onnx: dtype must be one of \(.float32., .float64.\)"),
                          ({"batch": 0}, "batch must be a dimension name or a positive integer"),
                          ({"n_features": -1}, "n_features must be a positive integer")]:
        with pytest.raises(ValueError, match=match):
            ok.export_onnx(tmp_path / "y.onnx", **kwargs)
    with pytest.raises(OSError, match="no_such_folder"):
        ok.export_onnx(tmp_path / "no_such_folder" / "m.onnx")


def test_without_the_extra_the_error_names_it(tmp_path, monkeypatch):
    ok = pnn.Model().add(pnn.Dense(2, 3, seed=0)).add(pnn.Softmax())
    ok.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.SGD()).finalize()
    monkeypatch.setitem(sys.modules, "ndonnx", None)  # import ndonnx now raises ImportError
    with pytest.raises(ImportError, match=r"^ONNX export needs ndonnx and onnx: pip install 'portable_nn\[onnx\]'$"):
        ok.export_onnx(tmp_path / "m.onnx")


def test_the_command_line_exports_a_saved_model(tmp_path):
    X, y = spiral_data(20, 3, seed=1)
    m, _ = classifier("ReLU", "float32")
    m.train(X, y, epochs=5, verbose=False)
    m.save(tmp_path / "m.npz")
    out = subprocess.run([sys.executable, "-m", "portable_nn", "export", str(tmp_path / "m.npz"),
                          str(tmp_path / "m.onnx")], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "m.onnx" in out.stdout
    np.testing.assert_allclose(run(tmp_path / "m.onnx", X), m.predict(X), rtol=2e-6, atol=1e-6)
    bad = subprocess.run([sys.executable, "-m", "portable_nn", "export", str(tmp_path / "missing.npz"),
                          str(tmp_path / "x.onnx")], capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode != 0 and "missing.npz" in bad.stderr and "Traceback" not in bad.stderr


def image_model(dtype="float32"):
    m = pnn.Model().add(pnn.Conv2D(1, 4, 3, padding="same", stride=2, seed=0, dtype=dtype)).add(pnn.ReLU())
    m.add(pnn.MaxPool2D(2, padding="same")).add(pnn.Conv2D(4, 6, 3, padding=2, dilation=2, seed=1, dtype=dtype))
    m.add(pnn.AvgPool2D(2, stride=1, padding="same")).add(pnn.Flatten())
    m.add(pnn.Dense(6 * 3 * 3, 3, seed=2, dtype=dtype)).add(pnn.Softmax())  # 9x9 -> 5x5 -> 3x3 -> 3x3 -> 3x3
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.01)).finalize()


def test_a_cnn_exports_as_conv_and_pool_operators(tmp_path):
    m = image_model()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 9, 9, 1)).astype(np.float32)
    m.train(X, rng.integers(0, 3, 40), epochs=3, batch_size=16, seed=0, verbose=False)
    m.export_onnx(tmp_path / "cnn.onnx", input_shape=(9, 9, 1))
    proto = check_file(tmp_path / "cnn.onnx")
    ops = [node.op_type for node in proto.graph.node if node.op_type != "Constant"]
    # one transpose into ONNX's channels-first layout and one back before Flatten (rows, columns, channels)
    assert ops == ["Transpose", "Conv", "Relu", "MaxPool", "Conv", "AveragePool", "Transpose", "Flatten", "Gemm",
                   "Softmax"]
    assert [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["N", 9, 9, 1]
    for n in (1, 7, 100):
        Xn = rng.standard_normal((n, 9, 9, 1)).astype(np.float32)
        np.testing.assert_allclose(run(tmp_path / "cnn.onnx", Xn), m.predict(Xn), rtol=2e-6, atol=1e-6)
    gap = pnn.Model().add(pnn.Conv2D(2, 4, 3, seed=0)).add(pnn.GlobalAvgPool2D()).add(pnn.Dense(4, 3, seed=1))
    gap.add(pnn.Softmax()).set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.SGD()).finalize()
    gap.export_onnx(tmp_path / "gap.onnx", input_shape=(6, 5, 2))
    Xg = rng.standard_normal((4, 6, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(run(tmp_path / "gap.onnx", Xg), gap.predict(Xg), rtol=2e-6, atol=1e-6)


def test_image_export_errors_are_clear(tmp_path):
    m = image_model()
    with pytest.raises(ValueError, match=r"the model takes images; pass input_shape=\(height, width, channels\)"):
        m.export_onnx(tmp_path / "x.onnx")
    with pytest.raises(ValueError, match=r"the first layer takes samples of shape \(\?, \?, 1\), got input_shape="):
        m.export_onnx(tmp_path / "x.onnx", input_shape=(9, 9, 3))
    with pytest.raises(ValueError, match="Conv2D in float64: onnxruntime has no float64 Conv kernel"):
        m.export_onnx(tmp_path / "x.onnx", input_shape=(9, 9, 1), dtype="float64")
    assert not (tmp_path / "x.onnx").exists()
