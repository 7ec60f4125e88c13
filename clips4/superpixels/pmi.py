"""PMI contour detector (Isola et al., "Crisp boundary detection using pointwise mutual information", ECCV 2014).

Own implementation from the paper's description:

1. per-pixel features: luminance and two opponent colour channels (a cheap decorrelation of RGB), each in [0, 1];
2. pairs of nearby pixels (offsets drawn from a small disc) give samples of the joint P(A, B) per channel, estimated
   as a Gaussian-smoothed 2-D histogram over quantised features (a grid KDE; the paper uses a KDE in the joint
   feature space -- we treat the channels as independent and add their PMIs, which keeps the density 2-D);
3. PMI_rho(A, B) = log(P(A, B)^rho / (P(A) P(B))), affinity W_ij = exp(PMI) between pixels within ``radius``
   on a grid whose longer side is at most ``contours.pmi_max_side`` pixels;
4. spectral clustering as in gPb: the smallest generalised eigenvectors of (D - W) v = lambda D v; their
   gradients weighted by 1 / sqrt(lambda) give the spectral boundary, added to the local boundary
   (1 - mean affinity across the pixel);
5. orientation from the structure tensor of the eigenvector gradients, oriented non-maximum suppression,
   strength normalised to [0, 1].
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from clips4.params import ContourParams
from clips4.superpixels.nms import oriented_nms
from clips4.superpixels.types import ContourMap

#: Quantisation bins per feature channel for the 2-D density (the histogram is bins x bins).
BINS = 32
#: Gaussian smoothing of the joint histogram, in bins (the KDE bandwidth).
KDE_SIGMA = 1.0
#: The paper's rho > 1 favours pairs that co-occur *often*, not merely more than chance.
RHO = 1.25
#: Affinity radius in (working-grid) pixels.
RADIUS = 4
#: Spectral eigenvectors used (besides the constant one).
N_EIGENVECTORS = 8
#: Pixel pairs sampled for the density estimate.
N_PAIRS = 20000
#: Pixel distances from which the density-estimate pairs are drawn (the paper uses a small window).
PAIR_DISTANCE = (1.0, 3.0)


def _features(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [H, W, 3] float features in [0, 1]: luminance, red-green, yellow-blue."""
    rgb = image.astype(np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    lum = (r + g + b) / 3.0
    rg = (r - g + 1.0) / 2.0
    yb = ((r + g) / 2.0 - b + 1.0) / 2.0
    return np.stack([lum, rg, yb], axis=-1)


def _sample_pairs(h: int, w: int, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of ``n`` random pixel pairs at distances in PAIR_DISTANCE, both inside the image."""
    ys = rng.integers(0, h, n)
    xs = rng.integers(0, w, n)
    dist = rng.uniform(*PAIR_DISTANCE, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    ys2 = np.clip(np.rint(ys + dist * np.sin(angle)).astype(int), 0, h - 1)
    xs2 = np.clip(np.rint(xs + dist * np.cos(angle)).astype(int), 0, w - 1)
    return ys * w + xs, ys2 * w + xs2


def pmi_tables(quantised: np.ndarray, rng: np.random.Generator, rho: float = RHO) -> np.ndarray:
    """Per-channel PMI_rho lookup tables [C, BINS, BINS] from quantised features [H, W, C] (ints < BINS)."""
    h, w, c = quantised.shape
    a, b = _sample_pairs(h, w, rng, N_PAIRS)
    flat = quantised.reshape(-1, c)
    tables = np.empty((c, BINS, BINS))
    for ch in range(c):
        joint = np.zeros((BINS, BINS))
        np.add.at(joint, (flat[a, ch], flat[b, ch]), 1.0)
        joint = joint + joint.T  # P(A, B) is symmetric: the pair order is arbitrary
        joint = ndi.gaussian_filter(joint, KDE_SIGMA, mode="constant") + 1e-12
        joint /= joint.sum()
        marginal = joint.sum(axis=1)
        tables[ch] = rho * np.log(joint) - np.log(marginal[:, None]) - np.log(marginal[None, :])
    return tables


def _disc_offsets(radius: int) -> list[tuple[int, int]]:
    """Half-disc of (dy, dx) offsets: each undirected neighbour pair appears once."""
    out = []
    for dy in range(0, radius + 1):
        for dx in range(-radius, radius + 1):
            if (dy == 0 and dx <= 0) or dy * dy + dx * dx > radius * radius:
                continue
            out.append((dy, dx))
    return out


def affinity_matrix(quantised: np.ndarray, tables: np.ndarray, radius: int = RADIUS) -> sp.csr_matrix:
    """Sparse symmetric W [HW, HW], W_ij = exp(sum_c PMI_c(f_i, f_j)) for pixels within ``radius``."""
    h, w, c = quantised.shape
    index = np.arange(h * w).reshape(h, w)
    rows, cols, vals = [], [], []
    for dy, dx in _disc_offsets(radius):
        y0, y1 = 0, h - dy
        x0, x1 = max(0, -dx), min(w, w - dx)
        if y1 <= y0 or x1 <= x0:
            continue
        qa = quantised[y0:y1, x0:x1]
        qb = quantised[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        pmi = sum(tables[ch][qa[..., ch], qb[..., ch]] for ch in range(c))
        rows.append(index[y0:y1, x0:x1].ravel())
        cols.append(index[y0 + dy : y1 + dy, x0 + dx : x1 + dx].ravel())
        vals.append(pmi.ravel())
    r, cc, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    # Shift by the max so exp() cannot overflow; a common scale does not change the eigenvectors.
    v = np.exp(v - v.max())
    w_mat = sp.coo_matrix((v, (r, cc)), shape=(h * w, h * w))
    return (w_mat + w_mat.T).tocsr()


def spectral_vectors(w_mat: sp.csr_matrix, n_vectors: int) -> tuple[np.ndarray, np.ndarray]:
    """Smallest non-trivial generalised eigenpairs of (D - W) v = lambda D v: (lambdas [k], vectors [N, k])."""
    d = np.asarray(w_mat.sum(axis=1)).ravel() + 1e-12
    d_inv_sqrt = sp.diags(1.0 / np.sqrt(d))
    m = d_inv_sqrt @ w_mat @ d_inv_sqrt  # eigenvalues mu = 1 - lambda
    k = min(n_vectors + 1, w_mat.shape[0] - 2)
    # A fixed random start vector keeps the result deterministic. (Not the known top eigenvector sqrt(d):
    # a Krylov space started from an exact eigenvector is one-dimensional.)
    v0 = np.random.default_rng(0).uniform(0.5, 1.5, w_mat.shape[0])
    try:
        mu, u = spla.eigsh(m, k=k, which="LA", v0=v0, tol=1e-4)
    except spla.ArpackNoConvergence as exc:
        # Rare on nearly flat images; the converged pairs (at least the constant one) are still valid.
        mu, u = exc.eigenvalues, exc.eigenvectors
        if len(mu) < 2:  # nothing beyond the constant vector: a slower, more patient solve
            mu, u = spla.eigsh(m, k=k, which="LA", v0=v0, ncv=min(m.shape[0] - 1, 4 * k + 1), maxiter=50 * m.shape[0])
    order = np.argsort(-mu)
    mu, u = mu[order][1:], u[:, order][:, 1:]  # drop the constant vector
    lam = np.clip(1.0 - mu, 1e-6, None)
    return lam, u / np.sqrt(d)[:, None]


def local_boundary(w_mat: sp.csr_matrix, shape: tuple[int, int]) -> np.ndarray:
    """1 - (mean affinity of a pixel to its neighbours, relative to the image's typical value), clipped to [0, 1]."""
    counts = np.diff(w_mat.indptr)
    mean = np.asarray(w_mat.sum(axis=1)).ravel() / np.maximum(counts, 1)
    mean /= np.percentile(mean, 90) + 1e-12
    return np.clip(1.0 - mean, 0.0, 1.0).reshape(shape)


def _resize(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    zoom = (shape[0] / array.shape[0], shape[1] / array.shape[1])
    out = ndi.zoom(array, zoom, order=1, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1]]


def pmi_strength(image_rgb_uint8: np.ndarray, max_side: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boundary strength (before NMS, unnormalised) and normal orientation in [0, pi), both [H, W].

    The affinities and eigenvectors are computed on a grid whose longer side is at most ``max_side``
    (the cost grows with its square); the result is resampled to the input size.
    """
    h, w = image_rgb_uint8.shape[:2]
    feats = _features(image_rgb_uint8)
    scale = min(1.0, max_side / max(h, w))
    gh, gw = max(8, round(h * scale)), max(8, round(w * scale))
    if (gh, gw) != (h, w):
        feats = np.stack([_resize(feats[..., c], (gh, gw)) for c in range(3)], axis=-1)
    quantised = np.clip((feats * BINS).astype(np.int64), 0, BINS - 1)
    rng = np.random.default_rng(seed)
    tables = pmi_tables(quantised, rng)
    w_mat = affinity_matrix(quantised, tables)
    lam, vecs = spectral_vectors(w_mat, N_EIGENVECTORS)
    # Structure tensor of the weighted eigenvector gradients: magnitude and a doubled-angle mean orientation.
    jxx = np.zeros((gh, gw))
    jyy = np.zeros((gh, gw))
    jxy = np.zeros((gh, gw))
    for k in range(vecs.shape[1]):
        v = vecs[:, k].reshape(gh, gw)
        v = v / (np.abs(v).max() + 1e-12)
        gy, gx = ndi.sobel(v, axis=0), ndi.sobel(v, axis=1)
        weight = 1.0 / np.sqrt(lam[k])
        jxx += weight * gx * gx
        jyy += weight * gy * gy
        jxy += weight * gx * gy
    spectral = np.sqrt(jxx + jyy)
    spectral /= spectral.max() + 1e-12
    local = local_boundary(w_mat, (gh, gw))
    strength = spectral + local
    orientation = 0.5 * np.arctan2(2 * jxy, jxx - jyy)
    if (gh, gw) != (h, w):
        strength = _resize(strength, (h, w))
        # Resample the doubled-angle vector, not the angle, so that 0 and pi do not average to pi/2.
        c2 = _resize(np.cos(2 * orientation), (h, w))
        s2 = _resize(np.sin(2 * orientation), (h, w))
        orientation = 0.5 * np.arctan2(s2, c2)
    return strength, np.mod(orientation, np.pi)


def detect_pmi(image_rgb_uint8: np.ndarray, params: ContourParams) -> ContourMap:
    """PMI boundaries of one [H, W, 3] uint8 RGB image: thinned strength in [0, 1] and orientation in [0, pi)."""
    # Only the working-grid size is a param; the other settings are the module constants above.
    if image_rgb_uint8.ndim != 3 or image_rgb_uint8.shape[2] != 3:
        raise ValueError(f"detect_pmi expects an [H, W, 3] RGB image, got shape {image_rgb_uint8.shape}")
    strength, orientation = pmi_strength(image_rgb_uint8, max_side=params.pmi_max_side)
    thin = oriented_nms(strength, orientation)
    thin = thin / (thin.max() + 1e-12)
    return ContourMap(strength=thin.astype(np.float32), orientation=orientation.astype(np.float32))
