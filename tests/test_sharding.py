"""Data parallelism (``jrnn.sharding``, ``make_train_step(mesh=, micro_batches=,
loss_weight=)``, ``jrnn train --devices/--micro-batches``) on fake CPU devices.

tests/conftest.py gives this process 4 host devices whatever ``XLA_FLAGS`` says, and where
JAX's default backend is not the CPU it runs this module in a child process on the CPU
(``host_devices``): nothing here skips. The 8-device CLI run and ``use_cpu_cores`` in a
fresh interpreter run in subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn
from jrnn.app import Config, UsageError, fit
from jrnn.app.devices import auto_devices
from jrnn.sharding import MIN_SPLIT_WORK, data_mesh, replicate, shard_batch, split_devices

pytestmark = pytest.mark.host_devices  # 4 CPU devices; on a GPU machine: a CPU child process

B, T, I, H = 16, 6, 3, 5


def _record_grads() -> optax.GradientTransformation:
    """An 'optimizer' whose state is the last gradient it saw (and which never moves)."""
    return optax.GradientTransformation(
        lambda params: jax.tree.map(jnp.zeros_like, params),
        lambda grads, state, params=None: (jax.tree.map(jnp.zeros_like, grads), grads),
    )


def _problem(dtype=jnp.float64):
    cell = jrnn.lstm(H, param_dtype=dtype)
    params = cell.init(jax.random.key(0), I)
    k1, k2 = jax.random.split(jax.random.key(1))
    xs = jax.random.normal(k1, (B, T, I), dtype)
    ys = jax.random.normal(k2, (B, T, H), dtype)
    lengths = jnp.array([0, 1, 2, 3, 4, 5, 6, 6, 1, 6, 2, 5, 3, 0, 4, 6])  # uneven per shard

    def loss_fn(p, batch, key):  # a masked mean over valid (step, unit) entries
        x, y, n = batch
        out, _ = jrnn.unroll(cell, p, x, lengths=n)
        mask = (jnp.arange(T) < n[:, None])[..., None]
        total = jnp.sum(jnp.where(mask, (out - y) ** 2, 0.0))
        count = jnp.maximum(jnp.sum(n) * H, 1).astype(dtype)
        return total / count, {"mse": total / count}

    return cell, params, (xs, ys, lengths), loss_fn


def _weight(batch):
    return jnp.sum(batch[2])


@pytest.mark.parametrize(("devices", "micro"), [(4, 1), (2, 1), (2, 2), (1, 4), (4, 4)])
def test_sharded_step_gives_the_true_loss_and_gradient(devices, micro):
    """Each shard differentiates its own loss and the weighted shard gradients are summed
    once: the result is the whole batch's gradient (not N times it, as a ``pmean`` after
    differentiating a replicated loss would give), also with uneven valid-token counts per
    shard and micro-batch (``loss_weight``) and shards without any valid token."""
    _, params, batch, loss_fn = _problem()
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, None)
    mesh = data_mesh(devices) if devices > 1 else None
    opt = _record_grads()
    step = jrnn.make_train_step(
        loss_fn, opt, clip_norm=None, mesh=mesh, micro_batches=micro, loss_weight=_weight
    )
    state, m = step(jrnn.init_train_state(params, opt, jax.random.key(0)), batch)
    chex.assert_trees_all_close(state.opt_state, grads, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m["loss"], loss, rtol=1e-12)
    np.testing.assert_allclose(m["mse"], metrics["mse"], rtol=1e-12)
    np.testing.assert_allclose(m["grad_norm"], optax.tree.norm(grads), rtol=1e-10)


def test_equal_weights_without_loss_weight_for_a_mean_over_examples():
    cell, params, (xs, ys, _), _ = _problem()

    def loss_fn(p, batch, key):
        out, _ = jrnn.unroll(cell, p, batch[0])
        return jnp.mean((out - batch[1]) ** 2), {}

    grads = jax.grad(lambda p: loss_fn(p, (xs, ys), None)[0])(params)
    opt = _record_grads()
    step = jrnn.make_train_step(loss_fn, opt, clip_norm=None, mesh=data_mesh(4), micro_batches=2)
    state, _ = step(jrnn.init_train_state(params, opt, jax.random.key(0)), (xs, ys))
    chex.assert_trees_all_close(state.opt_state, grads, rtol=1e-10, atol=1e-12)


def test_sharded_adam_steps_equal_the_single_device_steps_and_clip_globally():
    """Three Adam steps with clipping at a norm the gradient exceeds: params equal within
    1e-6 relative (float32), the clipped norm is the clip (global, not per shard)."""
    _, params, batch, loss_fn = _problem(jnp.float32)
    opt = optax.adam(1e-2)
    results = []
    for mesh in (None, data_mesh(4)):
        step = jrnn.make_train_step(
            loss_fn, opt, clip_norm=0.05, mesh=mesh, loss_weight=_weight, donate=False
        )
        state = jrnn.init_train_state(params, opt, jax.random.key(0))
        for _ in range(3):
            state, m = step(state, batch)
        results.append((state.params, m))
    (p1, m1), (p4, m4) = results
    chex.assert_trees_all_close(p4, p1, rtol=1e-6, atol=1e-7)
    assert float(m4["grad_norm"]) > 0.05
    np.testing.assert_allclose(m4["grad_norm_clipped"], 0.05, rtol=1e-5)
    np.testing.assert_allclose(m4["loss"], m1["loss"], rtol=1e-6)
    assert p4["w_hh"].sharding.is_fully_replicated


def test_tbptt_carry_is_sharded_like_the_batch_and_matches_one_device():
    cell, params, (xs, ys, _), _ = _problem()

    def loss_fn(p, carry, batch, key):
        out, carry = jrnn.unroll(cell, p, batch[0], carry=carry)
        return jnp.mean((out - batch[1]) ** 2), (carry, {})

    opt = optax.sgd(0.1)
    runs = []
    for mesh, micro in ((None, 1), (data_mesh(4), 2)):
        step = jrnn.make_train_step(
            loss_fn, opt, has_carry=True, mesh=mesh, micro_batches=micro, donate=False
        )
        state = jrnn.init_train_state(params, opt, jax.random.key(0))
        carry = cell.initial_carry(params, (B,))
        for w in range(3):  # three consecutive windows of one stream
            state, carry, m = step(state, carry, (xs + w, ys))
        runs.append((state.params, carry, m["loss"]))
    chex.assert_trees_all_close(runs[1], runs[0], rtol=1e-10, atol=1e-12)
    assert runs[1][1].h.sharding.spec == jax.sharding.PartitionSpec("data")


def test_each_shard_and_micro_batch_gets_its_own_key():
    """The key reaching ``loss_fn`` differs between shards (dropout masks are independent),
    read back through the carry, which stays split like the batch."""

    def loss_fn(p, carry, batch, key):
        draw = jax.random.uniform(key, ()) + 0.0 * carry
        return jnp.sum(p["w"] * batch), (draw, {})

    opt = optax.sgd(0.0)
    params = {"w": jnp.ones(())}
    step = jrnn.make_train_step(loss_fn, opt, has_carry=True, mesh=data_mesh(4), micro_batches=2)
    state = jrnn.init_train_state(params, opt, jax.random.key(0))
    _, draws, _ = step(state, jnp.zeros(16), jnp.ones(16))
    pieces = np.asarray(draws).reshape(8, 2)  # 4 devices x 2 micro-batches of 2 rows
    assert np.all(pieces[:, 0] == pieces[:, 1]) and len(set(pieces[:, 0].tolist())) == 8


def test_example_keys_give_the_same_steps_on_any_layout():
    """``example_keys=True``: dropout, zoneout and recurrent dropout keyed by the step and
    the global example index, so one device, 4 devices, and 2 devices x 2 micro-batches
    give the same losses and parameters (to float rounding).  With a carry (TBPTT), split
    like the batch and its keys; the CLI's tests cover the step without one."""
    cell = jrnn.zoneout(jrnn.recurrent_dropout(jrnn.gru(H), 0.3), 0.2)
    model = jrnn.sequence_model(cell, input_size=I, output_size=1, dropout=0.3)
    params = model.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float32)
    ys = jnp.sum(xs[..., 0], axis=-1)

    def loss_fn(p, carry, batch, key):
        out, aux = model.apply(p, batch[0], carry=carry, key=key)
        return jnp.mean((out[:, -1, 0] - batch[1]) ** 2), (aux.carry, {})

    def run(**kw):
        step = jrnn.make_train_step(loss_fn, opt, has_carry=True, **kw)
        state = jrnn.init_train_state(jax.tree.map(jnp.copy, params), opt, jax.random.key(3))
        carry, losses = model.initial_carry(params, (B,)), []
        for _ in range(2):
            state, carry, m = step(state, carry, (xs, ys))
            losses.append(float(m["loss"]))
        return losses, state.params

    opt = optax.adam(1e-2)
    one = run(example_keys=True)
    for kw in ({"mesh": data_mesh(4)}, {"mesh": data_mesh(2), "micro_batches": 2}):
        losses, p = run(example_keys=True, **kw)
        np.testing.assert_allclose(losses, one[0], rtol=1e-5)
        chex.assert_trees_all_close(p, one[1], rtol=1e-4, atol=1e-6)
    # without example keys the shards draw from their own keys: another trajectory
    assert abs(run(mesh=data_mesh(4))[0][0] - one[0][0]) > 1e-4


