"""``jrnn diagnose``: the lecture's vanishing/exploding-gradient diagnostics as files.

Two entry points, one report:

* `diagnose_cells` -- cells at initialisation on a batch of the adding problem
  (``jrnn diagnose --cell rnn lstm gru --seq-len 100 --out DIR``): for each cell
  ``‖∂L/∂h_t‖₂`` of the task's loss (MSE of a linear read-out of ``h_T``), the step-Jacobian
  norms ``‖∂h_t/∂h_{t-1}‖₂``, the Jacobian products ``‖∂h_T/∂h_t‖₂`` with their growth rate
  (a finite-time Lyapunov exponent) and the gate saturation.
* `diagnose_run` -- a trained run (``jrnn diagnose RUN_DIR``): the same loss-free
  quantities (step Jacobians, Jacobian products, gate saturation) for the first recurrent
  layer of its latest checkpoint, on a batch of its task.  ``‖∂L/∂h_t‖`` needs the task's
  loss as a function of the hidden states; from Python,
  [`jrnn.diagnostics.state_grad_norms`][] takes any such loss.

Both write ``diagnostics.json`` (every curve, batch geometric means over valid steps, plus
summaries) and PNG figures into the output folder, and return the JSON's content.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from jrnn.app import runs
from jrnn.app.config import CELLS
from jrnn.app.errors import UsageError

__all__ = ["DIAGNOSE_TASKS", "OPTIONS", "diagnose", "diagnose_cells", "diagnose_run", "summary"]

DIAGNOSE_TASKS = ("adding",)
"""Tasks `diagnose_cells` builds a batch of (the adding problem of the lecture)."""

SINGLE_RECURRENCE = ("lm", "seq2vec", "tagger", "bitagger")
"""``--model``s whose runs `diagnose_run` reads: one [`jrnn.Model`][jrnn.models.Model]
recurrence."""


def add_arguments(parser: Any) -> None:
    """The flags of ``jrnn diagnose`` (the command line's parser is `jrnn.cli`'s)."""
    from jrnn.app.config import arg_type

    parser.add_argument(
        "dir", metavar="DIR", nargs="?", help="a run folder (default: cells at init)"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default: DIR/diagnostics, or diagnostics-YYYYmmdd-HHMMSS)",
    )
    parser.add_argument(
        "--cell",
        nargs="+",
        choices=CELLS,
        metavar="CELL",
        help=f"cells to compare ({', '.join(CELLS)}; default rnn lstm gru)",
    )
    parser.add_argument("--task", choices=DIAGNOSE_TASKS, help="batch of (adding)")
    parser.add_argument("--seq-len", type=arg_type("posint"), metavar="T", help="T (100)")
    parser.add_argument("--hidden", type=arg_type("posint"), metavar="N", help="hidden size (64)")
    parser.add_argument("--batch-size", type=arg_type("posint"), metavar="N", help="batch (32)")
    parser.add_argument(
        "--recurrent-scale",
        type=arg_type("posfloat"),
        metavar="X",
        help="multiply w_hh after init; > 1 makes the RNN explode (1)",
    )
    parser.add_argument(
        "--forget-bias", type=float, metavar="X", help="the LSTMs' forget-gate bias (1)"
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "float64"),
        help="float64 (default) keeps vanishing norms from underflowing",
    )
    parser.add_argument("--seed", type=arg_type("int"), metavar="N", help="seed (0)")


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--out {out}: {parent} is not a folder")
            break


OPTIONS = (
    "cell",
    "task",
    "seq_len",
    "hidden",
    "batch_size",
    "recurrent_scale",
    "forget_bias",
    "precision",
    "seed",
)
"""The options of ``jrnn diagnose`` (``--cell`` ... ``--seed``)."""


def diagnose(
    directory: str | Path | None = None, out: str | Path | None = None, **options: Any
) -> tuple[dict[str, Any], Path]:
    """``jrnn diagnose [DIR]``: `diagnose_run` of ``directory`` (only ``batch_size``
    applies), else `diagnose_cells` (``cell`` defaults to rnn, lstm, gru; ``out`` to
    ``diagnostics-YYYYmmdd-HHMMSS``).  Returns the report and the folder written."""
    import datetime

    if directory is not None:
        extra = sorted(set(options) - {"batch_size"})
        if extra:
            flags = ", ".join("--" + k.replace("_", "-") for k in extra)
            raise UsageError(f"{flags}: only without DIR (cells at initialisation)")
        out = Path(directory) / "diagnostics" if out is None else Path(out)
        return diagnose_run(directory, out, **options), out
    if out is None:
        out = f"diagnostics-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    cells = options.pop("cell", ("rnn", "lstm", "gru"))
    return diagnose_cells(cells, out, **options), Path(out)


def summary(report: dict[str, Any], out: Path) -> list[str]:
    """One line per cell (gradient ratio, median step-Jacobian norm, Lyapunov exponent) and
    the files written."""
    lines = []
    for name, row in report["cells"].items():
        parts = [f"{name}:"]
        if row.get("grad_norm_ratio_first_over_last") is not None:
            parts.append(f"|dL/dh_1| / |dL/dh_T| = {row['grad_norm_ratio_first_over_last']:.3g}")
        if row["step_jacobian_norm"]["median"] is not None:
            parts.append(f"median |dh_t/dh_t-1| = {row['step_jacobian_norm']['median']:.3g}")
        if row["lyapunov_mean"] is not None:
            parts.append(f"lyapunov = {row['lyapunov_mean']:.3g}")
        lines.append("  ".join(parts))
    lines.append(f"wrote {out / 'diagnostics.json'} and {', '.join(report['figures'])}")
    return lines


_READ_OUT = {
    "lru": "the LRU's output is a read-out of its complex state",
    "mlstm": "the mLSTM's output is a read-out of its matrix memory",
}
"""Cells whose output is not their state ``h``: diagnose refuses them."""


def _check_arguments(
    cells: Sequence[str],
    task: str,
    seq_len: int,
    hidden: int,
    batch_size: int,
    recurrent_scale: float,
    forget_bias: float,
    precision: str,
) -> None:
    """`diagnose_cells`' arguments, each bad one a `UsageError` naming its flag."""
    if not cells:
        raise UsageError("--cell: give at least one cell")
    for name in cells:
        if name not in CELLS:
            raise UsageError(f"--cell: invalid choice: {name!r} (choose from {', '.join(CELLS)})")
        if name in _READ_OUT:
            raise UsageError(
                f"--cell {name}: diagnose reads the gradient through h_t = y_t, but "
                f"{_READ_OUT[name]}"
            )
        if name in ("mingru", "minlstm", "rglru") and recurrent_scale != 1.0:
            raise UsageError(f"--recurrent-scale: --cell {name} has no recurrent matrix w_hh")
        if name == "slstm" and recurrent_scale != 1.0:
            raise UsageError(
                "--recurrent-scale: --cell slstm's recurrent weights start at zero (the "
                "authors' init), there is nothing to scale"
            )
    if len(set(cells)) != len(cells):
        raise UsageError(f"--cell: each cell once, got {' '.join(cells)}")
    if task not in DIAGNOSE_TASKS:
        raise UsageError(f"--task: diagnose builds {', '.join(DIAGNOSE_TASKS)}, got {task!r}")
    for flag, value in (("--seq-len", seq_len), ("--hidden", hidden), ("--batch-size", batch_size)):
        if not (isinstance(value, int) and value >= (2 if flag == "--seq-len" else 1)):
            raise UsageError(
                f"{flag} must be an int >= {2 if flag == '--seq-len' else 1}, got {value!r}"
            )
    if not (math.isfinite(recurrent_scale) and recurrent_scale > 0):
        raise UsageError(f"--recurrent-scale must be a positive number, got {recurrent_scale!r}")
    if not math.isfinite(forget_bias):
        raise UsageError(f"--forget-bias must be a finite number, got {forget_bias!r}")
    if precision not in ("float32", "float64"):
        raise UsageError(f"--precision must be float32 or float64, got {precision!r}")


