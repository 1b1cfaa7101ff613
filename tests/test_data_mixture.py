"""Training on a mixture of sources, as the paper mixes its data sets: an English-only source, a
9-language one and a 7-language one (two of its languages in no other source), each batch from one
source, cross-lingual batches only from sources with two languages, weights by size / given /
size**alpha, and a short end-to-end run of `hybrid_jax.main` on the three JSONL files."""

import collections
import json
import os

import ml_collections
import numpy as np
import pytest

from hybrid_jax import config_lib
from hybrid_jax import input_pipeline
from hybrid_jax.errors import UserError
from hybrid_jax.models import tokenizer as tokenizer_lib

from tiny_run import TINY_MODEL, run

LANGS_9 = ("en", "de", "es", "ar", "ru", "zh", "hi", "vi", "el")
LANGS_7 = ("en", "de", "es", "ru", "zh", "th", "tr")
# name, languages, examples: sizes 60 / 40 / 30 so by-size weights differ from uniform ones.
SOURCES = (("english", ("en",), 60), ("nine", LANGS_9, 40), ("seven", LANGS_7, 30))
ALL_LANGS = "en+de+es+ar+ru+zh+hi+vi+el+th+tr"
BATCH = 16


def _write_sources(directory) -> str:
  """Writes the three JSONL files; returns their '+'-joined specs. Every text names its source,
  example and language, so a batch's texts show where they came from."""
  specs = []
  for name, langs, size in SOURCES:
    path = os.path.join(directory, f"{name}.jsonl")
    with open(path, "w") as f:
      for i in range(size):
        for lang in langs:
          f.write(
              json.dumps({
                  "id": f"{name}-{i}", "lang": lang,
                  "query": f"{name} q{i} {lang} what is item {i}", "passage":
                      f"{name} p{i} {lang} item {i} is here", "context":
                          f"{name} ctx{i} {lang} a paragraph about item {i}"
              }) + "\n")
    specs.append(f"jsonl:{path}")
  return "+".join(specs)


def _config(train, **data_fields):
  config = config_lib.default_config(f"model=tiny,langs={ALL_LANGS}")
  config.data.train = train
  for key, value in data_fields.items():
    config.data[key] = value
  config.train.global_batch_size = BATCH
  return config_lib.validate(config)


@pytest.fixture(scope="module")
def sources_spec(tmp_path_factory):
  return _write_sources(tmp_path_factory.mktemp("mixture"))


@pytest.fixture(scope="module")
def builder(sources_spec):
  config = _config(sources_spec)
  sources = input_pipeline.load_sources(config)
  texts = [t for d in sources for t in d.texts()]
  tokenizer = tokenizer_lib.train_default_tokenizer(texts, vocab_size=1000)
  return input_pipeline.make_batch_builder(config, sources, tokenizer)


def test_sources_keep_their_languages(builder):
  assert [d.languages for d in builder.sources] == [("en",), LANGS_9, LANGS_7]
  assert [d.num_examples for d in builder.sources] == [60, 40, 30]


def test_batch_composition(builder):
  """Each batch's texts come from its source, in languages the source has; the English-only
  source gives only mono batches; the realised mono fraction and source shares follow the
  weights (by size: 60/130, 40/130, 30/130; mono 1, 0.5, 0.5)."""
  sampler = builder.sampler
  np.testing.assert_allclose(sampler.source_probs, np.array([60, 40, 30]) / 130)
  names = [name for name, _, _ in SOURCES]
  steps = 400
  kinds = collections.Counter()
  seen_langs = collections.defaultdict(set)
  for step in range(steps):
    b = sampler.batch(step)
    source_name, source_langs = names[b.source], SOURCES[b.source][1]
    qlangs = {sampler.languages[j] for j in b.query_lang}
    plangs = {sampler.languages[j] for j in b.passage_lang}
    assert qlangs | plangs <= set(source_langs), (step, source_name, qlangs, plangs)
    kinds[source_name, b.is_mono] += 1
    seen_langs[source_name] |= qlangs | plangs
    if step < 12:  # the texts themselves (tokenising every step would be slow)
      batch = builder(step)
      data = builder.sources[b.source]
      cols = [data.languages.index(sampler.languages[j]) for j in b.query_lang]
      queries = [data.queries[i, c] for i, c in zip(b.example_ids, cols)]
      assert all(q.startswith(source_name + " ") for q in queries)
      expected = tokenizer_lib.tokenize_queries(builder.tokenizer, queries, 24)
      np.testing.assert_array_equal(batch["query_input_ids"], expected["input_ids"])
  assert kinds["english", False] == 0 and kinds["english", True] > 0
  for name in ("nine", "seven"):
    assert kinds[name, True] > 0 and kinds[name, False] > 0
  assert seen_langs["english"] == {"en"}
  assert seen_langs["seven"] >= {"th", "tr"} and not seen_langs["nine"] & {"th", "tr"}
  per_source = [sum(kinds[name, m] for m in (True, False)) for name in names]
  # The sampler's splitters keep every share within one block (256 steps) of t * p.
  np.testing.assert_allclose(per_source, steps * np.array(sampler.source_probs), atol=2)
  mono = sum(kinds[name, True] for name in names)
  expected_mono = steps * float(np.dot(sampler.source_probs, [1.0, 0.5, 0.5]))
  # Within a block, a stream's mono count strays by about sqrt(256)/2 = 8 (sampler docstring);
  # two streams mix here. mono_prob alone would give 200.
  assert abs(mono - expected_mono) <= 16, (mono, expected_mono)


