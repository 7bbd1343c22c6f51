"""PyTorch import/export (``jrnn.interop.from_torch`` / ``to_torch``), checked numerically.

Every supported module is imported and run through ``net.apply`` next to PyTorch on the same
inputs, initial states and variable lengths (PyTorch through ``pack_padded_sequence``):
outputs, final states, and the gradients of one scalar loss with respect to the inputs, the
initial states and every parameter (PyTorch's gradients mapped by the same layout map,
``grads_from_torch``) agree to 1e-10 in float64 and 1e-5 in float32.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn.interop import torch as jt

torch = pytest.importorskip("torch")
nn = torch.nn
torch.set_num_threads(1)

B, T, I, H, P = 3, 5, 4, 5, 3
LENGTHS = np.array([T, 1, 3])

# id -> module factory (every case also fixes batch_first, to exercise both layouts)
LAYERS = {
    "rnn_tanh_2x_bidir": lambda: nn.RNN(I, H, num_layers=2, bidirectional=True, batch_first=True),
    "rnn_relu_time_major": lambda: nn.RNN(I, H, nonlinearity="relu"),
    "lstm_2x_bidir": lambda: nn.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True),
    "lstm_no_bias": lambda: nn.LSTM(I, H, bias=False, batch_first=True),
    "lstm_proj_2x_bidir": lambda: nn.LSTM(
        I, H, num_layers=2, bidirectional=True, proj_size=P, batch_first=True
    ),
    "gru_2x_bidir_time_major": lambda: nn.GRU(I, H, num_layers=2, bidirectional=True),
    "gru_no_bias": lambda: nn.GRU(I, H, bias=False, batch_first=True),
}
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def make_layer(case: str, dtype=torch.float64, seed: int = 0):
    torch.manual_seed(seed)
    module = LAYERS[case]().to(dtype)
    with torch.no_grad():  # make every parameter count, biases included
        for p in module.parameters():
            p.uniform_(-0.6, 0.6)
    return module


def torch_state(module, dtype, seed: int = 1):
    """A random initial state ``h0`` or ``(h0, c0)`` for ``module``."""
    g = torch.Generator().manual_seed(seed)
    num = module.num_layers * (2 if module.bidirectional else 1)
    h_out = module.proj_size or module.hidden_size
    h0 = 0.5 * torch.randn(num, B, h_out, generator=g, dtype=dtype)
    if isinstance(module, nn.LSTM):
        return h0, 0.5 * torch.randn(num, B, module.hidden_size, generator=g, dtype=dtype)
    return h0


def run_torch(module, x: np.ndarray, hx, lengths):
    """PyTorch forward through ``pack_padded_sequence``; returns outputs ``[B, T, .]``,
    the final state and the input tensors (for their gradients)."""
    bf = module.batch_first
    xt = torch.tensor(x, requires_grad=True)
    hx = (
        tuple(h.clone().requires_grad_(True) for h in hx)
        if isinstance(hx, tuple)
        else (hx.clone().requires_grad_(True))
    )
    seq = xt if bf else xt.transpose(0, 1)
    packed = nn.utils.rnn.pack_padded_sequence(
        seq, torch.tensor(lengths), batch_first=bf, enforce_sorted=False
    )
    out, state = module(packed, hx)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=bf, total_length=x.shape[1])
    if not bf:
        out = out.transpose(0, 1)
    return out, state, xt, hx


def flat(state) -> tuple:
    return state if isinstance(state, tuple) else (state,)


def stacked_state(carries):
    """jrnn carries [layer][direction] -> PyTorch's layout ``[L*D, B, .]`` per field."""
    items = [c for layer in carries for c in layer]
    return tuple(jnp.stack(parts) for parts in zip(*items, strict=True))


def assert_close(actual, desired, tol, msg=""):
    np.testing.assert_allclose(
        np.asarray(actual, np.float64),
        np.asarray(desired, np.float64),
        rtol=tol,
        atol=tol,
        err_msg=msg,
    )