def diagnose_cells(
    cells: Sequence[str],
    out: str | Path,
    *,
    task: Literal["adding"] = "adding",
    seq_len: int = 100,
    hidden: int = 64,
    batch_size: int = 32,
    recurrent_scale: float = 1.0,
    forget_bias: float = 1.0,
    precision: Literal["float32", "float64"] = "float64",
    seed: int = 0,
) -> dict[str, Any]:
    """Diagnoses ``cells`` at initialisation on one batch of ``task``; writes ``out``.

    Args:
      cells: names of ``jrnn train --cell`` (``rnn``, ``lstm``, ``lstm-peephole``, ``gru``,
        ``gru-reset-after``), each once.
      out: the folder written (``diagnostics.json``, ``grad_norms.png``,
        ``jacobian_norms.png``, ``jacobian_products.png``, ``gate_saturation.png``).
      task: the batch's task (the adding problem, [`jrnn.seqtasks.adding_problem`][]).
      seq_len: ``T``.
      hidden: hidden size of every cell.
      batch_size: sequences in the batch.
      recurrent_scale: multiplies every recurrent weight (``w_hh``) after initialisation;
        above 1 the Elman RNN's gradients explode.
      forget_bias: the LSTMs' forget-gate bias.
      precision: ``float64`` (default: the vanishing norms underflow float32 for long
        ``T``) or ``float32``.
      seed: PRNG seed of the batch and the parameters (the same batch for every cell).

    Returns:
      The content of ``diagnostics.json``.
    """
    out = Path(out)
    _check_arguments(cells, task, seq_len, hidden, batch_size, recurrent_scale, forget_bias,
                     precision)  # fmt: skip
    _check_out(out)

    import jax
    import jax.numpy as jnp

    from jrnn.app.tasks.common import build_cell
    from jrnn.diagnostics import state_grad_norms
    from jrnn.seqtasks import adding_problem

    with jax.enable_x64(precision == "float64"):
        dtype = jnp.dtype(precision)
        k_data, k_params = jax.random.split(jax.random.key(seed))
        xs, ys = adding_problem(k_data, batch_size, seq_len)
        xs, ys = xs.astype(dtype), ys.astype(dtype)
        entries = {}
        for i, name in enumerate(cells):
            cell = build_cell(name, hidden, dtype=dtype, param_dtype=dtype, forget_bias=forget_bias)
            k_cell, k_out = jax.random.split(jax.random.fold_in(k_params, i))
            params = cell.init(k_cell, 2)
            if recurrent_scale != 1.0:
                params = {**params, "w_hh": recurrent_scale * params["w_hh"]}
            w_out = jax.nn.initializers.lecun_normal()(k_out, (cell.output_size, 1), dtype)

            def loss_fn(outputs, w_out=w_out):
                pred = (outputs[:, -1] @ w_out)[:, 0]
                return jnp.mean((pred - ys) ** 2)

            grads = jax.jit(lambda p, c=cell, f=loss_fn: state_grad_norms(c, p, xs, f))(params)
            entries[name] = {**_loss_free(cell, params, xs, None), "grad_norms": grads}
        setup = {
            "what": "cells at initialisation",
            "task": task,
            "loss": "MSE of a linear read-out of h_T (lecun-normal weights)",
            "seq_len": seq_len,
            "hidden": hidden,
            "batch_size": batch_size,
            "recurrent_scale": recurrent_scale,
            "forget_bias": forget_bias,
            "precision": precision,
            "seed": seed,
        }
        return _write(out, setup, entries, f"{task}, T = {seq_len}, at initialisation")


