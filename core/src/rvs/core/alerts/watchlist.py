"""The watch list as the embedder folds it from the index-wide events (WatchAdded, WatchDeleted,
KnownPeople), and the match of one face against it.

Vectors are compared by cosine similarity, as the index does: the store's faces are L2-normalised,
and templates are normalised here (a template is a mean direction, not necessarily of length 1).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rvs.core.faces.registry import MODELS
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)

WATCH_EVENTS = ("watch_added", "watch_deleted", "known_people", "alert_raised")


def is_watch_event(event: pb.MediaEvent) -> bool:
    """The index-wide events an embedder folds into its alert engine."""
    return event.WhichOneof("event") in WATCH_EVENTS


def model_threshold(model: str) -> float:
    """The model's search threshold (`rvs models`): a face at or above it is taken as the person."""
    return MODELS[model].default_min_score


def unit(values: object) -> np.ndarray | None:
    """The vector as a float32 unit vector; None for an empty, zero or non-finite one."""
    vector = np.asarray(values, np.float32).ravel()
    norm = float(np.linalg.norm(vector)) if vector.size else 0.0
    if not np.isfinite(norm) or norm == 0.0:
        return None
    return vector / norm


@dataclass(frozen=True)
class Match:
    watch: pb.Watch
    score: float


@dataclass(frozen=True)
class Verdict:
    """One face against the list: the watched person it is (None if nobody, or muted), and whether it
    is anybody the list or the named people know (an unknown face is neither)."""

    alert: Match | None
    known: bool


@dataclass
class _Table:
    """Templates of one model and dimension, stacked, with each row's threshold."""

    watches: list[pb.Watch]
    vectors: np.ndarray  # (n, dim)
    thresholds: np.ndarray  # (n,)


class WatchList:
    """Thread-safe: folded from the events thread, matched from the embedder's."""

    def __init__(self, threshold: Callable[[str], float] = model_threshold) -> None:
        self._threshold = threshold
        self._lock = threading.Lock()
        self._watches: dict[str, tuple[pb.Watch, dict[str, np.ndarray]]] = {}
        self._deleted: set[str] = set()  # a WatchAdded of one (a template added meanwhile) stays out
        self._known: dict[str, np.ndarray] = {}  # model -> (n, dim) named people's templates
        self._tables: dict[tuple[str, int], tuple[_Table, _Table]] = {}  # (alert, mute), rebuilt on change

    def apply(self, event: pb.MediaEvent) -> bool:
        """Fold a watch-list event; True if it was one."""
        kind = event.WhichOneof("event")
        with self._lock:
            if kind == "watch_added":
                self._add(event.watch_added)
            elif kind == "watch_deleted":
                self._watches.pop(event.watch_deleted.watch_id, None)
                self._deleted.add(event.watch_deleted.watch_id)
            elif kind == "known_people":
                self._set_known(event.known_people)
            else:
                return False
            self._tables.clear()
            return True

    def _add(self, added: pb.WatchAdded) -> None:
        watch = added.watch
        if not watch.watch_id:
            log.error("a WatchAdded without a watch_id is ignored (name %r)", watch.name[:100])
            return
        if watch.watch_id in self._deleted:
            return
        templates = {}
        for template in added.templates:
            if (vector := unit(template.vector)) is None:
                log.error("watch %s: the %s template is empty or not finite; ignored", watch.watch_id, template.model)
                continue
            templates[template.model] = vector
        self._watches[watch.watch_id] = (watch, templates)

    def _set_known(self, known: pb.KnownPeople) -> None:
        vectors = [v for p in known.people if (v := unit(p.vector)) is not None]
        dims = {len(v) for v in vectors}
        if len(dims) > 1:
            log.error("KnownPeople for %s mixes dimensions %s; only the most common is kept", known.model, dims)
            common = max(dims, key=[len(v) for v in vectors].count)
            vectors = [v for v in vectors if len(v) == common]
        self._known[known.model] = np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)

    def models(self) -> set[str]:
        """The models some entry has a template for."""
        with self._lock:
            return {model for _, templates in self._watches.values() for model in templates}

    def threshold(self, model: str) -> float:
        return self._threshold(model)

    def match(self, model: str, vector: np.ndarray, unknown_too: bool = False) -> Verdict:
        """The best alert entry and the best mute entry of `model` at their thresholds; a mute at least
        as close as the alert suppresses it. `unknown_too`: also say whether a named person matches."""
        vector = np.asarray(vector, np.float32)
        with self._lock:
            alerts, mutes = self._table(model, len(vector))
            known = self._known.get(model)
        best = _best(alerts, vector)
        mute = _best(mutes, vector)
        alert = None if best is None or (mute is not None and mute.score >= best.score) else best
        is_known = best is not None or mute is not None
        if unknown_too and not is_known and known is not None and known.shape[1:] == vector.shape:
            is_known = bool(known.size) and float(np.max(known @ vector)) >= self._threshold(model)
        return Verdict(alert, is_known)

    def _table(self, model: str, dim: int) -> tuple[_Table, _Table]:
        key = (model, dim)
        if key not in self._tables:
            rows = [(w, t[model]) for w, t in self._watches.values() if len(t.get(model, ())) == dim]
            self._tables[key] = tuple(  # type: ignore[assignment]
                self._stack([(w, v) for w, v in rows if w.kind == kind], model, dim)
                for kind in (pb.WATCH_KIND_ALERT, pb.WATCH_KIND_MUTE)
            )
        return self._tables[key]

    def _stack(self, rows: list[tuple[pb.Watch, np.ndarray]], model: str, dim: int) -> _Table:
        default = self._threshold(model) if rows else 0.0
        return _Table(
            [w for w, _ in rows],
            np.stack([v for _, v in rows]) if rows else np.zeros((0, dim), np.float32),
            np.array([w.threshold if w.HasField("threshold") else default for w, _ in rows], np.float32),
        )


def _best(table: _Table, vector: np.ndarray) -> Match | None:
    """The closest entry at or above its own threshold."""
    if not table.watches:
        return None
    scores = table.vectors @ vector
    scores = np.where(scores >= table.thresholds, scores, -np.inf)
    i = int(np.argmax(scores))
    return Match(table.watches[i], float(scores[i])) if np.isfinite(scores[i]) else None
