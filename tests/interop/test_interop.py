"""Interop tests: libnq against net-queue 1.1.1 over TCP, TLS, MQTT and gRPC.

Each exchange runs twice, a libnq server with net-queue clients and a
net-queue server with libnq clients, and once more between two net-queue
peers as a control: when the control fails, the expectation is wrong, not
libnq.  Peers are nq_peer (C) and netqueue_peer.py, which share one command
line and print one line per observation; see nq_peer.c.  The raw tests
speak the protocol by hand (a socket, or paho over MQTT as net-queue does)
to check libnq's bytes on the wire against it directly.

Transports: tcp, tls, mqtt and grpc.  Some tests also run as mqtt_qos0,
where the libnq peers publish and subscribe at QoS 0 as net-queue does
instead of libnq's default QoS 1.  Over grpc (plain, no TLS) a net-queue
client polls in rounds and a libnq client talking to a net-queue server falls
back to them; there are no raw tests, which speak a transport by hand.

Environment:
  NQ_PEER                 path of the nq_peer executable (required)
  NQ_INTEROP_TRANSPORTS   comma-separated subset of "tcp,tls,mqtt,grpc" (default "tcp,tls")
  NQ_MQTT_PORT            port of the MQTT broker on 127.0.0.1 (required with
                          mqtt; run_interop.sh starts a private one)
"""

import hashlib
import os
import queue
import random
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

HERE = Path(__file__).resolve().parent
PEER_TIMEOUT = 30
WAIT_TIMEOUT = PEER_TIMEOUT + 10
RAW_TIMEOUT = 10
SERVER_START_ATTEMPTS = 5
# The exit status of a peer that could not open its communicator.
EXIT_OPEN = 2
TRANSPORTS = [t for t in os.environ.get("NQ_INTEROP_TRANSPORTS", "tcp,tls").split(",") if t]

PAIRS = [
    (("libnq", "netqueue"), "libnq_server-netqueue_clients"),
    (("netqueue", "libnq"), "netqueue_server-libnq_clients"),
    (("netqueue", "netqueue"), "control_netqueue_only"),
]
# The peer a raw test talks to: libnq, or net-queue as a control.
IMPLS = [("libnq", "libnq"), ("netqueue", "control_netqueue")]

MIB = 1024 * 1024
# net-queue 1.1.1's ConnectionOptions.protocol_size and libnq's default: the
# largest slice of the stream in one MQTT PUBLISH.
PROTOCOL_SIZE = 4 * MIB
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


def compare(got, want):
    """Why got is not want, short enough for a report of megabytes."""
    if got == want:
        return "equal"
    at = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
    return (
        f"{len(got)} bytes, want {len(want)}; first difference at offset {at}: "
        f"got {got[at:at + 24].hex() or '(end)'}, want {want[at:at + 24].hex() or '(end)'}"
    )


# --------------------------------------------------------------------------
# Test selection


def leave_out(exclude):
    """Leaves out the runs of a test for which exclude(transport, server
    implementation, client implementation) is true; raw tests pass the
    implementation they talk to as both, tests of one transport None."""

    def mark(test):
        test.leave_out = getattr(test, "leave_out", ()) + (exclude,)
        return test

    return mark


def netqueue_mqtt_clients(transport, server, client):
    """net-queue 1.1.1's MQTT client publishes its FIN and stops: it neither
    waits for the server's FIN nor delivers what arrives after it."""
    return transport.startswith("mqtt") and client == "netqueue"


def netqueue_stream_clients(transport, server, client):
    """A net-queue 1.1.1 TCP client that closes before the server's INI has
    arrived drops the connection at once, racing the server's answer."""
    return transport in ("tcp", "tls") and client == "netqueue"


def netqueue_grpc_clients(transport, server, client):
    """A net-queue 1.1.1 gRPC client whose close comes right after its put
    often never returns from close, even against a net-queue server that got
    the data.  Its close runs _s2c rounds while the session has state, and
    _s2c returns without a round once _connected is gone, the likely cause."""
    return transport == "grpc" and client == "netqueue"


def grpc(transport, server, client):
    """The raw tests speak TCP, TLS or MQTT by hand; there is no raw gRPC
    link."""
    return transport == "grpc"