def diagnose_run(
    directory: str | Path, out: str | Path | None = None, *, batch_size: int = 32
) -> dict[str, Any]:
    """Diagnoses the first recurrent layer of a run's latest checkpoint on a batch of its
    task (its training batch at step 0); writes ``out`` (default ``DIR/diagnostics``).

    For runs of the single-recurrence models (``--model lm``, ``seq2vec``, ``tagger``,
    ``bitagger``; not the encoder-decoders or the output-recurrence networks); the cell's
    inputs are what the model feeds it (embedded or one-hot tokens, or the task's
    features).
    """
    from jrnn.app.restore import open_run

    directory = Path(directory)
    config = runs.read_config(directory)
    out = directory / "diagnostics" if out is None else Path(out)
    _check_out(out)
    if config.arch not in SINGLE_RECURRENCE:
        raise UsageError(
            f"diagnose needs a run of a single-recurrence model ({', '.join(SINGLE_RECURRENCE)}"
            f"); {directory} is a {config.arch} run"
        )
    if not (directory / "checkpoints").is_dir() or not runs.checkpoint_steps(directory):
        raise UsageError(f"{directory} has no checkpoint yet")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise UsageError(f"--batch-size must be a positive int, got {batch_size!r}")
    run = open_run(directory, config, need_corpus=True, batch_size=batch_size)
    model = run.task.model
    import jax

    from jrnn.model_base import embed_tokens

    xs, lengths = _model_inputs(run.task.batch_fn(run.task.data, jax.numpy.int32(0)))
    params = run.params
    if model.vocab_size is not None:
        xs = embed_tokens(params.get("embed"), xs, model.vocab_size, params["w_ho"].dtype)
    rnn, rnn_params = model.rnn, params["rnn"]
    if hasattr(rnn, "num_layers"):  # a jrnn.Stack: layer 0, forward direction
        rnn, rnn_params = rnn.cell, rnn_params[0][0]
    entries = {config.cell: _loss_free(rnn, rnn_params, xs, lengths)}
    setup = {
        "what": "a trained run, first recurrent layer (forward direction)",
        "run": str(directory),
        "step": run.step,
        "task": config.task,
        "model": config.arch,
        "cell": config.cell,
        "hidden": config.hidden,
        "batch_size": int(xs.shape[0]),
        "seq_len": int(xs.shape[1]),
    }
    return _write(out, setup, entries, f"{directory.name}, step {run.step}")


