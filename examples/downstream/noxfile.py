"""The downstream project's tests on two backends: ``nox`` (run from examples/downstream)."""

import nox

nox.options.default_venv_backend = "uv|virtualenv"


@nox.session
@nox.parametrize("backend", ["numpy", "array_api_strict"])
def tests(session: nox.Session, backend: str) -> None:
    session.install("-e", "../..", "-e", ".[test]")  # portable_nn from this repository, then this project
    session.run("pytest", f"--backend={backend}", *session.posargs)
