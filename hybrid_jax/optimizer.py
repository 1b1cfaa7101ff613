"""The optimizer of a training config (`config.optim`): learning-rate schedule, AdamW, weight decay.

`SCHEDULES` lists the allowed `optim.schedule` values; `config_lib.validate` checks against it.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import optax

SCHEDULES = ("linear", "cosine", "constant")  # after the linear warmup


def weight_decay_mask(params) -> Any:
  """True for matrices (kernels, embeddings); False for biases, LayerNorm and the temperature."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def learning_rate_schedule(optim: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """Learning rate at each step: linear warmup from 0 over `optim.warmup_steps`, then
  `optim.schedule` (one of SCHEDULES): linear or cosine decay to
  `learning_rate * end_learning_rate_factor` at `num_steps`, or constant.

  Raises:
    ValueError: `optim.schedule` is not one of SCHEDULES.
  """
  peak, warmup = optim.learning_rate, optim.warmup_steps
  end = peak * optim.end_learning_rate_factor
  decay_steps = max(1, num_steps - warmup)
  if optim.schedule == "cosine":
    after = optax.cosine_decay_schedule(peak, decay_steps, alpha=optim.end_learning_rate_factor)
  elif optim.schedule == "linear":
    after = optax.linear_schedule(peak, end, decay_steps)
  elif optim.schedule == "constant":
    after = optax.constant_schedule(peak)
  else:  # config_lib.validate rejects it first, naming the config key
    raise ValueError(f"optim.schedule={optim.schedule!r}: expected one of {SCHEDULES}")
  if warmup == 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def make_optimizer(optim: ml_collections.ConfigDict, num_steps: int):
  """Global-norm clipping, then AdamW with `learning_rate_schedule` (no weight decay on biases /
  LayerNorm / temperature)."""
  return optax.chain(
      optax.clip_by_global_norm(optim.grad_clip_norm),
      optax.adamw(
          learning_rate_schedule(optim, num_steps), b1=optim.b1, b2=optim.b2, eps=optim.eps,
          weight_decay=optim.weight_decay, mask=weight_decay_mask))
