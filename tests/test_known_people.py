"""The clustering job records the named people's templates (KnownPeople) when they change, and only
then: not at every pass, nor again after a restart that finds them as recorded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from prometheus_client import CollectorRegistry

from rvs.core.catalog import Catalog
from rvs.query.config import QuerySettings
from rvs.query.metrics import QueryMetrics
from rvs.query.people.job import PeopleJob
from rvs.query.people.units import UnitReader
from rvs.v1 import rvs_pb2 as pb

A, B = "a" * 64, "b" * 64
P1, P2 = "person-" + "1" * 16, "person-" + "2" * 16


@dataclass
class PhotoStore:
    """The one read the job makes of photo units: their vectors by face id."""

    vectors: dict[str, np.ndarray]
    model: str = "sface"

    def faces(self, keys: list[str]) -> list[SimpleNamespace]:
        return [SimpleNamespace(key=k, vector=self.vectors[k]) for k in keys if k in self.vectors]


def unit(media: str, person: str) -> pb.PersonUnit:
    return pb.PersonUnit(unit_id=f"{media}:0:0", person_id=person, media_id=media, kind=pb.MEDIA_KIND_IMAGE, faces=1)


def job(catalog: Catalog, store: PhotoStore, recorded: list[pb.MediaEvent]) -> PeopleJob:
    def record(event: pb.MediaEvent) -> None:
        recorded.append(event)
        catalog.apply(event)

    units = UnitReader(None, catalog)  # type: ignore[arg-type]  # photos only: no video tracks read
    metrics = QueryMetrics(CollectorRegistry())
    return PeopleJob(QuerySettings(), lambda: (None, store), units, catalog, record, metrics)  # type: ignore[arg-type, return-value]


def test_known_people_are_recorded_when_the_named_people_change(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    for media in (A, B):
        catalog.apply(pb.MediaEvent(media_id=media, discovered=pb.MediaDiscovered(uri=f"/{media[0]}.jpg", kind=1)))
    catalog.apply(pb.MediaEvent(people_assigned=pb.PeopleAssigned(model="sface", units=[unit(A, P1), unit(B, P2)])))
    store = PhotoStore({f"{A}:0:0": np.array([0.6, 0.8], np.float32), f"{B}:0:0": np.array([1.0, 0.0], np.float32)})
    recorded: list[pb.MediaEvent] = []
    first = job(catalog, store, recorded)

    assert not first.record_known_people()  # nobody named yet: nothing to tell
    assert recorded == []

    catalog.apply(pb.MediaEvent(person_renamed=pb.PersonRenamed(person_id=P1, name="Alice")))
    assert first.record_known_people()
    known = recorded[-1].known_people
    assert known.model == "sface"
    assert [(p.person_id, p.name) for p in known.people] == [(P1, "Alice")]
    assert np.allclose(known.people[0].vector, [0.6, 0.8])
    assert not first.record_known_people()

    catalog.apply(pb.MediaEvent(people_merged=pb.PeopleMerged(into=P1, people=[P2])))
    assert first.record_known_people()  # Alice's faces changed: so did her template
    assert np.allclose(recorded[-1].known_people.people[0].vector, np.array([1.6, 0.8]) / np.linalg.norm([1.6, 0.8]))

    before = len(recorded)
    assert not job(catalog, store, recorded).record_known_people()  # restarted: as recorded
    assert len(recorded) == before
