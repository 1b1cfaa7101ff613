"""Default run: the embedded XQuAD-R train split, the tiny model, float32, about 5 minutes on a
2-core CPU, then LAReQA evaluation on the held-out articles (`xquad_r:eval`).

  python -m hybrid_jax.main --config=configs/default.py --workdir=/tmp/hj
  python -m hybrid_jax.main --config=configs/default.py:langs=en+de+ar,mono_prob=0.25 --workdir=...
  python -m hybrid_jax.main --config=configs/default.py --config.train.num_steps=100 --workdir=...

Arguments after the colon: langs ('+'-joined codes or 'xquad_r'), mono_prob, model (a preset in
configs/models/), steps.
"""

import ml_collections

from hybrid_jax import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, langs="xquad_r", mono_prob=0.5, model="tiny", steps=450)
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.train = "xquad_r:train"          # a spec for hybrid_jax.data.load, or several
                                               # joined by '+' (one source each; each batch
                                               # from one source)
  config.data.train_weights = ""               # '+'-joined per-source weights; '' = by size
  config.data.source_temperature_alpha = 1.0   # weights by size**alpha (1: by size, 0: uniform)
  config.data.eval = "xquad_r:eval"            # '' to skip evaluation
  config.data.languages = arg.langs            # '+'-joined codes, or 'xquad_r' for all 11
  config.data.on_error = "raise"               # or 'skip': skip and count malformed records
  config.data.strict = False                   # True: an unknown record field is an error
  config.data.query_max_len = 24               # tokens, static padded length
  config.data.passage_max_len = 64             # tokens: answer sentence + its paragraph

  config.sampler = ml_collections.ConfigDict()
  config.sampler.mono_prob = arg.mono_prob     # P(a global batch is monolingual)
  config.sampler.language_scope = "batch"      # 'batch' (paper) or 'example'

  config.model = config_lib.model_preset(arg.model)

  config.loss = ml_collections.ConfigDict()
  config.loss.temperature = 0.05               # initial value when learnable
  config.loss.learnable_temperature = False
  config.loss.symmetric = False                # add the passage->query term
  config.loss.num_hard_negatives = 0           # other sentences of the positive's paragraph
  config.loss.global_negatives = True          # False: each device scores only its own passages

  config.train = ml_collections.ConfigDict()
  config.train.global_batch_size = 64          # split over all devices of all hosts
  config.train.num_steps = arg.steps
  config.train.max_consecutive_nonfinite = 5   # then stop with the last good state saved
  config.train.prefetch_batches = 2
  config.train.grad_cache_chunk_size = 0       # >0: gradient cache, encode the global batch in
                                               # chunks of this many rows (same update, less memory)
  config.train.fsdp = 1                        # size of the fsdp mesh axis: >1 shards large params
                                               # and optimizer state (1 = replicated)

  config.optim = ml_collections.ConfigDict()
  config.optim.learning_rate = 1e-3
  config.optim.warmup_steps = 30
  config.optim.schedule = "linear"             # 'linear' | 'cosine' | 'constant' after warmup
  config.optim.end_learning_rate_factor = 0.0
  config.optim.weight_decay = 0.01             # not applied to biases and LayerNorm
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-6
  config.optim.grad_clip_norm = 1.0

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 100
  config.checkpoint.keep = 3
  config.checkpoint.async_save = True
  config.checkpoint.allow_config_change = False  # resume although fields other than
                                               # run_dir.RESUMABLE_FIELDS changed

  config.eval = ml_collections.ConfigDict()
  config.eval.every_steps = 0                  # 0: only at the end
  config.eval.batch_size = 128

  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 10
  return config