@pytest.mark.parametrize(
    "case, dtype",
    [(c, torch.float64) for c in LAYERS]
    + [("lstm_proj_2x_bidir", torch.float32), ("gru_no_bias", torch.float32)],
    ids=[f"{c}-f64" for c in LAYERS] + ["lstm_proj-f32", "gru_no_bias-f32"],
)
def test_layer_matches_torch(case, dtype):
    """Outputs, final states and input/state/parameter gradients, with variable lengths."""
    module = make_layer(case, dtype)
    net, params = jt.from_torch(module)
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    assert jax.tree.leaves(params)[0].dtype == np_dtype
    rng = np.random.default_rng(2)
    x = rng.standard_normal((B, T, I)).astype(np_dtype)
    hx = torch_state(module, dtype)
    h_out = module.proj_size or module.hidden_size
    d = 2 if module.bidirectional else 1
    w_y = rng.standard_normal((B, T, d * h_out)).astype(np_dtype)
    w_state = [rng.standard_normal(tuple(s.shape)).astype(np_dtype) for s in flat(hx)]

    out, state, xt, hx_t = run_torch(module, x, hx, LENGTHS)
    loss_t = (out * torch.tensor(w_y)).sum() + sum(
        (s * torch.tensor(w)).sum() for s, w in zip(flat(state), w_state, strict=True)
    )
    loss_t.backward()

    time_major = not module.batch_first

    def loss(p, xs, carries):
        if time_major:
            ys, finals = net.apply(
                p, xs.swapaxes(0, 1), carries=carries, lengths=LENGTHS, time_major=True
            )
            ys = ys.swapaxes(0, 1)
        else:
            ys, finals = net.apply(p, xs, carries=carries, lengths=LENGTHS)
        st = stacked_state(finals)
        value = jnp.sum(ys * w_y) + sum(jnp.sum(s * w) for s, w in zip(st, w_state, strict=True))
        return value, (ys, st)

    carries0 = jt.carry_from_torch(net, hx)
    grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))
    (g_params, g_x, g_carries), (ys, st) = grad_fn(params, jnp.asarray(x), carries0)

    tol = TOL[dtype]
    assert_close(ys, out.detach().numpy(), tol, "outputs")
    for a, b in zip(st, flat(state), strict=True):
        assert_close(a, b.detach().numpy(), tol, "final state")
    assert_close(g_x, xt.grad.numpy(), tol, "d/dx")
    for a, b in zip(stacked_state(g_carries), flat(hx_t), strict=True):
        assert_close(a, b.grad.numpy(), tol, "d/dhx")
    expected = jt.grads_from_torch(module)
    for (path, g), e in zip(
        jax.tree_util.tree_leaves_with_path(g_params), jax.tree.leaves(expected), strict=True
    ):
        name = jax.tree_util.keystr(path)
        if not module.bias and name.endswith(("['b']", "['b_hn']")):
            continue  # a bias-free module has no counterpart of jrnn's (zero) biases
        assert_close(g, e, tol, f"d/dparams{name}")


def test_folded_bias_gradients_are_equal_in_torch():
    """What ``grads_from_torch`` relies on: ``grad(bias_ih) == grad(bias_hh)`` wherever jrnn
    folds them (all LSTM/RNN blocks, the GRU's r and z), so either is ``grad(b)``."""
    for case in ("lstm_2x_bidir", "gru_2x_bidir_time_major"):
        module = make_layer(case)
        x = torch.randn(B, T, I, dtype=torch.float64)
        out, _ = module(x if module.batch_first else x.transpose(0, 1))
        (out**2).sum().backward()
        g_ih, g_hh = module.bias_ih_l0.grad, module.bias_hh_l0.grad
        folded = slice(0, 2 * H) if isinstance(module, nn.GRU) else slice(None)
        torch.testing.assert_close(g_ih[folded], g_hh[folded], rtol=0, atol=1e-14)
        if isinstance(module, nn.GRU):
            assert not torch.allclose(g_ih[2 * H :], g_hh[2 * H :])


CELLS = {
    "rnn_cell_tanh": lambda: nn.RNNCell(I, H),
    "rnn_cell_relu": lambda: nn.RNNCell(I, H, nonlinearity="relu"),
    "lstm_cell": lambda: nn.LSTMCell(I, H),
    "gru_cell": lambda: nn.GRUCell(I, H),
    "gru_cell_no_bias": lambda: nn.GRUCell(I, H, bias=False),
}


