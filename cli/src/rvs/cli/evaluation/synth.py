"""`rvs eval synth OUT_DIR`: short H.264 clips made from LFW photos, with the times each person is on
screen known to the frame, and a manifest for `rvs eval videos` (the format of eval/videos.json).

People come and go at times that are not whole seconds (so a 1 fps sampler cannot hit them), two or
three share a frame, one leaves and comes back, one is on screen for under a second; each shows a
few of their photos in turn (1.3 s each: pose and expression change) drifting a few pixels a second;
some people nobody searches for stand by, and one clip shows only such people. The queries are OTHER LFW
photos of the people in the clips, plus strangers who are in no clip. Each truth segment is the
interval [start, end) in seconds from the first frame showing the person to the first frame without
them (or the clip's end), computed from the frames written. The photos are read from LFW where it
lies (`--lfw`); the clips hold copies of them, so keep OUT_DIR out of the repository."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rvs.cli.evaluation.clips import Appearance, cfr_times, load_rgb, scene, synthetic_photo, visible, write_video

SIZE = (640, 360)  # frame width, height; the LFW copies are 150x150
TOP_K = 10


@dataclass(frozen=True)
class Shot:
    """One person on screen from start_s to end_s: their LFW photos `photos` (numbers), each for
    hold_s in turn (as a face in a real clip changes pose and expression), drifting from (x, y)."""

    person: str
    photos: tuple[int, ...]
    start_s: float
    end_s: float
    x: float
    y: float
    dx_per_s: float = 0.0
    dy_per_s: float = 0.0
    hold_s: float = 1.3

    def appearances(self, lfw: Path) -> list[Appearance]:
        """One Appearance per photo shown, back to back, the position carried on from one to the next."""
        out = []
        start, k = self.start_s, 0
        while start < self.end_s - 1e-9:
            end = min(self.start_s + (k + 1) * self.hold_s, self.end_s)
            dt = start - self.start_s
            at = (self.x + self.dx_per_s * dt, self.y + self.dy_per_s * dt)
            n = self.photos[k % len(self.photos)]
            out.append(Appearance(photo(lfw, self.person, n), start, end, *at, self.dx_per_s, self.dy_per_s))
            start, k = end, k + 1
        return out


@dataclass(frozen=True)
class Clip:
    name: str
    duration_s: float
    fps: int  # the start and end times are on this frame grid
    shots: tuple[Shot, ...]
    note: str
    gop: int | None = None


BUSH, POWELL, BLAIR = "George_W_Bush", "Colin_Powell", "Tony_Blair"
RUMSFELD, SCHROEDER, SHARON, CHAVEZ = "Donald_Rumsfeld", "Gerhard_Schroeder", "Ariel_Sharon", "Hugo_Chavez"

CLIPS: tuple[Clip, ...] = (
    Clip(
        "enter_leave.mp4",
        12,
        30,
        (
            Shot(BUSH, (1, 3, 5, 7), 2.3, 7.8, 250, 100, dx_per_s=8, dy_per_s=-3),
            Shot("Laura_Bush", (1, 3, 5), 0.4, 11.6, 460, 60),
        ),
        "Bush 2.3-7.8 s, drifting right; Laura Bush (nobody's query) 0.4-11.6 s",
    ),
    Clip(
        "two_people.mp4",
        12,
        25,
        (
            Shot(POWELL, (1, 3, 4), 1.6, 9.4, 60, 100, dx_per_s=5),
            Shot(BLAIR, (3, 4, 7), 3.72, 11.2, 400, 90, dx_per_s=-6),
        ),
        "two people, together 3.72-9.4 s",
        gop=250,
    ),
    Clip(
        "three_people.mp4",
        10,
        30,
        (
            Shot(RUMSFELD, (1, 2, 3), 0, 6.6, 20, 110),
            Shot(SCHROEDER, (1, 2, 3), 1.2, 8.5, 245, 60, dy_per_s=4),
            Shot(SHARON, (1, 2, 3), 2.9, 10, 470, 120, dx_per_s=-4),
        ),
        "three people, all three 2.9-6.6 s; the last stays to the end",
    ),
    Clip(
        "comes_back.mp4",
        14,
        30,
        (
            Shot(CHAVEZ, (1, 2, 3), 0.7, 3.4, 100, 100, dx_per_s=6),
            Shot(CHAVEZ, (4, 5, 8), 7.6, 11.3, 380, 110, dx_per_s=-5),
            Shot(BUSH, (2, 4, 6), 9.1, 13.4, 60, 160, dy_per_s=-6),
            Shot("Lleyton_Hewitt", (1, 2), 4.5, 6.9, 250, 100),
        ),
        "Chavez 0.7-3.4 s, gone, back 7.6-11.3 s elsewhere in the frame; Bush 9.1-13.4 s; "
        "Lleyton Hewitt (nobody's query) 4.5-6.9 s",
    ),
    Clip(
        "brief.mp4",
        8,
        30,
        (
            Shot(BLAIR, (2, 5, 6), 1.5, 6.7, 80, 90),
            Shot(POWELL, (2,), 4.3, 5.1, 420, 110),
        ),
        "Blair 1.5-6.7 s; Powell for 0.8 s only (one 1 fps sample)",
    ),
    Clip(
        "strangers_only.mp4",
        9,
        25,
        (
            Shot("Jean_Chretien", (1, 2, 3), 0.52, 6.2, 80, 100, dx_per_s=4),
            Shot("Gloria_Macapagal_Arroyo", (1, 2, 4), 2.12, 8.6, 400, 100),
        ),
        "two people no query asks for",
    ),
)

# Other photos of the people in the clips (none of them is in a clip), then people in no clip. Every
# photo here and in CLIPS shows one face (YuNet finds exactly one at a 0.5 gate): some LFW photos
# show two people (Laura_Bush_0002 has George W. Bush beside her), which would make the truth wrong.
QUERIES: tuple[tuple[str, int], ...] = (
    (BUSH, 10),
    (BUSH, 19),
    (POWELL, 12),
    (POWELL, 20),
    (BLAIR, 10),
    (BLAIR, 20),
    (RUMSFELD, 10),
    (SCHROEDER, 10),
    (SHARON, 10),
    (CHAVEZ, 10),
    ("Vladimir_Putin", 2),
    ("Serena_Williams", 1),
    ("Jacques_Chirac", 1),
    ("Junichiro_Koizumi", 2),
    ("John_Ashcroft", 1),
    ("Jennifer_Capriati", 2),
)


def photo(lfw: Path, person: str, n: int) -> Path:
    return lfw / person / f"{person}_{n:04d}.jpg"


def photos_needed(clips: tuple[Clip, ...] = CLIPS) -> list[Path]:
    """Relative LFW paths (Person/Person_NNNN.jpg) the set reads."""
    wanted = {(s.person, n) for c in clips for s in c.shots for n in s.photos} | set(QUERIES)
    return sorted(photo(Path(), p, n) for p, n in wanted)


def build(out: Path, lfw: Path, clips: tuple[Clip, ...] = CLIPS) -> Path:
    """Write the clips and manifest.json into `out`; returns the manifest's path."""
    if missing := [str(lfw / p) for p in photos_needed(clips) if not (lfw / p).is_file()]:
        raise ValueError(f"LFW photos missing (is --lfw {lfw} LFW's images folder?): {', '.join(missing[:3])}")
    out.mkdir(parents=True, exist_ok=True)
    background = synthetic_photo(seed=7, size=SIZE)
    entries: list[dict[str, Any]] = []
    for clip in clips:
        shots = [(s.person, a) for s in clip.shots for a in s.appearances(lfw)]
        pictures = {a.photo: load_rgb(a.photo) for _, a in shots}
        times = cfr_times(clip.duration_s, clip.fps)
        frames = scene(background, [a for _, a in shots], pictures)
        write_video(out / clip.name, frames, times, rate=clip.fps, gop=clip.gop)
        people = []
        for person in dict.fromkeys(s.person for s in clip.shots):  # in order of first appearance
            mine = [a for who, a in shots if who == person]
            segments = visible(mine, times, clip.duration_s)
            people.append({"name": person, "segments": [list(s) for s in segments]})
        entries.append({"path": clip.name, "people": people, "notes": clip.note})
    manifest = {
        "top_k": TOP_K,
        "notes": "built by `rvs eval synth` from LFW photos; segments are [start, end) in seconds, the "
        "frames showing the person",
        "clips": entries,
        "queries": [{"name": person, "photo": _path(photo(lfw, person, n), out)} for person, n in QUERIES],
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def _path(path: Path, base: Path) -> str:
    """`path` relative to `base` where they share a folder below the root, absolute otherwise."""
    path, base = path.resolve(), base.resolve()
    return os.path.relpath(path, base) if os.path.commonpath([path, base]) != path.anchor else str(path)
