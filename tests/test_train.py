"""The train step: same update on 1, 2, 4 and 8 devices as the unsharded computation, the
non-finite guard, the weight-decay mask and the learning-rate schedule."""

import json
import logging
import os
import re
import shutil
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors import SafetensorError

from hybrid_jax import config_lib
from hybrid_jax import diagnostics
from hybrid_jax import evaluators
from hybrid_jax import losses
from hybrid_jax import models
from hybrid_jax import optimizer as optimizer_lib
from hybrid_jax import sharding
from hybrid_jax import train
from hybrid_jax.checkpoint import DiskFullError
from hybrid_jax.errors import UserError
from hybrid_jax.models import hf_io
from hybrid_jax.models import lora as lora_lib

BATCH, QUERY_LEN, PASSAGE_LEN, VOCAB = 16, 8, 16, 97

# A LoRA case of the sharded-step tests: per-language adapters (en, de), adapter dropout.
LORA = dict(rank=4, alpha=8.0, per_language=True, dropout=0.1)


def _config(lora=None, **loss):
  """The tiny test config; `lora`: `model.lora` fields (set after validation, which asks a LoRA
  run for a pretrained `model.path`; these tests adapt a random model)."""
  config = config_lib.default_config("model=tiny,langs=en+de,steps=10")
  config.model.update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=40)
  config.data.update(query_max_len=QUERY_LEN, passage_max_len=PASSAGE_LEN)  # 38 positions
  config.optim.warmup_steps = 2
  config.loss.update(loss)
  config = config_lib.validate(config)
  config.model.lora.update(lora or {})
  return config


def _batch(seed, num_hard_negatives=0, languages=False):
  """A random batch; `languages`: with query_language / passage_language ([B] in {0, 1})."""
  rng = np.random.default_rng(seed)

  def tokens(shape, length):
    lengths = rng.integers(3, length + 1, size=shape)
    ids = rng.integers(3, VOCAB, size=shape + (length,)).astype(np.int32)
    mask = (np.arange(length) < lengths[..., None]).astype(np.int32)
    return {
        "input_ids": np.where(mask, ids, 1).astype(np.int32), "attention_mask": mask,
        "token_type_ids": np.zeros_like(ids)
    }

  batch = {f"query_{k}": v for k, v in tokens((BATCH,), QUERY_LEN).items()}
  batch.update({f"passage_{k}": v for k, v in tokens((BATCH,), PASSAGE_LEN).items()})
  keys = np.arange(BATCH, dtype=np.int32)
  keys[5] = keys[11]  # a shared positive: must be masked, not a negative
  batch["passage_keys"] = keys
  if num_hard_negatives:
    batch.update({
        f"hard_negative_{k}": v
        for k, v in tokens((BATCH, num_hard_negatives), PASSAGE_LEN).items()
    })
    batch["hard_negative_keys"] = (100 + np.arange(BATCH * num_hard_negatives)).reshape(
        BATCH, num_hard_negatives).astype(np.int32)
  if languages:
    batch["query_language"] = rng.integers(0, 2, BATCH).astype(np.int32)
    batch["passage_language"] = rng.integers(0, 2, BATCH).astype(np.int32)
  return batch


def _setup(config):
  """(graphdef, optimizer, state0); with LoRA every adapter's B is drawn at random (a zero B
  gives A no gradient), so the step updates every adapter."""
  model = models.create_model(config.model, seed=0)
  train.add_lora(config, model)
  for index, layer in enumerate(lora_lib.adapted_layers(model).values()):
    layer.lora_b[...] = 0.1 * jax.random.normal(jax.random.key(index), layer.lora_b.shape)
  optimizer = optimizer_lib.make_optimizer(config.optim, config.train.num_steps)
  graphdef, params = train.init_params(model, config.loss)
  return graphdef, optimizer, train.create_train_state(params, optimizer, seed=3,
                                                       frozen_pattern=train.frozen_pattern(config))


