"""The implementations the suite compares: jrnn and its peers, one builder per peer.

Every builder takes ``(cell, cfg, data)`` (``cell`` is ``"lstm"`` or ``"gru"``) and returns
an :class:`Impl` holding, per mode, a :class:`ModeFn`: the function to time, its initial
arguments (``args[0]`` is the state: ``(params, opt_state)`` for a JAX training step), and
how to wait for it.  A builder raises :class:`Missing` when its package is absent, or
:class:`Unsupported` when it has no such cell; the suite skips it with a note.

All JAX training steps are built by :func:`jax_impl` from an ``apply(params, xs) -> ys``
function, so they share the loss, the optimiser and the jit boundary exactly:
``loss = sum_t mean_features (y - target)^2 / B`` (MSE over features, summed over time,
averaged over batch), ``optax.adam(1e-3)``; PyTorch does the same with ``torch.optim.Adam``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jrnn

LEARNING_RATE = 1e-3
GATES = {"lstm": 4, "gru": 3}

#: Families selectable with ``--impls``, in the order they are built.
FAMILIES = (
    "jrnn",
    "jrnn-variants",
    "flax",
    "nnx",
    "equinox",
    "haiku",
    "jax-rnn",
    "torch",
    "numpy",
)


class Missing(Exception):
    """The peer's package is not installed."""


class Unsupported(Exception):
    """The peer has no such cell, or cannot run in this configuration."""


@dataclass(frozen=True)
class Config:
    """A benchmark size: batch ``B``, time steps ``T``, inputs ``I``, hidden ``H``."""

    name: str
    batch: int
    steps: int
    inputs: int
    hidden: int
    long: bool = False  # a long-sequence config: few peers, fewer rounds
    numpy_ok: bool = False  # small enough for the NumPy reference

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "batch": self.batch,
            "steps": self.steps,
            "inputs": self.inputs,
            "hidden": self.hidden,
            "long": self.long,
        }


CONFIGS = {
    "tiny": Config("tiny", 4, 8, 8, 16, numpy_ok=True),  # for smoke tests only
    "tinylong": Config("tinylong", 2, 64, 8, 16, long=True),  # for smoke tests only
    "small": Config("small", 32, 64, 64, 128, numpy_ok=True),
    "medium": Config("medium", 64, 128, 128, 256, numpy_ok=True),
    "large": Config("large", 64, 256, 256, 512),
    "long": Config("long", 8, 4096, 64, 256, long=True),
}


def parse_config(spec: str) -> Config:
    """A name of :data:`CONFIGS`, or ``B/T/I/H`` for a custom size."""
    if spec in CONFIGS:
        return CONFIGS[spec]
    parts = spec.split("/")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise ValueError(f"config {spec!r}: expected one of {sorted(CONFIGS)} or 'B/T/I/H'")
    b, t, i, h = (int(p) for p in parts)
    return Config(spec, b, t, i, h, numpy_ok=b * t * h <= 64 * 128 * 256)


@dataclass
class Data:
    """The fixed inputs ``xs [B, T, I]`` and targets ``[B, T, H]`` (float32, NumPy)."""

    xs: np.ndarray
    target: np.ndarray

    @classmethod
    def make(cls, cfg: Config, seed: int = 0) -> Data:
        rng = np.random.default_rng(seed)
        shape = (cfg.batch, cfg.steps)
        return cls(
            rng.standard_normal(shape + (cfg.inputs,), dtype=np.float32),
            rng.standard_normal(shape + (cfg.hidden,), dtype=np.float32),
        )


