"""Parallel QA data: every loader returns a `ParallelQA` (see parallel_qa.py).

`load(spec)` is the entry point for named and path specs (registry.py); `python -m hybrid_jax.data
--describe SPEC` prints their per-language counts.
"""

from hybrid_jax.data.arrow import load_arrow
from hybrid_jax.data.hf import from_hf_dataset, load_tfds
from hybrid_jax.data.jsonl import load_jsonl, write_jsonl
from hybrid_jax.data.languages import XQUAD_R_LANGUAGES
from hybrid_jax.data.parallel_qa import Candidates, DataError, ParallelQA
from hybrid_jax.data.registry import load, prepare
from hybrid_jax.data.sentences import split_sentences
from hybrid_jax.data.squad import load_squad

__all__ = [
    "Candidates",
    "DataError",
    "ParallelQA",
    "XQUAD_R_LANGUAGES",
    "from_hf_dataset",
    "load",
    "load_arrow",
    "load_jsonl",
    "load_squad",
    "load_tfds",
    "prepare",
    "split_sentences",
    "write_jsonl",
]
