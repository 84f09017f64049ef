"""nq's PickleSerializer interoperates with net-queue 1.1.1's default one.

net-queue runs in its own Python (>= 3.13) from tools/netqueue-env.sh; each
test starts it as a subprocess, server or client, and both sides exchange
pickled objects."""

import os
import subprocess
import uuid
from pathlib import Path

import pytest

import nq
from conftest import TIMEOUT, options

REPO = Path(os.environ.get("NQ_SOURCE_DIR") or Path(__file__).resolve().parents[3])

NETQUEUE_CLIENT = r"""
import sys, uuid
import net_queue as nq
opts = nq.CommunicatorOptions(netloc=nq.NetworkLocation("127.0.0.1", int(sys.argv[1])))
with nq.new(purpose=nq.Purpose.CLIENT, options=opts) as queue:
    queue.put({"from": "net-queue", "values": (1, 2.5, "three"), "id": queue.id}).result(10)
    message = queue.get()
    print(repr(message.data), message.peer, flush=True)
"""

NETQUEUE_SERVER = r"""
import sys
import net_queue as nq
opts = nq.CommunicatorOptions(netloc=nq.NetworkLocation("127.0.0.1", 0))
with nq.new(purpose=nq.Purpose.SERVER, options=opts) as queue:
    print("listening", queue._comm.getsockname()[1], queue.id, flush=True)
    message = queue.get()
    queue.put({"echo": message.data, "from": "net-queue"}, message.peer).result(10)
    print("served", message.peer, flush=True)
"""


@pytest.fixture(scope="module")
def netqueue_python():
    done = subprocess.run(["bash", str(REPO / "tools" / "netqueue-env.sh")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_netqueue_client_talks_to_an_nq_server(netqueue_python):
    with nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, options()) as server:
        peer = subprocess.Popen([netqueue_python, "-c", NETQUEUE_CLIENT, str(server.local_port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            message = server.get(timeout=TIMEOUT)
            assert message.data["from"] == "net-queue"
            assert message.data["values"] == (1, 2.5, "three")
            assert message.data["id"] == message.peer
            server.put(["reply", uuid.UUID(int=7)], message.peer).result(TIMEOUT)
            out, err = peer.communicate(timeout=TIMEOUT)
        finally:
            peer.kill()
    assert peer.returncode == 0, err
    assert out.split() == ["['reply',", "UUID('00000000-0000-0000-0000-000000000007')]",
                           str(server.id)]


def test_nq_client_talks_to_a_netqueue_server(netqueue_python):
    peer = subprocess.Popen([netqueue_python, "-c", NETQUEUE_SERVER],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        words = peer.stdout.readline().split()
        assert words[:1] == ["listening"], peer.stderr.read()
        port, server_id = int(words[1]), uuid.UUID(words[2])
        with nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, options(port)) as client:
            client.put({"from": "nq", "set": frozenset({1, 2})}).result(TIMEOUT)
            reply = client.get(timeout=TIMEOUT)
            assert reply.peer == server_id
            assert reply.data == {"echo": {"from": "nq", "set": frozenset({1, 2})},
                                  "from": "net-queue"}
        out, err = peer.communicate(timeout=TIMEOUT)
        assert peer.returncode == 0, err
        assert out.split() == ["served", str(client.id)]
    finally:
        peer.kill()
