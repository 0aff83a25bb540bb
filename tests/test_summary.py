"""Model.summary and the reprs."""


import numpy as np
from helpers import classifier


def test_summary_and_repr(backend):
    m = classifier(dtype="float32", initializer="he_normal")
    text = m.summary()
    assert "Dense(n_inputs=2, n_neurons=32, seed=0, initializer='he_normal')" in text
    assert "(n, 32)" in text and "(n, 3)" in text and "total parameters: 195" in text
    assert "not placed yet" in text
    m.predict(backend.asarray(np.zeros((1, 2), dtype=np.float32)))
    assert "placed on: " in m.summary()
    assert repr(m).count("\n") == 0 and "loss=CategoricalCrossentropy()" in repr(m)
