"""The models a service works with: a face pipeline and the model's own collection for each, loaded
on first need, so one process serves the active model and a reindex's new one during the switch."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from rvs.core.faces.pipeline import FacePipeline
from rvs.core.faces.registry import MODELS
from rvs.core.store.faces import FaceStore, open_face_store

log = logging.getLogger(__name__)

Loaded = tuple[Any, FaceStore]  # (a FacePipeline, or a stand-in with the methods used; its store)
Loader = Callable[[str], Loaded]


def model_loader(settings: Any, uri: str) -> Loader:
    """Loads `model` with a service's settings (ModelSettings and StoreSettings), `uri` the Milvus."""

    def load(model: str) -> Loaded:
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; `rvs models` lists them")
        pipeline = FacePipeline(settings.model_copy(update={"model": model}))
        pipeline.load()
        return pipeline, open_face_store(settings, uri, model, pipeline.dim)

    return load


class ModelSet:
    def __init__(self, first: Loaded, load: Loader | None = None) -> None:
        """`first`: the model the service started with (its store says which); `load`: how to load
        another (None: this service serves one model only)."""
        self._loaded: dict[str, Loaded] = {first[1].model: first}
        self._load = load
        self._lock = threading.Lock()

    def get(self, model: str) -> Loaded:
        with self._lock:
            if model not in self._loaded:
                if self._load is None:
                    raise ValueError(f"this service cannot load model {model!r}")
                log.info("loading model %s and its collection", model)
                self._loaded[model] = self._load(model)
            return self._loaded[model]

    def stores(self) -> list[FaceStore]:
        with self._lock:
            return [store for _, store in self._loaded.values()]

    def delete_media(self, media_id: str, also: tuple[str, ...] = ()) -> int:
        """Delete a media item's faces from every collection loaded here and those of `also` (the
        index's active and target models); returns the most faces any of them held."""
        for model in also:
            if model:
                self.get(model)
        counts = [store.delete_media(media_id) for store in self.stores()]
        return max(counts, default=0)

    def close(self) -> None:
        for store in self.stores():
            store.close()
