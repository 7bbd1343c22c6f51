"""The application layer (jrnn.app) apart from training runs: the library does not depend on
it, one config is the source of every default (``--help``, docs/cli.md), the task registry,
config checks, fast refusals of wrong run folders, and docs/cli.md's code."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jrnn.app import Config, UsageError, runs
from jrnn.app.config import _METAS, FIXED_KEYS, FREE_KEYS, _flag, defaults, markdown_table
from jrnn.app.tasks import TASKS, get
from jrnn.cli import main

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "cli.md"
LIBRARY = [
    p
    for p in sorted((REPO / "jrnn").rglob("*.py"))
    if "app" not in p.relative_to(REPO / "jrnn").parts[:1]
    and p.name not in ("cli.py", "__main__.py")
]


# ------------------------------------------------------------------------------------------
# the library does not import the application


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_library_modules_import_nothing_from_the_app():
    names = {p.relative_to(REPO).as_posix() for p in LIBRARY}
    for required in ("jrnn/data.py", "jrnn/seqtasks.py", "jrnn/models.py", "jrnn/train.py"):
        assert required in names
    assert "jrnn/interop/torch.py" in names and "jrnn/nn/linen.py" in names
    for path in LIBRARY:
        bad = {m for m in _imported_modules(path) if m == "jrnn.app" or m.startswith("jrnn.app.")}
        bad |= {m for m in _imported_modules(path) if m in ("jrnn.cli", "jrnn.tasks")}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_importing_the_library_loads_no_app_module():
    mods = ["jrnn"] + [
        "jrnn." + p.relative_to(REPO / "jrnn").with_suffix("").as_posix().replace("/", ".")
        for p in LIBRARY
        if p.parent == REPO / "jrnn" and p.name != "__init__.py"
    ]
    code = (
        f"import importlib, sys\nfor m in {mods!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('jrnn.app', 'jrnn.cli'))))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_lazy_package_exports_every_public_name():
    """``import jrnn`` loads no JAX; the first public name used loads them all; no public
    name is also the name of a submodule (the function ``jrnn.unroll`` lives in
    ``jrnn.unrolling``, ``jrnn.stack`` in ``jrnn.stacks``)."""
    code = (
        "import sys, jrnn\nassert 'jax' not in sys.modules, 'import jrnn loaded jax'\n"
        "import jrnn.models, jrnn.unrolling, jrnn.stacks\nassert callable(jrnn.unroll)\n"
        "import pkgutil\nmods = {m.name for m in pkgutil.iter_modules(jrnn.__path__)}\n"
        "assert not mods & set(jrnn.__all__), mods & set(jrnn.__all__)\n"
        "missing = [n for n in jrnn.__all__ if n not in vars(jrnn)]\nassert not missing, missing\n"
        "from jrnn import lstm, unroll_defaults\nfrom jrnn.strategy import default_strategy\n"
        "assert unroll_defaults is default_strategy and jrnn.lstm is lstm\n"
        "assert set(jrnn.__all__) <= set(dir(jrnn))\n"
        "assert callable(jrnn.train.make_train_step) and jrnn.models.seq2seq is jrnn.seq2seq\n"
        "print('ok')"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert res.stdout.strip() == "ok", res.stderr


def test_version(capsys):
    import jrnn

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"jrnn {jrnn.__version__}"


# ------------------------------------------------------------------------------------------
# one source of defaults


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    return re.sub(r"\s+", " ", capsys.readouterr().out)


def _shown_default(text: str, name: str) -> str:
    """The ``(default: ...)`` of flag ``name`` in the options part of a help text."""
    options = text[text.index("task and data:") :]
    pattern = (
        re.escape(_flag(name)) + r"[ ,{](?:[^()]|\((?!default: )[^()]*\))*?\(default: ([^)]*)\)"
    )
    m = re.search(pattern, options)
    assert m, f"{_flag(name)} not in the help"
    return m.group(1)


def _parse_shown(name: str, shown: str):
    meta = _METAS[name]
    if name == "corpus":
        return None if shown == "the Python standard library source" else shown
    if meta.kind == "bool":
        return {"on": True, "off": False}[shown]
    if meta.kind in ("int", "posint", "natural"):
        return int(shown)
    if meta.kind in ("posfloat", "nonneg", "rate", "unit"):
        return float(shown)
    return shown


@pytest.mark.parametrize("task", TASKS)
def test_help_shows_exactly_the_defaults_used(task, capsys):
    """``jrnn train --task T [--model M] --help`` shows, for every flag the task uses, the
    value a run with that flag left out computes with."""
    for model in (None, *get(task).models):
        argv = ["train", "--task", task] + (["--model", model] if model else []) + ["--help"]
        text = _help(argv, capsys)
        used = Config(task=task, arch=model)
        checked = 0
        for name in _METAS:
            if name == "task" or f"{_flag(name)} " not in text[text.index("task and data:") :]:
                continue
            shown = _shown_default(text, name)
            if model is None and ";" in shown:  # other models' values follow the default's
                shown = shown.split(";")[0]
            assert _parse_shown(name, shown) == getattr(used, name), (task, model, name, shown)
            checked += 1
        assert checked >= 18, (task, model, checked)


def test_help_without_a_task_lists_every_tasks_default(capsys):
    text = _help(["train", "--help"], capsys)
    for name in ("hidden", "embed", "checkpoint_every", "steps", "lr", "eval_every", "seq_len"):
        shown = _shown_default(text, name)
        per_task: dict[str, str] = {}
        for part in shown.split("; "):
            *who, value = part.split(" ")
            for t in " ".join(who).split(", "):
                per_task[t] = value
        for task in TASKS:
            assert _parse_shown(name, per_task[task]) == getattr(Config(task=task), name), (
                name,
                task,
            )
        assert (
            _parse_shown(name, per_task["copy --model attention"])
            == getattr(Config(task="copy", arch="attention"), name)
            or "copy --model attention" not in per_task
        )


def test_sequence_task_defaults_are_the_documented_ones():
    """The class of bug this layout removes: reverse's hidden/embed/checkpoint interval shown
    by --help and the docs are the values used."""
    c = Config(task="reverse")
    assert (c.hidden, c.embed, c.checkpoint_every, c.steps) == (128, 32, 500, 1500)
    table = markdown_table()
    section = table[table.index("#### `--task reverse`") : table.index("#### `--task sort`")]
    assert "| `--hidden N` | 128 |" in section and "| `--embed N` | 32 |" in section
    assert "| `--checkpoint-every N` | 500 |" in section
    copy_section = table[table.index("#### `--task copy`") : table.index("#### `--task reverse`")]
    assert "| `--hidden N` | 64; --model seq2seq, attention: 128 |" in copy_section
    assert (
        Config(task="copy", arch="attention").hidden == 128 == defaults("copy", "seq2seq")["hidden"]
    )


def test_docs_flag_tables_are_the_generated_ones():
    text = DOC.read_text(encoding="utf-8")
    begin = "<!-- generated: jrnn.app.config.markdown_table() -->\n\n"
    end = "\n<!-- end generated -->"
    assert begin in text and end in text
    shown = text[text.index(begin) + len(begin) : text.index(end)]
    assert shown == markdown_table(), (
        "docs/cli.md is out of date: paste jrnn.app.config.markdown_table() between the markers"
    )


def test_every_task_is_one_file_in_the_registry():
    folder = REPO / "jrnn" / "app" / "tasks"
    files = {p.stem for p in folder.glob("*.py")} - {"__init__", "spec", "common", "sequences"}
    assert files == set(TASKS)
    for name in TASKS:
        spec = get(name)
        assert spec.models and spec.summary
        Config(task=name)  # every field gets a default
    assert "parity" in TASKS


def test_config_round_trips_and_splits_fixed_from_free_keys():
    c = Config(task="runsum", arch="outrec-hidden", hidden=12, sample_prob=0.25)
    assert Config.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert set(FIXED_KEYS) | set(FREE_KEYS) == set(c.to_dict())
    assert set(FREE_KEYS) == {
        "checkpoint_every",
        "eval_every",
        "log_every",
        "sample_length",
        "devices",
        "micro_batches",
    }
    old = {k: v for k, v in c.to_dict().items() if k not in ("arch", "min_len", "pool")}
    assert Config.from_dict(old).arch == "outrec"  # runs written before --model: the task's


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden": 0}, "--hidden: must be a positive integer, got 0"),
        ({"hidden": 2.5}, "--hidden: must be an integer, got 2.5"),
        ({"lr": float("nan")}, "--lr: must be a positive number"),
        ({"dropout": 1.0}, "--dropout: must be in [0, 1)"),
        ({"cell": "transformer"}, "--cell: invalid choice: 'transformer'"),
        ({"task": "translate"}, "--task: invalid choice: 'translate'"),
        ({"task": "classify", "arch": "attention"}, "does not take model 'attention'"),
        ({"task": "reverse", "min_len": 30}, "--min-len 30 is beyond"),
        ({"task": "adding", "tbptt": True}, "--tbptt applies to --task charlm only"),
        ({"task": "adding", "seq_len": 1}, "--seq-len must be at least 2"),
        ({"task": "parity", "num_symbols": 3}, "--num-symbols is 2 for --task parity"),
        ({"task": "mqar", "num_symbols": 3}, "--num-symbols 3 is below --num-pairs 4"),
        ({"task": "mqar", "num_pairs": 6}, "--seq-len 16 is below 3 x --num-pairs = 18"),
        ({"task": "mqar", "num_pairs": 0}, "--num-pairs: must be a positive integer, got 0"),
        ({"tbptt": 1}, "--tbptt: must be True or False"),
    ],
)
def test_config_refuses_bad_values_naming_the_flag(kwargs, message):
    with pytest.raises(UsageError) as info:
        Config(**kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


# ------------------------------------------------------------------------------------------
# wrong run folders are refused before any model is built


def _fake_run(folder: Path, config: Config) -> Path:
    (folder / "checkpoints" / "10").mkdir(parents=True)
    runs.write_json_atomic(folder / "config.json", config.to_dict())
    return folder


def test_wrong_run_folders_are_refused_without_building(tmp_path, capsys, monkeypatch):
    """How fast that is: ``benchmarks/refusal.py`` (not a test: it depends on the machine)."""
    import jrnn.app.restore

    def no_build(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(jrnn.app.restore, "build_state", no_build)
    rev = _fake_run(tmp_path / "rev", Config(task="reverse"))
    lm = _fake_run(tmp_path / "lm", Config())
    tag = _fake_run(tmp_path / "tag", Config(task="future", arch="tagger"))
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    runs.write_json_atomic(empty / "config.json", Config(task="sort").to_dict())
    cases = [
        (["sample", str(rev)], "sample needs a run of a text task"),
        (["decode", str(lm)], "decode needs a run of a sequence task"),
        (["decode", str(tag), "--beam", "3"], "--beam needs an encoder-decoder run"),
        (["decode", str(tag), "--plot", "x.png"], "--plot needs an attention run"),
        (["sample", str(tmp_path)], "is not a run folder"),
        (["eval", str(tmp_path)], "is not a run folder"),
        (["decode", str(tmp_path / "missing")], "is not a run folder"),
        (["eval", str(empty)], "has no checkpoint yet"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert info.value.code == 2 and len(err) == 1 and message in err[0], (argv, err)


@pytest.mark.parametrize(
    "command, message",
    [
        ("sample", "sample needs a run of a text task"),
        ("decode", "decode needs a run of a sequence task"),
        ("eval", "is not a run folder"),
    ],
)
def test_refusal_from_a_fresh_process_reads_only_json(tmp_path, command, message):
    """In a fresh process a wrong folder is refused before jrnn loads JAX or anything to
    build or restore a model (orbax, matplotlib, tqdm, the task builders).  How fast that
    is: ``benchmarks/refusal.py``."""
    config = Config(task="reverse") if command == "sample" else Config()
    folder = tmp_path if command == "eval" else _fake_run(tmp_path / "run", config)
    code = (
        "import sys\nimport jrnn\nbefore = set(sys.modules)\n"
        "from jrnn.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
        "new = set(sys.modules) - before\n"
        "heavy = sorted(m for m in new if m.split('.')[0] in ('orbax', 'matplotlib', 'tqdm')"
        " or m.split('.')[0] == 'jax'"
        " or m in ('jrnn.checkpoint', 'jrnn.app.tasks.common', 'jrnn.app.tasks._seq'))\n"
        "print(code, heavy, file=sys.stderr)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, command, str(folder)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2 and message in lines[0], res.stderr
    assert lines[1] == "2 []", res.stderr
