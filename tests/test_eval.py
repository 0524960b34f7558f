"""Search-quality evaluation: the measures on hand-made rankings, the quality gates, and
`rvs eval images` / `rvs eval videos` run for real on LFW photos and clips built from them."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from rvs.cli.evaluation import measures, report, synth
from rvs.cli.evaluation.videos import (
    QueryResult,
    SegmentMatch,
    VideoEval,
    match_segments,
    measure,
    query_image,
    suggest,
    sweep_query,
)
from rvs.core.catalog import Catalog
from rvs.core.faces.detector import BLURRY, LOW_CONFIDENCE, POSE, TOO_SMALL, QualityGates, reject_reason, sharpness, yaw
from rvs.core.faces.types import Detection
from rvs.v1 import rvs_pb2 as pb

from conftest import ROOT, lfw, lfw_people, shared
from corpus import BLAIR, BUSH, POWELL, build_corpus
from media_factory import Appearance, cfr_times, load_rgb, synthetic_photo, visible, write_video


def test_ranking_measures() -> None:
    ranking = [True, False, True] + [False] * 17
    assert measures.portion_at_k(ranking) == pytest.approx(2 / 20)
    assert measures.normalised_portion_at_k(ranking, n_relevant=3) == pytest.approx(2 / 3)
    assert measures.average_precision_at_k(ranking, n_relevant=3) == pytest.approx((1 + 2 / 3) / 3)
    assert measures.average_precision_at_k([False] * 20, n_relevant=3) == 0.0
    assert measures.normalised_portion_at_k([True] * 20, n_relevant=50) == 1.0


def test_verification_picks_thresholds_on_other_folds() -> None:
    rng = np.random.default_rng(0)
    same = np.tile([True, False], 100)
    scores = np.where(same, rng.normal(0.95, 0.02, 200), rng.normal(0.80, 0.05, 200))
    result = measures.verification_accuracy(scores, same, np.repeat(np.arange(10), 20))
    assert result.folds == 10 and result.accuracy > 0.97 and 0.85 < result.threshold < 0.93


def test_pr_curve_counts_missed_faces_against_recall() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    relevant = np.array([True, True, False, True])
    curve = measures.pr_curve(scores, relevant, n_relevant=4, thresholds=np.array([0.65, 0.75]))
    assert curve.precision == pytest.approx([2 / 3, 1.0])
    assert curve.recall == pytest.approx([2 / 4, 2 / 4])  # one relevant photo was never found


def test_quality_gates_name_their_reason() -> None:
    frontal = np.array([[40, 50], [60, 50], [50, 60], [42, 70], [58, 70]], np.float32)
    profile = np.array([[40, 50], [60, 50], [68, 60], [55, 70], [65, 70]], np.float32)
    assert yaw(frontal) == pytest.approx(0.0) and yaw(profile) == pytest.approx(0.9)
    sharp = synthetic_photo()
    blurred = np.asarray(Image.fromarray(sharp).resize((25, 25)).resize((250, 250)))
    box = (70.0, 60.0, 180.0, 190.0)
    assert sharpness(sharp, box) > 4 * sharpness(blurred, box)
    gates = QualityGates(min_score=0.95, min_face_px=40, min_sharpness=50, max_yaw=0.5)
    face = Detection(box, 0.99, frontal)
    assert reject_reason(sharp, face, gates) is None
    assert reject_reason(sharp, Detection(box, 0.90, frontal), gates) == LOW_CONFIDENCE
    assert reject_reason(sharp, Detection((10, 10, 40, 40), 0.99, frontal), gates) == TOO_SMALL
    assert reject_reason(sharp, Detection(box, 0.99, profile), gates) == POSE
    assert reject_reason(blurred, face, gates) == BLURRY


def test_rejections_are_counted_once_per_frame(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c.db")
    catalog.apply(pb.MediaEvent(media_id="m", discovered=pb.MediaDiscovered(uri="/a.mp4", kind=2)))
    event = pb.MediaEvent(
        media_id="m",
        embedded=pb.FramesEmbedded(
            sample_indices=[0, 1],
            face_counts=[1, 0],
            rejections=[pb.FaceRejections(by_reason={"BLURRY": 2}), pb.FaceRejections(by_reason={"POSE": 1})],
        ),
    )
    catalog.apply(event)
    catalog.apply(event)  # a replay
    media = catalog.get("m")
    assert media is not None and dict(media.faces_rejected) == {"BLURRY": 2, "POSE": 1}


def _queries() -> list[QueryResult]:
    """What searches at 0.3, 0.62, 0.77 and 0.85 returned (as sweep_query records it)."""
    return [
        QueryResult(
            "A",
            "a.jpg",
            False,
            ["a1.mp4", "a2.mp4"],
            [],
            {"a1.mp4": 0.9, "a2.mp4": 0.6, "b.mp4": 0.7},
            returned={
                0.3: ["a1.mp4", "b.mp4", "a2.mp4"],
                0.62: ["a1.mp4", "b.mp4"],
                0.77: ["a1.mp4"],
                0.85: ["a1.mp4"],
            },
        ),
        QueryResult(
            "B", "b.mp4@2", False, [], ["b.mp4"], {"a1.mp4": 0.5}, returned={0.3: ["a1.mp4"]}
        ),  # its only clip left out
        QueryResult(
            "S",
            "s.jpg",
            True,
            [],
            [],
            {"b.mp4": 0.8, "a2.mp4": 0.4},
            returned={0.3: ["b.mp4", "a2.mp4"], 0.62: ["b.mp4"], 0.77: ["b.mp4"]},
        ),
        QueryResult("N", "n.jpg", False, ["a1.mp4"], [], {}, no_face=True),  # a missed pair
    ]


class FakeSearch:
    """A search over fixed sample scores per clip with a rule beyond the threshold (as tracks have):
    a clip needs two samples at or above min_score to be returned; photos need one."""

    def __init__(self) -> None:
        self.videos = {"/w/000_a.mp4": [0.9, 0.4], "/w/001_b.mp4": [0.7, 0.65], "/w/002_c.mp4": [0.6, 0.55, 0.5]}
        self.images = {"/w/003_p.jpg": 0.8}
        self.requests: list[pb.SearchRequest] = []

    def __call__(self, request: pb.SearchRequest) -> pb.SearchResponse:
        self.requests.append(request)
        t = request.min_score
        videos = [pb.VideoHit(uri=u, best_score=max(s)) for u, s in self.videos.items() if sum(x >= t for x in s) >= 2]
        videos.sort(key=lambda v: -v.best_score)
        images = [pb.ImageHit(uri=u, score=s) for u, s in self.images.items() if s >= t]
        return pb.SearchResponse(videos=videos[: request.top_k], images=images[: request.top_k])


def _uri(u: str) -> str:
    return {"/w/000_a.mp4": "a.mp4", "/w/001_b.mp4": "b.mp4", "/w/002_c.mp4": "c.mp4", "/w/003_p.jpg": "p.jpg"}[u]


def test_video_sweep_runs_a_real_search_at_every_threshold() -> None:
    search = FakeSearch()
    got = sweep_query(search, [0.3, 0.52, 0.6, 0.7], top_k=2, ignored=[], uri=_uri)
    assert [(r.min_score, r.top_k) for r in search.requests] == [
        (pytest.approx(t), 2) for t in (0.3, 0.52, 0.6, 0.7)
    ]  # one search per threshold
    # a.mp4's best sample (0.9) passes every threshold, but from 0.52 on it is its only one, so the
    # search drops it: a filter of one low search's best scores would keep it; only a search at t
    # knows the rule. top_k caps videos and photos each.
    assert got == {
        0.3: ["a.mp4", "b.mp4", "p.jpg"],
        0.52: ["b.mp4", "c.mp4", "p.jpg"],
        0.6: ["b.mp4", "p.jpg"],
        0.7: ["p.jpg"],
    }
    # The ignored clip is asked for on top of top_k, then left out, and takes no one's place.
    search.requests.clear()
    got = sweep_query(search, [0.3], top_k=1, ignored=["a.mp4"], uri=_uri)
    assert search.requests[0].top_k == 2 and got == {0.3: ["b.mp4", "p.jpg"]}
    returned = sweep_query(search, [0.3, 0.52, 0.6], 10, [], _uri)
    result = QueryResult("A", "a.jpg", False, ["a.mp4", "c.mp4"], [], {}, returned=returned)
    low, high = measure([result], 0.3), measure([result], 0.6)
    assert (low.found, low.false_videos_per_query, high.found, high.false_videos_per_query) == (2, 2.0, 0, 2.0)
    assert measure([result], 0.52).found == 1  # c.mp4 only: a.mp4 lacks a second sample there


def test_video_sweep_measures_what_each_threshold_returned() -> None:
    queries = _queries()
    low = measure(queries, 0.3)
    assert (low.found, low.recall, low.false_videos_per_query, low.strangers_matched) == (2, 2 / 3, 4 / 4, 1)
    mid = measure(queries, 0.62)
    assert (mid.found, mid.false_videos_per_query, mid.strangers_matched) == (1, 2 / 4, 1)
    high = measure(queries, 0.85)
    assert (high.found, high.false_videos_per_query, high.strangers_matched) == (1, 0.0, 0)
    sweep = [measure(queries, t) for t in (0.3, 0.62, 0.77, 0.85)]
    assert [p.false_videos_per_query for p in sweep] == [1.0, 0.5, 0.25, 0.0]
    assert suggest(sweep) == 0.85 and suggest(sweep, max_false=0.3) == 0.77 and suggest(sweep[:2]) is None


def test_segments_match_the_true_interval_they_overlap_most() -> None:
    truth = [(0.7, 3.4), (7.6, 11.3)]
    pairs, extra = match_segments(truth, [(3.0, 3.0), (3.4, 5.0), (8.0, 11.0), (9.0, 9.0)])
    # (3.4, 5.0) starts where the first true segment ends: [start, end) does not reach it.
    assert pairs == [((0.7, 3.4), (3.0, 3.0)), ((7.6, 11.3), (8.0, 11.0))] and extra == [(3.4, 5.0)]
    pairs, extra = match_segments(truth, [(1.0, 3.0)])
    assert pairs == [((0.7, 3.4), (1.0, 3.0)), ((7.6, 11.3), None)] and extra == []
    merged, _ = match_segments(truth, [(1.0, 11.0)])  # one segment over the gap: both ends are far off
    assert merged == [((0.7, 3.4), (1.0, 11.0)), ((7.6, 11.3), (1.0, 11.0))]


def _video_eval() -> VideoEval:
    queries = _queries()
    sweep = [measure(queries, t) for t in (0.3, 0.62, 0.77, 0.85)]
    return VideoEval("m", 3, 4, 1, 3, 1, 1 / 3, 0.25, 1, 1, None, 0.77, suggest(sweep), 10, sweep, queries)


def test_video_report_has_the_sweep_and_a_plot(tmp_path: Path) -> None:
    result = _video_eval()
    sweep = result.sweep
    table = report.video_table([result])
    assert "| m | 3 | 4 (1) | 1 | 1/3 (0.33) | 0.25 | 1/1 | — | 0.77 | 0.85 (0.33) |" in table
    assert "| 0.30 | 0.67 | 2/3 | 1.00 | 1/1 |" in table and "| 0.62 |" not in table  # every 0.05 only
    assert "| 0.77 | 0.33 | 1/3 | 0.25 | 1/1 |" in table  # and always the default threshold
    assert "| 0.85 | 0.33 | 1/3 | 0.00 | 0/1 |" in table  # the last (and suggested)
    same = dataclasses.replace(sweep[0], threshold=0.35)
    repeated = report.video_table([dataclasses.replace(result, sweep=[sweep[0], same, *sweep[1:]])])
    assert "| 0.35 |" not in repeated  # a row equal to the one above is left out
    details = report.video_queries_table(result)
    assert "| A | a.jpg | a1.mp4 0.900*, a2.mp4 0.600 | b.mp4 0.700 |" in details
    assert "| N (no face) |" in details and "| S (stranger) | s.jpg | — | b.mp4 0.800 |" in details
    assert report.video_segments_table(result) == ""  # no segments in the manifest
    report.video_plot([result], tmp_path / "v.png")
    assert (tmp_path / "v.png").stat().st_size > 10_000
    text = report.as_json([result])
    assert json.loads(text) == json.loads(json.dumps([dataclasses.asdict(result)]))
    assert '"0.3": ["a1.mp4", "b.mp4", "a2.mp4"]' in text  # lists of strings or numbers on one line


def test_video_report_lists_segment_boundaries() -> None:
    matches = [
        SegmentMatch("q/a.jpg", "c/x.mp4", (2.3, 7.8), (3.0, 7.0), 0.7, 0.8),
        SegmentMatch("q/a.jpg", "c/x.mp4", (9.1, 9.6), None, None, None),
        SegmentMatch("q/a.jpg", "c/x.mp4", None, (12.0, 12.0), None, None),
    ]
    result = dataclasses.replace(
        _video_eval(),
        mean_segment_error_s=0.75,
        mean_start_error_s=0.7,
        mean_end_error_s=0.8,
        max_segment_error_s=0.8,
        segments_missed=1,
        segments_extra=1,
        segments=matches,
    )
    table = report.video_segments_table(result)
    assert "mean error 0.75 s (start 0.70, end 0.80), max 0.80 s; 2 true segments, 1 with no returned" in table
    assert "| a.jpg | x.mp4 | 2.30-7.80 | 3.00-7.00 | 0.70 | 0.80 |" in table
    assert "| a.jpg | x.mp4 | 9.10-9.60 | — | — | — |" in table
    assert "| a.jpg | x.mp4 | — (none) | 12.00-12.00 | — | — |" in table


def test_frame_query_is_cut_from_its_clip_in_memory(tmp_path: Path) -> None:
    # 4 s at 10 fps, each frame one grey level: 40 per second.
    clip = write_video(
        tmp_path / "zl.mp4", lambda t: np.full((528, 1040, 3), round(t * 40), np.uint8), cfr_times(4, 10)
    )
    data = query_image({"frame": {"clip": str(clip), "at_s": 2.5, "box": [515, 0, 1030, 516]}}, Path("/"))
    image = Image.open(__import__("io").BytesIO(data))
    assert image.format == "PNG" and image.size == (515, 516)
    assert abs(np.asarray(image).mean() - 100) < 4  # the frame at 2.5 s
    with pytest.raises(ValueError, match="no frame"):
        query_image({"frame": {"clip": str(clip), "at_s": 60}}, Path("/"))


def _fake_lfw(root: Path) -> Path:
    """LFW's layout with a made-up picture (its own seed) for every photo the synthetic set reads."""
    for i, rel in enumerate(synth.photos_needed()):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(synthetic_photo(100 + i, (150, 150))).save(root / rel, quality=95)
    return root


