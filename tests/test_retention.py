"""Retention (rvs.core.retention, the catalog's expiry and purge, rvs.query.retention's job): which
media are too old for their source's limit, their removal, and the catalog forgetting them later."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from rvs.core.bus import removal
from rvs.core.catalog import Catalog
from rvs.core.clock import now_ms
from rvs.core.retention import DAY_MS, RetentionRules
from rvs.query.metrics import QueryMetrics
from rvs.query.retention import RetentionJob
from rvs.v1 import rvs_pb2 as pb

NOW = now_ms()  # removal events are stamped with the real time
RULES = RetentionRules(7, {"stream:": 0, "stream:cam1": 1, "s3://b/tmp/": 0.5})


@pytest.mark.parametrize(
    ("source", "days"),
    [
        ("/inbox", 7),
        ("stream:cam1", 1),
        ("stream:cam10", 1),  # a prefix, not a name
        ("stream:cam2", 0),
        ("s3://b/tmp/", 0.5),
        ("s3://b/", 7),
        ("", 7),
    ],
)
def test_the_longest_matching_prefix_sets_the_limit(source: str, days: float) -> None:
    assert RULES.days_for(source) == days
    # The SQL the catalog filters with says the same.
    sql, args = RULES.limit_sql("src")
    db = sqlite3.connect(":memory:")
    (limit,) = db.execute(f"SELECT {sql} FROM (SELECT ? AS src)", [*args, source]).fetchone()
    assert limit == (round(days * DAY_MS) if days else None)


def test_limits_below_zero_are_refused_and_zero_keeps_everything() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        RetentionRules(1, {"stream:cam1": -1})
    with pytest.raises(ValueError, match="must be >= 0"):
        RetentionRules(float("nan"))
    assert RetentionRules().keeps_all and RetentionRules(0, {"x": 0}).keeps_all
    assert not RetentionRules(0, {"x": 2}).keeps_all


def found(
    c: Catalog, media_id: str, at_ms: int, source: str = "/inbox", duration_ms: int = 0, stream: str = ""
) -> None:
    kind = pb.MEDIA_KIND_VIDEO if duration_ms else pb.MEDIA_KIND_IMAGE
    d = pb.MediaDiscovered(uri=f"{source}/{media_id}", kind=kind, source=source, stream=stream)
    if stream:
        d.started_at_ms = at_ms
    c.apply(pb.MediaEvent(media_id=media_id, at_ms=at_ms, discovered=d))
    c.apply(
        pb.MediaEvent(
            media_id=media_id, at_ms=at_ms + 1, sampled=pb.MediaSampled(frame_count=2, duration_ms=duration_ms)
        )
    )
    c.apply(
        pb.MediaEvent(
            media_id=media_id, at_ms=at_ms + 2, embedded=pb.FramesEmbedded(sample_indices=[0, 1], face_counts=[1, 1])
        )
    )


def corpus(c: Catalog) -> None:
    found(c, "old-photo", NOW - 10 * DAY_MS)
    found(c, "long-video", NOW - 10 * DAY_MS, duration_ms=6 * DAY_MS)  # ends 4 days ago: kept
    found(c, "recent-photo", NOW - 6 * DAY_MS)
    found(c, "cam1-old", NOW - 2 * DAY_MS, "stream:cam1", 60_000, "cam1")
    found(c, "cam1-new", NOW - 3_600_000, "stream:cam1", 60_000, "cam1")
    found(c, "cam2-ancient", NOW - 300 * DAY_MS, "stream:cam2", 60_000, "cam2")  # kept forever


def state_counts_agree(c: Catalog) -> None:
    """The counts kept by triggers equal the rows there are."""
    actual: dict[int, int] = {}
    for m in c.list_media(limit=1000):
        actual[m.state] = actual.get(m.state, 0) + 1
    assert {s: n for s, n in c.counts().items() if n} == actual


def test_media_past_their_limit_expire_by_their_end(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    corpus(c)
    assert sorted(c.expired(RULES, NOW, 100)) == ["cam1-old", "old-photo"]
    assert c.expired(RULES, NOW, 1) == ["old-photo"]  # oldest first, a batch at a time
    assert sorted(c.expired(RULES, NOW + 5 * DAY_MS, 100)) == [
        "cam1-new",
        "cam1-old",
        "long-video",
        "old-photo",
        "recent-photo",
    ]
    assert c.expired(RetentionRules(), NOW + 1000 * DAY_MS, 100) == []
    c.apply(removal("old-photo"))
    assert c.expired(RULES, NOW, 100) == ["cam1-old"]  # removed already


def test_removed_media_are_forgotten_once_removed_longer_ago_than_their_limit(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    corpus(c)
    for media_id in ("old-photo", "cam1-old", "cam2-ancient"):
        c.apply(pb.MediaEvent(media_id=media_id, at_ms=NOW, removed=pb.MediaRemoved(expired=True)))
    state_counts_agree(c)
    assert c.purge_removed(RULES, NOW + DAY_MS // 2, 100) == []  # within every limit
    assert c.purge_removed(RULES, NOW + 2 * DAY_MS, 100) == ["cam1-old"]  # its 1 day is past
    assert c.get("cam1-old") is None and c.get("old-photo").state == pb.MEDIA_STATE_DELETED  # type: ignore[union-attr]
    state_counts_agree(c)
    assert c.purge_removed(RULES, NOW + 8 * DAY_MS, 100) == ["old-photo"]  # cam2 keeps forever
    state_counts_agree(c)
    assert c.get("cam2-ancient").state == pb.MEDIA_STATE_DELETED  # type: ignore[union-attr]
    db = sqlite3.connect(tmp_path / "c.db")
    frames = {r[0] for r in db.execute("SELECT DISTINCT media_id FROM frames")}
    assert frames == {"long-video", "recent-photo", "cam1-new"}
    # A purged item found again is a new ingest, as after any removal.
    found(c, "old-photo", NOW + 9 * DAY_MS)
    assert c.get("old-photo").state == pb.MEDIA_STATE_DONE  # type: ignore[union-attr]
    state_counts_agree(c)


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def test_the_job_removes_what_is_too_old_through_the_removal_path(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    corpus(c)
    removed: list[pb.MediaEvent] = []
    clock = Clock(NOW)

    def expire(media_id: str) -> int:
        # Stamped by the same clock, as removals are by the real one.
        event = pb.MediaEvent(media_id=media_id, at_ms=clock(), removed=pb.MediaRemoved(expired=True))
        removed.append(event)
        c.apply(event)
        return 3

    registry = CollectorRegistry()
    job = RetentionJob(RULES, 3600, c, expire, QueryMetrics(registry), clock)
    assert job.run_once() == (2, 0)
    assert sorted(e.media_id for e in removed) == ["cam1-old", "old-photo"]
    assert all(e.removed.expired for e in removed)
    assert job.run_once() == (0, 0)  # idempotent
    assert registry.get_sample_value("rvs_retention_removed_total") == 2
    assert registry.get_sample_value("rvs_retention_pass_seconds_count") == 2
    # Days later the removal is old too: the catalog forgets it; the rest has aged past its limit.
    clock.now_ms = NOW + 8 * DAY_MS
    assert job.run_once() == (3, 2)
    assert registry.get_sample_value("rvs_retention_purged_total") == 2
    assert {m.media_id for m in c.list_media(limit=100)} == {
        "long-video",
        "recent-photo",
        "cam1-new",
        "cam2-ancient",
    }


def test_a_removal_that_leaves_the_item_does_not_loop(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    corpus(c)
    calls: list[str] = []
    job = RetentionJob(RULES, 3600, c, lambda m: calls.append(m) or 0, QueryMetrics(CollectorRegistry()), Clock(NOW))
    assert job.run_once() == (2, 0) and sorted(calls) == ["cam1-old", "old-photo"]


def test_the_longest_video_counts_one_still_being_sampled(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "c.db")
    corpus(c)
    assert c.longest_video_ms() == 6 * DAY_MS
    live = pb.MediaEvent(
        media_id="live",
        at_ms=NOW,
        discovered=pb.MediaDiscovered(uri="stream:cam3/1", kind=pb.MEDIA_KIND_VIDEO, source="stream:cam3"),
    )
    c.apply(live)
    started = pb.SamplingStarted(sample_interval_ms=DAY_MS)  # a sample a day, to keep it short
    c.apply(pb.MediaEvent(media_id="live", at_ms=NOW + 1, sampling_started=started))
    frames = pb.FramesEmbedded(sample_indices=list(range(7)), face_counts=[0] * 7)
    c.apply(pb.MediaEvent(media_id="live", at_ms=NOW + 2, embedded=frames))
    assert c.longest_video_ms() == 7 * DAY_MS
