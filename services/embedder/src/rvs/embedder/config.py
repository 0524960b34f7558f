from __future__ import annotations

from pydantic import Field

from rvs.core.config import BusSettings, ModelSettings, StoreSettings


class EmbedderSettings(ModelSettings, StoreSettings, BusSettings):
    """Batches of frames through detection and embedding into the store."""

    batch_size: int = Field(32, ge=1, le=1024)
    """Frames per batch through detection and embedding (on CPU, detection of each 4 frames overlaps
    the embedding of the 4 before: larger batches keep both busy longer)."""
    max_wait_ms: int = Field(200, ge=0)
    """How long to wait for a batch to fill before processing what has arrived."""
    retry_max_s: float = Field(30.0, gt=0)
    """Longest pause between retries while Milvus is unavailable."""
    max_batch_tries: int = Field(3, ge=1)
    """Deliveries of a batch whose processing fails before its frames that still fail go to the
    dead-letter path (and count as processed, with the reason). The last try halves the batch down
    to single frames, so one bad frame does not sink the others."""
    alert_gap_s: float = Field(30.0, gt=0)
    """A watched (or unknown) person seen again at the same place (a stream, or one file) within this
    many seconds of their last sighting is the same track: one alert, not one per frame."""
