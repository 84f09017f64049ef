"""The nq contract over TCP, through the Python API."""

import concurrent.futures
import threading
import time
import uuid

import pytest

import nq
from conftest import BIG, TIMEOUT, Pair, options, raw_bytes, stalling, wait_stat


def connected(server, count):
    deadline = time.monotonic() + TIMEOUT
    while len(server.peers()) < count:
        assert time.monotonic() < deadline, "clients did not connect"
        time.sleep(0.01)


def test_client_put_reaches_server_with_client_id(pair):
    client = pair.client()
    client.put({"hello": [1, 2, 3]}).result(TIMEOUT)
    message = pair.server.get(timeout=TIMEOUT)
    assert isinstance(message, nq.Message)
    assert message.data == {"hello": [1, 2, 3]}
    assert message.peer == client.id


def test_server_reply_reaches_client_with_server_id(pair):
    client = pair.client()
    client.put("ping")
    request = pair.server.get(timeout=TIMEOUT)
    pair.server.put("pong", request.peer).result(TIMEOUT)
    reply = client.get(timeout=TIMEOUT)
    assert reply.data == "pong"
    assert reply.peer == pair.server.id
    assert client.server_id == pair.server.id


def test_broadcast_reaches_every_client(pair):
    clients = [pair.client() for _ in range(3)]
    connected(pair.server, 3)
    pair.server.put(b"to everyone").result(TIMEOUT)
    for client in clients:
        assert client.get(timeout=TIMEOUT).data == b"to everyone"


def test_targeted_put_reaches_only_that_client(pair):
    first, second = pair.client(), pair.client()
    connected(pair.server, 2)
    pair.server.put("only you", second.id).result(TIMEOUT)
    assert second.get(timeout=TIMEOUT).data == "only you"
    with pytest.raises(nq.Timeout):
        first.get(timeout=0.2)


def test_put_to_several_listed_peers_returns_one_future(pair):
    a, b, c = pair.client(), pair.client(), pair.client()
    connected(pair.server, 3)
    future = pair.server.put("a and c", a.id, str(c.id))
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(TIMEOUT) is None
    assert a.get(timeout=TIMEOUT).data == "a and c"
    assert c.get(timeout=TIMEOUT).data == "a and c"
    with pytest.raises(nq.Timeout):
        b.get(timeout=0.2)


def test_messages_keep_their_order(pair):
    client = pair.client()
    futures = [client.put(i) for i in range(200)]
    concurrent.futures.wait(futures, TIMEOUT)
    assert [pair.server.get(timeout=TIMEOUT).data for _ in range(200)] == list(range(200))


def test_future_fails_for_a_peer_that_is_not_connected(pair):
    future = pair.server.put("nobody", uuid.uuid4())
    with pytest.raises(nq.NoPeer) as info:
        future.result(TIMEOUT)
    assert isinstance(info.value, ConnectionError)
    assert isinstance(info.value, ConnectionResetError)


def test_future_fails_when_the_server_cannot_be_reached(pair):
    port = pair.port
    pair.close()  # nothing listens on port any more
    client = nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, options(port))
    try:
        with pytest.raises(nq.ConnectionRefused):
            client.put("hello").result(TIMEOUT)
        with pytest.raises(ConnectionRefusedError):
            client.get(timeout=TIMEOUT)
    finally:
        with pytest.raises(nq.ConnectionRefused):
            client.close()


def test_put_after_close_gives_a_failed_future(pair):
    client = pair.client()
    client.close()
    future = client.put("late")
    with pytest.raises(nq.Closed) as info:
        future.result(TIMEOUT)
    assert isinstance(info.value, ConnectionAbortedError)


def test_cancelling_a_completed_put_changes_nothing(pair):
    client = pair.client()
    future = client.put("x")
    assert future.result(TIMEOUT) is None
    assert not future.cancel()
    assert not future.cancelled()
    assert future.result(0) is None
    assert pair.server.get(timeout=TIMEOUT).data == "x"


