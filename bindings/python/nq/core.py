"""net-queue's ``core`` names (``from net_queue.core import EventOptions``
in net-queue 2.x code): the structures of :mod:`nq.options`."""

from .options import (
    CommunicatorOptions, ConnectionOptions, EventOptions, Message, NetworkLocation,
    SecurityOptions, SerializationOptions,
)

__all__ = (
    "Message", "NetworkLocation", "ConnectionOptions", "SerializationOptions",
    "SecurityOptions", "EventOptions", "CommunicatorOptions",
)
