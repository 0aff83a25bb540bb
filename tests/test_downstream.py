"""The downstream example (``examples/downstream``) runs its own tests with the ``portable_nn.testing`` plugin,
on two backends: the plugin works for another project, and the example cannot rot."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

DOWNSTREAM = Path(__file__).resolve().parents[1] / "examples" / "downstream"


@pytest.mark.only_xp_backends("numpy", "array_api_strict", "dask",
                               reason="runs the example's own suite in a subprocess, in its backend's session")
def test_the_downstream_project_passes_its_tests(backend):
    name = backend.name
    paths = [str(DOWNSTREAM / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    env.pop("PORTABLE_NN_BACKEND", None)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--backend={name}"],
                         cwd=DOWNSTREAM, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "2 passed, 1 skipped" in out.stdout  # the torch-only test skipped, with its reason
    assert f"{name} on cpu: shows a backend-specific test" in out.stdout
