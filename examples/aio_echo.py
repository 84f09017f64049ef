"""aio_echo.py: an asyncio echo server and its clients on nq.aio.

The server answers every message to its sender from a coroutine; fifty
client coroutines share one client communicator and each awaits its put
and a reply.  Run it with the Python binding on the path; it exits 0 once
every reply is back.
"""

import asyncio
import sys

import nq
import nq.aio

CLIENTS = 50


async def serve(server):
    while True:
        try:
            message = await server.get()
        except nq.Closed:
            return
        await server.put(message.data, message.peer)


async def main():
    where = nq.CommunicatorOptions(netloc=nq.NetworkLocation("127.0.0.1", 0))
    async with nq.aio.new(nq.Protocol.TCP, nq.Purpose.SERVER, where) as server:
        echo = asyncio.ensure_future(serve(server))
        there = nq.CommunicatorOptions(netloc=nq.NetworkLocation("127.0.0.1", server.local_port))
        async with nq.aio.new(nq.Protocol.TCP, nq.Purpose.CLIENT, there) as client:
            async def ask(i):
                await client.put(f"hello {i}")
                return (await client.get(timeout=10)).data

            replies = await asyncio.gather(*(ask(i) for i in range(CLIENTS)))
        echo.cancel()
    if sorted(replies) != sorted(f"hello {i}" for i in range(CLIENTS)):
        print("aio_echo: replies went missing", file=sys.stderr)
        return 1
    print(f"aio_echo: {len(replies)} coroutines got their echo")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
