"""Fixtures: communicators on 127.0.0.1 with ports the kernel picks, a
throw-away TLS certificate, and a private MQTT broker."""

import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest

import nq

TIMEOUT = 10  # seconds any single wait in a test may take
BIG = 32 * 1024 * 1024  # more than the kernel buffers of one connection hold


def options(port=0, **kwargs):
    return nq.CommunicatorOptions(netloc=nq.NetworkLocation("127.0.0.1", port), **kwargs)


def raw_bytes():
    return nq.SerializationOptions(load=nq.BytesSerializer().load, dump=nq.BytesSerializer().dump)


def stalling(port=0):
    """Options of a bytes peer that stops reading while it holds one
    undelivered message, so that a large message to it stays partly written
    and what is put after that waits behind it; close gives up after
    TIMEOUT, should a test leave it stalled."""
    return options(port, serialization=raw_bytes(), connection=nq.ConnectionOptions(queue_size=1),
                   transport=nq.TransportOptions(close_timeout=TIMEOUT))


def wait_stat(comm, name, at_least):
    """Waits until comm's counter ``name`` reaches at_least."""
    deadline = time.monotonic() + TIMEOUT
    while comm.stats()[name] < at_least:
        assert time.monotonic() < deadline, f"{name} stayed below {at_least}"
        time.sleep(0.01)


class Pair:
    """A server and the clients connected to it, closed in the right order."""

    def __init__(self, server_options=None):
        self.server = nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, server_options or options())
        self.clients = []

    @property
    def port(self):
        return self.server.local_port

    def client(self, **kwargs):
        client = nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, options(self.port, **kwargs))
        self.clients.append(client)
        return client

    def close(self):
        for client in self.clients:
            client.close()
        self.server.close()


@pytest.fixture
def pair():
    p = Pair()
    yield p
    p.close()


@pytest.fixture
def bytes_pair():
    p = Pair(options(serialization=raw_bytes()))
    p.client_options = dict(serialization=raw_bytes())
    yield p
    p.close()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """(key, certificate) for 127.0.0.1, made with the openssl tool."""
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    return key, cert


REPO = Path(os.environ.get("NQ_SOURCE_DIR") or Path(__file__).resolve().parents[3])


@contextlib.contextmanager
def mqtt_broker(directory, conf=None):
    """A private mosquitto (tests/mqtt-broker.sh) in directory, with conf's
    lines (a file outside directory) added to its settings; yields its
    port."""
    broker = REPO / "tests" / "mqtt-broker.sh"
    extra = [] if conf is None else [str(conf)]
    started = subprocess.run(["bash", str(broker), "start", str(directory), *extra],
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    try:
        yield int(started.stdout.strip())
    finally:
        subprocess.run(["bash", str(broker), "stop", str(directory)], timeout=60)
