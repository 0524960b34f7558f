"""The watch list and alerts folded into the catalog: watches added and deleted (a replay keeps a
deletion), alerts once per id in the order folded, bounded, with a pruned alert not coming back, and
what an embedder is brought up to date with."""

from __future__ import annotations

from pathlib import Path

import pytest

from rvs.core.catalog import Catalog
from rvs.v1 import rvs_pb2 as pb

W1, W2 = "1" * 32, "2" * 32


def added(watch_id: str, name: str = "Alice", at: int = 100) -> pb.MediaEvent:
    watch = pb.Watch(watch_id=watch_id, name=name, created_at_ms=at, photos=1, models=["sface"])
    return pb.MediaEvent(
        at_ms=at,
        watch_added=pb.WatchAdded(watch=watch, templates=[pb.WatchTemplate(model="sface", vector=[1.0, 0.0])]),
    )


def deleted(watch_id: str) -> pb.MediaEvent:
    return pb.MediaEvent(at_ms=200, watch_deleted=pb.WatchDeleted(watch_id=watch_id))


def raised(
    alert_id: str, watch_id: str = W1, at: int = 1000, source: str = "stream:door", media: str = "m"
) -> pb.MediaEvent:
    alert = pb.Alert(alert_id=alert_id, watch_id=watch_id, source=source, media_id=media, raised_at_ms=at, score=0.7)
    return pb.MediaEvent(at_ms=at, alert_raised=pb.AlertRaised(alert=alert))


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "catalog.db")


def test_watches_are_listed_until_deleted_and_a_replay_keeps_them_deleted(catalog: Catalog) -> None:
    catalog.apply(added(W1, "Alice", at=100))
    catalog.apply(added(W2, "Bob", at=50))
    assert [w.name for w in catalog.watches()] == ["Bob", "Alice"]
    assert catalog.watch(W1) == added(W1, "Alice").watch_added.watch
    catalog.apply(deleted(W1))
    catalog.apply(added(W1, "Alice"))  # replayed after its deletion
    assert catalog.watch(W1) is None
    assert [w.watch_id for w in catalog.watches()] == [W2]
    catalog.apply(deleted("9" * 32))  # a deletion of an entry never seen folds to nothing shown
    assert [w.watch_id for w in catalog.watches()] == [W2]


def test_an_alert_folds_once_in_the_order_folded_and_outlives_its_watch(catalog: Catalog) -> None:
    catalog.apply(added(W1))
    for event in (raised("a", at=3000), raised("b", at=1000), raised("a", at=3000), raised("c", at=2000)):
        catalog.apply(event)
    catalog.apply(deleted(W1))
    folded = catalog.alerts()
    assert [a.alert_id for _, a in folded] == ["a", "b", "c"]
    seqs = [s for s, _ in folded]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert [a.alert_id for _, a in catalog.alerts(after_seq=seqs[0])] == ["b", "c"]
    assert [a.alert_id for _, a in catalog.alerts(since_ms=2000)] == ["a", "c"]
    assert [a.alert_id for _, a in catalog.alerts(limit=1)] == ["a"]
    assert catalog.last_alert_seq() == seqs[-1]


def test_an_alert_without_an_id_is_not_folded(catalog: Catalog) -> None:
    catalog.apply(raised(""))
    assert catalog.alerts() == []


def test_alerts_are_bounded_and_a_pruned_alert_replayed_does_not_come_back(catalog: Catalog) -> None:
    for n in range(10):
        catalog.apply(raised(f"a{n}", at=1000 + n))
    assert catalog.prune_alerts(keep=4, before_ms=0) == 6
    assert [a.alert_id for _, a in catalog.alerts()] == ["a6", "a7", "a8", "a9"]
    catalog.apply(raised("a2", at=1002))  # a replay of a pruned one
    catalog.apply(raised("new", at=5000))
    assert [a.alert_id for _, a in catalog.alerts()] == ["a6", "a7", "a8", "a9", "new"]
    assert catalog.prune_alerts(keep=100, before_ms=1008) == 2  # older than the time kept
    assert [a.alert_id for _, a in catalog.alerts()] == ["a8", "a9", "new"]
    assert catalog.prune_alerts(keep=100, before_ms=0) == 0


def test_alerts_and_cursors_survive_a_restart(tmp_path: Path) -> None:
    first = Catalog(tmp_path / "catalog.db")
    first.apply(added(W1))
    first.apply(raised("a"))
    first.set_alert_cursor("webhook", 7)
    first.close()
    again = Catalog(tmp_path / "catalog.db")
    assert [w.watch_id for w in again.watches()] == [W1]
    assert [a.alert_id for _, a in again.alerts()] == ["a"]
    assert again.alert_cursor("webhook") == 7
    assert again.alert_cursor("other") is None


def test_watch_events_bring_an_embedder_up_to_date(catalog: Catalog) -> None:
    catalog.apply(added(W1))
    catalog.apply(added(W2))
    catalog.apply(deleted(W2))
    for model, name in (("sface", "Old"), ("sface", "New"), ("dlib-resnet", "Dee")):
        people = [pb.KnownPerson(person_id="person-" + "1" * 16, name=name, vector=[0.0, 1.0])]
        catalog.apply(pb.MediaEvent(known_people=pb.KnownPeople(model=model, people=people)))
    for event in (
        raised("a", at=1000),
        raised("b", at=2000),  # the same watch on the same stream: only the last is kept
        raised("c", at=3000, source="stream:yard"),
        raised("d", at=4000, source="/inbox", media="m1"),
        raised("e", at=5000, source="/inbox", media="m2"),
    ):
        catalog.apply(event)
    events = catalog.watch_events()
    assert [e.watch_added.watch.watch_id for e in events if e.HasField("watch_added")] == [W1]
    known = {e.known_people.model: e.known_people.people[0].name for e in events if e.HasField("known_people")}
    assert known == {"sface": "New", "dlib-resnet": "Dee"}
    assert sorted(e.alert_raised.alert.alert_id for e in events if e.HasField("alert_raised")) == ["b", "c", "d", "e"]
    assert catalog.known_people("sface").people[0].name == "New"  # type: ignore[union-attr]
    assert catalog.known_people("facenet") is None
