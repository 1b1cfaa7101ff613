"""Study: LoRA and language adapters against full fine-tuning, all with hybrid batches (issue 22).

multilingual-e5-small at the default run's budget (configs/default.py as it is: 60 steps of 32,
the paper's 9 training languages, evaluated on all 11 XQuAD-R languages, el and vi zero-shot),
hybrid batches (mono_prob 0.5) unless said, five grids run in order into one root:

  (a) full fine-tuning (the word embeddings frozen, learning rate 5e-5: the default run), seeds
      0, 1, 2;
  (b) LoRA rank 16 (`model.lora.rank`, the default targets: attention query/key/value/output and
      both feed-forward kernels; alpha the `model.lora.alpha` default), seeds 0, 1, 2;
  (c) language adapters rank 16 (`model.lora.per_language`: one adapter per training language on
      top of the shared one), seeds 0, 1, 2;
  (d) LoRA rank 4 and rank 64, seed 0;
  (e) LoRA rank 16 with mono-only (mono_prob 1) and cross-only (mono_prob 0) batches, seed 0.

13 runs: 136 minutes on 7-8 Dec at load average 4-6, about an hour on a quiet 2-core CPU
(docs/lora.md#results; `--dry_run --cost_from=DIR` estimates from finished runs' cost
records). The LoRA runs use LORA_LEARNING_RATE, given as an --axis so that it is in their names
(`...-mono0.5-rank16-learning_rate3e-4-seed0`): a changed rate makes new runs instead of
counting finished runs of another rate as done. The full fine-tuning runs set nothing on top of
the default config and are named as a plain sweep names them (`L9-...-mono0.5-seed0`).

  python launch/sweep.py --study=lora --root=workdirs/lora
  python launch/summarize.py --root=workdirs/lora --out=launch/results/lora

The summary: one setting per (rank, language adapters, mono_prob, learning rate), mean ± std over
seeds, with the trained and the zero-shot languages apart, the efficiency columns of each run's
cost record, and pareto.png: multilingual-pool mAP against trainable parameters.
"""

# The LoRA learning rate of every LoRA grid, tuned on rank 16, hybrid, seed 0, at the default
# budget (mono / cross / multilingual mAP): 1e-4 0.758 / 0.630 / 0.354, 3e-4 0.741 / 0.616 /
# 0.428 (docs/lora.md); 3e-4 has the higher mean of the three and the pool gain hybrid batches
# are for. As written in the run names (`...-learning_rate3e-4-...`).
LORA_LEARNING_RATE = "3e-4"
LANGUAGES = "ar+de+en+es+hi+ru+th+tr+zh"  # the paper's training languages; el, vi held out


def _grid(mono_probs="0.5", seeds="0", axis=()):
  return {
      "config": "configs/default.py", "lang_sets": LANGUAGES, "mono_probs": mono_probs,
      "seeds": seeds, "axis": list(axis)
  }


def _lora(ranks, per_language=False):
  """The --axis flags of LoRA of `ranks` ('16' or '4,64') at LORA_LEARNING_RATE."""
  return [
      f"model.lora.rank={ranks}",
      *(["model.lora.per_language=True"] if per_language else []),
      f"optim.learning_rate={LORA_LEARNING_RATE}",
  ]


def get_study():
  return {
      "sweeps": [
          _grid(seeds="0,1,2"),  # (a) full fine-tuning
          _grid(seeds="0,1,2", axis=_lora("16")),  # (b) LoRA rank 16
          _grid(seeds="0,1,2", axis=_lora("16", per_language=True)),  # (c) language adapters
          _grid(axis=_lora("4,64")),  # (d) the rank
          _grid(mono_probs="1,0", axis=_lora("16")),  # (e) mono-only and cross-only batches
      ],
      "summarize": {
          # Read from each run's config.json where a grid does not set them (full fine-tuning:
          # rank 0, no language adapters, 5e-5).
          "group_by": "model.lora.rank,model.lora.per_language,mono_prob,optim.learning_rate",
          "quality": "map_multi_mean",
          "cost": "trainable_parameters",
      },
  }
