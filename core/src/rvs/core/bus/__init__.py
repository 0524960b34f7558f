"""The bus between the sampler and the embedder: frames one way, progress events alongside.

Two transports share these interfaces: an in-process queue (embedded mode) and Kafka (distributed
mode). Services depend only on the protocols below.
"""

from rvs.core.bus.base import (
    AlertPublisher,
    BusClosed,
    BusUnavailable,
    EventPublisher,
    FrameConsumer,
    FramePublisher,
    removal,
)

__all__ = [
    "AlertPublisher",
    "BusClosed",
    "BusUnavailable",
    "EventPublisher",
    "FrameConsumer",
    "FramePublisher",
    "removal",
]
