"""The run configuration: one frozen dataclass, the single source of every default.

Every field of [`Config`][jrnn.app.config.Config] carries its flag, help text, kind and choices in
its metadata; its default is the common default, overridden per task (and per task and model)
by the task's `TaskSpec`.  `defaults` is the only place
where these are combined: the ``jrnn train`` parser and its ``--help``
(`add_train_arguments`), the run folder's ``config.json``
([`Config.to_dict`][jrnn.app.config.Config.to_dict]), the docs' flag tables (`markdown_table`) and
`jrnn.app.fit` all read it.

Examples:
  >>> from jrnn.app.config import Config, defaults
  >>> c = Config(task="reverse", hidden=32)
  >>> c.hidden, c.embed, c.arch, c.checkpoint_every
  (32, 32, 'attention', 500)
  >>> defaults("copy", "attention")["steps"], defaults("copy")["steps"]
  (1500, 1000)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any, NamedTuple

from jrnn.app import tasks
from jrnn.app.errors import UsageError

__all__ = [
    "CELLS",
    "CONDITIONS",
    "DTYPES",
    "ENCODER_DECODERS",
    "MODELS",
    "POOLS",
    "SCORES",
    "Config",
    "add_train_arguments",
    "arg_type",
    "canonical",
    "defaults",
    "markdown_table",
]

MODELS = (
    "lm",
    "seq2vec",
    "tagger",
    "bitagger",
    "outrec",
    "outrec-hidden",
    "vec2seq",
    "seq2seq",
    "attention",
)
REGULARISED = ("lm", "seq2vec", "tagger", "bitagger")
"""Models whose training passes a key to their cell (``--zoneout``, ``--recurrent-dropout``)."""
ENCODER_DECODERS = ("seq2seq", "attention", "vec2seq")
"""Models that generate their output (``jrnn decode --beam/--temperature``)."""
SCORES = ("general", "dot", "additive")
POOLS = ("last", "mean", "max")
CONDITIONS = ("both", "init", "input")
CELLS = (
    "rnn",
    "lstm",
    "lstm-peephole",
    "gru",
    "gru-reset-after",
    "mingru",
    "minlstm",
    "lru",
    "rglru",
    "mlstm",
    "slstm",
)
LINEAR_CELLS = ("mingru", "minlstm", "lru", "rglru")
"""Cells with an element-wise linear recurrence (no layer norm, no recurrent matmul)."""
DTYPES = ("float32", "bfloat16", "float64")
GROUPS = ("task and data", "model", "optimisation", "schedule")

_REQUIRED = object()  # no common default: every task sets it


class Meta(NamedTuple):
    """A config field's flag: ``kind`` is one of ``int``, ``posint``, ``natural`` (>= 0),
    ``posfloat``, ``nonneg``, ``rate`` ([0, 1)), ``unit`` ([0, 1]), ``bool``, ``choice``,
    ``path``, ``devices`` (a positive int or ``auto``)."""

    help: str
    group: str
    kind: str
    default: Any
    choices: tuple[str, ...] | None = None
    flag: str | None = None
    metavar: str | None = None
    free: bool = False  # may change on --resume
    scope: str | tuple[str, ...] | None = None  # "uses": tasks naming it; models using it
    strict: bool = False  # refused (not ignored) by tasks outside its scope


def _f(help: str, group: str, kind: str, default: Any = _REQUIRED, **kw: Any) -> Any:
    return dataclasses.field(
        default=None, metadata={"jrnn": Meta(help, group, kind, default, **kw)}
    )


_T, _M, _O, _R = GROUPS


@dataclasses.dataclass(frozen=True)
class Config:
    """A run's configuration; a field left ``None`` takes the task's (and model's) default.

    Construction checks every value (`jrnn.app.UsageError` names the flag, the
    expected and the actual value) and the task/model combination.
    """

    task: str = _f("the task", _T, "choice", "charlm", choices=tasks.TASKS)
    corpus: str | None = _f(
        "text file or folder to learn from", _T, "path", None, metavar="PATH", scope="uses"
    )
    max_chars: int = _f("cap on corpus characters read", _T, "posint", 8_000_000, scope="uses")
    copy_len: int = _f("symbols to recall", _T, "posint", 10, scope="uses")
    num_symbols: int = _f("alphabet size", _T, "posint", 8, scope="uses")
    num_pairs: int = _f("key-value pairs to recall", _T, "posint", 4, scope="uses")
    min_len: int = _f("shortest sequence (the longest is --seq-len)", _T, "posint", 1, scope="uses")
    arch: str = _f("architecture; the first listed is the task's", _M, "choice", flag="--model")
    score: str = _f(
        "attention score (Luong general/dot, or additive)",
        _M,
        "choice",
        "general",
        choices=SCORES,
        scope=("attention",),
    )
    pool: str = _f(
        "sequence summary: final state, or pooled states",
        _M,
        "choice",
        "last",
        choices=POOLS,
        scope=("seq2vec",),
    )
    condition: str = _f(
        "the vector as the initial state, an input at every step, or both",
        _M,
        "choice",
        "both",
        choices=CONDITIONS,
        scope=("vec2seq",),
    )
    sample_prob: float = _f(
        "scheduled sampling: feed the model's own prediction with probability X",
        _M,
        "unit",
        0.0,
        metavar="X",
        scope=("seq2seq", "attention", "outrec", "outrec-hidden"),
    )
    cell: str = _f("recurrent cell", _M, "choice", "lstm", choices=CELLS)
    layer_norm: bool = _f("layer-normalised cell (Ba et al. 2016)", _M, "bool", False)
    zoneout: float = _f(
        "zoneout rate of the cell's state (Krueger et al. 2017)",
        _M,
        "rate",
        0.0,
        scope=REGULARISED,
    )
    recurrent_dropout: float = _f(
        "variational dropout of the recurrent state, one mask per sequence (Gal & Ghahramani)",
        _M,
        "rate",
        0.0,
        scope=REGULARISED,
    )
    hidden: int = _f("hidden size", _M, "posint")
    layers: int = _f("stacked layers", _M, "posint", 1)
    dropout: float = _f("dropout between layers and before the readout", _M, "rate", 0.0)
    embed: int = _f("token embedding size, 0 = one-hot", _M, "natural")
    dtype: str = _f(
        "compute dtype (bfloat16 keeps float32 parameters)", _M, "choice", "float32", choices=DTYPES
    )
    steps: int = _f("training steps (--resume with more extends the run)", _O, "posint")
    decay_steps: int = _f(
        "steps the learning rate decays over (cosine to lr/10, then constant), 0 = --steps; "
        "--resume with more --steps sets it to the run's steps",
        _O,
        "natural",
        0,
    )
    batch_size: int = _f("sequences per step", _O, "posint")
    seq_len: int = _f("window length (charlm) / sequence length / longest sequence", _O, "posint")
    lr: float = _f("peak Adam learning rate (warm-up, cosine decay to lr/10)", _O, "posfloat")
    clip: float = _f("global gradient-norm clip, 0 = off", _O, "nonneg", 1.0)
    tbptt: bool = _f(
        "truncated BPTT over batch-size contiguous streams, carrying the state",
        _O,
        "bool",
        False,
        scope="uses",
        strict=True,
    )
    devices: int | str = _f(
        "devices each batch is split over: N, or auto (as many CPU cores or accelerators "
        "as the batch's work is worth)",
        _O,
        "devices",
        "auto",
        metavar="N|auto",
        free=True,
    )
    micro_batches: int = _f(
        "gradient accumulation: each device's batch is run as N micro-batches in turn",
        _O,
        "posint",
        1,
        free=True,
    )
    seed: int = _f("seed of everything random", _O, "int", 0)
    skip_nonfinite: bool = _f(
        "skip updates with a non-finite loss instead of stopping", _O, "bool", False
    )
    checkpoint_every: int = _f("steps between checkpoints", _R, "posint", free=True)
    eval_every: int = _f("steps between evaluations", _R, "posint", free=True)
    eval_batches: int = _f("evaluation batches, 0 = all (charlm)", _R, "natural")
    eval_batch_size: int = _f("rows per evaluation batch", _R, "posint")
    log_every: int = _f("steps per metrics row", _R, "posint", 10, free=True)
    sample_length: int = _f(
        "characters sampled at the end", _R, "natural", 400, free=True, scope="uses"
    )

    def __post_init__(self) -> None:
        if self.task is None:
            object.__setattr__(self, "task", _METAS["task"].default)
        spec = tasks.get(_check_value("task", self.task))
        arch = self.arch
        if arch is None:
            arch = spec.models[0]
        _check_value("arch", arch)
        if arch not in spec.models:
            raise UsageError(
                f"--model {arch}: task {spec.name!r} does not take model {arch!r}; "
                f"it takes {', '.join(spec.models)}"
            )
        base = defaults(spec.name, arch)
        for name, meta in _METAS.items():
            value = getattr(self, name)
            value = base[name] if value is None else _check_value(name, value)
            if meta.strict and value and not _applies(meta, name, spec):
                users = [t for t in tasks.TASKS if _applies(meta, name, tasks.get(t))]
                raise UsageError(f"{_flag(name)} applies to --task {', '.join(users)} only")
            object.__setattr__(self, name, value)
        if (self.zoneout or self.recurrent_dropout) and arch not in REGULARISED:
            raise UsageError(
                f"--zoneout and --recurrent-dropout apply to --model {', '.join(REGULARISED)} "
                f"only, not {arch}"
            )
        if self.cell == "mlstm" and (self.layer_norm or self.recurrent_dropout or self.zoneout):
            flag = (
                "--layer-norm"
                if self.layer_norm
                else "--recurrent-dropout"
                if self.recurrent_dropout
                else "--zoneout"
            )
            raise UsageError(
                f"{flag} does not apply to --cell mlstm (its carry is a matrix memory with "
                "its own group norm, no hidden state h)"
            )
        if self.cell == "slstm" and self.layer_norm:
            raise UsageError(
                "--layer-norm does not apply to --cell slstm (its normaliser n_t and "
                "stabiliser m_t are the authors'; xLSTM normalises after the cell)"
            )
        if self.cell in LINEAR_CELLS and (self.layer_norm or self.recurrent_dropout):
            flag = "--layer-norm" if self.layer_norm else "--recurrent-dropout"
            raise UsageError(
                f"{flag} does not apply to --cell {self.cell} (a linear recurrence without a "
                f"recurrent matmul); it applies to --cell "
                f"{', '.join(c for c in CELLS if c not in LINEAR_CELLS)}"
            )
        if spec.check is not None:
            spec.check(self)

    @property
    def spec(self) -> tasks.TaskSpec:
        """The task's `TaskSpec`."""
        return tasks.get(self.task)

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-serialisable (``config.json`` holds these keys)."""
        return {name: getattr(self, name) for name in _METAS}

    @classmethod
    def from_dict(cls, saved: Any, where: str = "config") -> Config:
        """A config read back from ``config.json`` (keys added since it was written take the
        values those runs computed with)."""
        if not isinstance(saved, dict):
            raise UsageError(f"{where}: not a JSON object")
        saved = {**LATER_KEYS, **saved}
        missing = [k for k in _METAS if k not in saved]
        if missing:
            raise UsageError(f"{where} lacks {', '.join(missing)}")
        return cls(**{k: saved[k] for k in _METAS})

    def differences(self, other: Config) -> list[str]:
        """The fixed fields (not the logging/saving schedule) where ``other`` differs."""
        return [
            k for k, m in _METAS.items() if not m.free and getattr(self, k) != getattr(other, k)
        ]


LATER_KEYS: dict[str, Any] = {
    "arch": None,
    "min_len": 1,
    "score": "general",
    "pool": "last",
    "condition": "both",
    "sample_prob": 0.0,
    "layer_norm": False,
    "zoneout": 0.0,
    "recurrent_dropout": 0.0,
    "devices": 1,
    "micro_batches": 1,
    "decay_steps": 0,
    "num_pairs": 4,
}
"""Keys added after the first release, with what older runs computed ("arch": the task's)."""

_METAS: dict[str, Meta] = {f.name: f.metadata["jrnn"] for f in dataclasses.fields(Config)}
FIXED_KEYS = tuple(k for k, m in _METAS.items() if not m.free)
FREE_KEYS = tuple(k for k, m in _METAS.items() if m.free)


def defaults(task: str, arch: str | None = None) -> dict[str, Any]:
    """Every field's default for ``task`` (and ``arch``; default: the task's first model)."""
    spec = tasks.get(task)
    arch = arch or spec.models[0]
    values = {k: m.default for k, m in _METAS.items()}
    values.update(spec.defaults)
    values.update(task=spec.name, arch=arch)
    values.update(spec.model_defaults.get(arch, {}))
    missing = [k for k, v in values.items() if v is _REQUIRED]
    if missing:
        raise AssertionError(f"task {task!r} sets no default for {missing}")  # pragma: no cover
    return values


def _flag(name: str) -> str:
    return _METAS[name].flag or "--" + name.replace("_", "-")


def _applies(meta: Meta, name: str, spec: tasks.TaskSpec) -> bool:
    if meta.scope is None:
        return True
    if meta.scope == "uses":
        return name in spec.uses
    return any(m in meta.scope for m in spec.models)


# ------------------------------------------------------------------------------------------
# values


def _convert(kind: str, value: Any, text: bool) -> Any:
    """``value`` (a flag's text when ``text``) checked and converted; ValueError says why."""
    if kind in ("int", "posint", "natural"):
        if text:
            try:
                value = int(value)
            except ValueError:
                raise ValueError(f"must be an integer, got {value!r}") from None
        elif isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {value!r}")
        if kind == "posint" and value < 1:
            raise ValueError(f"must be a positive integer, got {value}")
        if kind == "natural" and value < 0:
            raise ValueError(f"must be a non-negative integer, got {value}")
        return value
    if kind in ("posfloat", "nonneg", "rate", "unit"):
        shown = value
        if text:
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"must be a number, got {value!r}") from None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {value!r}")
        value = float(value)
        ok = {
            "posfloat": (value > 0, "a positive number"),
            "nonneg": (value >= 0, "a non-negative number"),
            "rate": (0 <= value < 1, "in [0, 1)"),
            "unit": (0 <= value <= 1, "in [0, 1]"),
        }[kind]
        if not math.isfinite(value) or not ok[0]:
            raise ValueError(f"must be {ok[1]}, got {shown}")
        return value
    if kind == "devices":
        if value == "auto":
            return value
        try:
            return _convert("posint", value, text)
        except ValueError:
            raise ValueError(f"must be a positive integer or auto, got {value!r}") from None
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"must be True or False, got {value!r}")
        return value
    if kind == "path":
        if not isinstance(value, str | Path):
            raise ValueError(f"must be a path, got {value!r}")
        return str(Path(value).expanduser().absolute())
    return value


