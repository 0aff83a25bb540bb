"""Optimizers against a step-by-step float64 reference written from the book's formulas."""

import math

import numpy as np
import pytest
from helpers import same_column_sums

import portable_nn as pnn
from portable_nn.datasets import spiral_data

RNG = np.random.default_rng(11)
STEPS = 6


def reference(name, cfg, params, grads_per_step):
    """The book's update rules, in plain NumPy float64, one step at a time."""
    params = {k: v.copy() for k, v in params.items()}
    state = {k: {"m": np.zeros_like(v), "c": np.zeros_like(v)} for k, v in params.items()}
    lr0, decay = cfg["learning_rate"], cfg.get("decay", 0.0)
    out = []
    for it, grads in enumerate(grads_per_step):
        lr = lr0 * (1.0 / (1.0 + decay * it))
        for k, g in grads.items():
            p, s = params[k], state[k]
            if name == "SGD":
                mom = cfg.get("momentum", 0.0)
                if mom:
                    s["m"] = mom * s["m"] - lr * g
                    p = p + s["m"]
                else:
                    p = p - lr * g
            elif name == "Adagrad":
                s["c"] = s["c"] + g**2
                p = p - lr * g / (np.sqrt(s["c"]) + cfg.get("epsilon", 1e-7))
            elif name == "RMSprop":
                rho = cfg.get("rho", 0.9)
                s["c"] = rho * s["c"] + (1 - rho) * g**2
                p = p - lr * g / (np.sqrt(s["c"]) + cfg.get("epsilon", 1e-7))
            elif name == "Adam":
                b1, b2, eps = cfg.get("beta_1", 0.9), cfg.get("beta_2", 0.999), cfg.get("epsilon", 1e-7)
                wd = cfg.get("weight_decay", 0.0)
                p = p - lr * wd * p
                s["m"] = b1 * s["m"] + (1 - b1) * g
                s["c"] = b2 * s["c"] + (1 - b2) * g**2
                m_hat = s["m"] / (1 - b1 ** (it + 1))
                c_hat = s["c"] / (1 - b2 ** (it + 1))
                p = p - lr * m_hat / (np.sqrt(c_hat) + eps)
            params[k] = p
        out.append({k: v.copy() for k, v in params.items()})
    return out


