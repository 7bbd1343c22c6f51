"""``jrnn.export.onnx``: ONNX files of ONNX's native RNN/LSTM/GRU operators that onnxruntime
runs as jrnn computes (padded steps, final carries, the backward direction within each
length), equal to the StableHLO artifact, runnable without JAX; refusals by name; ``jrnn
export --format onnx``."""

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

ort = pytest.importorskip("onnxruntime")

V, H, F = 7, 5, 3
SHAPES = [(2, 5), (3, 8)]  # (batch, time): one file serves both

CELLS = {
    "rnn_tanh": jrnn.simple_rnn(H),
    "rnn_relu": jrnn.simple_rnn(H, "relu"),
    "lstm": jrnn.lstm(H),
    "lstm_peephole": jrnn.lstm(H, peephole=True),
    "gru": jrnn.gru(H),
    "gru_reset_after": jrnn.gru(H, reset_after=True),
}


def _cases() -> dict[str, jrnn.Model]:
    cases = {}
    for i, (name, cell) in enumerate(CELLS.items()):
        embed = None if i % 2 else 4  # one-hot and a table, alternately
        cases[f"{name}-lm"] = jrnn.sequence_model(cell, V, vocab_size=V, embed_size=embed)
        cases[f"{name}-tagger"] = jrnn.tagger(cell, 2, input_size=F)
    net = jrnn.stack(jrnn.lstm(H, peephole=True), num_layers=2, bidirectional=True)
    cases["lstm-2-layers-bidirectional"] = jrnn.sequence_model(net, V, vocab_size=V)
    cases["gru-bidirectional-tagger"] = jrnn.tagger(
        jrnn.gru(H, reset_after=True), 2, input_size=F, bidirectional=True
    )
    return cases


CASES = _cases()


def _params(model: jrnn.Model, seed: int = 0) -> dict:
    """``model.init`` plus noise on every leaf: no zero bias, peephole or ``b_hn`` left."""
    params = model.init(jax.random.key(seed))
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    noisy = [
        a + 0.3 * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, noisy)


def _inputs(model: jrnn.Model, batch: int, steps: int) -> dict[str, np.ndarray]:
    """Random inputs by name; lengths random in [1, T], one full, one shorter than T."""
    rng = np.random.default_rng(batch * 100 + steps)
    lengths = rng.integers(1, steps + 1, batch).astype(np.int32)
    lengths[:2] = steps, steps - 2
    if model.vocab_size is not None:
        return {"tokens": rng.integers(0, V, (batch, steps)).astype(np.int32), "lengths": lengths}
    xs = rng.normal(size=(batch, steps, F)).astype(np.float32)
    return {"inputs": xs, "lengths": lengths}


def _session(data: bytes):
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _close(got, want, name: str) -> None:
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", list(CASES))
def test_onnxruntime_computes_what_the_model_computes(name):
    model = CASES[name]
    params = _params(model)
    artifact = export.onnx(model, params)
    session = _session(artifact.data)
    names = [p["name"] for p in artifact.signature["outputs"]]
    assert [o.name for o in session.get_outputs()] == names
    for batch, steps in SHAPES:
        feed = _inputs(model, batch, steps)
        got = session.run(None, feed)
        x, lengths = feed.values()
        want, aux = model.apply(params, x, lengths=lengths)
        for n, g, w in zip(names, got, [want, *jax.tree.leaves(aux.carry)], strict=True):
            _close(g, w, f"{name} {n} at {batch}x{steps}")
        padded = np.arange(steps) >= lengths[:, None]  # the readout's bias at padded steps
        _close(got[0][padded], np.broadcast_to(params["b_o"], got[0][padded].shape), "padded")


def _streamable() -> dict[str, jrnn.Model]:
    cases = {k: m for k, m in CASES.items() if "bidirectional" not in k}
    net = jrnn.stack(jrnn.lstm(H, peephole=True), num_layers=2)
    cases["lstm-2-layers"] = jrnn.sequence_model(net, V, vocab_size=V)
    return cases


STREAMABLE = _streamable()