def canonical(name: str, value: Any) -> Any:
    """``value`` of field ``name`` as a Config stores it (a corpus path made absolute)."""
    return _check_value(name, value) if value is not None else None


def _check_value(name: str, value: Any) -> Any:
    meta = _METAS[name]
    choices = MODELS if name == "arch" else meta.choices
    if choices is not None:
        if value not in choices:
            raise UsageError(
                f"{_flag(name)}: invalid choice: {value!r} (choose from {', '.join(choices)})"
            )
        return value
    try:
        return _convert(meta.kind, value, text=False)
    except ValueError as e:
        raise UsageError(f"{_flag(name)}: {e}") from None


# ------------------------------------------------------------------------------------------
# the parser and its help


def _show(name: str, value: Any) -> str:
    if name == "corpus" and value is None:
        return "the Python standard library source"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def default_text(name: str, task: str | None = None, arch: str | None = None) -> str:
    """The default of a field as ``--help`` and the docs show it.

    With ``task`` and ``arch``: the one value used.  With ``task``: its default model's
    value, then ``; --model M: value`` for models that change it.  With neither: every
    task's value, tasks with equal values grouped (``charlm 256; adding, copy 64; ...``).
    """
    if task is not None:
        base = defaults(task, arch)[name]
        text = _show(name, base)
        if arch is None and name != "arch":
            others: dict[str, list[str]] = {}
            for m in tasks.get(task).models[1:]:
                value = defaults(task, m)[name]
                if value != base:
                    others.setdefault(_show(name, value), []).append(m)
            text += "".join(f"; --model {', '.join(ms)}: {v}" for v, ms in others.items())
        return text
    by_value: dict[str, list[str]] = {}
    for t in tasks.TASKS:
        base = defaults(t)[name]
        by_value.setdefault(_show(name, base), []).append(t)
        for m in tasks.get(t).models[1:] if name != "arch" else ():
            value = defaults(t, m)[name]
            if value != base:
                by_value.setdefault(_show(name, value), []).append(f"{t} --model {m}")
    if len(by_value) == 1:
        return next(iter(by_value))
    return "; ".join(f"{', '.join(ts)} {v}" for v, ts in by_value.items())


