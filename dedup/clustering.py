"""Cluster stage: duplicate groups from the pairs scored above threshold.

Two methods, chosen in the config (``clustering: {method: ...}``):

- ``components``: connected components of the match graph. Simple, but one false edge chains
  two entities together (A~B, B~C puts A and C in one cluster however different they are).
- ``density`` (default): first, a match edge whose two records share too few matched
  neighbours (less than ``min_support`` of them, Jaccard, each other not counted) is cut: in a
  true entity of three or more records the members match each other, while a record that
  links two groups without either group matching the other is a bridge. Then connected
  components, and any component whose match edges cover less than ``min_density`` of its
  possible pairs is re-split with a stricter threshold, up a ladder (0.8, 0.9, 0.95, 0.99),
  until every cluster is dense or the ladder ends: a chain of two entities joined by one weak
  edge is sparse, and its weak edge is the first to go. Edges scored 0.99 or more are never
  cut: a sparse cluster held together by sure edges is more likely an entity whose pairs
  blocking missed.

Both run on whole arrays with ``scipy.sparse`` products, ``csgraph`` and bincounts (no loop
over pairs). A
cluster's id is the smallest record id in it, so ids do not depend on row order or reruns.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dedup.config import ClusteringConfig

COMPONENTS = "components.parquet"  # each record's match-graph component: ``dedup.parts.save_components``
ANSWERS = "answers.parquet"  # the answers a run applied, by id: ``dedup.parts.save_answers``


def components(n_records: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Component label (0..k-1) per record for the graph with the given edges."""
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n_records, n_records))
    _, labels = connected_components(graph, directed=False)
    return labels


def supported(
    n_records: int, left: np.ndarray, right: np.ndarray, probability: np.ndarray, min_support: float, sure: float
) -> np.ndarray:
    """Which edges (all scored >= threshold) keep enough shared neighbours to stay (see module
    docstring); edges scored ``sure`` or more always stay. Repeated while cuts change the graph."""
    keep = np.ones(len(left), dtype=bool)
    if min_support <= 0 or len(left) == 0:
        return keep
    for _ in range(5):
        a, b = left[keep], right[keep]
        graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n_records, n_records)).tocsr()
        graph = ((graph + graph.T) > 0).astype(np.float32).tocsr()
        degree = np.asarray(graph.sum(axis=1)).ravel()
        common = np.asarray(graph[a].multiply(graph[b]).sum(axis=1)).ravel()
        others = degree[a] + degree[b] - 2 - common  # neighbours of either, the two not counted
        support = np.where(others > 0, common / np.maximum(others, 1), 1.0)
        weak = (support < min_support) & (probability[keep] < sure)
        if not weak.any():
            break
        keep[np.flatnonzero(keep)[weak]] = False
    return keep


def density_split(
    n_records: int,
    left: np.ndarray,
    right: np.ndarray,
    probability: np.ndarray,
    threshold: float,
    min_density: float,
    min_support: float = 0.0,
    ladder: tuple[float, ...] = ClusteringConfig().ladder,
) -> tuple[np.ndarray, np.ndarray]:
    """Weak bridges cut, then components, sparse ones re-split at stricter thresholds (see module
    docstring): the label per record, and which edges hold the clusters together."""
    keep = probability >= threshold
    edges = np.flatnonzero(keep)
    keep[edges[~supported(n_records, left[edges], right[edges], probability[edges], min_support, ladder[-1])]] = False
    labels = components(n_records, left[keep], right[keep])
    for stricter in (t for t in ladder if t > threshold):
        sizes = np.bincount(labels)
        inside = keep & (labels[left] == labels[right])
        edges = np.bincount(labels[left[inside]], minlength=len(sizes))
        possible = sizes * (sizes - 1) / 2
        sparse = edges < min_density * possible
        if not sparse.any():
            break
        keep &= ~(sparse[labels[left]] & (probability < stricter))
        labels = components(n_records, left[keep], right[keep])
    return rejoined(labels, left, right, probability, keep, threshold)


