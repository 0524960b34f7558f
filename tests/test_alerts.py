"""The alert engine on its own (fast, no model): the watch list folded from its events, the match of
a face (thresholds, mute wins, named people, unknown faces), and the debounce of a track (one alert
for a person seen for a minute, a new one after an absence, replays, places kept apart)."""

from __future__ import annotations

import numpy as np
import pytest

from rvs.core.alerts.debounce import Debouncer
from rvs.core.alerts.engine import AlertEngine, SeenFace, alert_event, alert_id
from rvs.core.alerts.watchlist import WatchList, is_watch_event
from rvs.v1 import rvs_pb2 as pb

MODEL = "sface"  # threshold 0.54 (rvs.core.faces.registry)
DIM = 8
MEDIA = "c" * 64


def direction(i: int) -> np.ndarray:
    """Unit vectors that are orthogonal to each other: different people."""
    v = np.zeros(DIM, np.float32)
    v[i] = 1.0
    return v


def near(base: np.ndarray, score: float, i: int = DIM - 1) -> np.ndarray:
    """A unit vector whose cosine with `base` (a unit vector orthogonal to direction(i)) is `score`."""
    return np.float32(score) * base + np.float32(np.sqrt(1 - score**2)) * direction(i)


def added(
    watch_id: str, vector: np.ndarray, kind: int = pb.WATCH_KIND_ALERT, threshold: float | None = None
) -> pb.MediaEvent:
    watch = pb.Watch(watch_id=watch_id, name=f"name of {watch_id}", kind=kind)  # type: ignore[arg-type]
    if threshold is not None:
        watch.threshold = threshold
    # Templates are means: not necessarily of unit length.
    template = pb.WatchTemplate(model=MODEL, vector=list(3.0 * vector))
    return pb.MediaEvent(watch_added=pb.WatchAdded(watch=watch, templates=[template]))


def known(*vectors: np.ndarray) -> pb.MediaEvent:
    people = [pb.KnownPerson(person_id=f"person-{i}", name=f"p{i}", vector=list(v)) for i, v in enumerate(vectors)]
    return pb.MediaEvent(known_people=pb.KnownPeople(model=MODEL, people=people))


def frame(
    index: int, media_id: str = MEDIA, stream: str = "", unknown: bool = False, start_ms: int = 10**12
) -> pb.Frame:
    return pb.Frame(
        media_id=media_id,
        uri=f"/inbox/{media_id[:4]}.mp4",
        sample_index=index,
        time_ms=index * 1000,
        source=f"stream:{stream}" if stream else "/inbox",
        stream=stream,
        ingested_at_ms=start_ms,
        alert_unknown=unknown,
    )


def face(f: pb.Frame, vector: np.ndarray, face_index: int = 0) -> SeenFace:
    return SeenFace(f, face_index, (10.0, 20.0, 110.0, 140.0), vector, lambda: b"jpeg")


def engine(*events: pb.MediaEvent, gap_s: float = 30) -> AlertEngine:
    e = AlertEngine(gap_s, clock=lambda: 42)
    for event in events:
        assert e.apply(event)
    return e


def test_the_fold_adds_replaces_and_deletes_entries() -> None:
    watches = WatchList()
    assert watches.apply(added("w1", direction(0)))
    assert watches.apply(added("w2", direction(1)))
    assert watches.match(MODEL, direction(0)).alert.watch.watch_id == "w1"  # type: ignore[union-attr]
    assert watches.apply(added("w1", direction(2)))  # the same id again: replaced
    assert watches.match(MODEL, direction(0)).alert is None
    assert watches.match(MODEL, direction(2)).alert.watch.watch_id == "w1"  # type: ignore[union-attr]
    assert watches.apply(pb.MediaEvent(watch_deleted=pb.WatchDeleted(watch_id="w1")))
    assert watches.match(MODEL, direction(2)).alert is None
    # Recorded again after its deletion (a template added for a reindex meanwhile): it stays deleted.
    assert watches.apply(added("w1", direction(2)))
    assert watches.match(MODEL, direction(2)).alert is None
    assert watches.models() == {MODEL}
    assert not watches.apply(pb.MediaEvent(removed=pb.MediaRemoved()))
    assert is_watch_event(alert_event(pb.Alert())) and not is_watch_event(pb.MediaEvent(removed=pb.MediaRemoved()))