def _metavar(meta: Meta) -> str:
    return meta.metavar or ("X" if meta.kind in ("posfloat", "nonneg", "rate", "unit") else "N")


def arg_type(kind: str):
    """An argparse ``type`` checking a flag's text as a value of ``kind`` (see `Meta`)."""

    def parse(text: str) -> Any:
        try:
            return _convert(kind, text, text=True)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = kind
    return parse


def add_train_arguments(
    parser: argparse.ArgumentParser, task: str | None = None, arch: str | None = None
) -> None:
    """Adds one flag per [`Config`][jrnn.app.config.Config] field, grouped; every default is left
    ``None`` (the task's, or the saved run's) and shown in the help: ``task``'s and ``arch``'s
    exactly
    when given (``jrnn train --task reverse --help``), else every task's."""
    groups = {g: parser.add_argument_group(g) for g in GROUPS}
    for name, meta in _METAS.items():
        kw: dict[str, Any] = {"dest": name, "default": None}
        if name == "task":
            kw["help"] = ". ".join(f"{t}: {tasks.get(t).summary}" for t in tasks.TASKS)
        else:
            where = ""
            if meta.scope is not None and task is None:
                users = [t for t in tasks.TASKS if _applies(meta, name, tasks.get(t))]
                where = f"{', '.join(users)}: " if meta.scope == "uses" else ""
                if meta.scope != "uses":
                    where = f"--model {', '.join(meta.scope)}: "
            kw["help"] = f"{where}{meta.help} (default: {default_text(name, task, arch)})"
            if task is not None and not _applies(meta, name, tasks.get(task)):
                kw["help"] = argparse.SUPPRESS  # accepted, unused by this task
        if name == "arch":
            spec_models = tasks.get(task).models if task else MODELS
            kw["choices"] = MODELS
            kw["metavar"] = "{" + ",".join(spec_models) + "}"
        elif meta.choices is not None:
            kw["choices"] = meta.choices
        elif meta.kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = arg_type(meta.kind) if meta.kind != "path" else str
            kw["metavar"] = _metavar(meta)
        groups[meta.group].add_argument(_flag(name), **kw)


# ------------------------------------------------------------------------------------------
# docs


def markdown_table() -> str:
    """The ``jrnn train`` flags of every task as Markdown tables (for ``docs/cli.md``)."""
    out: list[str] = []
    for t in tasks.TASKS:
        spec = tasks.get(t)
        models = ", ".join(f"`{m}`" for m in spec.models)
        out += [
            f"#### `--task {t}`",
            "",
            f"{spec.summary[0].upper()}{spec.summary[1:]}. Models: {models} (the first is the "
            "default).",
            "",
            "| flag | default | meaning |",
            "|---|---|---|",
        ]
        for name, meta in _METAS.items():
            if name == "task" or not _applies(meta, name, spec):
                continue
            flag = _flag(name)
            if meta.kind == "bool":
                flag = f"{flag}` / `--no-{flag[2:]}"
            elif name == "arch":
                flag += " {" + ",".join(spec.models) + "}"
            elif meta.choices:
                flag += " {" + ",".join(meta.choices) + "}"
            else:
                flag += " " + _metavar(meta)
            out.append(f"| `{flag}` | {default_text(name, t)} | {meta.help} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
