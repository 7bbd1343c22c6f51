"""The ``jrnn`` command: ``jrnn train``, ``jrnn sample DIR``, ``jrnn eval DIR``,
``jrnn decode DIR``.

``jrnn train`` with no arguments trains a character-level LSTM language model on the running
Python's standard-library source and writes a run folder::

    DIR/config.json       the full configuration (what --resume checks against)
    DIR/vocab.json        the character vocabulary (charlm)
    DIR/metrics.jsonl     one JSON row per log interval and per evaluation
    DIR/checkpoints/      orbax checkpoints (atomic, the last 3 kept)
    DIR/loss.png          training and validation curves
    DIR/sample.txt        text generated at the end (charlm)

``jrnn train --task {reverse,sort,copy,count,classify,future,runsum} --model
{attention,seq2seq,vec2seq,seq2vec,tagger,bitagger,outrec,outrec-hidden}`` trains the seed's
architectures on generated variable-length data (``val_accuracy`` per token and ``val_exact``
per sequence in metrics.jsonl); ``jrnn decode DIR --beam K`` shows held-out examples decoded.

Bad input (missing or empty corpus, impossible sizes, an existing run folder without
--resume/--force, --resume with another configuration, ...) prints one line and exits with
code 2, before any file is touched.  Ctrl-C saves a checkpoint and exits with code 130; a
non-finite loss stops the run with code 1 and keeps the last good checkpoint.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main"]

CONFIG_VERSION = 1

# Keys that define the computation: --resume refuses to change them.
FIXED_KEYS = (
    "task",
    "corpus",
    "max_chars",
    "cell",
    "hidden",
    "layers",
    "dropout",
    "embed",
    "steps",
    "batch_size",
    "seq_len",
    "lr",
    "clip",
    "tbptt",
    "seed",
    "dtype",
    "skip_nonfinite",
    "eval_batches",
    "eval_batch_size",
    "copy_len",
    "num_symbols",
    "arch",
    "min_len",
    "score",
    "pool",
    "condition",
    "sample_prob",
)
# Keys that only say when to log, evaluate and save: free to change on resume.
FREE_KEYS = ("checkpoint_every", "eval_every", "log_every", "sample_length")
CONFIG_KEYS = FIXED_KEYS + FREE_KEYS
# Keys added after the first release: a run folder written without them gets these values
# (what those runs computed); "arch" falls back to the task's default model.
LATER_KEYS: dict[str, Any] = {
    "arch": None,
    "min_len": 1,
    "score": "general",
    "pool": "last",
    "condition": "both",
    "sample_prob": 0.0,
}
# Config keys whose flag is not "--" + key with "-" for "_".
FLAG_NAMES = {"arch": "--model"}

COMMON_DEFAULTS: dict[str, Any] = {
    "corpus": None,
    "max_chars": 8_000_000,
    "cell": "lstm",
    "layers": 1,
    "dropout": 0.0,
    "clip": 1.0,
    "tbptt": False,
    "seed": 0,
    "dtype": "float32",
    "skip_nonfinite": False,
    "log_every": 10,
    "copy_len": 10,
    "num_symbols": 8,
    "sample_length": 400,
    "min_len": 1,
    "score": "general",
    "pool": "last",
    "condition": "both",
    "sample_prob": 0.0,
}
_SEQ_DEFAULTS: dict[str, Any] = {
    "hidden": 128,
    "embed": 32,
    "steps": 1500,
    "batch_size": 64,
    "seq_len": 20,
    "min_len": 5,
    "num_symbols": 20,
    "lr": 5e-3,
    "checkpoint_every": 500,
    "eval_every": 250,
    "eval_batches": 4,
    "eval_batch_size": 256,
}
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "charlm": {
        "arch": "lm",
        "hidden": 256,
        "embed": 64,
        "steps": 1000,
        "batch_size": 64,
        "seq_len": 128,
        "lr": 3e-3,
        "checkpoint_every": 200,
        "eval_every": 200,
        "eval_batches": 16,
        "eval_batch_size": 128,
    },
    "adding": {
        "arch": "seq2vec",
        "hidden": 64,
        "embed": 0,
        "steps": 1000,
        "batch_size": 64,
        "seq_len": 50,
        "lr": 1e-2,
        "checkpoint_every": 250,
        "eval_every": 100,
        "eval_batches": 4,
        "eval_batch_size": 256,
    },
    "copy": {
        "arch": "tagger",
        "hidden": 64,
        "embed": 0,
        "steps": 1000,
        "batch_size": 64,
        "seq_len": 10,
        "lr": 1e-2,
        "checkpoint_every": 250,
        "eval_every": 100,
        "eval_batches": 4,
        "eval_batch_size": 256,
    },
}
TASK_DEFAULTS.update(
    {
        "reverse": {**_SEQ_DEFAULTS, "arch": "attention"},
        "sort": {**_SEQ_DEFAULTS, "arch": "attention"},
        "count": {**_SEQ_DEFAULTS, "arch": "vec2seq"},
        "classify": {**_SEQ_DEFAULTS, "arch": "seq2vec", "num_symbols": 4, "hidden": 64},
        "future": {**_SEQ_DEFAULTS, "arch": "bitagger", "hidden": 64, "steps": 1000},
        "runsum": {**_SEQ_DEFAULTS, "arch": "outrec", "num_symbols": 5, "steps": 1000},
    }
)
# Defaults of a (task, model) pair that differ from the task's.
ARCH_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("copy", "seq2seq"): dict(_SEQ_DEFAULTS),
    ("copy", "attention"): dict(_SEQ_DEFAULTS),
}
RUN_FILES = ("config.json", "vocab.json", "metrics.jsonl", "checkpoints", "loss.png", "sample.txt")
TIMING_KEYS = ("tokens_per_s", "time")


class UsageError(Exception):
    """Bad input: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: message``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


