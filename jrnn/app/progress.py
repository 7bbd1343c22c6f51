"""What a training run reports as it goes: rows of ``metrics.jsonl``, the tqdm progress bar
and its postfix, and the metric accumulators between two log rows.

A log row holds the means since the previous one (``loss``, the task's metric, the gradient
norms; ``None`` when every step was skipped), the skipped count, the throughput
(``tokens_per_s``, evaluation time left out) and the time since the start; an evaluation
row the task's validation metrics.  The accumulators are saved with each checkpoint, so a
resumed run writes the rows of the uninterrupted one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from jrnn.app import runs

__all__ = ["Progress", "format_row"]


def format_row(row: dict[str, Any]) -> str:
    """``key=value`` pairs of a metrics row, floats to 4 places, timing columns left out."""
    return " ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
        for k, v in row.items()
        if k not in runs.TIMING_KEYS
    )


class Progress:
    """The metrics rows, progress bar and accumulators of one training session.

    Args:
      task: the built task (its ``name``, ``metric`` and ``tokens_per_step``).
      metrics_path: ``metrics.jsonl``, appended to.
      steps: the run's total steps.
      start: the step the session starts after.
      acc: the accumulators restored with the checkpoint (``{}`` for a new run).
      show_bar: draw the bar on stderr.
      write: write the rows (process 0 of several; the others count them only).
    """

    def __init__(
        self,
        task: Any,
        metrics_path: Path,
        steps: int,
        start: int,
        acc: dict[str, Any],
        show_bar: bool,
        write: bool = True,
    ) -> None:
        from tqdm.auto import tqdm

        self.acc = acc
        self.last_eval: dict[str, Any] = {}
        self._metric = task.metric
        self._keys = ("loss", task.metric, *runs.GRAD_NORMS)
        self._tokens_per_step = task.tokens_per_step
        self._post: dict[str, Any] = {}
        self._bar = tqdm(
            total=steps,
            initial=start,
            desc=f"train {task.name}",
            unit="step",
            dynamic_ncols=True,
            disable=not show_bar,
            file=sys.stderr,
        )
        self._t_log = time.perf_counter()
        self._t_start = self._t_log
        self._since_log = 0
        self.rows = len(runs.read_rows(metrics_path))  # saved with each checkpoint
        self._write_rows = write
        try:
            self._rows = open(metrics_path if write else os.devnull, "a", encoding="utf-8")
        except BaseException:
            self._bar.close()
            raise

    def count(self, m: dict[str, Any]) -> None:
        """Adds one step's metrics to the accumulators (a non-finite step as skipped)."""
        self._since_log += 1
        if bool(m["finite"]):
            for k in self._keys:
                self.acc[k] = self.acc.get(k, 0.0) + float(m[k])
            self.acc["n"] = self.acc.get("n", 0) + 1
        else:
            self.acc["skipped"] = self.acc.get("skipped", 0) + 1
        self._bar.update(1)

    def log(self, step: int) -> None:
        """Writes the log row of ``step`` (the means since the last) and resets the means."""
        now = time.perf_counter()
        n = self.acc.get("n", 0)
        row: dict[str, Any] = {"step": step}
        for k in self._keys:
            row[k] = self.acc[k] / n if n else None
        if self.acc.get("skipped"):
            row["skipped"] = self.acc["skipped"]
        row["tokens_per_s"] = round(self._tokens_per_step * self._since_log / (now - self._t_log))
        row["time"] = round(now - self._t_start, 3)
        self._write(row)
        self.acc = {}
        self._t_log, self._since_log = now, 0
        post = {"loss": row["loss"], self._metric: row[self._metric]}
        self._post = {k: f"{v:.4f}" for k, v in post.items() if v is not None}
        self._post["tok/s"] = row["tokens_per_s"]
        self._post.update({k: f"{v:.4f}" for k, v in self.last_eval.items()})
        self._bar.set_postfix(self._post, refresh=False)

    def evaluated(self, step: int, values: dict[str, Any]) -> None:
        """Writes and prints the evaluation row of ``step`` (``values``: the task's
        validation metrics); the evaluation's time is not counted as training throughput."""
        row = {"step": step, **values}
        self._write(row)
        self.last_eval = {k: v for k, v in row.items() if k != "step"}
        self._post.update({k: f"{v:.4f}" for k, v in self.last_eval.items()})
        self._bar.set_postfix(self._post, refresh=True)
        if self._write_rows:
            self._bar.write(f"eval {format_row(row)}")
        self._t_log = time.perf_counter()

    def _write(self, row: dict[str, Any]) -> None:
        self._rows.write(json.dumps(row) + "\n")
        self._rows.flush()
        self.rows += 1

    def close(self) -> None:
        """Closes ``metrics.jsonl`` and the bar."""
        try:
            self._rows.close()
        finally:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