def test_synthetic_set_is_designed_as_documented() -> None:
    lfw = Path("/lfw")
    in_clips = {(s.person, n) for c in synth.CLIPS for s in c.shots for n in s.photos}
    people = {person for person, _ in in_clips}
    queried = {person for person, _ in synth.QUERIES}
    assert not in_clips & set(synth.QUERIES)  # queries are OTHER photos of the people in clips
    assert len(queried & people) >= 6 and len(queried - people) >= 5  # and strangers, in no clip
    assert any(len(c.shots) >= 3 for c in synth.CLIPS)  # three people in one frame
    assert any(not {s.person for s in c.shots} & queried for c in synth.CLIPS)  # a clip of strangers only
    for clip in synth.CLIPS:
        times = cfr_times(clip.duration_s, clip.fps)
        for shot in clip.shots:  # a shot's photos follow one another with no gap
            pieces = shot.appearances(lfw)
            assert len({a.photo for a in pieces}) == min(len(shot.photos), len(pieces))
            assert visible(pieces, times, clip.duration_s) == [(shot.start_s, min(shot.end_s, clip.duration_s))]


def test_synthetic_clips_show_each_person_exactly_in_their_true_segments(tmp_path: Path) -> None:
    lfw = _fake_lfw(tmp_path / "lfw")
    chosen = tuple(c for c in synth.CLIPS if c.name in {"comes_back.mp4", "two_people.mp4"})
    manifest_path = synth.build(tmp_path / "set", lfw, chosen)
    manifest = json.loads(manifest_path.read_text())
    truth = {(c["path"], p["name"]): p["segments"] for c in manifest["clips"] for p in c["people"]}
    assert truth == {
        ("two_people.mp4", "Colin_Powell"): [[1.6, 9.4]],
        ("two_people.mp4", "Tony_Blair"): [[3.72, 11.2]],
        ("comes_back.mp4", "Hugo_Chavez"): [[0.7, 3.4], [7.6, 11.3]],  # leaves and comes back
        ("comes_back.mp4", "George_W_Bush"): [[9.1, 13.4]],
        ("comes_back.mp4", "Lleyton_Hewitt"): [[4.5, 6.9]],
    }
    assert all((manifest_path.parent / q["photo"]).is_file() for q in manifest["queries"])
    for clip in chosen:
        shown: dict[str, list[tuple[Appearance, np.ndarray]]] = {}
        for shot in clip.shots:
            shown.setdefault(shot.person, []).extend((a, load_rgb(a.photo)) for a in shot.appearances(lfw))
        frames = 0
        with av.open(str(tmp_path / "set" / clip.name)) as container:
            for frame in container.decode(video=0):
                ms = round(frame.pts * frame.time_base * 1000)
                rgb = frame.to_ndarray(format="rgb24")
                for person, pieces in shown.items():
                    # The person's photo is in the frame where the generator put it, nowhere else.
                    on_screen = any(_pasted(rgb, a, photo, ms / 1000) for a, photo in pieces)
                    expected = any(round(a * 1000) <= ms < round(b * 1000) for a, b in truth[(clip.name, person)])
                    assert on_screen == expected, (clip.name, person, ms)
                frames += 1
        assert frames == round(clip.duration_s * clip.fps)


