"""Launching MPI jobs: the command line with --distributed, and a rank that fails alone (never a hang).

Run by the ``mpi`` nox session (``mpi4py`` and ``mpich`` installed); skipped elsewhere.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")


def launch(n, *argv, timeout=300):
    return subprocess.run([MPIEXEC, "-n", str(n), *argv], capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_the_command_line_trains_data_parallel(tmp_path):
    pytest.importorskip("sklearn")
    model = tmp_path / "digits.npz"
    out = launch(2, sys.executable, "-m", "portable_nn", "train", "--distributed", "--dataset", "digits",
                 "--epochs", "5", "--quiet", "--save", str(model))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and "data-parallel on 2 MPI ranks" in lines[0], out.stdout  # rank 0 alone prints
    single = subprocess.run([sys.executable, "-m", "portable_nn", "train", "--dataset", "digits", "--epochs", "5",
                             "--quiet"], capture_output=True, text=True, timeout=300, check=True)
    # float32 sums in another order: the figures agree to the printed digits or nearly
    par, one = lines[1].split(), single.stdout.splitlines()[1].split()
    for i in (2, 4, 8, 10):  # train loss, train acc, test loss, test acc
        assert abs(float(par[i].rstrip(",")) - float(one[i].rstrip(","))) < 0.02, (lines[1], single.stdout)
    assert model.exists()


@pytest.mark.parametrize(("error", "message"), [("MemoryError", "pretend this rank ran out of memory"),
                                                ("RuntimeError", "a bug in a callback on one rank")])
def test_a_rank_that_fails_alone_ends_the_job(tmp_path, error, message):
    script = tmp_path / "fail.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        import portable_nn as pnn
        from mpi4py import MPI
        from portable_nn.datasets import spiral_data

        X, y = spiral_data(50, 3, seed=0)
        m = pnn.Model().add(pnn.Dense(2, 8, seed=0)).add(pnn.ReLU()).add(pnn.Dense(8, 3, seed=1))
        m.add(pnn.Softmax()).set(loss=pnn.CategoricalCrossentropy(), optimizer=pnn.Adam(0.01)).finalize()

        def fail_on_rank_one(info):
            if MPI.COMM_WORLD.Get_rank() == 1 and info["global_step"] == 3:
                raise ERROR(MESSAGE)

        m.train(X, y, epochs=1000, batch_size=32, print_every=1, verbose=False, callback=fail_on_rank_one,
                distributed=True)
    """).replace("ERROR", error).replace("MESSAGE", repr(message)))
    out = launch(2, sys.executable, str(script), timeout=120)
    assert out.returncode != 0
    assert f"rank 1 of 2: {error}: {message}" in out.stderr, out.stderr
