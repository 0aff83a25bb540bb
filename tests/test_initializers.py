"""Weight initializers: their variance, identical draws on every backend, their arguments in files."""

import math

import numpy as np
import pytest
from helpers import classifier

import portable_nn as pnn
import portable_nn.schedules


@pytest.mark.parametrize(("name", "std"), [("glorot_uniform", math.sqrt(2 / (784 + 128))),
                                            ("glorot_normal", math.sqrt(2 / (784 + 128))),
                                            ("he_uniform", math.sqrt(2 / 784)), ("he_normal", math.sqrt(2 / 784)),
                                            ("book", 0.01)])
def test_initializers_draw_their_variance_identically_on_every_backend(backend, name, std):
    layer = pnn.Dense(784, 128, seed=3, dtype="float64", initializer=name)
    host = np.array(layer.weight, copy=True)
    assert abs(host.std() / std - 1) < 0.02 and abs(host.mean()) < 0.05 * std
    if name.endswith("uniform"):
        assert np.abs(host).max() <= std * math.sqrt(3) + 1e-15
    layer.forward(backend.asarray(np.ones((2, 784))))  # placed on the backend: the same bits
    np.testing.assert_array_equal(backend.to_numpy(layer.weight), host)


def test_initializer_arguments_and_files(tmp_path):
    with pytest.raises(ValueError, match="initializer must be one of 'book', 'glorot_uniform'"):
        pnn.Dense(2, 3, initializer="lecun")
    with pytest.raises(ValueError, match="weight_scale scales the 'book' initializer only"):
        pnn.Dense(2, 3, initializer="he_normal", weight_scale=0.5)
    m = classifier(initializer="he_uniform")
    m.save(tmp_path / "m.npz")
    assert pnn.Model.load(tmp_path / "m.npz").layers[0].initializer == "he_uniform"
