"""The examples run (short versions), so they cannot rot."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.only_xp_backends("numpy", reason="a subprocess on NumPy: the example's own --backend is its business")
def test_the_digits_toolkit_example_runs(backend):
    pytest.importorskip("sklearn")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "digits_toolkit.py"), "--seeds", "1",
                          "--epochs", "8"], capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "PYTHONWARNINGS": "error"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("seed 0: stopped at epoch ") and "checkpoint" in lines[0]
    accuracy = float(lines[-1].split("test accuracy ")[1].split(" ")[0])
    assert accuracy > 0.8  # 8 epochs give about 0.95 (float32; the full run's figures are in the README)
    bad = subprocess.run([sys.executable, str(ROOT / "examples" / "digits_toolkit.py"), "--seeds", "0"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "must be positive integers" in bad.stderr


@pytest.mark.only_xp_backends("numpy", reason="a subprocess on NumPy: the example's own --backend is its business")
def test_the_cnn_digits_example_runs(backend):
    pytest.importorskip("sklearn")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "cnn_digits.py"), "--epochs", "3"],
                         capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "PYTHONWARNINGS": "error"})
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("numpy (float32): test accuracy ") and "after 3 epochs" in line
    assert float(line.split("test accuracy ")[1].split(" ")[0]) > 0.5  # about 0.9 after 3 epochs (float32)
    bad = subprocess.run([sys.executable, str(ROOT / "examples" / "cnn_digits.py"), "--epochs", "0"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "--epochs must be a positive integer" in bad.stderr
