"""The training toolkit (issue 13): callbacks, initializers, gradient clipping, summary."""

import math

import numpy as np
import pytest

import portable_nn as pnn
import portable_nn.schedules
from portable_nn.callbacks import Callback, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from portable_nn.datasets import spiral_data


def classifier(dtype="float64", optimizer=None, initializer="book"):
    m = pnn.Model().add(pnn.Dense(2, 32, seed=0, dtype=dtype, initializer=initializer)).add(pnn.ReLU())
    m.add(pnn.Dense(32, 3, seed=1, dtype=dtype)).add(pnn.Softmax())
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=optimizer or pnn.Adam(0.05)).finalize()


def data(backend):
    X, y = spiral_data(60, 3, seed=0)
    Xv, yv = spiral_data(30, 3, seed=1)
    return (backend.asarray(X, dtype=np.float64), backend.asarray(y), backend.asarray(Xv, dtype=np.float64),
            backend.asarray(yv))


# -- callbacks ----------------------------------------------------------------------------------

def test_early_stopping_stops_and_restores_the_best_parameters(backend):
    X, y, Xv, yv = data(backend)
    m = classifier()
    stop = EarlyStopping(patience=3)
    seen = []

    class Record(Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append((epoch, logs["val_loss"], self.model.get_parameters()))

    history = m.train(X, y, epochs=500, batch_size=32, validation_data=(Xv, yv), verbose=False,
                      callbacks=[stop, Record()])
    assert stop.stopped_epoch == len(history.epoch) < 500  # stopped cleanly, with the History so far
    assert stop.stopped_epoch - stop.best_epoch == 3
    best = min(seen, key=lambda s: s[1])
    assert best[0] == stop.best_epoch and stop.best == pytest.approx(best[1], rel=1e-12)
    for (w, b), (wb, bb) in zip(m.get_parameters(), best[2], strict=True):  # the best epoch's, a real copy
        backend.assert_close(w, backend.to_numpy(wb))
        backend.assert_close(b, backend.to_numpy(bb))
    assert m.evaluate(Xv, yv)[0] == pytest.approx(stop.best, rel=1e-9)


def test_model_checkpoint_keeps_the_best_model_and_lr_plateau_reduces(backend, tmp_path):
    X, y, Xv, yv = data(backend)
    m = classifier()
    check = ModelCheckpoint(tmp_path / "best-{epoch}.npz", monitor="val_accuracy")
    plateau = ReduceLROnPlateau(monitor="loss", patience=0, factor=0.5, min_delta=10.0)  # never "improves"
    m.train(X, y, epochs=6, batch_size=32, validation_data=(Xv, yv), verbose=False, callbacks=[check, plateau])
    assert check.saved and all((tmp_path / p.split("/")[-1]).exists() for p in check.saved)
    best = pnn.Model.load(check.saved[-1])
    assert best.evaluate(np.asarray(backend.to_numpy(Xv)), backend.to_numpy(yv))[1] == pytest.approx(check.best)
    assert [lr for _, lr in plateau.reductions] == [0.05 * 0.5 ** k for k in range(1, 6)]  # epochs 2..6
    assert m.optimizer.current_learning_rate == pytest.approx(0.05 * 0.5 ** 5)


def test_a_callback_that_returns_true_stops_at_that_epoch(backend):
    X, y, _, _ = data(backend)

    class StopAtThree(Callback):
        def on_epoch_end(self, epoch, logs):
            return epoch == 3

    m = classifier()
    history = m.train(X, y, epochs=50, batch_size=64, print_every=1000, verbose=False, callbacks=[StopAtThree()])
    assert history.epoch == [1, 2, 3] and m.optimizer.iterations == 3 * 3


def test_callbacks_are_checked(backend):
    X, y, _, _ = data(backend)
    m = classifier()
    with pytest.raises(ValueError, match=r"EarlyStopping: monitor='val_loss' is not among this run's figures"):
        m.train(X, y, epochs=2, verbose=False, callbacks=[EarlyStopping()])
    with pytest.raises(TypeError, match="callbacks must have on_epoch_end"):
        m.train(X, y, epochs=2, verbose=False, callbacks=[print])
    for make, message in ((lambda: EarlyStopping(patience=-1), "patience must be an integer >= 0"),
                          (lambda: ReduceLROnPlateau(factor=2.0), r"factor must be in \(0, 1\)"),
                          (lambda: EarlyStopping(mode="up"), "mode must be 'auto', 'min' or 'max'")):
        with pytest.raises(ValueError, match=message):
            make()


@pytest.mark.only_xp_backends("jax", reason="callbacks under the compiled step")
def test_callbacks_give_the_same_run_compiled_and_eager(backend):
    X, y, Xv, yv = data(backend)
    runs = []
    for mode in (False, True):
        m = classifier()
        stop = EarlyStopping(patience=2)
        plateau = ReduceLROnPlateau(patience=1, factor=0.5)
        h = m.train(X, y, epochs=300, batch_size=32, validation_data=(Xv, yv), verbose=False,
                    callbacks=[stop, plateau], compile=mode)
        runs.append((h.loss, stop.stopped_epoch, plateau.reductions, backend.to_numpy(m.layers[0].weight)))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-10)
    assert runs[0][1:3] == runs[1][1:3]
    np.testing.assert_allclose(runs[0][3], runs[1][3], rtol=1e-10, atol=1e-13)


