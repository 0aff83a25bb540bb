"""Model files: round trips (also across backends), no pickle, atomic writes, clear errors."""

import contextlib
import io
import os
import pickle
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import portable_nn as pnn
from portable_nn.datasets import sine_data, spiral_data


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


def numpy_model():
    m, _, _ = trained_model(type("B", (), {"asarray": staticmethod(lambda a, dtype=None: np.asarray(a))}), epochs=1)
    return m


def test_save_follows_a_symlink_and_keeps_the_files_mode(tmp_path):
    m = numpy_model()
    target = tmp_path / "real.npz"
    m.save(target)
    os.chmod(target, 0o644)
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    m.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)  # the link stays a link
    assert (target.stat().st_mode & 0o777) == 0o644
    pnn.Model.load(link)
    fresh = tmp_path / "new.npz"
    m.save(fresh)
    umask = os.umask(0o022)
    os.umask(umask)
    assert (fresh.stat().st_mode & 0o777) == 0o666 & ~umask


def test_save_refuses_what_is_not_a_regular_file(tmp_path):
    m = numpy_model()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match=f"cannot write {fifo}: not a regular file"):
        m.save(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        m.save(tmp_path)  # a folder
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_later_save_removes_temporaries_a_killed_writer_left(tmp_path):
    m = numpy_model()
    path = tmp_path / "model.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()  # a process id that has exited
    stale = tmp_path / f".model.npz.portable_nn-{dead}-abcd.tmp"
    stale.write_bytes(b"x" * 1000)
    other = tmp_path / f".other.npz.portable_nn-{dead}-abcd.tmp"  # another target's: not ours to remove
    other.write_bytes(b"y")
    m.save(path)
    assert not stale.exists() and other.exists() and path.exists()


def test_reading_is_bounded(tmp_path):
    m = numpy_model()
    path = tmp_path / "model.npz"
    m.save(path)
    with pytest.raises(ValueError, match="more than the limit of 100 .pass max_bytes= to allow it."):
        pnn.Model.load(path, max_bytes=100)
    with pytest.raises(OSError, match="not a regular file"):
        pnn.Model.load("/dev/zero")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):  # no hang waiting for a writer
        pnn.Model.load(fifo)


def test_a_member_that_inflates_past_the_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("__portable_nn__.npy", b"\0" * (4 << 20))  # 4 MiB of zeros: a few KiB on disk
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match="inflate to 4194304 bytes, more than the limit of 1000000"):
        pnn.Model.load(path, max_bytes=1_000_000)


def test_declared_sizes_are_checked_before_any_weight_is_drawn(tmp_path):
    import json

    m = numpy_model()
    path = tmp_path / "model.npz"
    m.save(path)
    with np.load(path) as f:
        content = {k: f[k] for k in f.files}
    header = json.loads(content["__portable_nn__"].tobytes())
    header["layers"][0]["config"].update(n_inputs=10**6, n_neurons=10**6)
    content["__portable_nn__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **content)
    with pytest.raises(ValueError, match=r"declares 1000000\d+ weights but the file stores \d+ values"):
        pnn.Model.load(path)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**400), 10**400) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["version", "kind", "format", "layers", "loss", "optimizer", "arrays", "n_inputs",
                              "n_neurons", "iterations", "dtype", "rate", "metadata"]), value=JSON_VALUES)
def test_fuzz_header_fields_only_raise_value_or_os_errors_quickly(tmp_path, valid_file_bytes, field, value):
    """Any JSON value in any header field: a ValueError/OSError or a model, in bounded time and memory."""
    import json

    path = tmp_path / "fuzzed.npz"
    path.write_bytes(valid_file_bytes)
    with np.load(path) as f:
        content = {k: f[k] for k in f.files}
    header = json.loads(content["__portable_nn__"].tobytes())
    if field in ("n_inputs", "n_neurons", "dtype"):
        header["layers"][0]["config"][field] = value
    elif field == "rate":
        header["layers"][2]["config"][field] = value
    elif field == "iterations":
        header["optimizer"][field] = value
    else:
        header[field] = value
    try:
        encoded = json.dumps(header).encode()
    except (ValueError, OverflowError):
        return  # not JSON at all (e.g. an integer too long to print): nothing to write
    content["__portable_nn__"] = np.frombuffer(encoded, dtype=np.uint8)
    np.savez(path, **content)
    with contextlib.suppress(ValueError, OSError):
        pnn.Model.load(path)


