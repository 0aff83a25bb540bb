"""Dense and Dropout: values, gradients (incl. regularization), placement, init."""

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn import gradcheck

RNG = np.random.default_rng(7)


def test_dense_forward_matches_formula(backend):
    layer = pnn.Dense(4, 3, seed=1, dtype="float64")
    w, b = layer.weight.copy(), RNG.standard_normal((1, 3))
    layer.bias = b  # plain, assignable attributes (host NumPy here; placed at forward)
    x = RNG.standard_normal((5, 4))
    backend.assert_close(layer.forward(backend.asarray(x)), x @ w + b, rtol=1e-12)


@pytest.mark.parametrize(
    "reg",
    [
        {},
        {"weight_regularizer_l2": 5e-4, "bias_regularizer_l2": 5e-4},
        {"weight_regularizer_l1": 3e-3, "bias_regularizer_l1": 2e-3},
        {"weight_regularizer_l1": 1e-3, "weight_regularizer_l2": 1e-2,
         "bias_regularizer_l1": 1e-3, "bias_regularizer_l2": 1e-2},
    ],
)
def test_dense_gradients_match_finite_differences(backend, reg):
    layer = pnn.Dense(4, 3, seed=2, dtype="float64", weight_scale=1.0, **reg)
    layer.bias = RNG.uniform(0.2, 1.0, size=(1, 3)) * RNG.choice([-1, 1], size=(1, 3))
    x = backend.asarray(RNG.standard_normal((6, 4)))
    result = gradcheck(layer, x, rtol=1e-6, atol=1e-10)
    assert set(result.errors) == {"dinput", "dweight", "dbias"}
    assert result.max_error < 1e-6


def test_dense_regularization_loss_value(backend):
    layer = pnn.Dense(3, 2, seed=3, dtype="float64", weight_regularizer_l1=0.1,
                      weight_regularizer_l2=0.2, bias_regularizer_l1=0.3, bias_regularizer_l2=0.4)
    w = layer.weight.copy()
    b = np.array([[0.5, -0.25]])
    layer.bias = b
    layer.forward(backend.asarray(np.ones((1, 3))))
    expected = 0.1 * np.abs(w).sum() + 0.2 * (w**2).sum() + 0.3 * np.abs(b).sum() + 0.4 * (b**2).sum()
    backend.assert_close(layer.regularization_loss(), expected, rtol=1e-12)


def test_same_seed_gives_bit_identical_weights_on_every_backend(backend):
    host = pnn.Dense(5, 4, seed=123).weight
    layer = pnn.Dense(5, 4, seed=123)
    layer.forward(backend.asarray(np.zeros((1, 5), dtype=np.float32)))
    np.testing.assert_array_equal(backend.to_numpy(layer.weight), host)
    assert backend.to_numpy(layer.weight).dtype == np.float32
    assert pnn.Dense(5, 4, seed=124).weight.tobytes() != host.tobytes()


def test_dense_initialization_statistics():
    layer = pnn.Dense(200, 300, seed=0, weight_scale=0.01)
    assert layer.weight.shape == (200, 300) and layer.bias.shape == (1, 300)
    assert abs(layer.weight.std() - 0.01) < 5e-4 and not layer.bias.any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_dtype_by_name_or_object(backend, xp, dtype):
    for spec in (dtype, getattr(xp, dtype), np.dtype(dtype)):
        layer = pnn.Dense(2, 2, dtype=spec)
        out = layer.forward(backend.asarray(np.ones((3, 2), dtype=dtype)))
        assert out.dtype == getattr(xp, dtype)
        assert layer.weight.dtype == getattr(xp, dtype)