def test_cancel_withdraws_a_put_queued_behind_a_large_one():
    with nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, stalling()) as server, \
            nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, stalling(server.local_port)) as client:
        client.put(b"first").result(TIMEOUT)
        wait_stat(server, "read_pauses", 1)
        sent = client.stats()["bytes_out"]
        big = client.put(bytes(BIG))
        wait_stat(client, "bytes_out", sent + 1024 * 1024)  # started: it cannot be withdrawn
        small = client.put(b"small")
        assert small.cancel()
        assert small.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            small.result(TIMEOUT)
        assert small.cancel()  # still cancelled
        assert not big.cancel()
        assert not big.cancelled()
        assert server.get(timeout=TIMEOUT).data == b"first"
        assert len(server.get(timeout=TIMEOUT).data) == BIG
        assert big.result(TIMEOUT) is None
        client.put(b"after").result(TIMEOUT)
        assert server.get(timeout=TIMEOUT).data == b"after"


def bytes_out_once_settled(comm):
    """comm's bytes_out once it has not grown for 100 ms."""
    last = comm.stats()["bytes_out"]
    deadline = time.monotonic() + TIMEOUT
    while True:
        time.sleep(0.1)
        now = comm.stats()["bytes_out"]
        if now == last:
            return now
        assert time.monotonic() < deadline, "bytes_out kept growing"
        last = now


def test_a_cancelled_broadcast_still_sends_the_started_copies_from_its_buffer():
    # a's copy waits behind a large message, c's has started: the cancel
    # withdraws a's, and c's is still read from the buffer until it is done.
    with nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, options(serialization=raw_bytes())) as server:
        a = nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, stalling(server.local_port))
        c = nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, stalling(server.local_port))
        try:
            for client in (a, c):
                client.put(b"hello").result(TIMEOUT)
                assert server.get(timeout=TIMEOUT).data == b"hello"
                server.put(b"first", client.id).result(TIMEOUT)
                wait_stat(client, "read_pauses", 1)
            server.put(bytes(BIG), a.id)
            sent = bytes_out_once_settled(server)  # a's connection is full
            payload = bytearray(BIG)
            both = server.put(payload, c.id, a.id)
            wait_stat(server, "bytes_out", sent + 1024 * 1024)
            assert both.cancel()
            assert both.cancelled()
            with pytest.raises(BufferError):
                payload.extend(b"!")  # c's copy is still being written
            assert c.get(timeout=TIMEOUT).data == b"first"
            assert len(c.get(timeout=TIMEOUT).data) == BIG
            deadline = time.monotonic() + TIMEOUT
            while True:
                try:
                    payload.extend(b"!")  # released once libnq reported the put
                    break
                except BufferError:
                    assert time.monotonic() < deadline, "the buffer was never released"
                    time.sleep(0.01)
            assert a.get(timeout=TIMEOUT).data == b"first"
            assert len(a.get(timeout=TIMEOUT).data) == BIG
            server.put(b"after", a.id).result(TIMEOUT)
            assert a.get(timeout=TIMEOUT).data == b"after"
        finally:
            for client in (a, c):
                client.close()


