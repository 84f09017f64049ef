"""The runner's own ends of a connection: a recording TCP proxy that checks
the handshake byte for byte, and hostile peers that send garbage."""

import os
import socket
import struct
import threading
import time
import uuid

HEADER = struct.Struct(">Q")


def frame(payload):
    return HEADER.pack(len(payload)) + payload


def frames(data):
    """(start, end, payload) of each whole frame in data, and the number of
    bytes left over after the last whole frame."""
    out = []
    at = 0
    while len(data) - at >= HEADER.size:
        (length,) = HEADER.unpack_from(data, at)
        end = at + HEADER.size + length
        if end > len(data):
            break
        out.append((at, end, data[at + HEADER.size:end]))
        at = end
    return out, len(data) - at


class RecordingProxy:
    """Forwards one TCP connection to target_port and records, in one
    sequence, every chunk in each direction ("c2s", "s2c") and how each
    direction ended ("eof" or "reset").  A chunk is recorded before it is
    forwarded, so the sequence respects causality: a reply is always
    recorded after what caused it."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.events = []
        self.errors = []
        self._lock = threading.Lock()
        self._threads = []
        self._sockets = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _record(self, direction, kind, data=b""):
        with self._lock:
            self.events.append((len(self.events), direction, kind, data))

    def _accept(self):
        try:
            self.listener.settimeout(60)
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError as exc:
            self.errors.append(f"the proxy could not connect the peers: {exc}")
            return
        finally:
            self.listener.close()
        self._sockets = [client, server]
        for source, sink, direction in ((client, server, "c2s"), (server, client, "s2c")):
            thread = threading.Thread(target=self._pump, args=(source, sink, direction), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _pump(self, source, sink, direction):
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                self._record(direction, "reset")
                try:
                    sink.close()
                except OSError:
                    pass
                return
            if not data:
                self._record(direction, "eof")
                try:
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            self._record(direction, "data", data)
            try:
                sink.sendall(data)
            except OSError:
                self._record(direction, "lost")
                return

    def finish(self, grace):
        """Waits up to grace seconds for both directions to end."""
        deadline = time.monotonic() + grace
        self._acceptor.join(max(0.0, deadline - time.monotonic()))
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for sock in self._sockets:
            sock.close()
        try:
            self.listener.close()
        except OSError:
            pass

    def check(self, client_id, server_id, c2s_data, s2c_data):
        """What differs from net-queue's handshake: the INI first and alone
        at the start, the server silent until the client's INI, the data
        before each FIN, the client's FIN before the server's, nothing after
        either FIN, and both directions ended cleanly."""
        problems = list(self.errors)
        streams = {"c2s": bytearray(), "s2c": bytearray()}
        # (direction, byte offset) -> sequence number of the chunk that completed it
        completed_at = {"c2s": [], "s2c": []}
        ends = {}
        for seq, direction, kind, data in self.events:
            if kind == "data":
                streams[direction] += data
                completed_at[direction].append((len(streams[direction]), seq))
            else:
                ends.setdefault(direction, (kind, seq))

        def seq_of(direction, offset):
            for end, seq in completed_at[direction]:
                if end >= offset:
                    return seq
            return None

        sides = {"c2s": ("client", client_id, c2s_data), "s2c": ("server", server_id, s2c_data)}
        fins = {}
        for direction, (who, ident, data_wanted) in sides.items():
            stream = bytes(streams[direction])
            parsed, rest = frames(stream)
            ini = frame(ident.bytes)
            if not stream.startswith(ini):
                problems.append(f"the {who}'s stream does not start with its INI: {stream[:24].hex() or '(empty)'}")
                continue
            body = parsed[1:]
            if not body or body[-1][2] != ident.bytes:
                problems.append(f"the {who}'s stream does not end with its FIN: last frames "
                                f"{[p.hex()[:32] for _, _, p in parsed[-3:]]}")
                continue
            if rest:
                problems.append(f"{rest} bytes follow the {who}'s FIN")
            data = [p for _, _, p in body[:-1]]
            if data != data_wanted:
                problems.append(f"the {who}'s data frames before its FIN are {data}, want {data_wanted}")
            fins[direction] = seq_of(direction, body[-1][1])
            ended = ends.get(direction)
            if ended is None:
                problems.append(f"the {who} never closed its side of the connection")
            elif ended[0] != "eof":
                problems.append(f"the {who}'s side of the connection ended with {ended[0]}, not EOF")
        first_reply = seq_of("s2c", 1)
        client_ini_done = seq_of("c2s", len(frame(client_id.bytes)))
        if first_reply is not None and (client_ini_done is None or first_reply < client_ini_done):
            problems.append("the server sent bytes before the client's INI had arrived")
        if "c2s" in fins and "s2c" in fins and fins["s2c"] < fins["c2s"]:
            problems.append("the server's FIN came before the client's")
        if "s2c" in ends and "s2c" in fins and ends["s2c"][1] < fins["s2c"]:
            problems.append("the server closed the connection before sending its FIN")
        return problems


def _mqtt_packet(kind, body):
    """An MQTT 3.1.1 packet: fixed header, remaining length, body."""
    length = len(body)
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([kind]) + bytes(encoded) + body


def _mqtt_string(text):
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


class Hostile:
    """Connections that misbehave while the good clients of a case run:
    random bytes, a 2^63 length, a first frame that is not an INI, an INI and
    a frame cut short by EOF, a connection that never speaks, and a trickle
    of junk until stop().
    Over MQTT the same garbage is published on topics of clients that do not
    exist, including one that is not a client id at all."""

    def __init__(self, transport, port):
        self.transport = transport
        self.port = port
        self._sockets = []
        self._stop = threading.Event()
        self._trickler = None

    def _connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self._sockets.append(sock)
        return sock

    def _cut_short(self, data):
        """A peer that sends its INI and half a frame, then goes away: a
        frame cut by EOF (a peer that stayed would rightly hold the
        server's close up)."""
        sock = self._connect()
        sock.sendall(data)
        sock.close()

    def _quietly(self, action):
        try:
            action()
        except OSError:
            pass

    def start(self):
        if self.transport == "mqtt":
            self._start_mqtt()
            return
        fake = uuid.uuid4().bytes
        self._quietly(lambda: self._connect().sendall(os.urandom(4096)))
        self._quietly(lambda: self._connect().sendall(HEADER.pack(1 << 63) + b"xy"))
        self._quietly(lambda: self._connect().sendall(frame(b"not an INI")))
        self._quietly(lambda: self._cut_short(frame(fake) + HEADER.pack(100) + b"cut short"))
        self._quietly(self._connect)
        self._trickle(lambda sock: sock.sendall(os.urandom(32)), self._connect)

    def _start_mqtt(self):
        def publisher():
            sock = self._connect()
            client_id = "hostile" + uuid.uuid4().hex[:16]
            body = _mqtt_string("MQTT") + bytes([4, 0x02]) + struct.pack(">H", 60) + _mqtt_string(client_id)
            sock.sendall(_mqtt_packet(0x10, body))
            sock.recv(4)
            return sock

        def publish(sock, topic, payload):
            sock.sendall(_mqtt_packet(0x30, _mqtt_string(topic) + payload))

        def garbage():
            sock = publisher()
            publish(sock, f"c2s/{uuid.uuid4().hex}", os.urandom(4096))
            publish(sock, f"c2s/{uuid.uuid4().hex}", HEADER.pack(1 << 63) + b"xy")
            fake = uuid.uuid4()
            publish(sock, f"c2s/{fake.hex}", frame(b"not an INI"))
            publish(sock, "c2s/not-a-client-id", frame(fake.bytes))

        self._quietly(garbage)
        topic = f"c2s/{uuid.uuid4().hex}"
        self._trickle(lambda sock: publish(sock, topic, os.urandom(32)), publisher)

    def _trickle(self, send, connect):
        def run():
            try:
                sock = connect()
                while not self._stop.wait(0.05):
                    send(sock)
            except OSError:
                pass

        self._trickler = threading.Thread(target=run, daemon=True)
        self._trickler.start()

    def stop(self):
        self._stop.set()
        if self._trickler is not None:
            self._trickler.join(5)
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
