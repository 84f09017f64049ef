"""nq.aio: the asyncio face, on one communicator shared by many coroutines."""

import asyncio
import threading

import pytest

import nq
import nq.aio
from conftest import BIG, TIMEOUT, options, stalling, wait_stat


def echo_server(server, count, stop):
    """Answers each message to its sender, from a thread of its own."""
    served = 0
    while served < count and not stop.is_set():
        try:
            message = server.get(timeout=0.1)
        except nq.Timeout:
            continue
        server.put(message.data, message.peer)
        served += 1


def test_two_hundred_coroutines_share_one_communicator():
    count = 200
    server = nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, options())
    stop = threading.Event()
    thread = threading.Thread(target=echo_server, args=(server, count, stop))
    thread.start()

    async def main():
        async with nq.aio.new(nq.Protocol.TCP, nq.Purpose.CLIENT,
                              options(server.local_port)) as client:
            async def one(i):
                await client.put(i)
                return (await client.get(timeout=TIMEOUT)).data

            got = await asyncio.gather(*(one(i) for i in range(count)))
            # Replies go to whichever coroutine asks next: the set is whole.
            assert sorted(got) == list(range(count))
            with pytest.raises(nq.Timeout):
                await client.get(timeout=0.05)

    try:
        asyncio.run(asyncio.wait_for(main(), TIMEOUT * 3))
    finally:
        stop.set()
        thread.join()
        server.close()


def test_get_from_given_peers_and_a_waiting_get_wakes_on_arrival():
    async def main():
        async with nq.aio.new(nq.Protocol.TCP, nq.Purpose.SERVER, options()) as server:
            a = nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, options(server.local_port))
            b = nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, options(server.local_port))
            try:
                waiting = asyncio.ensure_future(server.get(b.id, timeout=TIMEOUT))
                await asyncio.sleep(0.05)
                assert not waiting.done()
                a.put("from a").result(TIMEOUT)
                await asyncio.sleep(0.05)
                assert not waiting.done()  # a's message is not b's
                b.put("from b").result(TIMEOUT)
                message = await waiting
                assert (message.peer, message.data) == (b.id, "from b")
                message = await server.get(timeout=TIMEOUT)
                assert (message.peer, message.data) == (a.id, "from a")
                await server.put("back", a.id)
                assert a.get(timeout=TIMEOUT).data == "back"
            finally:
                a.close()
                b.close()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT * 3))


def test_a_cancelled_get_leaves_the_message_for_the_next():
    async def main():
        async with nq.aio.new(nq.Protocol.TCP, nq.Purpose.SERVER, options()) as server:
            client = nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, options(server.local_port))
            try:
                waiting = asyncio.ensure_future(server.get())
                await asyncio.sleep(0.05)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                client.put("kept").result(TIMEOUT)
                assert (await server.get(timeout=TIMEOUT)).data == "kept"
            finally:
                client.close()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT * 3))


def test_cancelling_a_task_awaiting_put_withdraws_the_put():
    async def main():
        with nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, stalling()) as server:
            async with nq.aio.new(nq.Protocol.TCP, nq.Purpose.CLIENT,
                                  stalling(server.local_port)) as client:
                await client.put(b"first")
                wait_stat(server, "read_pauses", 1)
                sent = client.stats()["bytes_out"]
                big = asyncio.ensure_future(client.put(bytes(BIG)))
                await asyncio.sleep(0)  # the task has made the put
                wait_stat(client, "bytes_out", sent + 1024 * 1024)
                small = asyncio.ensure_future(client.put(b"small"))
                await asyncio.sleep(0)
                assert not small.done()  # queued behind the large message
                small.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await small
                assert server.get(timeout=TIMEOUT).data == b"first"
                assert len(server.get(timeout=TIMEOUT).data) == BIG
                await big
                await client.put(b"after")
                assert server.get(timeout=TIMEOUT).data == b"after"

    asyncio.run(asyncio.wait_for(main(), TIMEOUT * 3))