def assert_trained(new_params, old_params, config):
  """Every trainable leaf of the encoder changed; the frozen ones (LoRA's base) are unchanged."""
  trainable, frozen = train.split_frozen(new_params, train.frozen_pattern(config))
  old_trainable, old_frozen = train.split_frozen(old_params, train.frozen_pattern(config))
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), trainable, old_trainable)
  assert all(jax.tree.leaves(changed["model"]))
  jax.tree.map(np.testing.assert_array_equal, frozen, old_frozen)


_COMPILED = {}  # (config, devices, fsdp) -> jitted step: each compile costs seconds, share them


def _step(config, graphdef, optimizer, state, batch, num_devices, fsdp=1):
  mesh = sharding.make_mesh(num_devices, fsdp=fsdp)
  state_sharding = sharding.state_shardings(mesh, state)
  key = (config.to_json(), num_devices, fsdp)
  if key not in _COMPILED:
    _COMPILED[key] = train.make_train_step(graphdef, config, optimizer, mesh, state_sharding)
  state = jax.device_put(jax.tree.map(jnp.copy, state), state_sharding)  # donated
  return _COMPILED[key](state, jax.device_put(batch, sharding.batch_sharding(mesh)))


@pytest.mark.parametrize(
    "loss, lora, fsdp",
    [
        (dict(), None, False),
        # LoRA here, with FSDP (full fine-tuning with these losses: test_fsdp, test_grad_cache on
        # 8 devices): n devices make an fsdp=n mesh and every kernel is split over it, with its
        # LoRA factors and their AdamW moments (sharding.lora_specs).
        (dict(symmetric=True, learnable_temperature=True, num_hard_negatives=1), LORA, True),
    ])
def test_step_is_the_same_on_1_2_4_8_devices(loss, lora, fsdp, monkeypatch):
  if fsdp:  # the tiny kernels ([32, 32], [32, 64], [64, 32]) are below the default threshold
    monkeypatch.setattr(sharding, "FSDP_MIN_PARAM_SIZE", 2**10)
  config = _config(lora, **loss)
  config.optim.warmup_steps = 0  # the warmup's first learning rate is 0: no update to compare
  # Adam's first step is lr * g / (|g| + eps): with eps = 1e-6, a gradient that cancels to ~1e-7
  # turns float32 summation-order noise into an lr-sized difference; 1e-3 keeps it well-conditioned.
  config.optim.eps = 1e-3
  graphdef, optimizer, state0 = _setup(config)
  batch = _batch(0, config.loss.num_hard_negatives, languages=bool(lora))

  # Independent reference: the global-view loss of embeddings computed eagerly, no mesh, no jit;
  # per-language adapters by the query's / passage's language (the hard negatives' passage's).
  model = nnx.merge(graphdef, state0.params["model"])
  rng = jax.random.fold_in(jax.random.wrap_key_data(state0.rng), 0)
  rq, rp, rn = jax.random.split(rng, 3)
  flat = lambda x: x.reshape(-1, x.shape[-1])
  k = config.loss.num_hard_negatives
  language = {
      "query": batch.get("query_language"), "passage": batch.get("passage_language"),
      "hard_negative": None if not lora else np.repeat(batch["passage_language"], k)
  }
  enc = lambda f, p, r: f(
      flat(batch[f"{p}_input_ids"]), flat(batch[f"{p}_attention_mask"]),
      flat(batch[f"{p}_token_type_ids"]), dropout_rng=r, adapter_language=language[p])
  hard = None
  if k:
    hard = enc(model.encode_passages, "hard_negative", rn).reshape(BATCH, k, -1)
  reference_loss, _ = losses.contrastive_loss(
      enc(model.encode_queries, "query", rq), enc(model.encode_passages, "passage", rp),
      jnp.asarray(batch["passage_keys"]), temperature=config.loss.temperature,
      symmetric=config.loss.symmetric, hard_negative_emb=hard,
      hard_negative_keys=batch.get("hard_negative_keys"))

  results = {
      n: _step(config, graphdef, optimizer, state0, batch, n, fsdp=n if fsdp else 1)
      for n in (1, 2, 4, 8)
  }
  base_state, base_metrics = results[1]
  np.testing.assert_allclose(base_metrics["loss"], reference_loss, rtol=2e-5)
  for n, (state, metrics) in results.items():
    assert int(state.step) == 1 and int(metrics["skipped"]) == 0
    np.testing.assert_allclose(metrics["loss"], base_metrics["loss"], rtol=2e-5, err_msg=str(n))
    np.testing.assert_allclose(metrics["grad_norm"], base_metrics["grad_norm"], rtol=2e-4)
    # Adam's first moments are 0.1 x the clipped gradients: the gradients themselves compare.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6, err_msg=str(n)),
        (state.params, state.opt_state), (base_state.params, base_state.opt_state))
    if fsdp:  # placed as their kernels: query [32, 32] on its input, intermediate [32, 64] output
      layer = state.params["model"]["encoder"]["layers"][0]
      shard = lambda x: x.addressable_shards[0].data.shape
      assert shard(layer["attention"]["query"]["lora_a"]) == (3, 32 // n, 4)
      assert shard(layer["intermediate"]["lora_b"]) == (3, 4, 64 // n)
  assert_trained(base_state.params, state0.params, config)


def test_non_finite_step_is_skipped_and_counted():
  config = _config()
  config.optim.update(warmup_steps=0, eps=1e-3)  # as the first test case: its step is reused
  graphdef, optimizer, state0 = _setup(config)
  bad = jax.tree.map(lambda x: x, state0.params)
  bad["model"]["encoder"]["embeddings"]["word_embeddings"]["embedding"] = (
      bad["model"]["encoder"]["embeddings"]["word_embeddings"]["embedding"].at[:].set(jnp.nan))
  state = state0.replace(params=bad, opt_state=optimizer.init(bad))
  new_state, metrics = _step(config, graphdef, optimizer, state, _batch(0), 2)
  assert int(metrics["skipped"]) == 1 and int(new_state.nonfinite_streak) == 1
  assert int(new_state.nonfinite_total) == 1 and int(new_state.step) == 1
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), new_state.params, bad)
  # A finite step resets the streak but not the total.
  good = new_state.replace(params=state0.params, opt_state=optimizer.init(state0.params))
  after, metrics = _step(config, graphdef, optimizer, good, _batch(0), 2)
  assert int(metrics["skipped"]) == 0 and int(after.nonfinite_streak) == 0
  assert int(after.nonfinite_total) == 1


