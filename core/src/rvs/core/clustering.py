"""People: photo faces and video tracks grouped by who they show (pure: numpy and scikit-learn, no I/O).

A batch or an incremental step has two stages:
1. join: a new (or still loose) unit joins an existing person when at least `join_members` of that
   person's members (all of them, for a smaller person) are at least `min_score` similar to it;
   among several such people, the one with the highest mean similarity over those members wins.
   Existing people are never changed or merged.
2. form: the units that joined nobody are clustered among themselves with DBSCAN over the sparse
   graph of pairs at least `min_score` similar, each unit weighted by the faces it stands for: a
   person needs a core of `min_faces` faces within the bar of one unit. The rest stay loose.

DBSCAN links like single linkage, so one bridge of look-alike faces merges two people (on LFW: the
Bush brothers, the Williams sisters): the bar sits a little above the model's search threshold, where
such bridges are rare. The graph is built in blocks of rows, so only the pairs above the bar are held.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from scipy import sparse
from sklearn.cluster import DBSCAN

# Rows of similarities computed at a time: a block of 512 rows against 100k units is 200 MB.
BLOCK_ROWS = 512
# DBSCAN ignores pairs the sparse graph does not store, and sklearn may drop stored zeros: a pair of
# identical vectors keeps this tiny distance instead of 0 so it stays an edge.
MIN_DISTANCE = 1e-6


@dataclass(frozen=True)
class Unit:
    """One thing to cluster: a photo's face or a video track (its template)."""

    key: str  # face id or track id; unique
    vector: np.ndarray  # unit-norm float32, the model's dimension
    faces: int = 1  # faces it stands for (a track's samples)


@dataclass(frozen=True)
class ClusterRules:
    min_score: float  # cosine similarity bar: pairs below it are never linked (see rules_for)
    min_faces: int = 3  # faces a new person needs (sum of Unit.faces over its core)
    join_members: int = 2  # members of an existing person a unit must pass the bar with to join it


# The bar closes this share of the gap between the model's threshold and 1. Measured with sface on
# LFW (rvs eval people, eval/results/people-lfw.md): at 0.1 the 610 people with >= 4 photos already
# merge Jeb into George W. Bush (pairwise precision 0.97); at 0.15 none merge, recall 0.98.
# Each model's share is in rvs.core.faces.registry (dlib-resnet's strangers sit closer: 0.4).
BAR_SHARE = 0.15


