"""Principal component projections of embeddings, deterministic (sign-fixed), with numpy only.

Used for the PCA-RGB images of pixel embeddings (the paper's Fig. 1a) and the 2-D map of segment embeddings
(Fig. 4a; PCA rather than t-SNE, which would need scikit-learn and is not deterministic across versions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Projection:
    """``x -> (x - mean) @ components.T``: ``components [k, D]`` ordered by explained variance."""

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray  # fraction of the total variance per component, [k]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float64) - self.mean) @ self.components.T


def fit_pca(x: np.ndarray, k: int) -> Projection:
    """The top ``k`` principal components of rows ``x [N, D]`` (N >= 1). Each component's sign is fixed so that
    its largest-magnitude loading is positive: the same data always give the same picture."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"PCA needs a non-empty [N, D] array, got shape {x.shape}")
    mean = x.mean(axis=0)
    covariance = np.cov(x - mean, rowvar=False, bias=True).reshape(x.shape[1], x.shape[1])
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1][:k]
    components = vectors[:, order].T
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    total = float(values.clip(min=0).sum())
    explained = values[order].clip(min=0) / total if total > 0 else np.zeros(len(order))
    if len(order) < k:  # fewer dimensions than asked: pad with zero components
        components = np.vstack([components, np.zeros((k - len(order), x.shape[1]))])
        explained = np.concatenate([explained, np.zeros(k - len(order))])
    return Projection(mean, components, explained)


def to_unit_range(values: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Each column of ``values [N, k]`` scaled to [0, 1] between its ``low`` and ``high`` percentiles (clipped),
    so a few outlying pixels do not wash out the colours."""
    lo = np.percentile(values, low, axis=0)
    hi = np.percentile(values, high, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.clip((values - lo) / span, 0.0, 1.0)