@dataclass
class ModeFn:
    """One mode of one implementation, before compilation.

    ``fn(*args)`` runs one iteration; with ``threads_state`` its result replaces
    ``args[0]`` (a training step's new state).  ``jit`` marks a ``jax.jit`` function, which
    the suite compiles ahead of time (``fn.lower(*args).compile()``) to time compilation and
    read XLA's memory plan.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    sync: Callable[[Any], None]
    threads_state: bool = False
    jit: bool = False


@dataclass
class Impl:
    name: str
    family: str
    framework: str  # "jax" | "torch" | "numpy"
    modes: dict[str, ModeFn] = field(default_factory=dict)
    note: str = ""
    precision: str = ""  # the float32 matmul precision it ran at (see `precision_of`)


PRECISIONS = ("default", "highest", "tf32")
"""``--precision``: each library's own default, or the same for everyone: full float32
(``highest``) or TensorFloat-32 products (``tf32``)."""


def set_precision(precision: str) -> None:
    """Sets the float32 matmul precision of JAX and (when imported) PyTorch; ``"default"``
    leaves each library's own default (JAX on NVIDIA GPUs: TF32 products; PyTorch: full
    float32 matmuls, TF32 in cuDNN)."""
    if precision == "default":
        return
    jax.config.update(
        "jax_default_matmul_precision", "highest" if precision == "highest" else "tensorfloat32"
    )
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def precision_of(framework: str) -> str:
    """What float32 matmuls of ``framework`` compute right now, for every result row."""
    if framework == "jax":
        p = jax.config.jax_default_matmul_precision
        if jax.default_backend() == "cpu":
            return "float32"
        return {None: "XLA default (TF32 on NVIDIA)", "highest": "float32"}.get(p, str(p))
    if framework == "torch" and "torch" in sys.modules:
        torch = sys.modules["torch"]
        if not torch.cuda.is_available():
            return "float32"
        on = lambda flag: "TF32" if flag else "float32"
        return (
            f"cuDNN {on(torch.backends.cudnn.allow_tf32)}, "
            f"matmul {on(torch.backends.cuda.matmul.allow_tf32)}"
        )
    return "float64" if framework == "numpy" else "float32"


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise Missing(f"{module} not installed") from e


def _block(x: Any) -> None:
    jax.block_until_ready(x)


# --------------------------------------------------------------------------------------
# the shared JAX training step


def mse_loss(ys: jax.Array, target: jax.Array) -> jax.Array:
    """MSE over features, summed over time, averaged over batch (``ys [B, T, H]``)."""
    return jnp.sum(jnp.mean((ys - target) ** 2, axis=-1)) / ys.shape[0]


def jax_impl(
    name: str,
    family: str,
    apply: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    data: Data,
    modes: tuple[str, ...] = ("train", "forward"),
    note: str = "",
) -> Impl:
    """Training step and forward pass of ``apply(params, xs [B,T,I]) -> ys [B,T,H]``."""
    opt = optax.adam(LEARNING_RATE)
    xs = jnp.asarray(data.xs)
    target = jnp.asarray(data.target)

    @jax.jit
    def train_step(state, xs, target):
        p, o = state
        g = jax.grad(lambda p: mse_loss(apply(p, xs), target))(p)
        updates, o = opt.update(g, o, p)
        return optax.apply_updates(p, updates), o

    forward = jax.jit(apply)
    impl = Impl(name, family, "jax", note=note)
    if "train" in modes:
        impl.modes["train"] = ModeFn(
            train_step, ((params, opt.init(params)), xs, target), _block, True, True
        )
    if "forward" in modes:
        impl.modes["forward"] = ModeFn(forward, (params, xs), _block, False, True)
    return impl


# --------------------------------------------------------------------------------------
# jrnn


def jrnn_cell(cell: str, hidden: int) -> jrnn.Cell:
    """``jrnn.lstm(H)``, or ``jrnn.gru(H, reset_after=True)`` (the Flax/PyTorch/cuDNN form)."""
    return jrnn.lstm(hidden) if cell == "lstm" else jrnn.gru(hidden, reset_after=True)


def jrnn_defaults() -> dict[str, Any]:
    """``unroll``'s per-backend defaults (to name the variant rows; the default row itself
    passes nothing)."""
    return jrnn.unroll_defaults()


def jrnn_variants(kind: str) -> list[dict[str, Any]]:
    """Extra jrnn rows: ``"default"`` flips each default once (on CPU: ``vjp=hoisted``,
    ``hoist=True``) and adds ``remat=step``; ``"grid"`` is every ``hoist`` x ``vjp`` pair
    plus ``remat=step``; ``"none"`` adds nothing."""
    if kind == "none":
        return []
    if kind == "grid":
        grid = [{"hoist": h, "vjp": v} for h in (True, False) for v in ("hoisted", "autodiff")]
        return grid + [{"remat": "step"}]
    d = jrnn_defaults()
    other_vjp = "hoisted" if d["vjp"] == "autodiff" else "autodiff"
    return [{"vjp": other_vjp}, {"hoist": not d["hoist"]}, {"remat": "step"}]


def variant_name(kwargs: dict[str, Any]) -> str:
    if not kwargs:
        return "jrnn"
    return "jrnn (" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


def build_jrnn(
    cell: str,
    cfg: Config,
    data: Data,
    kwargs: dict[str, Any] | None = None,
    modes: tuple[str, ...] = ("train", "forward"),
) -> Impl:
    """``jrnn.unroll(cell, params, xs, **kwargs)``; no kwargs is the library's default."""
    kwargs = dict(kwargs or {})
    c = jrnn_cell(cell, cfg.hidden)
    params = c.init(jax.random.key(0), cfg.inputs)
    apply = lambda p, xs: jrnn.unroll(c, p, xs, **kwargs)[0]
    d = jrnn_defaults()
    note = ""
    if not kwargs:
        d = jrnn.unroll_defaults(batch=cfg.batch, steps=cfg.steps, hidden=cfg.hidden)
        note = f"defaults on {jax.default_backend()}: hoist={d['hoist']}, vjp={d['vjp']}"
        devices = jax.config.jax_num_cpu_devices
        if jax.default_backend() == "cpu" and devices and devices > 1:
            split = jrnn.sharding.split_devices(cfg.batch, cfg.steps, cfg.hidden, devices)
            note += f"; {split} of {devices} host devices (jrnn.use_cpu_cores)"
    if cell == "gru":
        note = "; ".join(filter(None, [note, "gru(reset_after=True)"]))
    family = "jrnn" if not kwargs else "jrnn-variants"
    return jax_impl(variant_name(kwargs), family, apply, params, data, modes, note)


