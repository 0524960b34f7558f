"""Loading the OpenCV Zoo networks (YuNet, SFace) that OpenCV DNN runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import cv2

from rvs.core.faces.types import ModelUnavailable

T = TypeVar("T")


def create(what: str, factory: Callable[..., T], path: Path, *args: Any) -> T:
    """`factory(path, "", *args)`, a file OpenCV cannot read being ModelUnavailable."""
    # OpenCV 5 warns at every load that its new graph engine ignores target settings: noise.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        return factory(str(path), "", *args)
    except cv2.error as exc:
        raise ModelUnavailable(f"OpenCV cannot load {what} from {path}: {exc}") from exc
