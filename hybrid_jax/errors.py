"""The one exception type for mistakes in what the user gave: a config, data, a path, a busy or
mismatched run directory.

The package's command lines (`hybrid_jax.main`, `hybrid_jax.evaluate`, `python -m hybrid_jax.data`)
print a `UserError` as one line and exit with status 2; any other exception is a bug and keeps its
traceback. Lower layers raise it (or a subclass) and never print or exit themselves.
"""


class UserError(Exception):
  """A mistake in the user's input; its message names the file / record / field / config key at
  fault and, where one exists, the fix."""


class ConfigError(UserError, ValueError):
  """A config value, argument or preset that cannot work (also where only the devices reveal it:
  a batch that does not split over them); the message names the config key."""


class ModelError(UserError, ValueError):
  """A model directory this package cannot load: another architecture (`model_type`), a config
  without the fields of one; the message names the file and the field."""
