"""Describe or prepare data specs.

  python -m hybrid_jax.data --describe SPEC [SPEC...] [--languages en,de]   per-language counts
  python -m hybrid_jax.data --prepare SPEC --out DIR    one-time conversion to memory-mapped Arrow
                                                        (then train on the spec arrow:DIR)

SPEC is any `hybrid_jax.data.load` spec (xquad_r:all, squad:DIR, jsonl:FILE, parquet:FILE, ...).
Bad data, a missing path or an unknown spec prints one line `error: ...` and exits 2 (`--verbose`:
with the traceback).
"""

from __future__ import annotations

import argparse
import sys

from hybrid_jax import cli
from hybrid_jax.data.parallel_qa import ON_ERROR_CHOICES
from hybrid_jax.data.registry import SPEC_FORMS, load, prepare
from hybrid_jax.errors import UserError


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m hybrid_jax.data", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  action = parser.add_mutually_exclusive_group(required=True)
  action.add_argument("--describe", nargs="+", metavar="SPEC",
                      help="data specs: " + ", ".join(SPEC_FORMS))
  action.add_argument("--prepare", metavar="SPEC",
                      help="convert SPEC into --out DIR, loadable as arrow:DIR; jsonl: and "
                           "parquet: files stream (bounded memory, progress bar)")
  parser.add_argument("--out", metavar="DIR", help="with --prepare: a new or empty directory")
  parser.add_argument("--languages", default=None,
                      help="with --describe: comma-separated language codes to keep, e.g. en,de")
  parser.add_argument("--on_error", choices=ON_ERROR_CHOICES, default="raise",
                      help="raise at the first bad record, or skip and count bad records")
  parser.add_argument("--strict", action="store_true",
                      help="an unknown field of a record is an error (default: a warning)")
  parser.add_argument(cli.VERBOSE_FLAG, action="store_true",
                      help="show the traceback of data errors too")
  args = parser.parse_args(argv)
  if args.prepare and not args.out:
    parser.error("--prepare needs --out DIR")
  try:
    if args.prepare:
      data = prepare(args.prepare, args.out, on_error=args.on_error)
      print(data.describe())
      print(f"prepared: train on --config.data.train=arrow:{args.out}")
      return 0
    for i, spec in enumerate(args.describe):
      data = load(spec, languages=args.languages, on_error=args.on_error, strict=args.strict)
      print(("\n" if i else "") + data.describe())
  except UserError as e:
    if args.verbose:
      raise
    cli.fail(str(e))
  return 0


if __name__ == "__main__":
  sys.exit(main())
