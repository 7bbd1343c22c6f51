"""The step loop of a run: train, log, evaluate and checkpoint, step after step, until the
last step, a non-finite loss, or Ctrl-C / SIGTERM.

Every ``log_every`` steps a row goes to metrics.jsonl, every ``eval_every`` steps an
evaluation row, every ``checkpoint_every`` steps (and at the last step) a checkpoint of the
train state, the carried state with TBPTT and the metric accumulators.  A non-finite loss
stops the loop before that step is counted or saved (unless ``skip_nonfinite``); a signal
stops it after the current step, saved and on disk.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from jrnn.app import devices
from jrnn.app.config import Config
from jrnn.app.errors import NonFiniteLoss, TrainingInterrupted
from jrnn.app.prepare import StepFns
from jrnn.app.progress import Progress
from jrnn.app.state import checkpoint_tree

__all__ = ["Outcome", "run_steps", "stop_signals"]


class Outcome(NamedTuple):
    """How the loop ended: the last train state and carry, the last evaluation's metrics,
    and the error to raise (``None`` when every step ran)."""

    state: Any
    carry: Any
    last_eval: dict[str, Any]
    failure: Exception | None


@contextlib.contextmanager
def stop_signals() -> Iterator[dict[str, Any]]:
    """Turns Ctrl-C and SIGTERM into a request to stop: ``stop["signal"]`` is set and the
    loop stops after its step (a second signal acts at once).  Outside the main thread,
    where signals cannot be caught, nothing changes.  The handlers are restored on exit."""
    stop: dict[str, Any] = {"signal": None}
    previous: dict[int, Any] = {}

    def on_signal(signum, frame):
        stop["signal"] = signum
        signal.signal(signum, previous[signum])  # a second one interrupts at once

    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, on_signal)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _non_finite(loss: float, step: int, ckpt: Any) -> NonFiniteLoss:
    last = ckpt.latest_step()
    kept = (
        f"the last good checkpoint (step {last}) is kept in {ckpt.directory}"
        if last is not None
        else "no checkpoint was written"
    )
    return NonFiniteLoss(
        f"non-finite loss ({loss}) at step {step}; stopped without "
        f"saving it: {kept} (try a lower --lr or --clip, or --skip-nonfinite)"
    )


def run_steps(
    config: Config,
    out: Path,
    task: Any,
    ckpt: Any,
    fns: StepFns,
    state: Any,
    carry: Any,
    start: int,
    acc: dict[str, Any],
    show_bar: bool,
    primary: bool = True,
) -> Outcome:
    """Runs steps ``start + 1 .. config.steps`` from ``state``, ``carry`` and the metric
    accumulators ``acc``; ``ckpt`` is closed when it returns."""
    import jax
    import jax.numpy as jnp

    steps = config.steps
    failure: Exception | None = None
    last_saved = start  # the loop's steps are all later: none of them is saved yet
    with contextlib.ExitStack() as stack:  # closed in reverse: rows and bar, signals, ckpt
        stack.callback(ckpt.close)
        stop = stack.enter_context(stop_signals())
        meter = stack.enter_context(
            Progress(task, out / "metrics.jsonl", steps, start, acc, show_bar and primary, primary)
        )

        def save(step: int) -> None:
            meta = {"step": step, "acc": meter.acc, "rows": meter.rows, "task": task.name}
            ckpt.save(step, checkpoint_tree(task, state, carry), meta)

        for s in range(start + 1, steps + 1):
            batch = fns.batch_fn(task.data, jnp.asarray(s - 1, jnp.int32))
            if task.has_carry:
                state, carry, m = fns.train_step(state, carry, batch)
            else:
                state, m = fns.train_step(state, batch)
            m = jax.device_get(m)
            if not bool(m["finite"]) and not config.skip_nonfinite:
                failure = _non_finite(float(m["loss"]), s, ckpt)
                break
            meter.count(m)
            if s % config.log_every == 0 or s == steps:
                meter.log(s)
            if s % config.eval_every == 0 or s == steps:
                meter.evaluated(s, task.eval_row(fns.run_eval(state.params)))
            if s % config.checkpoint_every == 0 or s == steps:
                save(s)
                last_saved = s
            if devices.any_process(stop["signal"] is not None):  # all stop at this step
                if last_saved != s:
                    save(s)
                ckpt.wait()
                failure = TrainingInterrupted(
                    f"interrupted at step {s}: checkpoint saved in {ckpt.directory}; continue "
                    f"with: jrnn train --out {out} --resume",
                    s,
                )
                break
    return Outcome(state, carry, meter.last_eval, failure)