def test_weight_decay_mask_spares_biases_and_layer_norm():
  config = _config(learnable_temperature=True)
  _, _, state = _setup(config)
  mask = optimizer_lib.weight_decay_mask(state.params)
  flat = jax.tree_util.tree_flatten_with_path(mask)[0]
  for path, decayed in flat:
    name = jax.tree_util.keystr(path)
    if name.endswith("['bias']") or "layer_norm" in name.lower() or "LayerNorm" in name or (
        "temperature" in name):
      assert not decayed, name
    if name.endswith("['kernel']") or name.endswith("['embedding']"):
      assert decayed, name


def test_frozen_parameters_get_no_update_and_no_optimizer_state():
  """optim.frozen='word_embeddings': the table stays as it was and has no Adam moments; every
  other parameter gets the update it gets without freezing (plain SGD: update = -lr * grad, and
  the loss, hence those gradients, do not depend on what is frozen)."""
  import optax  # pylint: disable=g-import-not-at-top
  from flax import traverse_util  # pylint: disable=g-import-not-at-top

  config = _config()
  frozen_config = _config()
  frozen_config.optim.frozen = "word_embeddings"
  graphdef, _, state0 = _setup(config)
  batch = _batch(2)
  sgd = optax.sgd(0.5)
  mesh = sharding.make_mesh(1)
  after = {}
  for name, cfg in (("plain", config), ("frozen", frozen_config)):
    state = train.create_train_state(state0.params, sgd, seed=3, frozen_pattern=cfg.optim.frozen)
    step = train.make_train_step(graphdef, cfg, sgd, mesh)
    after[name] = traverse_util.flatten_dict(
        jax.device_get(
            step(
                jax.device_put(jax.tree.map(jnp.copy, state), sharding.replicated(mesh)),
                jax.device_put(batch, sharding.batch_sharding(mesh)))[0].params))
  before = traverse_util.flatten_dict(jax.device_get(state0.params))
  embedding_keys = [k for k in before if "word_embeddings" in map(str, k)]
  assert embedding_keys
  for key in before:
    if key in embedding_keys:
      np.testing.assert_array_equal(after["frozen"][key], before[key])
      assert not np.array_equal(after["plain"][key], before[key])
    else:
      np.testing.assert_allclose(after["frozen"][key], after["plain"][key], rtol=1e-5, atol=1e-7)

  adamw = optimizer_lib.make_optimizer(frozen_config.optim, 10)
  opt_state = train.create_train_state(state0.params, adamw, 3, "word_embeddings").opt_state
  table_shape = before[embedding_keys[0]].shape
  assert not [x for x in jax.tree.leaves(opt_state) if np.shape(x) == table_shape]