@pytest.mark.parametrize("case", list(CELLS))
def test_cell_matches_torch(case):
    torch.manual_seed(0)
    module = CELLS[case]().double()
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.6, 0.6)
    cell, params = jt.from_torch(module)
    assert isinstance(cell, jrnn.Cell)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((B, I))
    is_lstm = isinstance(module, nn.LSTMCell)
    hx = tuple(torch.randn(B, H, dtype=torch.float64) for _ in range(2 if is_lstm else 1))
    hx = hx if is_lstm else hx[0]
    w = [rng.standard_normal((B, H)) for _ in range(2)]

    xt = torch.tensor(x, requires_grad=True)
    hx_t = tuple(h.clone().requires_grad_(True) for h in flat(hx))
    new = module(xt, hx_t if is_lstm else hx_t[0])
    new = flat(new)
    sum((n * torch.tensor(wi)).sum() for n, wi in zip(new, w, strict=False)).backward()

    def loss(p, x, carry):
        carry, y = cell.step(p, carry, x)
        np.testing.assert_equal(len(carry), len(new))
        return sum(jnp.sum(c * wi) for c, wi in zip(carry, w, strict=False)), carry

    carry0 = jt.carry_from_torch(cell, hx)
    (g_p, g_x, g_c), carry = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(
        params, jnp.asarray(x), carry0
    )
    for a, b in zip(carry, new, strict=True):
        assert_close(a, b.detach().numpy(), 1e-10)
    assert_close(g_x, xt.grad.numpy(), 1e-10)
    for a, b in zip(g_c, hx_t, strict=True):
        assert_close(a, b.grad.numpy(), 1e-10)
    for k, e in jt.grads_from_torch(module).items():
        if module.bias or k not in ("b", "b_hn"):
            assert_close(g_p[k], e, 1e-10, k)


@pytest.mark.parametrize("case", list(LAYERS))
def test_round_trips(case):
    """jrnn -> torch -> jrnn is bit-exact; torch -> jrnn -> torch computes the same."""
    module = make_layer(case)
    net, params = jt.from_torch(module)
    bias = module.bias
    back = jt.to_torch(net, params, bias=bias, batch_first=module.batch_first)
    assert type(back) is type(module)
    for attr in (
        "input_size",
        "hidden_size",
        "num_layers",
        "bidirectional",
        "proj_size",
        "batch_first",
        "bias",
    ):
        assert getattr(back, attr) == getattr(module, attr), attr
    if isinstance(module, nn.RNN):
        assert back.nonlinearity == module.nonlinearity
    net2, params2 = jt.from_torch(back)
    assert net2.cell.name == net.cell.name
    jax.tree.map(np.testing.assert_array_equal, params2, params)
    x = torch.randn(B, T, I, dtype=torch.float64)
    x = x if module.batch_first else x.transpose(0, 1)
    with torch.no_grad():
        torch.testing.assert_close(back(x)[0], module(x)[0], rtol=1e-13, atol=1e-13)
    # weights are copied as they are; only the bias split may differ
    sd, sd_back = module.state_dict(), back.state_dict()
    assert sd.keys() == sd_back.keys()
    for k in sd:
        if k.startswith("bias_ih"):
            hh = k.replace("bias_ih", "bias_hh")
            torch.testing.assert_close(sd_back[k] + sd_back[hh], sd[k] + sd[hh])
        elif not k.startswith("bias_hh"):
            assert torch.equal(sd_back[k], sd[k]), k


def test_export_of_a_native_jrnn_stack_and_dropout():
    """A stack built in jrnn exports; torch agrees with net.apply (eval mode); the dropout
    rate and dtype travel both ways."""
    cell = jrnn.gru(H, reset_after=True, param_dtype=jnp.float64)
    net = jrnn.stack(cell, num_layers=2, bidirectional=True, dropout=0.25)
    params = net.init(jax.random.key(0), I)
    module = jt.to_torch(net, params)
    assert isinstance(module, nn.GRU) and module.dropout == 0.25 and module.batch_first
    assert module.weight_ih_l0.dtype == torch.float64
    x = np.random.default_rng(0).standard_normal((B, T, I))
    with torch.no_grad():
        out, _ = module.eval()(torch.tensor(x))
    ys, _ = jax.jit(net.apply)(params, x)
    assert_close(ys, out.numpy(), 1e-10)
    assert jt.from_torch(module)[0].dropout == 0.25