def test_mixture_is_logged(builder, caplog, sources_spec):
  config = _config(sources_spec)
  with caplog.at_level("INFO"):
    input_pipeline.make_batch_builder(config, builder.sources, builder.tokenizer)
  text = caplog.text
  assert "english.jsonl: p=0.4615" in text and "mono only" in text
  assert f"realised mono fraction {(60 + 35) / 130:.4f} (config.sampler.mono_prob=0.5)" in text


@pytest.mark.parametrize("fields, probs", [
    ({"train_weights": "1+2+1"}, [0.25, 0.5, 0.25]),
    ({"source_temperature_alpha": 0.0}, [1 / 3, 1 / 3, 1 / 3]),
    ({"source_temperature_alpha": 0.5}, np.sqrt([60, 40, 30]) / np.sqrt([60, 40, 30]).sum()),
])
def test_source_weights(builder, sources_spec, fields, probs):
  config = _config(sources_spec, **fields)
  b = input_pipeline.make_batch_builder(config, builder.sources, builder.tokenizer)
  np.testing.assert_allclose(b.sampler.source_probs, probs)


@pytest.mark.parametrize("fields, match", [
    ({"train_weights": "1+2"}, "has 2 weight"),
    ({"train_weights": "1+0+1"}, "'0' is not a positive number"),
    ({"train_weights": "1+x+1"}, "'x' is not a positive number"),
    ({"source_temperature_alpha": 1.5}, r"must be in \[0, 1\]"),
    ({"source_temperature_alpha": 0.5, "train_weights": "1+1+1"}, "set one of them"),
])
def test_bad_weights_are_user_errors(sources_spec, fields, match):
  with pytest.raises(UserError, match=match):
    _config(sources_spec, **fields)


def test_bad_sources_are_user_errors(sources_spec, tmp_path):
  first = sources_spec.split("+")[0]
  with pytest.raises(UserError, match="more than once"):
    _config(f"{first}+{first}")
  with pytest.raises(UserError, match="is empty"):
    _config("")
  config = _config(sources_spec)
  with config.unlocked():
    config.data.languages = "en+de+fr"
  with pytest.raises(UserError, match="fr in no source"):
    input_pipeline.load_sources(config)
  config.data.languages = "de+es"
  config.sampler.mono_prob = 0.5
  with pytest.raises(UserError, match="english.jsonl' has none of the languages"):
    input_pipeline.load_sources(config)


def test_list_in_a_config_file_and_plus_in_paths(tmp_path, sources_spec):
  """A config file may give a list; a '+' inside a path does not split it."""
  specs = sources_spec.split("+")
  config = ml_collections.ConfigDict({"data": {"train": specs, "train_weights": [1, 2.5, 1]}})
  assert config_lib.train_sources(config) == [
      config_lib.TrainSource(spec, w) for spec, w in zip(specs, [1.0, 2.5, 1.0])
  ]
  odd = tmp_path / "a+b.jsonl"
  config = ml_collections.ConfigDict({"data": {"train": f"jsonl:{odd}+{specs[1]}"}})
  assert [s.spec for s in config_lib.train_sources(config)] == [f"jsonl:{odd}", specs[1]]
  # A '+' before a colon that is no spec scheme was split: 'jsonl:.../q' and 'c:d.jsonl'.
  odd = tmp_path / "q+c:d.jsonl"
  config = ml_collections.ConfigDict({"data": {"train": f"jsonl:{odd}+{specs[1]}"}})
  assert [s.spec for s in config_lib.train_sources(config)] == [f"jsonl:{odd}", specs[1]]


def test_mixture_trains_end_to_end(sources_spec, tmp_path):
  """`python -m hybrid_jax.main` on the three files, from the command line: trains, logs the mix
  and the per-step mono fraction of the batches it trained on."""
  out = run(tmp_path, "--config=configs/default.py:model=tiny",
            f"--config.data.languages={ALL_LANGS}", f"--config.data.train={sources_spec}",
            "--config.data.eval=", "--config.train.num_steps=4", *TINY_MODEL)
  assert "training mixture of 3 source(s)" in out and "mono only" in out
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  records = [r for r in records if "loss" in r]  # (the cost record at step 4 is the last line)
  assert [r["step"] for r in records] == [1, 2, 3, 4]
  assert all(np.isfinite(r["loss"]) for r in records)
  saved = json.load(open(tmp_path / "config.json"))
  assert saved["data"]["train"] == sources_spec


def test_sampler_mono_prob_per_source():
  """The sampler's per-source mono_prob: a one-language source at 1, a two-language one at 0."""
  from hybrid_jax.sampler import HybridBatchSampler
  english = np.zeros((40, 2), bool)
  english[:, 0] = True
  both = np.ones((30, 2), bool)
  sampler = HybridBatchSampler([english, both], ("en", "de"), 8, [1.0, 0.0], seed=0)
  sources = collections.Counter()
  for step in range(200):
    b = sampler.batch(step)
    sources[b.source] += 1
    assert b.is_mono == (b.source == 0)
    assert (b.query_lang == b.passage_lang).all() == b.is_mono
  assert sources[0] > 0 and sources[1] > 0
  with pytest.raises(ValueError, match="one such per source"):
    HybridBatchSampler([english, both], ("en", "de"), 8, [1.0], seed=0)
  with pytest.raises(ValueError, match="no cross-lingual pool"):  # a single probability
    HybridBatchSampler([english, both], ("en", "de"), 8, 0.5, seed=0)
