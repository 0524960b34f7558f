"""Which model the index uses and which one a reindex is building, as a service without the catalog
(the sampler, an embedder) folds the index-wide events; and the check every service makes at start
that its configured model (RVS_MODEL) is the index's."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from rvs.core.clock import now_ms
from rvs.v1 import rvs_pb2 as pb


class ModelMismatch(RuntimeError):
    """RVS_MODEL is not the model the index is built with; starting would mean an empty index."""


def check_model(configured: str, active: str) -> None:
    """Refuse to serve another model than the index's, saying how to move the index instead."""
    if active and configured != active:
        raise ModelMismatch(
            f"the index is built with model {active}, but RVS_MODEL (--model) is {configured}. Start rvs "
            f"with --model {active} (RVS_MODEL={active}); to move the index to {configured}, run "
            f"`rvs reindex --model {configured}` while it runs: searches keep answering from {active} "
            f"until {configured}'s collection is complete, then switch."
        )


def seed(model: str) -> pb.MediaEvent:
    """The first model of a fresh index; ignored by every fold if the index already has one."""
    return pb.MediaEvent(at_ms=now_ms(), switched=pb.IndexSwitched(model=model, seed=True))


def switched(model: str) -> pb.MediaEvent:
    return pb.MediaEvent(at_ms=now_ms(), switched=pb.IndexSwitched(model=model))


def reindex_requested(model: str) -> pb.MediaEvent:
    return pb.MediaEvent(at_ms=now_ms(), reindex_requested=pb.ReindexRequested(model=model))


def is_index_event(event: pb.MediaEvent) -> bool:
    return event.WhichOneof("event") in ("switched", "reindex_requested")


@dataclass
class IndexView:
    active: str = ""
    target: str = ""  # "" when no reindex is running
    requested_at_ms: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def apply(self, event: pb.MediaEvent) -> bool:
        """Fold an index-wide event (the catalog's fold, index_fold, decides the same way); True if
        it changed the view."""
        with self._lock:
            before = (self.active, self.target, self.requested_at_ms)
            kind = event.WhichOneof("event")
            if kind == "switched":
                s = event.switched
                if not (s.seed and self.active) and s.model != self.active:
                    self.active = s.model
                    if self.target == s.model:
                        self.target = ""
            elif kind == "reindex_requested" and event.reindex_requested.model != self.active:
                self.target, self.requested_at_ms = event.reindex_requested.model, event.at_ms
            return before != (self.active, self.target, self.requested_at_ms)

    def models_for_new_media(self) -> list[str]:
        """The collections a newly found item goes into: the active one, and a reindex's target.
        Named explicitly, so an embedder that has not yet folded a switch writes the right ones."""
        with self._lock:
            return [m for m in (self.active, self.target) if m]