def _model_inputs(batch: Any) -> tuple[Any, Any]:
    """The model's inputs and lengths in a training batch of any task."""
    fields = getattr(batch, "_fields", None)
    if fields is not None:
        for name, lengths in (("inputs", "lengths"), ("src", "src_lengths")):
            if name in fields:
                return getattr(batch, name), getattr(batch, lengths, None)
    if isinstance(batch, tuple):  # (xs, ys)
        return batch[0], None
    return batch[:, :-1], None  # charlm: windows of ids, the last is only a target


def _loss_free(cell: Any, params: Any, xs: Any, lengths: Any) -> dict[str, Any]:
    import jax

    from jrnn.diagnostics import gate_saturation, jacobian_product_norms, step_jacobian_norms

    step = jax.jit(lambda p, x, n: step_jacobian_norms(cell, p, x, lengths=n))(params, xs, lengths)
    prod = jax.jit(lambda p, x, n: jacobian_product_norms(cell, p, x, lengths=n))(
        params, xs, lengths
    )
    try:
        gates = gate_saturation(cell, params, xs, lengths=lengths)
    except ValueError:  # an RNN with an activation that does not saturate
        gates = None
    return {"step_jacobian_norms": step, "jacobian_products": prod, "gates": gates}


def _geo_mean(values: Any) -> list[float]:
    from jrnn.diagnostics import batch_geometric_mean

    return [float(v) for v in batch_geometric_mean(values)]


def _write(out: Path, setup: dict, entries: dict[str, dict], title: str) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from jrnn.diagnostics import plot_gate_saturation, plot_grad_norms, plot_jacobian_histograms

    report: dict[str, Any] = {**setup, "index": "curves are over t = 0 .. T-1", "cells": {}}
    for name, e in entries.items():
        step = np.asarray(e["step_jacobian_norms"], np.float64)
        valid = step[step > 0]
        prod = e["jacobian_products"]
        lyap = np.asarray(prod.lyapunov, np.float64)
        lyap = lyap[np.isfinite(lyap) & (lyap != 0)]
        row: dict[str, Any] = {
            "step_jacobian_norm": {
                "mean": float(valid.mean()) if valid.size else None,
                "median": float(np.median(valid)) if valid.size else None,
                "fraction_above_1": float((valid > 1).mean()) if valid.size else None,
                "per_t_geometric_mean": _geo_mean(step),
            },
            "jacobian_product_norm_per_t": _geo_mean(prod.norms),
            "lyapunov_mean": float(lyap.mean()) if lyap.size else None,
        }
        if "grad_norms" in e:
            g = _geo_mean(e["grad_norms"])
            row["grad_norm_per_t"] = g
            row["grad_norm_ratio_first_over_last"] = g[0] / g[-1] if g[-1] > 0 else None
        if e["gates"] is not None:
            row["gate_saturation"] = {
                gate: {
                    "kind": s.kind,
                    "low": [float(v) for v in np.asarray(s.low)],
                    "high": [float(v) for v in np.asarray(s.high)],
                    "mean_total": float(np.mean(np.asarray(s.total))),
                }
                for gate, s in e["gates"].items()
            }
        report["cells"][name] = row

    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name):
        fig.tight_layout()
        tmp = out / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=100)
        tmp.replace(out / name)
        plt.close(fig)
        written.append(name)

    if any("grad_norms" in e for e in entries.values()):
        curves = {n: e["grad_norms"] for n, e in entries.items() if "grad_norms" in e}
        save(plot_grad_norms(curves, title=f"‖∂L/∂h_t‖₂: {title}"), "grad_norms.png")
    histos = {n: e["step_jacobian_norms"] for n, e in entries.items()}
    save(plot_jacobian_histograms(histos, title=f"step Jacobians: {title}"), "jacobian_norms.png")
    products = {n: e["jacobian_products"].norms for n, e in entries.items()}
    save(
        plot_grad_norms(products, title=f"‖∂h_T/∂h_t‖₂: {title}", ylabel="‖∂h_T/∂h_t‖₂"),
        "jacobian_products.png",
    )
    gated = {n: e["gates"] for n, e in entries.items() if e["gates"] is not None}
    if gated:
        fig, axes = plt.subplots(
            len(gated), 1, figsize=(7.0, sum(0.45 * 2 * len(g) + 1.0 for g in gated.values()))
        )
        for ax, (name, gates) in zip(np.atleast_1d(axes), gated.items(), strict=True):
            plot_gate_saturation(gates, ax=ax, title=f"{name}: gate saturation")
        save(fig, "gate_saturation.png")
    report["figures"] = written
    runs.write_json_atomic(out / "diagnostics.json", report)
    return report
