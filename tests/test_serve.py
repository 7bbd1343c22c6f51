"""``jrnn.export`` and ``jrnn export``: artifacts that run where jrnn is not installed, the
streaming step equal to the whole-sequence call, the signature, and the command line's
one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import jrnn
from jrnn import export
from jrnn.cli import main

REPO = Path(__file__).resolve().parents[1]
V, H = 9, 6

# A fresh interpreter in which `import jrnn` fails: it deserializes the artifact with JAX
# alone and runs it on the saved inputs.
_RUN_WITHOUT_JRNN = """
import sys
sys.modules["jrnn"] = None  # import jrnn raises ImportError
try:
    import jrnn
except ImportError:
    pass
else:
    raise SystemExit("jrnn importable")
import json, jax, numpy as np
path, *files = sys.argv[1:]
exported = jax.export.deserialize(bytearray(open(path, "rb").read()))
signature = json.load(open(path + ".json"))
for inputs in files:  # each: the inputs of one call, by name; outputs to <file>.out.npz
    data = np.load(inputs)
    got = exported.call(*[data[p["name"]] for p in signature["inputs"]])
    outs = {p["name"]: np.asarray(a) for p, a in zip(signature["outputs"], got)}
    np.savez(inputs + ".out.npz", **outs)
"""


def _run_without_jrnn(path: Path, calls: list[dict[str, np.ndarray]]) -> list[dict]:
    """The artifact at ``path`` called on each of ``calls`` (inputs by name) in a fresh
    interpreter without jrnn; its outputs by name."""
    files = [f"{path}.{i}.npz" for i in range(len(calls))]
    for f, inputs in zip(files, calls, strict=True):
        np.savez(f, **inputs)
    done = subprocess.run(
        [sys.executable, "-c", _RUN_WITHOUT_JRNN, str(path), *files],
        capture_output=True, text=True, timeout=300, env={"JAX_PLATFORMS": "cpu", "PATH": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [dict(np.load(f"{f}.out.npz")) for f in files]


def _model_cases():
    seq = jrnn.sequence_model(jrnn.stack(jrnn.lstm(H), num_layers=2), V, vocab_size=V)
    tag = jrnn.tagger(jrnn.gru(H), 3, input_size=4, bidirectional=True)
    s2s = jrnn.seq2seq(jrnn.gru(H), jrnn.lstm(H), V, V, embed_size=5, attention="bahdanau")
    rec = jrnn.output_recurrent(3, H, vocab_size=V)
    return {"sequence_model": seq, "tagger": tag, "seq2seq": s2s, "output_recurrent": rec}


MODELS = _model_cases()


def _inputs(served: export.Served, batch: int, steps: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch * 100 + steps)
    sizes = {"batch": batch, "time": steps, "source_time": steps}
    out = {}
    for p in served.inputs:
        shape = tuple(sizes.get(d, d) for d in p.shape)
        if p.name.endswith("lengths"):
            out[p.name] = rng.integers(1, steps + 1, shape).astype(p.dtype)
        elif p.dtype == "int32":
            out[p.name] = rng.integers(3, V, shape).astype(p.dtype)
        else:
            out[p.name] = rng.normal(size=shape).astype(p.dtype)
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_the_artifact_runs_where_jrnn_is_not_installed(name, tmp_path):
    model = MODELS[name]
    params = model.init(jax.random.key(0))
    served = export.inference(model, params, max_len=7)
    path = export.save(export.stablehlo(served), tmp_path / f"{name}.jax")
    signature = json.loads(Path(f"{path}.json").read_text())
    assert [p["name"] for p in signature["inputs"]] == [p.name for p in served.inputs]
    assert [p["name"] for p in signature["outputs"]] == list(served.outputs)
    assert "batch" in signature["inputs"][0]["shape"]
    calls = [_inputs(served, batch, steps) for batch, steps in [(2, 5), (3, 8)]]
    for inputs, got in zip(calls, _run_without_jrnn(path, calls), strict=True):
        want = served.fn(*inputs.values())
        assert list(got) == list(served.outputs)
        for n, w in zip(served.outputs, want, strict=True):
            np.testing.assert_allclose(got[n], np.asarray(w), rtol=1e-5, atol=1e-6, err_msg=n)


def _stream(step: export.Served, xs: np.ndarray, fn=None) -> tuple[np.ndarray, list]:
    """Feeds ``xs [batch, time, ...]`` one step at a time from the initial carry."""
    fn = fn or step.fn
    batch = xs.shape[0]
    carry = [np.broadcast_to(a, (batch, *a.shape)) for a in step.initial_carry.values()]
    outs = []
    for t in range(xs.shape[1]):
        *carry, out = fn(*carry, xs[:, t])
        outs.append(np.asarray(out))
    return np.stack(outs, 1), carry


STREAMED = {
    "lm_two_layers": jrnn.sequence_model(jrnn.stack(jrnn.lstm(H), num_layers=2), V, vocab_size=V),
    "frames_gru": jrnn.sequence_model(jrnn.gru(H), 2, input_size=4),
    "tagger": jrnn.tagger(jrnn.lstm(H, peephole=True), 3, vocab_size=V),
    "last_readout": jrnn.seq2vec(jrnn.mingru(H), 3, vocab_size=V),
}


@pytest.mark.parametrize("name", list(STREAMED))
def test_streaming_one_step_at_a_time_equals_the_whole_sequence(name, tmp_path):
    model = STREAMED[name]
    params = model.init(jax.random.key(1))
    step = export.streaming(model, params)
    rng = np.random.default_rng(0)
    shape = (3, 7) if model.vocab_size else (3, 7, model.input_size)
    xs = rng.integers(0, V, shape).astype(np.int32) if model.vocab_size else rng.normal(size=shape)
    xs = xs.astype(np.int32 if model.vocab_size else np.float32)
    full, aux = model.apply(params, xs)
    traces = []
    jitted = jax.jit(lambda *args: traces.append(1) or step.fn(*args))
    streamed, carry = _stream(step, xs, jitted)
    assert len(traces) == 1  # traced once for the batch size, not once per step
    if model.readout == "all":
        np.testing.assert_allclose(streamed, full, rtol=1e-5, atol=1e-6)
    else:  # "last": the readout of the sequence that ends at the last step
        np.testing.assert_allclose(streamed[:, -1], full, rtol=1e-5, atol=1e-6)
    for a, b in zip(carry, jax.tree.leaves(aux.carry), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the exported step: the same, from its artifact
    back, signature = export.load(export.save(export.stablehlo(step), tmp_path / "step.jax"))
    assert set(signature["initial_carry"]) == set(step.initial_carry)
    again, _ = _stream(step, xs[:2], back.call)  # another batch size, the same artifact
    np.testing.assert_allclose(again, streamed[:2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("model", "error", "message"),
    [
        (jrnn.tagger(jrnn.gru(H), 3, vocab_size=V, bidirectional=True), ValueError,
         "reads its sequences in both directions"),
        (jrnn.seq2vec(jrnn.gru(H), 3, vocab_size=V, pool="mean"), ValueError,
         r"pools its outputs over the sequence \(readout='mean'\)"),
        (jrnn.vec2seq(jrnn.gru(H), 3, V), TypeError, "`model` must be a jrnn.models.Model"),
    ],
)  # fmt: skip
def test_what_cannot_stream_is_refused_by_name(model, error, message):
    with pytest.raises(error, match=message):
        export.streaming(model, model.init(jax.random.key(0)))


def test_an_encoder_decoder_needs_max_len():
    model = MODELS["seq2seq"]
    with pytest.raises(ValueError, match="needs `max_len`"):
        export.inference(model, model.init(jax.random.key(0)))


# ---- the command line ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    corpus = base / "text"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 60)
    small = ["--hidden", "8", "--steps", "6", "--eval-every", "6", "--no-progress"]
    lm = ["--corpus", str(corpus), "--batch-size", "4", "--seq-len", "8", "--eval-batches", "1"]
    lm += ["--eval-batch-size", "4", "--sample-length", "5", "--embed", "4"]
    assert main(["train", "--out", str(base / "lm"), *small, *lm]) == 0
    assert main(["train", "--task", "reverse", "--model", "attention",
                 "--out", str(base / "rev"), *small]) == 0  # fmt: skip
    return {"lm": base / "lm", "rev": base / "rev"}


def test_jrnn_export_writes_the_artifact_and_its_signature(runs, tmp_path, capsys):
    out = tmp_path / "lm.jax"
    assert main(["export", str(runs["lm"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert f"-> {out}" in printed[0] and printed[1].startswith("inputs:  tokens int32[batch,time]")
    exported, signature = export.load(out)
    assert signature["inputs"] == [
        {"name": "tokens", "dtype": "int32", "shape": ["batch", "time"]},
        {"name": "lengths", "dtype": "int32", "shape": ["batch"]},
    ]
    assert signature["outputs"][0]["shape"][:2] == ["batch", "time"]
    tokens = np.array([[3, 1, 4, 1, 5]], np.int32)
    logits = exported.call(tokens, np.array([5], np.int32))[0]
    from jrnn.app.restore import check_run, open_run

    run = open_run(runs["lm"], check_run(runs["lm"], "export"))
    want, _ = run.task.model.apply(run.params, tokens, lengths=np.array([5]))
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-6)

    step = tmp_path / "step.jax"
    assert main(["export", str(runs["lm"]), "--out", str(step), "--streaming"]) == 0
    assert "one step" in capsys.readouterr().out
    _, signature = export.load(step)
    assert [p["name"] for p in signature["inputs"]][-1] == "token"
    assert signature["initial_carry"]

    decoder = tmp_path / "rev.jax"
    assert main(["export", str(runs["rev"]), "--out", str(decoder)]) == 0
    _, signature = export.load(decoder)
    assert [p["name"] for p in signature["outputs"]] == ["tokens", "lengths", "scores"]


@pytest.mark.parametrize(
    ("which", "extra", "message"),
    [
        ("rev", ["--streaming"], "--streaming: `model` must be a jrnn.models.Model"),
        ("lm", ["--out", "/nonexistent-folder/x.jax"], "the folder /nonexistent-folder does not"),
        ("lm", ["--format", "tflite"], "invalid choice: 'tflite'"),
    ],
)
def test_jrnn_export_bad_input_is_one_line(runs, tmp_path, capsys, which, extra, message):
    argv = ["export", str(runs[which]), "--out", str(tmp_path / "x.jax"), *extra]
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "x.jax").exists()
