"""Every Python block of README.md runs as pasted: in a fresh namespace, in an empty folder.

A block runs in the numpy session unless an HTML comment right above its fence names another:
``<!-- test: torch -->`` (the session with that library), ``<!-- test: torch cuda -->`` (on that device only:
skipped without it, with the reason), ``<!-- test: pytest -->`` (a test file: pytest runs it with the
``portable_nn.testing`` plugin).
"""

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCK = re.compile(r"(?:<!-- test: (?P<how>[^>]*?) -->\n)?```python\n(?P<code>.*?)```", re.S)
SESSIONS = ("numpy", "torch", "jax", "dask", "cupy")


def blocks():
    text = README.read_text(encoding="utf-8")
    params = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("code")) + 1
        how = (match.group("how") or "numpy").split()
        session = how[0] if how[0] in SESSIONS else "numpy"
        device = how[1] if len(how) > 1 else None
        mark = pytest.mark.only_xp_backends(session, device=device,
                                            reason=f"README.md line {line} is run in the {session} session")
        params.append(pytest.param(match.group("code"), "pytest" in how, id=f"line{line}", marks=mark))
    return params


def test_the_readme_has_python_blocks_and_every_marker_is_known():
    text = README.read_text(encoding="utf-8")
    assert len(blocks()) >= 8
    for how in re.findall(r"<!-- test: ([^>]*?) -->", text):
        assert how.split()[0] in (*SESSIONS, "pytest"), how
    # a marker must sit right above a fence, or it marks nothing
    assert text.count("<!-- test:") == sum(1 for m in BLOCK.finditer(text) if m.group("how"))


@pytest.mark.parametrize(("code", "as_test"), blocks())
def test_readme_block_runs_as_pasted(code, as_test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if as_test:
        (tmp_path / "test_block.py").write_text(code, encoding="utf-8")
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "portable_nn.testing", "-p",
                              "no:cacheprovider", "test_block.py"], capture_output=True, text=True, cwd=tmp_path,
                             timeout=600, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
        return
    with warnings.catch_warnings():
        # torch.compile notes that it traces through array-api-compat's lru_cache helpers: a user sees it once;
        # here warnings are errors (pyproject), and that one is not ours to fix
        warnings.filterwarnings("ignore", message=".*lru_cache.*")
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})


def test_the_api_reference_is_generated_from_the_docstrings():
    sys.path.insert(0, str(README.parents[0] / "scripts"))
    try:
        import api_reference
    finally:
        sys.path.pop(0)
    text = README.read_text(encoding="utf-8")
    assert api_reference.readme_table(text) == api_reference.table(), "run: python scripts/api_reference.py --write"
    assert all("| |" not in row[2:] for row in api_reference.table().splitlines()[2:]), "an object without a docstring"


def test_the_extras_table_lists_every_extra_of_pyproject():
    import tomllib

    extras = set(tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| extra |"):]
    table = table[:table.index("\n\n")]
    listed = set(re.findall(r"^\| `([\w-]+)` \|", table, re.M))
    assert listed == extras
