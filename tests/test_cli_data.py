"""``portable-nn train --data`` and ``predict`` on a user's own tables: CSV with a header and string labels,
.npz, Parquet (when pyarrow is installed); the class names come back; bad files are one line each."""

import csv

import numpy as np
import pytest

from portable_nn import __version__
from portable_nn.cli import main
from portable_nn.datasets import spiral_data


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def spiral_csv(path, delimiter=",", rows=None):
    X, y = spiral_data(40, 3, seed=0)
    names = np.array(["red", "green", "blue"])[y]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(["x one", "x two", "colour"])
        writer.writerows([[f"{a:.6f}", f"{b:.6f}", c] for (a, b), c in zip(X[:rows], names[:rows], strict=True)])
    return X, names


def test_a_csv_with_a_header_and_string_labels_trains_and_predicts_the_names(tmp_path, capsys):
    data, model = tmp_path / "spiral.csv", tmp_path / "m.npz"
    _, names = spiral_csv(data)
    code, out, err = run(capsys, "train", "--data", str(data), "--target", "colour", "--epochs", "60", "--quiet",
                         "--save", str(model))
    assert code == 0, err
    assert "120 rows, 2 features, target 'colour', classification, 3 classes ['blue', 'green', 'red']" in out
    assert "| validation: loss " in out and model.exists()
    code, out, err = run(capsys, "predict", str(model), "--input", str(data))  # the target column is ignored
    assert code == 0, err
    predicted = out.split()
    assert len(predicted) == 120 and set(predicted) <= {"red", "green", "blue"}
    assert np.mean(np.array(predicted) == names) > 1 / 3  # better than chance (float32: no tighter claim)
    probabilities = tmp_path / "p.csv"
    code, out, err = run(capsys, "predict", str(model), "--input", str(data), "--proba", "--output", str(probabilities))
    assert code == 0 and "wrote 120 predictions" in out, err
    with open(probabilities, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["blue", "green", "red"] and len(rows) == 121
    np.testing.assert_allclose(np.array(rows[1:], dtype=float).sum(axis=1), 1.0, rtol=1e-5)


def test_npz_and_parquet_tables_and_a_regression_target(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1
    np.savez(tmp_path / "r.npz", X=X, y=y)
    code, out, err = run(capsys, "train", "--data", str(tmp_path / "r.npz"), "--epochs", "30", "--quiet",
                         "--save", str(tmp_path / "r-model.npz"))
    assert code == 0 and "200 rows, 3 features, target 'y', regression" in out, err
    np.savez(tmp_path / "new.npz", X=X[:5])
    code, out, err = run(capsys, "predict", str(tmp_path / "r-model.npz"), "--input", str(tmp_path / "new.npz"),
                         "--output", str(tmp_path / "p.npy"))
    assert code == 0, err
    assert np.load(tmp_path / "p.npy").shape == (5, 1)
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "label": (y > 0).astype(int)}),
                   tmp_path / "t.parquet")
    code, out, err = run(capsys, "train", "--data", str(tmp_path / "t.parquet"), "--target", "label", "--epochs",
                         "5", "--quiet")
    assert code == 0 and "classification, 2 classes ['0', '1']" in out, err


def test_bad_tables_are_one_line_each(tmp_path, capsys):
    semicolons = tmp_path / "semi.csv"
    spiral_csv(semicolons, delimiter=";")
    code, _, err = run(capsys, "train", "--data", str(semicolons), "--quiet")
    assert code == 2 and "one column per row with the delimiter ','" in err and "pass --delimiter ';'" in err
    assert err.count("\n") == 1 and err.startswith("portable-nn: error: ")
    code, _, err = run(capsys, "train", "--data", str(semicolons), "--delimiter", ";", "--target", "species",
                       "--quiet")
    assert code == 2 and "no target column 'species'; the columns are ['x one', 'x two', 'colour']" in err
    code, _, err = run(capsys, "train", "--data", str(semicolons), "--delimiter", ";", "--target", "x one",
                       "--quiet")
    assert code == 2 and "the feature column 'colour' is not numeric (row 1: 'red')" in err
    few = tmp_path / "few.csv"
    few.write_text("a,b,label\n0.1,0.2,cat\n0.3,0.1,cat\n0.5,0.9,dog\n")
    code, _, err = run(capsys, "train", "--data", str(few), "--quiet")
    assert code == 2 and "too few rows per class to hold some out for validation: class 'dog' has 1" in err
    code, _, _ = run(capsys, "train", "--data", str(few), "--quiet", "--validation-split", "0", "--epochs", "2")
    assert code == 0


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"portable-nn {__version__}"
