"""Interop tests: libnq against net-queue 1.1.1 over TCP and TLS.

Each exchange runs twice, a libnq server with net-queue clients and a
net-queue server with libnq clients, and once more between two net-queue
peers as a control: when the control fails, the expectation is wrong, not
libnq.  Peers are nq_peer (C) and netqueue_peer.py, which share one command
line and print one line per observation; see nq_peer.c.  The raw-socket
tests check libnq's bytes on the wire against the protocol directly.

Environment:
  NQ_PEER                 path of the nq_peer executable (required)
  NQ_INTEROP_TRANSPORTS   comma-separated subset of "tcp,tls" (default both)
"""

import hashlib
import os
import queue
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PEER_TIMEOUT = 30
WAIT_TIMEOUT = PEER_TIMEOUT + 10
TRANSPORTS = [t for t in os.environ.get("NQ_INTEROP_TRANSPORTS", "tcp,tls").split(",") if t]

PAIRS = [
    pytest.param(("libnq", "netqueue"), id="libnq_server-netqueue_clients"),
    pytest.param(("netqueue", "libnq"), id="netqueue_server-libnq_clients"),
    pytest.param(("netqueue", "netqueue"), id="control_netqueue_only"),
]

MIB = 1024 * 1024
INI_HEADER = struct.pack(">Q", 16)