def test_a_bad_entry_is_refused_and_the_others_kept(caplog: pytest.LogCaptureFixture) -> None:
    watches = WatchList()
    watches.apply(added("good", direction(0)))
    watches.apply(pb.MediaEvent(watch_added=pb.WatchAdded(watch=pb.Watch(watch_id=""))))
    zero = pb.WatchTemplate(model=MODEL, vector=[0.0] * DIM)
    nan = pb.WatchTemplate(model="dlib-resnet", vector=[float("nan")] * DIM)
    watches.apply(pb.MediaEvent(watch_added=pb.WatchAdded(watch=pb.Watch(watch_id="bad"), templates=[zero, nan])))
    assert "without a watch_id" in caplog.text and "not finite" in caplog.text
    assert watches.models() == {MODEL}
    # A vector of another length than the templates (a stale template) matches nothing, and raises nothing.
    assert watches.match(MODEL, np.ones(DIM * 2, np.float32) / 4).alert is None
    assert watches.match(MODEL, direction(0)).alert.watch.watch_id == "good"  # type: ignore[union-attr]


def test_the_model_threshold_or_the_entry_own() -> None:
    watches = WatchList()
    watches.apply(added("default", direction(0)))
    watches.apply(added("strict", direction(1), threshold=0.9))
    assert watches.match(MODEL, near(direction(0), 0.55)).alert is not None  # sface's 0.54
    assert watches.match(MODEL, near(direction(0), 0.53)).alert is None
    assert watches.match(MODEL, near(direction(1), 0.85)).alert is None
    match = watches.match(MODEL, near(direction(1), 0.95)).alert
    assert match is not None and match.score == pytest.approx(0.95, abs=1e-5)
    assert watches.match("dlib-resnet", direction(0)).alert is None  # no template for that model


def test_the_closest_entry_wins() -> None:
    watches = WatchList()
    watches.apply(added("a", direction(0)))
    watches.apply(added("b", near(direction(0), 0.8, 1)))
    probe = near(direction(0), 0.9, 1)  # 0.9 to a, 0.98 to b
    assert watches.match(MODEL, probe).alert.watch.watch_id == "b"  # type: ignore[union-attr]


def test_a_mute_as_close_as_the_alert_suppresses_it() -> None:
    watches = WatchList()
    watches.apply(added("alert", direction(0)))
    watches.apply(added("me", near(direction(0), 0.7, 1), kind=pb.WATCH_KIND_MUTE))
    closer_to_me = near(direction(0), 0.75, 1)  # 0.75 to the alert entry, ~0.99 to the mute
    verdict = watches.match(MODEL, closer_to_me)
    assert verdict.alert is None and verdict.known
    closer_to_alert = near(direction(0), 0.99, 2)  # ~0.69 to the mute, at its threshold: a weaker match
    assert watches.match(MODEL, closer_to_alert).alert.watch.watch_id == "alert"  # type: ignore[union-attr]
    alone = direction(1)  # only the mute matches: known, no alert
    assert watches.match(MODEL, alone).alert is None and watches.match(MODEL, alone).known


def test_named_people_are_no_unknown_faces_and_replaced_per_model() -> None:
    watches = WatchList()
    watches.apply(known(direction(3)))
    assert watches.match(MODEL, direction(3), unknown_too=True).known
    assert not watches.match(MODEL, direction(4), unknown_too=True).known
    watches.apply(known(direction(4)))  # the named set replaced
    assert not watches.match(MODEL, direction(3), unknown_too=True).known
    assert watches.match(MODEL, direction(4), unknown_too=True).known
    watches.apply(known())
    assert not watches.match(MODEL, direction(4), unknown_too=True).known


def test_one_alert_for_a_person_seen_for_a_minute_at_one_frame_per_second() -> None:
    e = engine(added("w", direction(0)))
    alerts = []
    for batch in range(0, 60, 8):  # batches of 8 frames, each committed
        alerts += e.evaluate(MODEL, [face(frame(i), direction(0)) for i in range(batch, min(batch + 8, 60))])
        e.commit()
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.kind, a.watch_id, a.name, a.time_ms, a.seen_at_ms) == (pb.ALERT_KIND_WATCH, "w", "name of w", 0, 10**12)
    assert (a.media_id, a.uri, a.source, a.model, a.raised_at_ms) == (MEDIA, "/inbox/cccc.mp4", "/inbox", MODEL, 42)
    assert (a.box.x1, a.box.y1, a.box.x2, a.box.y2) == (10, 20, 110, 140) and a.still == b"jpeg"
    assert a.score == pytest.approx(1.0) and a.alert_id == alert_id("w", MEDIA, 0, 0) and len(a.alert_id) == 32


def test_a_new_alert_after_an_absence_longer_than_the_gap() -> None:
    e = engine(added("w", direction(0)), gap_s=30)
    present = [*range(0, 10), *range(40, 50), *range(75, 80)]  # away 30 s (not > gap), then 25 s
    alerts = [a for i in present for a in e.evaluate(MODEL, [face(frame(i), direction(0))])]
    assert [a.time_ms for a in alerts] == [0, 40_000]
    # Nobody at all in between is no sighting; a stranger is none either.
    assert e.evaluate(MODEL, [face(frame(200), direction(5))]) == []