# -- initializers -------------------------------------------------------------------------------

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


# -- gradient clipping ----------------------------------------------------------------------------

def test_clipnorm_matches_torch_clip_grad_norm(backend, xp):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((5, 4)) * 3, rng.standard_normal((1, 4)), rng.standard_normal((4, 2)) * 0.1]
    for max_norm in (0.5, 100.0):
        ours = pnn.SGD(clipnorm=max_norm).clip_grads(xp, [backend.asarray(g) for g in grads])
        tensors = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
        for t, g in zip(tensors, grads, strict=True):
            t.grad = torch.asarray(g.copy())
        torch.nn.utils.clip_grad_norm_(tensors, max_norm)
        for a, t in zip(ours, tensors, strict=True):
            backend.assert_close(a, t.grad.numpy(), rtol=1e-13)
    clipped = pnn.Adam(clipvalue=0.5).clip_grads(xp, [backend.asarray(g) for g in grads])
    for a, g in zip(clipped, grads, strict=True):
        backend.assert_close(a, np.clip(g, -0.5, 0.5))


def test_training_with_clipping_takes_clipped_steps(backend):
    """One SGD step with clipnorm: the update is lr times the clipped gradient (global norm over all layers)."""
    X, y, _, _ = data(backend)
    m, ref = classifier(optimizer=pnn.SGD(1.0, clipnorm=1e-3)), classifier(optimizer=pnn.SGD(1.0))
    before = [backend.to_numpy(w) for w, _ in m.get_parameters()]
    with pnn.fast_paths(False):
        ref.train(X, y, epochs=1, verbose=False, compile=False)  # the gradients stay on the layers
    m.train(X, y, epochs=1, verbose=False)
    grads = [backend.to_numpy(p.grad) for p in ref.plan.parameters]
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
    assert norm > 1e-3  # 0.0027: the clip applies
    for (w, _), w0, g in zip(m.get_parameters(), before, grads[::2], strict=True):
        backend.assert_close(w, w0 - g * (1e-3 / (norm + 1e-6)), rtol=1e-9, atol=1e-15)
    assert pnn.SGD(clipnorm=2.0).get_config()["clipnorm"] == 2.0
    with pytest.raises(ValueError, match="clipnorm must be a finite number > 0"):
        pnn.Adam(clipnorm=0)


# -- summary ------------------------------------------------------------------------------------

def test_summary_and_repr(backend):
    m = classifier(dtype="float32", initializer="he_normal")
    text = m.summary()
    assert "Dense(n_inputs=2, n_neurons=32, seed=0, initializer='he_normal')" in text
    assert "(n, 32)" in text and "(n, 3)" in text and "total parameters: 195" in text
    assert "not placed yet" in text
    m.predict(backend.asarray(np.zeros((1, 2), dtype=np.float32)))
    assert "placed on: " in m.summary()
    assert repr(m).count("\n") == 0 and "loss=CategoricalCrossentropy()" in repr(m)


