"""The downstream project's tests, on whichever backend ``--backend`` names (portable_nn.testing)."""

import numpy as np
import pytest
from downstream_demo import fit_classifier, standardize

from portable_nn.datasets import spiral_data


def test_standardize_stays_in_the_callers_library(backend, xp):
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, size=(50, 3))
    X[:, 2] = 7.0  # a constant column
    out = standardize(backend.asarray(X))
    expected = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    backend.assert_close(out, expected)  # checks the namespace, dtype and device too


def test_fit_classifier_learns_the_spiral(backend):
    X, y = spiral_data(50, 3, seed=0)
    model, accuracy = fit_classifier(backend.asarray(X, dtype=np.float64), backend.asarray(y), n_classes=3,
                                     epochs=backend.epochs(300))
    assert accuracy > 0.6  # float64; about 0.9 after 300 epochs, 1/3 by chance
    assert type(model.network.layers[0].weight).__module__.split(".")[0] == \
        type(backend.asarray(X)).__module__.split(".")[0]  # the parameters live in the caller's library


@pytest.mark.only_xp_backends("torch", reason="shows a backend-specific test: skipped elsewhere, with this reason")
def test_only_on_torch(backend):
    assert backend.name == "torch"
