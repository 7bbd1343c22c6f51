"""The ``jrnn`` command: ``jrnn train``, ``jrnn sample DIR``, ``jrnn eval DIR``,
``jrnn decode DIR``, ``jrnn diagnose [DIR]`` and ``jrnn --version``.

Parsing and dispatch only: the flags of ``jrnn train`` are generated from
[`jrnn.app.Config`][jrnn.app.config.Config] (``jrnn train --task T [--model M] --help`` shows that
task's defaults), the work is done by [`jrnn.app`][] (`fit`,
`sample_run`, `evaluate_run`, `decode_run`).

Exit codes: 0 done; 2 bad input (one line on stderr, before any file is touched or model
built); 1 a non-finite loss stopped training (the last good checkpoint is kept); 130 Ctrl-C
or SIGTERM (a checkpoint was saved: continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Any, NoReturn

from jrnn.app.hugepages import restart_with_huge_pages

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: message``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _help_task(argv: list[str]) -> tuple[str | None, str | None]:
    """``--task``/``--model`` given before ``--help`` (their defaults are then shown)."""
    found: dict[str, str | None] = {"--task": None, "--model": None}
    for i, arg in enumerate(argv):
        for flag in found:
            if arg == flag and i + 1 < len(argv):
                found[flag] = argv[i + 1]
            elif arg.startswith(flag + "="):
                found[flag] = arg.split("=", 1)[1]
    from jrnn.app.tasks import TASKS, get

    task, model = found["--task"], found["--model"]
    if task not in TASKS:
        return None, None
    return task, model if model in get(task).models else None


def build_parser(task: str | None = None, model: str | None = None) -> argparse.ArgumentParser:
    """The ``jrnn`` parser; ``train --help`` shows ``task``'s (and ``model``'s) defaults."""
    import jrnn

    parser = _Parser(
        prog="jrnn",
        description="Train, sample and evaluate recurrent networks written in pure JAX.",
    )
    parser.add_argument("--version", action="version", version=f"jrnn {jrnn.__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{train,sample,eval,decode,diagnose,export}"
    )
    _add_train(sub, task, model)
    _add_sample_and_eval(sub)
    _add_decode(sub)
    _add_diagnose(sub)
    _add_export(sub)
    return parser


def _add_train(sub: Any, task: str | None, model: str | None) -> None:
    from jrnn.app import devices
    from jrnn.app.config import add_train_arguments

    t = sub.add_parser(
        "train",
        help="train a model (default: an LSTM language model on the Python stdlib source)",
        description="Train a model. Every flag left out takes the task's default, or on "
        "--resume the run's saved value. `jrnn train --task T [--model M] --help` shows the "
        "defaults of task T (and model M).",
    )
    add_train_arguments(t, task, model)
    g = t.add_argument_group("run folder")
    g.add_argument("--out", metavar="DIR", help="run folder (default: runs/TASK-YYYYmmdd-HHMMSS)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--force", action="store_true", help="start over, replacing the run in --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    devices.add_arguments(t)
    t.set_defaults(func=_cmd_train)


def _add_sample_and_eval(sub: Any) -> None:
    from jrnn.app.config import arg_type

    s = sub.add_parser("sample", help="print text generated from a text run's latest checkpoint")
    s.add_argument("dir", metavar="DIR", help="run folder")
    s.add_argument(
        "--length", type=arg_type("natural"), metavar="N", default=400, help="characters (400)"
    )
    s.add_argument("--prompt", default="\n", metavar="TEXT", help="text to start from (a newline)")
    s.add_argument(
        "--temperature", type=arg_type("nonneg"), metavar="X", default=0.8, help="0 = greedy (0.8)"
    )
    s.add_argument("--seed", type=arg_type("int"), default=0, metavar="N", help="sampling seed (0)")
    s.set_defaults(func=_cmd_sample)
    e = sub.add_parser("eval", help="print validation metrics of a run's latest checkpoint")
    e.add_argument("dir", metavar="DIR", help="run folder")
    e.add_argument("--full", action="store_true", help="evaluate the whole held-out text (charlm)")
    e.set_defaults(func=_cmd_eval)


def _add_decode(sub: Any) -> None:
    from jrnn.app.config import arg_type

    d = sub.add_parser("decode", help="show held-out examples decoded by a run's latest checkpoint")
    d.add_argument("dir", metavar="DIR", help="run folder")
    d.add_argument(
        "--beam", type=arg_type("posint"), metavar="K", default=1, help="beam width, 1 = greedy (1)"
    )
    d.add_argument("--num", type=arg_type("posint"), metavar="N", default=8, help="examples (8)")
    d.add_argument(
        "--temperature", type=arg_type("nonneg"), metavar="X", default=0.0, help="sample (0: beam)"
    )
    d.add_argument(
        "--length-penalty",
        type=arg_type("nonneg"),
        metavar="A",
        default=0.6,
        help="beam ranking: score / length**A (0.6)",
    )
    d.add_argument("--seed", type=arg_type("int"), default=0, metavar="N", help="sampling seed (0)")
    d.add_argument("--plot", metavar="PNG", help="attention models: plot an example's weights")
    d.set_defaults(func=_cmd_decode)


def _add_diagnose(sub: Any) -> None:
    from jrnn.app.diagnose import add_arguments

    g = sub.add_parser(
        "diagnose",
        help="vanishing/exploding gradients: cells at initialisation, or a trained run",
        description="Without DIR: cells at initialisation on a batch of the adding problem "
        "(gradient norms over t, step-Jacobian norms, Jacobian products, gate saturation). "
        "With DIR: the same loss-free quantities for the first recurrent layer of the run. "
        "Writes diagnostics.json and PNG figures to --out.",
    )
    add_arguments(g)
    g.set_defaults(func=_cmd_diagnose)


def _add_export(sub: Any) -> None:
    from jrnn.app.serve import add_arguments

    x = sub.add_parser(
        "export",
        help="write a run's model as a StableHLO artifact (or ONNX file) to serve without jrnn",
        description="Writes PATH (jax.export's serialized StableHLO, or with --format onnx an "
        "ONNX file: the run's inference with its latest parameters, batch and time symbolic) "
        "and PATH.json (the inputs' and outputs' names, dtypes and shapes).",
    )
    add_arguments(x)
    x.set_defaults(func=_cmd_export)


def main(argv: list[str] | None = None) -> int:
    """Runs ``jrnn`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code (bad
    input: one line on stderr, then ``SystemExit(2)``)."""
    from jrnn.app.background import held_background_errors
    from jrnn.app.errors import UsageError, environment_failure

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(*_help_task(argv)).parse_args(argv)
    args.argv = argv  # as given: a launcher (train --processes) passes it on

    def one_line(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        print(f"jrnn {args.command}: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings(), held_background_errors() as held:
        warnings.showwarning = one_line  # restored on exit: warnings as one line each
        try:
            return args.func(args)
        except UsageError as e:
            print(f"jrnn {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
            raise SystemExit(2) from None
        except (OSError, MemoryError, RuntimeError) as e:
            reason = environment_failure(e)
            if reason is None:
                raise
            held.drop()  # Orbax's threads' reports of the same failure
            print(f"jrnn {args.command}: error: {reason}", file=sys.stderr)
            return 1


def run() -> NoReturn:
    """The ``jrnn`` command (console script and ``python -m jrnn``): `main`, then an
    immediate exit with its code.  First, where it helps, it starts itself again once with
    huge pages for XLA:CPU's buffers (`jrnn.app.hugepages`; a user's setting is kept).

    Every file a command writes is closed before `main` returns (checkpoints are
    waited for, metrics and plots written), so nothing is lost by skipping interpreter
    shutdown.  A damaged checkpoint is found by its manifest before Orbax opens it
    ([`jrnn.checkpoint`][]), so no failed TensorStore read is left to report anything.
    An uncaught exception ends as usual, with its traceback.
    """
    restart_with_huge_pages()
    try:
        code = main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _cmd_train(args: argparse.Namespace) -> int:
    from jrnn.app import Config, devices, fit, runs
    from jrnn.app.errors import NonFiniteLoss, TrainingInterrupted, UsageError
    from jrnn.app.launch import launch_train
    from jrnn.app.loop import check_resume, resumed

    if args.resume and args.force:
        raise UsageError("--resume and --force exclude each other")
    fields = Config.__dataclass_fields__
    explicit = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    out = runs.out_folder(args.out, explicit.get("task", "charlm"), args.resume)
    if args.resume:
        saved = runs.read_config(out, "--resume: ")
        check_resume(saved, explicit, out)
        config = resumed(saved, explicit)
    else:
        config = Config(**explicit)
    if args.processes is not None:  # N local processes, each running this command
        return launch_train(args, config, "devices" in explicit, out)
    devices.start(config, args)  # before JAX starts: host devices, multi-host
    try:
        fit(config, out, resume=args.resume, force=args.force, progress=not args.no_progress)
        devices.stop()  # after every process has finished
    except NonFiniteLoss as e:
        print(f"jrnn train: error: {e}", file=sys.stderr)
        return 1
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)
        return 130
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from jrnn.app import sample_run

    text = sample_run(args.dir, args.prompt, args.length, args.temperature, args.seed)
    sys.stdout.write(text + "\n")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from jrnn.app import evaluate_run
    from jrnn.app.loop import format_row

    print(format_row(evaluate_run(args.dir, full=args.full)))
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from jrnn.app import decode_run

    lines = decode_run(
        args.dir,
        beam=args.beam,
        num=args.num,
        temperature=args.temperature,
        length_penalty=args.length_penalty,
        seed=args.seed,
        plot=args.plot,
    )
    print("\n".join(lines))
    return 0


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from jrnn.app.diagnose import OPTIONS, diagnose, summary

    given = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    report, out = diagnose(args.dir, args.out, **given)
    print("\n".join(summary(report, out)))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from jrnn.app.serve import export_run

    print("\n".join(export_run(args.dir, args.out, fmt=args.format, streaming=args.streaming)))
    return 0
