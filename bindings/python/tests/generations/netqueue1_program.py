"""A program written for net-queue 1.1.1, as its README documents the API.

The generations test runs it on net-queue 1.1.1 itself and, with only the
import changed, on the nq binding; both runs must print the same lines.

    python netqueue1_program.py ROLE PROTOCOL SCENARIO PORT SERVER_ID CLIENT_ID [KEY CERT CA]

ROLE is server or client; SCENARIO one of echo, bytes, tuned.
"""

import json
import sys
import time
import uuid

import net_queue as nq
from net_queue.utils.streamtools import BytesSerializer, PickleSerializer

role, protocol, scenario, port = sys.argv[1], nq.Protocol(sys.argv[2]), sys.argv[3], int(sys.argv[4])
server_id, client_id = uuid.UUID(sys.argv[5]), uuid.UUID(sys.argv[6])
tls = sys.argv[7:]


def say(*words):
    print(json.dumps([role, *words]), flush=True)


connection = nq.ConnectionOptions()
if scenario == "tuned":
    connection = nq.ConnectionOptions(True, True, 1024, 64 * 1024, 8, 1024 ** 3)
serialization = nq.SerializationOptions()
if scenario == "bytes":
    serialization = nq.SerializationOptions(load=BytesSerializer().load,
                                            dump=BytesSerializer().dump)
elif scenario == "echo":
    pickles = PickleSerializer(restrict=["builtins", "uuid"])
    serialization = nq.SerializationOptions(load=pickles.load, dump=pickles.dump)
security = None
if tls:
    key, cert, ca = tls
    security = (nq.SecurityOptions(key=key, certificate=cert) if role == "server"
                else nq.SecurityOptions(certificate=ca))

options = nq.CommunicatorOptions(
    id=server_id if role == "server" else client_id,
    netloc=nq.NetworkLocation("127.0.0.1", port),
    connection=connection, serialization=serialization, security=security,
    workers=2 if scenario == "tuned" else 1)

COUNT = 5
if role == "server":
    with nq.new(protocol, nq.Purpose.SERVER, options) as queue:
        say("ready")
        for n in range(COUNT):
            message = queue.get()
            say("got", n, repr(message.data)[:60], message.peer == client_id)
            reply = b"echo-" + message.data if scenario == "bytes" else {"echo": message.data}
            queue.put(reply, message.peer).result(10)
        queue.put(b"bye" if scenario == "bytes" else "bye").result(10)
else:
    with nq.new(protocol, nq.Purpose.CLIENT, options) as queue:
        if protocol == nq.Protocol.MQTT:
            # net-queue 1.1.1's MQTT client can lose a put made before the
            # server has answered, and 1.1 has no event to wait for.
            time.sleep(1)
        if scenario == "bytes":
            values = [b"x" * n for n in (1, 17, 4096, 65536, 1024 * 1024)]
        else:
            values = [{"a": 1}, (1, 2.5, "three"), b"\x00\xff" * 1000, None, client_id]
        for value in values:
            queue.put(value).result(10)
            message = queue.get()
            say("got", repr(message.data)[:60], len(repr(message.data)),
                message.peer == server_id)
        message = queue.get()
        say("last", repr(message.data), message.peer == server_id)