def _pasted(rgb: np.ndarray, a: Appearance, photo: np.ndarray, t: float) -> bool:
    h, w = photo.shape[:2]
    x, y = a.corner(t, (rgb.shape[1], rgb.shape[0]), (w, h))
    return float(np.abs(rgb[y : y + h, x : x + w].astype(np.float32) - photo).mean()) < 20


def test_synthetic_set_needs_its_lfw_photos(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="LFW photos missing"):
        synth.build(tmp_path / "set", tmp_path / "no-lfw")


@pytest.mark.slow  # the shared clips
def test_the_video_manifest_names_existing_files_and_consistent_people() -> None:
    path = ROOT / "eval" / "videos.json"
    manifest = json.loads(path.read_text())
    in_clips = {p["name"]: c["path"] for c in manifest["clips"] for p in c["people"]}
    for clip in manifest["clips"]:
        assert (path.parent / clip["path"]).is_file(), clip["path"]
    covered = {(path.parent / c["path"]).resolve() for c in manifest["clips"]}
    on_disk = {p.resolve() for pattern in ("**/*.mp4", "**/*.gif") for p in shared("media").glob(pattern)}
    assert on_disk <= covered, sorted(map(str, on_disk - covered))  # every shared clip is labelled
    for query in manifest["queries"]:
        if "frame" in query:  # a still cut from the person's own clip
            assert query["frame"]["clip"] in {
                c["path"] for c in manifest["clips"] if query["name"] in {p["name"] for p in c["people"]}
            }, query
        else:
            assert (path.parent / query["photo"]).is_file(), query["photo"]
    strangers = [q for q in manifest["queries"] if q["name"] not in in_clips]
    assert len(strangers) >= 10


