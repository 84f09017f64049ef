"""Programs written for net-queue 1.1.1 and for net-queue 2.6 run on
net-queue itself and, with only the import changed, on the nq binding, and
print the same lines.

Each program (generations/netqueue*_program.py) is started twice as a
server and a client pair: once in the Python of tools/netqueue-env.sh with
that net-queue release, once in this Python with ``net_queue`` replaced by
``nq``.  MQTT pairs meet at a private mosquitto (tests/mqtt-broker.sh)."""

import os
import select
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import mqtt_broker

HERE = Path(__file__).resolve().parent
REPO = Path(os.environ.get("NQ_SOURCE_DIR") or HERE.parents[2])
RUN_TIMEOUT = 60  # seconds one program may take

# (release, program, scenario, protocol, tls)
CASES = [
    ("1.1.1", "netqueue1_program.py", "echo", "tcp", False),
    ("1.1.1", "netqueue1_program.py", "echo", "tcp", True),
    ("1.1.1", "netqueue1_program.py", "bytes", "tcp", False),
    ("1.1.1", "netqueue1_program.py", "tuned", "tcp", False),
    ("1.1.1", "netqueue1_program.py", "echo", "mqtt", False),
    ("2.6.4", "netqueue2_program.py", "echo", "tcp", False),
    ("2.6.4", "netqueue2_program.py", "echo", "tcp", True),
    ("2.6.4", "netqueue2_program.py", "buffers", "tcp", False),
    ("2.6.4", "netqueue2_program.py", "drop_oldest", "tcp", False),
    ("2.6.4", "netqueue2_program.py", "echo", "mqtt", False),
    ("2.6.4", "netqueue2_program.py", "drop_oldest", "mqtt", False),
]


@pytest.fixture(scope="module")
def netqueue_pythons():
    found = {}
    for release in sorted({case[0] for case in CASES}):
        done = subprocess.run(["bash", str(REPO / "tools" / "netqueue-env.sh"), release],
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
        found[release] = done.stdout.strip()
    return found


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with mqtt_broker(tmp_path_factory.mktemp("broker")) as port:
        yield port


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_pair(python, program, argv):
    """Runs program as a server, then as a client once the server said
    ready; returns (server lines, client lines)."""
    def start(role):
        return subprocess.Popen([python, str(program), role, *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    server = start("server")
    client = None
    early = []
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not early or '"ready"' not in early[-1]:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([server.stdout], [], [], wait)[0]:
                break
            line = server.stdout.readline()
            if not line:
                break
            early.append(line.strip())
        if not early or '"ready"' not in early[-1]:
            server.kill()
            pytest.fail(f"the server did not get ready: {early} {server.communicate()[1]}")
        client = start("client")
        client_out, client_err = client.communicate(timeout=RUN_TIMEOUT)
        server_out, server_err = server.communicate(timeout=RUN_TIMEOUT)
    finally:
        for p in (server, client):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert client.returncode == 0, client_err
    assert server.returncode == 0, server_err
    return early + server_out.split("\n")[:-1], client_out.split("\n")[:-1]


def run_reference(python, program, make_argv):
    """run_pair on net-queue itself, once more if it fails: its MQTT
    clients now and then lose a message under load (their own race), and
    the comparison needs its answer, not its flakiness.  The second run
    takes fresh ids and a fresh port, since a killed run's ids may still
    hold sessions and retained messages on the broker.  Returns the argv
    that gave the answer with it.  The binding's run gets no second
    chance."""
    argv = make_argv()
    try:
        return argv, run_pair(python, program, argv)
    except (AssertionError, subprocess.TimeoutExpired, pytest.fail.Exception) as first:
        print(f"net-queue's own run failed once, running it again: {first}")
        argv = make_argv()
        return argv, run_pair(python, program, argv)


def on_the_binding(program, tmp_path):
    """The program with only its imports of net_queue changed to nq."""
    text = program.read_text()
    assert "import net_queue as nq" in text
    changed = tmp_path / program.name
    changed.write_text(text.replace("net_queue", "nq"))
    return changed


@pytest.mark.parametrize("release,program,scenario,protocol,tls", CASES,
                         ids=[f"{c[0]}-{c[2]}-{c[3]}{'-tls' if c[4] else ''}" for c in CASES])
def test_same_program_same_results(release, program, scenario, protocol, tls, netqueue_pythons,
                                   request, tmp_path, certificate):
    port = request.getfixturevalue("broker") if protocol == "mqtt" else None
    source = HERE / "generations" / program

    def make_argv(ids=None):
        ids = ids or [str(uuid.uuid4()), str(uuid.uuid4())]  # the server's and the client's
        argv = [protocol, scenario, str(port or free_port()), *ids]
        if tls:
            key, cert = certificate
            argv += [str(key), str(cert), str(cert)]
        return argv

    runs = {}
    argv, runs["net-queue"] = run_reference(netqueue_pythons[release], source, make_argv)
    ids = argv[3:5]
    runs["nq"] = run_pair(sys.executable, on_the_binding(source, tmp_path), make_argv(ids))
    server, client = runs["net-queue"]
    assert len(server) > 1 and len(client) > 0
    assert runs["nq"] == runs["net-queue"]
