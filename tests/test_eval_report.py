"""Report writers: JSON (strict, every matrix entry), Markdown (a row per language), heatmap PNG."""

import json
import math

import numpy as np
import pytest

from hybrid_jax import evaluators
from hybrid_jax import eval_report


def _lareqa_results(languages, seed=0, missing=None):
  rng = np.random.default_rng(seed)
  num_langs = len(languages)
  map_xy = rng.uniform(size=(num_langs, num_langs))
  if missing is not None:
    map_xy[missing] = np.nan
  metrics = {
      "languages": tuple(languages),
      "map_xy": map_xy,
      "num_queries_xy": rng.integers(1, 50, size=(num_langs, num_langs)),
      "map_mono": float(np.nanmean(np.diag(map_xy))),
      "map_cross": 0.25,
      "map_multi": rng.uniform(size=num_langs),
      "map_multi_mean": 0.4,
      "rank_gap": rng.normal(size=num_langs),
      "rank_gap_mean": 1.5,
      "own_share": rng.uniform(size=num_langs),
      "own_share_mean": 0.3,
      "own_share_excess": rng.uniform(size=num_langs),
      "own_share_excess_mean": 0.1,
      "uniform_share": 1 / num_langs,
      "top_k": 10,
      "rank_range": rng.uniform(0, 100, size=num_langs),
      "rank_range_mean": 50.0,
      "recall@1": rng.uniform(size=num_langs),
      "recall@1_mean": 0.2,
      "recall@10": rng.uniform(size=num_langs),
      "recall@10_mean": 0.6,
  }
  return {
      "task": "lareqa", "dataset": "xquad_r:eval", "dataset_name": "xquad_r_eval", "model": "m",
      "step": 7, "languages": list(languages), "metrics": evaluators.lareqa_results(metrics),
      "timing": {"total_seconds": 1.0}
  }


def test_write_report_files_parse(tmp_path):
  languages = ["ar", "de", "en", "zh"]
  results = _lareqa_results(languages, missing=(1, 2))
  paths = eval_report.write_report(results, str(tmp_path / "out"))

  loaded = json.loads((tmp_path / "out" / eval_report.JSON_NAME).read_text())
  expected = results["metrics"]["map_xy"]
  for x in languages:
    for y in languages:
      if (x, y) == ("de", "en"):
        assert loaded["metrics"]["map_xy"][x][y] is None  # NaN -> null, strict JSON
      else:
        assert loaded["metrics"]["map_xy"][x][y] == pytest.approx(expected[x][y])
    assert loaded["metrics"]["map_multi"][x] == pytest.approx(results["metrics"]["map_multi"][x])

  lines = (tmp_path / "out" / eval_report.MARKDOWN_NAME).read_text().splitlines()
  for x in languages:
    rows = [line for line in lines if line.startswith(f"| **{x}** |")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    # language, L targets, multilingual, rank gap, own share, max-min rank, R@1, R@10
    assert len(cells) == 1 + len(languages) + 6
    assert float(cells[1 + languages.index("ar")]) == pytest.approx(expected[x]["ar"], abs=5e-4)
    assert float(cells[-1]) == pytest.approx(results["metrics"]["recall@10"][x], abs=5e-4)
  de_row = next(line for line in lines if line.startswith("| **de** |"))
  assert "–" in de_row

  from matplotlib import image
  pixels = image.imread(paths["heatmap"])
  assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_to_jsonable_numpy_and_nan():
  value = {"a": np.float32(1.5), "b": np.array([1, 2]), "c": (math.inf, np.nan), 3: np.int64(4)}
  assert eval_report.to_jsonable(value) == {"a": 1.5, "b": [1, 2], "c": [None, None], "3": 4}


def test_comparison_table_rows_and_task_check():
  a, b = _lareqa_results(["en", "de"], seed=1), _lareqa_results(["en", "de"], seed=2)
  table = eval_report.comparison_table({"mono-only": a, "hybrid": b, "tfidf": a})
  lines = table.splitlines()
  assert len(lines) == 2 + 3
  assert lines[2].startswith("| mono-only |") and lines[4].startswith("| tfidf |")
  assert f"{a['metrics']['map_mono']:.3f}" in lines[2]
  beir = {
      "task": "beir", "dataset": "beir:x", "model": "m", "step": None,
      "metrics": {"ndcg@10": 0.5, "recall@100": 0.9, "mrr@10": 0.6, "num_queries": 3}
  }
  with pytest.raises(ValueError, match="different tasks"):
    eval_report.comparison_table({"a": a, "b": beir})
  beir_md = eval_report.markdown(beir)
  assert "| 0.500 | 0.900 | 0.600 | 3 |" in beir_md
  assert eval_report.markdown(dict(beir,
                                   warnings=["train/test overlap"
                                            ])).startswith("> **Warning:** train/test overlap")
