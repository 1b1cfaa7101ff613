"""Study: how the mono-to-cross batch ratio moves zero-shot and per-group accuracy.

Hybrid batches of multilingual-e5-small on the paper's 9 training languages, mono_prob 0, 0.25,
0.5, 0.75, 1, three seeds each; evaluated on all 11 XQuAD-R languages (el and vi zero-shot).
Reported per resource class and per family, zero-shot languages apart: the runs' results hold
the crossed groupings `resource_class*trained` and `family*trained` (`eval.language_groups`,
docs/languages.md), whose groups are the languages of one class (family) that were trained on,
or not ('4 / zero-shot': vi; 'Indo-European / zero-shot': el); summarize gives their macro
averages, and those of trained / zero-shot alone, a column each.

Sized for ~90 minutes of a quiet 2-core CPU (`--dry_run` prints the estimate): 24 steps of 32
(warmup 3) instead of the default run's 60, so 15 runs fit.

  python launch/sweep.py --study=ratio_groups --root=workdirs/ratio_groups
  python launch/summarize.py --root=workdirs/ratio_groups --out=launch/results/ratio_groups

Results on this project's 2-core CPU, with their reading and cost: docs/studies.md.
"""

CROSSED = "resource_class*trained,family*trained"


def get_study():
  return {
      "sweep": {
          "config":
              "configs/default.py:steps=24",
          "lang_sets":
              "ar+de+en+es+hi+ru+th+tr+zh",
          "mono_probs":
              "0,0.25,0.5,0.75,1",
          "seeds":
              "0,1,2",
          "extra": [
              "--config.optim.warmup_steps=3", "--config.data.eval_languages=xquad_r",
              f"--config.eval.language_groups=trained,family,script,resource_class,{CROSSED}"
          ],
      },
      "summarize": {
          "x": "mono_prob",
          "quality": "trained/zero-shot/map_multi_mean",
          "cost": "total_seconds",
          "groups": f"trained,{CROSSED}",
      },
  }