@pytest.fixture(scope="module")
def in_process_run(tmp_path_factory):
  """A smoke run in the manner of flax's examples (train_test.py): `train_and_evaluate` on a
  config built in Python and never validated ('xquad_r' as the language list), three steps,
  step 2 traced (`log.profile_steps='2:3'`), JAX's compile log on. The final evaluation is made
  to fail. Returns (workdir, the config, the error raised, the log records)."""
  workdir = tmp_path_factory.mktemp("in_process")
  config = config_lib.default_config("model=tiny,steps=3")
  config.model.update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, vocab_size=1000)
  config.data.update(query_max_len=16, passage_max_len=32)
  config.train.global_batch_size = 16
  config.train.input_workers = 0
  config.optim.warmup_steps = 1
  config.log.every_steps = 1
  config.log.profile_steps = "2:3"

  def failing_evaluation(*args, **kwargs):
    raise RuntimeError("the final evaluation failed")

  records = []
  handler = logging.Handler(logging.DEBUG)
  handler.emit = records.append
  root, level = logging.getLogger(), logging.getLogger().level
  with pytest.MonkeyPatch.context() as monkeypatch, jax.log_compiles(True):
    monkeypatch.setattr(evaluators, "evaluate_in_training", failing_evaluation)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
      with pytest.raises(RuntimeError, match="the final evaluation failed") as error:
        train.train_and_evaluate(config, str(workdir))
    finally:
      root.removeHandler(handler)
      root.setLevel(level)
  return workdir, config, error.value, [r.getMessage() for r in records]


def test_train_and_evaluate_in_process_keeps_the_model_when_the_final_evaluation_fails(
    in_process_run):
  """The exported model and every metrics line are there although the final evaluation failed,
  and the error still reached the caller (checked by the fixture)."""
  workdir = in_process_run[0]
  model = models.load_pretrained(str(workdir / "model"))
  assert model.config.hidden_size == 32
  with open(workdir / "metrics.jsonl") as f:
    steps = [json.loads(line)["step"] for line in f]
  assert steps == [1, 2, 3]


def test_start_up_diagnostics_are_logged_once_and_the_step_compiles_once(in_process_run):
  """Parameter count and bytes as counted here from the exported model's parameter tree (the
  temperature is not learnable: the model is every parameter), AdamW's two moments, nothing
  replicated away at fsdp=1, the compiled step's memory analysis; and one compilation of the
  train step (the loop runs the executable the memory analysis came from)."""
  workdir, _, _, messages = in_process_run
  params = nnx.to_pure_dict(nnx.state(models.load_pretrained(str(workdir / "model"))))
  leaves = jax.tree.leaves(params)
  count, num_bytes = sum(x.size for x in leaves), sum(x.size * x.dtype.itemsize for x in leaves)
  reports = [m for m in messages if m.startswith("parameters: ")]
  assert len(reports) == 1, reports
  lines = reports[0].splitlines()
  assert lines[0].startswith(f"parameters: {count:,} trainable "
                             f"({diagnostics.format_bytes(num_bytes)}) + 0 frozen (0 B); "
                             "optimizer state "), lines[0]
  optimizer_bytes = float(re.search(r"optimizer state ([\d.]+) KiB", lines[0]).group(1)) * 1024
  assert 2 * num_bytes <= optimizer_bytes <= 2 * num_bytes + 1024  # mu, nu and counters
  assert "under train.fsdp=1: 100.0% of the bytes replicated on every device" in lines[1]
  assert re.match(r"compiled train step, per device: [\d.]+ [KMG]iB estimated \(arguments ",
                  lines[2]), lines[2]
  compiles = [m for m in messages if m.startswith("Compiling jit(train_step)")]
  assert len(compiles) == 1, compiles


