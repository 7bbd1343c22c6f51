"""Smoke test of the benchmark suite's code path (``python -m benchmarks.run``) on a tiny
config: jrnn + Flax (+ PyTorch when importable), both modes, the GRU (one Flax cell).  It
checks that the JSON and the markdown are written with sane fields; no timing assertions.

The suite runs in a subprocess: it must see JAX's defaults (float32, standard dtype
promotion), not this test session's x64 / strict-promotion configuration.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, subprocess_env


def _env(**extra: str) -> dict[str, str]:
    """This environment without XLA flags (it keeps the compilation cache), ``REPO`` on the
    path, plus ``extra``."""
    return {k: v for k, v in subprocess_env(**extra).items() if not k.startswith("XLA_")}


def test_suite_writes_json_and_markdown(tmp_path: Path) -> None:
    have_torch = importlib.util.find_spec("torch") is not None
    impls = "jrnn,flax,jax-rnn" + (",torch" if have_torch else "")
    env = _env(JAX_PLATFORMS="cpu")
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--configs=tiny",
        "--cells=gru",
        "--modes=train,forward",
        f"--impls={impls}",
        "--rounds=2",
        "--target-time=0.002",
        "--quiet-wait=0",
        "--max-redos=0",
        "--precision=highest",
        f"--out={tmp_path}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = json.loads((tmp_path / "results.json").read_text())
    machine = result["machine"]
    assert machine["usable_cores"] >= 1 and machine["versions"]["jax"]
    assert machine["jax_backend"] == "cpu"

    (group,) = result["groups"]
    assert group["config"] == {
        "name": "tiny",
        "batch": 4,
        "steps": 8,
        "inputs": 8,
        "hidden": 16,
        "long": False,
    }
    rows = {(r["impl"], r["mode"]): r for r in group["results"]}
    names = {impl for impl, _ in rows}
    assert {"jrnn", "flax.linen RNN(GRUCell)"} <= names
    if have_torch:
        assert any(n.startswith("torch nn.GRU") for n in names), names
    for mode in ("train", "forward"):
        assert ("jrnn", mode) in rows
    # JAX's cuDNN LSTM is skipped with its reason (a GRU, and no GPU here)
    assert any(s.startswith("jax.experimental.rnn: ") for s in group["skipped"]), group
    assert {r["precision"] for r in group["results"]} == {"float32"}
    assert result["settings"]["precision"] == "highest"

    tokens = 4 * 8
    for r in group["results"]:
        assert len(r["times_s"]) == 2 and all(t > 0 for t in r["times_s"])
        assert math.isclose(r["tokens_per_s"], tokens / r["median_s"], rel_tol=1e-9)
        assert r["gflops"] > 0 and r["fraction_of_matmul_limit"] > 0
        assert r["first_call_s"] > 0
        if r["framework"] == "jax":
            assert r["compile_s"] > 0
            mem = r["xla_memory"]
            assert mem["peak_bytes"] == mem["temp_bytes"] + mem["output_bytes"] > 0
    # analytic FLOPs: forward 2·B·T·(I+H)·G·H with G = 3 GRU gates, training 3x
    fwd = rows[("jrnn", "forward")]["flops"]
    assert fwd == 2 * 4 * 8 * (8 + 16) * 3 * 16
    assert rows[("jrnn", "train")]["flops"] == 3 * fwd
    limit = group["matmul_limit"]
    assert limit["recurrent_gflops"] > 0 and limit["input_gflops"] > 0
    for mode in ("train", "forward"):
        ratio = group["ratios"][mode]
        assert ratio["fastest_jax_peer"] == "flax.linen RNN(GRUCell)"
        assert ratio["over_fastest_peer"] > 0 and ratio["over_fastest_jax_peer"] > 0

    md = (tmp_path / "results.md").read_text()
    assert "### GRU training step" in md and "### GRU forward (inference)" in md
    assert "| jrnn |" in md and "tiny tok/s" in md and "jrnn / fastest peer" in md
    assert "| precision |" in md and "(--precision highest)" in md


def test_the_jax_cudnn_peer_computes_jrnns_lstm() -> None:
    """The ``jax.experimental.rnn`` peer's flat cuDNN weights, mapped as its docstring says
    (``w_ih = W_ih.T``, ``w_hh = W_hh.T``, ``b = b_ih + b_hh``), make ``jrnn.lstm`` compute
    JAX's reference of that cuDNN LSTM (``lstm_ref``, which runs on CPU): the speed rows
    compare the same function."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.experimental import rnn

    import jrnn

    B, T, I, H = 3, 7, 5, 6
    f64 = jnp.float64  # this test session runs in float64 with strict dtype promotion
    weights = rnn.init_lstm_weight(jax.random.key(0), I, H, 1, False).astype(f64)
    xs = jax.random.normal(jax.random.key(1), (B, T, I), f64)
    h0 = jax.random.normal(jax.random.key(2), (1, B, H), f64)
    c0 = jax.random.normal(jax.random.key(3), (1, B, H), f64)
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, I, H, 1, False)
    lengths = jnp.full((B,), T, jnp.int32)
    ys_ref, h_ref, c_ref = rnn.lstm_ref(
        xs, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, I, H, 1, 0.0, False
    )
    params = {"w_ih": w_ih[0].T, "w_hh": w_hh[0].T, "b": b_ih[0] + b_hh[0]}
    carry = jrnn.LSTMState(h=h0[0], c=c0[0])
    ys, last = jrnn.unroll(jrnn.lstm(H), params, xs, carry=carry)
    np.testing.assert_allclose(ys, ys_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(last.h, h_ref[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(last.c, c_ref[0], rtol=1e-12, atol=1e-12)


def test_regularisers_effect_writes_json_markdown_and_plot(tmp_path: Path) -> None:
    """``benchmarks.regularisers_effect`` at a toy size: two ``jrnn train`` runs, then the
    curves and the table from their run folders."""
    env = _env()
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.regularisers_effect",
        "--variants=plain,zoneout 0.1",
        "--hidden=8",
        "--max-chars=20000",
        "--steps=4",
        "--eval-every=2",
        "--log-every=2",
        "--nice=0",
        f"--runs={tmp_path / 'runs'}",
        f"--out={tmp_path}",
        f"--plot={tmp_path / 'effect.png'}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "regularisers_effect.json").read_text())
    assert [r["variant"] for r in result["runs"]] == ["plain", "zoneout 0.1"]
    for r in result["runs"]:
        assert [s for s, _ in r["val_bpc_curve"]] == [2, 4]
        assert [s for s, _ in r["train_bpc_curve"]] == [2, 4]
        assert math.isfinite(r["best_val_bpc"]) and r["best_val_bpc"] <= r["final_val_bpc"]
    assert "--zoneout 0.1" not in result["train_command"]  # the shared flags only
    table = (tmp_path / "regularisers_effect.md").read_text()
    assert "| zoneout 0.1 |" in table and (tmp_path / "effect.png").stat().st_size > 0


def test_hugepages_compares_both_settings_in_their_own_processes(tmp_path: Path) -> None:
    """``benchmarks.hugepages`` at a toy size: a ``jrnn train`` run per setting, the table
    of their speeds and page faults."""
    flags = "--hidden 8 --embed 4 --max-chars 20000 --batch-size 4 --seq-len 16 --log-every 2"
    cmd = [sys.executable, "-m", "benchmarks.hugepages", "--pairs=1", "--steps=8"]
    cmd += ["--warmup=2", f"--train-flags={flags}", f"--out={tmp_path}"]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "hugepages.json").read_text())
    for setting in ("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=1"):
        (run,) = result["runs"][setting]
        assert run["jrnn train (default)/tokens_per_s"] > 0
        assert run["jrnn train (default)/faults_per_step"] > 0
    table = (tmp_path / "hugepages.md").read_text()
    assert "| jrnn train (default)/tokens_per_s |" in table


def test_example_keys_times_one_key_against_one_key_per_example(tmp_path: Path) -> None:
    """``benchmarks.example_keys`` at a toy size: both variants timed, the table written."""
    from benchmarks.example_keys import main

    result = main(["--config=4,6,3,8", "--rounds=1", "--iters=1", f"--out={tmp_path}"])
    assert set(result["best_s"]) == {"one key", "one key per example"}
    assert all(t > 0 for t in result["best_s"].values())
    assert "| one key per example |" in (tmp_path / "example_keys.md").read_text()


def test_mqar_cells_matches_parameter_counts_and_writes_json_markdown_and_plot(tmp_path: Path):
    """``benchmarks.mqar_cells`` at a toy size: the cells at the LSTM's parameter count
    (within 10%), a few steps each, the table and the plot; the sLSTM trains where the
    library has it and is listed as skipped where not."""
    import jrnn

    cmd = [sys.executable, "-m", "benchmarks.mqar_cells", "--cells=lstm,mlstm,slstm"]
    cmd += ["--pairs=2", "--symbols=4", "--seq-len=6", "--hidden=16", "--embed=4", "--layers=1"]
    cmd += ["--mlstm-head-dim=2", "--steps=4", "--eval-every=2", "--batch-size=4"]
    cmd += [f"--out={tmp_path}", f"--plot={tmp_path / 'mqar.png'}"]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "mqar_cells.json").read_text())
    have_slstm = hasattr(jrnn, "slstm")
    cells = ["lstm", "mlstm"] + (["slstm"] if have_slstm else [])
    assert [r["cell"] for r in result["cells"]] == cells
    assert result["skipped"] == ([] if have_slstm else ["slstm"])
    lstm = result["cells"][0]
    assert lstm["hidden"] == 16 and result["baseline"] == 0.5
    for row in result["cells"]:
        assert abs(row["params"] / lstm["params"] - 1) <= 0.1, row
        (run,) = row["runs"]
        assert [p["step"] for p in run["curve"]] == [2, 4]
        assert 0 <= run["val_accuracy"] <= 1 and math.isfinite(run["val_loss"])
    assert result["cells"][1]["hidden"] % 2 == 0  # whole mLSTM heads
    assert result["machine"]["cpu_count"] >= 1
    table = (tmp_path / "mqar_cells.md").read_text()
    assert "| mlstm |" in table and "query accuracy" in table
    assert (tmp_path / "mqar.png").stat().st_size > 0


