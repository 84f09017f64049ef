"""nq.aio: the communicator for asyncio programs (libnq >= 1.2).

    import asyncio
    import nq.aio

    async def main():
        async with nq.aio.new(purpose=nq.Purpose.SERVER) as queue:
            message = await queue.get()
            await queue.put("Hello, Client!", message.peer)

    asyncio.run(main())

``nq.aio.new`` takes what ``nq.new`` takes.  ``get`` waits on the
communicator's readiness descriptor through the running loop (one reader
for every coroutine waiting on it, no thread per waiter); ``put`` awaits
the put's future, which libnq completes from its own threads and asyncio
receives thread-safely.  Hundreds of coroutines may share one
communicator.  ``close`` runs the blocking close in the loop's executor.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from . import errors
from . import nqraw as _raw
from .comm import Communicator
from .options import CommunicatorOptions, Message, Protocol, Purpose

__all__ = ("AioCommunicator", "new")

# A getter of some peers' messages cannot tell from the descriptor when
# one of theirs arrives while others' wait: it looks again after this long.
_PEERS_RECHECK_S = 0.005


class AioCommunicator:
    """An asyncio face of :class:`nq.Communicator`; the methods that wait are
    coroutines, the rest are those of the communicator."""

    def __init__(self, protocol: Protocol | str = Protocol.TCP,
                 purpose: Purpose | str = Purpose.CLIENT,
                 options: CommunicatorOptions | None = None) -> None:
        self._comm = Communicator(protocol, purpose, options)
        self._fd = self._comm.fileno()
        self._waiters = []
        self._loop = None

    def __getattr__(self, name: str) -> Any:
        # id, server_id, local_port, peers(), stats(), fileno() ...
        return getattr(self._comm, name)

    # -- waiting for the descriptor

    def _on_readable(self):
        waiters, self._waiters = self._waiters, []
        self._loop.remove_reader(self._fd)
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def _readable(self):
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("an nq.aio communicator waits on one event loop")
        w = loop.create_future()
        if not self._waiters:
            loop.add_reader(self._fd, self._on_readable)
        self._waiters.append(w)
        try:
            await w
        except asyncio.CancelledError:
            if w in self._waiters:
                self._waiters.remove(w)
                if not self._waiters:
                    loop.remove_reader(self._fd)
            raise

    # -- the coroutines

    async def get(self, *peers: uuid.UUID, timeout: float | None = None) -> Message[Any]:
        """Take the next message (with peers, the next of one of them), as
        :meth:`nq.Communicator.get` does, without blocking the loop."""
        async def take():
            while True:
                try:
                    return self._comm.get(*peers, timeout=0)
                except errors.Timeout:
                    pass
                await self._readable()
                if peers:
                    try:
                        return self._comm.get(*peers, timeout=0)
                    except errors.Timeout:
                        # Readable for other peers' messages: look again soon.
                        await asyncio.sleep(_PEERS_RECHECK_S)

        if timeout is None:
            return await take()
        try:
            return await asyncio.wait_for(take(), max(0.0, timeout))
        except asyncio.TimeoutError:
            raise errors.from_code(_raw.NQ_ETIMEDOUT) from None

    async def put(self, data: Any, *peers: uuid.UUID) -> None:
        """Publish data to peers and wait until the put completes (raises
        the put's error); the put itself is made at once.  Cancelling the
        awaiting task withdraws the put's copies that have not started on
        the wire, as the put future's ``cancel()`` does."""
        return await asyncio.wrap_future(self._comm.put(data, *peers))

    async def close(self) -> None:
        """Close (the blocking close runs in the loop's executor)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._comm.close)

    async def __aenter__(self) -> AioCommunicator:
        return self

    async def __aexit__(self, *exc: object) -> bool:
        await self.close()
        return False


def new(protocol: Protocol | str = Protocol.TCP, purpose: Purpose | str = Purpose.CLIENT,
        options: CommunicatorOptions | None = None) -> AioCommunicator:
    """Create an asyncio communicator (``nq.new``'s arguments)."""
    return AioCommunicator(protocol, purpose, options)
