#!/usr/bin/env python3
"""The Python conformance peer written as a net-queue 2.x program: the runs
of peers/python/peer.py, on the nq binding, with every call into the
communicator written the way code for net-queue 2.6 is, only
``import net_queue as nq`` having become ``import nq``.

    peer.py --role server|client --protocol tcp|tls|mqtt|grpc --port P --case NAME
            [--host H] [--id UUID] [--key F] [--cert F] [--ca F]
            [--client-auth optional|required] [--token T]
            [--accept-token T --token-identity NAME] [--part LABEL]
            [--clients N] [--timeout S] [--cases-file F]
    peer.py --stdin [--cases-file F]

What is 2.x here: ``ConnectionOptions(drop_oldest=..., transport_size=...)``,
``SecurityOptions(key=..., cert=...)``, ``EventOptions`` from ``nq.core``,
``BufferSerializer`` from ``nq.utils.stream`` (messages arrive as
``memoryview``), and ``Protocol``/``Purpose`` built from their string values.
Reading cases, stepping through them and reporting (peers/python/peer.py's
Run and main) are the peer protocol, not net-queue's API, and are shared.

Three things a run needs that net-queue 2.x does not have come from the
binding: get's timeout (2.x's get blocks until a message or the close), the
server's bound port (``local_port``) and gRPC (net-queue 2.6.4 ships its gRPC
package as ``net_queue.gprc``, so ``new(Protocol.GRPC, ...)`` cannot import
it there).

The peer also checks what EventOptions reported once each communicator is
closed (PeerEvents), so every case runs with the binding's event thread as a
2.x program that watches its peers does.
"""

import sys
import threading
from pathlib import Path

# peers/python comes first on the path: its peer.py is the driver, and this
# file's own directory (first on the path when run as a script) holds a
# peer.py too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import peer as driver  # noqa: E402

import nq  # noqa: E402
from nq.core import EventOptions  # noqa: E402
from nq.utils.stream import BufferSerializer  # noqa: E402

# The slice every peer of the matrix cuts messages into (libnq's default and
# net-queue 1.1's protocol_size; payload_slice_plus_1 is written for it).
# net-queue 2.x's own default is 16 MiB.
TRANSPORT_SIZE = 4 * 1024 ** 2


class PeerEvents:
    """What one communicator's EventOptions reported, and from whom messages
    came.  Once the communicator is closed (the binding has then run every
    handler), each peer's events must alternate ini, fin, starting with ini
    and ending with fin (every peer is gone after close, however it went),
    and every peer a message came from must have introduced itself."""

    def __init__(self):
        self._lock = threading.Lock()
        self._events = []
        self._senders = set()
        self.closed = False

    def ini(self, peer):
        with self._lock:
            self._events.append(("ini", peer))

    def fin(self, peer):
        with self._lock:
            self._events.append(("fin", peer))

    def received(self, peer):
        with self._lock:
            self._senders.add(peer)

    def problems(self):
        with self._lock:
            events, senders = list(self._events), set(self._senders)
        last = {}
        found = []
        for kind, peer in events:
            if last.get(peer, "fin") == kind:
                found.append(f"events: {kind} for {peer} after {last.get(peer, 'nothing')}")
            last[peer] = kind
        found += [f"events: no fin for {peer} after close" for peer, kind in last.items() if kind == "ini"]
        found += [f"events: messages from {peer}, which had no ini" for peer in senders - set(last)]
        return found


class NetQueue2Backend(driver.LibnqBackend):
    """The nq binding as net-queue 2.x code uses it.  put and
    future.result(timeout) read the same in both generations, and errors
    are named from the binding's codes, as the 1.1.1-style peer does."""

    name = "libnq (net-queue 2.x API)"

    def __init__(self):
        # Not LibnqBackend's: it sets up net-queue 1.1's BytesSerializer.
        self.nq = nq
        buffers = BufferSerializer()
        self._serialization = nq.SerializationOptions(load=buffers.load, dump=buffers.dump)
        self._events = {}

    def open(self, role, protocol, host, port, ident, tls, timeout):
        # timeout is not used: net-queue 2.x has no close timeout, so close
        # waits for the handshake as net-queue's does, and the runner ends a
        # peer whose run outlives its case's timeout.
        security = None
        if tls:
            # ca, client_auth and the tokens are the binding's, after 2.x's
            # key and cert.
            paths = {k: Path(tls[k]) if tls.get(k) else None for k in ("key", "cert", "ca")}
            security = nq.SecurityOptions(**paths, client_auth=tls.get("client_auth"),
                                          **driver.token_fields(tls))
        events = PeerEvents()
        options = nq.CommunicatorOptions(
            id=ident,
            netloc=nq.NetworkLocation(host, port),
            # 2.x drops a peer's oldest waiting message when its queue is
            # full; the cases count every message, so this program keeps them.
            connection=nq.ConnectionOptions(drop_oldest=False, transport_size=TRANSPORT_SIZE),
            serialization=self._serialization,
            security=security,
            events=EventOptions(ini=events.ini, fin=events.fin),
        )
        # "tls" is TCP with SecurityOptions.
        kind = nq.Protocol("tcp" if protocol == "tls" else protocol)
        comm = nq.new(kind, nq.Purpose(role), options)
        self._events[comm] = events
        bound = comm.local_port if role == "server" and kind != nq.Protocol.MQTT else port
        return comm, bound

    def get(self, comm, timeout):
        message = comm.get(timeout=timeout)
        self._events[comm].received(message.peer)
        return message.peer, message.data

    def close(self, comm):
        # Closed either way, even when close reports how the connection ended.
        self._events[comm].closed = True
        comm.close()

    def release(self, comm):
        events = self._events.pop(comm, None)
        if events is None or not events.closed:
            return []
        return events.problems()


if __name__ == "__main__":
    sys.exit(driver.main(sys.argv[1:], NetQueue2Backend()))
