"""Validation data: train(validation_split=) holds out the last rows; validation_data is checked with the
training data before any step."""


import numpy as np
import pytest
from helpers import classifier, data

import portable_nn as pnn


def test_validation_split_holds_out_the_last_rows(backend):
    X, y, _, _ = data(backend)  # 180 rows
    a, b = classifier(), classifier()
    ha = a.train(X, y, epochs=3, batch_size=32, seed=0, validation_split=0.25, verbose=False)
    hb = b.train(X[:135, ...], y[:135, ...], epochs=3, batch_size=32, seed=0,
                 validation_data=(X[135:, ...], y[135:, ...]), verbose=False)
    np.testing.assert_allclose(ha.val_loss, hb.val_loss, rtol=1e-12)
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-12)
    for bad in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="validation_split must leave rows on both sides"):
            a.train(X, y, validation_split=bad, verbose=False)
    with pytest.raises(ValueError, match="give validation_data or validation_split, not both"):
        a.train(X, y, validation_split=0.2, validation_data=(X, y), verbose=False)


@pytest.mark.skip_xp_backends("numpy", "dask", reason="needs a second library (Dask streams into NumPy blocks)")
@pytest.mark.parametrize("metrics", [None, ["f1"]])
def test_validation_data_in_another_library_is_refused_before_any_step(backend, metrics):
    X, y, Xv, yv = data(backend)
    m = classifier()
    host = (np.asarray(backend.to_numpy(Xv)), np.asarray(backend.to_numpy(yv)))
    with pytest.raises(TypeError, match=r"Model.train: validation_data: input is a numpy.* but the training data "
                                        r"are a"):
        m.train(X, y, epochs=2, validation_data=host, verbose=False,
                metrics=None if metrics is None else [pnn.metrics.F1()])
    assert m.optimizer.iterations == 0
