"""Quick check: a jitted LSTM training step in jrnn vs Flax ``nn.RNN(nn.OptimizedLSTMCell)``.

Both run in the same process, interleaved, compile excluded; the step is forward + BPTT +
Adam with the squared error summed over time.  Usage::

    python benchmarks/quick_lstm.py [--batch 64 --time 128 --input 128 --hidden 256]
        [--rounds 7] [--json out.json]

Prints tokens/s (batch x time steps per second) for both and the ratio jrnn / Flax.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import jrnn


def _time(fn, *args, iters: int) -> float:
    """Median-free single round: seconds per call of ``fn(*args)`` over ``iters`` calls."""
    out = fn(*args)
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    for _ in range(iters):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / iters


def make_steps(batch: int, steps: int, inputs: int, hidden: int):
    """Returns ``{name: (step_fn, state)}`` with ``step_fn(state) -> state``."""
    key = jax.random.key(0)
    kx, ky, kp = jax.random.split(key, 3)
    xs = jax.random.normal(kx, (batch, steps, inputs), jnp.float32)
    target = jax.random.normal(ky, (batch, steps, hidden), jnp.float32)
    opt = optax.adam(1e-3)

    def build(apply, params):
        def loss(p):
            ys = apply(p, xs)
            return jnp.sum((ys - target) ** 2) / batch

        @jax.jit
        def step(state):
            p, o = state
            g = jax.grad(loss)(p)
            u, o = opt.update(g, o, p)
            return optax.apply_updates(p, u), o

        return step, (params, opt.init(params))

    cell = jrnn.lstm(hidden)
    jr_params = cell.init(kp, inputs)
    flax_rnn = nn.RNN(nn.OptimizedLSTMCell(hidden))
    flax_params = flax_rnn.init(kp, xs)
    return {
        "jrnn": build(lambda p, x: jrnn.unroll(cell, p, x)[0], jr_params),
        "jrnn_autodiff": build(lambda p, x: jrnn.unroll(cell, p, x, vjp="autodiff")[0], jr_params),
        "jrnn_hoist_input": build(lambda p, x: jrnn.unroll(cell, p, x, hoist=True)[0], jr_params),
        "jrnn_remat_step": build(lambda p, x: jrnn.unroll(cell, p, x, remat="step")[0], jr_params),
        "flax_optimized_lstm": build(flax_rnn.apply, flax_params),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--time", type=int, default=128)
    ap.add_argument("--input", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    impls = make_steps(args.batch, args.time, args.input, args.hidden)
    compile_s = {}
    for name, (step, state) in impls.items():
        t0 = time.perf_counter()
        jax.block_until_ready(step(state))
        compile_s[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(args.rounds):  # interleaved rounds
        for name, (step, state) in impls.items():
            times[name].append(_time(step, state, iters=args.iters))
    tokens = args.batch * args.time
    result = {
        "config": vars(args),
        "device": str(jax.devices()[0]),
        "tokens_per_s": {n: tokens / statistics.median(t) for n, t in times.items()},
        "first_call_s": compile_s,
    }
    result["ratio_jrnn_over_flax"] = (
        result["tokens_per_s"]["jrnn"] / result["tokens_per_s"]["flax_optimized_lstm"]
    )
    for n, v in result["tokens_per_s"].items():
        print(f"{n:>22}: {v / 1e3:8.1f}k tokens/s  (first call {compile_s[n]:.2f} s)")
    print(f"ratio jrnn / flax OptimizedLSTMCell: {result['ratio_jrnn_over_flax']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
