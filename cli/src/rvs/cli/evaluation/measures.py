"""Retrieval and verification measures, as plain functions of ranked relevance lists and scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

K = 20  # the prototype's cut-off


def portion_at_k(relevant: Sequence[bool], k: int = K) -> float:
    """The prototype's measure: the share of the top-k results that show the query's person."""
    return sum(relevant[:k]) / k


def normalised_portion_at_k(relevant: Sequence[bool], n_relevant: int, k: int = K) -> float:
    """portion_at_k divided by its ceiling: a person with 3 other photos can fill 3 of 20 places."""
    return sum(relevant[:k]) / min(k, n_relevant) if n_relevant else 0.0


def average_precision_at_k(relevant: Sequence[bool], n_relevant: int, k: int = K) -> float:
    """AP@k: mean precision at the ranks of the relevant results, over min(k, n_relevant)."""
    if not n_relevant:
        return 0.0
    hits, total = 0, 0.0
    for rank, rel in enumerate(relevant[:k], start=1):
        if rel:
            hits += 1
            total += hits / rank
    return total / min(k, n_relevant)


@dataclass(frozen=True)
class Verification:
    accuracy: float
    std: float
    threshold: float  # mean of the per-fold thresholds
    folds: int


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold (score >= t means "same person") with the highest accuracy."""
    candidates = np.unique(scores)
    accuracies = [np.mean((scores >= t) == same) for t in candidates]
    return float(candidates[int(np.argmax(accuracies))])


def verification_accuracy(scores: np.ndarray, same: np.ndarray, fold: np.ndarray) -> Verification:
    """The LFW protocol: for each fold, pick the threshold on the other folds, test on this one."""
    accs, thresholds = [], []
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        t = best_threshold(scores[train], same[train])
        thresholds.append(t)
        accs.append(float(np.mean((scores[test] >= t) == same[test])))
    return Verification(float(np.mean(accs)), float(np.std(accs)), float(np.mean(thresholds)), len(accs))


@dataclass(frozen=True)
class Curve:
    thresholds: list[float]
    precision: list[float]
    recall: list[float]

    def best_f1(self) -> tuple[float, float, float, float]:
        """(threshold, precision, recall, F1) where F1 peaks."""
        p, r = np.asarray(self.precision), np.asarray(self.recall)
        f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
        i = int(np.argmax(f1))
        return self.thresholds[i], float(p[i]), float(r[i]), float(f1[i])


def pr_curve(scores: np.ndarray, relevant: np.ndarray, n_relevant: int, thresholds: np.ndarray) -> Curve:
    """Precision and recall of "every result scoring at least t", pooled over all queries.

    `scores`/`relevant` hold every (query, result) pair the searches returned; `n_relevant` counts
    all pairs that should be found, including those of faces the detector missed."""
    precision, recall = [], []
    for t in thresholds:
        kept = scores >= t
        found = int(np.sum(relevant & kept))
        precision.append(found / int(np.sum(kept)) if np.any(kept) else 1.0)
        recall.append(found / n_relevant if n_relevant else 0.0)
    return Curve([float(t) for t in thresholds], precision, recall)


@dataclass
class Grouping:
    """How well predicted groups match true labels: pairwise (over pairs of items, so large people
    weigh more) and BCubed (over items). An item in no group counts as a group of its own."""

    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float


def grouping(predicted: Sequence[str], truth: Sequence[str]) -> Grouping:
    """`predicted[i]` is item i's group ("" for none), `truth[i]` its true label."""
    groups = [g if g else f"\0single {i}" for i, g in enumerate(predicted)]
    _, group = np.unique(groups, return_inverse=True)
    _, label = np.unique(np.asarray(truth), return_inverse=True)
    both = np.unique(group * (label.max() + 1) + label, return_inverse=True)[1]
    n_both = np.bincount(both)[both]  # items sharing item i's group and label (i included)
    n_group = np.bincount(group)[group]
    n_label = np.bincount(label)[label]
    # Each item counts the others in its group: summed over items, that is twice the pairs.
    together, same_group, same_label = (float(np.sum(n - 1)) for n in (n_both, n_group, n_label))
    pp = together / same_group if same_group else 1.0
    pr = together / same_label if same_label else 1.0
    bp, br = float(np.mean(n_both / n_group)), float(np.mean(n_both / n_label))
    return Grouping(pp, pr, _f1(pp, pr), bp, br, _f1(bp, br))


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0
