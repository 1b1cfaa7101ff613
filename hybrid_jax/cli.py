"""The error path of the package's command lines: a user error is one line, `error: ...`, on
stderr and exit status 2; any other exception is a bug and keeps its traceback.

User errors are `hybrid_jax.errors.UserError` raised anywhere below an entry point, and whatever
goes wrong while absl parses the flags (an unknown or mistyped `--config.a.b` override, a config
file that is missing or rejects its argument). `--verbose` shows the traceback of user errors too.
"""

from __future__ import annotations

import functools
import re
import sys
from typing import NoReturn

from hybrid_jax.errors import UserError

EXIT_USER_ERROR = 2
VERBOSE_FLAG = "--verbose"
# What ml_collections / absl raise for a bad flag value or config override while parsing.
_PARSE_ERRORS = (UserError, KeyError, AttributeError, ValueError, TypeError, OSError)


def fail(message: str) -> NoReturn:
  """Prints `error: <message>` as one line on stderr and exits with status 2."""
  print("error: " + " ".join(str(message).split()), file=sys.stderr)
  sys.exit(EXIT_USER_ERROR)


def _causes(error: BaseException):
  """`error`, then what it wraps: args[0] exceptions (ml_collections wraps a KeyError in an
  AttributeError), __cause__ and __context__ (absl re-raises a parse error as its own type)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    if error.args and isinstance(error.args[0], BaseException):
      error = error.args[0]
    else:
      error = error.__cause__ or error.__context__


def parse_error_message(error: BaseException, argv) -> str:
  """One line for an exception raised while parsing `argv`.

  * A `UserError` in the chain (e.g. a config file's `get_config` rejecting its argument) gives
    its own message, after the flag that was being parsed.
  * ml_collections reports a misspelt override `--config.train.num_step=12` as AttributeError(
    KeyError("'num_step'\nDid you mean \"num_steps\" instead of \"num_step\"?")): that becomes
    `--config.train.num_step=12: no such config field 'num_step' (Did you mean ...?)`.
  * A config file that cannot be read: the OS's reason.
  * Otherwise the last line of the message (ml_collections puts a whole traceback in it).
  """
  flag = re.match(r"flag (--\S+): ", str(error))
  prefix = f"{flag.group(1)}: " if flag else ""
  causes = list(_causes(error))
  user_errors = [cause for cause in causes if isinstance(cause, UserError)]
  if user_errors:  # the innermost: ml_collections re-raises it with a traceback as message
    return prefix + str(user_errors[-1])
  for cause in causes:
    key = re.fullmatch(r"'([^']+)'(?:\n(.*))?", str(cause.args[0]) if cause.args else "", re.DOTALL)
    if isinstance(cause, KeyError) and key:
      name, hint = key.group(1), (key.group(2) or "").strip()
      override = next((a for a in argv[1:] if re.search(rf"[.]{re.escape(name)}(=|$)", a)), None)
      return ((f"{override}: " if override else prefix) + f"no such config field {name!r}" +
              (f" ({hint})" if hint else ""))
  missing_file = re.search(r"\[Errno \d+\] ([^\n]+)", str(error))
  if missing_file and "config file" in str(error):  # config_flags keeps only the message
    return f"cannot load the config file: {missing_file.group(1)}"
  text = str(error)[flag.end():] if flag else str(error)
  lines = [line for line in text.splitlines() if line.strip()]
  if len(lines) > 1 and "Traceback (most recent call last)" in text:
    return prefix + lines[-1].strip()
  return prefix + text


def parse_flags(argv):
  """absl `flags_parser` for `app.run`: parses the flags, a parse error is a user error."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  try:
    return flags.FLAGS(argv)
  except (flags.Error, *_PARSE_ERRORS) as e:
    if VERBOSE_FLAG in argv:
      raise
    fail(parse_error_message(e, argv))


def catching_user_errors(main):
  """Wraps an absl `main(argv)`: a `UserError` it raises becomes one line and exit status 2
  (a traceback with --verbose)."""

  @functools.wraps(main)
  def wrapped(argv):
    from absl import flags  # pylint: disable=g-import-not-at-top

    try:
      return main(argv)
    except UserError as e:
      if flags.FLAGS["verbose"].value:
        raise
      fail(str(e))

  return wrapped


def define_verbose_flag() -> None:
  """Defines --verbose (absl) for an entry point run with `run_absl`."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  flags.DEFINE_bool("verbose", False, "Show the traceback of user errors too.")


def run_absl(main) -> None:
  """`app.run(main)` with the error path of this module."""
  from absl import app  # pylint: disable=g-import-not-at-top

  app.run(catching_user_errors(main), flags_parser=parse_flags)
