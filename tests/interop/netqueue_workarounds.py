"""Workarounds for defects of net-queue 1.1.1 shared by its test peers
(tests/interop/netqueue_peer.py and conformance/peers/python/
netqueue_backend.py).  None of them changes a byte on the wire."""

import threading

import net_queue.core.comm
import net_queue.grpc.client
import net_queue.mqtt
import net_queue.mqtt.client
import net_queue.tcp.client


def load_bytes(stream):
    """BytesSerializer.load, except that an empty message gives b"".

    net-queue 1.1.1's BytesSerializer.load raises BlockingIOError on the
    empty stream of a zero-length message (Stream.read of nothing), so
    get() would fail although the frame arrived intact.
    """
    if stream.nbytes == 0:
        return b""
    return stream.tobytes()


def guard_connection_ini():
    """Makes Communicator._connection_ini idempotent per connection.

    A net-queue 1.1.1 TCP client registers its socket with the selector
    before its constructor calls _connection_ini.  Over TLS the server's
    session tickets make the socket readable at once, so the selector thread
    may set the session up first; the constructor then fails with bidict's
    ValueDuplicationError, the INI having already gone out.  Taking the
    communicator's (reentrant) lock and reusing the existing session removes
    the race without changing a byte on the wire.
    """
    base = net_queue.core.comm.Communicator
    original = base._connection_ini

    def connection_ini(self, comm):
        with self._lock:
            if comm in self._comms.inverse:
                return self._comms.inverse[comm]
            return original(self, comm)

    base._connection_ini = connection_ini


def subscribe_before_open(timeout):
    """Makes an MQTT communicator's constructor return only once the broker
    has acknowledged its subscription.

    A net-queue 1.1.1 MQTT server subscribes to c2s/+ from its constructor
    and returns without waiting for the SUBACK.  A client's INI is published
    at QoS 0 in the client's constructor, so a client started before the
    broker has registered the subscription loses its INI and the session
    never starts.  Each communicator subscribes exactly once, so the first
    SUBACK on its paho client answers that subscription: waiting for it here
    means "listening" is printed only when clients can be heard.  Nothing
    changes on the wire.
    """
    base = net_queue.mqtt.Protocol
    original = base._register_handler

    def register_handler(self, topic, handler):
        answered = threading.Event()
        outcome = []

        def on_subscribe(client, userdata, mid, reason_codes, properties):
            outcome.extend(reason_codes)
            answered.set()

        self._client.on_subscribe = on_subscribe
        original(self, topic, handler)
        if not answered.wait(timeout):
            raise TimeoutError(f"the broker did not acknowledge the subscription to {topic}")
        if not outcome or any(code.is_failure for code in outcome):
            raise ConnectionRefusedError(f"the broker refused the subscription to {topic}")

    base._register_handler = register_handler


def pin_client_sessions():
    """Keeps a net-queue MQTT or gRPC client's session under one key while a
    put, a flush or the FIN uses it.

    A net-queue 1.1.1 client files its session under a temporary id until
    the server's INI arrives; the paho thread then moves it to the server's
    id (Communicator._handle_session_ini, under the communicator's lock).
    Three callers look the key up without that lock:
    - The MQTT client's _c2s looks the key up once, publishes the queued
      slices, then commits them under that key: when the server's INI lands
      in between, the commit raises KeyError in the worker thread (only
      printed as a warning), the futures of those puts never resolve and
      put().result() hangs.  The first put after the constructor hits it
      often, since the server answers the INI at once.
    - put() reads the key under the lock but looks the session up after
      releasing it, and then fails with ConnectionResetError.
    - close() reads the key, then _session_fin looks the session up, and
      raises KeyError.
    Running _c2s and put under the communicator's reentrant lock, and
    _session_fin under it with the key read afresh, closes the windows.
    A gRPC or TCP client's put looks its session up the same way, and is
    pinned too: a gRPC client's put raises KeyError when the server's INI
    lands between reading the key and looking up its channel (about 1 run
    in 250 of a busy machine), and a TCP client that queues its messages at
    once loses those put after the server's INI lands (their futures fail
    with ConnectionResetError, and nothing is sent), which a slow server
    makes likely.
    None of them waits for the paho thread while holding the lock, and the
    bytes on the wire are unchanged.
    """
    for cls in (net_queue.mqtt.client.Communicator, net_queue.grpc.client.Communicator,
                net_queue.tcp.client.Communicator):
        original_put = cls.put

        def put(self, data, *peers, _put=original_put):
            with self._lock:
                return _put(self, data, *peers)

        cls.put = put
    cls = net_queue.mqtt.client.Communicator
    original_c2s = cls._c2s
    original_session_fin = cls._session_fin

    def c2s(self, comm):
        with self._lock:
            return original_c2s(self, comm)

    def session_fin(self, peer):
        with self._lock:
            return original_session_fin(self, self._comms.inverse[self._comm])

    cls._c2s = c2s
    cls._session_fin = session_fin

