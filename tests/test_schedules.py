"""Learning-rate schedules: host and traced rates agree; training follows and saves them; compiled = eager."""


import numpy as np
import pytest
from helpers import classifier, data

import portable_nn as pnn
import portable_nn.schedules

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
        h = m.train(X, y, epochs=8, batch_size=64, seed=0, verbose=False, compile=mode)
        runs.append((h.loss, h.learning_rate, backend.to_numpy(m.layers[0].weight)))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-12)
    assert runs[1][1] == pytest.approx(runs[0][1], rel=1e-15)
    np.testing.assert_allclose(runs[1][2], runs[0][2], rtol=1e-12, atol=1e-14)
