"""``jrnn export``: a run folder's latest checkpoint as a serialized StableHLO artifact
(:mod:`jrnn.export`), for a server that has JAX but not jrnn or the training code.

``jrnn export RUN_DIR --out PATH`` writes ``PATH`` and ``PATH.json`` (the signature: the
inputs' and outputs' names, dtypes and shapes, ``"batch"``/``"time"`` symbolic): the task's
inference function with the trained parameters inside (a language model's or tagger's
outputs and final carry; an encoder-decoder's greedy decoding, ``max_len`` the task's
decode length).  ``--streaming``: the one-step function ``(*carry, token) -> (*carry,
output)`` instead, the initial carry in ``PATH.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jrnn.app.errors import UsageError

__all__ = ["FORMATS", "add_arguments", "export_run"]

FORMATS = ("stablehlo",)
"""What ``--format`` writes: StableHLO serialized by ``jax.export``."""


def add_arguments(parser: Any) -> None:
    """The flags of ``jrnn export`` (the command line's parser is :mod:`jrnn.cli`'s)."""
    parser.add_argument("dir", metavar="DIR", help="run folder")
    parser.add_argument("--out", metavar="PATH", required=True, help="the artifact to write")
    parser.add_argument(
        "--format", choices=FORMATS, default="stablehlo", help="artifact format (stablehlo)"
    )
    parser.add_argument(
        "--streaming", action="store_true", help="the one-step function (carry, x_t) -> ..."
    )


def _describe(ports: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p['name']} {p['dtype']}[{','.join(map(str, p['shape']))}]" for p in ports)


def export_run(
    directory: str | Path, out: str | Path, *, fmt: str = "stablehlo", streaming: bool = False
) -> list[str]:
    """Writes the run's inference (or, ``streaming``, its step) to ``out`` and
    ``out.json``; returns the lines ``jrnn export`` prints."""
    from jrnn.app.restore import check_run, open_run

    out = Path(out)
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the artifact's file name")
    run = open_run(directory, check_run(directory, "export"))

    from jrnn import export

    try:
        if streaming:
            served = export.streaming(run.task.model, run.params)
        else:
            served = export.inference(run.task.model, run.params, max_len=run.task.decode_len)
    except (TypeError, ValueError) as e:  # what the model cannot do, in the library's words
        what = "--streaming" if streaming else "export"
        raise UsageError(
            f"{what}: {str(e).split(': ', 1)[-1]} ({directory} is a {run.config.task} run, "
            f"--model {run.config.arch})"
        ) from None
    try:
        artifact = export.stablehlo(served)
    except ImportError as e:  # flatbuffers
        raise UsageError(f"{e} (pip install 'jrnn[export]')") from None
    export.save(artifact, out)
    sig = artifact.signature
    return [
        f"step {run.step} of {directory} ({run.config.task}, --model {run.config.arch}"
        + (", one step" if streaming else "")
        + f") -> {out} ({len(artifact.data):,} bytes) and {out}.json",
        f"inputs:  {_describe(sig['inputs'])}",
        f"outputs: {_describe(sig['outputs'])}",
    ]