def test_dense_places_parameters_on_the_inputs_backend(backend, xp):
    layer = pnn.Dense(3, 2, seed=0)
    assert isinstance(layer.weight, np.ndarray)
    layer.forward(backend.asarray(np.ones((4, 3), dtype=np.float32)))
    from array_api_compat import array_namespace, device
    assert array_namespace(layer.weight) is xp and array_namespace(layer.bias) is xp
    x = backend.asarray(np.ones((1, 3), dtype=np.float32))
    assert device(layer.weight) == device(x)
    layer.backward(backend.asarray(np.ones((4, 2), dtype=np.float32)))
    assert array_namespace(layer.dweight) is xp and array_namespace(layer.dbias) is xp


def test_user_assigned_parameters_are_used_as_they_are(backend):
    layer = pnn.Dense(2, 2, dtype="float64")
    w = backend.asarray(np.array([[1.0, 2.0], [3.0, 4.0]]))
    layer.weight = w
    out = layer.forward(backend.asarray(np.array([[1.0, 1.0]])))
    assert layer.weight is w
    backend.assert_close(out, [[4.0, 6.0]])


def test_dense_rejects_wrong_feature_count(backend):
    layer = pnn.Dense(3, 2)
    with pytest.raises(ValueError, match=r"Dense.forward: expected input of shape \(n_samples, 3\), got \(4, 5\)"):
        layer.forward(backend.asarray(np.ones((4, 5), dtype=np.float32)))
    with pytest.raises(ValueError, match="Dense.forward: expected input of shape"):
        layer.forward(backend.asarray(np.ones((3,), dtype=np.float32)))


def test_dense_rejects_integer_input(backend):
    with pytest.raises(TypeError, match="Dense.forward input: expected a float32/float64 array"):
        pnn.Dense(2, 2).forward(backend.asarray(np.ones((1, 2), dtype=np.int32)))


