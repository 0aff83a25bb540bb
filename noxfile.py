"""One nox session per backend, each running the same test suite.

    nox                      # every backend session (cupy skips without a GPU)
    nox -s numpy torch       # some of them
    nox -s bench             # the benchmark suite (not a test)
"""

from __future__ import annotations

import glob
import shutil
import sys

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "numpy", "array_api_strict", "strictest", "torch", "jax", "dask", "cupy", "mpi"]

# Extras every test session needs besides the backend itself (the suite also
# covers the CLI, the scikit-learn estimators and the plots).
TEST_EXTRAS = ".[test,sklearn,plot,progress]"

# A local CPU wheel of PyTorch, where this machine keeps one: an unpinned
# `torch` from PyPI is a multi-GB CUDA build.
LOCAL_WHEELS = "/opt/wheels"


def torch_requirement() -> list[str]:
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheels = sorted(glob.glob(f"{LOCAL_WHEELS}/torch-*+cpu-{tag}-*.whl"))
    if wheels:
        version = wheels[-1].split("/")[-1].split("-")[1].split("+")[0]
        return [f"torch=={version}", "--find-links", LOCAL_WHEELS]
    return ["torch"]


def local_torch() -> list[str]:
    """PyTorch as the reference of the gradient tests (Conv2D, LayerNorm, ... against autograd) in the numpy
    session, where the machine keeps a local CPU wheel (instant); elsewhere those comparisons skip.  (Not in the
    other backends' sessions: their float64 runs are compared with NumPy's, and one process of array-api-strict
    with PyTorch loaded once raised a spurious "invalid value encountered in matmul" that did not reproduce.)"""
    requirement = torch_requirement()
    return requirement if len(requirement) > 1 else []


def run_suite(session: nox.Session, backend: str, *extra: str, extras: str = "") -> None:
    session.install("-e", TEST_EXTRAS.replace("]", f",{extras}]") if extras else TEST_EXTRAS, *extra)
    session.run("pytest", f"--backend={backend}", *session.posargs)


@nox.session
def numpy(session: nox.Session) -> None:
    """NumPy, with the ONNX export tests (the onnx extra), the downstream example's tests and Parquet tables."""
    run_suite(session, "numpy", "pyarrow", *local_torch(), extras="onnx")


@nox.session
def array_api_strict(session: nox.Session) -> None:
    run_suite(session, "array_api_strict")


@nox.session
def strictest(session: nox.Session) -> None:
    """array-api-strict with boolean indexing and data-dependent shapes off, newest API version."""
    run_suite(session, "strictest")


@nox.session
def torch(session: nox.Session) -> None:
    run_suite(session, "torch", *torch_requirement())


@nox.session
def jax(session: nox.Session) -> None:
    run_suite(session, "jax", "jax[cpu]")


@nox.session
def dask(session: nox.Session) -> None:
    run_suite(session, "dask", "dask[array,distributed]")  # distributed: predict on a process cluster


@nox.session
def cupy(session: nox.Session) -> None:
    """CuPy on a CUDA GPU; skipped cleanly on machines without one."""
    if shutil.which("nvidia-smi") is None:
        session.skip("no CUDA GPU on this machine (nvidia-smi not found)")
    run_suite(session, "cupy", "cupy-cuda12x")


@nox.session
def mpi(session: nox.Session) -> None:
    """Data-parallel training: the tests in tests/distributed on 1, 2 and 3 MPI ranks (MPICH from a wheel),
    then the launches (the command line, a rank that fails alone).  Each run is bounded by `timeout`."""
    session.install("-e", ".[test,mpi,sklearn]", *torch_requirement())
    mpiexec = f"{session.bin}/mpiexec"
    for ranks in ("1", "2", "3"):
        session.run("timeout", "600", mpiexec, "-n", ranks, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "tests/distributed", *session.posargs, external=True)
    session.run("timeout", "600", "python", "-m", "pytest", "-q", "tests/test_mpi_launch.py", external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite: ms/step and ratios against NumPy and PyTorch baselines."""
    session.install("-e", ".[progress,onnx,safetensors]", "threadpoolctl", *torch_requirement())
    session.install("jax[cpu]")
    session.run("python", "-m", "benchmarks", *session.posargs)
    session.run("python", "-m", "benchmarks.memory")
    session.run("python", "-m", "benchmarks.compiled")  # jax.jit and torch.compile, against hand-written steps
    session.run("python", "-m", "benchmarks.onnx")  # onnxruntime on our export against torch.onnx.export's


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (a broad rule set) on everything, mypy --strict on the package, no import cycle, a complete wheel."""
    # pytest: portable_nn.testing (the plugin) is type-checked against it
    session.install("-e", ".", "pytest>=8", "ruff==0.17.6", "mypy==2.4.1")  # pinned: a new release may add rules
    session.run("ruff", "check", ".")
    session.run("mypy")
    session.run("python", "scripts/import_cycles.py")
    session.run("python", "scripts/function_lengths.py")  # no function over 50 lines, model.py under 250
    dist = f"{session.create_tmp()}/dist"  # the wheel a user installs must hold every subpackage
    session.run("uv", "build", "--wheel", "--out-dir", dist, external=True)
    session.run("python", "scripts/check_wheel.py", dist)