def test_bad_meshes_and_batches_get_clear_errors():
    _, params, batch, loss_fn = _problem()
    opt = optax.sgd(0.1)
    state = jrnn.init_train_state(params, opt, jax.random.key(0))
    step = jrnn.make_train_step(loss_fn, opt, mesh=data_mesh(4), micro_batches=8)
    with pytest.raises(
        ValueError,
        match=r"train step: `batch\[0\]` must have a leading batch axis"
        r" divisible by 32 .* got shape \[16, 6, 3\]",
    ):
        step(state, batch)
    with pytest.raises(ValueError, match="`micro_batches` must be"):
        jrnn.make_train_step(loss_fn, opt, micro_batches=0)
    two_d = jax.sharding.Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("data", "model"))
    with pytest.raises(ValueError, match=r"`mesh` may only have the 'data' axis.*'model': 2"):
        jrnn.make_train_step(loss_fn, opt, mesh=two_d)
    other = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("batch",))
    with pytest.raises(ValueError, match=r"`mesh` has no axis 'data'"):
        jrnn.make_train_step(loss_fn, opt, mesh=other)
    with pytest.raises(
        ValueError,
        match=r"`devices`=64 but JAX has 4 cpu device\(s\); for more "
        r"host devices call jrnn.use_cpu_cores\(64\)",
    ):
        data_mesh(64)
    with pytest.raises(TypeError, match="`loss_weight` must be callable"):
        jrnn.make_train_step(loss_fn, opt, loss_weight=2.0)
    with pytest.raises(ValueError, match=r"`tree` must have a leading batch axis divisible by 4"):
        shard_batch(jnp.ones(6), data_mesh(4))
    assert replicate(jnp.ones(3), data_mesh(2)).sharding.is_fully_replicated


