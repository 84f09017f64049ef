"""The same API over MQTT, through a private mosquitto (tests/mqtt-broker.sh)."""

import pytest

import nq
from conftest import TIMEOUT, mqtt_broker, options


@pytest.fixture
def broker_port(tmp_path):
    with mqtt_broker(tmp_path / "broker") as port:
        yield port


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