def pattern(size):
    """The payload of --send-size: byte i is i % 251."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def sha(data):
    return hashlib.sha256(data).hexdigest()


def frame(payload):
    return struct.pack(">Q", len(payload)) + payload


def new_id():
    return uuid.uuid4()


# --------------------------------------------------------------------------
# Peer processes


class Peer:
    """One running peer; collects its output lines as they come."""

    def __init__(self, name, argv):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.lines = []
        self.stderr = []
        self.rc = None
        self._queue = queue.Queue()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def wait_line(self, prefix, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = None
                left = 0
            if line is not None and line.startswith(prefix):
                return line
            if line is None and (left <= 0 or self.proc.poll() is not None):
                raise AssertionError(f"{self.name}: no '{prefix}' line\n{self.report()}")

    def finish(self, timeout=WAIT_TIMEOUT):
        try:
            self.rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.rc = "killed after timeout"
        for reader in self._readers:
            reader.join(timeout=5)
        return self.rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def report(self):
        out = "\n    ".join(self.lines) or "(nothing)"
        err = "\n    ".join(self.stderr[-40:]) or "(nothing)"
        return (
            f"--- {self.name}: rc={self.rc}\n  argv: {' '.join(self.argv)}\n"
            f"  stdout:\n    {out}\n  stderr:\n    {err}"
        )

    # Observations

    def got(self):
        """Received messages in order: (peer uuid, length, sha256, hex prefix)."""
        result = []
        for line in self.lines:
            if line.startswith("got "):
                _, peer, length, digest, prefix = line.split(" ")
                result.append((uuid.UUID(peer), int(length), digest, prefix))
        return result

    def first(self, prefix):
        for line in self.lines:
            if line.startswith(prefix + " "):
                return line.split(" ", 1)[1]
        return None

    def index(self, prefix):
        for i, line in enumerate(self.lines):
            if line.startswith(prefix + " "):
                return i
        return -1


def expected(peer, payload):
    return (peer, len(payload), sha(payload), payload[:16].hex() or "-")


class Exchange:
    """Runs one server and its clients and checks what each observed."""

    def __init__(self, nq_peer, transport, certs, pair):
        self.nq_peer = nq_peer
        self.transport = transport
        self.certs = certs
        self.server_impl, self.client_impl = pair
        self.peers = []

    def _command(self, impl):
        if impl == "libnq":
            return [self.nq_peer]
        return [sys.executable, HERE / "netqueue_peer.py"]

    def _tls(self, role):
        if self.transport != "tls":
            return []
        key, cert = self.certs
        return ["--key", key, "--cert", cert] if role == "server" else ["--cert", cert]

    def start_server(self, server_id, actions, impl=None):
        impl = impl or self.server_impl
        argv = self._command(impl) + ["server", "--port", 0, "--id", server_id]
        argv += self._tls("server") + ["--timeout", PEER_TIMEOUT] + actions
        server = Peer(f"{impl} server", argv)
        self.peers.append(server)
        port = int(server.wait_line("listening").split()[1])
        return server, port

    def start_client(self, port, client_id, actions, impl=None):
        impl = impl or self.client_impl
        argv = self._command(impl) + ["client", "--port", port, "--id", client_id]
        argv += self._tls("client") + ["--timeout", PEER_TIMEOUT] + actions
        client = Peer(f"{impl} client {client_id}", argv)
        self.peers.append(client)
        return client

    def run(self, server_id, server_actions, clients):
        """clients: list of (id, actions).  Returns (server, [client...])."""
        server, port = self.start_server(server_id, server_actions)
        started = [self.start_client(port, cid, actions) for cid, actions in clients]
        for client in started:
            client.finish()
        server.finish()
        return server, started

    def report(self):
        return "\n".join(peer.report() for peer in self.peers)

    def check(self, condition, what):
        assert condition, f"{what}\n{self.report()}"

    def check_clean_exit(self):
        for peer in self.peers:
            self.check(peer.rc == 0, f"{peer.name} did not exit cleanly")
            self.check(peer.first("closed") == "ok", f"{peer.name}: close did not succeed")

    def check_got(self, peer, want, what):
        self.check(peer.got() == want, f"{peer.name}: {what}: want {want}")

    def kill_all(self):
        for peer in self.peers:
            peer.kill()


@pytest.fixture(scope="session")
def nq_peer():
    path = os.environ.get("NQ_PEER")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("NQ_PEER must name the nq_peer executable")
    return path


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return key, cert


@pytest.fixture(params=TRANSPORTS)
def transport(request):
    return request.param


@pytest.fixture(params=PAIRS)
def exchange(request, nq_peer, transport, certs):
    ex = Exchange(nq_peer, transport, certs, request.param)
    yield ex
    ex.kill_all()


# --------------------------------------------------------------------------
# Exchanges in both directions


def test_zero_length_payloads_round_trip(exchange):
    sid, cid = new_id(), new_id()
    server, (client,) = exchange.run(
        sid,
        ["--expect", 3, "--echo", "--close"],
        [(cid, ["--send-size", 0, "--send-hex", "01", "--send-size", 0, "--expect", 3, "--close"])],
    )
    exchange.check_clean_exit()
    sent = [b"", b"\x01", b""]
    exchange.check_got(server, [expected(cid, p) for p in sent], "client's messages")
    exchange.check_got(client, [expected(sid, p) for p in sent], "echoes")


def test_sixteen_byte_payloads_that_are_not_the_senders_id_are_data(exchange):
    sid, cid = new_id(), new_id()
    to_server = [new_id().bytes, sid.bytes]
    to_client = [new_id().bytes, cid.bytes]
    server, (client,) = exchange.run(
        sid,
        ["--expect", 2]
        + [a for p in to_client for a in ("--send-each-hex", p.hex())]
        + ["--close"],
        [(cid, [a for p in to_server for a in ("--send-hex", p.hex())] + ["--expect", 2, "--close"])],
    )
    exchange.check_clean_exit()
    exchange.check_got(server, [expected(cid, p) for p in to_server], "16-byte data")
    exchange.check_got(client, [expected(sid, p) for p in to_client], "16-byte data")


def test_ten_mib_payload_round_trip(exchange):
    sid, cid = new_id(), new_id()
    size = 10 * MIB
    server, (client,) = exchange.run(
        sid,
        ["--expect", 1, "--echo", "--close"],
        [(cid, ["--send-size", size, "--expect", 1, "--close"])],
    )
    exchange.check_clean_exit()
    exchange.check_got(server, [expected(cid, pattern(size))], "10 MiB message")
    exchange.check_got(client, [expected(sid, pattern(size))], "10 MiB echo")


def test_broadcast_reaches_both_clients(exchange):
    sid, a, b = new_id(), new_id(), new_id()
    big, small = pattern(100_000), new_id().bytes
    server, clients = exchange.run(
        sid,
        ["--expect", 2, "--nowait", "--send-size", len(big), "--send-hex", small.hex(), "--close"],
        [(c, ["--send-hex", c.bytes[:4].hex(), "--expect", 2, "--close"]) for c in (a, b)],
    )
    exchange.check_clean_exit()
    exchange.check(
        sorted(server.got()) == sorted([expected(a, a.bytes[:4]), expected(b, b.bytes[:4])]),
        "server: one hello from each client",
    )
    for client in clients:
        exchange.check_got(client, [expected(sid, big), expected(sid, small)], "broadcasts")


def test_targeted_puts_reach_only_their_client(exchange):
    sid, a, b = new_id(), new_id(), new_id()
    multi = b"to both"
    server, clients = exchange.run(
        sid,
        ["--expect", 2, "--targeted", "--send-all-hex", multi.hex(), "--close"],
        [(c, ["--send-hex", c.bytes[:4].hex(), "--expect", 2, "--close"]) for c in (a, b)],
    )
    exchange.check_clean_exit()
    for cid, client in zip((a, b), clients):
        want = [expected(sid, f"to {cid}".encode()), expected(sid, multi)]
        exchange.check_got(client, want, "its targeted put, then the multi-peer put")


def test_client_close_flushes_queued_data_before_fin(exchange):
    # The client first waits for "go": a net-queue 1.1.1 client that closes
    # before the server's INI has arrived drops the connection at once
    # instead of waiting for the server's FIN, which would void the check.
    sid, cid = new_id(), new_id()
    payloads = [pattern(3_000_000), b"\xaa", b""]
    server, (client,) = exchange.run(
        sid,
        ["--expect", 1, "--send-each-hex", b"go".hex(), "--expect", 3, "--close"],
        [(cid, ["--send-hex", "00", "--expect", 1, "--nowait", "--send-size", 3_000_000,
                "--send-hex", "aa", "--send-size", 0, "--close", "--drain"])],
    )
    exchange.check_clean_exit()
    exchange.check_got(
        server, [expected(cid, p) for p in [b"\x00"] + payloads], "everything sent before FIN"
    )
    exchange.check(client.first("drained") == "closed", "client: get after close reports closed")
    exchange.check_got(client, [expected(sid, b"go")], "only the go")


def test_server_replies_queued_before_its_fin_reach_the_closing_client(exchange):
    sid, cid = new_id(), new_id()
    tail = [b"\x02", b"", new_id().bytes]
    server, (client,) = exchange.run(
        sid,
        ["--expect", 3, "--nowait", "--send-each-size", 8 * MIB]
        + ["--send-each-hex", tail[0].hex(), "--send-each-hex", "", "--send-each-hex", tail[2].hex()]
        + ["--close"],
        [(cid, ["--send-size", 1000, "--send-size", 3_000_000, "--send-hex", "ff",
                "--expect", 1, "--close", "--drain"])],
    )
    exchange.check_clean_exit()
    exchange.check_got(
        server,
        [expected(cid, pattern(1000)), expected(cid, pattern(3_000_000)), expected(cid, b"\xff")],
        "all client data",
    )
    exchange.check_got(
        client, [expected(sid, p) for p in [pattern(8 * MIB)] + tail], "every reply"
    )
    closed_at = client.index("closed")
    exchange.check(
        client.index("got") < closed_at < client.index("drained"),
        "client: the first reply before close, the rest drained after it",
    )
    exchange.check(client.first("drained") == "closed", "client: get after close reports closed")


# --------------------------------------------------------------------------
# Bytes on the wire


def recv_exact(sock, size, what):
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except (socket.timeout, TimeoutError):
            raise AssertionError(f"timed out waiting for {what}: have {data.hex()}")
        if not chunk:
            raise AssertionError(f"EOF while waiting for {what}: have {data.hex()}")
        data += chunk
    return data


def recv_to_eof(sock):
    """Everything until the peer closes, and how it closed: "eof", "eof
    without close_notify" (TLS) or "reset"."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ssl.SSLEOFError:
            return data, "eof without close_notify"
        except ConnectionResetError:
            return data, "reset"
        if not chunk:
            return data, "eof"
        data += chunk


