"""The portable-nn command: train/save/plot, evaluate, predict, check, one-line errors."""

import numpy as np
import pytest

from portable_nn.cli import main


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_train_save_evaluate_predict(backend, tmp_path, capsys):
    model = tmp_path / "spiral.npz"
    code, out, _ = run(capsys, "train", "--backend", backend.name, "--epochs", "30", "--quiet", "--save", str(model))
    assert code == 0, out
    assert "spiral on " + backend.name in out and "30 epochs, 30 steps" in out
    assert out.splitlines()[1].startswith("train: loss ") and "| test: loss " in out
    assert model.exists()
    code, out, _ = run(capsys, "evaluate", str(model), "--backend", backend.name)
    assert code == 0 and out.startswith("spiral test data on " + backend.name + ": loss ")
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.array([[0.1, 0.2], [-0.5, 0.3]], dtype=np.float32))
    preds = tmp_path / "p.npy"
    code, out, _ = run(capsys, "predict", str(model), "--input", str(inputs), "--output", str(preds),
                       "--backend", backend.name)
    assert code == 0 and "wrote 2 predictions" in out
    p = np.load(preds)
    assert p.shape == (2,) and set(p.tolist()) <= {0, 1, 2}


def test_train_digits_with_batches(backend, capsys):
    pytest.importorskip("sklearn")
    code, out, _ = run(capsys, "train", "--backend", backend.name, "--dataset", "digits", "--epochs", "2", "--quiet")
    assert code == 0 and "digits on" in out and "2 epochs, 46 steps" in out


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "plot.png"
    code, _, _ = run(capsys, "train", "--epochs", "20", "--quiet", "--plot", str(png))
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _out, _ = run(capsys, "train", "--dataset", "sine", "--epochs", "5", "--quiet", "--plot", str(png))
    assert code == 0 and png.stat().st_size > 1000


def test_check_prints_a_table(backend, capsys):
    code, out, _ = run(capsys, "check", "--backend", backend.name)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"gradient check on {backend.name}")
    assert any(line.startswith("SoftmaxCategoricalCrossentropy") and line.endswith("pass") for line in lines)
    rows = lines[2:-1]  # every library layer, activation and loss, from the registries
    assert {row.split()[0] for row in rows} >= {"Dense", "Dropout", "ReLU", "LeakyReLU", "Tanh", "Softmax"}
    assert lines[-1] == f"{len(rows)} passed, 0 failed" and len(rows) >= 15


