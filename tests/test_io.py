"""Model files: round trips (also across backends), no pickle, atomic writes, clear errors."""

import contextlib
import io
import os
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import portable_nn as pnn
from portable_nn.datasets import spiral_data


def trained_model(backend, epochs=3):
    X, y = spiral_data(20, 3, seed=0)
    m = pnn.Model()
    m.add(pnn.Dense(2, 8, seed=0, weight_regularizer_l2=1e-4))
    m.add(pnn.ReLU())
    m.add(pnn.Dropout(0.1, seed=1))
    m.add(pnn.Dense(8, 3, seed=1))
    m.add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(learning_rate=0.02, decay=1e-3),
          accuracy=pnn.CategoricalAccuracy())
    m.finalize()
    m.train(backend.asarray(X), backend.asarray(y), epochs=epochs, verbose=False)
    return m, X, y


def test_model_round_trip_on_the_backend(backend, tmp_path):
    m, X, y = trained_model(backend)
    path = tmp_path / "model.npz"
    m.save(path)
    loaded = pnn.Model.load(path)
    assert [type(layer).__name__ for layer in loaded.layers] == ["Dense", "ReLU", "Dropout", "Dense", "Softmax"]
    assert loaded.layers[0].weight_regularizer_l2 == 1e-4 and loaded.layers[2].rate == 0.1
    assert loaded.optimizer.iterations == 3 and loaded.optimizer.decay == 1e-3
    Xb = backend.asarray(X)
    np.testing.assert_array_equal(backend.to_numpy(loaded.predict(Xb)), backend.to_numpy(m.predict(Xb)))
    # training resumes from the saved optimizer state: the same next step as the original
    # (the dropout stream is not part of the file: give both the same fresh one)
    m.layers[2].generator = pnn.Generator(5)
    loaded.layers[2].generator = pnn.Generator(5)
    m.train(Xb, backend.asarray(y), epochs=1, verbose=False)
    loaded.train(Xb, backend.asarray(y), epochs=1, verbose=False)
    np.testing.assert_allclose(backend.to_numpy(loaded.layers[0].weight), backend.to_numpy(m.layers[0].weight),
                               rtol=1e-6)


def test_file_saved_on_the_backend_loads_on_numpy_and_back(backend, tmp_path):
    m, X, _y = trained_model(backend)
    path = tmp_path / "model.npz"
    m.save(path)
    on_numpy = pnn.Model.load(path)
    np.testing.assert_allclose(on_numpy.predict(X), backend.to_numpy(m.predict(backend.asarray(X))), rtol=1e-5)
    on_numpy.save(path)
    again = pnn.Model.load(path)
    np.testing.assert_allclose(backend.to_numpy(again.predict(backend.asarray(X))), on_numpy.predict(X), rtol=1e-5)


def test_parameters_round_trip(backend, tmp_path):
    m, _X, _ = trained_model(backend)
    path = tmp_path / "params.npz"
    m.save_parameters(path)
    other, _, _ = trained_model(backend, epochs=1)
    other.load_parameters(path)
    for (w1, b1), (w2, b2) in zip(m.get_parameters(), other.get_parameters(), strict=False):
        np.testing.assert_array_equal(backend.to_numpy(w1), backend.to_numpy(w2))
        np.testing.assert_array_equal(backend.to_numpy(b1), backend.to_numpy(b2))


def test_parameters_of_another_architecture_are_rejected(backend, tmp_path):
    m, _, _ = trained_model(backend)
    path = tmp_path / "params.npz"
    m.save_parameters(path)
    other = pnn.Model().add(pnn.Dense(2, 5)).add(pnn.ReLU()).add(pnn.Dense(5, 3)).add(pnn.Softmax())
    other.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.SGD()).finalize()
    with pytest.raises(ValueError, match="parameters of another architecture"):
        other.load_parameters(path)
    with pytest.raises(ValueError, match="the model has 2 trainable layers, got 1 parameter sets"):
        other.set_parameters(m.get_parameters()[:1])


def test_no_pickle_anywhere(tmp_path):
    m, _, _ = trained_model(type("B", (), {"asarray": staticmethod(lambda a, dtype=None: np.asarray(a))}))
    path = tmp_path / "model.npz"
    m.save(path)
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            header = z.read(name)[:128]
            assert b"'descr': '|O'" not in header and b"'descr': 'O'" not in header, name


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_pickle_file_is_refused_not_run(tmp_path):
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ValueError, match="not a valid portable_nn model file"):
        pnn.Model.load(path)
    # an npz whose arrays are pickled objects
    buf = io.BytesIO()
    np.savez(buf, __portable_nn__=np.array([Boom()], dtype=object))
    path.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="not a valid portable_nn model file"):
        pnn.Model.load(path)


def test_truncated_and_foreign_files_are_value_errors(tmp_path):
    m, _, _ = trained_model(type("B", (), {"asarray": staticmethod(lambda a, dtype=None: np.asarray(a))}))
    path = tmp_path / "model.npz"
    m.save(path)
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 5):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a valid portable_nn model file"):
            pnn.Model.load(path)
    np.savez(path, a=np.ones(3))
    with pytest.raises(ValueError, match="no portable_nn header"):
        pnn.Model.load(path)
    with pytest.raises(OSError):
        pnn.Model.load(tmp_path / "missing.npz")


def test_a_crash_mid_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    m, _X, _ = trained_model(type("B", (), {"asarray": staticmethod(lambda a, dtype=None: np.asarray(a))}))
    path = tmp_path / "model.npz"
    m.save(path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        m.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind


@pytest.fixture(scope="module")
def valid_file_bytes(tmp_path_factory):
    m, _, _ = trained_model(type("B", (), {"asarray": staticmethod(lambda a, dtype=None: np.asarray(a))}), epochs=1)
    path = tmp_path_factory.mktemp("fuzz") / "model.npz"
    m.save(path)
    return path.read_bytes()


def _load_bytes(tmp_path, data):
    path = tmp_path / "fuzzed.npz"
    path.write_bytes(data)
    with contextlib.suppress(ValueError, OSError):
        pnn.Model.load(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096))
def test_fuzz_random_bytes_only_raise_value_or_os_errors(tmp_path, data):
    _load_bytes(tmp_path, data)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_mutated_valid_files_only_raise_value_or_os_errors(tmp_path, valid_file_bytes, data):
    raw = bytearray(valid_file_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    _load_bytes(tmp_path, bytes(raw))
