"""Oriented watershed transform (OWT) and ultrametric contour map (UCM) of a contour map, with higra.

After Arbelaez et al., "Contour detection and hierarchical image segmentation" (TPAMI 2011):

1. a 4-adjacency pixel graph whose edge (p, q) weighs (s(p) + s(q)) / 2, s = the contour strength lightly blurred
   (the thinned map has 1-px gaps at junctions; the blur closes them and puts the watershed lines on its crests);
2. watershed cut of that graph -> basins; their region adjacency graph (RAG): each RAG edge is an *arc*, the set of
   pixel edges between two basins;
3. OWT: each arc is cut into pieces by a coarse grid (``OWT_CELL`` px), a line is fitted to every piece (PCA of its
   pixel-edge midpoints, each pixel edge counted as a unit segment), and every pixel edge's strength is multiplied
   by |cos(normal angle at the pixel - normal angle of its piece)|; the arc weight is the mean along the arc. This
   down-weights watershed arcs that run across the orientation of the contour that created them;
4. hierarchy by greedy merging of the weakest boundary with the length-weighted mean boundary strength (average
   linkage on the RAG, weighted by arc lengths); altitudes made non-decreasing towards the root and in [0, 1];
5. the UCM is the saliency of that hierarchy on the pixel edges: the altitude at which two neighbours merge.

Cut convention: at ``threshold`` t every boundary with UCM value <= t is removed (two neighbouring pixels share a
region iff their edge saliency is <= t), so t = 0 keeps every boundary of positive strength.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import higra as hg
import numpy as np
import scipy.ndimage as ndi

from clips4.superpixels.types import ContourMap

#: Blur (Gaussian sigma, px) of the thinned strength before the watershed; 0 = none.
WATERSHED_SIGMA = 1.0
#: Size (px) of the grid cells that cut arcs into roughly straight pieces for the OWT line fit.
OWT_CELL = 8


def _grid_edges(shape: tuple[int, int]) -> tuple[hg.UndirectedGraph, np.ndarray, np.ndarray]:
    """higra's 4-adjacency graph of ``shape`` and, per graph edge, its (channel, flat pixel) in the [2, H, W] layout.

    Channel 0: the edge between (y, x) and (y, x + 1); channel 1: between (y, x) and (y + 1, x); the pixel is (y, x).
    """
    graph = hg.get_4_adjacency_graph(shape)
    sources, targets = graph.edge_list()
    lo = np.minimum(sources, targets)
    channel = (np.abs(targets - sources) == shape[1]).astype(np.int64)  # a row apart: vertical neighbours
    return graph, channel, lo


def _to_edge_map(values: np.ndarray, shape: tuple[int, int], channel: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """Graph-edge values -> float32 [2, H, W] (last column of channel 0 and last row of channel 1 stay 0)."""
    out = np.zeros((2, shape[0] * shape[1]), np.float32)
    out[channel, pixel] = values
    return out.reshape(2, *shape)


def _from_edge_map(edge_map: np.ndarray, channel: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """[2, H, W] -> values per graph edge (the inverse of :func:`_to_edge_map`)."""
    return edge_map.reshape(2, -1)[channel, pixel]


def canonical_labels(labels: np.ndarray) -> np.ndarray:
    """Relabel to 0..n-1 in order of first appearance in raster order (so equal partitions give equal arrays)."""
    _, first, inverse = np.unique(labels.ravel(), return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int32)
    rank[np.argsort(first)] = np.arange(len(first), dtype=np.int32)
    return rank[inverse].reshape(labels.shape)


def watershed_weights(strength: np.ndarray, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Pixel-edge weights for the watershed: mean of the (lightly blurred) strength at the two ends.

    The mean, not the max: where a detector marks both pixels flanking a boundary, the edge between them is the
    only one with both ends strong, so the watershed line lands exactly there.
    """
    s = strength.astype(np.float64)
    if WATERSHED_SIGMA > 0:
        s = ndi.gaussian_filter(s, WATERSHED_SIGMA)
    flat = s.ravel()
    return 0.5 * (flat[sources] + flat[targets])


