"""``jrnn.app.fit`` from Python, and the parity task (one file plus one registry line)
learning through ``jrnn train``."""

from __future__ import annotations

import json

import pytest

from jrnn.app import Config, UsageError, evaluate_run, fit
from jrnn.cli import main


def test_fit_runs_from_python_and_returns_metrics(tmp_path, capsys):
    config = Config(task="parity", steps=10, hidden=8, eval_every=5, eval_batches=1)
    out = tmp_path / "run"
    metrics = fit(config, out, progress=False)
    assert metrics["step"] == 10
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["val_loss"] > 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_loss" in r] == [5, 10]
    # the global gradient norm before and after clipping, every logging row
    for r in (r for r in rows if "loss" in r):
        assert 0 < r["grad_norm_clipped"] <= min(r["grad_norm"], config.clip) * (1 + 1e-5), r
    assert (out / "loss.png").stat().st_size > 0
    assert rows[-1]["val_accuracy"] == metrics["val_accuracy"]
    saved = json.loads((out / "config.json").read_text())
    assert Config.from_dict(saved) == config
    assert evaluate_run(out)["val_accuracy"] == pytest.approx(metrics["val_accuracy"], abs=1e-6)

    with pytest.raises(UsageError, match="already holds a run"):
        fit(config, out, progress=False)
    with pytest.raises(UsageError, match="--hidden 16 but the run .* has hidden=8"):
        fit(Config(**{**config.to_dict(), "hidden": 16}), out, resume=True, progress=False)
    capsys.readouterr()
    again = fit(config, out, resume=True, progress=False)  # already complete
    assert "already complete" in capsys.readouterr().out
    assert again["val_accuracy"] == metrics["val_accuracy"]
    with pytest.raises(TypeError, match="jrnn.app.Config"):
        fit(config.to_dict(), tmp_path / "other")


def test_parity_task_learns_above_chance(tmp_path, capsys):
    """Running parity: chance is 0.5 per step (and 2**-n per sequence)."""
    out = tmp_path / "parity"
    argv = ["train", "--task", "parity", "--steps", "150", "--eval-every", "150"]
    assert main([*argv, "--eval-batches", "1", "--out", str(out), "--no-progress"]) == 0
    assert "parity (tagger)" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (last,) = [r for r in rows if "val_accuracy" in r]
    assert last["val_accuracy"] > 0.9 and last["val_exact"] > 0.5, last


def test_layer_norm_flag_builds_the_normalised_cell_and_is_honoured_by_eval(tmp_path, capsys):
    """``--layer-norm`` is saved in config.json, trains a layer-normalised GRU, and ``eval``
    rebuilds it (its checkpoint holds the gains); older config.json files without the key
    read back as ``layer_norm=False``."""
    from jrnn.app.runs import read_config

    out = tmp_path / "ln"
    argv = ["train", "--task", "parity", "--cell", "gru", "--layer-norm", "--steps", "120"]
    argv += ["--eval-every", "120", "--eval-batches", "1", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["layer_norm"] is True and read_config(out).layer_norm is True
    row = evaluate_run(out)
    assert row["step"] == 120 and row["val_accuracy"] > 0.75, row  # chance 0.5
    gains = list((out / "checkpoints" / "120").rglob("*ln_hh_scale*"))
    assert (
        gains or "ln_hh_scale" in (out / "checkpoints" / "120" / "state" / "_METADATA").read_text()
    )
    del saved["layer_norm"]
    (out / "config.json").write_text(json.dumps(saved))
    assert read_config(out).layer_norm is False


def test_zoneout_and_recurrent_dropout_train_and_are_refused_where_no_key_reaches(tmp_path):
    """``--zoneout``/``--recurrent-dropout`` wrap the cell for training (the key reaches it
    through the model) and evaluate without noise; encoder-decoders, which step their cells
    without a key, refuse them."""
    out = tmp_path / "reg"
    argv = ["train", "--task", "parity", "--zoneout", "0.05", "--recurrent-dropout", "0.1"]
    argv += ["--steps", "150", "--eval-every", "150", "--eval-batches", "1"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["zoneout"], saved["recurrent_dropout"]) == (0.05, 0.1)
    row = evaluate_run(out)
    assert row["val_accuracy"] > 0.75, row  # chance 0.5
    again = evaluate_run(out)
    assert again == row  # evaluation has no noise
    for model in ("attention", "seq2seq"):
        with pytest.raises(UsageError, match="--zoneout and --recurrent-dropout apply to"):
            Config(task="reverse", arch=model, zoneout=0.1)