def jrnn_impls(
    cell: str, cfg: Config, data: Data, variants: list[dict[str, Any]], with_default: bool
) -> Iterator[tuple[str, Callable[[], Impl]]]:
    """The default row and the variant rows.  A variant enters forward mode only if it
    changes the forward pass (``hoist``; ``vjp`` and ``remat`` act on the backward pass
    only), once per distinct ``hoist``."""
    if with_default:
        yield "jrnn", lambda: build_jrnn(cell, cfg, data)
    seen_forward: set[bool] = {jrnn_defaults()["hoist"]} if with_default else set()
    for kw in variants:
        new_forward = "hoist" in kw and "remat" not in kw and kw["hoist"] not in seen_forward
        if new_forward:
            seen_forward.add(kw["hoist"])
        if new_forward and set(kw) == {"hoist"}:  # one row name for both modes
            yield variant_name(kw), (lambda kw=kw: build_jrnn(cell, cfg, data, kw))
            continue
        yield variant_name(kw), (lambda kw=kw: build_jrnn(cell, cfg, data, kw, ("train",)))
        if new_forward:
            fwd = {"hoist": kw["hoist"]}
            yield (
                variant_name(fwd) + " (forward)",
                lambda fwd=fwd: build_jrnn(cell, cfg, data, fwd, ("forward",)),
            )


# --------------------------------------------------------------------------------------
# Flax


