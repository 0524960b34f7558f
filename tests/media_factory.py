"""Builds test media: clips from real photos (faces pasted onto a real background at known times), and
photo-like images made here for the tests that need a picture but no face and no ../shared/. The clip
helpers live in rvs.cli.evaluation.clips (`rvs eval synth` builds its set with them)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

from rvs.cli.evaluation.clips import RGB, Appearance, cfr_times, load_rgb, scene, synthetic_photo, visible, write_video

__all__ = [
    "RGB",
    "Appearance",
    "cfr_times",
    "load_rgb",
    "scene",
    "synthetic_photo",
    "visible",
    "write_audio_only",
    "write_photo",
    "write_video",
]


def write_photo(path: Path, seed: int = 0, size: tuple[int, int] = (250, 250), **save: object) -> Path:
    """A synthetic_photo saved in the format its suffix names (JPEG at quality 90 unless `save` says)."""
    img = Image.fromarray(synthetic_photo(seed, size))
    if path.suffix.lower() in {".jpg", ".jpeg"}:
        save = {"quality": 90} | save
    img.save(path, **save)  # type: ignore[arg-type]
    return path


def write_audio_only(path: Path, packets: int = 20) -> Path:
    """An MP4 with an AAC stream and no video."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for i in range(packets):
            frame.pts = i * 1024
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    return path