def also_at_qos_0(test):
    """Marks a test that also runs as mqtt_qos0, with a libnq end, when mqtt
    is selected."""
    test.also_at_qos_0 = True
    return test


def pytest_generate_tests(metafunc):
    """Parametrizes transport with pair (exchanges) or with impl (raw tests),
    leaving out the combinations that cannot or need not run."""
    transports = list(TRANSPORTS)
    if "mqtt" in transports and getattr(metafunc.function, "also_at_qos_0", False):
        transports.append("mqtt_qos0")
    excludes = getattr(metafunc.function, "leave_out", ())

    def wanted(transport, server, client):
        if transport == "mqtt_qos0" and "libnq" not in (server, client):
            return False
        return not any(exclude(transport, server, client) for exclude in excludes)

    if "pair" in metafunc.fixturenames:
        params = [
            pytest.param(transport, pair, id=f"{transport}-{name}")
            for transport in transports
            for pair, name in PAIRS
            if wanted(transport, *pair)
        ]
        metafunc.parametrize(("transport", "pair"), params)
    elif "impl" in metafunc.fixturenames:
        params = [
            pytest.param(transport, impl, id=f"{transport}-{name}")
            for transport in transports
            for impl, name in IMPLS
            if wanted(transport, impl, impl)
        ]
        metafunc.parametrize(("transport", "impl"), params)
    elif "transport" in metafunc.fixturenames:
        metafunc.parametrize("transport", [t for t in transports if wanted(t, None, None)])


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


# --------------------------------------------------------------------------
# Transports and raw links


class StreamLink:
    """A raw TCP or TLS connection to a peer."""

    def __init__(self, sock):
        self.sock = sock

    def send(self, data, cuts=()):
        """Sends data, in separate writes cut at the given offsets."""
        for piece in cut(data, cuts):
            self.sock.sendall(piece)

    def recv_exact(self, size, what):
        data = b""
        while len(data) < size:
            try:
                chunk = self.sock.recv(size - len(data))
            except (socket.timeout, TimeoutError):
                raise AssertionError(f"timed out waiting for {what}: have {data[:64].hex()}")
            if not chunk:
                raise AssertionError(f"EOF while waiting for {what}: have {data[:64].hex()}")
            data += chunk
        return data

    def recv_to_eof(self, peer):
        """Everything until the peer closes, and how it closed: "eof", "eof
        without close_notify" (TLS) or "reset"."""
        data = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ssl.SSLEOFError:
                return data, "eof without close_notify"
            except ConnectionResetError:
                return data, "reset"
            if not chunk:
                return data, "eof"
            data += chunk

    def assert_silent(self, seconds, what):
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(1)
        except (socket.timeout, TimeoutError):
            return
        finally:
            self.sock.settimeout(RAW_TIMEOUT)
        raise AssertionError(f"{what}: got {data!r}")

    def close(self):
        self.sock.close()


class StreamListener:
    """A raw TCP or TLS listening socket for one client."""

    def __init__(self, certs, tls):
        self.certs = certs
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(RAW_TIMEOUT)
        self.port = self.sock.getsockname()[1]

    def accept(self):
        conn, _ = self.sock.accept()
        self.sock.close()
        conn.settimeout(RAW_TIMEOUT)
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certs[1], self.certs[0])
            conn = context.wrap_socket(conn, server_side=True)
        return StreamLink(conn)

    def close(self):
        self.sock.close()