@pytest.mark.parametrize("name", list(STREAMABLE))
def test_the_onnx_streaming_step_fed_one_step_at_a_time_equals_the_model(name):
    """The ONNX one-step function, run in onnxruntime from the signature's initial carry
    (broadcast over the batch) with each step's next carry fed back, gives the model's
    whole-sequence outputs at every step and its final carry."""
    model = STREAMABLE[name]
    params = _params(model)
    artifact = export.onnx(model, params, streaming=True)
    session = _session(artifact.data)
    sig = artifact.signature
    carry_names = [p["name"] for p in sig["inputs"][:-1]]
    assert [p["name"] for p in sig["outputs"]] == [f"next.{n}" for n in carry_names] + ["output"]
    batch, steps = 3, 6
    x = _inputs(model, batch, steps)
    x = x.get("tokens", x.get("inputs"))
    carry = [np.broadcast_to(np.float32(sig["initial_carry"][n]), (batch, H)) for n in carry_names]
    outs = []
    for t in range(steps):
        *carry, out = session.run(
            None, {**dict(zip(carry_names, carry, strict=True)), sig["inputs"][-1]["name"]: x[:, t]}
        )
        outs.append(out)
    want, aux = model.apply(params, x)
    _close(np.stack(outs, 1), want, f"{name} outputs")
    for n, g, w in zip(carry_names, carry, jax.tree.leaves(aux.carry), strict=True):
        _close(g, w, f"{name} {n}")


def test_a_bidirectional_model_does_not_stream():
    with pytest.raises(ValueError, match="reads its sequences in both directions"):
        export.onnx(
            CASES["lstm-2-layers-bidirectional"],
            _params(CASES["lstm-2-layers-bidirectional"]),
            streaming=True,
        )


@pytest.mark.parametrize("name", ["lstm-2-layers-bidirectional", "gru_reset_after-tagger"])
def test_the_onnx_file_equals_the_stablehlo_artifact(name):
    model = CASES[name]
    params = _params(model, seed=3)
    artifact = export.onnx(model, params)
    hlo = export.stablehlo(export.inference(model, params))
    assert artifact.signature == {**hlo.signature, "format": "onnx"}
    assert hlo.signature["format"] == "stablehlo"
    exported = jax.export.deserialize(bytearray(hlo.data))
    session = _session(artifact.data)
    for batch, steps in SHAPES:
        feed = _inputs(model, batch, steps)
        feed["lengths"][-1] = steps + 3  # beyond T: both clamp, as a traced jrnn call does
        for n, g, w in zip(hlo.signature["outputs"], session.run(None, feed),
                           exported.call(*feed.values()), strict=True):  # fmt: skip
            _close(g, w, n["name"])


def test_out_of_range_tokens_embed_to_zero_as_in_jrnn():
    model = CASES["lstm-lm"]  # an embedding table
    params = _params(model)
    feed = _inputs(model, 3, 6)
    feed["tokens"][0, :3] = [V, -1, 100]
    got = _session(export.onnx(model, params).data).run(None, feed)
    want = jax.jit(export.inference(model, params).fn)(*feed.values())  # ids unchecked
    for g, w in zip(got, want, strict=True):
        _close(g, w, "out-of-range ids")


# A fresh interpreter in which JAX cannot be imported runs the file with onnxruntime.
_RUN_WITHOUT_JAX = """
import sys
sys.modules["jax"] = None
try:
    import jax
except ImportError:
    pass
else:
    raise SystemExit("jax importable")
import numpy as np
import onnxruntime
path, inputs = sys.argv[1:]
session = onnxruntime.InferenceSession(open(path, "rb").read(), providers=["CPUExecutionProvider"])
got = session.run(None, dict(np.load(inputs)))
np.savez(inputs + ".out.npz", *got)
"""


