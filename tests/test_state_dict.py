"""Weights that travel: Model.save_weights/load_weights in safetensors files with PyTorch's state_dict keys and
layouts (``nn.Sequential`` positions, ``(out, in)`` Linear weights), checked against PyTorch itself."""

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.datasets import spiral_data

safetensors = pytest.importorskip("safetensors")


def mlp(seed=0, batchnorm=False):
    m = pnn.Model().add(pnn.Dense(2, 16, seed=seed, dtype="float64")).add(pnn.ReLU())
    if batchnorm:
        m.add(pnn.BatchNorm(16, dtype="float64"))
    m.add(pnn.Dropout(0.1, seed=1)).add(pnn.Dense(16, 3, seed=seed + 1, dtype="float64")).add(pnn.Softmax())
    return m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.02)).finalize()


@pytest.mark.parametrize("batchnorm", [False, True])
def test_weights_round_trip_on_every_backend(backend, tmp_path, batchnorm):
    X, y = spiral_data(20, 3, seed=0)
    Xb = backend.asarray(X, dtype=np.float64)
    trained = mlp(batchnorm=batchnorm)
    trained.train(Xb, backend.asarray(y), epochs=5, batch_size=20, verbose=False, seed=0)
    path = tmp_path / "w.safetensors"
    trained.save_weights(path)
    from safetensors.numpy import load_file

    keys = {k: v.shape for k, v in load_file(str(path)).items()}
    # positions as in the nn.Sequential: Linear, ReLU, [BatchNorm1d], Dropout, Linear, Softmax
    expected = {"0.weight": (16, 2), "0.bias": (16,), "3.weight": (3, 16), "3.bias": (3,)} if not batchnorm else \
        {"0.weight": (16, 2), "0.bias": (16,), "2.weight": (16,), "2.bias": (16,), "2.running_mean": (16,),
         "2.running_var": (16,), "2.num_batches_tracked": (), "4.weight": (3, 16), "4.bias": (3,)}
    assert keys == expected
    fresh = mlp(seed=7, batchnorm=batchnorm)
    fresh.load_weights(path)
    backend.assert_close(fresh.predict(Xb), backend.to_numpy(trained.predict(Xb)), rtol=1e-12)


def test_weights_that_do_not_fit_are_one_error_naming_the_key(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "w.safetensors"
    mlp().save_weights(path)
    other = pnn.Model().add(pnn.Dense(2, 8, seed=0)).add(pnn.ReLU()).add(pnn.Dense(8, 3, seed=1)).add(pnn.Softmax())
    other.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.SGD()).finalize()
    with pytest.raises(ValueError, match=r"missing \['2.bias', '2.weight'\], unexpected \['3.bias', '3.weight'\]"):
        other.load_weights(path)
    save_file({"0.weight": np.zeros((16, 3)), "0.bias": np.zeros(16), "3.weight": np.zeros((3, 16)),
               "3.bias": np.zeros(3)}, str(path))
    before = np.array(mlp().layers[0].weight)
    m = mlp()
    with pytest.raises(ValueError, match=r"0.weight has shape \(16, 3\), this model's is \(16, 2\) \(Dense at "
                                         r"position 0\)"):
        m.load_weights(path)
    np.testing.assert_array_equal(m.layers[0].weight, before)  # nothing assigned
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        m.load_weights(tmp_path / "bad.safetensors")


def test_other_paths_save_the_parameters_file(tmp_path):
    m = mlp()
    m.save_weights(tmp_path / "w.npz")
    fresh = mlp(seed=5)
    fresh.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(fresh.layers[3].weight, m.layers[3].weight)


@pytest.mark.only_xp_backends("torch", reason="PyTorch's own nn.Sequential and safetensors.torch")
def test_pytorch_loads_our_weights_and_we_load_pytorchs(backend, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    X, y = spiral_data(20, 3, seed=1)
    ours = mlp(batchnorm=True)
    ours.train(backend.asarray(X, dtype=np.float64), backend.asarray(y), epochs=5, batch_size=20, verbose=False, seed=0)
    ours.save_weights(tmp_path / "ours.safetensors")
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.BatchNorm1d(16),
                              torch.nn.Dropout(0.1), torch.nn.Linear(16, 3), torch.nn.Softmax(dim=1)).double()
    net.load_state_dict(load_file(str(tmp_path / "ours.safetensors")))  # strict: every key, every shape
    net.eval()
    with torch.no_grad():
        theirs = net(torch.asarray(X, dtype=torch.float64)).numpy()
    backend.assert_close(ours.predict(backend.asarray(X, dtype=np.float64)), theirs, rtol=1e-10, atol=1e-12)
    # a PyTorch-trained MLP's file into portable_nn
    torch.manual_seed(0)
    trained = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).double()
    optimizer = torch.optim.Adam(trained.parameters(), lr=0.05)
    Xt, yt = torch.asarray(X, dtype=torch.float64), torch.asarray(y, dtype=torch.int64)
    for _ in range(20):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(trained(Xt), yt).backward()
        optimizer.step()
    save_file(trained.state_dict(), str(tmp_path / "theirs.safetensors"))
    m = pnn.Model().add(pnn.Dense(2, 16, dtype="float64")).add(pnn.ReLU()).add(pnn.Dense(16, 3, dtype="float64"))
    m.add(pnn.Softmax()).set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam()).finalize()
    m.load_weights(tmp_path / "theirs.safetensors")
    with torch.no_grad():
        expected = torch.softmax(trained(Xt), dim=1).numpy()
    backend.assert_close(m.predict(backend.asarray(X, dtype=np.float64)), expected, rtol=1e-10, atol=1e-12)
