"""Study: which global batch gives the best quality per unit of compute, and what the number of
in-batch negatives does to it.

Hybrid batches (mono_prob 0.5) of multilingual-e5-small on the paper's 9 training languages,
global batch 8, 16, 32, 64, 128, and 256 through the gradient cache (chunks of 64 rows), at an
equal number of training examples: 2,560 per run, so the steps scale inversely with the batch
(320 steps of 8 ... 10 steps of 256). Warmup is a tenth of the steps (at least 1): equal in
examples except for the largest batch, where one step is 256 examples. The learning rate is 3e-5
for every batch (not rescaled: part of what the study measures). A batch of B holds B-1 in-batch
negatives per query (global negatives).

No batch of 512: a monolingual Thai batch of `xquad_r:train` cannot hold 512 examples with
distinct passages (Thai has 459 distinct answer sentences among its 925 questions), so the
sampler refuses it at the first such batch.

Sized for ~90 minutes of a quiet 2-core CPU (`--dry_run` prints the estimate): 2,560 examples per
run (80 x 32, the default run's budget before it became 60 steps at 5e-5), one seed. The cost
columns (examples/s, training FLOPs, wall time) come from each run's cost record.

  python launch/sweep.py --study=batch_size --root=workdirs/batch_size
  python launch/summarize.py --root=workdirs/batch_size --out=launch/results/batch_size

Results on this project's 2-core CPU, with their reading and cost: docs/studies.md.
"""

EXAMPLES = 2560
BATCHES = (8, 16, 32, 64, 128, 256)
GRAD_CACHE_CHUNK = 64  # rows encoded at a time for the batches above 128


def get_study():
  steps = [EXAMPLES // b for b in BATCHES]
  return {
      "sweep": {
          "config":
              "configs/default.py",
          "lang_sets":
              "ar+de+en+es+hi+ru+th+tr+zh",
          "mono_probs":
              "0.5",
          "zip":
              True,
          "extra": ["--config.optim.learning_rate=3e-5"],
          "axis": [
              "train.global_batch_size=" + ",".join(map(str, BATCHES)),
              "train.num_steps=" + ",".join(map(str, steps)),
              "optim.warmup_steps=" + ",".join(str(max(1, s // 10)) for s in steps),
              "train.grad_cache_chunk_size="
              + ",".join(str(GRAD_CACHE_CHUNK if b > 128 else 0) for b in BATCHES),
          ],
      },
      "summarize": {
          "x": "train.global_batch_size",
          "quality": "map_multi_mean",
          "cost": "train_seconds",  # the FLOPs are equal by design (equal examples)
      },
  }
