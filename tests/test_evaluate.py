"""The evaluation command line: end to end with TF-IDF and a Hugging Face directory, and its user
errors as one line with exit status 2."""

import json
import os
import subprocess
import sys

import pytest
from tiny_run import xla_flags

from hybrid_jax import config_lib
from hybrid_jax import eval_report
from hybrid_jax import evaluators
from hybrid_jax import models
from hybrid_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_cli(*args):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(2))
  result = subprocess.run([sys.executable, "-m", "hybrid_jax.evaluate", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


@pytest.mark.parametrize("kind", ["tfidf", "hf"])
def test_cli_end_to_end(kind, eval_model, eval_tokenizer, tmp_path):
  if kind == "hf":
    target = str(tmp_path / "hf")
    models.save_pretrained(eval_model, target, eval_tokenizer,
                           prompts={"query": "query: ", "passage": "passage: "})
  else:
    target = "tfidf"
  out = tmp_path / "out"
  _run_cli(f"--model={target}", "--dataset=xquad_r:eval", "--languages=en+de",
           f"--output_dir={out}", "--passage_max_len=32", "--batch_size=32",
           *(["--language_groups=script"] if kind == "tfidf" else []))
  saved = json.loads((out / eval_report.JSON_NAME).read_text())
  # Without a training config there is no trained / zero-shot split.
  assert list(saved["metrics"]["groups"]) == (["script"] if kind == "tfidf" else
                                              ["family", "script", "resource_class"])
  assert saved["model"] == target and saved["languages"] == ["en", "de"]
  assert all(0 <= saved["metrics"]["map_xy"][x][y] <= 1 for x in ("en", "de") for y in ("en", "de"))
  assert saved["retriever"]["kind"] == ("tfidf" if kind == "tfidf" else "dense")
  if kind == "hf":  # The exported sentence-transformers prompts are read back.
    assert saved["retriever"]["query_prefix"] == "query: "
    assert saved["retriever"]["passage_prefix"] == "passage: "
    # Lengths not given default to the default config's, as training evaluates.
    assert saved["retriever"]["query_max_len"] == config_lib.DEFAULT_QUERY_MAX_LEN
    assert saved["retriever"]["passage_max_len"] == 32
  assert (out / eval_report.MARKDOWN_NAME).exists() and (out / eval_report.HEATMAP_NAME).exists()


def test_cli_user_errors_print_one_line_and_exit_2(eval_model, eval_tokenizer, tmp_path):
  hf = tmp_path / "hf"
  # XLM-R positions: 80 rows = 78 tokens.
  models.save_pretrained(eval_model, str(hf), eval_tokenizer)
  (tmp_path / "a_file").write_text("")
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  cases = [
      ([f"--model={hf}", "--passage_max_len=79"], "--passage_max_len=79: longer than the "
       f"model's position table, which covers 78 tokens (the model of {hf}); use at most 78"),
      ([f"--workdir={tmp_path}/a_file"], f"{tmp_path}/a_file: neither a training run"),
      ([], "pass --workdir (a training run) or --model (HF_DIR or tfidf)"),
      (["--model=tfidf", f"--output_dir={tmp_path}/o", f"--dataset=beir:{tmp_path}/nope"],
       f"BEIR data: missing file {tmp_path}/nope/corpus.jsonl"),
      (["--model=tfidf", "--step=x"], "--step=x: invalid literal"),
      (["--model=tfidf", "--language_groups=family*genre"],
       "--language_groups: unknown language grouping 'genre' in 'family*genre'"),
  ]
  for args, message in cases:
    result = subprocess.run([sys.executable, "-m", "hybrid_jax.evaluate", *args], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, (args, result.stderr[-3000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: " + message), result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_what_cannot_be_evaluated_is_a_user_error_before_the_work(eval_model, eval_tokenizer,
                                                                  tmp_path, monkeypatch):
  """Were tracebacks: a sentence-transformers module folder or a GPT-2 directory (ValueError),
  and an --output_dir that is a file (FileExistsError, after the whole evaluation)."""
  hf = tmp_path / "hf"
  models.save_pretrained(eval_model, str(hf), eval_tokenizer)
  gpt2 = tmp_path / "gpt2"
  gpt2.mkdir()
  (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 32}))
  (tmp_path / "a_file").write_text("")

  def evaluated(*args, **kwargs):
    raise AssertionError("evaluated before the check")

  monkeypatch.setattr(evaluators, "evaluate", evaluated)
  cases = [
      (dict(path=str(hf / "1_Pooling")), f"{hf}/1_Pooling/config.json has no model_type"),
      (dict(path=str(gpt2)), f"{gpt2}/config.json: unsupported model_type='gpt2'"),
      (dict(path=str(hf), output_dir=str(tmp_path / "a_file")),
       f"--output_dir={tmp_path}/a_file is a file, not a directory"),
      (dict(path="tfidf", output_dir=str(tmp_path / "a_file" / "out")),
       f"--output_dir={tmp_path}/a_file/out is inside {tmp_path}/a_file, a file, not a directory"),
  ]
  for kwargs, message in cases:
    with pytest.raises(UserError) as error:
      evaluators.evaluate_checkpoint(dataset="xquad_r:eval", **kwargs)
    assert str(error.value).startswith(message), (kwargs, str(error.value))