class MqttLink:
    """One end of net-queue's MQTT layout spoken by hand, over paho as
    net-queue does (MQTT 3.1.1, client id = own id in hex, QoS 0).

    A client reads s2c/<own-hex> and publishes to c2s/<own-hex>; a server
    reads c2s/+ and answers on s2c/<hex> of the first topic it hears.  Every
    PUBLISH received is a slice of one byte stream; topics and slice sizes
    are recorded.  The link also subscribes to a probe topic of its own, so
    that sync() can flush what the broker has forwarded so far.  port is the
    broker's: as a server, the link is found there.
    """

    def __init__(self, broker_port, own_id, role):
        self.port = broker_port
        self.cond = threading.Condition()
        self.data = bytearray()
        self.topics = []
        self.sizes = []
        self.probes = 0
        self.subscribed = None
        self.probe_topic = f"libnq-interop/probe/{own_id.hex}"
        if role == "client":
            self.in_topic, self.out_topic = f"s2c/{own_id.hex}", f"c2s/{own_id.hex}"
        else:
            self.in_topic, self.out_topic = "c2s/+", None
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=own_id.hex,
            protocol=mqtt.MQTTv311,
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", broker_port)
        self.client.loop_start()
        self.client.subscribe([(self.in_topic, 0), (self.probe_topic, 0)])
        with self.cond:
            if not self.cond.wait_for(lambda: self.subscribed is not None, RAW_TIMEOUT):
                raise AssertionError("the broker did not acknowledge the raw link's subscription")
            if any(code.is_failure for code in self.subscribed):
                raise AssertionError(f"the broker refused the raw link's subscription: {self.subscribed}")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self.subscribed = list(reason_codes)
            self.cond.notify_all()

    def _on_message(self, client, userdata, message):
        with self.cond:
            if message.topic == self.probe_topic:
                self.probes += 1
            else:
                self.topics.append(message.topic)
                self.sizes.append(len(message.payload))
                self.data += message.payload
                if self.out_topic is None:
                    self.out_topic = "s2c/" + message.topic.split("/", 1)[1]
            self.cond.notify_all()

    def send(self, data, cuts=()):
        """Publishes data, one PUBLISH per piece cut at the given offsets."""
        assert self.out_topic is not None, "a raw server answers only after hearing a client"
        for piece in cut(data, cuts):
            self.client.publish(self.out_topic, piece, qos=0).wait_for_publish(RAW_TIMEOUT)

    def sync(self):
        """Returns once everything the broker forwarded before now is here:
        the broker handles a probe after what it already had, and forwards
        to this link in order."""
        with self.cond:
            want = self.probes + 1
        self.client.publish(self.probe_topic, b"probe", qos=0).wait_for_publish(RAW_TIMEOUT)
        with self.cond:
            if not self.cond.wait_for(lambda: self.probes >= want, RAW_TIMEOUT):
                raise AssertionError("the broker did not return the probe")

    def recv_exact(self, size, what):
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.data) >= size, RAW_TIMEOUT):
                raise AssertionError(f"timed out waiting for {what}: have {bytes(self.data[:64]).hex()}")
            data = bytes(self.data[:size])
            del self.data[:size]
        return data

    def recv_to_eof(self, peer):
        """What the peer sent until its process ended.  MQTT has no end of
        stream, so the peer's exit stands for it: by then its publishes have
        reached the broker (libnq waits for their acknowledgements at QoS 1;
        net-queue has written them before it stops its paho loop).  The pause
        lets the broker read a QoS 0 publisher's last bytes before the probe
        flushes what it forwarded."""
        peer.finish()
        time.sleep(0.2)
        self.sync()
        with self.cond:
            data = bytes(self.data)
            self.data.clear()
        return data, "eof"

    def assert_silent(self, seconds, what):
        time.sleep(seconds)
        self.sync()
        with self.cond:
            if self.data:
                raise AssertionError(f"{what}: got {bytes(self.data[:64]).hex()}")

    def accept(self):
        return self

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def free_port():
    """A port nothing is bound to now, below the range the kernel hands out
    for port 0 and outgoing connections, so that servers binding port 0 and
    clients cannot take it before the caller binds it.  Parallel runs may
    still pick the same one: the caller retries when its server fails to
    bind."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    low = min(10000, ephemeral_low // 2)
    while True:
        port = random.randrange(low, ephemeral_low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def cut(data, cuts):
    """data split at the offsets in cuts that fall inside it."""
    bounds = [0] + [c for c in cuts if 0 < c < len(data)] + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


class Network:
    """Where peers meet: the transport, and the certificates or broker it
    needs."""

    def __init__(self, transport, certs, broker_port):
        self.transport = transport
        self.certs = certs
        self.broker_port = broker_port
        self.mqtt = transport.startswith("mqtt")

    def peer_args(self, impl, role):
        """Command-line options of a peer for this transport."""
        if self.transport == "tls":
            key, cert = self.certs
            return ["--key", key, "--cert", cert] if role == "server" else ["--cert", cert]
        if self.mqtt:
            args = ["--protocol", "mqtt"]
            if self.transport == "mqtt_qos0" and impl == "libnq":
                args += ["--qos", 0]
            return args
        if self.transport == "grpc":
            return ["--protocol", "grpc"]
        return []

    def server_port(self, impl):
        """The --port of a server: 0 for any free one, the broker's, or a
        port free right now for a net-queue gRPC server, which does not
        report the one it bound."""
        if self.mqtt:
            return self.broker_port
        if self.transport == "grpc" and impl == "netqueue":
            return free_port()
        return 0

    def connect_raw(self, port, own_id):
        """A raw client link to the server listening at port."""
        if self.mqtt:
            return MqttLink(port, own_id, "client")
        sock = socket.create_connection(("127.0.0.1", port), timeout=RAW_TIMEOUT)
        if self.transport == "tls":
            context = ssl.create_default_context(cafile=self.certs[1])
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        return StreamLink(sock)

    def listen_raw(self, own_id):
        """A raw server for one client: .port for the client, .accept() for
        the link once the client has started, .close()."""
        if self.mqtt:
            return MqttLink(self.broker_port, own_id, "server")
        return StreamListener(self.certs, self.transport == "tls")


# --------------------------------------------------------------------------
# Exchanges


class Exchange:
    """Runs one server and its clients and checks what each observed."""

    def __init__(self, nq_peer, network, pair):
        self.nq_peer = nq_peer
        self.network = network
        self.server_impl, self.client_impl = pair
        self.peers = []

    def _command(self, impl):
        if impl == "libnq":
            return [self.nq_peer]
        return [sys.executable, HERE / "netqueue_peer.py"]

    def start_server(self, server_id, actions, impl=None):
        """Starts a server; when it cannot bind the port it was given (a
        port picked in advance and taken since), starts it again on another."""
        impl = impl or self.server_impl
        for attempt in range(SERVER_START_ATTEMPTS):
            argv = self._command(impl) + ["server", "--port", self.network.server_port(impl)]
            argv += ["--id", server_id] + self.network.peer_args(impl, "server")
            argv += ["--timeout", PEER_TIMEOUT] + actions
            server = Peer(f"{impl} server", argv)
            try:
                line = server.wait_line("listening")
            except AssertionError:
                server.finish()
                retry = server.rc == EXIT_OPEN and any("bind" in e for e in server.stderr)
                if retry and attempt + 1 < SERVER_START_ATTEMPTS:
                    continue
                self.peers.append(server)
                raise
            self.peers.append(server)
            return server, int(line.split()[1])

    def start_client(self, port, client_id, actions, impl=None):
        impl = impl or self.client_impl
        argv = self._command(impl) + ["client", "--port", port, "--id", client_id]
        argv += self.network.peer_args(impl, "client") + ["--timeout", PEER_TIMEOUT] + actions
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

    def check_drained(self, *peers):
        for peer in peers:
            self.check(peer.first("drained") == "closed", f"{peer.name}: get after close reports closed")

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


@pytest.fixture
def network(transport, certs):
    broker_port = None
    if transport.startswith("mqtt"):
        port = os.environ.get("NQ_MQTT_PORT", "")
        if not port.isdigit():
            pytest.fail("NQ_MQTT_PORT must name the port of an MQTT broker on 127.0.0.1")
        broker_port = int(port)
    return Network(transport, certs, broker_port)


@pytest.fixture
def exchange(nq_peer, network, pair):
    ex = Exchange(nq_peer, network, pair)
    yield ex
    ex.kill_all()


# --------------------------------------------------------------------------
# Exchanges in both directions


@also_at_qos_0
def test_hello_both_ways_then_the_close_handshake(exchange):
    # Over MQTT a net-queue client leaves as soon as its FIN is published,
    # without waiting for the server's FIN or sending a DISCONNECT: the server
    # must still answer it, end the session and close cleanly.
    sid, cid = new_id(), new_id()
    hello, welcome = b"hello", b"welcome"
    server, (client,) = exchange.run(
        sid,
        ["--expect", 1, "--send-each-hex", welcome.hex(), "--close", "--drain"],
        [(cid, ["--send-hex", hello.hex(), "--expect", 1, "--close", "--drain"])],
    )
    exchange.check_clean_exit()
    exchange.check_got(server, [expected(cid, hello)], "the hello")
    exchange.check_got(client, [expected(sid, welcome)], "the welcome")
    exchange.check_drained(server, client)


@leave_out(netqueue_stream_clients)
@leave_out(netqueue_grpc_clients)
def test_client_that_closes_right_after_its_put_is_heard(exchange):
    # Over MQTT a net-queue client's INI, data and FIN may share one PUBLISH,
    # and it is gone before the server's INI and FIN are published.
    sid, cid = new_id(), new_id()
    server, (client,) = exchange.run(
        sid,
        ["--expect", 1, "--close", "--drain"],
        [(cid, ["--send-hex", "01", "--close", "--drain"])],
    )
    exchange.check_clean_exit()
    exchange.check_got(server, [expected(cid, b"\x01")], "the put")
    exchange.check_got(client, [], "nothing")
    exchange.check_drained(server, client)


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


@also_at_qos_0
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
    # The client first waits for "go": a net-queue 1.1.1 TCP client that
    # closes before the server's INI has arrived drops the connection at once
    # instead of waiting for the server's FIN, which would void the check.
    # Its MQTT client never waits for the server's FIN: the server must still
    # take everything, answer the FIN and close cleanly.
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
    exchange.check_drained(client)
    exchange.check_got(client, [expected(sid, b"go")], "only the go")


def test_a_client_id_comes_back_after_its_session_ended(exchange):
    # Over MQTT the id is the topic, so the server must open a new session on
    # a topic whose last session has ended.
    sid, cid = new_id(), new_id()
    first, second = b"first visit", b"second visit"
    server, port = exchange.start_server(
        sid, ["--expect", 1, "--echo", "--expect", 1, "--echo", "--close"]
    )
    clients = []
    for payload in (first, second):
        client = exchange.start_client(port, cid, ["--send-hex", payload.hex(), "--expect", 1, "--close"])
        client.finish()
        clients.append(client)
    server.finish()
    exchange.check_clean_exit()
    exchange.check_got(server, [expected(cid, first), expected(cid, second)], "both visits")
    for client, payload in zip(clients, (first, second)):
        exchange.check_got(client, [expected(sid, payload)], "the echo of its own visit")


@leave_out(netqueue_mqtt_clients)
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
    exchange.check_drained(client)


# --------------------------------------------------------------------------
# Bytes on the wire


def check_mqtt_slices(ex, link, topic):
    """Over MQTT: every PUBLISH came on topic and held at most one
    protocol_size slice of the stream."""
    if not ex.network.mqtt:
        return
    ex.check(set(link.topics) == {topic}, f"published on {sorted(set(link.topics))}, not only {topic}")
    ex.check(max(link.sizes) <= PROTOCOL_SIZE, f"a PUBLISH holds more than 4 MiB: {link.sizes}")


@also_at_qos_0
@leave_out(grpc)
def test_wire_bytes_from_a_server(nq_peer, network, impl):
    ex = Exchange(nq_peer, network, (impl, None))
    sid, cid = new_id(), new_id()
    data = [b"hello", b"", new_id().bytes, pattern(5 * MIB)]
    frames = b"".join(frame(p) for p in data)
    try:
        server, port = ex.start_server(sid, ["--expect", len(data), "--echo", "--close"])
        link = network.connect_raw(port, cid)
        try:
            link.assert_silent(0.3, "server spoke before the client's INI")
            link.send(INI_HEADER + cid.bytes)
            ini = link.recv_exact(24, "the server's INI")
            ex.check(ini == INI_HEADER + sid.bytes, f"server INI is {ini.hex()}")
            # Pieces that split the first header, as net-queue's slices may.
            link.send(frames, cuts=(1, 7, 9, 30, 3 * MIB))
            got = link.recv_exact(len(frames), "the echoed frames")
            ex.check(got == frames, f"echoed frames: {compare(got, frames)}")
            link.send(INI_HEADER + cid.bytes)
            rest, how = link.recv_to_eof(server)
            ex.check(rest == INI_HEADER + sid.bytes, f"after FIN the server sent {rest[:64].hex()}")
            ex.check(how != "reset", "the server reset the connection after its FIN")
        finally:
            link.close()
        server.finish()
        ex.check(server.rc == 0 and server.first("closed") == "ok", "server did not close cleanly")
        ex.check(server.got() == [expected(cid, p) for p in data], "server saw the data frames")
        check_mqtt_slices(ex, link, f"s2c/{cid.hex}")
    finally:
        ex.kill_all()


def serve_one_raw(ex, client_id, conversation):
    """Serves one client on a raw link and runs conversation(link, client)."""
    listener = ex.network.listen_raw(new_id())
    link = None
    try:
        client = ex.start_client(listener.port, client_id, conversation.actions)
        link = listener.accept()
        try:
            conversation(link, client)
        except AssertionError as exc:
            client.kill()
            client.finish()
            raise AssertionError(f"{exc}\n{ex.report()}") from None
        client.finish()
        ex.check(client.rc == 0 and client.first("closed") == "ok", "client did not close cleanly")
        ex.check_drained(client)
        check_mqtt_slices(ex, link, f"c2s/{client_id.hex}")
        return client
    finally:
        (link or listener).close()
        ex.kill_all()


@also_at_qos_0
@leave_out(grpc)
def test_wire_bytes_from_a_client(nq_peer, network, impl):
    ex = Exchange(nq_peer, network, (None, impl))
    sid, cid = new_id(), new_id()
    reply = b"reply after FIN"

    def conversation(link, client):
        ini = link.recv_exact(24, "the client's INI")
        ex.check(ini == INI_HEADER + cid.bytes, f"client INI is {ini.hex()}")
        link.send(INI_HEADER + sid.bytes + frame(b"go"))
        want = frame(bytes.fromhex("abcd")) + INI_HEADER + cid.bytes
        got = link.recv_exact(len(want), "the data frame and FIN")
        ex.check(got == want, f"after INI the client sent {got.hex()}")
        link.send(frame(reply) + INI_HEADER + sid.bytes)
        rest, how = link.recv_to_eof(client)
        ex.check(rest == b"", f"after the server FIN the client sent {rest[:64].hex()}")
        ex.check(how != "reset", "the client reset the connection")

    conversation.actions = ["--send-hex", "abcd", "--expect", 1, "--close", "--drain"]
    client = serve_one_raw(ex, cid, conversation)
    want = [expected(sid, b"go"), expected(sid, reply)]
    if network.mqtt and impl == "netqueue":
        # net-queue 1.1.1's MQTT client stops its paho loop once its FIN is
        # out, so the reply after it arrives only if it beats the stop.
        ex.check(client.got() in (want[:1], want), "client got the go, and perhaps the reply")
    else:
        ex.check(client.got() == want, "client kept reading after its FIN")


@leave_out(grpc)
def test_libnq_client_waits_for_the_server_fin_even_when_the_server_ini_comes_last(
    nq_peer, network
):
    # Stricter than net-queue 1.1.1, whose TCP client closes at once when its
    # FIN is sent before the server's INI has arrived, and whose MQTT client
    # never waits for the server's FIN.
    ex = Exchange(nq_peer, network, (None, "libnq"))
    sid, cid = new_id(), new_id()
    reply = b"reply after FIN"

    def conversation(link, client):
        want = INI_HEADER + cid.bytes + frame(b"\xab") + INI_HEADER + cid.bytes
        got = link.recv_exact(len(want), "INI, data and FIN")
        ex.check(got == want, f"the client sent {got.hex()}")
        link.assert_silent(0.2, "client sent more after its FIN")
        link.send(INI_HEADER + sid.bytes + frame(reply) + INI_HEADER + sid.bytes)
        rest, how = link.recv_to_eof(client)
        ex.check(rest == b"", f"after the server FIN the client sent {rest[:64].hex()}")
        ex.check(how != "reset", "the client reset the connection")

    conversation.actions = ["--send-hex", "ab", "--close", "--drain"]
    client = serve_one_raw(ex, cid, conversation)
    ex.check(client.got() == [expected(sid, reply)], "client kept reading after its FIN")