def rejoined(
    labels: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    probability: np.ndarray,
    keep: np.ndarray,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Clusters the cuts parted joined again where, on average, they match: average linkage.

    Two clusters whose mean match probability over all their pairs of records (a pair not scored
    at or above ``threshold`` counts 0) is at least ``threshold`` become one, most alike first,
    as long as any such two are left; the edges between them are kept again (``keep``), so the
    clusters are still the components of the kept edges. The cuts judge one edge at a time
    (its shared neighbours, its cluster's density): they part two fragments of one entity that
    blocking and scoring linked by many edges but not densely enough, and this puts back what,
    counted over every pair of the two, is more likely one entity than two. Only clusters that
    a cut edge joins can meet, so the clusters of one match-graph component never depend on
    another's. Each round merges the pairs of clusters that are each other's best partner
    (for average linkage the same clusters as merging the best pair one at a time).
    """
    labels, keep = labels.copy(), keep.copy()
    above = probability >= threshold
    while True:
        across = np.flatnonzero(above & ~keep & (labels[left] != labels[right]))
        if across.size == 0:
            break
        a, b = labels[left[across]], labels[right[across]]
        low, high = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
        count = int(labels.max()) + 1
        key, which = np.unique(low * count + high, return_inverse=True)
        low_u, high_u = key // count, key % count
        sizes = np.bincount(labels, minlength=count).astype(np.float64)
        mean = np.bincount(which, probability[across].astype(np.float64)) / (sizes[low_u] * sizes[high_u])
        good = np.flatnonzero(mean >= threshold)
        if good.size == 0:
            break
        order = good[np.lexsort((high_u[good], low_u[good], -mean[good]))]  # best first, ties by label
        rank = np.arange(order.size)
        best = np.full(count, order.size)
        np.minimum.at(best, low_u[order], rank)
        np.minimum.at(best, high_u[order], rank)
        mutual = order[(best[low_u[order]] == rank) & (best[high_u[order]] == rank)]
        chosen = np.zeros(key.size, dtype=bool)
        chosen[mutual] = True
        keep[across[chosen[which]]] = True
        merged = components(count, low_u[mutual], high_u[mutual])
        labels = merged[labels]
    return np.unique(labels, return_inverse=True)[1].astype(labels.dtype), keep


def cluster_labels(
    n_records: int,
    left: np.ndarray,
    right: np.ndarray,
    probability: np.ndarray,
    threshold: float,
    settings: ClusteringConfig,
    apart: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Cluster label per record by the configured method; ``apart``: pairs of records (rows) a
    person said are different, which then end in different clusters (``kept_apart``)."""
    if settings.method == "components":
        keep = probability >= threshold
        labels = components(n_records, left[keep], right[keep])
    else:
        labels, keep = density_split(
            n_records, left, right, probability, threshold, settings.min_density, settings.min_support, settings.ladder
        )
    if apart is None or len(apart[0]) == 0:
        return labels
    return kept_apart(labels, left[keep], right[keep], probability[keep], *apart)


def kept_apart(
    labels: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    probability: np.ndarray,
    apart_left: np.ndarray,
    apart_right: np.ndarray,
) -> np.ndarray:
    """``labels`` with every cluster that holds two records a person said are different cut at
    its weakest links until they part.

    An answer decides its own pair (probability 0), but the two records can still meet through
    others: A~C and C~B put A and B in one cluster however sure the person was. So such a
    cluster loses its weakest edges (``left``, ``right``, ``probability``: the edges that hold
    the clusters together), level by level, up to the lowest level that separates the two; the
    pieces become clusters. Answers are taken one after another, each in its current cluster.
    Edges scored 1.0 (answered matches, identical records) are never cut: if only they join
    the two, the answers contradict each other and the cluster stays as it is.
    """
    labels = labels.copy()
    together = np.flatnonzero(labels[apart_left] == labels[apart_right])
    if together.size == 0:
        return labels
    # only the edges of the clusters concerned are looked at again
    concerned = np.isin(labels[left], labels[apart_left[together]])
    left, right, probability = left[concerned], right[concerned], probability[concerned]
    fresh = labels.max() + 1
    for i in together:  # one per answer that a cluster contradicts: what a person gave, not every pair
        a, b = apart_left[i], apart_right[i]
        if labels[a] != labels[b]:  # an earlier cut parted them already
            continue
        cluster = labels[a]
        members = np.flatnonzero(labels == cluster)
        inside = (labels[left] == cluster) & (labels[right] == cluster)
        el = np.searchsorted(members, left[inside])
        er = np.searchsorted(members, right[inside])
        ep = probability[inside]
        cut = _weakest_cut(len(members), el, er, ep, *np.searchsorted(members, [a, b]))
        if cut is None:
            continue
        labels[members] = fresh + cut
        fresh += int(cut.max()) + 1
    return np.unique(labels, return_inverse=True)[1].astype(labels.dtype)  # numbered 0..k-1 again


def _weakest_cut(
    n: int, left: np.ndarray, right: np.ndarray, probability: np.ndarray, a: int, b: int
) -> np.ndarray | None:
    """Components of one cluster (``n`` records, its edges) once the edges up to the lowest level
    that parts ``a`` from ``b`` are gone; None when only edges scored 1.0 join them."""
    levels = np.unique(probability[probability < 1.0])  # cut levels, weakest first

    def parts(level: float) -> np.ndarray:
        stay = probability > level
        return components(n, left[stay], right[stay])

    if levels.size == 0 or (cut := parts(levels[-1]))[a] == cut[b]:
        return None
    low, high = 0, len(levels) - 1  # the lowest level that parts them: removing more never rejoins
    while low < high:
        middle = (low + high) // 2
        if (trial := parts(levels[middle]))[a] != trial[b]:
            high = middle
        else:
            low = middle + 1
    return parts(levels[low])


def cluster_records(
    records: pl.DataFrame,
    id_column: str,
    left: np.ndarray,
    right: np.ndarray,
    probability: np.ndarray,
    threshold: float,
    settings: ClusteringConfig | None = None,
) -> pl.DataFrame:
    """Every input row and column plus ``cluster_id``, ``cluster_size`` and ``cluster_confidence``."""
    labels = cluster_labels(records.height, left, right, probability, threshold, settings or ClusteringConfig())
    total, count = confidence_sums(labels, left, right, probability)
    return cluster_frame(records, id_column, labels, total, count)


def cluster_frame(
    records: pl.DataFrame, id_column: str, labels: np.ndarray, total: np.ndarray, count: np.ndarray
) -> pl.DataFrame:
    """The clusters table from per-record labels and ``confidence_sums`` (added up over pieces).

    ``cluster_confidence`` per record = mean match probability to the other members of its
    cluster over scored pairs. Low values flag records that joined a cluster through a neighbour
    rather than on their own evidence; null for records alone in their cluster.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)
    records = records.rename(input_renames(records.columns))
    id_column = input_renames([id_column]).get(id_column, id_column) if id_column in OUTPUT_COLUMNS else id_column
    return (
        records.with_columns(pl.Series("_cluster", labels), pl.Series("cluster_confidence", confidence))
        .with_columns(
            pl.col(id_column).min().over("_cluster").alias("cluster_id"),
            pl.len().over("_cluster").cast(pl.Int64).alias("cluster_size"),
        )
        .drop("_cluster")
        .select(pl.exclude("cluster_confidence"), "cluster_confidence")
    )


OUTPUT_COLUMNS = ("cluster_id", "cluster_size", "cluster_confidence")


def input_renames(columns: list[str]) -> dict[str, str]:
    """Input columns named like the columns clustering adds keep their values as ``<name>_input``
    (``_input_input`` ... if that is taken too), so every input column survives."""
    taken = set(columns) | set(OUTPUT_COLUMNS)
    renames = {}
    for column in columns:
        if column in OUTPUT_COLUMNS:
            new = f"{column}_input"
            while new in taken:
                new += "_input"
            renames[column] = new
            taken.add(new)
    return renames


def confidence_sums(
    labels: np.ndarray, left: np.ndarray, right: np.ndarray, probability: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per record: the sum and count of match probabilities of its scored pairs inside its cluster."""
    n = len(labels)
    inside = labels[left] == labels[right]
    weights = probability[inside].astype(np.float64)
    total = np.bincount(left[inside], weights, n) + np.bincount(right[inside], weights, n)
    count = np.bincount(left[inside], minlength=n) + np.bincount(right[inside], minlength=n)
    return total, count


def cluster_confidence(labels: np.ndarray, left: np.ndarray, right: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """Per record: mean match probability to the other members of its cluster (NaN when alone)."""
    total, count = confidence_sums(labels, left, right, probability)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)
