"""Check that a built wheel holds every module of the source tree (no subpackage left out).

    python scripts/check_wheel.py DIST_DIR     # exit status 1 if a module is missing
"""

from __future__ import annotations

import pathlib
import sys
import zipfile

if __name__ == "__main__":
    wheels = sorted(pathlib.Path(sys.argv[1]).glob("portable_nn-*.whl"))
    if not wheels:
        sys.exit(f"no portable_nn wheel in {sys.argv[1]}")
    packed = set(zipfile.ZipFile(wheels[-1]).namelist())
    source = {p.as_posix() for p in pathlib.Path("portable_nn").rglob("*.py")} | {"portable_nn/py.typed"}
    missing = sorted(source - packed)
    print(f"{wheels[-1].name}: {len(source) - len(missing)} of {len(source)} source files packed")
    for name in missing:
        print(f"missing: {name}")
    sys.exit(1 if missing else 0)
