"""The clustering job's bookkeeping, without servers: ids of new people (kept over a model switch)
and the bus-sized events a pass records."""

from __future__ import annotations

from rvs.query.people.directory import PERSON_ID
from rvs.query.people.job import _events, _person_ids
from rvs.query.people.units import person_id_for
from rvs.v1 import rvs_pb2 as pb


def test_a_new_person_id_is_made_from_its_units_whatever_their_order() -> None:
    made = person_id_for("b:1:0", "a:2:0")
    assert made == person_id_for("a:2:0", "b:1:0") != person_id_for("a:2:0")
    assert PERSON_ID.fullmatch(made)


def test_after_a_switch_each_old_person_goes_to_the_new_one_with_most_of_its_units() -> None:
    old = {"u1": "person-old-a", "u2": "person-old-a", "u3": "person-old-a", "u4": "person-old-b", "u5": ""}
    formed = [["u1", "u4"], ["u2", "u3"], ["u5", "u6"], ["u7"]]
    ids = _person_ids(formed, old)
    assert ids[1] == "person-old-a"  # two of a's units, against one in the first group
    assert ids[0] == "person-old-b"  # a is taken: the next largest overlap
    assert ids[2] == person_id_for("u5", "u6") and ids[3] == person_id_for("u7")  # no old person: new ids
    assert _person_ids(formed, {}) == [person_id_for(*g) for g in formed]


def test_a_pass_is_recorded_in_bus_sized_events_with_the_media_last() -> None:
    units = [pb.PersonUnit(unit_id=f"m:{i}:0", person_id="") for i in range(4500)]
    media = [f"m{i}" for i in range(6000)]
    events = [e.people_assigned for e in _events("sface", units, media, replace=True)]
    assert [len(e.units) for e in events] == [2000, 2000, 500, 0, 0]
    assert [len(e.media_ids) for e in events] == [0, 0, 0, 5000, 1000]
    assert [e.replace for e in events] == [True, False, False, False, False]
    assert {e.model for e in events} == {"sface"}
    assert [list(e.people_assigned.media_ids) for e in _events("sface", [], ["m"], replace=False)] == [["m"]]
