"""Autoregressive sampling from a token model: ``ŷ(t) = softmax(o(t) / temperature)``.

The prompt is read in one ``apply`` (its final carry and last readout start the loop); then
``jax.lax.scan`` draws one token per step and feeds it back, carrying the recurrent state.
The whole function is jitted (one compilation per prompt length and sample length) and all
randomness comes from the explicit ``key``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jrnn.models import Model

__all__ = ["sample"]


def sample(
    model: Model,
    params: Any,
    key: jax.Array,
    prompt: jax.Array,
    length: int,
    temperature: float | jax.Array = 1.0,
) -> jax.Array:
    """Draws ``length`` tokens after ``prompt``.

    Args:
      model: a token model with readout ``"all"`` (e.g. a character language model).
      params: its parameters.
      key: PRNG key; the sample is a pure function of it.
      prompt: int ``[..., P]`` with ``P >= 1`` (leading axes: independent samples).
      length: number of tokens to draw (static).
      temperature: divides the logits; ``0`` picks the most likely token (greedy).

    Returns:
      int32 ``[..., length]``: the drawn tokens (the prompt not included).
    """
    if model.vocab_size is None or model.readout != "all":
        raise ValueError("sample: needs a token model (vocab_size) with readout='all'")
    prompt = jnp.asarray(prompt)
    if prompt.ndim < 1 or prompt.shape[-1] < 1:
        raise ValueError(
            f"sample: `prompt` must have shape [..., P] with P >= 1, got {prompt.shape}"
        )
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"sample: `length` must be a non-negative int, got {length!r}")
    return _sample(model, params, key, prompt.astype(jnp.int32), length, temperature)


@partial(jax.jit, static_argnums=(0, 4))
def _sample(model, params, key, prompt, length, temperature):
    logits, aux = model.apply(params, prompt)
    carry = aux.carry
    last = logits[..., -1, :]
    temperature = jnp.asarray(temperature, jnp.float32)

    def draw(k, logits_t):
        logits_t = logits_t.astype(jnp.float32)
        greedy = jnp.argmax(logits_t, axis=-1).astype(jnp.int32)
        scaled = logits_t / jnp.maximum(temperature, jnp.float32(1e-6))
        drawn = jax.random.categorical(k, scaled, axis=-1).astype(jnp.int32)
        return jnp.where(temperature > 0, drawn, greedy)

    def body(state, k):
        carry, logits_t = state
        token = draw(k, logits_t)
        out, aux = model.apply(params, token[..., None], carry=carry)
        carry = aux.carry
        return (carry, out[..., 0, :]), token

    keys = jax.random.split(key, length)
    _, tokens = jax.lax.scan(body, (carry, last), keys)
    return jnp.moveaxis(tokens, 0, -1)
