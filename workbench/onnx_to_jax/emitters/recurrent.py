"""Recurrent layers: RNN, GRU, LSTM, each one ``lax.scan`` per direction; the stateful decode ops
LinearAttention (a ``lax.scan`` over tokens) and CausalConvWithState (opset 27).

One runtime helper implements the three cells as the ONNX spec writes them:
gate order (RNN: one gate; GRU: z, r, h; LSTM: i, o, f, c), bias split into
the input (Wb) and recurrence (Rb) halves, optional ``clip`` on the
pre-activations, GRU's ``linear_before_reset``, LSTM's peepholes ``P`` and
``input_forget``, ``layout=1`` (batch first), and ``sequence_lens`` (steps past
a batch entry's length emit 0 and keep the state; the reverse direction
reverses only the valid part of each sequence).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.registry import emitter, runtime_helper

# activation name -> whether it takes (alpha, beta); ONNX's defaults when the model leaves them out
_ACTIVATION_DEFAULTS: dict[str, tuple[float | None, float | None]] = {
    "Relu": (None, None), "Tanh": (None, None), "Sigmoid": (None, None), "Softsign": (None, None),
    "Softplus": (None, None), "Affine": (1.0, 0.0), "LeakyRelu": (0.01, None), "ThresholdedRelu": (1.0, None),
    "ScaledTanh": (1.0, 1.0), "HardSigmoid": (0.2, 0.5), "Elu": (1.0, None),
}
_DEFAULT_ACTIVATIONS = {"RNN": ("Tanh",), "GRU": ("Sigmoid", "Tanh"), "LSTM": ("Sigmoid", "Tanh", "Tanh")}


@runtime_helper
def _rnn_activation(name, alpha, beta):
    """The ONNX recurrent activation ``name`` as a function (alpha/beta as the spec defines them)."""
    if name == "Relu":
        return jax.nn.relu
    if name == "Tanh":
        return jnp.tanh
    if name == "Sigmoid":
        return jax.nn.sigmoid
    if name == "Softsign":
        return jax.nn.soft_sign
    if name == "Softplus":
        return jax.nn.softplus
    if name == "Affine":
        return lambda x: alpha * x + beta
    if name == "LeakyRelu":
        return lambda x: jnp.where(x >= 0, x, alpha * x)
    if name == "ThresholdedRelu":
        return lambda x: jnp.where(x > alpha, x, 0).astype(x.dtype)
    if name == "ScaledTanh":
        return lambda x: alpha * jnp.tanh(beta * x)
    if name == "HardSigmoid":
        return lambda x: jnp.clip(alpha * x + beta, 0, 1)
    if name == "Elu":
        return lambda x: jnp.where(x >= 0, x, alpha * (jnp.exp(x) - 1))
    raise ValueError(f"unknown recurrent activation {name!r}")


@runtime_helper
def _recurrent(kind, x, w, r, b, seq_lens, init_h, init_c, peepholes, activations, direction, clip, layout,
               linear_before_reset, input_forget):
    """Y, Y_h, Y_c of an ONNX RNN / GRU / LSTM node (Y_c only for LSTM)."""
    if layout:
        x = jnp.swapaxes(x, 0, 1)
        init_h = None if init_h is None else jnp.swapaxes(init_h, 0, 1)
        init_c = None if init_c is None else jnp.swapaxes(init_c, 0, 1)
    seq, batch = x.shape[0], x.shape[1]
    num_dir, gates_hidden = w.shape[0], w.shape[1]
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[kind]
    hidden = gates_hidden // gates
    dtype = x.dtype
    if b is None:
        b = jnp.zeros((num_dir, 2 * gates_hidden), dtype)
    if init_h is None:
        init_h = jnp.zeros((num_dir, batch, hidden), dtype)
    if init_c is None:
        init_c = jnp.zeros((num_dir, batch, hidden), dtype)
    if peepholes is None:
        peepholes = jnp.zeros((num_dir, 3 * hidden), dtype)
    lens = jnp.full((batch,), seq, jnp.int32) if seq_lens is None else jnp.asarray(seq_lens, jnp.int32)
    steps = jnp.arange(seq)[:, None]
    # time index per (step, batch): the valid part of each sequence read backwards, the padding in place
    reversed_index = jnp.where(steps < lens[None, :], lens[None, :] - 1 - steps, steps)
    n_act = len(activations) // num_dir

    def pre(v):
        return v if clip is None else jnp.clip(v, -clip, clip)

    ys, last_h, last_c = [], [], []
    for d in range(num_dir):
        f, g, h_act = (list(activations[d * n_act:(d + 1) * n_act]) + [None, None])[:3]
        wb, rb = jnp.split(b[d], 2)
        reverse = direction == "reverse" or d == 1
        xs = jnp.take_along_axis(x, reversed_index[:, :, None], axis=0) if reverse else x
        x_proj = jnp.matmul(xs, jnp.transpose(w[d])) + wb
        r_t = jnp.transpose(r[d])
        p_i, p_o, p_f = jnp.split(peepholes[d], 3)

        def step(carry, inputs, r_t=r_t, rb=rb, f=f, g=g, h_act=h_act, p_i=p_i, p_o=p_o, p_f=p_f):
            h, c = carry
            xw, t = inputs
            if kind == "RNN":
                h_new = f(pre(xw + jnp.matmul(h, r_t) + rb))
                c_new = c
            elif kind == "GRU":
                x_z, x_r, x_h = jnp.split(xw, 3, axis=-1)
                r_z, r_r, r_h = jnp.split(r_t, 3, axis=-1)
                b_z, b_r, b_h = jnp.split(rb, 3)
                z = f(pre(x_z + jnp.matmul(h, r_z) + b_z))
                reset = f(pre(x_r + jnp.matmul(h, r_r) + b_r))
                if linear_before_reset:
                    candidate = g(pre(x_h + reset * (jnp.matmul(h, r_h) + b_h)))
                else:
                    candidate = g(pre(x_h + jnp.matmul(reset * h, r_h) + b_h))
                h_new = (1 - z) * candidate + z * h
                c_new = c
            else:
                x_i, x_o, x_f, x_c = jnp.split(xw + jnp.matmul(h, r_t) + rb, 4, axis=-1)
                forget = f(pre(x_f + p_f * c))
                gate_in = 1 - forget if input_forget else f(pre(x_i + p_i * c))
                c_new = forget * c + gate_in * g(pre(x_c))
                out = f(pre(x_o + p_o * c_new))
                h_new = out * h_act(c_new)
            valid = (t < lens)[:, None]
            h_new = jnp.where(valid, h_new, h).astype(dtype)
            c_new = jnp.where(valid, c_new, c).astype(dtype)
            return (h_new, c_new), jnp.where(valid, h_new, jnp.zeros_like(h_new))

        (h_last, c_last), y = lax.scan(step, (init_h[d], init_c[d]), (x_proj, jnp.arange(seq)))
        if reverse:
            y = jnp.take_along_axis(y, reversed_index[:, :, None], axis=0)
        ys.append(y)
        last_h.append(h_last)
        last_c.append(c_last)
    y = jnp.stack(ys, axis=1)  # [seq, num_dir, batch, hidden]
    y_h, y_c = jnp.stack(last_h), jnp.stack(last_c)
    if layout:
        return jnp.transpose(y, (2, 0, 1, 3)), jnp.swapaxes(y_h, 0, 1), jnp.swapaxes(y_c, 0, 1)
    return y, y_h, y_c


def _activations(ctx: NodeContext, kind: str, num_dir: int) -> str:
    names = ctx.attr("activations", None)
    defaults = _DEFAULT_ACTIVATIONS[kind]
    names = list(names) if names else list(defaults) * num_dir
    if len(names) == len(defaults) and num_dir == 2:
        names = names * 2
    if len(names) != len(defaults) * num_dir:
        raise ctx.error(f"expected {len(defaults) * num_dir} activations, got {len(names)}")
    alphas = list(ctx.attr("activation_alpha", []))
    betas = list(ctx.attr("activation_beta", []))
    calls = []
    for name in names:
        if name not in _ACTIVATION_DEFAULTS:
            raise ctx.unsupported(f"unknown recurrent activation {name!r}; known: {sorted(_ACTIVATION_DEFAULTS)}")
        default_alpha, default_beta = _ACTIVATION_DEFAULTS[name]
        # alpha/beta lists are consumed in order by the activations that take them
        alpha = alphas.pop(0) if default_alpha is not None and alphas else default_alpha
        beta = betas.pop(0) if default_beta is not None and betas else default_beta
        calls.append(ctx.call(_rnn_activation, ctx.lit(name), ctx.lit(alpha), ctx.lit(beta)))
    return f"({', '.join(calls)},)"


def _recurrent_emitter(kind: str):
    def emit(ctx: NodeContext) -> list[str]:
        direction = ctx.attr("direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise ctx.error(f"unknown direction {direction!r}")
        num_dir = 2 if direction == "bidirectional" else 1
        clip = ctx.attr("clip", None)
        call = ctx.call(
            _recurrent, ctx.lit(kind), ctx.x(0), ctx.x(1), ctx.x(2), ctx.opt(3), ctx.opt(4), ctx.opt(5),
            ctx.opt(6) if kind == "LSTM" else "None", ctx.opt(7) if kind == "LSTM" else "None",
            activations=_activations(ctx, kind, num_dir), direction=ctx.lit(direction),
            clip="None" if clip is None else ctx.lit(ctx.fattr("clip")),
            layout=ctx.lit(bool(ctx.attr("layout", 0))),
            linear_before_reset=ctx.lit(bool(ctx.attr("linear_before_reset", 0))),
            input_forget=ctx.lit(bool(ctx.attr("input_forget", 0))),
        )
        return f"{call}[:{ctx.n_out}]" if ctx.n_out > 1 else [f"{call}[0]"]

    return emit


emitter("RNN", since=(7, 14, 22))(_recurrent_emitter("RNN"))
emitter("GRU", since=(7, 14, 22))(_recurrent_emitter("GRU"))
emitter("LSTM", since=(7, 14, 22))(_recurrent_emitter("LSTM"))


@runtime_helper
def _split_heads(x, num_heads):
    """(B, T, H*D) -> (B, H, T, D)."""
    b, t, _ = x.shape
    return jnp.transpose(jnp.reshape(x, (b, t, num_heads, -1)), (0, 2, 1, 3))


@runtime_helper
def _linear_attention(query, key, value, past_state, decay, beta, q_num_heads, kv_num_heads, scale, update_rule):
    """ONNX LinearAttention: the recurrent state update run token by token, in float32."""
    b, t, _ = query.shape
    q = _split_heads(query, q_num_heads).astype(jnp.float32)
    k = _split_heads(key, kv_num_heads).astype(jnp.float32)
    v = _split_heads(value, kv_num_heads).astype(jnp.float32)
    d_k, d_v = q.shape[-1], v.shape[-1]
    group = q_num_heads // kv_num_heads
    gating = update_rule in ("gated", "gated_delta")
    delta = update_rule in ("delta", "gated_delta")
    if gating:  # decay per head (B, T, H) or per key channel (B, T, H*d_k), in log space
        g = _split_heads(decay, kv_num_heads).astype(jnp.float32)
    else:
        g = jnp.zeros((b, kv_num_heads, t, 1), jnp.float32)
    if delta:
        rate = jnp.transpose(jnp.reshape(beta, (b, t, beta.shape[-1], 1)), (0, 2, 1, 3)).astype(jnp.float32)
    else:
        rate = jnp.ones((b, 1, t, 1), jnp.float32)
    state_dtype = query.dtype if past_state is None else past_state.dtype
    state = (jnp.zeros((b, kv_num_heads, d_k, d_v), jnp.float32) if past_state is None
             else past_state.astype(jnp.float32))
    scale = 1.0 / np.sqrt(d_k) if not scale else scale

    def step(state, inputs):
        q_t, k_t, v_t, g_t, rate_t = inputs
        if gating:
            state = state * jnp.exp(g_t)[..., None]
        if delta:
            v_t = rate_t * (v_t - jnp.einsum("bhdm,bhd->bhm", state, k_t))
        state = state + k_t[..., :, None] * v_t[..., None, :]
        read = jnp.repeat(state, group, axis=1) if group > 1 else state
        return state, scale * jnp.einsum("bhd,bhdm->bhm", q_t, read)

    sequence = tuple(jnp.moveaxis(a, 2, 0) for a in (q, k, v, g, rate))
    state, outputs = lax.scan(step, state, sequence)  # outputs: (T, B, H_q, d_v)
    output = jnp.reshape(jnp.transpose(outputs, (1, 0, 2, 3)), (b, t, q_num_heads * d_v))
    return output.astype(query.dtype), state.astype(state_dtype)


@emitter("LinearAttention", since=27)
def linear_attention(ctx: NodeContext) -> str:
    rule = ctx.attr("update_rule", "gated_delta")
    if rule not in ("linear", "gated", "delta", "gated_delta"):
        raise ctx.error(f"unknown update_rule {rule!r}")
    q_heads, kv_heads = ctx.attr("q_num_heads"), ctx.attr("kv_num_heads")
    if q_heads <= 0 or kv_heads <= 0 or q_heads % kv_heads:
        raise ctx.error(f"q_num_heads ({q_heads}) must be a positive multiple of kv_num_heads ({kv_heads})")
    if rule in ("gated", "gated_delta") and not ctx.has(4):
        raise ctx.error(f"update_rule {rule!r} needs the decay input")
    if rule in ("delta", "gated_delta") and not ctx.has(5):
        raise ctx.error(f"update_rule {rule!r} needs the beta input")
    call = ctx.call(_linear_attention, ctx.x(0), ctx.x(1), ctx.x(2), ctx.opt(3), ctx.opt(4), ctx.opt(5),
                    ctx.lit(q_heads), ctx.lit(kv_heads), ctx.lit(ctx.fattr("scale", 0.0)), ctx.lit(rule))
    return call if ctx.n_out > 1 else [f"{call}[0]"]


@runtime_helper
def _causal_conv_with_state(x, weight, bias, past_state, activation):
    """Depthwise causal 1-D convolution over [past_state, x]; returns (output, the last k-1 steps)."""
    batch, channels, _ = x.shape
    k = weight.shape[2]
    past = jnp.zeros((batch, channels, k - 1), x.dtype) if past_state is None else past_state
    padded = jnp.concatenate([past, x], axis=2)
    y = lax.conv_general_dilated(padded, weight, window_strides=(1,), padding="VALID",
                                 feature_group_count=channels)
    if bias is not None:
        y = y + jnp.reshape(bias, (1, -1, 1))
    if activation in ("silu", "swish"):
        y32 = y.astype(jnp.float32)
        y = (y32 * jax.nn.sigmoid(y32)).astype(x.dtype)
    return y.astype(x.dtype), padded[:, :, padded.shape[2] - (k - 1):]


@emitter("CausalConvWithState", since=27)
def causal_conv_with_state(ctx: NodeContext) -> str:
    activation = ctx.attr("activation", "none")
    if activation not in ("none", "silu", "swish"):
        raise ctx.error(f"unknown activation {activation!r}; expected 'none', 'silu' or 'swish'")
    call = ctx.call(_causal_conv_with_state, ctx.x(0), ctx.x(1), ctx.opt(2), ctx.opt(3), ctx.lit(activation))
    return call if ctx.n_out > 1 else [f"{call}[0]"]