def build_flax_linen(cell: str, cfg: Config, data: Data, variant: str) -> Impl:
    """Flax linen ``nn.RNN`` over ``LSTMCell`` / ``OptimizedLSTMCell`` / ``GRUCell``."""
    nn = _require("flax.linen")
    cls = {"LSTMCell": nn.LSTMCell, "OptimizedLSTMCell": nn.OptimizedLSTMCell}
    cls["GRUCell"] = nn.GRUCell
    if (cell == "gru") != (variant == "GRUCell"):
        raise Unsupported(variant)
    rnn = nn.RNN(cls[variant](features=cfg.hidden))
    params = rnn.init(jax.random.key(0), jnp.asarray(data.xs))
    note = "reset-after GRU" if cell == "gru" else ""
    return jax_impl(f"flax.linen RNN({variant})", "flax", rnn.apply, params, data, note=note)


def build_flax_nnx(cell: str, cfg: Config, data: Data, variant: str) -> Impl:
    """Flax NNX ``nnx.RNN`` over ``nnx`` cells, split into (graphdef, params) and merged
    inside ``jax.jit`` (the functional pattern Flax recommends for speed)."""
    _require("flax")
    try:
        from flax import nnx
    except ImportError as e:
        raise Missing("flax.nnx not available in this flax") from e
    if not hasattr(nnx, "RNN") or not hasattr(nnx, variant):
        raise Missing(f"flax.nnx has no RNN/{variant} in this flax version")
    if (cell == "gru") != (variant == "GRUCell"):
        raise Unsupported(variant)
    rnn = nnx.RNN(getattr(nnx, variant)(cfg.inputs, cfg.hidden, rngs=nnx.Rngs(0)))
    carry0 = rnn.cell.initialize_carry((cfg.batch, cfg.inputs), nnx.Rngs(0))
    graphdef, params, rest = nnx.split(rnn, nnx.Param, ...)

    def apply(p, xs):
        return nnx.merge(graphdef, p, rest)(xs, initial_carry=carry0)

    note = "split/merge under jax.jit" + ("; reset-after GRU" if cell == "gru" else "")
    return jax_impl(f"flax.nnx RNN({variant})", "nnx", apply, params, data, note=note)


# --------------------------------------------------------------------------------------
# Equinox and Haiku


def build_equinox(cell: str, cfg: Config, data: Data) -> Impl:
    """Equinox ``LSTMCell`` / ``GRUCell`` (one sequence) under ``lax.scan``, ``vmap``-ed
    over the batch."""
    eqx = _require("equinox")
    H = cfg.hidden
    cls = eqx.nn.LSTMCell if cell == "lstm" else eqx.nn.GRUCell
    model = cls(cfg.inputs, H, key=jax.random.key(0))
    params, static = eqx.partition(model, eqx.is_array)

    def apply(p, xs):
        core = eqx.combine(p, static)

        def one(x):  # [T, I] -> [T, H]
            if cell == "lstm":
                init = (jnp.zeros(H, x.dtype), jnp.zeros(H, x.dtype))
                body = lambda c, x_t: (lambda hc: (hc, hc[0]))(core(x_t, c))
            else:
                init = jnp.zeros(H, x.dtype)
                body = lambda h, x_t: (lambda h: (h, h))(core(x_t, h))
            return jax.lax.scan(body, init, x)[1]

        return jax.vmap(one)(xs)

    name = f"equinox {cls.__name__} (scan+vmap)"
    note = "reset-after GRU" if cell == "gru" else ""
    return jax_impl(name, "equinox", apply, params, data, note=note)