def test_cell_round_trip_and_bias_false_export():
    cell = jrnn.lstm(H, param_dtype=jnp.float32)
    params = cell.init(jax.random.key(0), I)
    module = jt.to_torch(cell, params)
    assert isinstance(module, nn.LSTMCell) and module.weight_ih.dtype == torch.float32
    cell2, params2 = jt.from_torch(module)
    jax.tree.map(np.testing.assert_array_equal, params2, params)
    # bias=False: allowed only when b is exactly zero
    with pytest.raises(ValueError, match=r"bias=False, but `params\['b'\]` is not all zero"):
        jt.to_torch(cell, params, bias=False)
    zero_b = {**params, "b": jnp.zeros_like(params["b"])}
    module = jt.to_torch(cell, zero_b, bias=False)
    assert module.bias is False and module.bias_ih is None
    net = jrnn.stack(jrnn.gru(H, reset_after=True), 1)
    p = net.init(jax.random.key(1), I)
    with pytest.raises(ValueError, match=r"params\[0\]\[0\]\['b_hn'\]"):
        jt.to_torch(net, ((p[0][0] | {"b_hn": jnp.ones((H,), jnp.float32)},),), bias=False)


def test_carry_conversions_round_trip():
    module = make_layer("lstm_proj_2x_bidir")
    net, _ = jt.from_torch(module)
    hx = torch_state(module, torch.float64)
    carries = jt.carry_from_torch(net, hx)
    assert carries[1][1].h.shape == (B, P) and carries[1][1].c.shape == (B, H)
    for a, b in zip(jt.carry_to_torch(net, carries), hx, strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="num_layers \\* directions = 4"):
        jt.carry_from_torch(net, (hx[0][:2], hx[1][:2]))
    with pytest.raises(ValueError, match=r"pair \(h, c\)"):
        jt.carry_from_torch(net, hx[0])


# --------------------------------------------------------------------------------------
# bad input


def zeros(cell_or_net, input_size):
    """Zero params with the shapes ``init`` makes (no initialiser runs)."""
    shapes = jax.eval_shape(lambda k: cell_or_net.init(k, input_size), jax.random.key(0))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def test_unsupported_module_raises():
    with pytest.raises(TypeError, match=r"unsupported module torch.nn.*Transformer"):
        jt.from_torch(
            nn.Transformer(
                d_model=8,
                nhead=2,
                num_encoder_layers=1,
                num_decoder_layers=1,
                dim_feedforward=8,
                batch_first=True,
            )
        )
    with pytest.raises(TypeError, match=r"unsupported module .*Linear"):
        jt.from_torch(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="expected a jrnn.Stack or jrnn.Cell"):
        jt.to_torch(nn.Linear(2, 2), {})


def test_cells_without_a_torch_counterpart_raise():
    proj = jrnn.lstm(H, proj_size=P)
    with pytest.raises(ValueError, match=r"projection \(proj_size=3\) but torch.nn.LSTMCell"):
        jt.to_torch(proj, zeros(proj, I))
    peep = jrnn.lstm(H, peephole=True)
    with pytest.raises(ValueError, match="no peephole"):
        jt.to_torch(jrnn.stack(peep), ((zeros(peep, I),),))
    cho = jrnn.gru(H)
    with pytest.raises(ValueError, match="reset-before"):
        jt.to_torch(cho, zeros(cho, I))
    sig = jrnn.simple_rnn(H, "sigmoid")
    with pytest.raises(ValueError, match="tanh and relu.*'sigmoid'"):
        jt.to_torch(sig, zeros(sig, I))
    normed = jrnn.lstm(H, layer_norm=True)
    with pytest.raises(ValueError, match="no layer normalisation.*layer_norm=True"):
        jt.to_torch(normed, zeros(normed, I))
    hard = jrnn.gru(H, reset_after=True, gate_fn="hard_sigmoid")
    with pytest.raises(ValueError, match="sigmoid gates and tanh.*gate_fn='hard_sigmoid'"):
        jt.to_torch(jrnn.stack(hard), ((zeros(hard, I),),))
    mixed = jrnn.gru(H, reset_after=True, dtype=jnp.bfloat16)
    with pytest.raises(ValueError, match="computes in bfloat16 but its params are float32"):
        jt.to_torch(mixed, zeros(mixed, I))


