"""``jrnn diagnose``: cells at initialisation and trained runs, as JSON and PNG files."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from jrnn.app import Config, fit
from jrnn.app.diagnose import diagnose_cells, diagnose_run
from jrnn.app.errors import UsageError
from tests.test_cli import _write_corpus
from tests.test_run_folders import _jrnn, _one_error

PNG = b"\x89PNG\r\n\x1a\n"


def _pngs(out: Path, names) -> None:
    for name in names:
        data = (out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 5000, name


def test_cells_at_init_vanish_and_a_scaled_rnn_explodes(tmp_path):
    small = {"seq_len": 30, "hidden": 16, "batch_size": 8}
    report = diagnose_cells(["rnn", "lstm", "gru"], tmp_path / "init", **small)
    assert report == json.loads((tmp_path / "init" / "diagnostics.json").read_text())
    _pngs(tmp_path / "init", report["figures"])
    assert set(report["figures"]) == {
        "grad_norms.png",
        "jacobian_norms.png",
        "jacobian_products.png",
        "gate_saturation.png",
    }
    for name, row in report["cells"].items():
        g = np.array(row["grad_norm_per_t"])
        assert g.shape == (30,) and np.all(g > 0), name
        assert row["grad_norm_ratio_first_over_last"] < 0.1, name  # vanishing at init
        assert row["lyapunov_mean"] < 0, name
        assert len(row["jacobian_product_norm_per_t"]) == 30
        assert (
            set(row["gate_saturation"])
            == {
                "rnn": {"tanh"},
                "lstm": {"i", "f", "g", "o"},
                "gru": {"r", "z", "n"},
            }[name]
        )
    exploding = diagnose_cells(["rnn"], tmp_path / "x3", recurrent_scale=3.0, **small)
    row = exploding["cells"]["rnn"]
    assert row["grad_norm_ratio_first_over_last"] > 1.0  # ‖W‖ = 3: the gradient grows back
    assert row["step_jacobian_norm"]["fraction_above_1"] > 0.5
    assert row["lyapunov_mean"] > report["cells"]["rnn"]["lyapunov_mean"]


def test_forget_bias_keeps_the_lstm_gradient_longer(tmp_path):
    small = {"seq_len": 40, "hidden": 16, "batch_size": 8}
    ratio = {
        b: diagnose_cells(["lstm"], tmp_path / str(b), forget_bias=b, **small)["cells"]["lstm"][
            "grad_norm_ratio_first_over_last"
        ]
        for b in (0.0, 2.0)
    }
    assert ratio[2.0] > 100 * ratio[0.0]


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda out: diagnose_cells([], out), "--cell"),
        (lambda out: diagnose_cells(["lstm", "lstm"], out), "each cell once"),
        (lambda out: diagnose_cells(["transformer"], out), "transformer"),
        (lambda out: diagnose_cells(["rnn"], out, task="copy"), "--task"),
        (lambda out: diagnose_cells(["rnn"], out, seq_len=1), "--seq-len"),
        (lambda out: diagnose_cells(["rnn"], out, recurrent_scale=float("nan")), "scale"),
        (lambda out: diagnose_cells(["rnn"], out, forget_bias=float("inf")), "forget"),
        (lambda out: diagnose_cells(["rnn"], out / "file" / "x"), "not a folder"),
        (lambda out: diagnose_run(out / "nothing"), "config.json"),
        (lambda out: diagnose_run(out / "s2s"), "attention run"),
    ],
)
def test_bad_requests_are_usage_errors_before_any_work(tmp_path, call, words):
    (tmp_path / "file").write_text("x")
    (tmp_path / "s2s").mkdir()
    config = Config(task="reverse", arch="attention").to_dict()
    (tmp_path / "s2s" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match=words):
        call(tmp_path)


@pytest.fixture(scope="module")
def charlm_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("diag")
    corpus = _write_corpus(base / "text", files=3, words=300)
    config = Config(
        task="charlm",
        corpus=str(corpus),
        hidden=16,
        embed=8,
        layers=2,
        batch_size=4,
        seq_len=12,
        steps=4,
        eval_every=4,
        checkpoint_every=4,
        eval_batches=1,
        eval_batch_size=4,
        sample_length=5,
    )
    fit(config, base / "run", progress=False)
    return base / "run"


def test_a_trained_run_is_diagnosed_on_its_first_layer(charlm_run, tmp_path):
    from jrnn.app.restore import open_run
    from jrnn.app.runs import read_config
    from jrnn.diagnostics import jacobian_product_norms

    report = diagnose_run(charlm_run, tmp_path / "d", batch_size=3)
    assert report["step"] == 4 and report["cell"] == "lstm" and report["batch_size"] == 3
    assert report["seq_len"] == 12
    assert set(report["figures"]) == {
        "jacobian_norms.png",
        "jacobian_products.png",
        "gate_saturation.png",
    }  # no loss here: no grad_norms.png
    _pngs(tmp_path / "d", report["figures"])
    # the products are those of layer 0 on the embedded training batch of step 0
    run = open_run(charlm_run, read_config(charlm_run), need_corpus=True, batch_size=3)
    windows = run.task.batch_fn(run.task.data, jax.numpy.int32(0))
    xs = run.params["embed"][windows[:, :-1]]
    cell = run.task.model.rnn.cell
    direct = jacobian_product_norms(cell, run.params["rnn"][0][0], xs).norms
    from jrnn.diagnostics import batch_geometric_mean

    np.testing.assert_allclose(
        report["cells"]["lstm"]["jacobian_product_norm_per_t"],
        batch_geometric_mean(direct),
        rtol=1e-5,
    )


def test_the_command_writes_files_and_refuses_in_one_line(charlm_run, tmp_path):
    r = _jrnn(
        "diagnose",
        "--cell",
        "rnn",
        "gru",
        "--seq-len",
        12,
        "--hidden",
        8,
        "--out",
        tmp_path / "init",
    )
    assert r.returncode == 0, r.stderr
    assert "rnn:" in r.stdout and "gru:" in r.stdout and "diagnostics.json" in r.stdout
    assert (tmp_path / "init" / "grad_norms.png").is_file()
    r = _jrnn("diagnose", charlm_run)
    assert r.returncode == 0, r.stderr
    assert (charlm_run / "diagnostics" / "diagnostics.json").is_file()
    _one_error(_jrnn("diagnose", charlm_run, "--cell", "gru"), "--cell", "only without DIR")
    _one_error(_jrnn("diagnose", "--cell", "elman"), "--cell", "elman")
