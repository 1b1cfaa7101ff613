"""`python -m hybrid_jax.data --describe SPEC [SPEC...] [--languages en,de]`: per-language counts.

SPEC is any `hybrid_jax.data.load` spec (xquad_r:all, squad:DIR, jsonl:FILE, hf:FILE, ...). Bad
data, a missing path or an unknown spec prints one line `error: ...` and exits 2 (`--verbose`:
with the traceback).
"""

from __future__ import annotations

import argparse
import sys

from hybrid_jax import cli
from hybrid_jax.data.parallel_qa import ON_ERROR_CHOICES
from hybrid_jax.data.registry import SPEC_FORMS, load
from hybrid_jax.errors import UserError


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m hybrid_jax.data", description=__doc__)
  parser.add_argument("--describe", nargs="+", required=True, metavar="SPEC",
                      help="data specs: " + ", ".join(SPEC_FORMS))
  parser.add_argument("--languages", default=None,
                      help="comma-separated language codes to keep, e.g. en,de")
  parser.add_argument("--on_error", choices=ON_ERROR_CHOICES, default="raise",
                      help="raise at the first bad record, or skip and count bad records")
  parser.add_argument("--strict", action="store_true",
                      help="an unknown field of a record is an error (default: a warning)")
  parser.add_argument(cli.VERBOSE_FLAG, action="store_true",
                      help="show the traceback of data errors too")
  args = parser.parse_args(argv)
  for i, spec in enumerate(args.describe):
    try:
      data = load(spec, languages=args.languages, on_error=args.on_error, strict=args.strict)
    except UserError as e:
      if args.verbose:
        raise
      cli.fail(str(e))
    print(("\n" if i else "") + data.describe())
  return 0


if __name__ == "__main__":
  sys.exit(main())