def assert_silent(sock, seconds, what):
    sock.settimeout(seconds)
    try:
        data = sock.recv(1)
    except (socket.timeout, TimeoutError):
        return
    finally:
        sock.settimeout(10)
    raise AssertionError(f"{what}: got {data!r}")


IMPLS = [
    pytest.param("libnq", id="libnq"),
    pytest.param("netqueue", id="control_netqueue"),
]


@pytest.mark.parametrize("impl", IMPLS)
def test_wire_bytes_from_a_server(nq_peer, transport, certs, impl):
    ex = Exchange(nq_peer, transport, certs, (impl, None))
    sid, cid = new_id(), new_id()
    data = [b"hello", b"", new_id().bytes]
    try:
        server, port = ex.start_server(sid, ["--expect", 3, "--echo", "--close"])
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if transport == "tls":
            context = ssl.create_default_context(cafile=certs[1])
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        with sock:
            assert_silent(sock, 0.3, "server spoke before the client's INI")
            sock.sendall(INI_HEADER + cid.bytes)
            ini = recv_exact(sock, 24, "the server's INI")
            ex.check(ini == INI_HEADER + sid.bytes, f"server INI is {ini.hex()}")
            sock.sendall(b"".join(frame(p) for p in data))
            echoes = b"".join(frame(p) for p in data)
            got = recv_exact(sock, len(echoes), "the echoed frames")
            ex.check(got == echoes, f"echoed frames are {got.hex()}")
            sock.sendall(INI_HEADER + cid.bytes)
            rest, how = recv_to_eof(sock)
            ex.check(rest == INI_HEADER + sid.bytes, f"after FIN the server sent {rest.hex()}")
            ex.check(how != "reset", "the server reset the connection after its FIN")
        server.finish()
        ex.check(server.rc == 0 and server.first("closed") == "ok", "server did not close cleanly")
        ex.check(server.got() == [expected(cid, p) for p in data], "server saw the data frames")
    finally:
        ex.kill_all()


