"""Duplicates and leakage: exact copies (same decoded pixels) within and across splits, and near
duplicates across splits that survive JPEG re-encoding, 1-2 px shifts, brightness changes and resizing.

Why the matching is written here rather than taken from a perceptual-hash library: imagehash's
pHash/dHash (Hamming <= 8) find every re-encoded and brightened copy on CIFAR but 0-1 of 10 copies
shifted by 1-2 px (measured in issue 9), and loosening the threshold buys shifts only with dozens to
thousands of false pairs. A hash compares two fixed grids, so a shift moves every cell. Here the shift
is searched instead, in two stages that both use well-kept libraries for the heavy parts:

1. Candidates (faiss): every image becomes a grayscale thumbnail (``thumbnail_size``); the central
   crop, ``max_shift`` px in from each edge, is area-downsampled to ``feature_size`` squared and
   normalised to zero mean and unit length, so brightness and contrast changes cancel and the squared
   L2 distance / 2 is 1 - Pearson correlation. The larger split of each pair of splits is indexed
   (HNSW: sub-quadratic; no all-pairs loop), and the other split queries it once per shift (dy, dx) in
   [-max_shift, max_shift]^2 with its crop moved by (dy, dx): one of those crops lines up with a
   shifted copy exactly. Neighbours closer than ``candidate_distance`` are candidates.
2. Verification (numpy): the same shift search on edge maps (Sobel of the lightly blurred thumbnail)
   at full thumbnail resolution. Edges tell apart look-alike scenes (two ships on grey sea) that the
   low-resolution appearance confuses, while appearance forgives what edges do not (a copy with a new
   border). The pair's distance is the mean of the two (1 - correlation) values, minimised over shifts;
   ``max_distance`` separates copies from look-alikes (0.09; on the real CIFAR subset planted copies
   score <= 0.023, genuine near-duplicates 0.055-0.068, the closest unrelated pairs >= 0.11).

Nearly flat thumbnails (std < 1 grey level) have no structure to compare and are never near pairs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import torch

from litvision.data_audit.features import FeatureConfirmation
from litvision.data_audit.outputs import pyplot, save_figure, write_csv
from litvision.data_audit.scan import ScanResult
from litvision.data_audit.section import Section, Table, markdown_table
from litvision.data_audit.sources import AuditData
from litvision.utils.errors import ConfigError
from litvision.utils.names import escape_name
from litvision.utils.optional import require

log = logging.getLogger(__name__)

COLUMNS = ["a", "b", "kind", "distance"]
# with audit.label_errors.method=features: the pair's backbone-feature cosine similarity and whether it
# reaches audit.duplicates.feature_min_similarity
CONFIRM_COLUMNS = ["feature_similarity", "confirmed"]
EXACT, NEAR = "exact", "near"
FLAT_STD = 1.0  # grey levels: below this a thumbnail crop is treated as featureless
PAIR_CHUNK = 4096  # candidate pairs verified per numpy batch


@dataclass(frozen=True)
class Pair:
    a: str  # the id from the earlier source split (the training one first)
    b: str
    kind: str
    distance: float


@dataclass
class NearDuplicateSearch:
    """Shift-robust near-duplicate search between two sets of grayscale thumbnails (see module docs)."""

    max_shift: int = 2
    feature_size: int = 14
    neighbors: int = 3
    candidate_distance: float = 0.2
    max_distance: float = 0.09
    index: str = "hnsw"

    def __post_init__(self) -> None:
        if self.index not in ("hnsw", "flat"):
            raise ConfigError(
                f"audit.duplicates.index={self.index}: use hnsw (sub-quadratic) or flat (exact, small data)"
            )
        if self.max_shift < 0 or self.neighbors < 1 or self.feature_size < 2:
            raise ConfigError("audit.duplicates: max_shift >= 0, neighbors >= 1 and feature_size >= 2 are required")

    @property
    def offsets(self) -> list[tuple[int, int]]:
        r = range(-self.max_shift, self.max_shift + 1)
        return [(dy, dx) for dy in r for dx in r]

    def _crop(self, maps: np.ndarray, dy: int, dx: int) -> np.ndarray:
        m, size = self.max_shift, maps.shape[1]
        if size - 2 * m < self.feature_size:
            raise ConfigError(
                f"audit.duplicates.thumbnail_size={size} leaves a {size - 2 * m} px crop, smaller than "
                f"feature_size={self.feature_size}: raise thumbnail_size or lower feature_size/max_shift"
            )
        return maps[:, m + dy : size - m + dy, m + dx : size - m + dx]

    def features(self, thumbnails: np.ndarray, dy: int = 0, dx: int = 0) -> np.ndarray:
        """Unit-length, zero-mean low-resolution features of the crop moved by (dy, dx)."""
        crop = torch.from_numpy(np.ascontiguousarray(self._crop(thumbnails, dy, dx), dtype=np.float32))
        small = torch.nn.functional.interpolate(crop[:, None], size=(self.feature_size,) * 2, mode="area")
        flat = small.flatten(1).numpy()
        return _unit_rows(flat, crop.flatten(1).std(dim=1).numpy() >= FLAT_STD)

    def edges(self, thumbnails: np.ndarray) -> np.ndarray:
        """(N, S, S, 2) float32 x/y gradients of the thumbnails blurred by sigma 0.7 (JPEG noise)."""
        out = np.empty((*thumbnails.shape, 2), np.float32)
        for i, thumb in enumerate(thumbnails):
            blurred = cv2.GaussianBlur(thumb.astype(np.float32), (0, 0), 0.7)
            out[i, ..., 0] = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3)
            out[i, ..., 1] = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3)
        return out

    def build_index(self, features: np.ndarray):
        faiss = require("faiss", "audit", "the audit's near-duplicate search")

        if self.index == "flat":
            index = faiss.IndexFlatL2(features.shape[1])
        else:
            index = faiss.IndexHNSWFlat(features.shape[1], 32)
            index.hnsw.efConstruction = 80
            index.hnsw.efSearch = max(64, 4 * self.neighbors)
        index.add(np.ascontiguousarray(features, dtype=np.float32))
        return index

    def candidates(self, base: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query index, base index, coarse distance) of every candidate pair, each pair once."""
        if len(base) == 0 or len(queries) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        index = self.build_index(self.features(base))
        k = min(self.neighbors, len(base))
        found_q, found_b, found_d = [], [], []
        for dy, dx in self.offsets:
            distances, neighbours = index.search(self.features(queries, dy, dx), k)
            coarse = distances / 2.0  # squared L2 of unit vectors / 2 = 1 - correlation
            keep = (neighbours >= 0) & (coarse <= self.candidate_distance)
            found_q.append(np.nonzero(keep)[0])
            found_b.append(neighbours[keep])
            found_d.append(coarse[keep])
        q, b, d = np.concatenate(found_q), np.concatenate(found_b).astype(np.int64), np.concatenate(found_d)
        key = q * len(base) + b
        order = np.lexsort((d, key))
        first = np.ones(len(order), bool)
        first[1:] = key[order][1:] != key[order][:-1]
        chosen = order[first]
        return q[chosen], b[chosen], np.maximum(d[chosen], 0.0).astype(np.float32)

    def edge_distance(self, base_edges: np.ndarray, query_edges: np.ndarray) -> np.ndarray:
        """Row-wise 1 - correlation of edge maps, minimised over shifts of the query."""
        centre = _unit_rows(self._crop(base_edges, 0, 0).reshape(len(base_edges), -1))
        best = np.full(len(base_edges), 2.0, np.float32)
        for dy, dx in self.offsets:
            moved = _unit_rows(self._crop(query_edges, dy, dx).reshape(len(query_edges), -1))
            best = np.minimum(best, 1.0 - np.einsum("ij,ij->i", centre, moved))
        return best

    def search(self, base: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query index, base index, distance) of the near-duplicate pairs between two thumbnail sets."""
        q, b, coarse = self.candidates(base, queries)
        distance = np.empty(len(q), np.float32)
        for start in range(0, len(q), PAIR_CHUNK):
            part = slice(start, start + PAIR_CHUNK)
            edge = self.edge_distance(self.edges(base[b[part]]), self.edges(queries[q[part]]))
            distance[part] = (coarse[part] + edge) / 2.0
        near = distance <= self.max_distance
        return q[near], b[near], distance[near]


def _unit_rows(rows: np.ndarray, usable: np.ndarray | None = None) -> np.ndarray:
    rows = rows - rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    ok = norms[:, 0] > 1e-6 if usable is None else usable & (norms[:, 0] > 1e-6)
    out = np.zeros_like(rows, dtype=np.float32)
    out[ok] = rows[ok] / norms[ok]
    return out


def exact_pairs(scans: dict[str, ScanResult]) -> list[Pair]:
    """Images with identical decoded pixels: each copy paired with the first one (split order, then position)."""
    first: dict[str, str] = {}
    pairs = []
    for scan in scans.values():
        for sample_id, digest in zip(scan.ids[scan.readable], scan.pixel_hash[scan.readable], strict=True):
            original = first.setdefault(digest, sample_id)
            if original != sample_id:
                pairs.append(Pair(str(original), str(sample_id), EXACT, 0.0))
    return pairs


def near_pairs(scans: dict[str, ScanResult], search: NearDuplicateSearch, exact: list[Pair]) -> list[Pair]:
    """Near duplicates between every two source splits (exact copies are reported as exact only)."""
    known = {(p.a, p.b) for p in exact} | {(p.b, p.a) for p in exact}
    pairs = []
    for first, second in combinations(scans.values(), 2):
        # the larger split is indexed, the smaller one queries it once per shift
        base, queries = (first, second) if len(first.ids) >= len(second.ids) else (second, first)
        base_ok, query_ok = np.flatnonzero(base.readable), np.flatnonzero(queries.readable)
        log.info(
            "audit: near duplicates between %s (%d, indexed) and %s (%d)",
            base.split,
            len(base_ok),
            queries.split,
            len(query_ok),
        )
        q, b, distance = search.search(base.thumbnails[base_ok], queries.thumbnails[query_ok])
        for qi, bi, d in zip(q, b, distance, strict=True):
            base_id, query_id = str(base.ids[base_ok[bi]]), str(queries.ids[query_ok[qi]])
            a_id, b_id = (base_id, query_id) if base is first else (query_id, base_id)
            if (a_id, b_id) not in known:
                pairs.append(Pair(a_id, b_id, NEAR, float(d)))
    return pairs


def source_split_of(sample_id: str, data: AuditData) -> str:
    split, _ = data.locate(sample_id)
    return split.name


def run_duplicates(
    data: AuditData,
    scans: dict[str, ScanResult],
    out_dir: Path,
    search: NearDuplicateSearch,
    max_rows: int = 64,
    embedding_check=None,
    confirmation: FeatureConfirmation | None = None,
) -> tuple[Section, list[Pair]]:
    """The section, and every pair found (exact within/across splits, near across splits).

    ``confirmation``: backbone features add the columns ``feature_similarity,confirmed`` to the CSVs
    (every pair is kept: a pair the features do not confirm is one to look at, not dropped)."""
    section = Section("duplicates", "Duplicates and leakage")
    exact = exact_pairs(scans)
    near = near_pairs(scans, search, exact)
    if embedding_check is not None and near:
        near = embedding_check(near)
    pairs = sorted(exact + near, key=lambda p: (p.distance, p.a, p.b))
    columns = list(COLUMNS)
    extra: list[list[str]] = [[] for _ in pairs]
    if confirmation is not None:
        similarity = confirmation.similarities(pairs) if pairs else np.zeros(0, np.float32)
        confirmed = confirmation.confirmed(similarity)
        columns += CONFIRM_COLUMNS
        extra = [[f"{s:.6f}", "true" if c else "false"] for s, c in zip(similarity, confirmed, strict=True)]
        section.metrics["duplicates/confirmed_by_features"] = float(confirmed.sum())
    section.files.append(
        write_csv(
            out_dir / "duplicates.csv",
            columns,
            [[p.a, p.b, p.kind, f"{p.distance:.6f}", *more] for p, more in zip(pairs, extra, strict=True)],
        )
    )

    split_of = {sid: name for name, scan in scans.items() for sid in scan.ids}
    cross = [p for p in pairs if split_of[p.a] != split_of[p.b]]
    within = [p for p in pairs if split_of[p.a] == split_of[p.b]]
    ours = [[p.a, p.b, p.kind, f"{p.distance:.6f}", data.our_split_of(p.a), data.our_split_of(p.b)] for p in pairs]
    section.files.append(
        write_csv(
            out_dir / "duplicates_our_splits.csv",
            [*COLUMNS, "our_split_a", "our_split_b", *columns[len(COLUMNS) :]],
            [[*row, *more] for row, more in zip(ours, extra, strict=True)],
        )
    )

    combos: dict[tuple[str, str, str], int] = {}
    for p, row in zip(pairs, ours, strict=True):
        low, high = sorted((row[4], row[5]))
        combo = (p.kind, low, high)
        combos[combo] = combos.get(combo, 0) + 1
    leaks = sum(n for (kind, x, y), n in combos.items() if _is_leak(x, y))
    section.metrics.update(
        {
            "duplicates/exact_within_split": float(sum(p.kind == EXACT for p in within)),
            "duplicates/exact_cross_split": float(sum(p.kind == EXACT for p in cross)),
            "duplicates/near_cross_split": float(sum(p.kind == NEAR for p in cross)),
            "duplicates/leaks_into_evaluation": float(leaks),
        }
    )
    section.markdown += [
        f"Exact duplicates (identical decoded pixels) within and across the source splits, and near duplicates "
        f"across them (re-encoded, shifted by up to {search.max_shift} thumbnail px, brightness-changed or resized "
        f"copies; distance <= {search.max_distance}, 0 = identical). All pairs: `duplicates.csv` (`a,b,kind,distance`); "
        "with the split of a run each lands in: `duplicates_our_splits.csv`.",
        "",
        *markdown_table(
            ["", "exact", "near"],
            [
                ["within a source split", sum(p.kind == EXACT for p in within), "not searched"],
                ["across source splits", sum(p.kind == EXACT for p in cross), sum(p.kind == NEAR for p in cross)],
            ],
        ),
        "",
        "Where the pairs land in a run with this config (a pair with one image in train and one in val or test "
        "is leakage: the model has seen the evaluation image):",
        "",
        *(
            markdown_table(
                ["kind", "split of one", "split of the other", "pairs", "leak"],
                [[k, x, y, n, "yes" if _is_leak(x, y) else ""] for (k, x, y), n in sorted(combos.items())],
            )
            if combos
            else ["No duplicate pairs."]
        ),
        "",
    ]
    if confirmation is not None:
        section.markdown += [
            f"Backbone features ({confirmation.store.source}) confirm "
            f"{int(section.metrics['duplicates/confirmed_by_features'])} of {len(pairs)} pairs (cosine similarity "
            f">= {confirmation.min_similarity}; columns `feature_similarity,confirmed` of both CSVs). An unconfirmed "
            "pair is kept: look at it.",
            "",
        ]
    if leaks:
        section.warnings.append(
            f"{leaks} duplicate pair(s) put the same picture in train and in val/test: evaluation is optimistic. "
            "audit.write_exclusions=true writes the ids to drop (dataset.exclude_ids=...)."
        )
    shown = cross[:max_rows]
    if shown:
        thumbs = [[data.thumbnail(p.a), data.thumbnail(p.b)] for p in shown]
        section.tables.append(
            Table(
                "duplicates",
                [*COLUMNS, "our_split_a", "our_split_b"],
                [[p.a, p.b, p.kind, p.distance, data.our_split_of(p.a), data.our_split_of(p.b)] for p in shown],
                image_columns=["image_a", "image_b"],
                thumbnails=thumbs,
            )
        )
        section.figures.append(_grid(shown, thumbs, out_dir / "duplicates.png"))
        section.markdown += [
            f"The {len(shown)} closest cross-split pairs (a | b):",
            "",
            *markdown_table(COLUMNS, [[p.a, p.b, p.kind, p.distance] for p in shown[:20]]),
            "",
            "![closest cross-split pairs](duplicates.png)",
        ]
    return section, pairs


def _is_leak(x: str, y: str) -> bool:
    parts_x, parts_y = set(x.split("+")), set(y.split("+"))
    return bool(
        ("train" in parts_x and parts_y & {"val", "test"}) or ("train" in parts_y and parts_x & {"val", "test"})
    )


def _grid(pairs: list[Pair], thumbs: list[list[np.ndarray]], path: Path, per_row: int = 4) -> Path:
    plt = pyplot()
    rows = (len(pairs) + per_row - 1) // per_row
    figure, axes = plt.subplots(rows, 2 * per_row, figsize=(2 * per_row * 1.3, rows * 1.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (pair, (a, b)) in enumerate(zip(pairs, thumbs, strict=True)):
        left, right = axes[k // per_row, 2 * (k % per_row)], axes[k // per_row, 2 * (k % per_row) + 1]
        left.imshow(a)
        right.imshow(b)
        left.set_title(escape_name(pair.a), fontsize=6)
        right.set_title(f"{escape_name(pair.b)}\n{pair.kind} {pair.distance:.3f}", fontsize=6)
    return save_figure(figure, path)