def test_get_after_close_returns_queued_messages_then_raises_closed(pair):
    client = pair.client()
    client.put("before close").result(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while pair.server.stats()["messages_in"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    client.close()
    pair.server.close()
    assert pair.server.get(timeout=TIMEOUT).data == "before close"
    with pytest.raises(nq.Closed) as info:
        pair.server.get(timeout=TIMEOUT)
    assert isinstance(info.value, ConnectionAbortedError)
    with pytest.raises(ConnectionError):
        pair.server.get()


def test_get_times_out_with_a_timeout_error(pair):
    start = time.monotonic()
    with pytest.raises(nq.Timeout) as info:
        pair.server.get(timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, ConnectionError)
    assert 0.25 <= time.monotonic() - start < 5


def test_get_from_a_peer_without_messages_times_out(pair):
    with pytest.raises(nq.Timeout):
        pair.server.get(uuid.uuid4(), timeout=0.05)
    with pytest.raises(ValueError):
        pair.server.get(b"short", timeout=0.05)


def test_client_put_refuses_peers(pair):
    client = pair.client()
    with pytest.raises(nq.InvalidArgument):
        client.put("x", uuid.uuid4())


def test_bytes_like_objects_are_sent_without_copies(bytes_pair):
    client = bytes_pair.client(**bytes_pair.client_options)
    payload = bytearray(b"abc" * 1000)
    future = client.put(payload)
    future.result(TIMEOUT)
    # The buffer export ended with the future: the bytearray can grow again.
    payload.extend(b"more")
    client.put(memoryview(b"0123456789")[2:5]).result(TIMEOUT)
    client.put(b"").result(TIMEOUT)
    assert bytes_pair.server.get(timeout=TIMEOUT).data == b"abc" * 1000
    assert bytes_pair.server.get(timeout=TIMEOUT).data == b"234"
    assert bytes_pair.server.get(timeout=TIMEOUT).data == b""


def test_a_pending_put_holds_its_buffer_until_its_future_resolves():
    # A server that holds one undelivered message stops reading, so the
    # client's second large put stays pending until the server gets.
    server = nq.new(nq.Protocol.TCP, nq.Purpose.SERVER,
                    options(serialization=raw_bytes(),
                            connection=nq.ConnectionOptions(queue_size=1)))
    pair = Pair.__new__(Pair)
    pair.server, pair.clients = server, []
    try:
        client = pair.client(serialization=raw_bytes())
        first = bytearray(32 * 1024 * 1024)
        second = bytearray(32 * 1024 * 1024)
        client.put(first)
        future = client.put(second)
        time.sleep(0.5)
        assert not future.done()
        with pytest.raises(BufferError):
            second.extend(b"!")  # libnq still reads from it
        assert len(server.get(timeout=TIMEOUT).data) == len(first)
        future.result(TIMEOUT)
        assert len(server.get(timeout=TIMEOUT).data) == len(second)
        second.extend(b"!")
    finally:
        pair.close()


def test_a_failed_put_releases_its_buffer_at_once(bytes_pair):
    client = bytes_pair.client(**bytes_pair.client_options)
    payload = bytearray(b"x" * 16)
    client.close()
    future = client.put(payload)
    assert isinstance(future.exception(TIMEOUT), nq.Closed)
    payload.extend(b"y")


def test_str_is_refused_by_the_bytes_serializer(bytes_pair):
    client = bytes_pair.client(**bytes_pair.client_options)
    with pytest.raises(TypeError):
        client.put("text")


def test_large_message_round_trip(bytes_pair):
    client = bytes_pair.client(**bytes_pair.client_options)
    big = bytes(range(256)) * (64 * 1024)  # 16 MiB
    client.put(big).result(30)
    assert bytes_pair.server.get(timeout=30).data == big


def test_blocking_get_releases_the_gil(pair):
    client = pair.client()
    got = []
    reader = threading.Thread(target=lambda: got.append(pair.server.get(timeout=TIMEOUT)))
    reader.start()
    # The reader blocks in libnq; this thread keeps running Python meanwhile.
    spins, end = 0, time.monotonic() + 0.3
    while time.monotonic() < end:
        spins += 1
    client.put("wake up").result(TIMEOUT)
    reader.join(TIMEOUT)
    assert got and got[0].data == "wake up"
    assert spins > 10000


def test_many_threads_put_and_get_at_once(pair):
    client = pair.client()
    per_thread, threads = 100, 4

    def send(base):
        for i in range(per_thread):
            client.put(base + i)

    senders = [threading.Thread(target=send, args=(t * 1000,)) for t in range(threads)]
    for s in senders:
        s.start()
    for s in senders:
        s.join()
    received = sorted(pair.server.get(timeout=TIMEOUT).data for _ in range(per_thread * threads))
    assert received == sorted(t * 1000 + i for t in range(threads) for i in range(per_thread))


def test_context_manager_closes(pair):
    with nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, options(pair.port)) as client:
        client.put("inside").result(TIMEOUT)
    assert pair.server.get(timeout=TIMEOUT).data == "inside"
    with pytest.raises(nq.Closed):
        client.get(timeout=0)


def test_options_carry_the_id_and_reject_bad_values(pair):
    my_id = uuid.uuid4()
    client = pair.client(id=my_id)
    assert client.id == my_id
    client.put(1).result(TIMEOUT)
    assert pair.server.get(timeout=TIMEOUT).peer == my_id
    with pytest.raises(nq.InvalidArgument):
        nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, options(workers=0))
    with pytest.raises(nq.InvalidArgument):
        nq.new(nq.Protocol.TCP, nq.Purpose.SERVER,
               options(connection=nq.ConnectionOptions(protocol_size=1)))