def build_haiku(cell: str, cfg: Config, data: Data) -> Impl:
    """Haiku ``hk.LSTM`` / ``hk.GRU`` under ``hk.dynamic_unroll`` (batch-major)."""
    hk = _require("haiku")
    core_cls = hk.LSTM if cell == "lstm" else hk.GRU

    def f(xs):
        core = core_cls(cfg.hidden)
        ys, _ = hk.dynamic_unroll(core, xs, core.initial_state(xs.shape[0]), time_major=False)
        return ys

    model = hk.without_apply_rng(hk.transform(f))
    params = model.init(jax.random.key(0), jnp.asarray(data.xs))
    name = f"haiku {core_cls.__name__} (dynamic_unroll)"
    note = "hk.GRU is the reset-before (Cho) form" if cell == "gru" else ""
    return jax_impl(name, "haiku", model.apply, params, data, note=note)


# --------------------------------------------------------------------------------------
# JAX's cuDNN LSTM


def build_jax_rnn(cell: str, cfg: Config, data: Data) -> Impl:
    """``jax.experimental.rnn.lstm``: JAX's binding of the cuDNN LSTM (one layer,
    batch-major, one flat weight vector); CUDA only, LSTM only.  It computes jrnn's LSTM
    with ``w_ih = W_ih.T``, ``w_hh = W_hh.T``, ``b = b_ih + b_hh`` (gates ``i, f, g, o``;
    tested against ``jax.experimental.rnn.lstm_ref``)."""
    if cell != "lstm":
        raise Unsupported("jax.experimental.rnn has an LSTM only")
    if jax.default_backend() != "gpu":
        raise Unsupported(f"jax.experimental.rnn.lstm needs cuDNN, not {jax.default_backend()}")
    from jax.experimental import rnn

    weights = rnn.init_lstm_weight(jax.random.key(0), cfg.inputs, cfg.hidden, 1, False)
    zeros = jnp.zeros((1, cfg.batch, cfg.hidden), jnp.float32)
    lengths = jnp.full((cfg.batch,), cfg.steps, jnp.int32)

    def apply(w, xs):
        ys, _, _ = rnn.lstm(xs, zeros, zeros, w, lengths, cfg.inputs, cfg.hidden, 1, 0.0, False)
        return ys

    return jax_impl("jax.experimental.rnn.lstm (cuDNN)", "jax-rnn", apply, weights, data)


# --------------------------------------------------------------------------------------
# PyTorch


def torch_device() -> str:
    torch = _require("torch")
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_torch(cell: str, cfg: Config, data: Data) -> Impl:
    """``torch.nn.LSTM`` / ``nn.GRU`` (batch_first), eager, as users get it: oneDNN on CPU,
    cuDNN on CUDA; ``torch.optim.Adam``; the forward pass under ``torch.inference_mode``."""
    torch = _require("torch")
    dev = torch_device()
    torch.manual_seed(0)
    cls = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
    model = cls(cfg.inputs, cfg.hidden, batch_first=True).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    xs = torch.from_numpy(data.xs).to(dev)
    target = torch.from_numpy(data.target).to(dev)
    batch = cfg.batch

    def train(_state: Any) -> Any:
        opt.zero_grad(set_to_none=True)
        ys, _ = model(xs)
        loss = ((ys - target) ** 2).mean(-1).sum() / batch
        loss.backward()
        opt.step()
        return loss.detach()

    def forward(_state: Any) -> Any:
        with torch.inference_mode():
            return model(xs)[0]

    if dev == "cuda":
        sync = lambda _out: torch.cuda.synchronize()
        backend = "cuDNN" if torch.backends.cudnn.is_available() else "CUDA"
    else:
        sync = lambda _out: None
        on = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
        backend = "oneDNN" if on else "ATen"
    impl = Impl(f"torch nn.{cls.__name__} ({backend})", "torch", "torch")
    impl.note = f"{torch.get_num_threads()} threads" if dev == "cpu" else dev
    impl.modes["train"] = ModeFn(train, (None,), sync)
    impl.modes["forward"] = ModeFn(forward, (None,), sync)
    return impl


# --------------------------------------------------------------------------------------
# NumPy reference


