"""The learning-rate schedule and its allowed names (hybrid_jax/optimizer.py), against the
formulas written out in float64 numpy."""

import math

import numpy as np
import pytest

from hybrid_jax import config_lib
from hybrid_jax import optimizer as optimizer_lib
from hybrid_jax.errors import ConfigError


def _optim(schedule, warmup_steps=2, end_factor=0.1):
  config = config_lib.default_config("model=tiny,langs=en+de,steps=10")
  config.optim.schedule = schedule
  config.optim.warmup_steps = warmup_steps
  config.optim.end_learning_rate_factor = end_factor
  return config


def _reference(schedule, peak, warmup, num_steps, end_factor, step):
  """Linear warmup from 0, then the named decay over the remaining steps (float64)."""
  if step < warmup:
    return peak * step / warmup
  t = min(step - warmup, num_steps - warmup) / max(1, num_steps - warmup)
  if schedule == "linear":
    return peak + (peak * end_factor - peak) * t
  if schedule == "cosine":
    return peak * ((1 - end_factor) * 0.5 * (1 + math.cos(math.pi * t)) + end_factor)
  return peak


@pytest.mark.parametrize("schedule", optimizer_lib.SCHEDULES)
@pytest.mark.parametrize("warmup", [0, 2])
def test_learning_rate_schedule_matches_the_formula(schedule, warmup):
  config = _optim(schedule, warmup_steps=warmup)
  lr = optimizer_lib.learning_rate_schedule(config.optim, 10)
  peak = config.optim.learning_rate
  got = np.array([float(lr(s)) for s in range(12)])
  want = np.array([_reference(schedule, peak, warmup, 10, 0.1, s) for s in range(12)])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9 * peak)


def test_unknown_schedule_is_a_config_error_not_a_constant_rate():
  config = _optim("step")
  with pytest.raises(
      ConfigError, match=r"config.optim.schedule='step': must be one of "
      r"\('linear', 'cosine', 'constant'\)"):
    config_lib.validate(config)
  with pytest.raises(ValueError, match="optim.schedule='step'"):  # also when called directly
    optimizer_lib.learning_rate_schedule(config.optim, 10)