def owt_arc_weights(
    contours: ContourMap, sources: np.ndarray, targets: np.ndarray, arc: np.ndarray, num_arcs: int
) -> tuple[np.ndarray, np.ndarray]:
    """OWT weight and length (pixel edges) of every arc; ``arc`` = the RAG edge of each pixel edge, -1 inside basins."""
    h, w = contours.strength.shape
    on = arc >= 0
    src, dst, a = sources[on], targets[on], arc[on]
    strength = contours.strength.ravel().astype(np.float64)
    s_src, s_dst = strength[src], strength[dst]
    value = np.maximum(s_src, s_dst)
    # Normal angle at the pixel edge: that of its stronger end.
    theta = np.where(s_src >= s_dst, contours.orientation.ravel()[src], contours.orientation.ravel()[dst])
    y = (src // w + dst // w) / 2.0
    x = (src % w + dst % w) / 2.0
    horizontal_pair = np.abs(dst - src) != w  # left-right neighbours: a vertical unit segment of boundary
    # Pieces: (arc, grid cell) pairs, numbered densely.
    cells_x = -(-w // OWT_CELL)
    cell = (y.astype(np.int64) // OWT_CELL) * cells_x + (x.astype(np.int64) // OWT_CELL)
    _, piece = np.unique(a * (cells_x * (-(-h // OWT_CELL))) + cell, return_inverse=True)
    piece_normal = _piece_normals(piece, y, x, horizontal_pair)
    oriented = value * np.abs(np.cos(theta - piece_normal[piece]))
    length = np.bincount(a, minlength=num_arcs).astype(np.float64)
    total = np.bincount(a, weights=oriented, minlength=num_arcs)
    return total / np.maximum(length, 1.0), length


def _piece_normals(piece: np.ndarray, y: np.ndarray, x: np.ndarray, vertical_unit: np.ndarray) -> np.ndarray:
    """Normal angle in [0, pi) of the line fitted (PCA) to each piece's pixel-edge midpoints.

    Every pixel edge stands for a unit segment of boundary (variance 1/12 along it), so a piece of one pixel edge
    still has a defined direction.
    """
    n = np.bincount(piece).astype(np.float64)

    def mean(v: np.ndarray) -> np.ndarray:
        return np.bincount(piece, weights=v) / n

    my, mx = mean(y), mean(x)
    cyy = mean(y * y) - my * my + mean(vertical_unit / 12.0)
    cxx = mean(x * x) - mx * mx + mean((~vertical_unit) / 12.0)
    cxy = mean(x * y) - mx * my
    tangent = 0.5 * np.arctan2(2 * cxy, cxx - cyy)
    return np.mod(tangent + np.pi / 2, np.pi)


@dataclass(eq=False)
class Ucm:
    """An OWT-UCM hierarchy of one image: higra tree over watershed basins, its altitudes in [0, 1], the RAG."""

    shape: tuple[int, int]
    tree: hg.Tree
    altitudes: np.ndarray  # float64 values that are exactly float32 (so the stored float32 saliency cuts the same)
    rag: hg.UndirectedGraph
    _saliency: np.ndarray | None = field(default=None, init=False, repr=False)

    @property
    def num_basins(self) -> int:
        """Regions of the finest partition (watershed basins, the hierarchy's leaves)."""
        return int(self.tree.num_leaves())

    def edge_saliency(self) -> np.ndarray:
        """float32 [2, H, W]: UCM value of the edge right of (y, x) (channel 0) and below it (channel 1)."""
        if self._saliency is None:
            _, channel, pixel = _grid_edges(self.shape)
            if self.num_basins == 1:
                return np.zeros((2, *self.shape), np.float32)
            values = hg.saliency(self.tree, self.altitudes)  # on the pixel graph: the tree was built on the RAG
            self._saliency = _to_edge_map(values, self.shape, channel, pixel)
        return self._saliency

    def cut(self, regions: int | None = None, threshold: float | None = None) -> np.ndarray:
        """int32 [H, W] labels 0..n-1 (in raster order of first appearance) of one cut of the hierarchy.

        ``threshold`` t: merge every boundary with UCM value <= t (a horizontal cut; equals
        :func:`labels_from_saliency` of :meth:`edge_saliency`). ``regions`` n: undo the last n - 1 merges, which
        gives exactly n regions (n is clipped to [1, number of basins]); with tied altitudes this is not a
        horizontal cut (the tie is broken by merge order).
        """
        if (regions is None) == (threshold is None):
            raise ValueError("Ucm.cut needs exactly one of regions or threshold")
        if self.num_basins == 1:
            return np.zeros(self.shape, np.int32)
        if threshold is not None:
            leaf_labels = hg.labelisation_horizontal_cut_from_threshold(self.tree, self.altitudes, float(threshold))
        else:
            leaf_labels = self._cut_regions(int(regions))  # type: ignore[arg-type]
        pixels = hg.rag_back_project_vertex_weights(self.rag, leaf_labels)
        return canonical_labels(np.asarray(pixels).reshape(self.shape))

    def _cut_regions(self, regions: int) -> np.ndarray:
        """Leaf labels after undoing the last ``regions - 1`` merges (higra numbers BPT nodes in merge order)."""
        num_nodes = self.tree.num_vertices()
        first_undone = num_nodes - (min(max(regions, 1), self.num_basins) - 1)
        merged_into_parent = self.tree.parents() < first_undone
        owner = hg.propagate_sequential(self.tree, np.arange(num_nodes), merged_into_parent)
        return owner[: self.num_basins]


def owt_ucm(contours: ContourMap) -> Ucm:
    """The OWT-UCM hierarchy of a contour map (see the module docstring)."""
    strength = contours.strength
    if strength.ndim != 2 or contours.orientation.shape != strength.shape:
        raise ValueError(f"owt_ucm: strength {strength.shape} and orientation {contours.orientation.shape} differ")
    shape = (int(strength.shape[0]), int(strength.shape[1]))
    graph = hg.get_4_adjacency_graph(shape)
    sources, targets = graph.edge_list()
    basins = hg.labelisation_watershed(graph, watershed_weights(strength, sources, targets))
    rag = hg.make_region_adjacency_graph_from_labelisation(graph, basins)
    if rag.num_edges() == 0:  # one basin: a flat map; the hierarchy is the single region
        tree = hg.Tree(np.zeros(1, np.int64))
        return Ucm(shape, tree, np.zeros(1), rag)
    arc_weight, arc_length = owt_arc_weights(contours, sources, targets, rag.edge_map, rag.num_edges())
    tree, altitudes = hg.binary_partition_tree_average_linkage(rag, arc_weight, arc_length)
    # Average linkage is monotone in exact arithmetic; enforce it against round-off, then fix the float32 grid.
    leaves = np.zeros(tree.num_leaves())
    altitudes = hg.accumulate_and_max_sequential(tree, altitudes, leaves, hg.Accumulators.max)
    altitudes = np.clip(altitudes, 0.0, 1.0).astype(np.float32).astype(np.float64)
    return Ucm(shape, tree, altitudes, rag)


def superpixel_rows(
    contour_maps: Iterable[ContourMap],
    count: int,
    size: tuple[int, int],
    *,
    regions: int | None = None,
    threshold: float | None = None,
) -> dict[str, np.ndarray]:
    """The superpixels store's rows of ``count`` contour maps (taken one at a time, as ``contour_maps`` yields them):
    the OWT-UCM of each and its cut (:meth:`Ucm.cut`: ``regions`` superpixels, or every boundary at or below
    ``threshold`` removed), padded at the bottom and right to ``size``.

    ``ucm`` float32 ``[count, 2, *size]`` (:meth:`Ucm.edge_saliency`, 0 in the padding), ``labels`` int32
    ``[count, *size]`` (-1 in the padding), ``num_regions`` int32 ``[count]`` and ``extent`` int32 ``[count, 2]``.
    """
    saliency = np.zeros((count, 2, *size), np.float32)
    labels = np.full((count, *size), -1, np.int32)
    num_regions = np.zeros(count, np.int32)
    extent = np.zeros((count, 2), np.int32)
    for k, contour_map in zip(range(count), contour_maps, strict=True):
        hierarchy = owt_ucm(contour_map)
        superpixels = hierarchy.cut(regions=regions, threshold=threshold)
        height, width = superpixels.shape
        saliency[k, :, :height, :width] = hierarchy.edge_saliency()
        labels[k, :height, :width] = superpixels
        num_regions[k] = int(superpixels.max()) + 1
        extent[k] = superpixels.shape
    return {"ucm": saliency, "labels": labels, "num_regions": num_regions, "extent": extent}


def labels_from_saliency(edge_saliency: np.ndarray, threshold: float) -> np.ndarray:
    """int32 [H, W] labels of the cut at ``threshold`` of a stored UCM [2, H, W]: equals ``Ucm.cut(threshold=t)``.

    Two 4-neighbours share a region iff they are joined by a path of edges with saliency <= threshold.
    """
    if edge_saliency.ndim != 3 or edge_saliency.shape[0] != 2:
        raise ValueError(f"labels_from_saliency expects a [2, H, W] edge saliency, got {edge_saliency.shape}")
    shape = (int(edge_saliency.shape[1]), int(edge_saliency.shape[2]))
    graph, channel, pixel = _grid_edges(shape)
    values = _from_edge_map(edge_saliency, channel, pixel).astype(np.float64)
    labels = hg.graph_cut_2_labelisation(graph, (values > float(threshold)).astype(np.uint8))
    return canonical_labels(np.asarray(labels).reshape(shape))


def ucm_image(edge_saliency: np.ndarray) -> np.ndarray:
    """float32 [H, W] for display: each pixel's largest UCM value over its four incident edges."""
    right, down = edge_saliency[0], edge_saliency[1]
    out = np.maximum(right, down).astype(np.float32)
    out[:, 1:] = np.maximum(out[:, 1:], right[:, :-1])
    out[1:, :] = np.maximum(out[1:, :], down[:-1, :])
    return out