# -- learning-rate schedules ------------------------------------------------------------------------

SCHEDULES = [pnn.schedules.InverseTimeDecay(0.01), pnn.schedules.ExponentialDecay(0.5, 10),
             pnn.schedules.StepDecay(0.5, 4), pnn.schedules.CosineDecay(20, warmup_steps=5, final_fraction=0.1),
             pnn.schedules.CosineDecay(12)]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_a_schedule_gives_the_same_rates_on_the_host_and_traced_on_the_device(backend, xp, schedule):
    for t in (0, 1, 3, 4, 5, 9, 19, 20, 30):
        host = schedule(0.1, t)
        traced = schedule(0.1, xp.asarray(float(t), dtype=xp.float64), xp)
        assert float(backend.to_numpy(traced)) == pytest.approx(host, rel=1e-14, abs=1e-17), t
    if isinstance(schedule, pnn.schedules.CosineDecay) and schedule.warmup_steps:
        assert schedule(0.1, 0) == pytest.approx(0.1 / 5) and schedule(0.1, 4) == pytest.approx(0.1)
        assert schedule(0.1, 25) == pytest.approx(0.01)


def test_training_follows_the_schedule_and_saves_it(backend, tmp_path):
    X, y, _, _ = data(backend)
    schedule = pnn.schedules.CosineDecay(12, warmup_steps=3)
    m = classifier(optimizer=pnn.SGD(0.5, schedule=schedule))
    h = m.train(X, y, epochs=12, verbose=False)  # full batch: a step an epoch
    assert h.learning_rate == pytest.approx([schedule(0.5, t) for t in range(12)], rel=1e-12)
    m.save(tmp_path / "m.npz")
    loaded = pnn.Model.load(tmp_path / "m.npz").optimizer
    assert loaded.schedule.get_config() == schedule.get_config() and loaded.iterations == 12
    with pytest.raises(ValueError, match="give decay or a schedule, not both"):
        pnn.Adam(0.1, decay=0.1, schedule=schedule)
    with pytest.raises(ValueError, match="warmup_steps must be an integer in"):
        pnn.schedules.CosineDecay(10, warmup_steps=10)


@pytest.mark.only_xp_backends("jax", "torch", reason="a schedule traced inside the compiled step")
def test_a_schedule_under_compile_equals_eager(backend):
    X, y, _, _ = data(backend)
    runs = []
    for mode in (False, True):
        m = classifier(optimizer=pnn.Adam(0.05, schedule=pnn.schedules.StepDecay(0.5, 3)))
        h = m.train(X, y, epochs=8, batch_size=64, verbose=False, compile=mode)
        runs.append((h.loss, h.learning_rate, backend.to_numpy(m.layers[0].weight)))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-12)
    assert runs[1][1] == pytest.approx(runs[0][1], rel=1e-15)
    np.testing.assert_allclose(runs[1][2], runs[0][2], rtol=1e-12, atol=1e-14)


# -- validation_split ----------------------------------------------------------------------------

def test_validation_split_holds_out_the_last_rows(backend):
    X, y, _, _ = data(backend)  # 180 rows
    a, b = classifier(), classifier()
    ha = a.train(X, y, epochs=3, batch_size=32, validation_split=0.25, verbose=False)
    hb = b.train(X[:135, ...], y[:135, ...], epochs=3, batch_size=32, validation_data=(X[135:, ...], y[135:, ...]),
                 verbose=False)
    np.testing.assert_allclose(ha.val_loss, hb.val_loss, rtol=1e-12)
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-12)
    for bad in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="validation_split must leave rows on both sides"):
            a.train(X, y, validation_split=bad, verbose=False)
    with pytest.raises(ValueError, match="give validation_data or validation_split, not both"):
        a.train(X, y, validation_split=0.2, validation_data=(X, y), verbose=False)