def test_errors_are_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "evaluate", str(tmp_path / "missing.npz"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("portable-nn: error: ")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model")
    code, _, err = run(capsys, "evaluate", str(bad))
    assert code == 2 and err.count("\n") == 1 and "not a valid portable_nn model file" in err
    code, _out, err = run(capsys, "train", "--epochs", "-3", "--quiet")  # argparse's usage line, then the error
    assert code == 2 and "argument --epochs: expected an integer >= 1, got -3" in err and "Traceback" not in err


def test_python_dash_m(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "portable_nn", "train", "--epochs", "5", "--quiet"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "spiral on numpy (cpu): 5 epochs" in proc.stdout


def test_bad_options_fail_before_any_training(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--epochs", "0", "--quiet")
    assert code == 2 and "argument --epochs: expected an integer >= 1, got 0" in err
    code, _, err = run(capsys, "train", "--print-every", "0", "--epochs", "2")  # no progress bar drawn first
    assert code == 2 and "argument --print-every: expected an integer >= 1, got 0" in err and "step/s" not in err
    code, _, err = run(capsys, "train", "--seed", "-1", "--quiet")
    assert code == 2 and "argument --seed: expected an integer >= 0, got -1" in err
    code, out, err = run(capsys, "train", "--epochs", "5", "--quiet", "--save", str(tmp_path / "missing" / "m.npz"))
    assert code == 2 and "--save" in err and "the folder does not exist" in err and "spiral on" not in out


def test_predict_refuses_non_finite_inputs(tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert run(capsys, "train", "--epochs", "3", "--quiet", "--save", str(model))[0] == 0
    bad = tmp_path / "x.npy"
    np.save(bad, np.full((2, 2), np.nan, dtype=np.float32))
    code, _, err = run(capsys, "predict", str(model), "--input", str(bad))
    assert code == 2 and "the input contains NaN or infinite values" in err


def test_inputs_that_are_not_plain_rows_are_one_line_errors(tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert run(capsys, "train", "--epochs", "3", "--quiet", "--save", str(model))[0] == 0
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    scalar = tmp_path / "scalar.npy"
    np.save(scalar, np.float32(1.0))
    for source, message in ((empty, "input contained no data"), (scalar, "X must have shape"),
                            ("/dev/zero", "not a regular file")):
        code, _, err = run(capsys, "predict", str(model), "--input", str(source))
        assert code == 2 and err.count("\n") == 1 and message in err, err


def test_predict_says_the_file_it_wrote_and_check_takes_its_seed(tmp_path, capsys):
    model, rows = tmp_path / "m.npz", tmp_path / "x.npy"
    assert run(capsys, "train", "--epochs", "3", "--quiet", "--save", str(model))[0] == 0
    np.save(rows, np.zeros((4, 2), dtype=np.float32))
    code, out, _ = run(capsys, "predict", str(model), "--input", str(rows), "--output", str(tmp_path / "out.txt"))
    assert code == 0 and out.strip().endswith("out.txt.npy") and (tmp_path / "out.txt.npy").exists()
    tables = [run(capsys, "check", "--seed", seed)[1] for seed in ("0", "1")]
    assert tables[0] != tables[1] and all(t.strip().endswith("0 failed") for t in tables)


def test_dask_on_a_gpu_is_refused(capsys):
    code, _, err = run(capsys, "train", "--backend", "dask", "--device", "cuda", "--quiet", "--epochs", "1")
    assert code == 2 and "dask runs on NumPy chunks on the cpu" in err


def test_files_that_are_not_models_and_batch_size_zero(tmp_path, capsys):
    npy, png = tmp_path / "x.npy", tmp_path / "x.png"
    np.save(npy, np.zeros((2, 2)))
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    for path in (npy, png):
        code, _, err = run(capsys, "evaluate", str(path))
        assert code == 2 and err.count("\n") == 1 and "not a valid portable_nn model file" in err, err
    model = tmp_path / "m.npz"
    assert run(capsys, "train", "--epochs", "3", "--quiet", "--save", str(model))[0] == 0
    code, out, _ = run(capsys, "evaluate", str(model), "--batch-size", "0")  # 0 = full batch, as in train
    assert code == 0 and "acc" in out


def test_without_tqdm_and_matplotlib(monkeypatch, tmp_path, capsys):
    import builtins
    import importlib.util

    real_import, real_find_spec = builtins.__import__, importlib.util.find_spec

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError("no tqdm here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    code, _, err = run(capsys, "train", "--epochs", "500", "--print-every", "1")
    assert code == 0 and 5 <= err.count("\n") <= 11  # a line at each tenth, not 500
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else
                        real_find_spec(name, *a))
    code, out, err = run(capsys, "train", "--epochs", "5", "--quiet", "--plot", str(tmp_path / "p.png"))
    assert code == 2 and "--plot needs matplotlib" in err and "spiral on" not in out


def test_a_divergence_is_one_line_without_numpy_warnings(capsys):
    code, _, err = run(capsys, "train", "--epochs", "50", "--quiet", "--learning-rate", "1e30")  # float32 overflows
    assert code == 2 and err.count("\n") == 1 and "loss became" in err and "RuntimeWarning" not in err, err


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path, capsys):
    import subprocess
    import sys

    model, rows = tmp_path / "m.npz", tmp_path / "x.npy"
    assert run(capsys, "train", "--epochs", "3", "--quiet", "--save", str(model))[0] == 0
    np.save(rows, np.zeros((200_000, 2), dtype=np.float32))  # far more output than a pipe holds
    proc = subprocess.run(f"{sys.executable} -m portable_nn predict {model} --input {rows} | head -1", shell=True,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.stdout.strip() == "0" or proc.stdout.strip().isdigit(), proc.stdout
    assert proc.stderr == "", proc.stderr  # no traceback, no "error: [Errno 32] Broken pipe"


def test_evaluate_knows_the_data_set_a_model_was_trained_on(tmp_path, capsys):
    """Issue 10, item 12: the file stores the data set; evaluate defaults to it and names it when data do not fit."""
    pytest.importorskip("sklearn")
    model = tmp_path / "digits.npz"
    assert run(capsys, "train", "--dataset", "digits", "--epochs", "1", "--quiet", "--save", str(model))[0] == 0
    code, out, _ = run(capsys, "evaluate", str(model))
    assert code == 0 and out.startswith("digits test data"), out
    code, _, err = run(capsys, "evaluate", str(model), "--dataset", "spiral")
    assert code == 2 and err.count("\n") == 1
    assert "X has 2 features but the model takes 64" in err and "was trained on --dataset digits" in err, err
    inputs = tmp_path / "x.csv"
    inputs.write_text("1,2,3\n")
    code, _, err = run(capsys, "predict", str(model), "--input", str(inputs))
    assert code == 2 and "was trained on --dataset digits" in err, err


def test_out_of_memory_is_one_line(monkeypatch, capsys):
    from portable_nn import cli

    def huge(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(cli, "build_model", huge)
    code, _, err = run(capsys, "train", "--hidden", "100000000", "--quiet")
    assert code == 2 and err == "portable-nn: error: out of memory (a smaller --hidden or --batch-size?)\n"


def test_ctrl_c_during_train_saves_the_model_reached(tmp_path, capsys, monkeypatch):
    """Ctrl-C at a step boundary: the model is saved, the epoch and step are named, the exit code is 130."""
    import os
    import signal

    from portable_nn import cli

    def press_ctrl_c(self, info):
        if info["global_step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(cli.Progress, "__call__", press_ctrl_c)
    path = tmp_path / "m.npz"
    code, out, err = run(capsys, "train", "--epochs", "50", "--print-every", "1", "--quiet", "--save", str(path))
    assert code == 130, err
    assert "interrupted at the end of epoch 3, step 1" in err
    assert f"saved the model reached at the end of epoch 3, step 1 to {path}" in err, err
    code, out, _ = run(capsys, "evaluate", str(path))
    assert code == 0 and out.startswith("spiral test data on numpy")


def test_paths_and_sizes_are_checked_alike(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    model, plot = tmp_path / "m.npz", tmp_path / "curves"
    code, out, _ = run(capsys, "train", "--epochs", "3", "--quiet", "--save", str(model), "--plot", str(plot))
    assert code == 0 and f"saved plot to {plot}.png" in out and (tmp_path / "curves.png").exists()
    missing = tmp_path / "missing" / "x"
    for argv, option in ((["predict", str(model), "--input", str(model), "--output", str(missing) + ".npy"],
                          "predict --output"), (["export", str(model), str(missing) + ".onnx"], "export")):
        code, _, err = run(capsys, *argv)
        assert code == 2 and f"{option} {missing}" in err and "the folder does not exist" in err, err
    pytest.importorskip("ndonnx")
    code, _, err = run(capsys, "export", str(model), str(tmp_path / "m.onnx"), "--batch", "-3")
    assert code == 2 and "export --batch -3: a fixed batch size must be >= 1" in err


def test_a_missing_backend_names_its_extra(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    monkeypatch.delitem(__import__("sys").modules, "torch", raising=False)
    code, _, err = run(capsys, "check", "--backend", "torch")
    assert code == 2 and "backend 'torch' is not installed" in err and 'pip install "portable_nn[torch]"' in err


def test_the_progress_bar_ends_on_the_last_figures(monkeypatch, capsys):
    """The bar's postfix is set before it redraws: its last line shows the run's last loss, in significant
    digits (it lagged one report, and the sine data's small losses printed as 0.0000)."""
    tqdm = pytest.importorskip("tqdm")
    from portable_nn import cli

    shown = []
    monkeypatch.setattr(tqdm.std.tqdm, "update", lambda self, n=1: shown.append(self.postfix))
    progress = cli.Progress(4, quiet=False)
    for step, loss in ((2, 0.5), (4, 0.00001234)):
        progress({"global_step": step, "total_steps": 4, "epoch": 1, "step": step, "loss": loss, "accuracy": 0.5,
                  "learning_rate": 0.01})
    progress.close()
    assert shown[-1].startswith("loss=1.234e-05,"), shown
