"""The run loop: :func:`fit` (``jrnn.app.fit``) trains a :class:`~jrnn.app.config.Config`
into a run folder.

Checks come first (a bad config, corpus or run folder raises :class:`~jrnn.app.UsageError`
before any file is written); then every ``log_every`` steps a row goes to metrics.jsonl,
every ``eval_every`` steps an evaluation row, every ``checkpoint_every`` steps an atomic
checkpoint (the train state, the carried state with TBPTT, and the metric accumulators), so
a run killed at any moment resumes (``resume=True``) to exactly the uninterrupted run.
Ctrl-C or SIGTERM saves a checkpoint and raises :class:`~jrnn.app.TrainingInterrupted`; a
non-finite loss stops the run without saving it and raises :class:`~jrnn.app.NonFiniteLoss`
(unless ``skip_nonfinite``).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from jrnn.app import devices, runs
from jrnn.app.config import FIXED_KEYS, Config, canonical
from jrnn.app.errors import NonFiniteLoss, TrainingInterrupted, UsageError

__all__ = ["build_state", "check_resume", "fit", "format_row", "load_data", "make_optimizer"]


def make_optimizer(config: Config):
    """Adam with a linear warm-up and cosine decay to a tenth of ``lr``."""
    import optax

    steps, lr = config.steps, config.lr
    warmup = min(100, max(steps // 10, 1))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup_steps=warmup, decay_steps=max(steps, warmup + 1), end_value=lr / 10
    )
    return optax.adam(schedule)


def enable_dtype(config: Config) -> None:
    if config.dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


def load_data(config: Config) -> Any:
    """The task's corpus (``None`` for a synthetic task); :class:`UsageError` if unusable."""
    enable_dtype(config)
    return config.spec.load(config) if config.spec.load is not None else None


def build_state(config: Config, corpus: Any = None):
    """``(task, optimizer, state, carry)``: the built task and its initial training state."""
    from jrnn.app.tasks.common import seed_keys
    from jrnn.train import init_train_state

    task = config.spec.build(config, corpus)
    optimizer = make_optimizer(config)
    init_key, _, train_key = seed_keys(config.seed)
    params = task.model.init(init_key)
    state = init_train_state(params, optimizer, train_key)
    carry = task.initial_carry(params) if task.has_carry else None
    return task, optimizer, state, carry


def format_row(row: dict[str, Any]) -> str:
    """``key=value`` pairs of a metrics row, floats to 4 places, timing columns left out."""
    return " ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
        for k, v in row.items()
        if k not in runs.TIMING_KEYS
    )


def check_resume(saved: Config, values: dict[str, Any], out: Path) -> None:
    """Refuses ``values`` that change a fixed field of the run ``saved`` in ``out``."""
    for key in FIXED_KEYS:
        if key in values and canonical(key, values[key]) != getattr(saved, key):
            flag = "--model" if key == "arch" else "--" + key.replace("_", "-")
            raise UsageError(
                f"--resume with a different configuration: {flag} {values[key]} but the run "
                f"in {out} has {key}={getattr(saved, key)!r} (start a new run with another --out)"
            )


def _check_out(config: Config, out: Path, resume: bool, force: bool) -> None:
    if resume and force:
        raise UsageError("--resume and --force exclude each other")
    runs.check_writable(out)
    if resume:
        check_resume(runs.read_config(out, "--resume: "), config.to_dict(), out)
    elif out.exists() and runs.has_run(out) and not force:
        raise UsageError(
            f"{out} already holds a run; pass --resume to continue it or --force to replace it"
        )