def test_mismatched_params_raise():
    cell = jrnn.lstm(H)
    p = zeros(cell, I)
    proj_p = zeros(jrnn.lstm(H, proj_size=P), I)
    no_proj = r"unknown key 'w_proj' in `params\[0\]\[0\]` .* did you mean lstm\(proj_size=\d+\)"
    with pytest.raises(ValueError, match=no_proj):
        jt.to_torch(jrnn.stack(cell), ((proj_p,),))
    with pytest.raises(ValueError, match=r"`params\[0\]\[0\]` is missing key 'w_proj'"):
        jt.to_torch(jrnn.stack(jrnn.lstm(H, proj_size=P)), ((p,),))
    with pytest.raises(ValueError, match=r"`params\['w_hh'\]` must have shape \[5, 20\]"):
        jt.to_torch(cell, {**p, "w_hh": jnp.zeros((4, 4 * H))})
    with pytest.raises(ValueError, match=r"missing key 'b'"):
        jt.to_torch(cell, {k: v for k, v in p.items() if k != "b"})
    net = jrnn.stack(cell, num_layers=2)
    good = zeros(net, I)
    with pytest.raises(ValueError, match=r"nested tuples \[num_layers=2\]\[directions=1\]"):
        jt.to_torch(net, good[:1])
    with pytest.raises(ValueError, match=r"params\[1\]\[0\]\['w_ih'\]` must have 5 rows"):
        jt.to_torch(net, (good[0], (zeros(cell, 7),)))
    with pytest.raises(ValueError, match="same dtype"):
        jt.to_torch(cell, {**p, "b": p["b"].astype(jnp.float64)})


def test_missing_torch_gives_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    import jrnn.interop  # noqa: F401  (works without torch)

    with pytest.raises(ImportError, match=r"needs PyTorch.*pip install 'jrnn\[torch\]'"):
        jt.from_torch(object())
    with pytest.raises(ImportError, match="needs PyTorch"):
        jt.to_torch(jrnn.lstm(H), {})


def test_subclasses_with_their_own_forward_or_hooks_are_refused():
    class Scaled(nn.LSTM):
        def forward(self, x, hx=None):
            out, state = super().forward(x, hx)
            return 2 * out, state

    class Plain(nn.GRU):  # no forward of its own: computes what nn.GRU computes
        pass

    class Cell(nn.GRUCell):
        def forward(self, x, hx=None):
            return super().forward(x, hx).tanh()

    with pytest.raises(TypeError, match=r"`module` is .*Scaled.*subclass of torch.nn.LSTM"):
        jt.from_torch(Scaled(I, H))
    with pytest.raises(TypeError, match=r"subclass of torch.nn.GRUCell with its own forward"):
        jt.from_torch(Cell(I, H))
    net, params = jt.from_torch(Plain(I, H, batch_first=True))
    assert net.cell.name.startswith("gru")
    hooked = nn.RNN(I, H)
    handle = hooked.register_forward_hook(lambda m, args, out: out)
    with pytest.raises(TypeError, match="forward hooks"):
        jt.from_torch(hooked)
    handle.remove()
    jt.from_torch(hooked)


def test_meta_device_modules_are_refused():
    with torch.device("meta"):
        layer, cell = nn.LSTM(I, H), nn.GRUCell(I, H)
    with pytest.raises(ValueError, match=r"`module.weight_ih_l0` is on the meta device"):
        jt.from_torch(layer)
    with pytest.raises(ValueError, match=r"`module.weight_ih` is on the meta device"):
        jt.from_torch(cell)


def test_tampered_weight_shapes_name_the_parameter():
    module = nn.GRU(I, H, num_layers=2)
    with torch.no_grad():
        module.weight_hh_l1 = nn.Parameter(torch.zeros(3 * H, H + 1))
    with pytest.raises(ValueError, match=r"`module.weight_hh_l1` must have shape \[15, 5\]"):
        jt.from_torch(module)
    cell = nn.LSTMCell(I, H)
    cell.bias_ih = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match=r"`module.bias_ih` must have shape \[20\]"):
        jt.from_torch(cell)


def test_carry_shape_mismatches_name_hx():
    module = make_layer("lstm_proj_2x_bidir")
    net, _ = jt.from_torch(module)
    h, c = torch_state(module, torch.float64)
    with pytest.raises(ValueError, match=r"`hx` \(h\) must have last axis 3"):
        jt.carry_from_torch(net, (c, c))
    with pytest.raises(ValueError, match=r"`hx` \(c\) must have shape"):
        jt.carry_from_torch(net, (h, h))
