"""The clustering job: every few seconds, the units of newly finished media join people or form new
ones (rvs.core.clustering), recorded as PeopleAssigned events.

It runs in one place (the query service with RVS_PEOPLE_CLUSTERING on; `rvs up` has one) because an
update depends on the people before it: two jobs would each make a person of the same stranger.
Every other service reads the result from the events. After a model switch the index is clustered
again from the start; people keep their ids (and so their names) where their units do.

It also records the named people's templates (KnownPeople) whenever they change, so that embedders
tell a known face from an unknown one.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from rvs.core import clustering
from rvs.core.bus import BusUnavailable
from rvs.core.catalog import Catalog
from rvs.core.clock import now_ms
from rvs.core.clustering import ClusterRules, Unit
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.faces.registry import MODELS
from rvs.core.periodic import Periodic
from rvs.core.store.faces import FaceStore, StoreUnavailable
from rvs.query.config import QuerySettings
from rvs.query.metrics import QueryMetrics
from rvs.query.people.units import UnitReader, as_unit, person_id_for, placed, template
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)

# Units and media ids per event: well under a bus message's size (Kafka's default 1 MB).
_UNITS_PER_EVENT = 2000
_MEDIA_PER_EVENT = 5000


class PeopleJob:
    def __init__(
        self,
        settings: QuerySettings,
        active: Callable[[], tuple[FacePipeline, FaceStore]],
        units: UnitReader,
        catalog: Catalog,
        record: Callable[[pb.MediaEvent], None],
        metrics: QueryMetrics,
    ) -> None:
        self.settings = settings
        self.active = active
        self.units = units
        self.catalog = catalog
        self.record = record
        self.metrics = metrics
        self._vectors: dict[str, np.ndarray] = {}  # unit id -> vector, of `_model`'s collection
        self._model = ""
        self._known: tuple[object, ...] = ()  # the named people and their units when last recorded
        # Nothing a failed pass recorded is lost: it is done again.
        retried = (StoreUnavailable, BusUnavailable)
        self._job = Periodic("people", settings.people_interval_s, self._passes, retried=retried)

    def start(self) -> None:
        self._job.start()

    def stop(self) -> None:
        self._job.stop()

    def _passes(self) -> None:
        while self.run_once() and not self._job.stopping.is_set():
            pass  # a backlog: the next batch at once
        self.record_known_people()

    def rules(self, pipeline: FacePipeline) -> ClusterRules:
        overrides: dict[str, float | int] = {}
        if self.settings.people_min_score is not None:
            overrides["min_score"] = self.settings.people_min_score
        if self.settings.people_min_faces is not None:
            overrides["min_faces"] = self.settings.people_min_faces
        share = MODELS[pipeline.model_name].people_share
        return clustering.rules_for(pipeline.encoder.default_min_score, share, **overrides)

    def run_once(self) -> int:
        """Cluster one batch of finished media (all of them after a model switch); the media done."""
        started = time.perf_counter()
        pipeline, store = self.active()
        if store.model != self._model:
            self._vectors.clear()
            self._model = store.model
        previous = self.catalog.clustered_model()
        again = bool(previous) and previous != store.model
        media = self.catalog.unclustered_media(store.model, 1_000_000 if again else self.settings.people_batch_media)
        if not media:
            return 0
        earlier = {} if again else self.catalog.placed_units(store.model)
        # Units recorded by a pass cut short (the bus failed before its media were marked) are placed.
        new = [
            (u, v)
            for media_id, kind in media
            for u, v in self.units.of_media(store, media_id, kind)
            if u.unit_id not in earlier
        ]
        protos_new = {u.unit_id: u for u, _ in new}
        self._vectors.update((u.unit_id, v) for u, v in new)
        people, loose = self._members(store, earlier)
        # Only units still placed are kept: those of deleted media leave with them.
        self._vectors = {k: v for k, v in self._vectors.items() if k in earlier or k in protos_new}
        result = clustering.update(people, loose, [as_unit(u, v) for u, v in new], self.rules(pipeline))
        old = {k: u.person_id for k, u in self.catalog.placed_units(previous).items()} if again else {}
        ids = _person_ids(result.formed, old)
        protos = protos_new | earlier
        assigned = []
        for unit_id, person in [*result.joined.items(), *((k, ids[i]) for i, g in enumerate(result.formed) for k in g)]:
            assigned.append(placed(protos[unit_id], person))
        assigned += [placed(protos[k], "") for k in result.loose if k in protos and k not in earlier]
        for event in _events(store.model, assigned, [m for m, _ in media], again):
            self.record(event)
        self.metrics.people_units.labels("joined").inc(len(result.joined))
        self.metrics.people_units.labels("formed").inc(sum(map(len, result.formed)))
        self.metrics.people_units.labels("loose").inc(len(result.loose))
        self.metrics.people_pass_seconds.observe(time.perf_counter() - started)
        log.info(
            "people: %d media clustered%s: %d units joined people, %d formed %d new, %d left unclustered",
            len(media),
            f" again for model {store.model}" if again else "",
            len(result.joined),
            sum(map(len, result.formed)),
            len(result.formed),
            len(result.loose),
        )
        return len(media)

    def record_known_people(self) -> bool:
        """KnownPeople of the active model, recorded if the named people or their units changed
        (and it differs from the one recorded last, as after a restart); True if recorded."""
        _, store = self.active()
        named, _ = self.catalog.people(0, 1_000_000, named_only=True)
        named.sort(key=lambda p: p.person_id)
        members = {p.person_id: self.catalog.person_units(p.person_id) for p in named}
        key = (store.model, *((p.person_id, p.name, *sorted(u.unit_id for u in members[p.person_id])) for p in named))
        if key == self._known:
            return False
        people = []
        for p in named:
            vector = template(members[p.person_id], self.units.vectors(store, members[p.person_id]))
            if vector is not None:
                people.append(pb.KnownPerson(person_id=p.person_id, name=p.name, vector=vector.tolist()))
        known = pb.KnownPeople(model=store.model, people=people)
        recorded = known != (self.catalog.known_people(store.model) or pb.KnownPeople(model=store.model))
        if recorded:
            self.record(pb.MediaEvent(at_ms=now_ms(), known_people=known))
        self._known = key
        return recorded

    def _members(self, store: FaceStore, earlier: dict[str, pb.PersonUnit]) -> tuple[dict[str, list[Unit]], list[Unit]]:
        """The units placed before (people's members, and the loose ones), with their vectors."""
        missing = [u for u in earlier.values() if u.unit_id not in self._vectors]
        if missing:
            self._vectors.update(self.units.vectors(store, missing))
        people: dict[str, list[Unit]] = defaultdict(list)
        loose: list[Unit] = []
        for unit_id, placed_unit in earlier.items():
            if unit_id in self._vectors:
                unit = as_unit(placed_unit, self._vectors[unit_id])
                (people[placed_unit.person_id] if placed_unit.person_id else loose).append(unit)
        return people, loose


def _person_ids(formed: Sequence[Sequence[str]], old: dict[str, str]) -> list[str]:
    """An id for each new person: after a switch, the old person most of its units were in (each old
    id once, largest overlap first), so names carry over; else one made from its units."""
    ids = [person_id_for(*group) for group in formed]
    overlaps = []
    for i, group in enumerate(formed):
        for person, n in Counter(old[k] for k in group if old.get(k)).items():
            overlaps.append((-n, person, i))
    taken: set[str] = set()
    kept: set[int] = set()
    for _, person, i in sorted(overlaps):
        if person not in taken and i not in kept:
            ids[i] = person
            taken.add(person)
            kept.add(i)
    return ids


def _events(model: str, units: list[pb.PersonUnit], media_ids: list[str], replace: bool) -> Iterator[pb.MediaEvent]:
    """The assignments in bus-sized events; the media are marked clustered last, once every unit is
    recorded (a pass cut short is done again)."""
    chunks: list[tuple[list[pb.PersonUnit], list[str]]] = [
        (units[i : i + _UNITS_PER_EVENT], []) for i in range(0, len(units), _UNITS_PER_EVENT)
    ]
    chunks += [([], media_ids[i : i + _MEDIA_PER_EVENT]) for i in range(0, len(media_ids), _MEDIA_PER_EVENT)]
    for n, (part, media) in enumerate(chunks):
        assigned = pb.PeopleAssigned(model=model, units=part, media_ids=media, replace=replace and n == 0)
        yield pb.MediaEvent(at_ms=now_ms(), people_assigned=assigned)
