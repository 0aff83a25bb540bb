"""Your own data for the command line: a table of features and a target from CSV, ``.npz`` or Parquet.

* CSV (``.csv``; ``.tsv`` takes tabs): a header row is detected (a first row with a field that is not a
  number); ``delimiter`` otherwise ``,``.  The target column by name or index (default: the last).
* ``.npz``: arrays ``X`` (rows of features) and ``y`` (the target; optional for prediction).
* Parquet (``.parquet``), when ``pyarrow`` is installed: the columns by name.

The task is inferred from the target -- strings or integers are classes (their names kept), other numbers
are values (regression) -- and can be given.  Every problem with a file is one ``ValueError`` naming it.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .files import read_bounded

__all__ = ["Table", "encode_target", "read_table"]


@dataclass
class Table:
    """Features (float64 rows), their column names, and the target column's raw values and name (if any)."""

    features: np.ndarray
    names: list[str]
    target: list[Any] | None = None
    target_name: str | None = None
    dropped: list[str] = field(default_factory=list)


def read_table(path: str, *, target: str | None = None, delimiter: str | None = None,
               need_target: bool = True, ignore: str | None = None) -> Table:
    """The table in ``path``; ``target``: the target column's name or index (default: the last one);
    without ``need_target`` the table may have no target, and a column named ``ignore`` is dropped."""
    if path.endswith(".npz"):
        return _npz(path, need_target)
    if path.endswith(".parquet"):
        header, columns = _parquet(path)
    else:
        header, columns = _csv(path, delimiter or ("\t" if path.endswith(".tsv") else ","))
    if not need_target:
        keep = [i for i, name in enumerate(header) if name != ignore]
        dropped = [name for name in header if name == ignore]
        return Table(_numeric(path, [header[i] for i in keep], [columns[i] for i in keep]),
                     [header[i] for i in keep], dropped=dropped)
    index = _target_index(path, header, target)
    features = [c for i, c in enumerate(columns) if i != index]
    names = [n for i, n in enumerate(header) if i != index]
    if not features:
        raise ValueError(f"{path}: no feature columns besides the target {header[index]!r}")
    return Table(_numeric(path, names, features), names, list(columns[index]), header[index])


def _csv(path: str, delimiter: str) -> tuple[list[str], list[list[str]]]:
    text = read_bounded(path).decode("utf-8-sig", errors="replace")
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row and any(f.strip() for f in row)]
    if not rows:
        raise ValueError(f"{path}: no rows")
    width = len(rows[0])
    if width == 1:
        others = [d for d in (";", "\t", ",", "|", " ") if d != delimiter and d in text.splitlines()[0]]
        hint = f": the fields seem separated by {others[0]!r}; pass --delimiter {others[0]!r}" if others else ""
        raise ValueError(f"{path}: one column per row with the delimiter {delimiter!r}{hint}")
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"{path}: row {i + 1} has {len(row)} fields, the first has {width} "
                             f"(is the delimiter {delimiter!r} right? --delimiter)")
    has_header = any(not _is_number(f) for f in rows[0])
    header = [f.strip() for f in rows[0]] if has_header else [f"column {i}" for i in range(width)]
    body = rows[1:] if has_header else rows
    if not body:
        raise ValueError(f"{path}: a header and no rows")
    return header, [[row[i].strip() for row in body] for i in range(width)]


def _parquet(path: str) -> tuple[list[str], list[list[Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(f"{path}: Parquet files need pyarrow: pip install pyarrow") from None
    data = pq.read_table(path).to_pydict()
    return list(data), [list(v) for v in data.values()]


def _npz(path: str, need_target: bool) -> Table:
    with np.load(io.BytesIO(read_bounded(path)), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if "X" not in arrays or (need_target and "y" not in arrays):
        raise ValueError(f"{path}: an .npz file holds arrays X and y; this one holds {sorted(arrays)}")
    X = arrays["X"]
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"{path}: X must be a 2-D array of numbers, got shape {X.shape}, dtype {X.dtype}")
    y = arrays.get("y")
    if y is not None and len(y) != len(X):
        raise ValueError(f"{path}: X has {len(X)} rows but y has {len(y)}")
    names = [f"column {i}" for i in range(X.shape[1])]
    return Table(X.astype(np.float64), names, None if y is None else y.reshape(-1).tolist(), "y")


def _target_index(path: str, header: list[str], target: str | None) -> int:
    if target is None:
        return len(header) - 1
    if target in header:
        return header.index(target)
    if target.lstrip("-").isdigit() and -len(header) <= int(target) < len(header):
        return int(target) % len(header)
    raise ValueError(f"{path}: no target column {target!r}; the columns are {header}")


def _is_number(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _numeric(path: str, names: list[str], columns: list[list[Any]]) -> np.ndarray:
    out = np.empty((len(columns[0]) if columns else 0, len(columns)), dtype=np.float64)
    for j, (name, column) in enumerate(zip(names, columns, strict=True)):
        for i, value in enumerate(column):
            try:
                out[i, j] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{path}: the feature column {name!r} is not numeric (row {i + 1}: {value!r})") \
                    from None
            if not math.isfinite(out[i, j]):
                raise ValueError(f"{path}: the feature column {name!r} holds {value!r} (row {i + 1})")
    return out


def encode_target(path: str, values: list[Any], task: str | None) -> tuple[str, np.ndarray, list[str] | None]:
    """``(task, y, class names)``: classes (strings, or integers) become indices into the sorted names;
    other numbers are regression targets.  ``task`` ("classification"/"regression") overrides the guess."""
    numeric = all(_is_number(v) for v in values)
    integral = numeric and all(float(v).is_integer() for v in values)
    task = task or ("classification" if not numeric or integral else "regression")
    if task == "regression":
        if not numeric:
            bad = next(v for v in values if not _is_number(v))
            raise ValueError(f"{path}: regression needs a numeric target, got {bad!r}")
        return task, np.asarray([float(v) for v in values], dtype=np.float64), None
    labels = [str(int(float(v))) if integral else str(v) for v in values]
    names = sorted(set(labels), key=lambda s: (float(s), s) if integral else (0.0, s))
    index = {name: i for i, name in enumerate(names)}
    return task, np.asarray([index[v] for v in labels], dtype=np.int64), names
