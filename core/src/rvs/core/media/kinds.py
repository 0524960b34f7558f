"""Which files are media, and of which kind; the kinds' names in the API and in metrics."""

from __future__ import annotations

from pathlib import PurePath

from rvs.v1 import rvs_pb2 as pb

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
# The photo formats decoded (Pillow's names), at ingest and in queries alike, whatever the file's name.
IMAGE_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "TIFF"})
IMAGE_FORMATS_TEXT = "JPEG, PNG, WebP, BMP or TIFF"
# Animated GIFs are decoded as video: every frame of a GIF is a moment in time.
VIDEO_SUFFIXES = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".mpg",
        ".mpeg",
        ".ts",
        ".mts",
        ".m2ts",
        ".wmv",
        ".flv",
        ".3gp",
        ".ogv",
        ".gif",
    }
)
# Files being written by common tools; they are picked up once renamed to their final name.
TEMPORARY_SUFFIXES = frozenset({".part", ".partial", ".crdownload", ".tmp", ".download", ".swp"})


# `kinds` as the search page and `rvs search --kinds` name the SearchRequest's KindFilter.
KIND_FILTERS = {"all": pb.KIND_FILTER_ALL, "images": pb.KIND_FILTER_IMAGES, "videos": pb.KIND_FILTER_VIDEOS}
# The media kind a KindFilter searches (0: any).
MEDIA_KIND_BY_FILTER = {
    pb.KIND_FILTER_ALL: 0,
    pb.KIND_FILTER_IMAGES: pb.MEDIA_KIND_IMAGE,
    pb.KIND_FILTER_VIDEOS: pb.MEDIA_KIND_VIDEO,
}
KIND_LABELS = {pb.MEDIA_KIND_IMAGE: "image", pb.MEDIA_KIND_VIDEO: "video"}


def kind_label(kind: pb.MediaKind.ValueType) -> str:
    """The `kind` label of the sampler's metrics: image, video, or other (not a media type)."""
    return KIND_LABELS.get(kind, "other")


def media_kind(path: str | PurePath) -> pb.MediaKind.ValueType:
    suffix = PurePath(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return pb.MEDIA_KIND_IMAGE
    if suffix in VIDEO_SUFFIXES:
        return pb.MEDIA_KIND_VIDEO
    return pb.MEDIA_KIND_UNSPECIFIED


def is_ignored_name(name: str) -> bool:
    """Hidden files and files that are still being downloaded or edited."""
    return name.startswith(".") or name.endswith("~") or PurePath(name).suffix.lower() in TEMPORARY_SUFFIXES
