"""Describe or prepare data specs.

  python -m hybrid_jax.data --describe SPEC [SPEC...] [--languages en,de]   per-language counts
  python -m hybrid_jax.data --prepare SPEC --out DIR    one-time conversion to memory-mapped Arrow
                                                        (then train on the spec arrow:DIR)
  python -m hybrid_jax.data --prepare SPEC --out DIR --tokenizer=MODEL_OR_DIR \
      [--query_max_len=24 --passage_max_len=64 --query_prefix='query: ' --passage_prefix=...]
                                                        also store the token ids (the run's
                                                        tokenizer, lengths and prefixes; resumable:
                                                        run the same command again)

SPEC is any `hybrid_jax.data.load` spec (xquad_r:all, squad:DIR, jsonl:FILE, parquet:FILE, ...).
Bad data, a missing path or an unknown spec prints one line `error: ...` and exits 2 (`--verbose`:
with the traceback). Flags are absl flags, as in `hybrid_jax.main` and `hybrid_jax.evaluate`.
"""

from __future__ import annotations

import shlex
import sys

from absl import flags
from absl import logging

from hybrid_jax import cli
from hybrid_jax.data.parallel_qa import ON_ERROR_CHOICES
from hybrid_jax.data.registry import SPEC_FORMS, load, prepare
from hybrid_jax.errors import UserError

PROGRAM = "python -m hybrid_jax.data"


def _flags() -> flags.FlagValues:
  """The command's flags, in their own `FlagValues` (so `main` can run more than once)."""
  values = flags.FlagValues()
  flags.DEFINE_bool("describe", False,
                    "Describe the data specs given as arguments: " + ", ".join(SPEC_FORMS),
                    flag_values=values)
  flags.DEFINE_string(
      "prepare", None, "Convert SPEC into --out DIR, loadable as arrow:DIR; "
      "jsonl: and parquet: files stream (bounded memory, progress bar).", flag_values=values)
  flags.DEFINE_string("out", None, "With --prepare: a new or empty directory.", flag_values=values)
  flags.DEFINE_string(
      "tokenizer", None, "With --prepare: also store token ids, tokenised with this model or "
      "tokenizer directory (the run's model.path, or <workdir>/tokenizer).", flag_values=values)
  flags.DEFINE_integer(
      "query_max_len", None, "With --tokenizer: the run's data.query_max_len "
      "(default: configs/default.py's).", flag_values=values)
  flags.DEFINE_integer(
      "passage_max_len", None, "With --tokenizer: the run's "
      "data.passage_max_len (default: configs/default.py's).", flag_values=values)
  flags.DEFINE_string("query_prefix", "", "With --tokenizer: the run's model.query_prefix.",
                      flag_values=values)
  flags.DEFINE_string("passage_prefix", "", "With --tokenizer: the run's model.passage_prefix.",
                      flag_values=values)
  flags.DEFINE_integer(
      "workers", None, "With --tokenizer: tokenising processes (default: all "
      "cores; 0: this process).", flag_values=values)
  flags.DEFINE_string("languages", None, "With --describe: comma-separated language codes to "
                      "keep, e.g. en,de.", flag_values=values)
  flags.DEFINE_enum("on_error", "raise", ON_ERROR_CHOICES, "Raise at the first bad record, or "
                    "skip and count bad records.", flag_values=values)
  flags.DEFINE_bool("strict", False, "An unknown field of a record is an error (default: a "
                    "warning).", flag_values=values)
  flags.DEFINE_bool(
      cli.VERBOSE_FLAG.lstrip("-"), False, "Show the traceback of data errors too.",
      flag_values=values)
  return values


def _token_options(values: flags.FlagValues) -> dict:
  """`prepare`'s token id arguments from the flags (lengths default to the training defaults)."""
  if not values.tokenizer:
    return {}
  from hybrid_jax import config_lib  # pylint: disable=g-import-not-at-top  (imports jax)
  return {
      "tokenizer": values.tokenizer,
      "query_max_len": values.query_max_len or config_lib.DEFAULT_QUERY_MAX_LEN,
      "passage_max_len": values.passage_max_len or config_lib.DEFAULT_PASSAGE_MAX_LEN,
      "query_prefix": values.query_prefix, "passage_prefix": values.passage_prefix,
      "workers": values.workers
  }


def main(argv=None) -> int:
  """Runs the command on `argv` (the arguments after the program name; default sys.argv[1:]).

  Returns 0; a user error prints one line and exits with status 2 (`cli.fail`).
  """
  argv = sys.argv[1:] if argv is None else list(argv)
  values = _flags()
  if {"-h", "--help", "--helpshort"} & set(argv):
    print(__doc__ + "\n" + values.get_help())
    return 0
  try:
    specs = values([PROGRAM, *argv])[1:]
  except flags.Error as e:
    cli.fail(cli.parse_error_message(e, [PROGRAM, *argv]))
  # Warnings (skipped records) print as in the other commands; absl's own flags keep defaults.
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  logging.use_absl_handler()
  try:
    if values.describe == bool(values.prepare):
      raise UserError(f"give --describe SPEC [SPEC...] or --prepare SPEC --out DIR ({PROGRAM} "
                      "--help)")
    if values.prepare:
      if not values.out:
        raise UserError("--prepare needs --out DIR (a new or empty directory)")
      if specs:
        raise UserError(f"--prepare takes one SPEC; also given: {' '.join(specs)}")
      data = prepare(values.prepare, values.out, on_error=values.on_error, **_token_options(values))
      print(data.describe())
      print(f"prepared: train on --config.data.train={shlex.quote('arrow:' + values.out)}")
      return 0
    if not specs:
      raise UserError("--describe needs at least one SPEC, e.g. --describe xquad_r:eval")
    for i, spec in enumerate(specs):
      data = load(spec, languages=values.languages, on_error=values.on_error, strict=values.strict)
      print(("\n" if i else "") + data.describe())
  except UserError as e:
    if values.verbose:
      raise
    cli.fail(str(e))
  return 0


if __name__ == "__main__":
  sys.exit(main())
