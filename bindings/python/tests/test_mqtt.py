"""The same API over MQTT, through a private mosquitto (tests/mqtt-broker.sh)."""

import os
import subprocess
from pathlib import Path

import pytest

import nq
from conftest import TIMEOUT, options

REPO = Path(os.environ.get("NQ_SOURCE_DIR") or Path(__file__).resolve().parents[3])
BROKER = REPO / "tests" / "mqtt-broker.sh"


@pytest.fixture
def broker_port(tmp_path):
    directory = tmp_path / "broker"
    started = subprocess.run(["bash", str(BROKER), "start", str(directory)],
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    try:
        yield int(started.stdout.strip())
    finally:
        subprocess.run(["bash", str(BROKER), "stop", str(directory)], timeout=60)


def test_mqtt_round_trip_and_broadcast(broker_port):
    prefix = nq.TransportOptions(mqtt_prefix="py/")
    with nq.new(nq.Protocol.MQTT, nq.Purpose.SERVER,
                options(broker_port, transport=prefix)) as server:
        with nq.new(nq.Protocol.MQTT, nq.Purpose.CLIENT,
                    options(broker_port, transport=prefix)) as client:
            client.put({"over": "mqtt"}).result(TIMEOUT)
            request = server.get(timeout=TIMEOUT)
            assert request.data == {"over": "mqtt"} and request.peer == client.id
            server.put("reply", request.peer).result(TIMEOUT)
            assert client.get(timeout=TIMEOUT).data == "reply"
            server.put("everyone").result(TIMEOUT)
            assert client.get(timeout=TIMEOUT).data == "everyone"


def test_mqtt_without_a_broker_is_refused_at_open():
    # A port that was free a moment ago, with no broker on it.
    with nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, options()) as placeholder:
        port = placeholder.local_port
    with pytest.raises(nq.ConnectionRefused):
        nq.new(nq.Protocol.MQTT, nq.Purpose.CLIENT,
               options(port, transport=nq.TransportOptions(handshake_timeout=2)))
