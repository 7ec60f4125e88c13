"""Primitives shared by training and evaluation: spherical k-means (:mod:`clips4.ops.kmeans`) and the normalised
mean of embeddings over segments (:mod:`clips4.ops.segment_means`). ``train/`` and ``eval/`` both import them and
never each other (the import-linter contracts in pyproject.toml)."""
