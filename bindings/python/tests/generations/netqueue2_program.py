"""A program written for net-queue 2.6, as its README documents the API.

The generations test runs it on net-queue 2.6 itself and, with only the
import changed, on the nq binding; both runs must print the same lines.

    python netqueue2_program.py ROLE PROTOCOL SCENARIO PORT SERVER_ID CLIENT_ID [KEY CERT CA]

ROLE is server or client; SCENARIO one of echo, buffers, drop_oldest.
"""

import argparse
import json
import threading
import time
import uuid

import net_queue as nq
from net_queue.core import EventOptions
from net_queue.utils.stream import BufferSerializer, PickleSerializer

parser = argparse.ArgumentParser()
parser.add_argument("role", choices=list(nq.Purpose))
parser.add_argument("protocol", choices=list(nq.Protocol))
parser.add_argument("scenario", choices=["echo", "buffers", "drop_oldest"])
parser.add_argument("port", type=int)
parser.add_argument("server_id", type=uuid.UUID)
parser.add_argument("client_id", type=uuid.UUID)
parser.add_argument("tls", nargs="*")
args = parser.parse_args()


def say(*words):
    print(json.dumps([args.role, *words]), flush=True)


say("enums", str(args.protocol), args.protocol == "tcp", nq.Purpose(args.role) == args.role)

connection = nq.ConnectionOptions(transport_size=64 * 1024)
if args.scenario == "drop_oldest":
    connection = nq.ConnectionOptions(drop_oldest=True, queue_size=4)
serialization = nq.SerializationOptions()
if args.scenario == "buffers":
    serialization = nq.SerializationOptions(load=BufferSerializer().load,
                                            dump=BufferSerializer().dump)
elif args.scenario == "echo":
    pickles = PickleSerializer(allow=PickleSerializer.allow_by_name("builtins", "uuid"))
    serialization = nq.SerializationOptions(load=pickles.load, dump=pickles.dump)
security = None
if args.tls:
    key, cert, ca = args.tls
    # Both roles get the same key and certificate, as net-queue's own
    # iops.py does: a client ignores the key and trusts the certificate.
    security = nq.SecurityOptions(key=key, cert=cert if args.role == "server" else ca)

seen = []
gone = threading.Event()
met = threading.Event()


def ini(peer):
    seen.append(("ini", peer == args.client_id))
    met.set()


def fin(peer):
    seen.append(("fin", peer == args.client_id))
    gone.set()


options = nq.CommunicatorOptions(
    id=args.server_id if args.role == "server" else args.client_id,
    netloc=nq.NetworkLocation("127.0.0.1", args.port),
    connection=connection, serialization=serialization, security=security,
    events=EventOptions(ini=ini, fin=fin))

COUNT = 40 if args.scenario == "drop_oldest" else 5

if args.role == "server":
    with nq.new(args.protocol, nq.Purpose.SERVER, options) as queue:
        say("ready")
        if args.scenario == "drop_oldest":
            time.sleep(3)  # the client's 40 messages arrive meanwhile
            taken = [queue.get() for _ in range(4)]
            say("kept", [m.data for m in taken])
            queue.put("done", taken[0].peer).result(10)
        else:
            for n in range(COUNT):
                message = queue.get()
                data = bytes(message.data).decode() if args.scenario == "buffers" else message.data
                say("got", n, data if args.scenario == "buffers" else repr(data)[:60],
                    message.peer == args.client_id)
                reply = b"echo-" + bytes(message.data) if args.scenario == "buffers" else \
                    {"echo": message.data, "n": n}
                queue.put(reply, message.peer).result(10)
        say("peer gone", gone.wait(20))
        say("events", seen)
else:
    with nq.new(args.protocol, nq.Purpose.CLIENT, options) as queue:
        # Puts wait for the server's answer: net-queue 2.6.4's MQTT client
        # can lose a put made before it (a KeyError in its _put_commit).
        say("met", met.wait(20))
        if args.scenario == "drop_oldest":
            futures = [queue.put(n) for n in range(COUNT)]
            say("sent", all(f.result(10) is None for f in futures))
            message = queue.get()
            say("got", message.data, message.peer == args.server_id)
        elif args.scenario == "buffers":
            for n in range(COUNT):
                queue.put(f"buffer {n}".encode() * (n + 1)).result(10)
                message = queue.get()
                say("got", bytes(message.data).decode()[:40], message.peer == args.server_id)
        else:
            values = [{"a": 1}, (1, 2.5, "three"), b"\x00\xff" * 1000, None, args.client_id]
            for value in values:
                queue.put(value).result(10)
                message = queue.get()
                say("got", repr(message.data)[:60], len(repr(message.data)),
                    message.peer == args.server_id)
        say("events", seen)
