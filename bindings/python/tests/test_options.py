"""Options under the names of both net-queue generations (1.1.1 and 2.x)."""

import dataclasses
import pickle
import uuid

import pytest

import nq
from nq.core import EventOptions
from nq.utils.stream import BufferSerializer, PickleSerializer, StreamSerializer
from nq.utils.streamtools import BytesSerializer
from conftest import TIMEOUT, Pair, options, wait_stat


def test_renamed_options_are_one_option():
    assert nq.ConnectionOptions(transport_size=8192).protocol_size == 8192
    assert nq.ConnectionOptions(protocol_size=8192).transport_size == 8192
    assert nq.ConnectionOptions().transport_size == 4 * 1024 ** 2
    assert nq.ConnectionOptions(protocol_size=8192, transport_size=8192).protocol_size == 8192
    assert nq.SecurityOptions(cert="ca.pem").certificate == "ca.pem"
    assert nq.SecurityOptions(certificate="ca.pem").cert == "ca.pem"


def test_conflicting_spellings_are_a_value_error():
    with pytest.raises(ValueError, match="transport_size"):
        nq.ConnectionOptions(protocol_size=8192, transport_size=16384)
    with pytest.raises(ValueError, match="cert"):
        nq.SecurityOptions(certificate="a.pem", cert="b.pem")


def test_positional_arguments_follow_their_generation():
    old = nq.ConnectionOptions(False, True, 1024, 8192, 7, 99)
    assert (old.get_merge, old.efficient_size, old.protocol_size, old.queue_size,
            old.message_size, old.drop_oldest) == (False, 1024, 8192, 7, 99, False)
    new = nq.ConnectionOptions(True, False, True, 8192, 7, 99)
    assert (new.put_merge, new.drop_oldest, new.transport_size, new.queue_size,
            new.efficient_size) == (False, True, 8192, 7, 64 * 1024)
    events = EventOptions()
    two = nq.CommunicatorOptions(uuid.UUID(int=1), nq.NetworkLocation(), nq.ConnectionOptions(),
                                 nq.SerializationOptions(), None, events, 3)
    assert two.events is events and two.workers == 3
    one = nq.CommunicatorOptions(uuid.UUID(int=1), nq.NetworkLocation(), nq.ConnectionOptions(),
                                 nq.SerializationOptions(), None, 3)
    assert one.workers == 3 and one.events is None
    with pytest.raises(TypeError, match="unexpected keyword"):
        nq.ConnectionOptions(transport=1)
    with pytest.raises(TypeError, match="multiple values"):
        nq.ConnectionOptions(True, get_merge=False)


def test_options_stay_frozen_values():
    c = nq.ConnectionOptions(transport_size=8192)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.queue_size = 1
    assert dataclasses.replace(c, queue_size=3) == nq.ConnectionOptions(transport_size=8192,
                                                                        queue_size=3)
    assert nq.CommunicatorOptions().id != nq.CommunicatorOptions().id
    assert nq.Message[bytes] is not None


def test_drop_oldest_is_off_unless_asked():
    assert nq.ConnectionOptions().drop_oldest is False


def test_drop_oldest_keeps_the_newest_and_counts_the_rest():
    server_options = options(connection=nq.ConnectionOptions(queue_size=3, drop_oldest=True))
    p = Pair(server_options)
    try:
        client = p.client()
        for n in range(30):
            client.put(n).result(TIMEOUT)
        wait_stat(p.server, "dropped", 27)
        assert p.server.stats()["dropped"] == 27
        assert [p.server.get(timeout=TIMEOUT).data for _ in range(3)] == [27, 28, 29]
        with pytest.raises(nq.Timeout):
            p.server.get(timeout=0.1)
    finally:
        p.close()


def test_serializers_of_both_generations():
    assert BytesSerializer is nq.BytesSerializer
    assert bytes(BufferSerializer().load(b"ab")) == b"ab"
    assert StreamSerializer().load(b"ab").read() == b"ab"
    assert bytes(StreamSerializer().dump(StreamSerializer().load(b"cd"))) == b"cd"
    allowed = PickleSerializer(allow=PickleSerializer.allow_by_name("builtins"))
    assert allowed.load(allowed.dump({"a": (1, 2)})) == {"a": (1, 2)}
    with pytest.raises(pickle.UnpicklingError, match="uuid.UUID"):
        allowed.load(allowed.dump(uuid.UUID(int=5)))
    kept = {}

    def persistent_id(obj):
        if isinstance(obj, uuid.UUID):
            kept[str(obj)] = obj
            return str(obj)
        return None

    persistent = PickleSerializer(dump=persistent_id, load=kept.__getitem__)
    assert persistent.load(persistent.dump([uuid.UUID(int=9)])) == [uuid.UUID(int=9)]
    assert list(kept) == [str(uuid.UUID(int=9))]


def test_pickled_large_buffers_go_uncopied_and_arrive_whole(pair):
    big = bytearray(range(256)) * 4096  # 1 MiB: written straight through by pickle
    pieces = nq.PickleSerializer().dump({"big": big, "n": 7})
    assert isinstance(pieces, list) and any(piece is big for piece in pieces)
    assert isinstance(nq.PickleSerializer().dump({"n": 7}), bytes)
    other = bytearray(big)
    two = PickleSerializer(dump=lambda obj: None).dump([big, other])
    assert [piece for piece in two if piece is big or piece is other] == [big, other]
    client = pair.client()
    client.put({"big": big, "n": 7}).result(TIMEOUT)
    client.put([big, bytes(big)]).result(TIMEOUT)
    got = pair.server.get(timeout=TIMEOUT).data
    assert got == {"big": big, "n": 7}
    assert pair.server.get(timeout=TIMEOUT).data == [big, bytes(big)]
