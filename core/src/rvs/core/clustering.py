"""Placeholder until the clustering branch lands: the interface, with a naive greedy method."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Unit:
    key: str
    vector: np.ndarray
    faces: int = 1


@dataclass(frozen=True)
class ClusterRules:
    min_score: float
    min_faces: int = 2


def rules_for(model_threshold: float, **overrides: object) -> ClusterRules:
    return replace(ClusterRules(min_score=model_threshold + 0.1 * (1 - model_threshold)), **overrides)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Update:
    joined: dict[str, str]
    formed: list[list[str]]
    loose: list[str]


def update(
    people: Mapping[str, Sequence[Unit]], loose: Sequence[Unit], new: Sequence[Unit], rules: ClusterRules
) -> Update:
    joined: dict[str, str] = {}
    members = [(pid, u) for pid in sorted(people) for u in people[pid]]
    rest = []
    for unit in sorted([*loose, *new], key=lambda u: u.key):
        scores = [(float(u.vector @ unit.vector), pid) for pid, u in members]
        best = max(scores, default=(-2.0, ""))
        if best[0] >= rules.min_score:
            joined[unit.key] = best[1]
        else:
            rest.append(unit)
    groups: list[list[Unit]] = []
    for unit in rest:
        for group in groups:
            if max(float(g.vector @ unit.vector) for g in group) >= rules.min_score:
                group.append(unit)
                break
        else:
            groups.append([unit])
    formed = sorted(sorted(u.key for u in g) for g in groups if sum(u.faces for u in g) >= rules.min_faces)
    placed = {k for g in formed for k in g}
    return Update(joined, formed, sorted(u.key for u in rest if u.key not in placed))


def cluster(units: Sequence[Unit], rules: ClusterRules) -> Update:
    return update({}, [], units, rules)
