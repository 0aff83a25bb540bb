"""onnxruntime time of portable_nn's ONNX export against PyTorch's export of the same network.

    python -m benchmarks.onnx                 # batch 1, 64, 1024; one onnxruntime thread
    python -m benchmarks.onnx --rounds 9

The network is the benchmarks' mnist MLP (784-128-10, softmax) and a deeper one (784-256-128-64-10), with the
same weights in both files (PyTorch's from ``model.save_weights``: the state_dict layout).  Both sessions run
interleaved, round after round, in the same process; the table shows the median microseconds per call and the
ratio.  Also printed: each graph's operators.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import portable_nn as pnn

NETWORKS = {"mnist": [784, 128, 10], "deep": [784, 256, 128, 64, 10]}
BATCHES = (1, 64, 1024)


def models(sizes: list[int], folder: Path) -> tuple[Path, Path, list[str], list[str]]:
    import onnx
    import safetensors.torch
    import torch

    m = pnn.Model()
    modules: list[torch.nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        m.add(pnn.Dense(n_in, n_out, seed=i, initializer="he_normal")).add(pnn.Softmax() if last else pnn.ReLU())
        modules += [torch.nn.Linear(n_in, n_out), torch.nn.Softmax(dim=1) if last else torch.nn.ReLU()]
    m.set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam()).finalize()
    ours, theirs = folder / "ours.onnx", folder / "torch.onnx"
    m.export_onnx(ours)
    m.save_weights(folder / "w.safetensors")
    net = torch.nn.Sequential(*modules).eval()
    net.load_state_dict(safetensors.torch.load_file(folder / "w.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(net, (torch.zeros(2, sizes[0]),), str(theirs), input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                          dynamo=False)
    ops = [[n.op_type for n in onnx.load(str(p)).graph.node if n.op_type != "Constant"] for p in (ours, theirs)]
    return ours, theirs, ops[0], ops[1]


def session(path: Path) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_call(sess: object, X: np.ndarray, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        sess.run(None, {"input": X})  # type: ignore[attr-defined]
    return (time.perf_counter() - start) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        for name, sizes in NETWORKS.items():
            ours, theirs, our_ops, their_ops = models(sizes, Path(folder))
            a, b = session(ours), session(theirs)
            print(f"{name}: {'-'.join(map(str, sizes))}\n  portable_nn: {' '.join(our_ops)}\n"
                  f"  pytorch:     {' '.join(their_ops)}")
            print(f"  {'batch':>6}  {'portable_nn us':>14}  {'pytorch us':>10}  ratio")
            for batch in BATCHES:
                X = rng.standard_normal((batch, sizes[0])).astype(np.float32)
                np.testing.assert_allclose(a.run(None, {"input": X})[0], b.run(None, {"input": X})[0],  # type: ignore[attr-defined]
                                           rtol=1e-4, atol=1e-6)
                calls = max(20, 20_000 // batch)
                times: dict[str, list[float]] = {"a": [], "b": []}
                for _ in range(args.rounds):
                    times["a"].append(time_call(a, X, calls))
                    times["b"].append(time_call(b, X, calls))
                ta, tb = statistics.median(times["a"]), statistics.median(times["b"])
                print(f"  {batch:>6}  {ta:>14.1f}  {tb:>10.1f}  {ta / tb:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