def test_a_failed_save_names_the_users_path(tmp_path):
    target = tmp_path / "missing" / "model.npz"
    with pytest.raises(OSError, match=f"cannot write {target}: No such file or directory") as info:
        numpy_model().save(target)
    assert ".tmp" not in str(info.value)


def test_metadata_round_trips_and_must_be_json(tmp_path):
    m = numpy_model()
    m.metadata.update(dataset="digits", note={"epochs": [1, 2]})
    path = tmp_path / "m.npz"
    m.save(path)
    assert pnn.Model.load(path).metadata == {"dataset": "digits", "note": {"epochs": [1, 2]}}
    for bad in ({"x": float("nan")}, {"x": np.float32(1)}, {1: "a"}):
        m.metadata = bad
        with pytest.raises(TypeError, match="Model.save: metadata must"):
            m.save(tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()  # refused before anything is written
    m.metadata = {"x": "y" * 70000}
    with pytest.raises(ValueError, match="at most 65536"):
        m.save(tmp_path / "big.npz")


def test_the_new_pieces_train_save_and_load(backend, tmp_path):
    X, y = spiral_data(50, 3, seed=0)
    m = pnn.Model().add(pnn.Dense(2, 32, seed=0, initializer="he_uniform")).add(pnn.LayerNorm(32)).add(pnn.GELU())
    m.add(pnn.Dense(32, 3, seed=1)).add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.05)).finalize()
    h = m.train(backend.asarray(X), backend.asarray(y), epochs=200, verbose=False)
    assert np.mean(h.loss[-5:]) < 0.85 * h.loss[0]  # 0.79 from 1.10 at 200 epochs
    m.save(tmp_path / "m.npz")
    loaded = pnn.Model.load(tmp_path / "m.npz")
    np.testing.assert_allclose(loaded.predict(X.astype(np.float32)), backend.to_numpy(m.predict(backend.asarray(X))),
                               rtol=1e-5, atol=1e-6)
    Xs, ys = sine_data(100)
    r = pnn.Model().add(pnn.Dense(1, 16, seed=0)).add(pnn.GELU()).add(pnn.Dense(16, 1, seed=1)).add(pnn.Linear())
    r.set(loss=pnn.HuberLoss(0.5), optimizer=pnn.Adam(0.01)).finalize()
    hr = r.train(backend.asarray(Xs), backend.asarray(ys), epochs=100, verbose=False)
    assert np.mean(hr.loss[-5:]) < 0.5 * hr.loss[0]


def rewritten(tmp_path, change):
    """A valid model file whose JSON header ``change(header)`` edited."""
    import json

    m = numpy_model()
    m.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays["__portable_nn__"].tobytes())
    change(header)
    arrays["__portable_nn__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "edited.npz", **arrays)
    return tmp_path / "edited.npz"


def test_a_file_from_a_newer_version_says_so(tmp_path):
    path = rewritten(tmp_path, lambda h: h.update(version=2))
    with pytest.raises(ValueError, match=r"saved by a newer version of portable_nn \(format 2\); this is format 1"):
        pnn.Model.load(path)


def test_an_unknown_layer_lists_only_the_classes_a_file_may_name(tmp_path):
    path = rewritten(tmp_path, lambda h: h["layers"][0].update(type="Conv3D"))
    with pytest.raises(ValueError, match=r"unknown layer .*Conv3D.*; known: \[") as info:
        pnn.Model.load(path)
    known = str(info.value).split("known: ")[1]
    assert "'Dense'" in known and "'ReLU'" in known and "'BatchNorm'" in known
    for base in ("ParametricLayer", "Activation", "_Normalization", "Layer'"):
        assert base not in known
    with pytest.raises(ValueError, match="unknown layer"):
        pnn.Model.load(rewritten(tmp_path, lambda h: h["layers"][1].update(type="Activation", config={})))
