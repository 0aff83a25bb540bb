"""Callbacks: EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, your own; eager and compiled."""


import numpy as np
import pytest
from helpers import classifier, data

import portable_nn as pnn
import portable_nn.schedules
from portable_nn.callbacks import Callback, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau


def test_early_stopping_stops_and_restores_the_best_parameters(backend):
    X, y, Xv, yv = data(backend)
    m = classifier()
    stop = EarlyStopping(patience=3)
    seen = []

    class Record(Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append((epoch, logs["val_loss"], self.model.get_parameters()))

    history = m.train(X, y, epochs=500, batch_size=32, validation_data=(Xv, yv), verbose=False,
                      callbacks=[stop, Record()], seed=0)
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
    m.train(X, y, epochs=6, batch_size=32, validation_data=(Xv, yv), verbose=False, callbacks=[check, plateau], seed=0)
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
    history = m.train(X, y, epochs=50, batch_size=64, seed=0, print_every=1000, verbose=False,
                      callbacks=[StopAtThree()])
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
        h = m.train(X, y, epochs=300, batch_size=32, seed=0, validation_data=(Xv, yv), verbose=False,
                    callbacks=[stop, plateau], compile=mode)
        runs.append((h.loss, stop.stopped_epoch, plateau.reductions, backend.to_numpy(m.layers[0].weight)))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-10)
    assert runs[0][1:3] == runs[1][1:3]
    np.testing.assert_allclose(runs[0][3], runs[1][3], rtol=1e-10, atol=1e-13)


def test_auto_mode_takes_the_direction_the_figure_or_metric_declares(backend):
    assert EarlyStopping("val_f1").mode == "max" and ModelCheckpoint("x.npz", "val_precision").mode == "max"
    assert ReduceLROnPlateau("val_recall").mode == "max" and EarlyStopping("top_k_accuracy").mode == "max"
    assert EarlyStopping("val_mae").mode == "min" and EarlyStopping("loss").mode == "min"
    assert EarlyStopping("val_accuracy").mode == "max" and EarlyStopping("val_f1_1").mode == "max"
    with pytest.raises(ValueError, match=r"mode='auto' cannot tell whether 'val_auc' should go up or down"):
        EarlyStopping("val_auc")
    assert EarlyStopping("val_auc", mode="max").mode == "max"
    # end to end: EarlyStopping on val_f1 keeps the epoch with the highest F1, as the metric is better higher
    X, y, Xv, yv = data(backend)
    m = classifier()
    stop = EarlyStopping("val_f1", patience=3)
    history = m.train(X, y, epochs=12, validation_data=(Xv, yv), metrics=[pnn.metrics.F1()], callbacks=[stop],
                      verbose=False)
    assert stop.best == max(history.metrics["val_f1"])


def test_model_checkpoint_formats_its_path_with_the_epochs_figures(backend, tmp_path):
    X, y, Xv, yv = data(backend)
    pattern = str(tmp_path / "ck-{epoch:02d}-{val_loss:.3f}.npz")
    checkpoint = ModelCheckpoint(pattern, save_best_only=False)
    history = classifier().train(X, y, epochs=2, validation_data=(Xv, yv), callbacks=[checkpoint], verbose=False)
    assert [p.split("/")[-1] for p in checkpoint.saved] == [f"ck-{e:02d}-{v:.3f}.npz" for e, v in
                                                            zip(history.epoch, history.val_loss, strict=True)]
    for bad, message in (("ck-{epoch", "is not a valid pattern"), ("ck-{}.npz", "positional field"),
                         ("ck-{0}.npz", "positional field"), ("ck-{epoch:.2q}.npz", "is not a valid pattern")):
        with pytest.raises(ValueError, match=message):
            ModelCheckpoint(bad)
    missing = ModelCheckpoint(str(tmp_path / "ck-{val_f1:.2f}.npz"), monitor="loss")
    with pytest.raises(ValueError, match=r"names \['val_f1'\], which are not among this run's figures"):
        classifier().train(X, y, epochs=1, callbacks=[missing], verbose=False)


@pytest.mark.only_xp_backends("dask", reason="the model moves back to Dask after streaming")
def test_early_stopping_restores_batchnorm_statistics_where_the_model_lives(backend):
    """Dask + BatchNorm + EarlyStopping(restore_best): the restored running statistics are Dask arrays like
    the parameters (they were the streamed blocks' NumPy arrays, and predict raised)."""
    X, y, Xv, yv = data(backend)
    m = pnn.Model().add(pnn.Dense(2, 16, seed=0, dtype="float64")).add(pnn.BatchNorm(16, dtype="float64"))
    m.add(pnn.ReLU()).add(pnn.Dense(16, 3, seed=1, dtype="float64")).add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.SGD(0.1)).finalize()
    stop = EarlyStopping("val_loss", patience=1)
    m.train(X, y, epochs=6, batch_size=32, validation_data=(Xv, yv), callbacks=[stop], verbose=False, seed=0)
    for value in m.network.buffer_values():
        assert type(value) is type(m.layers[0].weight), type(value)
    assert tuple(m.predict(X).compute().shape) == (180, 3)