def test_profile_steps_writes_a_trace(in_process_run):
  workdir = in_process_run[0]
  traces = list((workdir / diagnostics.PROFILE_SUBDIR).glob("plugins/profile/*/*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0, traces


def test_export_replaces_the_model_whole_and_a_full_disk_is_one_line(tmp_path, monkeypatch):
  """A full disk while exporting was a SafetensorError traceback and left an empty model/; a kill
  left model/.tmpXXXX (42 MB) behind. Now: one line, the previous model/ untouched, nothing
  staged left; the next export replaces model/ whole and removes what a killed one left."""
  config = _config()
  graphdef, params = train.init_params(models.create_model(config.model, seed=0), config.loss)
  run = types.SimpleNamespace(graphdef=graphdef, tokenizer=None)
  state = types.SimpleNamespace(params=params, step=jnp.int32(10))
  model_dir = tmp_path / "model"
  model_dir.mkdir()
  (model_dir / "old.txt").write_text("the previous export")
  (model_dir / ".tmpab12cd").write_text("what safetensors left when killed")
  (tmp_path / ".model.tmp").mkdir()  # what a killed export leaves
  (tmp_path / ".model.tmp" / "model.safetensors").write_text("half")
  save_file = hf_io.save_file

  def disk_full(tensors, path, metadata=None):
    with open(path, "wb") as f:
      f.write(b"\0" * 100)
    raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                          'message: "No space left on device" })')  # safetensors' own words

  monkeypatch.setattr(hf_io, "save_file", disk_full)
  with pytest.raises(DiskFullError) as error:
    train._export_model(config, str(tmp_path), run, state)
  message = str(error.value)
  assert message.startswith(f"no space left on device to export the model to {model_dir} (")
  assert "checkpoint 10" in message and "\n" not in message
  assert sorted(os.listdir(tmp_path)) == ["model"]
  assert sorted(os.listdir(model_dir)) == [".tmpab12cd", "old.txt"]

  monkeypatch.setattr(hf_io, "save_file", save_file)
  (tmp_path / ".model.tmp").mkdir()
  train._export_model(config, str(tmp_path), run, state)
  assert sorted(os.listdir(tmp_path)) == ["model"]
  assert "old.txt" not in os.listdir(model_dir) and ".tmpab12cd" not in os.listdir(model_dir)
  exported = nnx.to_pure_dict(nnx.state(models.load_pretrained(str(model_dir))))
  assert jax.tree.all(jax.tree.map(np.array_equal, exported, params["model"]))


def test_a_file_where_the_model_goes_is_refused_before_the_work(tmp_path):
  (tmp_path / "model").write_text("")
  with pytest.raises(UserError) as error:
    train.train_and_evaluate(_config(), str(tmp_path))
  assert str(error.value) == (f"{tmp_path}/model (where the trained model is exported) is a "
                              "file, not a directory: move the file away or pick another path")
  assert os.listdir(tmp_path) == ["model"]


def test_every_checkpoint_damaged_starts_over_saying_so_and_keeps_the_records(
    in_process_run, tmp_path, caplog):
  """All checkpoints damaged: they were set aside and training silently restarted at step 0,
  replacing the old metrics.jsonl records. Now one line says it starts over, and the records
  are kept in a named file."""
  workdir = tmp_path / "run"
  shutil.copytree(in_process_run[0], workdir)
  checkpoints = workdir / "checkpoints"
  steps = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
  for step in steps:  # a file of each checkpoint lost
    manifest = json.loads((checkpoints / str(step) / "content_sha256.json").read_text())
    os.remove(checkpoints / str(step) / max(manifest["files"]))
  records = (workdir / "metrics.jsonl").read_bytes()
  config = config_lib.validate(in_process_run[1])
  with caplog.at_level(logging.WARNING):
    run = train._build_and_resume(config, str(workdir), sharding.make_mesh())
  run.checkpointer.close()
  assert int(run.state.step) == 0
  [kept] = workdir.glob("metrics.jsonl.before-restart-*")
  assert kept.read_bytes() == records and not (workdir / "metrics.jsonl").exists()
  starts_over = [r.getMessage() for r in caplog.records if "starts over" in r.getMessage()]
  assert starts_over == [
      f"Every checkpoint in {checkpoints} (steps {steps}) is damaged and set aside (*.corrupt-*): "
      f"training starts over from step 0; the old metrics.jsonl records are kept in {kept}."
  ]
  assert len(list(checkpoints.glob("*.corrupt-*"))) == len(steps)


def test_re_running_a_finished_run_redoes_nothing(in_process_run, tmp_path, monkeypatch):
  """A finished run re-run appended its final evaluation record to metrics.jsonl again (and
  re-exported the model). Now only what the previous start did not get to is done: here the
  final evaluation, whose report and record are missing after the fixture's failed one."""
  workdir = tmp_path / "run"
  shutil.copytree(in_process_run[0], workdir)
  config = in_process_run[1]
  evaluations = []

  def evaluation(*args, **kwargs):
    evaluations.append(args[-1])
    report = evaluators.output_dir_for(str(workdir), config.data.eval, args[-1])
    os.makedirs(report)
    open(os.path.join(report, "results.json"), "w").write("{}")
    return {"scalars": {"eval/multilingual_map": 0.5}, "results": {}}

  def exported(*args, **kwargs):
    raise AssertionError("exported again")

  monkeypatch.setattr(evaluators, "evaluate_in_training", evaluation)
  monkeypatch.setattr(models, "save_pretrained", exported)
  train.train_and_evaluate(config, str(workdir))  # the fixture's final evaluation failed
  records = (workdir / "metrics.jsonl").read_text()
  assert evaluations == [3] and records.count("eval/multilingual_map") == 1
  train.train_and_evaluate(config, str(workdir))
  assert evaluations == [3] and (workdir / "metrics.jsonl").read_text() == records


def test_trains_on_64_languages_and_refuses_65(tmp_path):
  """The sampler's limit end to end: the tiny model trains 2 cross-lingual steps on synthetic
  parallel data in 64 languages (each example in a random ~90 % of them), and a config
  of 65 languages is a one-line ConfigError before anything is built."""
  from hybrid_jax.data.languages import ISO_639_1
  from hybrid_jax.errors import ConfigError
  codes = sorted(ISO_639_1)[:65]
  rng = np.random.default_rng(0)
  path = tmp_path / "parallel64.jsonl"
  with open(path, "w") as f:
    for i in range(64):
      for lang in codes[:64]:
        if rng.random() < 0.9:
          f.write(
              json.dumps({
                  "id": f"q{i}", "lang": lang, "query": f"{lang} question {i}?",
                  "passage": f"{lang} answer {i}.", "context": f"{lang} text {i}."
              }) + "\n")
  config = config_lib.default_config("model=tiny,steps=2")
  config.model.update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, vocab_size=1000)
  config.data.update(train=f"jsonl:{path}", eval="", query_max_len=16, passage_max_len=32,
                     languages="+".join(codes[:64]))
  config.sampler.mono_prob = 0.0  # cross-lingual batches: drawn from the 4,032 pair pools
  config.train.global_batch_size = 16
  config.train.input_workers = 0
  config.optim.warmup_steps = 1
  config.log.every_steps = 1
  train.train_and_evaluate(config, str(tmp_path / "run"))
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f if '"loss"' in line]  # (not the cost record)
  assert [r["step"] for r in records] == [1, 2]
  assert all(np.isfinite(r["loss"]) and r["mono_fraction"] == 0.0 for r in records), records

  config.data.languages = "+".join(codes)
  with pytest.raises(
      ConfigError, match=r"config.data.languages='65 languages': the hybrid batch "
      r"sampler supports at most 64"):
    config_lib.validate(config)