def build_numpy(cell: str, cfg: Config, data: Data) -> Impl:
    """``jrnn.reference.forward`` (NumPy, float64, one Python loop over time); forward only."""
    if not cfg.numpy_ok:
        raise Unsupported(f"NumPy reference runs at small/medium sizes only, not {cfg.name}")
    from jrnn import reference

    params = jrnn_cell(cell, cfg.hidden).init(jax.random.key(0), cfg.inputs)
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    xs64 = data.xs.astype(np.float64)
    fn = lambda _state: reference.forward(cell, p64, xs64, None)[0]
    impl = Impl("numpy reference (float64)", "numpy", "numpy", note="forward only, float64")
    impl.modes["forward"] = ModeFn(fn, (None,), lambda _out: None)
    return impl


# --------------------------------------------------------------------------------------
# the registry


def builders(
    cell: str,
    cfg: Config,
    data: Data,
    families: set[str],
    variants: list[dict[str, Any]],
) -> Iterator[tuple[str, Callable[[], Impl]]]:
    """``(label, build)`` for every selected implementation of ``cell`` at ``cfg``;
    ``build()`` may raise :class:`Missing` or :class:`Unsupported`."""
    if "jrnn" in families or "jrnn-variants" in families:
        yield from jrnn_impls(
            cell,
            cfg,
            data,
            variants if "jrnn-variants" in families else [],
            with_default="jrnn" in families,
        )
    linen = ("LSTMCell", "OptimizedLSTMCell") if cell == "lstm" else ("GRUCell",)
    if "flax" in families:
        for v in linen:
            yield f"flax.linen {v}", lambda v=v: build_flax_linen(cell, cfg, data, v)
    if "nnx" in families:
        for v in linen:
            yield f"flax.nnx {v}", lambda v=v: build_flax_nnx(cell, cfg, data, v)
    if "equinox" in families:
        yield "equinox", lambda: build_equinox(cell, cfg, data)
    if "haiku" in families:
        yield "haiku", lambda: build_haiku(cell, cfg, data)
    if "jax-rnn" in families:
        yield "jax.experimental.rnn", lambda: build_jax_rnn(cell, cfg, data)
    if "torch" in families:
        yield "torch", lambda: build_torch(cell, cfg, data)
    if "numpy" in families:
        yield "numpy reference", lambda: build_numpy(cell, cfg, data)


# --------------------------------------------------------------------------------------
# the physical limit: plain matmuls at the RNN's shapes


def matmul_probes(cfg: Config, gates: int) -> dict[str, tuple[ModeFn, float]]:
    """``jnp.dot`` at the two shapes an RNN multiplies, with the FLOPs of one call.

    ``recurrent``: ``T`` chained ``[B, H] x [H, G·H]`` products in a ``lax.scan`` (each step
    feeds the first ``H`` columns of its product to the next, so nothing can be hoisted and
    there is one dispatch for all ``T``); ``input``: one ``[T·B, I] x [I, G·H]`` product.
    """
    B, T, I, H = cfg.batch, cfg.steps, cfg.inputs, cfg.hidden
    k1, k2, k3, k4 = jax.random.split(jax.random.key(42), 4)
    h0 = jax.random.normal(k1, (B, H), jnp.float32)
    w_hh = jax.random.normal(k2, (H, gates * H), jnp.float32) / np.sqrt(H)
    x2 = jax.random.normal(k3, (T * B, I), jnp.float32)
    w_ih = jax.random.normal(k4, (I, gates * H), jnp.float32) / np.sqrt(I)

    @jax.jit
    def recurrent(h, w):
        def body(h, _):
            return (h @ w)[:, :H], None

        return jax.lax.scan(body, h, None, length=T)[0]

    inp = jax.jit(jnp.dot)
    return {
        "recurrent": (ModeFn(recurrent, (h0, w_hh), _block, jit=True), 2.0 * T * B * H * gates * H),
        "input": (ModeFn(inp, (x2, w_ih), _block, jit=True), 2.0 * T * B * I * gates * H),
    }