# -- the same decisions as Keras 3, epoch by epoch -----------------------------------------------------------

def keras_callbacks():
    import os

    os.environ.setdefault("KERAS_BACKEND", "numpy")  # the callbacks' logic only: no training backend needed
    keras = pytest.importorskip("keras")
    return keras.callbacks


class _Optimizer:
    def __init__(self, rate):
        self.learning_rate = self.current_learning_rate = rate


class _Model:
    """What the callbacks touch: Keras's stop flag and optimizer rate, our optimizer's two rates."""

    def __init__(self, rate=0.1):
        self.stop_training = False
        self.optimizer = _Optimizer(rate)


def sequences():
    rng = np.random.default_rng(0)
    out = [[1.0, 0.9, 0.8, 0.95, 0.7, 0.71, 0.72, 0.69, 0.9, 0.9], [0.5] * 8, [float("nan"), 0.4, 0.3, 0.5, 0.6],
           [0.4, float("nan"), 0.3, 0.3, 0.31, float("nan"), 0.2, 0.25, 0.26, 0.27, 0.28]]
    out += [list(np.round(rng.uniform(0, 1, size=12).cumsum() * rng.choice([-1, 1]), 3)) for _ in range(20)]
    out += [list(np.round(rng.uniform(0, 1, size=15), 2)) for _ in range(20)]
    return out


EARLY = [{"patience": 0}, {"patience": 2}, {"patience": 3, "min_delta": 0.05}, {"patience": 2, "min_delta": -0.05},
         {"patience": 1, "baseline": 0.5}, {"patience": 2, "start_from_epoch": 3}, {"patience": 2, "mode": "max"},
         {"patience": 1, "mode": "max", "baseline": 0.6, "min_delta": 0.01}]


def both(theirs, ours):
    """Keras's callback and ours, each with its model, at the start of training."""
    for callback in (theirs, ours):
        callback.set_model(_Model())
        callback.on_train_begin()
    return theirs, ours


@pytest.mark.parametrize("options", EARLY, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_early_stopping_decides_as_keras(options):
    keras = keras_callbacks()
    for values in sequences():
        theirs, ours = both(keras.EarlyStopping(monitor="val_loss", **options),
                            EarlyStopping("val_loss", restore_best=False, **options))
        for epoch, value in enumerate(values):
            theirs.on_epoch_end(epoch, {"val_loss": value})
            stop = bool(ours.on_epoch_end(epoch + 1, {"val_loss": value}))
            assert stop == theirs.model.stop_training, (values, epoch)
            assert ours.wait == theirs.wait, (values, epoch)
            if stop:
                break
        assert (ours.stopped_epoch or 1) - 1 == theirs.stopped_epoch


REDUCE = [{"patience": 1}, {"patience": 2, "cooldown": 2}, {"patience": 1, "factor": 0.5, "min_lr": 0.02},
          {"patience": 0, "cooldown": 1}, {"patience": 2, "min_delta": -0.1, "mode": "max"},
          {"patience": 3, "min_delta": 0.0}]


@pytest.mark.parametrize("options", REDUCE, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_reduce_lr_on_plateau_decides_as_keras(options):
    keras = keras_callbacks()
    for values in sequences():
        theirs, ours = both(keras.ReduceLROnPlateau(monitor="val_loss", **options),
                            ReduceLROnPlateau("val_loss", **options))
        for epoch, value in enumerate(values):
            theirs.on_epoch_end(epoch, {"val_loss": value})
            ours.on_epoch_end(epoch + 1, {"val_loss": value})
            assert ours.model.optimizer.current_learning_rate == pytest.approx(
                float(theirs.model.optimizer.learning_rate), rel=1e-12), (values, epoch)


def test_callbacks_say_what_they_do(backend, capsys):
    X, y, Xv, yv = data(backend)
    # mode="max" on a falling validation loss: no improvement after the first epoch, both act at epoch 2
    stop = EarlyStopping("val_loss", patience=1, mode="max", verbose=True)
    reduce = ReduceLROnPlateau("val_loss", patience=0, factor=0.5, mode="max", verbose=True)
    classifier().train(X, y, epochs=30, validation_data=(Xv, yv), callbacks=[reduce, stop], verbose=False)
    out = capsys.readouterr().out
    assert "EarlyStopping: stopped at epoch 2, restored epoch 1" in out
    assert "ReduceLROnPlateau: learning rate 0.05 -> 0.025 at epoch 2" in out