def fit(
    config: Config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains ``config`` into the run folder ``out_dir``; returns the final metrics.

    Args:
      config: the run's :class:`~jrnn.app.config.Config`.
      out_dir: the run folder (created if needed).
      resume: continue the run in ``out_dir`` from its latest checkpoint; ``config`` must
        equal the saved one but for the schedule (``checkpoint_every``, ``eval_every``,
        ``log_every``, ``sample_length``) and the devices (``devices``, ``micro_batches``).
      force: replace a run in ``out_dir`` (only jrnn's files there are removed).
      progress: draw a tqdm progress bar on stderr.

    Returns:
      ``{"step": steps, "val_...": ..., "baseline": ...}``: the last evaluation's metrics.

    Raises:
      UsageError: a bad config, corpus or run folder (nothing was written); the run folder
        is in use by another process (its ``.lock``); no checkpoint to resume is good, or
        they do not fit the config (a checkpoint that cannot be read or fails its digest is
        skipped with a one-line warning and the newest good one is resumed).
      NonFiniteLoss: a non-finite loss stopped the run (the last good checkpoint is kept).
      TrainingInterrupted: Ctrl-C or SIGTERM stopped the run after saving a checkpoint.

    Examples:
      >>> import tempfile
      >>> from jrnn.app import Config, fit
      >>> config = Config(task="parity", steps=20, hidden=8, eval_every=20, eval_batches=1)
      >>> m = fit(config, tempfile.mkdtemp(), progress=False)  # doctest: +ELLIPSIS
      eval step=20 val_loss=...
      run folder: ...
      >>> m["step"], 0.0 <= m["val_accuracy"] <= 1.0
      (20, True)
    """
    if not isinstance(config, Config):
        raise TypeError(f"fit: config must be a jrnn.app.Config, got {type(config).__name__}")
    out = Path(out_dir)
    _check_out(config, out, resume, force)
    devices.start(config)
    corpus = load_data(config)
    mesh = devices.mesh_for(config)
    if resume and corpus is not None:
        if runs.read_vocab(out, "--resume: ") != corpus.vocab.to_json():
            raise UsageError(
                f"--resume: the corpus changed since the run in {out} started "
                "(its character vocabulary differs)"
            )
    # Every check is done: from here on files are written, under the run folder's lock.
    with contextlib.ExitStack() as held:
        locked = out.is_dir()
        if locked:
            held.enter_context(runs.lock(out))
        return _train(config, out, resume, force, corpus, mesh, progress, None if locked else held)


def _train(
    config: Config,
    out: Path,
    resume: bool,
    force: bool,
    corpus: Any,
    mesh: Any,
    progress: bool,
    lock_into: contextlib.ExitStack | None,
) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec
    from tqdm.auto import tqdm

    from jrnn import train as jtrain
    from jrnn.app.plots import plot_loss
    from jrnn.app.restore import restore_newest
    from jrnn.checkpoint import Checkpointer
    from jrnn.sharding import DATA_AXIS, data_size

    task, optimizer, state, carry = build_state(config, corpus)
    if lock_into is not None:  # a new folder: created, then locked before anything is written
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--out {out}: cannot create the folder: {e.strerror}") from None
        lock_into.enter_context(runs.lock(out))
    if force:
        runs.clear(out)
    saved = {**config.to_dict(), "config_version": runs.CONFIG_VERSION, "model": task.model.name}
    if corpus is not None:
        saved["data"] = {
            "source": corpus.source,
            "train_chars": int(corpus.train.shape[0]),
            "val_chars": int(corpus.val.shape[0]),
            "train_files": corpus.num_train_files,
            "val_files": corpus.num_val_files,
            "vocab_size": corpus.vocab.size,
        }
        if not resume:
            runs.write_json_atomic(out / "vocab.json", corpus.vocab.to_json())
    runs.write_json_atomic(out / "config.json", saved)

    ckpt = Checkpointer(out / "checkpoints")
    metrics_path = out / "metrics.jsonl"
    start, acc = 0, {}
    template = {"train": state, "carry": carry} if task.has_carry else {"train": state}
    if resume and ckpt.latest_step() is not None:
        try:
            tree, meta = restore_newest(ckpt, template, out)
        except UsageError:
            ckpt.close()
            raise
        state, carry = tree["train"], tree.get("carry")
        start, acc = int(meta["step"]), dict(meta["acc"])
        print(f"resuming {out} from step {start}", file=sys.stderr)
    elif resume:
        print(f"no checkpoint in {out}: starting it from step 0", file=sys.stderr)
    if resume:
        runs.truncate_rows(metrics_path, start)
    elif metrics_path.exists():
        metrics_path.unlink()

    steps = config.steps
    if start >= steps:
        ckpt.close()
        print(f"{out}: the run is already complete ({steps} steps)")
        evals = [r for r in runs.read_rows(metrics_path) if "loss" not in r]
        return {"step": steps, **{k: v for k, v in (evals[-1] if evals else {}).items()}}

    train_step = jtrain.make_train_step(
        task.loss_fn,
        optimizer,
        clip_norm=config.clip or None,
        has_carry=task.has_carry,
        skip_nonfinite=config.skip_nonfinite,
        mesh=mesh,
        micro_batches=config.micro_batches,
        loss_weight=task.loss_weight,
    )
    # with a mesh each batch is made where it is used, one shard per device
    split = None if mesh is None else NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    batch_fn = jax.jit(task.batch_fn, out_shardings=split)
    eval_step = jtrain.make_eval_step(task.eval_fn)

    def run_eval(params):
        batches, carry = task.eval_batches(), task.eval_carry(params)
        if mesh is not None and config.eval_batch_size % data_size(mesh) == 0:
            batches = (jax.device_put(b, split) for b in batches)  # split like training
            carry = jax.device_put(carry, split)
        return jtrain.evaluate(eval_step, params, batches, carry)

    stop: dict[str, Any] = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum
        signal.signal(signum, previous[signum])  # a second one interrupts at once

    previous = {}
    if threading.current_thread() is threading.main_thread():  # signals need the main thread
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, on_signal)

    def save(step: int) -> None:
        tree = {"train": state, "carry": carry} if task.has_carry else {"train": state}
        ckpt.save(step, tree, {"step": step, "acc": acc, "task": task.name})

    metric = task.metric
    bar = tqdm(
        total=steps,
        initial=start,
        desc=f"train {task.name}",
        unit="step",
        dynamic_ncols=True,
        disable=not progress,
        file=sys.stderr,
    )
    last_saved = start if resume else -1
    last_eval: dict[str, Any] = {}
    post: dict[str, Any] = {}
    failure: Exception | None = None
    t_log = time.perf_counter()
    t_start = t_log
    steps_since_log = 0
    rows = open(metrics_path, "a", encoding="utf-8")
    try:
        for s in range(start + 1, steps + 1):
            batch = batch_fn(task.data, jnp.asarray(s - 1, jnp.int32))
            if task.has_carry:
                state, carry, m = train_step(state, carry, batch)
            else:
                state, m = train_step(state, batch)
            m = jax.device_get(m)
            steps_since_log += 1
            if not bool(m["finite"]):
                if not config.skip_nonfinite:
                    last = ckpt.latest_step()
                    kept = (
                        f"the last good checkpoint (step {last}) is kept in {ckpt.directory}"
                        if last is not None
                        else "no checkpoint was written"
                    )
                    failure = NonFiniteLoss(
                        f"non-finite loss ({float(m['loss'])}) at step {s}; stopped without "
                        f"saving it: {kept} (try a lower --lr or --clip, or --skip-nonfinite)"
                    )
                    break
                acc["skipped"] = acc.get("skipped", 0) + 1
            else:
                for k in ("loss", metric, *runs.GRAD_NORMS):
                    acc[k] = acc.get(k, 0.0) + float(m[k])
                acc["n"] = acc.get("n", 0) + 1
            bar.update(1)

            if s % config.log_every == 0 or s == steps:
                now = time.perf_counter()
                n = acc.get("n", 0)
                row: dict[str, Any] = {"step": s}
                for k in ("loss", metric, *runs.GRAD_NORMS):
                    row[k] = acc[k] / n if n else None
                if acc.get("skipped"):
                    row["skipped"] = acc["skipped"]
                row["tokens_per_s"] = round(task.tokens_per_step * steps_since_log / (now - t_log))
                row["time"] = round(now - t_start, 3)
                rows.write(json.dumps(row) + "\n")
                rows.flush()
                acc = {}
                t_log, steps_since_log = now, 0
                post = {"loss": row["loss"], metric: row[metric]}
                post = {k: f"{v:.4f}" for k, v in post.items() if v is not None}
                post["tok/s"] = row["tokens_per_s"]
                post.update({k: f"{v:.4f}" for k, v in last_eval.items()})
                bar.set_postfix(post, refresh=False)

            if s % config.eval_every == 0 or s == steps:
                erow = {"step": s, **task.eval_row(run_eval(state.params))}
                rows.write(json.dumps(erow) + "\n")
                rows.flush()
                last_eval = {k: v for k, v in erow.items() if k != "step"}
                post.update({k: f"{v:.4f}" for k, v in last_eval.items()})
                bar.set_postfix(post, refresh=True)
                bar.write(f"eval {format_row(erow)}")
                t_log = time.perf_counter()  # evaluation time is not training throughput

            if s % config.checkpoint_every == 0 or s == steps:
                save(s)
                last_saved = s

            if stop["signal"] is not None:
                if last_saved != s:
                    save(s)
                    last_saved = s
                ckpt.wait()
                failure = TrainingInterrupted(
                    f"interrupted at step {s}: checkpoint saved in {ckpt.directory}; continue "
                    f"with: jrnn train --out {out} --resume",
                    s,
                )
                break
    finally:
        rows.close()
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ckpt.close()

    plot_loss(out, task.name, *task.plot_key)
    if failure is not None:
        raise failure
    result: dict[str, Any] = {"step": steps, **last_eval}
    if last_eval:
        print(f"step {steps}: {format_row(last_eval)}")
    if task.baseline is not None:
        what, value = task.baseline
        result["baseline"] = value
        print(f"baseline ({what}): {value:.4f}")
    if task.show is not None:
        print("\n".join(task.show(state.params, 4)))
    if task.generate is not None and config.sample_length > 0:
        text = task.generate(state.params, "\n", config.sample_length, 0.8, config.seed)
        (out / "sample.txt").write_text(text, encoding="utf-8")
        print(f"--- sample (temperature 0.8) ---\n{text}\n---")
    print(f"run folder: {out}")
    return result