def serve_one_raw(ex, transport, certs, client_id, conversation):
    """Accepts one client on a raw socket and runs conversation(conn) on it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    client = None
    try:
        with listener:
            client = ex.start_client(listener.getsockname()[1], client_id, conversation.actions)
            conn, _ = listener.accept()
        conn.settimeout(10)
        if transport == "tls":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certs[1], certs[0])
            conn = context.wrap_socket(conn, server_side=True)
        with conn:
            try:
                conversation(conn)
            except AssertionError as exc:
                client.kill()
                client.finish()
                raise AssertionError(f"{exc}\n{ex.report()}") from None
        client.finish()
        ex.check(client.rc == 0 and client.first("closed") == "ok", "client did not close cleanly")
        ex.check(client.first("drained") == "closed", "client: get after close reports closed")
        return client
    finally:
        ex.kill_all()


@pytest.mark.parametrize("impl", IMPLS)
def test_wire_bytes_from_a_client(nq_peer, transport, certs, impl):
    ex = Exchange(nq_peer, transport, certs, (None, impl))
    sid, cid = new_id(), new_id()
    reply = b"reply after FIN"

    def conversation(conn):
        ini = recv_exact(conn, 24, "the client's INI")
        ex.check(ini == INI_HEADER + cid.bytes, f"client INI is {ini.hex()}")
        conn.sendall(INI_HEADER + sid.bytes + frame(b"go"))
        want = frame(bytes.fromhex("abcd")) + INI_HEADER + cid.bytes
        got = recv_exact(conn, len(want), "the data frame and FIN")
        ex.check(got == want, f"after INI the client sent {got.hex()}")
        conn.sendall(frame(reply) + INI_HEADER + sid.bytes)
        rest, how = recv_to_eof(conn)
        ex.check(rest == b"", f"after the server FIN the client sent {rest.hex()}")
        ex.check(how != "reset", "the client reset the connection")

    conversation.actions = ["--send-hex", "abcd", "--expect", 1, "--close", "--drain"]
    client = serve_one_raw(ex, transport, certs, cid, conversation)
    ex.check(
        client.got() == [expected(sid, b"go"), expected(sid, reply)],
        "client kept reading after its FIN",
    )


def test_libnq_client_waits_for_the_server_fin_even_when_the_server_ini_comes_last(
    nq_peer, transport, certs
):
    # Stricter than net-queue 1.1.1, whose client closes at once when its FIN
    # is sent before the server's INI has arrived.
    ex = Exchange(nq_peer, transport, certs, (None, "libnq"))
    sid, cid = new_id(), new_id()
    reply = b"reply after FIN"

    def conversation(conn):
        want = INI_HEADER + cid.bytes + frame(b"\xab") + INI_HEADER + cid.bytes
        got = recv_exact(conn, len(want), "INI, data and FIN")
        ex.check(got == want, f"the client sent {got.hex()}")
        assert_silent(conn, 0.2, "client sent more after its FIN")
        conn.sendall(INI_HEADER + sid.bytes + frame(reply) + INI_HEADER + sid.bytes)
        rest, how = recv_to_eof(conn)
        ex.check(rest == b"", f"after the server FIN the client sent {rest.hex()}")
        ex.check(how != "reset", "the client reset the connection")

    conversation.actions = ["--send-hex", "ab", "--close", "--drain"]
    client = serve_one_raw(ex, transport, certs, cid, conversation)
    ex.check(client.got() == [expected(sid, reply)], "client kept reading after its FIN")
