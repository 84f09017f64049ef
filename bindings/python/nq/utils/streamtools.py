"""net-queue 1.1's serializers (``net_queue.utils.streamtools``): the same
classes as ``nq.PickleSerializer`` and ``nq.BytesSerializer``."""

from ..serialization import BytesSerializer, PickleSerializer

__all__ = ("PickleSerializer", "BytesSerializer")