def test_charlm_cells_matches_parameter_counts_and_writes_json_markdown_and_plot(tmp_path: Path):
    """``benchmarks.charlm_cells`` at a toy size: the cells' character LMs at the LSTM's
    parameter count (within 10%), a few steps each on a few thousand characters of the
    default corpus, finite held-out and training bits/char, the table and the plot."""
    import jrnn

    cmd = [sys.executable, "-m", "benchmarks.charlm_cells", "--cells=lstm,mlstm,slstm"]
    cmd += ["--max-chars=3000", "--hidden=16", "--embed=4", "--layers=1", "--seq-len=16"]
    cmd += ["--mlstm-head-dim=2", "--steps=4", "--eval-every=2", "--batch-size=4"]
    cmd += ["--eval-batch-size=4", f"--out={tmp_path}", f"--plot={tmp_path / 'charlm.png'}"]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "charlm_cells.json").read_text())
    have_slstm = hasattr(jrnn, "slstm")
    cells = ["lstm", "mlstm"] + (["slstm"] if have_slstm else [])
    assert [r["cell"] for r in result["cells"]] == cells
    assert result["skipped"] == ([] if have_slstm else ["slstm"])
    lstm = result["cells"][0]
    assert lstm["hidden"] == 16 and result["data"]["val_chars"] > 0
    assert result["baseline"] == math.log2(result["data"]["vocab_size"])
    for row in result["cells"]:
        assert abs(row["params"] / lstm["params"] - 1) <= 0.1, row
        (run,) = row["runs"]
        assert [p["step"] for p in run["curve"]] == [2, 4]
        for point in run["curve"]:
            assert 0 < point["val_bpc"] < 2 * result["baseline"], point
            assert 0 < point["train_bpc"] < 2 * result["baseline"], point
    assert result["cells"][1]["hidden"] % 2 == 0  # whole mLSTM heads
    table = (tmp_path / "charlm_cells.md").read_text()
    assert "| mlstm |" in table and "held-out bpc" in table and "Command:" in table
    assert (tmp_path / "charlm.png").stat().st_size > 0