def test_address_in_use_is_reported_by_new(pair):
    with pytest.raises(nq.AddressInUse):
        nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, options(pair.port))


def test_grpc_round_trip_and_broadcast():
    with nq.new(nq.Protocol.GRPC, nq.Purpose.SERVER, options()) as server:
        with nq.new(nq.Protocol.GRPC, nq.Purpose.CLIENT, options(server.local_port)) as client:
            client.put(("over", "grpc")).result(TIMEOUT)
            request = server.get(timeout=TIMEOUT)
            assert request.data == ("over", "grpc") and request.peer == client.id
            server.put("reply", request.peer).result(TIMEOUT)
            assert client.get(timeout=TIMEOUT).data == "reply"
            connected(server, 1)
            server.put("everyone").result(TIMEOUT)
            assert client.get(timeout=TIMEOUT).data == "everyone"


def test_pickle_restrict_refuses_other_globals():
    serializer = nq.PickleSerializer(restrict=["builtins"])
    assert serializer.load(serializer.dump({"a": (1, 2.0, "x")})) == {"a": (1, 2.0, "x")}
    with pytest.raises(Exception, match="forbidden"):
        serializer.load(serializer.dump(uuid.uuid4()))
    assert isinstance(nq.PickleSerializer(restrict=["uuid.UUID"]).load(
        serializer.dump(uuid.uuid4())), uuid.UUID)


def test_tls_round_trip(certificate):
    key, cert = certificate
    server = nq.new(nq.Protocol.TCP, nq.Purpose.SERVER,
                    options(security=nq.SecurityOptions(key=key, certificate=cert)))
    pair = Pair.__new__(Pair)
    pair.server, pair.clients = server, []
    try:
        client = pair.client(security=nq.SecurityOptions(certificate=cert))
        client.put("secret").result(TIMEOUT)
        request = server.get(timeout=TIMEOUT)
        assert request.data == "secret"
        server.put("answer", request.peer).result(TIMEOUT)
        assert client.get(timeout=TIMEOUT).data == "answer"
    finally:
        pair.close()


def test_tls_client_refuses_an_untrusted_server(certificate, tmp_path):
    key, cert = certificate
    server = nq.new(nq.Protocol.TCP, nq.Purpose.SERVER,
                    options(security=nq.SecurityOptions(key=key, certificate=cert)))
    try:
        # Trusting only the system's store, the client rejects a self-signed server.
        client = nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT,
                        options(server.local_port, security=nq.SecurityOptions()))
        with pytest.raises(nq.TLSError):
            client.put("secret").result(TIMEOUT)
        with pytest.raises(nq.TLSError):
            client.close()
    finally:
        server.close()


def test_events_tell_of_peers_coming_and_going():
    seen = []
    cond = threading.Condition()

    def note(*what):
        with cond:
            seen.append(what)
            cond.notify_all()

    def wait_for(n):
        with cond:
            assert cond.wait_for(lambda: len(seen) >= n, TIMEOUT), seen

    events = nq.EventOptions(ini=lambda peer: note("ini", peer),
                             fin=lambda peer, reason: note("fin", peer, reason), reason=True)
    with nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, options(events=events)) as server:
        ident = uuid.uuid4()
        first = nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, options(server.local_port, id=ident))
        first.put("hello").result(TIMEOUT)
        assert server.get(timeout=TIMEOUT).data == "hello"
        wait_for(1)
        assert seen[0] == ("ini", ident)
        # The same id again: the newest connection wins.
        second = nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, options(server.local_port, id=ident))
        wait_for(3)
        assert seen[1][:2] == ("fin", ident) and isinstance(seen[1][2], nq.Replaced)
        assert seen[2] == ("ini", ident)
        with pytest.raises(nq.ConnectionLost):
            first.get(timeout=TIMEOUT)
        with pytest.raises(nq.ConnectionLost):
            first.close()
        second.close()
        wait_for(4)
        assert seen[3] == ("fin", ident, None)
    assert len(seen) == 4