@pytest.mark.slow  # an rvs process, importing torch
def test_eval_refuses_a_model_the_registry_lacks() -> None:
    done = rvs_eval("videos", "eval/videos.json", "--models", "dlib-resnet,no-such-model")
    assert done.returncode == 2
    assert "unknown model(s) no-such-model" in done.stderr and "dlib-resnet" in done.stderr


def rvs_eval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rvs.cli", "eval", *args], capture_output=True, text=True, timeout=900, cwd=ROOT
    )


@pytest.mark.e2e
def test_eval_images_on_lfw_people(tmp_path: Path, milvus_uri: str) -> None:
    # A small LFW of links to the shared photos, with a pairs.txt of two folds made from them.
    people = ["Colin_Powell", "Donald_Rumsfeld", "George_W_Bush", "Gerhard_Schroeder", "Tony_Blair"]
    images = tmp_path / "lfw" / "images"
    images.mkdir(parents=True)
    for person in [*people, "Aaron_Eckhart", "Abel_Pacheco", "Adam_Sandler"]:
        (images / person).mkdir()
        for n in range(1, 6 if person in people else 2):
            if (src := lfw_people() / person / f"{person}_{n:04d}.jpg").exists():
                os.symlink(src, images / person / src.name)
    lines = ["2\t5"]
    for fold in range(2):
        lines += [f"{people[i]}\t{1 + fold}\t{3 + fold}" for i in range(5)]
        lines += [f"{people[i]}\t{1 + fold}\t{people[(i + 1) % 5]}\t{2 + fold}" for i in range(5)]
    (tmp_path / "lfw" / "pairs.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "report"
    done = rvs_eval("images", str(images), "--milvus-uri", milvus_uri, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "| dlib-resnet+mtcnn | 28 | 8 | 25 |" in done.stdout  # photos, people, queries (5 x 5 have others)
    row = json.loads(out.with_suffix(".json").read_text())[0]
    assert row["rank1"] >= 0.9 and row["map_at_20"] >= 0.8
    assert row["portion_at_20"] <= 4 / 20 + 1e-9  # at most 4 other photos per person: the ceiling
    assert row["normalised_portion_at_20"] >= 0.8
    assert row["verification"]["folds"] == 2 and row["verification"]["accuracy"] >= 0.8
    assert row["photos_per_s"] > 0.5  # 28 photos + the pairs' others, detected and embedded
    assert out.with_suffix(".png").stat().st_size > 10_000 and out.with_suffix(".md").exists()


@pytest.mark.e2e
def test_eval_videos_with_a_manifest(tmp_path: Path, milvus_uri: str) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    build_corpus(clips)
    manifest = {
        "top_k": 5,
        "clips": [
            {
                "path": "clips/clip_a.mp4",
                "people": [{"name": BUSH, "segments": [[1, 4]]}, {"name": BLAIR, "segments": [[7, 10]]}],
            },
            {
                "path": "clips/nested/deeper/clip_b.mp4",
                "people": [{"name": POWELL, "segments": [[2, 6]]}, {"name": BUSH, "segments": [[2, 6]]}],
            },
            {"path": "clips/no_faces.mp4", "people": []},
        ],
        "queries": [
            {"name": BUSH, "photo": str(lfw(BUSH, 10))},
            {"name": BLAIR, "photo": str(lfw(BLAIR, 10)), "unsure": ["clips/clip_a.mp4"]},
            {"name": BUSH, "frame": {"clip": "clips/clip_a.mp4", "at_s": 2.5, "box": [0, 0, 320, 360]}},
            {"name": POWELL, "photo": str(lfw(POWELL, 10))},
            {"name": "Vladimir_Putin", "photo": str(lfw("Vladimir_Putin", 1))},
            {"name": "Serena_Williams", "photo": str(lfw("Serena_Williams", 1))},
        ],
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    done = rvs_eval("videos", str(path), "--milvus-uri", milvus_uri, "--out", str(tmp_path / "v"), "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)[0]
    # Bush's frame of clip_a leaves clip_a out: his pair is clip_b's, nothing else may come back.
    # Blair's only clip is marked unsure: no pair, and clip_a counts for nothing for that query.
    assert (row["queries"], row["pairs"], row["found"], row["strangers"]) == (6, 4, 4, 2)
    blair = next(q for q in row["per_query"] if q["name"] == BLAIR)
    assert blair["expected"] == [] and "clips/clip_a.mp4" not in blair["scores"]
    assert (row["strangers_matched"], row["false_videos_per_query"], row["no_face"]) == (0, 0.0, 0)
    frame = next(q for q in row["per_query"] if q["source"] == "clips/clip_a.mp4@2.5")
    assert frame["expected"] == ["clips/nested/deeper/clip_b.mp4"] and "clips/clip_a.mp4" not in frame["scores"]
    assert frame["ignored"] == ["clips/clip_a.mp4"]
    assert row["mean_segment_error_s"] <= 1.0
    sweep = {p["threshold"]: p for p in row["sweep"]}
    assert sweep[0.2]["false_videos_per_query"] > 0 and sweep[0.2]["recall"] == 1.0  # low thresholds let strangers in
    assert row["suggested_min_score"] is not None and row["suggested_min_score"] <= row["min_score"]