def rules_for(model_threshold: float, share: float = BAR_SHARE, **overrides: object) -> ClusterRules:
    """Default rules for a model whose same-person threshold is `model_threshold`: the bar closes
    `share` of the gap between the threshold and 1 (sface 0.54 -> 0.609, dlib-resnet 0.92 -> 0.932;
    a negative share goes below the threshold); `overrides` replace any field, min_score included."""
    if not -1.0 <= model_threshold < 1.0:
        raise ValueError(f"model threshold {model_threshold} is not a cosine similarity below 1")
    fields: dict[str, object] = {"min_score": 1.0 - (1.0 - share) * (1.0 - model_threshold)}
    fields.update(overrides)
    return ClusterRules(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Update:
    joined: dict[str, str]  # new (or loose) unit key -> id of the existing person it joins
    formed: list[list[str]]  # new people: each a sorted list of unit keys; sorted by first key
    loose: list[str]  # units left unclustered (stay searchable; offered again next update)


def update(
    people: Mapping[str, Sequence[Unit]], loose: Sequence[Unit], new: Sequence[Unit], rules: ClusterRules
) -> Update:
    """Incremental step: `new` units (and the earlier `loose` ones) join existing people (whose current
    members are given) or form new people among themselves; the rest stay loose. Existing people are
    never changed or merged here. Deterministic: the same inputs in any order give the same Update."""
    candidates = _sorted_unique([*loose, *new])
    joined = _join(people, candidates, rules)
    rest = [u for u in candidates if u.key not in joined]
    formed, left = _form(rest, rules)
    return Update(joined=joined, formed=formed, loose=left)


def cluster(units: Sequence[Unit], rules: ClusterRules) -> Update:
    """Every unit from scratch: new people and loose units only."""
    return update({}, [], units, rules)


def _sorted_unique(units: Sequence[Unit]) -> list[Unit]:
    """Sorted by key, so that every later stage sees the same order whatever order the caller used."""
    ordered = sorted(units, key=lambda u: u.key)
    for a, b in pairwise(ordered):
        if a.key == b.key:
            raise ValueError(f"unit {a.key!r} is given twice")
    return ordered


def _matrix(units: Sequence[Unit]) -> np.ndarray:
    return np.stack([np.asarray(u.vector, np.float32) for u in units]) if units else np.zeros((0, 0), np.float32)


def _pairs_above(a: np.ndarray, b: np.ndarray, bar: float) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(rows of a, rows of b, similarities) of every pair at least `bar` similar, a block at a time."""
    for start in range(0, len(a), BLOCK_ROWS):
        sims = a[start : start + BLOCK_ROWS] @ b.T
        rows, cols = np.nonzero(sims >= bar)
        yield rows + start, cols, sims[rows, cols]


def _graph(vectors: np.ndarray, bar: float) -> sparse.csr_matrix:
    """The pairs of `vectors` at least `bar` similar, as a symmetric sparse matrix of cosine distances.
    Only the upper triangle is computed (half the work), then mirrored: the matrix is symmetric even
    where rounding would make sims[i, j] and sims[j, i] fall either side of the bar."""
    n = len(vectors)
    found = []
    for start in range(0, n, BLOCK_ROWS):
        sims = vectors[start : start + BLOCK_ROWS] @ vectors[start:].T
        rows, cols = np.nonzero(np.triu(sims >= bar))  # cols from `start`: the block's diagonal is (i, i)
        found.append((rows + start, cols + start, sims[rows, cols]))
    rows, cols, sims = (np.concatenate(x) for x in zip(*found, strict=True))
    off = rows != cols
    distances = np.maximum(1.0 - sims.astype(np.float64), MIN_DISTANCE)
    return sparse.csr_matrix(
        (np.r_[distances, distances[off]], (np.r_[rows, cols[off]], np.r_[cols, rows[off]])), shape=(n, n)
    )


def _join(people: Mapping[str, Sequence[Unit]], candidates: list[Unit], rules: ClusterRules) -> dict[str, str]:
    """Each candidate's person, for the candidates that pass the bar with enough of one person's members."""
    person_ids = sorted(people)
    members = [u for p in person_ids for u in people[p]]
    if not candidates or not members:
        return {}
    owner = np.repeat(np.arange(len(person_ids)), [len(people[p]) for p in person_ids])
    size = np.bincount(owner, minlength=len(person_ids))
    needed = np.minimum(size, rules.join_members)
    # Per (candidate, person): the similarities above the bar, sorted descending within the pair.
    found = [(r, owner[c], s) for r, c, s in _pairs_above(_matrix(candidates), _matrix(members), rules.min_score)]
    if not found:
        return {}
    cand = np.concatenate([f[0] for f in found])
    person = np.concatenate([f[1] for f in found])
    sims = np.concatenate([f[2] for f in found])
    order = np.lexsort((-sims, person, cand))
    cand, person, sims = cand[order], person[order], sims[order]
    # Rank of each similarity within its (candidate, person) run: keep the top `needed` of each.
    run_start = np.r_[True, (cand[1:] != cand[:-1]) | (person[1:] != person[:-1])]
    first = np.maximum.accumulate(np.where(run_start, np.arange(len(cand)), 0))
    top = (np.arange(len(cand)) - first) < needed[person]
    cand, person, sims = cand[top], person[top], sims[top]
    pair = cand.astype(np.int64) * len(person_ids) + person
    keys, start, count = np.unique(pair, return_index=True, return_counts=True)
    mean = np.add.reduceat(sims, start) / count
    enough = count >= needed[keys % len(person_ids)]
    best: dict[int, tuple[float, int]] = {}
    for k, m in zip(keys[enough], mean[enough], strict=True):
        c, p = divmod(int(k), len(person_ids))
        if c not in best or m > best[c][0]:  # ties keep the first person id, in sorted order
            best[c] = (float(m), p)
    return {candidates[c].key: person_ids[p] for c, (_, p) in best.items()}


def _form(units: list[Unit], rules: ClusterRules) -> tuple[list[list[str]], list[str]]:
    """New people among `units` (sorted by key), and the keys left loose."""
    if not units:
        return [], []
    graph = _graph(_matrix(units), rules.min_score)
    weights = np.array([u.faces for u in units], np.float64)
    # The graph holds only the pairs above the bar, so every stored edge is a neighbour (an eps of 2,
    # the largest cosine distance, rather than 1 - bar, which rounding could put just below an edge).
    dbscan = DBSCAN(eps=2.0, min_samples=rules.min_faces, metric="precomputed")
    labels = dbscan.fit_predict(graph, sample_weight=weights)
    groups: dict[int, list[str]] = {}
    for unit, label in zip(units, labels, strict=True):
        groups.setdefault(int(label), []).append(unit.key)
    loose = groups.pop(-1, [])
    return sorted(groups.values(), key=lambda keys: keys[0]), loose