def test_a_reconnecting_client_follows_a_restarted_server():
    heard = []
    cond = threading.Condition()

    def reconnecting(server, reason):
        with cond:
            heard.append((server, reason))
            cond.notify_all()

    drop = nq.TransportOptions(close_timeout=0.1)
    first = nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, options(transport=drop))
    port = first.local_port
    client = nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, options(
        port, transport=nq.TransportOptions(reconnect=0.05, reconnect_max=0.4),
        events=nq.EventOptions(reconnecting=reconnecting)))
    try:
        client.put("before").result(TIMEOUT)
        assert first.get(timeout=TIMEOUT).data == "before"
        with pytest.raises(nq.Timeout):
            first.close()  # its close drops the client after 0.1 s
        with cond:
            assert cond.wait_for(lambda: heard, TIMEOUT)
        assert heard[0][0] == first.id and isinstance(heard[0][1], nq.ConnectionLost)
        future = client.put("while away")
        with nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, options(port)) as second:
            message = second.get(timeout=TIMEOUT)
            assert (message.peer, message.data) == (client.id, "while away")
            future.result(TIMEOUT)
            second.put("welcome back", client.id)
            assert client.get(timeout=TIMEOUT).data == "welcome back"
            assert client.server_id == second.id
            client.close()
    finally:
        client.close()


def test_acknowledged_delivery_completes_a_future_when_the_peer_has_it():
    """A server holding one undelivered message stops reading: the next
    message is written but not received, and with acknowledged delivery
    its future waits until the server makes room."""
    for acknowledged in (False, True):
        transport = nq.TransportOptions(acknowledged=acknowledged)
        small = nq.ConnectionOptions(queue_size=1)
        with nq.new(nq.Protocol.TCP, nq.Purpose.SERVER,
                    options(transport=transport, connection=small)) as server:
            with nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT,
                        options(server.local_port, transport=transport)) as client:
                client.put(b"first").result(TIMEOUT)
                deadline = time.monotonic() + TIMEOUT
                while server.stats()["read_pauses"] == 0 and time.monotonic() < deadline:
                    time.sleep(0.01)
                second = client.put(b"second")
                if acknowledged:
                    with pytest.raises(concurrent.futures.TimeoutError):
                        second.result(0.5)
                else:
                    second.result(TIMEOUT)
                assert server.get(timeout=TIMEOUT).data == b"first"
                assert server.get(timeout=TIMEOUT).data == b"second"
                second.result(TIMEOUT)
                assert client.stats()["acknowledged"] == int(acknowledged)
                assert server.stats()["acknowledged"] == int(acknowledged)



def test_get_from_given_peers_leaves_the_others_in_order(pair):
    a, b = pair.client(), pair.client()
    for client, text in ((a, "a1"), (b, "b1"), (a, "a2"), (b, "b2")):
        client.put(text).result(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while pair.server.stats()["messages_in"] < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [pair.server.get(b.id, timeout=TIMEOUT).data for _ in range(2)] == ["b1", "b2"]
    with pytest.raises(nq.Timeout):
        pair.server.get(b.id, timeout=0.05)
    first = pair.server.get(timeout=TIMEOUT)
    assert (first.peer, first.data) == (a.id, "a1")
    assert pair.server.get(a.id, b.id, timeout=TIMEOUT).data == "a2"


def test_fileno_is_readable_while_a_message_waits(pair):
    import selectors
    client = pair.client()
    sel = selectors.DefaultSelector()
    sel.register(pair.server.fileno(), selectors.EVENT_READ)
    try:
        assert sel.select(0) == []
        client.put("one").result(TIMEOUT)
        client.put("two").result(TIMEOUT)
        assert sel.select(TIMEOUT)
        assert pair.server.get(timeout=TIMEOUT).data == "one"
        assert sel.select(0)  # level-triggered: "two" still waits
        assert pair.server.get(timeout=TIMEOUT).data == "two"
        assert sel.select(0) == []
    finally:
        sel.close()