def test_the_onnx_file_runs_where_jax_is_not_installed(tmp_path):
    model = CASES["lstm-2-layers-bidirectional"]
    params = _params(model)
    path = export.save(export.onnx(model, params), tmp_path / "lm.onnx")
    feed = _inputs(model, 3, 8)
    np.savez(tmp_path / "in.npz", **feed)
    done = subprocess.run(
        [sys.executable, "-c", _RUN_WITHOUT_JAX, str(path), str(tmp_path / "in.npz")],
        capture_output=True, text=True, timeout=300, env={"PATH": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(tmp_path / "in.npz.out.npz")
    want, aux = model.apply(params, feed["tokens"], lengths=feed["lengths"])
    for i, w in enumerate([want, *jax.tree.leaves(aux.carry)]):
        _close(got[f"arr_{i}"], w, f"output {i}")


def _refused():
    layer_norm = jrnn.sequence_model(jrnn.lstm(H, layer_norm=True), V, vocab_size=V)
    return [
        (jrnn.tagger(jrnn.zoneout(jrnn.lstm(H), 0.1), 2, input_size=F), ValueError,
         r"the cell is a zoneout wrapper"),
        (layer_norm, ValueError, r"has layer_norm=True"),
        (jrnn.tagger(jrnn.lstm(H, proj_size=3), 2, input_size=F), ValueError, "proj_size=3"),
        (jrnn.tagger(jrnn.gru(H, gate_fn="hard_sigmoid"), 2, input_size=F), ValueError,
         "gate_fn='hard_sigmoid'"),
        (jrnn.sequence_model(jrnn.mingru(H), V, vocab_size=V), TypeError,
         r"the cell mingru\(.*\) is not a built-in simple_rnn, lstm or gru"),
        (jrnn.seq2vec(jrnn.gru(H), 3, vocab_size=V), ValueError, "readout='last'"),
        (jrnn.seq2seq(jrnn.gru(H), jrnn.gru(H), V, V), TypeError,
         "`model` must be a jrnn.models.Model .* got EncoderDecoder"),
    ]  # fmt: skip


@pytest.mark.parametrize(("model", "error", "message"), _refused())
def test_what_onnx_cannot_express_is_refused_by_name(model, error, message):
    with pytest.raises(error, match=message) as info:
        export.onnx(model, model.init(jax.random.key(0)))
    assert 'export it with format="stablehlo"' in str(info.value)


# ---- the command line ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny character language models: the default (a one-layer LSTM stack) and minGRU."""
    base = tmp_path_factory.mktemp("runs")
    corpus = base / "text"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 60)
    small = ["--hidden", "8", "--steps", "6", "--eval-every", "6", "--no-progress"]
    lm = ["--corpus", str(corpus), "--batch-size", "4", "--seq-len", "8", "--eval-batches", "1"]
    lm += ["--eval-batch-size", "4", "--sample-length", "5", "--embed", "4"]
    assert main(["train", "--out", str(base / "lm"), *small, *lm]) == 0
    assert main(["train", "--out", str(base / "min"), "--cell", "mingru", *small, *lm]) == 0
    return {"lm": base / "lm", "min": base / "min"}


def test_jrnn_export_format_onnx_equals_the_stablehlo_artifact(runs, tmp_path, capsys):
    onnx_path, hlo_path = tmp_path / "lm.onnx", tmp_path / "lm.jax"
    assert main(["export", str(runs["lm"]), "--format", "onnx", "--out", str(onnx_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert f"-> {onnx_path}" in printed[0] and "ONNX" in printed[0], printed
    assert printed[1].startswith("inputs:  tokens int32[batch,time]")
    assert main(["export", str(runs["lm"]), "--out", str(hlo_path)]) == 0
    exported, signature = export.load(hlo_path)
    session = _session(onnx_path.read_bytes())
    tokens = np.array([[3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8]], np.int32)
    lengths = np.array([6, 4], np.int32)
    got = session.run(None, {"tokens": tokens, "lengths": lengths})
    want = exported.call(tokens, lengths)
    assert len(got) == len(want) == len(signature["outputs"]) == 3  # outputs, carry h and c
    for p, g, w in zip(signature["outputs"], got, want, strict=True):
        _close(g, w, p["name"])


def test_jrnn_export_format_onnx_streaming_equals_the_stablehlo_step(runs, tmp_path):
    onnx_path, hlo_path = tmp_path / "step.onnx", tmp_path / "step.jax"
    argv = ["export", str(runs["lm"]), "--streaming", "--out"]
    assert main([*argv[:3], "--format", "onnx", argv[3], str(onnx_path)]) == 0
    assert main([*argv, str(hlo_path)]) == 0
    exported, hlo_sig = export.load(hlo_path)
    session = _session(onnx_path.read_bytes())
    onnx_sig = json.loads(Path(f"{onnx_path}.json").read_text())
    assert onnx_sig["initial_carry"] == hlo_sig["initial_carry"]
    assert [p["name"] for p in onnx_sig["inputs"]] == [p["name"] for p in hlo_sig["inputs"]]
    tokens = np.array([[3, 1, 4, 1], [2, 6, 5, 3]], np.int32)
    names = [p["name"] for p in hlo_sig["inputs"][:-1]]
    carry = [np.tile(np.float32(hlo_sig["initial_carry"][n]), (2, 1)) for n in names]
    hlo_carry = list(carry)
    for t in range(tokens.shape[1]):
        *carry, out = session.run(
            None, {**dict(zip(names, carry, strict=True)), "token": tokens[:, t]}
        )
        *hlo_carry, want = exported.call(*hlo_carry, tokens[:, t])
        _close(out, want, f"output at step {t}")
        for n, g, w in zip(names, carry, hlo_carry, strict=True):
            _close(g, w, f"{n} at step {t}")


@pytest.mark.parametrize(
    ("which", "extra", "message"),
    [
        ("min", [], "export: the cell mingru("),
        ("min", ["--streaming"], "--streaming: the cell mingru("),
    ],
)
def test_jrnn_export_format_onnx_refusals_are_one_line(
    runs, tmp_path, capsys, which, extra, message
):
    argv = ["export", str(runs[which]), "--format", "onnx", "--out", str(tmp_path / "x.onnx")]
    with pytest.raises(SystemExit) as info:
        main([*argv, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and message in err[0], err
    assert "--format stablehlo" in err[0]
    assert not (tmp_path / "x.onnx").exists()
