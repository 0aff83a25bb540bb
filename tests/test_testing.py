"""The pytest plugin (``portable_nn.testing``), run in subprocesses on small test files: markers checked at
collection, the backend from the environment checked, JAX's float64 on from the session's start."""

import os
import subprocess
import sys

import pytest


def run_pytest(tmp_path, source, *args, env=None):
    (tmp_path / "test_x.py").write_text(source)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PORTABLE_NN_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "portable_nn.testing",
                           *args, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          check=False, env=environment)


@pytest.mark.parametrize("marker", ["skip_xp_backends('numpy')", "skip_xp_backends('torch')",
                                    "only_xp_backends('cupy')", "only_xp_backends('numpy')"])
def test_a_marker_without_a_reason_is_a_usage_error_whichever_backend_runs(tmp_path, marker):
    out = run_pytest(tmp_path, f"import pytest\n\n@pytest.mark.{marker}\ndef test_x():\n    pass\n",
                     "--backend=numpy")
    assert out.returncode == 4 and "needs reason=" in out.stdout + out.stderr, out.stdout + out.stderr


def test_a_backend_from_the_environment_is_checked(tmp_path):
    out = run_pytest(tmp_path, "def test_x(backend):\n    pass\n", env={"PORTABLE_NN_BACKEND": "pytorch"})
    assert out.returncode == 4, out.stdout + out.stderr
    assert "PORTABLE_NN_BACKEND='pytorch' is not a backend; choose from numpy" in out.stdout + out.stderr


@pytest.mark.only_xp_backends("jax", reason="JAX's float64 switch")
def test_jax_float64_is_on_before_the_first_test(backend, tmp_path):
    source = ("import jax.numpy as jnp\n\n"
              "def test_before_any_fixture():\n    assert jnp.asarray(1.0).dtype == jnp.float64\n\n"
              "def test_with_the_fixture(backend):\n    assert backend.xp.asarray(1.0).dtype == backend.xp.float64\n")
    out = run_pytest(tmp_path, source, "--backend=jax")
    assert out.returncode == 0 and "2 passed" in out.stdout, out.stdout + out.stderr