CASES = [
    ("SGD", {"learning_rate": 1.0}),
    ("SGD", {"learning_rate": 0.5, "decay": 0.1, "momentum": 0.9}),
    ("Adagrad", {"learning_rate": 1.0, "decay": 1e-2}),
    ("RMSprop", {"learning_rate": 0.02, "decay": 1e-3, "rho": 0.95}),
    ("Adam", {"learning_rate": 0.05, "decay": 5e-3}),
    ("Adam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99, "weight_decay": 0.1}),
]


@pytest.mark.parametrize("name, cfg", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_optimizer_matches_reference_step_by_step(backend, name, cfg):
    layer = pnn.Dense(3, 4, seed=0, dtype="float64", weight_scale=1.0)
    layer.bias = RNG.standard_normal((1, 4))
    start = {"weight": layer.weight.copy(), "bias": layer.bias.copy()}
    layer.forward(backend.asarray(np.zeros((1, 3))))  # placement on the backend
    grads = [{"weight": RNG.standard_normal((3, 4)), "bias": RNG.standard_normal((1, 4))} for _ in range(STEPS)]
    expected = reference(name, cfg, start, grads)
    opt = getattr(pnn, name)(**cfg)
    for step in range(STEPS):
        layer.dweight, layer.dbias = backend.asarray(grads[step]["weight"]), backend.asarray(grads[step]["bias"])
        opt.pre_update_params()
        assert opt.current_learning_rate == pytest.approx(cfg["learning_rate"] / (1 + cfg.get("decay", 0) * step))
        opt.update_params(layer)
        opt.post_update_params()
        backend.assert_close(layer.weight, expected[step]["weight"], rtol=1e-12, atol=1e-14)
        backend.assert_close(layer.bias, expected[step]["bias"], rtol=1e-12, atol=1e-14)
    assert opt.iterations == STEPS


@pytest.mark.only_xp_backends("torch", reason="a reference implementation in PyTorch (the session that has it)")
def test_adam_matches_pytorch_adamw():
    torch = pytest.importorskip("torch")
    w0 = RNG.standard_normal((3, 4))
    grads = [RNG.standard_normal((3, 4)) for _ in range(STEPS)]
    p = torch.nn.Parameter(torch.tensor(w0))
    ref = torch.optim.AdamW([p], lr=0.01, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.1)
    layer = pnn.Dense(3, 4, dtype="float64")
    layer.weight = w0.copy()
    layer.bias = np.zeros((1, 4))
    opt = pnn.Adam(learning_rate=0.01, weight_decay=0.1)
    for g in grads:
        p.grad = torch.tensor(g)
        ref.step()
        layer.dweight, layer.dbias = g, np.zeros((1, 4))
        opt.pre_update_params()
        opt.update_params(layer)
        opt.post_update_params()
    np.testing.assert_allclose(layer.weight, p.detach().numpy(), rtol=1e-12)


def test_optimizer_state_lives_with_the_parameters(backend, xp):
    from array_api_compat import array_namespace, device

    layer = pnn.Dense(2, 2, dtype="float64")
    layer.forward(backend.asarray(np.ones((1, 2))))
    layer.backward(backend.asarray(np.ones((1, 2))))
    opt = pnn.Adam()
    opt.update_params(layer)
    for name in ("weight_momentum", "weight_cache", "bias_momentum", "bias_cache", "weight", "bias"):
        value = getattr(layer, name)
        assert array_namespace(value) is xp and device(value) == device(layer.dweight), name


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (pnn.SGD, {"learning_rate": -1.0}, "SGD: learning_rate must be a finite number > 0"),
        (pnn.SGD, {"momentum": 1.0}, r"SGD: momentum must be in \[0, 1\)"),
        (pnn.Adam, {"learning_rate": math.inf}, "Adam: learning_rate must be a finite number > 0"),
        (pnn.Adam, {"beta_2": 1.5}, r"Adam: beta_2 must be in \[0, 1\)"),
        (pnn.Adam, {"weight_decay": -0.1}, "Adam: weight_decay must be a finite number >= 0"),
        (pnn.RMSprop, {"decay": -1e-3}, "RMSprop: decay must be a finite number >= 0"),
        (pnn.Adagrad, {"epsilon": 0.0}, "Adagrad: epsilon must be a finite number > 0"),
    ],
)
def test_optimizer_rejects_bad_hyperparameters(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_book_defaults():
    assert pnn.SGD().learning_rate == 1.0 and pnn.Adagrad().learning_rate == 1.0
    assert (pnn.RMSprop().learning_rate, pnn.RMSprop().rho, pnn.RMSprop().epsilon) == (0.001, 0.9, 1e-7)
    a = pnn.Adam()
    assert (a.learning_rate, a.beta_1, a.beta_2, a.epsilon, a.decay) == (0.001, 0.9, 0.999, 1e-7, 0.0)


@pytest.mark.parametrize("name, cfg", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_fast_path_equals_reference_path(backend, name, cfg):
    """update_all (flat buffers / fused kernels where the backend allows) == update_params per layer."""
    def make():
        layers = [pnn.Dense(3, 4, seed=0, dtype="float64", weight_scale=1.0),
                  pnn.Dense(4, 2, seed=1, dtype="float64", weight_scale=1.0)]
        for layer in layers:
            layer.forward(backend.asarray(np.zeros((1, layer.n_inputs))))
        return layers

    fast, ref = make(), make()
    opt_fast, opt_ref = getattr(pnn, name)(**cfg), getattr(pnn, name)(**cfg)
    rng = np.random.default_rng(5)
    for _ in range(STEPS):
        for a, b in zip(fast, ref, strict=False):
            gw, gb = rng.standard_normal(a.weight.shape), rng.standard_normal(a.bias.shape)
            a.dweight, a.dbias = backend.asarray(gw), backend.asarray(gb)
            b.dweight, b.dbias = backend.asarray(gw), backend.asarray(gb)
        opt_fast.pre_update_params()
        opt_ref.pre_update_params()
        with pnn.fast_paths(True):
            opt_fast.update_all(fast)
        for layer in ref:
            opt_ref.update_params(layer)
        opt_fast.post_update_params()
        opt_ref.post_update_params()
        for a, b in zip(fast, ref, strict=False):
            backend.assert_close(a.weight, backend.to_numpy(b.weight), rtol=1e-12, atol=1e-15)
            backend.assert_close(a.bias, backend.to_numpy(b.bias), rtol=1e-12, atol=1e-15)
            for s in opt_ref.state_names:
                backend.assert_close(getattr(a, f"weight_{s}"), backend.to_numpy(getattr(b, f"weight_{s}")),
                                     rtol=1e-12, atol=1e-15)


def test_fast_path_never_mutates_a_users_array_and_follows_reassignment():
    layer = pnn.Dense(2, 2, dtype="float64")
    mine = np.array([[1.0, 2.0], [3.0, 4.0]])
    layer.weight = mine
    layer.forward(np.ones((1, 2)))
    layer.backward(np.ones((1, 2)))
    opt = pnn.SGD(learning_rate=0.5)
    with pnn.fast_paths(True):
        opt.update_all([layer])
        assert opt._flat is not None
        np.testing.assert_array_equal(mine, [[1.0, 2.0], [3.0, 4.0]])  # untouched
        np.testing.assert_array_equal(layer.weight, mine - 0.5)
        # a new assignment is picked up by the next update (the flat buffer is rebuilt)
        layer.weight = np.zeros((2, 2))
        opt.update_all([layer])
    np.testing.assert_array_equal(layer.weight, np.full((2, 2), -0.5))


def test_fast_paths_can_be_switched_off():
    layer = pnn.Dense(2, 2, dtype="float64")
    layer.forward(np.ones((1, 2)))
    layer.backward(np.ones((1, 2)))
    with pnn.fast_paths(False):
        opt = pnn.Adam()
        opt.update_all([layer])
        assert opt._flat is None
    with pnn.fast_paths(True):
        opt = pnn.Adam()
        opt.update_all([layer])
    assert opt._flat is not None and all(p.owner is opt._flat for p in layer.parameters())
    before = pnn.fast_paths_enabled()
    pnn.set_fast_paths(not before)  # the process-wide switch, and the old module name of it
    try:
        from portable_nn import backend_kernels

        assert backend_kernels.fast_paths_enabled() is not before
    finally:
        pnn.set_fast_paths(before)


@pytest.mark.parametrize("direct", [None, 8], ids=["copied", "direct"])
@pytest.mark.parametrize("name, cfg", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_float32_kernels_agree_with_the_reference_for_200_steps(backend, name, cfg, direct, monkeypatch):
    """A kernel computes the reference formula in the same order: float32 runs stay together.  The gradients
    it reads are copied into the flat buffer, or (``direct``) the weight's are read where they are, and left
    as they were."""
    from portable_nn.kernels import numpy as numpy_kernels

    monkeypatch.setattr(numpy_kernels, "CHUNK", 7)  # 24 parameters: three full chunks and a partial one
    monkeypatch.setattr(numpy_kernels, "DIRECT", direct)  # 8: the weight (20) read directly, the bias (4) copied
    rng = np.random.default_rng(3)
    w0, b0 = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((1, 4)).astype(np.float32)
    grads = [(rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((1, 4)).astype(np.float32))
             for _ in range(backend.epochs(200))]  # the kernels run on NumPy and CuPy: fewer steps on Dask
    runs = []
    for enabled in (True, False):
        layer = pnn.Dense(5, 4)
        layer.weight, layer.bias = backend.asarray(w0), backend.asarray(b0)
        opt = getattr(pnn, name)(**cfg)
        with pnn.fast_paths(enabled):
            for gw, gb in grads:
                layer.dweight, layer.dbias = backend.asarray(gw), backend.asarray(gb)
                opt.pre_update_params()
                opt.update_all([layer])
                opt.post_update_params()
                backend.assert_close(layer.dweight, gw, rtol=0, atol=0)  # read, not consumed
                backend.assert_close(layer.dbias, gb, rtol=0, atol=0)
        runs.append(layer)
    fast, ref = runs
    backend.assert_close(fast.weight, backend.to_numpy(ref.weight), rtol=1e-5, atol=1e-6)
    backend.assert_close(fast.bias, backend.to_numpy(ref.bias), rtol=1e-5, atol=1e-6)


def test_a_copied_or_pickled_model_keeps_training():
    """Copies hold their own arrays, not views into the original's flat buffer: the copy's updates land."""
    import copy
    import pickle

    from portable_nn.datasets import spiral_data

    X, y = spiral_data(20, 3, seed=0)
    m = pnn.Model().add(pnn.Dense(2, 8, seed=0)).add(pnn.ReLU()).add(pnn.Dense(8, 3, seed=1)).add(pnn.Softmax())
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(learning_rate=0.01)).finalize()
    with pnn.fast_paths(True):
        m.train(X, y, epochs=2, verbose=False)
        for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
            before = clone.layers[0].weight.copy()
            clone.train(X, y, epochs=2, verbose=False)
            assert not np.array_equal(clone.layers[0].weight, before)
            assert clone.optimizer.iterations == 4
            np.testing.assert_array_equal(clone.layers[0].weight, clone.network.parameters()[0].value)


@pytest.mark.only_xp_backends("numpy", reason="the NumPy kernels' flat buffers")
@pytest.mark.parametrize(("batch_size", "double"), [(None, True), (10, False)])
def test_the_kernels_double_buffer_where_the_guard_would_copy_often(backend, batch_size, double, monkeypatch):
    """Full batch (one step an epoch): each update goes to a second buffer and the guard keeps the step before
    by reference; mini-batches of 9 steps: in place, a copy at each epoch's start.  Both equal the portable rule
    to the bit, and the arrays of the step before stay intact in the double-buffered run."""
    X, y = spiral_data(30, 3, seed=5)
    results, modes = {}, []
    same_column_sums(monkeypatch)
    for fast in (True, False):
        m = pnn.Model().add(pnn.Dense(2, 16, seed=0)).add(pnn.ReLU()).add(pnn.Dense(16, 3, seed=1))
        m.add(pnn.Softmax()).set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.02)).finalize()
        before: list[tuple[np.ndarray, np.ndarray]] = []

        def look(info, m=m, fast=fast, before=before):
            flat = m.optimizer._flat
            if fast and flat is not None:
                modes.append(flat.double_buffered)
                if before:  # the step before's array, held by reference: intact only where double-buffered
                    reference, copy = before[-1]
                    assert np.array_equal(reference, copy) == double
                before.append((m.layers[0].weight, np.array(m.layers[0].weight)))

        with pnn.fast_paths(fast):
            m.train(X, y, epochs=6, batch_size=batch_size, seed=0, verbose=False, callback=look)
        results[fast] = [np.array(p.value) for p in m.network.parameters()]
    assert set(modes) == {double}
    for a, b in zip(results[True], results[False], strict=True):
        np.testing.assert_array_equal(a, b)
