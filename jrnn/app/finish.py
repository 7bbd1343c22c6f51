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


def already_complete(
    config: Config, out: Path, task: Any, params: Any, primary: bool = True
) -> dict[str, Any]:
    """The result of a resumed run that has no step left: its last evaluation's metrics.

    A run killed after its last checkpoint but before its sample was written gets the
    sample now, from the same parameters and seed: the one the uninterrupted run wrote."""
    steps = config.steps
    evals = [r for r in runs.read_rows(out / "metrics.jsonl") if "loss" not in r]
    result = {"step": steps, **{k: v for k, v in (evals[-1] if evals else {}).items()}}
    if not primary:
        return result
    print(f"{out}: the run is already complete ({steps} steps)")
    if not (out / "loss.png").exists():
        from jrnn.app.plots import plot_loss

        plot_loss(out, task.name, *task.plot_key)
    if not (out / "sample.txt").exists() and _write_sample(config, out, task, params):
        print(f"wrote the missing {out / 'sample.txt'}")
    return result


def _write_sample(config: Config, out: Path, task: Any, params: Any) -> str | None:
    """A text run's sample of its final ``params`` (temperature 0.8, the run's seed),
    written atomically to sample.txt; ``None`` for a task without one."""
    if task.generate is None or config.sample_length <= 0:
        return None
    text = task.generate(params, "\n", config.sample_length, 0.8, config.seed)
    runs.write_text_atomic(out / "sample.txt", text)
    return text


def finish(
    config: Config, out: Path, task: Any, outcome: Outcome, primary: bool = True
) -> dict[str, Any]:
    """Plots the losses, then raises the loop's failure, or prints and returns the final
    metrics (``{"step": steps, "val_...": ..., "baseline": ...}``) and writes the sample
    (``primary``: process 0 of several, or the only one; the others return the metrics)."""
    from jrnn.app.plots import plot_loss

    if primary:
        plot_loss(out, task.name, *task.plot_key)
    if outcome.failure is not None:
        raise outcome.failure
    steps, last_eval, params = config.steps, outcome.last_eval, outcome.state.params
    result: dict[str, Any] = {"step": steps, **last_eval}
    if not primary:
        if task.baseline is not None:
            result["baseline"] = task.baseline[1]
        return result
    if last_eval:
        print(f"step {steps}: {format_row(last_eval)}")
    if task.baseline is not None:
        what, value = task.baseline
        result["baseline"] = value
        print(f"baseline ({what}): {value:.4f}")
    if task.show is not None:
        print("\n".join(task.show(params, 4)))
    text = _write_sample(config, out, task, params)
    if text is not None:
        print(f"--- sample (temperature 0.8) ---\n{text}\n---")
    print(f"run folder: {out}")
    return result