def test_use_cpu_cores_before_and_after_jax_starts():
    assert jrnn.use_cpu_cores(len(jax.devices("cpu"))) == 4  # the count JAX has: a no-op
    with pytest.raises(
        RuntimeError,
        match=r"already started with 4 CPU device\(s\) and cannot "
        r"change to 3; call jrnn.use_cpu_cores\(3\) right after `import jrnn`",
    ):
        jrnn.use_cpu_cores(3)
    with pytest.raises(ValueError, match="`n` must be >= 1, got 0"):
        jrnn.use_cpu_cores(0)
    code = (
        "import jrnn, jax, os; n = jrnn.use_cpu_cores(3); print(n, len(jax.devices()), "
        "jrnn.use_cpu_cores() if False else len(os.sched_getaffinity(0)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["3", "3"]


def test_split_devices_rule():
    """Host devices only where each one's share of the recurrent work is worth the
    exchange (``MIN_SPLIT_WORK``), the most that divide the batch."""
    assert split_devices(64, 128, 256, 2) == 2  # the default char LM: split
    assert split_devices(64, 128, 256, 8) == 8
    assert split_devices(36, 128, 256, 8) == 6  # the most devices that divide the batch
    assert split_devices(63, 128, 256, 2) == 1  # odd: does not split
    assert split_devices(16, 32, 32, 2) == 1  # measured slower on 2 devices
    assert split_devices(64, 256, 512, 2) == 1  # so was the large size (XLA threads it)
    assert split_devices(64, 256, 512, 8) == 8  # but 8 rows per device are small again
    rows = 2 * -(-MIN_SPLIT_WORK // (10 * 20 * 20))  # the smallest even batch worth it
    assert split_devices(rows, 10, 20, 2) == 2 and split_devices(rows - 2, 10, 20, 2) == 1
    assert auto_devices(Config(task="adding", batch_size=64, seq_len=50, hidden=64), 2) == 2
    assert auto_devices(Config(task="adding", batch_size=16, seq_len=20, hidden=16), 2) == 1
    big = Config(task="charlm", batch_size=64, micro_batches=64)  # micro-batches of 1 row
    assert auto_devices(big, 2) == 1


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_fit_resumes_across_device_counts(tmp_path, capsys):
    """A run checkpointed on 4 devices resumes on 1 (and one on 1 on 4): the continued
    run ends where the uninterrupted one does (float32: to 1e-5)."""
    base = dict(task="adding", steps=20, hidden=16, batch_size=32, seq_len=20)
    base.update(checkpoint_every=10, eval_every=20, eval_batches=1, log_every=5)
    full = fit(Config(**base, devices=4), tmp_path / "full", progress=False)
    for first, then in ((4, 1), (1, 4)):
        out = tmp_path / f"{first}to{then}"
        fit(Config(**base, devices=first), out, progress=False)
        for d in (out / "checkpoints").iterdir():  # as if killed after the step-10 save
            if d.name == "20":
                import shutil

                shutil.rmtree(d)
        resumed = fit(Config(**base, devices=then), out, resume=True, progress=False)
        assert resumed["val_mse"] == pytest.approx(full["val_mse"], rel=1e-5)
        a = [r["loss"] for r in _rows(out) if "loss" in r]
        b = [r["loss"] for r in _rows(tmp_path / "full") if "loss" in r]
        np.testing.assert_allclose(a, b, rtol=1e-5)
    assert json.loads((out / "config.json").read_text())["devices"] == 4
    capsys.readouterr()


def test_fit_refuses_batches_that_do_not_split_and_missing_devices(tmp_path):
    with pytest.raises(
        UsageError,
        match=r"--batch-size 30 does not split over --devices 4 x "
        r"--micro-batches 1: it must be a multiple of 4",
    ):
        fit(Config(task="adding", batch_size=30, devices=4), tmp_path / "a", progress=False)
    with pytest.raises(
        UsageError,
        match=r"--devices 16: JAX has 4 cpu device\(s\); on a CPU, "
        r"start the process with JAX_NUM_CPU_DEVICES=16",
    ):
        fit(Config(task="adding", devices=16), tmp_path / "b", progress=False)
    with pytest.raises(UsageError, match="--devices: must be a positive integer or auto"):
        Config(task="adding", devices="all")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _cli(*argv, cwd):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # jrnn makes its own
    return subprocess.run(
        [sys.executable, "-m", "jrnn", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_refuses_a_batch_that_does_not_split_over_the_devices(tmp_path):
    """One line, exit 2.  (That ``--devices 8`` logs the losses of one device, dropout
    included, is tests/test_processes.py's first test.)"""
    argv = ["train", "--task", "adding", "--steps", "20", "--batch-size", "64", "--seed", "0"]
    bad = _cli(*argv, "--devices", "3", "--out", str(tmp_path / "3"), cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "jrnn train: error: --batch-size 64 does not split over --devices 3 x --micro-batches "
        "1: it must be a multiple of 3"
    ]
    assert not (tmp_path / "3").exists()


_SPLIT_UNROLL = """
import jrnn
jrnn.use_cpu_cores(2)
jrnn.sharding.MIN_SPLIT_WORK = 0  # split even this small problem
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
cell = jrnn.lstm(6, param_dtype=jnp.float64)
params = cell.init(jax.random.key(0), 3)
xs = jax.random.normal(jax.random.key(1), (4, 5, 3), jnp.float64)
lengths = jnp.array([5, 3, 0, 2])
resets = jnp.zeros((4, 5), bool).at[0, 2].set(True)
def loss(p, x, n, r, **kw):
    ys, c = jrnn.unroll(cell, p, x, lengths=n, resets=r, **kw)
    return jnp.sum(ys ** 2) + jnp.sum(c.c)
worst = 0.0
for kw in ({}, {"vjp": "hoisted"}, {"remat": "sqrt"}, {"reverse": True}):
    grad = jax.jit(jax.grad(lambda p, x: loss(p, x, lengths, resets, **kw), argnums=(0, 1)))
    gp, gx = grad(params, xs)  # the batch of 4 split over the 2 host devices
    assert jrnn.sharding.host_split(xs, (4,), 6) > 1
    # one sequence at a time (a batch of 1 is not split)
    each = [jax.grad(loss, argnums=(0, 1))(params, xs[i:i+1], lengths[i:i+1], resets[i:i+1], **kw)
            for i in range(4)]
    ref_p = jax.tree.map(lambda *a: sum(a), *[e[0] for e in each])
    ref_x = jnp.concatenate([e[1] for e in each])
    for a, b in zip(jax.tree.leaves((gp, gx)), jax.tree.leaves((ref_p, ref_x))):
        worst = max(worst, float(jnp.max(jnp.abs(a - b))))
ys, _ = jrnn.unroll(cell, params, xs)
noisy = jrnn.unroll(jrnn.zoneout(cell, 0.3), params, xs, key=jax.random.key(2))[0]
print(worst, ys.sharding.spec, noisy.shape)
"""


def test_unroll_splits_the_batch_over_host_devices_after_use_cpu_cores(tmp_path):
    """After ``jrnn.use_cpu_cores(2)`` a plain jitted ``jax.grad`` of ``unroll`` runs on both
    host devices (outputs split along the batch) and its gradients equal those of unrolling
    each sequence alone (float64, every strategy, lengths, resets, reverse); in this test
    process (fake devices from XLA_FLAGS, not use_cpu_cores) nothing is split."""
    assert jrnn.sharding.host_split(jnp.ones((5, 4, 3)), (4,), 1024) == 1
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-c", _SPLIT_UNROLL], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split()[0]) < 1e-12, out.stdout
    assert "PartitionSpec('data'" in out.stdout or "P('data'" in out.stdout, out.stdout


def _while_bodies(hlo: str) -> dict[str, str]:
    """The text of every computation that is the body of a ``while`` in ``hlo``."""
    names = set(re.findall(r"body=%?([\w.\-]+)", hlo))
    blocks = re.split(r"\n(?=%?[\w.\-]+ [({])|\n(?=ENTRY )", hlo)
    return {b.split()[0].lstrip("%"): b for b in blocks if b.split()[0].lstrip("%") in names}


def test_the_gradient_is_exchanged_once_per_step_not_per_time_step():
    """The sharded step's compiled program has its all-reduce outside the scans (one per
    step, after the backward pass); a plain jit with a batch sharding puts one inside the
    backward scan, once per time step: the reason for ``shard_map``."""
    cell, params, (xs, ys, _), _ = _problem(jnp.float32)

    def loss_fn(p, batch, key):
        out, _ = jrnn.unroll(cell, p, batch[0])
        return jnp.mean((out - batch[1]) ** 2), {}

    opt = optax.sgd(0.1)
    state = jrnn.init_train_state(params, opt, jax.random.key(0))
    mesh = data_mesh(2)
    batch = shard_batch((xs, ys), mesh)
    step = jax.jit(lambda s, b: jrnn.make_train_step(loss_fn, opt, mesh=mesh, donate=False)(s, b))
    hlo = step.lower(replicate(state, mesh), batch).compile().as_text()
    bodies = _while_bodies(hlo)
    assert bodies and "all-reduce(" in hlo
    assert not any("all-reduce(" in b for b in bodies.values())

    auto = jax.jit(jax.grad(lambda p, b: loss_fn(p, b, None)[0]))
    hlo = auto.lower(replicate(params, mesh), batch).compile().as_text()
    assert any("all-reduce(" in b for b in _while_bodies(hlo).values())