# --------------------------------------------------------------------------------------
# argument types


def _int_type(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    return parse


def _float_type(check, what: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value) or not check(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return parse


_positive_int = _int_type(1, "a positive integer")
_nonneg_int = _int_type(0, "a non-negative integer")
_positive_float = _float_type(lambda v: v > 0, "a positive number")
_nonneg_float = _float_type(lambda v: v >= 0, "a non-negative number")
_rate = _float_type(lambda v: 0 <= v < 1, "in [0, 1)")
_unit = _float_type(lambda v: 0 <= v <= 1, "in [0, 1]")


def build_parser() -> argparse.ArgumentParser:
    """The ``jrnn`` argument parser (subcommands ``train``, ``sample``, ``eval``, ``decode``)."""
    from jrnn.tasks import CELLS, CONDITIONS, DTYPES, MODELS, POOLS, SCORES, TASKS

    parser = _Parser(
        prog="jrnn",
        description="Train, sample and evaluate recurrent networks written in pure JAX.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,sample,eval,decode}")

    t = sub.add_parser(
        "train",
        help="train a model (default: an LSTM language model on the Python stdlib source)",
        description="Train a model. Every flag left out takes the task's default, or on "
        "--resume the run's saved value.",
    )
    g = t.add_argument_group("task and data")
    g.add_argument(
        "--task",
        choices=TASKS,
        help="charlm (default), adding, copy, reverse, sort, count, classify, future, runsum",
    )
    g.add_argument(
        "--corpus", metavar="PATH", help="text file or folder for charlm (default: Python stdlib)"
    )
    g.add_argument(
        "--max-chars", type=_positive_int, metavar="N", help="cap on corpus characters (8000000)"
    )
    g.add_argument(
        "--copy-len", type=_positive_int, metavar="N", help="copy task: symbols to recall (10)"
    )
    g.add_argument(
        "--num-symbols",
        type=_positive_int,
        metavar="N",
        help="alphabet size (copy 8, reverse/sort/count 20, runsum 5, classify 4)",
    )
    g.add_argument(
        "--min-len",
        type=_positive_int,
        metavar="N",
        help="variable-length tasks: shortest sequence (5); the longest is --seq-len (20)",
    )
    g = t.add_argument_group("model")
    g.add_argument(
        "--model",
        dest="arch",
        choices=MODELS,
        help="architecture (each task's first: lm, seq2vec, tagger, attention, vec2seq, ...)",
    )
    g.add_argument(
        "--score", choices=SCORES, help="--model attention: Luong general/dot or additive"
    )
    g.add_argument("--pool", choices=POOLS, help="--model seq2vec: final state or pooled (last)")
    g.add_argument(
        "--condition",
        choices=CONDITIONS,
        help="--model vec2seq: the vector as initial state, input, or both (both)",
    )
    g.add_argument(
        "--sample-prob",
        type=_unit,
        metavar="X",
        help="scheduled sampling: feed the model's own prediction with probability X (0)",
    )
    g.add_argument("--cell", choices=CELLS, help="recurrent cell (lstm)")
    g.add_argument(
        "--hidden", type=_positive_int, metavar="N", help="hidden size (charlm 256, tasks 64)"
    )
    g.add_argument("--layers", type=_positive_int, metavar="N", help="stacked layers (1)")
    g.add_argument(
        "--dropout", type=_rate, metavar="X", help="dropout between layers and before the readout"
    )
    g.add_argument(
        "--embed", type=_nonneg_int, metavar="N", help="token embedding size, 0 = one-hot (64)"
    )
    g.add_argument("--dtype", choices=DTYPES, help="compute dtype (float32)")
    g = t.add_argument_group("optimisation")
    g.add_argument("--steps", type=_positive_int, metavar="N", help="training steps (charlm 1000)")
    g.add_argument("--batch-size", type=_positive_int, metavar="N", help="sequences per step (64)")
    g.add_argument(
        "--seq-len",
        type=_positive_int,
        metavar="N",
        help="window / sequence length (charlm 128); variable-length tasks: the longest, T (20)",
    )
    g.add_argument(
        "--lr", type=_positive_float, metavar="X", help="peak Adam learning rate (charlm 3e-3)"
    )
    g.add_argument(
        "--clip", type=_nonneg_float, metavar="X", help="global gradient-norm clip, 0 = off (1.0)"
    )
    g.add_argument(
        "--tbptt",
        action=argparse.BooleanOptionalAction,
        help="charlm: truncated BPTT over batch-size contiguous streams, carrying the state",
    )
    g.add_argument("--seed", type=int, metavar="N", help="seed of everything random (0)")
    g.add_argument(
        "--skip-nonfinite",
        action=argparse.BooleanOptionalAction,
        help="skip updates with a non-finite loss instead of stopping",
    )
    g = t.add_argument_group("run folder and schedule")
    g.add_argument("--out", metavar="DIR", help="run folder (default: runs/TASK-YYYYmmdd-HHMMSS)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--force", action="store_true", help="start over, replacing the run in --out")
    g.add_argument(
        "--checkpoint-every", type=_positive_int, metavar="N", help="steps between checkpoints"
    )
    g.add_argument(
        "--eval-every", type=_positive_int, metavar="N", help="steps between evaluations"
    )
    g.add_argument(
        "--eval-batches", type=_nonneg_int, metavar="N", help="evaluation batches, 0 = all"
    )
    g.add_argument(
        "--eval-batch-size", type=_positive_int, metavar="N", help="rows per evaluation batch"
    )
    g.add_argument(
        "--log-every", type=_positive_int, metavar="N", help="steps per metrics row (10)"
    )
    g.add_argument(
        "--sample-length", type=_nonneg_int, metavar="N", help="charlm: sample length (400)"
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser("sample", help="print text generated from a run's latest checkpoint")
    s.add_argument("dir", metavar="DIR", help="run folder")
    s.add_argument("--length", type=_nonneg_int, metavar="N", default=400, help="characters (400)")
    s.add_argument("--prompt", default="\n", metavar="TEXT", help="text to start from (a newline)")
    s.add_argument(
        "--temperature", type=_nonneg_float, metavar="X", default=0.8, help="0 = greedy (0.8)"
    )
    s.add_argument("--seed", type=int, default=0, metavar="N", help="sampling seed (0)")
    s.set_defaults(func=_cmd_sample)

    e = sub.add_parser("eval", help="print validation metrics of a run's latest checkpoint")
    e.add_argument("dir", metavar="DIR", help="run folder")
    e.add_argument("--full", action="store_true", help="evaluate the whole held-out set (charlm)")
    e.set_defaults(func=_cmd_eval)

    d = sub.add_parser("decode", help="show held-out examples decoded by a run's latest checkpoint")
    d.add_argument("dir", metavar="DIR", help="run folder")
    d.add_argument(
        "--beam", type=_positive_int, metavar="K", default=1, help="beam width, 1 = greedy (1)"
    )
    d.add_argument("--num", type=_positive_int, metavar="N", default=8, help="examples (8)")
    d.add_argument(
        "--temperature",
        type=_nonneg_float,
        metavar="X",
        default=0.0,
        help="sample at this temperature instead (0 = greedy/beam)",
    )
    d.add_argument(
        "--length-penalty",
        type=_nonneg_float,
        metavar="A",
        default=0.6,
        help="beam ranking: score / length**A (0.6)",
    )
    d.add_argument("--seed", type=int, default=0, metavar="N", help="sampling seed (0)")
    d.add_argument(
        "--plot", metavar="PNG", help="attention models: save the first example's weights"
    )
    d.set_defaults(func=_cmd_decode)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs ``jrnn`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Bad input raises ``SystemExit(2)`` after printing one line to stderr.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"jrnn {args.command}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


# --------------------------------------------------------------------------------------
# configuration


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def _explicit(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in CONFIG_KEYS if getattr(args, k, None) is not None}


def _normalise(config: dict[str, Any]) -> dict[str, Any]:
    if config.get("corpus") is not None:
        config["corpus"] = str(Path(config["corpus"]).expanduser().absolute())
    return config


def _defaults(task: str, arch: str | None = None) -> dict[str, Any]:
    base = {**COMMON_DEFAULTS, **TASK_DEFAULTS[task]}
    if arch is not None:
        base.update(ARCH_DEFAULTS.get((task, arch), {}), arch=arch)
    return base


def _flag(key: str) -> str:
    return FLAG_NAMES.get(key, "--" + key.replace("_", "-"))


def _with_later_keys(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config completed with the keys added after it was written."""
    if not isinstance(saved, dict):
        raise ValueError("not a JSON object")
    saved = dict(saved)
    for key, value in LATER_KEYS.items():
        saved.setdefault(key, value)
    if saved.get("arch") is None and saved.get("task") in TASK_DEFAULTS:
        saved["arch"] = TASK_DEFAULTS[saved["task"]]["arch"]
    return saved


def _check_task_config(config: dict[str, Any]) -> None:
    """Checks of a new run's task/model combination and sizes (UsageError)."""
    from jrnn.tasks import check_task_model

    try:
        check_task_model(config["task"], config["arch"])
    except ValueError as e:
        raise UsageError(f"--model {config['arch']}: {e}") from None
    if config["task"] in ("charlm", "adding"):
        return
    if config["task"] == "copy" and config["arch"] in ("tagger", "bitagger"):
        return
    if config["min_len"] > config["seq_len"]:
        raise UsageError(
            f"--min-len {config['min_len']} is beyond the maximum length T = --seq-len "
            f"{config['seq_len']}"
        )


def _has_run(out: Path) -> bool:
    return any((out / name).exists() for name in RUN_FILES)


def _resolve_train_config(args: argparse.Namespace) -> tuple[dict[str, Any], Path, bool]:
    """The effective configuration, the run folder and whether to resume; checks only."""
    if args.resume and args.force:
        raise UsageError("--resume and --force exclude each other")
    explicit = _normalise(_explicit(args))
    if args.out is None:
        if args.resume:
            raise UsageError("--resume needs --out DIR (the run folder to continue)")
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{explicit.get('task', 'charlm')}-{stamp}"
    else:
        out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")

    if args.resume:
        path = out / "config.json"
        if not path.is_file():
            raise UsageError(f"--resume: no run to resume in {out} (no config.json)")
        try:
            saved = _with_later_keys(_read_json(path))
            saved = {k: saved[k] for k in CONFIG_KEYS}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"--resume: cannot read {path}: {e}") from None
        for key, value in explicit.items():
            if key in FIXED_KEYS and value != saved[key]:
                flag = _flag(key)
                raise UsageError(
                    f"--resume with a different configuration: {flag} {value} but the run in "
                    f"{out} has {key}={saved[key]!r} (start a new run with another --out)"
                )
        return {**saved, **explicit}, out, True

    if out.exists() and _has_run(out) and not args.force:
        raise UsageError(
            f"{out} already holds a run; pass --resume to continue it or --force to replace it"
        )
    task = explicit.get("task", "charlm")
    config = {**_defaults(task, explicit.get("arch")), "task": task, **explicit}
    _check_task_config(config)
    if config["task"] != "charlm" and config["tbptt"]:
        raise UsageError("--tbptt applies to --task charlm only")
    if config["task"] == "adding" and config["seq_len"] < 2:
        raise UsageError("--seq-len must be at least 2 for the adding problem")
    return config, out, False


def _load_corpus(config: dict[str, Any]):
    from jrnn.data import load_corpus

    path = config["corpus"]
    try:
        corpus = load_corpus(path, max_chars=config["max_chars"])
    except FileNotFoundError:
        raise UsageError(f"--corpus {path}: no such file or folder") from None
    except (ValueError, OSError) as e:
        raise UsageError(f"--corpus {path}: {e}") from None
    where = "the standard-library corpus" if path is None else f"corpus {path}"
    if corpus.val.shape[0] < 2:
        raise UsageError(f"{where} is too small to hold out validation text")
    n, b, t = corpus.train.shape[0], config["batch_size"], config["seq_len"]
    if config["tbptt"]:
        if t >= n // b:
            raise UsageError(
                f"--seq-len {t} is longer than each of the {b} --tbptt streams of {where} "
                f"({n} training characters / {b} = {n // b}); lower --seq-len or --batch-size"
            )
    elif t >= n - 1:
        raise UsageError(
            f"--seq-len {t} is longer than {where} allows ({n} training characters; "
            f"need --seq-len < {n - 1})"
        )
    return corpus


def _optimizer(config: dict[str, Any]):
    """Adam with a linear warm-up and cosine decay to a tenth of ``lr``."""
    import optax

    steps, lr = config["steps"], config["lr"]
    warmup = min(100, max(steps // 10, 1))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup_steps=warmup, decay_steps=max(steps, warmup + 1), end_value=lr / 10
    )
    return optax.adam(schedule)


def _enable_dtype(config: dict[str, Any]) -> None:
    if config["dtype"] == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


# --------------------------------------------------------------------------------------
# run-folder files


def _read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    if path.exists():
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if isinstance(row, dict) and "step" in row:
                    rows.append(row)
    return rows


def _truncate_rows(path: Path, step: int) -> None:
    rows = [r for r in _read_rows(path) if r["step"] <= step]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def _plot(out: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _read_rows(out / "metrics.jsonl")
    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    key = "val_mse" if task == "adding" else "val_loss"
    val = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if train:
        ax.plot(*zip(*train, strict=True), label="train", lw=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation", lw=1.5)
    ax.set_xlabel("step")
    ylabel = {"charlm": "loss (nats/char)", "adding": "MSE", "copy": "loss (nats/step)"}
    ax.set_ylabel(ylabel.get(task, "loss (nats/token)"))
    ax.set_title(f"jrnn {task}: {out.name}")
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    fig.tight_layout()
    tmp = out / "loss.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out / "loss.png")


def _eval_row(step: int, task: str, means: dict[str, float]) -> dict[str, Any]:
    row: dict[str, Any] = {"step": step}
    if task == "charlm":
        row["val_loss"] = means["loss"]
        row["val_bpc"] = means["loss"] / math.log(2.0)
    elif task == "adding":
        row["val_mse"] = means["mse"]
    else:
        row["val_loss"] = means["loss"]
        row["val_accuracy"] = means["accuracy"]
        for name in ("exact", "accuracy_tf", "exact_tf"):
            if name in means:
                row[f"val_{name}"] = means[name]
    return row


def _fmt(row: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
        for k, v in row.items()
        if k not in TIMING_KEYS
    )


# --------------------------------------------------------------------------------------
# train


def _cmd_train(args: argparse.Namespace) -> int:
    config, out, resume = _resolve_train_config(args)
    _enable_dtype(config)
    corpus = _load_corpus(config) if config["task"] == "charlm" else None
    if resume and corpus is not None:
        vocab_path = out / "vocab.json"
        try:
            saved_chars = _read_json(vocab_path)
        except (OSError, ValueError) as e:
            raise UsageError(f"--resume: cannot read {vocab_path}: {e}") from None
        if saved_chars != corpus.vocab.to_json():
            raise UsageError(
                f"--resume: the corpus changed since the run in {out} started "
                "(its character vocabulary differs)"
            )
    # Every check is done: from here on files are written.
    return _train(config, out, resume, args.force, corpus, progress=not args.no_progress)


def _build(config: dict[str, Any], corpus):
    """Task, optimizer and the initial (state, carry)."""
    from jrnn.tasks import make_task, seed_keys
    from jrnn.train import init_train_state

    task = make_task(config, corpus)
    optimizer = _optimizer(config)
    init_key, _, train_key = seed_keys(config["seed"])
    params = task.model.init(init_key)
    state = init_train_state(params, optimizer, train_key)
    carry = task.initial_carry(params) if task.has_carry else None
    return task, optimizer, state, carry


def _train(config, out: Path, resume: bool, force: bool, corpus, progress: bool) -> int:
    import jax
    import jax.numpy as jnp
    from tqdm.auto import tqdm

    from jrnn.checkpoint import Checkpointer
    from jrnn.train import evaluate, make_eval_step, make_train_step

    task_name = config["task"]
    task, optimizer, state, carry = _build(config, corpus)

    if force and out.exists():
        for name in RUN_FILES:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    saved_config = {**config, "config_version": CONFIG_VERSION, "model": task.model.name}
    if corpus is not None:
        saved_config["data"] = {
            "source": corpus.source,
            "train_chars": int(corpus.train.shape[0]),
            "val_chars": int(corpus.val.shape[0]),
            "train_files": corpus.num_train_files,
            "val_files": corpus.num_val_files,
            "vocab_size": corpus.vocab.size,
        }
        if not resume:
            _write_json_atomic(out / "vocab.json", corpus.vocab.to_json())
    _write_json_atomic(out / "config.json", saved_config)

    ckpt = Checkpointer(out / "checkpoints")
    metrics_path = out / "metrics.jsonl"
    start, acc = 0, {}
    template = {"train": state, "carry": carry} if task.has_carry else {"train": state}
    if resume and ckpt.latest_step() is not None:
        tree, meta = ckpt.restore(template)
        state, carry = tree["train"], tree.get("carry")
        start, acc = int(meta["step"]), dict(meta["acc"])
        print(f"resuming {out} from step {start}", file=sys.stderr)
    elif resume:
        print(f"no checkpoint in {out}: starting it from step 0", file=sys.stderr)
    if resume:
        _truncate_rows(metrics_path, start)
    elif metrics_path.exists():
        metrics_path.unlink()

    steps = config["steps"]
    if start >= steps:
        ckpt.close()
        print(f"{out}: the run is already complete ({steps} steps)")
        return 0

    train_step = make_train_step(
        task.loss_fn,
        optimizer,
        clip_norm=config["clip"] or None,
        has_carry=task.has_carry,
        skip_nonfinite=config["skip_nonfinite"],
    )
    batch_fn = jax.jit(task.batch_fn)
    eval_step = make_eval_step(task.eval_fn)

    def run_eval(params):
        return evaluate(eval_step, params, task.eval_batches(), task.eval_carry(params))

    stop = {"signal": None}

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
        ckpt.save(step, tree, {"step": step, "acc": acc, "task": task_name})

    metric = task.metric
    bar = tqdm(
        total=steps,
        initial=start,
        desc=f"train {task_name}",
        unit="step",
        dynamic_ncols=True,
        disable=not progress,
        file=sys.stderr,
    )
    last_saved = start if resume else -1
    last_eval: dict[str, Any] = {}
    post: dict[str, Any] = {}
    code = 0
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
                if not config["skip_nonfinite"]:
                    last = ckpt.latest_step()
                    kept = (
                        f"the last good checkpoint (step {last}) is kept in {ckpt.directory}"
                        if last is not None
                        else "no checkpoint was written"
                    )
                    bar.close()
                    print(
                        f"jrnn train: error: non-finite loss ({float(m['loss'])}) at step {s}; "
                        f"stopped without saving it: {kept} (try a lower --lr or --clip, "
                        "or --skip-nonfinite)",
                        file=sys.stderr,
                    )
                    code = 1
                    break
                acc["skipped"] = acc.get("skipped", 0) + 1
            else:
                for k in ("loss", metric, "grad_norm"):
                    acc[k] = acc.get(k, 0.0) + float(m[k])
                acc["n"] = acc.get("n", 0) + 1
            bar.update(1)

            if s % config["log_every"] == 0 or s == steps:
                now = time.perf_counter()
                n = acc.get("n", 0)
                row: dict[str, Any] = {"step": s}
                for k in ("loss", metric, "grad_norm"):
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

            if s % config["eval_every"] == 0 or s == steps:
                erow = _eval_row(s, task_name, run_eval(state.params))
                rows.write(json.dumps(erow) + "\n")
                rows.flush()
                last_eval = {k: v for k, v in erow.items() if k != "step"}
                post.update({k: f"{v:.4f}" for k, v in last_eval.items()})
                bar.set_postfix(post, refresh=True)
                bar.write(f"eval {_fmt(erow)}")
                t_log = time.perf_counter()  # evaluation time is not training throughput

            if s % config["checkpoint_every"] == 0 or s == steps:
                save(s)
                last_saved = s

            if stop["signal"] is not None:
                if last_saved != s:
                    save(s)
                    last_saved = s
                ckpt.wait()
                bar.close()
                print(
                    f"interrupted at step {s}: checkpoint saved in {ckpt.directory}; continue "
                    f"with: jrnn train --out {out} --resume",
                    file=sys.stderr,
                )
                code = 130
                break
        else:
            bar.close()
    finally:
        rows.close()
        bar.close()
        for s, h in previous.items():
            signal.signal(s, h)
        ckpt.close()

    _plot(out, task_name)
    if code:
        return code
    if last_eval:
        print(f"step {steps}: {_fmt({k: v for k, v in last_eval.items()})}")
    if task.baseline is not None:
        what, value = task.baseline
        print(f"baseline ({what}): {value:.4f}")
    if task.show is not None:
        print("\n".join(task.show(state.params, 4)))
    if task_name == "charlm" and config["sample_length"] > 0:
        text = _generate(task, state.params, "\n", config["sample_length"], 0.8, config["seed"])
        (out / "sample.txt").write_text(text, encoding="utf-8")
        print(f"--- sample (temperature 0.8) ---\n{text}\n---")
    print(f"run folder: {out}")
    return 0


def _generate(task, params, prompt: str, length: int, temperature: float, seed: int) -> str:
    import jax
    import numpy as np

    from jrnn.sample import sample

    ids = task.vocab.encode(prompt)
    tokens = sample(task.model, params, jax.random.key(seed), ids, length, temperature)
    return prompt + task.vocab.decode(np.asarray(tokens))


# --------------------------------------------------------------------------------------
# sample and eval


def _open_run(directory: str, need_corpus: bool):
    """Config, task and the latest checkpoint's params of a run folder (checks first)."""
    out = Path(directory)
    path = out / "config.json"
    if not path.is_file():
        raise UsageError(f"{out} is not a run folder (no config.json)")
    try:
        config = _with_later_keys(_read_json(path))
        missing = [k for k in CONFIG_KEYS if k not in config]
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    if missing:
        raise UsageError(f"{path} lacks {', '.join(missing)}")
    _enable_dtype(config)
    corpus = None
    if config["task"] == "charlm":
        if need_corpus:
            corpus = _load_corpus(config)
            saved = _read_json(out / "vocab.json")
            if saved != corpus.vocab.to_json():
                raise UsageError(
                    f"the corpus changed since the run in {out} was trained "
                    "(its character vocabulary differs)"
                )
        else:
            corpus = _vocab_only_corpus(out)
    if not (out / "checkpoints").is_dir():
        raise UsageError(f"{out} has no checkpoints")
    from jrnn.checkpoint import Checkpointer

    task, _, state, carry = _build(config, corpus)
    ckpt = Checkpointer(out / "checkpoints", create=False)
    try:
        step = ckpt.latest_step()
        if step is None:
            raise UsageError(f"{out} has no checkpoint yet")
        template = {"train": state, "carry": carry} if task.has_carry else {"train": state}
        tree, _ = ckpt.restore(template, step)
    finally:
        ckpt.close()
    return config, task, tree["train"].params, step, corpus


def _vocab_only_corpus(out: Path):
    import numpy as np

    from jrnn.data import CharVocab, Corpus

    try:
        vocab = CharVocab.from_json(_read_json(out / "vocab.json"))
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(f"cannot read {out / 'vocab.json'}: {e}") from None
    empty = np.zeros((0,), np.int32)
    return Corpus(empty, empty, vocab, "vocab.json", (), (), "file")


def _cmd_sample(args: argparse.Namespace) -> int:
    if not args.prompt:
        raise UsageError("--prompt must not be empty")
    config, task, params, _, _ = _open_run(args.dir, need_corpus=False)
    if config["task"] != "charlm":
        raise UsageError(f"sample needs a charlm run; {args.dir} is a {config['task']} run")
    text = _generate(task, params, args.prompt, args.length, args.temperature, args.seed)
    sys.stdout.write(text + "\n")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    config, task, params, step, corpus = _open_run(args.dir, need_corpus=True)
    if args.full and config["task"] == "charlm":
        from jrnn.tasks import make_task

        config = {**config, "eval_batches": 0}
        task = make_task(config, corpus)
    from jrnn.train import evaluate, make_eval_step

    eval_step = make_eval_step(task.eval_fn)
    means = evaluate(eval_step, params, task.eval_batches(), task.eval_carry(params))
    row = _eval_row(step, config["task"], means)
    if corpus is not None:
        chars = _eval_chars(config, corpus)
        row["chars"] = chars
    print(_fmt(row))
    return 0


def _eval_chars(config: dict[str, Any], corpus) -> int:
    """Number of held-out characters a charlm evaluation scores."""
    from jrnn.data import eval_windows

    batches = eval_windows(
        corpus.val, config["eval_batch_size"], config["seq_len"], config["eval_batches"] or None
    )
    return int(sum(int(b.lengths.sum()) for b in batches))


# --------------------------------------------------------------------------------------
# decode


def _cmd_decode(args: argparse.Namespace) -> int:
    config, task, params, step, _ = _open_run(args.dir, need_corpus=False)
    from jrnn.models import EncoderDecoder

    if task.show is None:
        raise UsageError(
            f"decode needs a run of a sequence task; {args.dir} is a {config['task']} run "
            "(use jrnn sample / jrnn eval)"
        )
    generator = isinstance(task.model, EncoderDecoder)
    if not generator and (args.beam > 1 or args.temperature > 0):
        what = "--beam" if args.beam > 1 else "--temperature"
        raise UsageError(
            f"{what} needs an encoder-decoder run (--model seq2seq, attention or vec2seq); "
            f"{args.dir} is a {config['arch']} run"
        )
    if args.plot and (not generator or task.model.attention is None):
        raise UsageError(f"--plot needs an attention run; {args.dir} is a {config['arch']} run")
    lines = task.show(
        params,
        args.num,
        beam_size=args.beam,
        temperature=args.temperature,
        seed=args.seed,
        length_penalty=args.length_penalty,
    )
    print(f"step {step} of {args.dir}")
    print("\n".join(lines))
    if args.plot:
        _plot_attention(task, params, Path(args.plot))
        print(f"attention weights: {args.plot}")
    return 0


def _plot_attention(task, params, path: Path) -> None:
    """Heat map of the greedy decoder's attention weights on the first held-out example."""
    import jax
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jrnn import seqtasks
    from jrnn.decode import greedy_decode

    batch = jax.tree.map(lambda a: a[:1], next(iter(task.eval_batches())))
    out = greedy_decode(
        task.model, params, batch.src, batch.src_lengths, max_len=batch.tgt_out.shape[1]
    )
    n_src, n_out = int(batch.src_lengths[0]), int(out.lengths[0])
    weights = np.asarray(out.attention[0, :n_out, :n_src])
    src = seqtasks.format_tokens(batch.src[0], n_src).split()
    dec = seqtasks.format_tokens(out.tokens[0], n_out).split()
    fig, ax = plt.subplots(figsize=(0.35 * n_src + 1.5, 0.35 * n_out + 1.2))
    ax.imshow(weights, cmap="Greys", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(n_src), src)
    ax.set_yticks(range(n_out), dec)
    ax.set_xlabel("source")
    ax.set_ylabel("decoded")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
