"""Study: how the number of training languages moves the cross-lingual / multilingual trade-off.

Hybrid batches (mono_prob 0.5) of multilingual-e5-small on k of the paper's 9 training languages,
k = 1, 2, 3, 5, 7, 9 (k = 1 is mono-only by necessity: mono_prob 1), each k a seeded random
subset of the pool, same steps and batch for every run; evaluated on all 11 XQuAD-R languages, so
the languages not drawn (and el, vi, never trained on) are the zero-shot ones.

Sized for ~90 minutes of a quiet 2-core CPU (`python launch/sweep.py --study=language_count
--root=... --dry_run` prints the estimate): 2 draws per k instead of the issue's 3 (k = 9 has one
subset: 11 runs), 48 steps of 32 instead of the default run's 60 (warmup 5).

  python launch/sweep.py --study=language_count --root=workdirs/language_count
  python launch/summarize.py --root=workdirs/language_count --out=launch/results/language_count

Results on this project's 2-core CPU, with their reading and cost: docs/studies.md.
"""


def get_study():
  return {
      "sweep": {
          "config": "configs/default.py:steps=48",
          "lang_counts": "1,2,3,5,7,9",
          "lang_pool": "ar+de+en+es+hi+ru+th+tr+zh",
          "lang_draws": 2,
          "seed": 0,
          "mono_probs": "0.5",
          "extra": ["--config.optim.warmup_steps=5", "--config.data.eval_languages=xquad_r"],
      },
      # Curves against k: the draws of a k (and their languages) averaged.
      "summarize": {
          "group_by": "num_languages",
          "x": "num_languages",
          "quality": "map_multi_mean",
          "cost": "total_seconds",
      },
  }