def test_dense_autocasts_float_input_to_its_dtype(backend, xp):
    out = pnn.Dense(2, 2).forward(backend.asarray(np.ones((1, 2), dtype=np.float64)))
    assert out.dtype == xp.float32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_inputs": 0}, "n_inputs must be a positive integer"),
        ({"n_neurons": -3}, "n_neurons must be a positive integer"),
        ({"n_inputs": 2.5}, "n_inputs must be a positive integer"),
        ({"weight_regularizer_l2": -1.0}, "weight_regularizer_l2 must be a finite number >= 0"),
        ({"bias_regularizer_l1": float("nan")}, "bias_regularizer_l1 must be a finite number >= 0"),
        ({"dtype": "int32"}, "dtype must be one of"),
    ],
)
def test_dense_rejects_bad_arguments(kwargs, message):
    args = {"n_inputs": 2, "n_neurons": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        pnn.Dense(args.pop("n_inputs"), args.pop("n_neurons"), **args)


@pytest.mark.skip_xp_backends("numpy", reason="needs a second library: placed on numpy, fed numpy")
def test_mixing_libraries_after_placement_is_a_type_error(backend):
    layer = pnn.Dense(2, 2)
    layer.forward(backend.asarray(np.ones((1, 2), dtype=np.float32)))
    with pytest.raises(TypeError, match=r"input is a numpy array on device cpu but the parameters are a"):
        layer.forward(np.ones((1, 2), dtype=np.float32))


def test_dropout_backward_matches_finite_differences(backend):
    x = backend.asarray(RNG.standard_normal((8, 5)))
    assert gradcheck(pnn.Dropout(0.3, seed=5), x, rtol=1e-6, atol=1e-10).ok


def test_dropout_statistics(backend, xp):
    rate = 0.25
    layer = pnn.Dropout(rate, seed=0)
    x = backend.asarray(np.ones((400, 250), dtype=np.float32))
    out = backend.to_numpy(layer.forward(x))
    kept = out != 0
    assert abs(kept.mean() - (1 - rate)) < 0.01
    np.testing.assert_allclose(out[kept], 1 / (1 - rate), rtol=1e-6)
    # the mean is preserved (inverted dropout) and backward uses the same mask
    assert abs(out.mean() - 1.0) < 0.02
    d = backend.to_numpy(layer.backward(backend.asarray(np.full((400, 250), 2.0, dtype=np.float32))))
    np.testing.assert_array_equal(d, 2 * out)
    # a new draw differs, inference is the identity
    assert (backend.to_numpy(layer.forward(x)) != out).any()
    assert layer.forward(x, training=False) is x


def test_dropout_same_seed_same_mask(backend):
    x = backend.asarray(np.ones((50, 20), dtype=np.float32))
    a = backend.to_numpy(pnn.Dropout(0.5, seed=9).forward(x))
    b = backend.to_numpy(pnn.Dropout(0.5, seed=9).forward(x))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_rejects_bad_rate(rate):
    with pytest.raises(ValueError, match="Dropout: rate must be in"):
        pnn.Dropout(rate)


def test_assigned_arrays_take_the_layers_dtype_on_every_backend(backend, xp):
    """One dtype rule everywhere: the layer's dtype wins, for parameters, optimizer state and inputs."""
    layer = pnn.Dense(2, 3, dtype="float32")
    layer.weight = backend.asarray(np.ones((2, 3)))  # float64
    layer.bias = backend.asarray(np.zeros((1, 3)))
    layer.weight_momentum = backend.asarray(np.zeros((2, 3)))
    assert layer.weight.dtype == xp.float32 and layer.bias.dtype == xp.float32
    assert layer.weight_momentum.dtype == xp.float32
    out = layer.forward(backend.asarray(np.ones((4, 2))))  # a float64 input is cast too
    assert out.dtype == xp.float32
    backend.assert_close(out, np.full((4, 3), 2.0, dtype=np.float32))
    with pytest.raises(TypeError, match="weight: expected a float32/float64 array, got dtype"):
        layer.weight = backend.asarray(np.ones((2, 3), dtype=np.int32))


def test_gradcheck_checks_a_float64_copy_of_a_float32_layer(backend):
    """gradcheck never blames a correct float32 layer, and leaves the layer itself alone."""
    layer = pnn.Dense(4, 3, seed=0)  # float32, the default
    x = backend.asarray(RNG.standard_normal((5, 4)))
    result = gradcheck(layer, x)
    assert result.ok and result.max_error < 1e-6
    assert layer.dtype == "float32" and layer.dweight is None and layer.params["weight"].dtype == "float32"


def test_assignments_of_the_wrong_shape_are_refused(backend):
    layer = pnn.Dense(2, 8)
    with pytest.raises(ValueError, match=r"weight: expected an array of shape \(2, 8\), got \(2, 5\)"):
        layer.weight = backend.asarray(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"bias: expected an array of shape \(1, 8\), got \(8,\)"):
        layer.bias = backend.asarray(np.zeros(8, dtype=np.float32))
    with pytest.raises(ValueError, match=r"weight_momentum: expected an array of shape \(2, 8\), got \(8, 2\)"):
        layer.weight_momentum = backend.asarray(np.zeros((8, 2), dtype=np.float32))
    with pytest.raises(TypeError):  # the optimizer state is written through set_state / the properties only
        layer.params["weight"].state["momentum"] = backend.asarray(np.zeros((2, 8), dtype=np.float32))


@pytest.mark.parametrize("seed", [np.int64(3), np.int32(3), 3])
def test_numpy_integer_seeds_are_saved(tmp_path, seed):
    m = pnn.Model().add(pnn.Dense(2, 3, seed=seed)).add(pnn.Dropout(0.1, seed=seed)).add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy()).finalize()
    m.save(tmp_path / "m.npz")
    loaded = pnn.Model.load(tmp_path / "m.npz")
    assert loaded.layers[0].seed == 3 and type(loaded.layers[1].seed) is int
    with pytest.raises(ValueError, match="Dense: seed must be an integer >= 0 or None, got 1.5"):
        pnn.Dense(2, 3, seed=1.5)
