"""People folded into the catalog from events: placements, names, merges, pinned moves, removals that
race a clustering pass, and clustering again after a model switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from rvs.core.catalog import Catalog
from rvs.v1 import rvs_pb2 as pb

A, B, C = "a" * 64, "b" * 64, "c" * 64
P1, P2, P3 = "person-" + "1" * 16, "person-" + "2" * 16, "person-" + "3" * 16


def unit(
    media: str, t: int, person: str, faces: int = 1, kind: int = pb.MEDIA_KIND_VIDEO, **kw: object
) -> pb.PersonUnit:
    return pb.PersonUnit(
        unit_id=f"{media}:{t}:0",
        person_id=person,
        media_id=media,
        kind=kind,
        faces=faces,
        time_ms=t,
        box=pb.Box(x1=1, y1=2, x2=30, y2=40),
        detection_score=0.9,
        **kw,  # type: ignore[arg-type]
    )


def assigned(
    *units: pb.PersonUnit, model: str = "sface", media: tuple[str, ...] = (), at: int = 0, replace: bool = False
) -> pb.MediaEvent:
    return pb.MediaEvent(
        at_ms=at, people_assigned=pb.PeopleAssigned(model=model, units=units, media_ids=media, replace=replace)
    )


def discovered(media: str, at: int = 1) -> pb.MediaEvent:
    return pb.MediaEvent(
        media_id=media, at_ms=at, discovered=pb.MediaDiscovered(uri=f"/w/{media[:1]}.mp4", kind=pb.MEDIA_KIND_VIDEO)
    )


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    c = Catalog(tmp_path / "catalog.db")
    for media in (A, B, C):
        c.apply(discovered(media))
    return c


def test_people_are_listed_by_faces_with_a_representative(catalog: Catalog) -> None:
    catalog.apply(
        assigned(
            unit(A, 1000, P1, faces=5),
            unit(B, 0, P1, faces=1, kind=pb.MEDIA_KIND_IMAGE),
            unit(C, 2000, P2, faces=2),
            unit(C, 9000, ""),
            media=(A, B, C),
            at=10,
        )
    )
    people, total = catalog.people()
    assert total == 2 and [p.person_id for p in people] == [P1, P2]
    first = people[0]
    assert (first.faces, first.units, first.media_count) == (6, 2, 2)
    assert (first.media_id, first.time_ms, first.face_id) == (A, 1000, f"{A}:1000:0")  # its largest unit
    assert first.box.x2 == 30
    assert catalog.unclustered() == 1
    assert catalog.unclustered_media("sface", 10) == []  # none is done: nothing to cluster
    assert catalog.clustered_model() == "sface"


def test_a_name_is_found_case_insensitively_and_a_merge_keeps_one(catalog: Catalog) -> None:
    catalog.apply(assigned(unit(A, 1000, P1), unit(B, 1000, P2), unit(C, 1000, P3), at=10))
    catalog.apply(pb.MediaEvent(at_ms=11, person_renamed=pb.PersonRenamed(person_id=P2, name="  Ada Lovelace ")))
    assert catalog.people_named("ada lovelace") == [P2]
    catalog.apply(pb.MediaEvent(at_ms=12, people_merged=pb.PeopleMerged(into=P1, people=[P2, P3])))
    merged = catalog.person(P1)
    assert merged is not None and merged.name == "Ada Lovelace" and merged.units == 3  # the first name taken
    assert catalog.person(P2) == merged  # a merged-away id leads to the person it joined
    assert all(u.pinned for u in catalog.person_units(P1) if u.media_id != A)
    # A clustering result computed before the merge still lands in the merged person.
    catalog.apply(assigned(unit(A, 5000, P3), at=13))
    assert catalog.person(P1).units == 4  # type: ignore[union-attr]
    assert catalog.people()[1] == 1


def test_clustering_never_moves_a_unit_a_user_placed(catalog: Catalog) -> None:
    catalog.apply(assigned(unit(A, 1000, P1), at=10))
    catalog.apply(assigned(unit(A, 1000, P2, pinned=True), at=11))  # the user: "this is P2"
    catalog.apply(assigned(unit(A, 1000, P1), at=12))  # a replayed clustering result
    assert catalog.units([f"{A}:1000:0"])[f"{A}:1000:0"].person_id == P2
    catalog.apply(assigned(unit(A, 1000, P3, pinned=True), at=13))  # the user again
    assert catalog.units([f"{A}:1000:0"])[f"{A}:1000:0"].person_id == P3


def test_removed_media_leave_their_people_even_when_a_late_assignment_comes(catalog: Catalog) -> None:
    catalog.apply(assigned(unit(A, 1000, P1), unit(B, 1000, P1), media=(A, B), at=10))
    catalog.apply(pb.MediaEvent(media_id=A, at_ms=20, removed=pb.MediaRemoved()))
    assert catalog.person(P1).units == 1  # type: ignore[union-attr]
    # A pass that read A before its removal, folded after it (another partition): A stays out.
    catalog.apply(assigned(unit(A, 2000, P1), media=(A,), at=15))
    assert [u.media_id for u in catalog.person_units(P1)] == [B]
    # A later copy of the same content is a new ingest, clustered again.
    catalog.apply(discovered(A, at=30))
    catalog.apply(assigned(unit(A, 1000, P1), media=(A,), at=40))
    assert catalog.person(P1).units == 2  # type: ignore[union-attr]


def test_clustering_again_for_a_new_model_keeps_names_and_pinned_units(catalog: Catalog) -> None:
    catalog.apply(assigned(unit(A, 1000, P1), unit(B, 1000, P2, pinned=True), media=(A, B), at=10))
    catalog.apply(pb.MediaEvent(at_ms=11, person_renamed=pb.PersonRenamed(person_id=P1, name="Grace")))
    catalog.apply(assigned(unit(A, 1000, P1), model="dlib-resnet", media=(A,), at=20, replace=True))
    assert catalog.clustered_model() == "dlib-resnet"
    assert catalog.placed_units("sface").keys() == {f"{B}:1000:0"}  # the pinned one stays
    assert catalog.person(P1).name == "Grace"  # type: ignore[union-attr]
    assert catalog.unclustered_media("sface", 10) == []


def test_a_person_whose_units_are_all_gone_is_not_listed(catalog: Catalog) -> None:
    catalog.apply(assigned(unit(A, 1000, P1), at=10))
    catalog.apply(pb.MediaEvent(media_id=A, at_ms=20, removed=pb.MediaRemoved()))
    assert catalog.person(P1) is None and catalog.people() == ([], 0)
