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


def test_fit_classifier_learns_the_spiral_as_on_numpy(backend):
    """float64: the same run as on NumPy (weights to 1e-9), and the loss falls: assertions no BLAS can flip."""
    X, y = spiral_data(50, 3, seed=0)
    X = X.astype(np.float64)
    model, accuracy = fit_classifier(backend.asarray(X), backend.asarray(y), n_classes=3, epochs=60)
    reference, reference_accuracy = fit_classifier(X, y, n_classes=3, epochs=60)
    for got, want in zip(model.network.parameters(), reference.network.parameters(), strict=True):
        backend.assert_close(got.value, np.asarray(want.value), rtol=1e-9, atol=1e-12)
    assert accuracy == pytest.approx(reference_accuracy, abs=1e-12) and accuracy > 1 / 3  # chance is 1/3
    assert type(model.network.layers[0].weight).__module__.split(".")[0] == \
        type(backend.asarray(X)).__module__.split(".")[0]  # the parameters live in the caller's library


@pytest.mark.only_xp_backends("torch", reason="shows a backend-specific test: skipped elsewhere, with this reason")
def test_only_on_torch(backend):
    assert backend.name == "torch"
