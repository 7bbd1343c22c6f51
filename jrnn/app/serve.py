"""``jrnn export``: a run folder's latest checkpoint as a serialized StableHLO artifact
([`jrnn.export`][]), for a server that has JAX but not jrnn or the training code, or as an
ONNX file (``--format onnx``) for onnxruntime and the other ONNX runtimes.

``jrnn export RUN_DIR --out PATH`` writes ``PATH`` and ``PATH.json`` (the signature: the
inputs' and outputs' names, dtypes and shapes, ``"batch"``/``"time"`` symbolic): the task's
inference function with the trained parameters inside (a language model's or tagger's
outputs and final carry; an encoder-decoder's greedy decoding, ``max_len`` the task's
decode length).  ``--streaming``: the one-step function ``(*carry, token) -> (*carry,
output)`` instead, the initial carry in ``PATH.json``.  ``--format onnx`` writes the
inference (or the step) with ONNX's native ``RNN``/``LSTM``/``GRU`` operators
([`jrnn.export.onnx`][]: a language model or tagger of a simple RNN, LSTM or GRU,
stacked, or bidirectional when not streaming); what it cannot express is refused in one
line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jrnn.app.errors import UsageError

__all__ = ["FORMATS", "add_arguments", "export_run"]

FORMATS = ("stablehlo", "onnx")
"""What ``--format`` writes: StableHLO serialized by ``jax.export``, or an ONNX file."""


def add_arguments(parser: Any) -> None:
    """The flags of ``jrnn export`` (the command line's parser is `jrnn.cli`'s)."""
    parser.add_argument("dir", metavar="DIR", help="run folder")
    parser.add_argument("--out", metavar="PATH", required=True, help="the artifact to write")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="stablehlo",
        help="stablehlo (jax.export; the default) or onnx (ONNX's RNN/LSTM/GRU operators)",
    )
    parser.add_argument(
        "--streaming", action="store_true", help="the one-step function (carry, x_t) -> ..."
    )


_LIBRARY_HINT = 'format="stablehlo" (jrnn.export.stablehlo)'
"""How [`jrnn.export.onnx`][]'s refusals name the way out; the command line says
``--format stablehlo``."""


def _artifact(run: Any, fmt: str, streaming: bool) -> Any:
    """The run's [`jrnn.export.Artifact`][] in ``fmt``."""
    from jrnn import export

    if fmt == "onnx":
        return export.onnx(run.task.model, run.params, streaming=streaming)
    if streaming:
        served = export.streaming(run.task.model, run.params)
    else:
        served = export.inference(run.task.model, run.params, max_len=run.task.decode_len)
    return export.stablehlo(served)


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
        artifact = _artifact(run, fmt, streaming)
    except (TypeError, ValueError) as e:  # what the model cannot do, in the library's words
        what = "--streaming" if streaming else "export"
        why = str(e).split(": ", 1)[-1].replace(_LIBRARY_HINT, "--format stablehlo")
        raise UsageError(
            f"{what}: {why} ({directory} is a {run.config.task} run, --model {run.config.arch})"
        ) from None
    except ImportError as e:  # flatbuffers, onnx
        hint = "" if "jrnn[export]" in str(e) else " (pip install 'jrnn[export]')"
        raise UsageError(f"{e}{hint}") from None
    export.save(artifact, out)
    sig = artifact.signature
    return [
        f"step {run.step} of {directory} ({run.config.task}, --model {run.config.arch}"
        + (", one step" if streaming else "")
        + f") -> {out} ({len(artifact.data):,} bytes{', ONNX' if fmt == 'onnx' else ''}) "
        f"and {out}.json",
        f"inputs:  {_describe(sig['inputs'])}",
        f"outputs: {_describe(sig['outputs'])}",
    ]