def test_tracks_are_per_watch_and_per_place() -> None:
    e = engine(added("a", direction(0)), added("b", direction(1)))
    first = [face(frame(0, stream="door"), direction(0)), face(frame(0, stream="door"), direction(1), 1)]
    assert {a.watch_id for a in e.evaluate(MODEL, first)} == {"a", "b"}
    # The same person on another stream, and in a file, are other tracks; on the same stream's next
    # segment (another media item, later start) the same track.
    other = e.evaluate(MODEL, [face(frame(1, stream="yard"), direction(0))])
    in_file = e.evaluate(MODEL, [face(frame(1, media_id="d" * 64), direction(0))])
    next_segment = e.evaluate(
        MODEL, [face(frame(1, media_id="e" * 64, stream="door", start_ms=10**12 + 10_000), direction(0))]
    )
    assert (len(other), len(in_file), next_segment) == (1, 1, [])


def test_a_replayed_batch_raises_the_same_alert_and_a_rolled_back_one_raises_it_again() -> None:
    e = engine(added("w", direction(0)))
    batch = [face(frame(i), direction(0)) for i in range(5)]
    first = e.evaluate(MODEL, batch)
    e.rollback()  # not on the bus: delivered again, it must raise again
    again = e.evaluate(MODEL, batch)
    assert [a.alert_id for a in first] == [a.alert_id for a in again] and len(first) == 1


def test_after_a_restart_the_alert_raised_before_seeds_the_track() -> None:
    before = engine(added("w", direction(0)))
    raised = before.evaluate(MODEL, [face(frame(i, stream="door"), direction(0)) for i in range(3)])
    # A fresh engine folds the events topic: the watch, then the alert already raised.
    after = engine(added("w", direction(0)), *[alert_event(a) for a in raised])
    replayed = [face(frame(i, stream="door"), direction(0)) for i in range(3)]
    assert after.evaluate(MODEL, replayed) == []  # no second alert for the frames replayed
    assert after.evaluate(MODEL, [face(frame(20, stream="door"), direction(0))]) == []  # nor for the track going on
    assert len(after.evaluate(MODEL, [face(frame(60, stream="door"), direction(0))])) == 1  # a new sighting


def test_unknown_faces_alert_once_per_track_where_asked() -> None:
    e = engine(added("w", direction(0)), added("me", direction(1), kind=pb.WATCH_KIND_MUTE), known(direction(2)))
    watched, muted, named = direction(0), direction(1), direction(2)
    stranger, other_stranger = direction(3), direction(4)
    faces = [
        face(frame(i, stream="door", unknown=True), v, k)
        for i in range(10)
        for k, v in enumerate([muted, named, stranger])
    ]
    alerts = e.evaluate(MODEL, faces)
    assert [(a.kind, a.watch_id, a.score, a.time_ms) for a in alerts] == [(pb.ALERT_KIND_UNKNOWN, "", 0.0, 0)]
    assert alerts[0].alert_id == alert_id("", MEDIA, 0, 2)
    # The same stranger, a little turned, is the same track; another one is a new alert, and so is the
    # first after an absence; a watched person is a watch alert, not an unknown one.
    later = [
        face(frame(10, stream="door", unknown=True), near(stranger, 0.8)),
        face(frame(10, stream="door", unknown=True), other_stranger, 1),
    ]
    assert [a.alert_id for a in e.evaluate(MODEL, later)] == [alert_id("", MEDIA, 10, 1)]
    assert len(e.evaluate(MODEL, [face(frame(100, stream="door", unknown=True), stranger)])) == 1
    assert [a.kind for a in e.evaluate(MODEL, [face(frame(101, stream="door", unknown=True), watched)])] == [
        pb.ALERT_KIND_WATCH
    ]
    # Where the stream does not ask for unknown faces, none.
    assert e.evaluate(MODEL, [face(frame(0, stream="yard"), stranger)]) == []


def test_memory_is_bounded() -> None:
    debounce = Debouncer(gap_ms=30_000, max_keys=10, max_places=5, max_unknown=3)
    for i in range(100):
        assert debounce.seen("w", f"place-{i}", 0)
        assert debounce.seen_unknown(f"place-{i % 7}", direction(i % DIM), i * 100, 0.5)
    debounce.commit()
    assert len(debounce._last) == 10 and len(debounce._unknown) == 5
    assert all(len(tracks) <= 3 for tracks in debounce._unknown.values())
    assert debounce.seen("w", "place-99", 1000) is False  # the most recent kept
    assert debounce.seen("w", "place-0", 1000) is True  # the oldest let go: a new track
