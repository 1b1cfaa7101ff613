"""Config parsing and validation: typos and bad values fail before anything compiles."""

import pytest

from hybrid_jax import config_lib


def test_parse_arg_casts_to_default_types():
  arg = config_lib.parse_arg("langs=en+de,mono_prob=0.25,steps=7,flag=false",
                             langs="xquad_r", mono_prob=0.5, steps=1, flag=True)
  assert (arg.langs, arg.mono_prob, arg.steps, arg.flag) == ("en+de", 0.25, 7, False)


@pytest.mark.parametrize("arg, match", [
    ("lang=en", "not one of"),           # typo in the key
    ("mono_prob=half", "expected a float"),
    ("mono_prob", "key=value"),
])
def test_parse_arg_errors(arg, match):
  with pytest.raises(ValueError, match=match):
    config_lib.parse_arg(arg, langs="xquad_r", mono_prob=0.5)
