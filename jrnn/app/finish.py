"""After a run's last step: the loss plot, the final metrics and baseline, examples of what
the model does, and a text run's sample (sample.txt); or the failure that stopped it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jrnn.app import runs
from jrnn.app.config import Config
from jrnn.app.progress import format_row
from jrnn.app.steps import Outcome

__all__ = ["already_complete", "finish"]


def already_complete(out: Path, steps: int) -> dict[str, Any]:
    """The result of a resumed run that has no step left: its last evaluation's metrics."""
    print(f"{out}: the run is already complete ({steps} steps)")
    evals = [r for r in runs.read_rows(out / "metrics.jsonl") if "loss" not in r]
    return {"step": steps, **{k: v for k, v in (evals[-1] if evals else {}).items()}}


def finish(config: Config, out: Path, task: Any, outcome: Outcome) -> dict[str, Any]:
    """Plots the losses, then raises the loop's failure, or prints and returns the final
    metrics (``{"step": steps, "val_...": ..., "baseline": ...}``) and writes the sample."""
    from jrnn.app.plots import plot_loss

    plot_loss(out, task.name, *task.plot_key)
    if outcome.failure is not None:
        raise outcome.failure
    steps, last_eval, params = config.steps, outcome.last_eval, outcome.state.params
    result: dict[str, Any] = {"step": steps, **last_eval}
    if last_eval:
        print(f"step {steps}: {format_row(last_eval)}")
    if task.baseline is not None:
        what, value = task.baseline
        result["baseline"] = value
        print(f"baseline ({what}): {value:.4f}")
    if task.show is not None:
        print("\n".join(task.show(params, 4)))
    if task.generate is not None and config.sample_length > 0:
        text = task.generate(params, "\n", config.sample_length, 0.8, config.seed)
        (out / "sample.txt").write_text(text, encoding="utf-8")
        print(f"--- sample (temperature 0.8) ---\n{text}\n---")
    print(f"run folder: {out}")
    return result
