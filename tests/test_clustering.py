"""rvs.core.clustering on synthetic vectors: identities as random unit centres, their faces as centre
plus noise (no model, no server)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rvs.core.clustering import ClusterRules, Unit, cluster, rules_for, update

DIM = 128
RULES = ClusterRules(min_score=0.8, min_faces=3)


def unit_vector(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def centre(rng: np.random.Generator) -> np.ndarray:
    return unit_vector(rng.standard_normal(DIM))


def faces_of(name: str, c: np.ndarray, n: int, rng: np.random.Generator, noise: float = 0.03) -> list[Unit]:
    """n faces around centre c: at noise 0.03 per dimension two faces are ~0.9 similar."""
    return [Unit(f"{name}-{i}", unit_vector(c + noise * rng.standard_normal(DIM))) for i in range(n)]


def at_similarity(a: np.ndarray, similarity: float, rng: np.random.Generator) -> np.ndarray:
    """A random unit vector exactly `similarity` similar to a."""
    other = rng.standard_normal(DIM)
    other = unit_vector(other - (other @ a) * a)
    return unit_vector(similarity * a + np.sqrt(1 - similarity**2) * other)


def test_batch_finds_each_identity_and_the_same_update_whatever_the_order() -> None:
    rng = np.random.default_rng(1)
    units = [u for name in "abcde" for u in faces_of(name, centre(rng), 6, rng)]
    result = cluster(units, RULES)
    assert result.formed == [[f"{name}-{i}" for i in range(6)] for name in "abcde"]
    assert result.joined == {} and result.loose == []
    for seed in range(3):
        shuffled = units[:]
        random.Random(seed).shuffle(shuffled)
        assert cluster(shuffled, RULES) == result


def test_a_new_face_of_a_known_person_joins_them() -> None:
    rng = np.random.default_rng(2)
    alice, bob = centre(rng), centre(rng)
    people = {"p-alice": faces_of("alice", alice, 5, rng), "p-bob": faces_of("bob", bob, 5, rng)}
    new = faces_of("new-alice", alice, 1, rng) + faces_of("new-bob", bob, 2, rng)
    result = update(people, [], new, RULES)
    assert result.joined == {"new-alice-0": "p-alice", "new-bob-0": "p-bob", "new-bob-1": "p-bob"}
    assert result.formed == [] and result.loose == []
    assert update(people, [], new[::-1], RULES) == result


def test_a_lone_stranger_stays_loose_and_a_loose_face_is_offered_again() -> None:
    rng = np.random.default_rng(3)
    carol = centre(rng)
    people = {"p-alice": faces_of("alice", centre(rng), 5, rng)}
    stranger = faces_of("carol", carol, 1, rng)
    first = update(people, [], stranger, RULES)
    assert first.joined == {} and first.formed == [] and first.loose == ["carol-0"]
    # Two more photos of her: with the loose one they make the three faces a person needs.
    later = update(people, stranger, faces_of("carol-later", carol, 2, rng), RULES)
    assert later.formed == [["carol-0", "carol-later-0", "carol-later-1"]]
    assert later.loose == []


def test_two_close_but_distinct_identities_are_not_merged() -> None:
    rng = np.random.default_rng(4)
    a = centre(rng)
    b = at_similarity(a, 0.75, rng)  # centres just below the bar; their faces are ~0.67 similar
    units = faces_of("a", a, 8, rng) + faces_of("b", b, 8, rng)
    result = cluster(units, RULES)
    assert result.formed == [[f"a-{i}" for i in range(8)], [f"b-{i}" for i in range(8)]]
    # Nor does a face of b join a, next to it.
    assert update({"p-a": faces_of("a", a, 8, rng)}, [], faces_of("new-b", b, 1, rng), RULES).joined == {}


def test_a_person_needs_min_faces() -> None:
    rng = np.random.default_rng(5)
    pair = faces_of("pair", centre(rng), 2, rng)
    trio = faces_of("trio", centre(rng), 3, rng)
    result = cluster(pair + trio, RULES)
    assert result.formed == [["trio-0", "trio-1", "trio-2"]]
    assert result.loose == ["pair-0", "pair-1"]
    assert cluster(pair + trio, ClusterRules(min_score=0.8, min_faces=2)).formed == [
        ["pair-0", "pair-1"],
        result.formed[0],
    ]


def test_a_track_counts_as_the_faces_it_stands_for() -> None:
    rng = np.random.default_rng(6)
    c = centre(rng)
    photo = faces_of("photo", c, 1, rng)[0]
    track = Unit("track", faces_of("t", c, 1, rng)[0].vector, faces=2)
    assert cluster([photo, track], RULES).formed == [["photo-0", "track"]]
    assert cluster([photo, Unit("track", track.vector)], RULES).formed == []
    assert cluster([Unit("long-track", track.vector, faces=3)], RULES).formed == [["long-track"]]


def test_joining_needs_more_than_one_similar_member() -> None:
    """One stray member within the bar is not enough: a person of several needs join_members of them."""
    rng = np.random.default_rng(7)
    a = centre(rng)
    stray = Unit("stray", at_similarity(a, 0.6, rng))  # a wrongly joined member, unlike the others
    people = {"p-a": [*faces_of("a", a, 4, rng), stray]}
    candidate = Unit("near-stray", unit_vector(stray.vector + 0.01 * rng.standard_normal(DIM)))
    assert float(candidate.vector @ stray.vector) > RULES.min_score
    assert update(people, [], [candidate], RULES).joined == {}
    assert update(people, [], [candidate], ClusterRules(min_score=0.8, join_members=1)).joined == {"near-stray": "p-a"}


def test_rules_are_relative_to_the_model_threshold() -> None:
    sface, dlib = rules_for(0.54), rules_for(0.92)
    assert 0.54 < sface.min_score < 1 and 0.92 < dlib.min_score < 1
    assert (1 - sface.min_score) / (1 - 0.54) == pytest.approx((1 - dlib.min_score) / (1 - 0.92))
    assert rules_for(0.54, min_faces=5, min_score=0.7) == ClusterRules(min_score=0.7, min_faces=5)


def test_a_key_given_twice_is_refused() -> None:
    rng = np.random.default_rng(8)
    u = faces_of("x", centre(rng), 1, rng)[0]
    with pytest.raises(ValueError, match="twice"):
        update({}, [u], [u], RULES)
