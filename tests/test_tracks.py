"""Linking a video's faces into tracks (rvs.core.tracks): pure, no models or servers."""

from __future__ import annotations

import random

import numpy as np

from rvs.core.tracks import LinkRules, Track, TrackedFace, find, iou, link

RULES = LinkRules(interval_ms=1000, min_score=0.5, min_score_overlapping=0.3, max_missed=2)
DIM = 128  # random people are then nearly orthogonal (similarity ~0 +- 0.09)


def person(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, noise: float, seed: int) -> np.ndarray:
    w = v + noise * np.random.default_rng(seed).standard_normal(DIM).astype(np.float32) / np.sqrt(DIM)
    return w / np.linalg.norm(w)


def at(v: np.ndarray, similarity: float, seed: int) -> np.ndarray:
    """A unit vector with exactly this similarity to `v`."""
    other = person(seed)
    other -= (other @ v) * v
    return similarity * v + np.sqrt(1 - similarity**2) * other / np.linalg.norm(other)


def face(t: int, i: int, vector: np.ndarray, x: float = 0.0) -> TrackedFace:
    return TrackedFace(f"m:{t}:{i}", t, (x, 0.0, x + 100.0, 100.0), 0.99, vector)


def spans(tracks: list[Track]) -> list[tuple[int, int, int]]:
    return [(t.start_ms, t.last_ms, len(t.faces)) for t in tracks]


def test_two_people_in_every_frame_are_two_tracks_even_when_they_swap_places() -> None:
    a, b = person(1), person(2)
    faces = []
    for k in range(6):
        left, right = (a, b) if k < 3 else (b, a)
        faces += [face(k * 1000, 0, near(left, 0.2, k), x=0), face(k * 1000, 1, near(right, 0.2, 100 + k), x=500)]
    tracks = link(faces, RULES)
    assert spans(tracks) == [(0, 5000, 6), (0, 5000, 6)]
    for track in tracks:
        scores = track.vectors @ track.faces[0].vector
        assert scores.min() > 0.8  # each track holds one person throughout


def test_a_track_survives_two_missed_samples_but_not_three() -> None:
    a = person(1)
    times = [0, 1000, 4000, 5000, 9000]  # misses 2 samples (2000, 3000), then 3 (6000-8000)
    tracks = link([face(t, 0, near(a, 0.1, t)) for t in times], RULES)
    assert spans(tracks) == [(0, 5000, 4), (9000, 9000, 1)]


def test_a_frame_late_sample_still_continues_the_track() -> None:
    a = person(1)
    tracks = link([face(t, 0, a) for t in (0, 1000, 4040)], RULES)  # 3 intervals and a frame
    assert len(tracks) == 1


def test_another_person_in_the_same_place_after_a_cut_starts_a_track() -> None:
    a, b = person(1), person(2)
    faces = [face(t, 0, near(a, 0.1, t)) for t in (0, 1000, 2000)]
    faces += [face(t, 0, near(b, 0.1, t)) for t in (3000, 4000)]
    assert spans(link(faces, RULES)) == [(0, 2000, 3), (3000, 4000, 2)]


def test_overlapping_boxes_link_a_changing_face_that_vectors_alone_would_not() -> None:
    a = person(1)
    turned = at(a, 0.4, 7)  # the same person in profile: far from the frontal vector
    assert len(link([face(0, 0, a), face(1000, 0, turned)], RULES)) == 1
    assert len(link([face(0, 0, a), face(1000, 0, turned, x=400)], RULES)) == 2  # and elsewhere: no


def test_tracks_do_not_depend_on_the_order_faces_arrive_in() -> None:
    people = [person(s) for s in range(3)]
    faces = [face(t * 1000, i, near(p, 0.3, t * 10 + i), x=i * 300) for t in range(8) for i, p in enumerate(people)]
    expected = [[f.key for f in t.faces] for t in link(faces, RULES)]
    for seed in range(5):
        shuffled = faces[:]
        random.Random(seed).shuffle(shuffled)
        assert [[f.key for f in t.faces] for t in link(shuffled, RULES)] == expected


def test_template_is_the_mean_direction_and_any_face_finds_its_track() -> None:
    a = person(1)
    faces = [face(t, 0, near(a, 0.3, t)) for t in (0, 1000, 2000)]
    (track,) = link(faces, RULES)
    mean = np.mean([f.vector for f in faces], axis=0)
    np.testing.assert_allclose(track.template, mean / np.linalg.norm(mean), rtol=1e-5)
    assert track.id == "m:0:0"
    assert find([track], "m:2000:0") is track
    assert find([track], "m:3000:0") is None


def test_a_track_ends_one_interval_after_its_last_sample_within_the_video() -> None:
    (track,) = link([face(t, 0, person(1)) for t in (3000, 4000)], RULES)
    assert track.end_ms(1000, 20_000) == 5000
    assert track.end_ms(1000, 4500) == 4500  # clipped to the duration
    assert track.end_ms(1000, 0) == 5000  # duration unknown


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == 50 / 150
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
