"""hybrid-jax: multilingual dense retrieval with hybrid (monolingual / cross-lingual) batches."""

__version__ = "0.1.0"
