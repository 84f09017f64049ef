"""The Python server of the mixed-language smoke test.

Listens on a free port (printed as "listening PORT"), answers each client's
greeting with "echo:<greeting>", and once EXPECTED clients have greeted,
broadcasts "all-here:<n>" to all of them; then closes, which waits until
every client has finished."""

import sys

import nq

expected = int(sys.argv[1])
raw = nq.SerializationOptions(load=nq.BytesSerializer().load, dump=nq.BytesSerializer().dump)
options = nq.CommunicatorOptions(netloc=nq.NetworkLocation("127.0.0.1", 0), serialization=raw)

with nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, options) as server:
    print("listening", server.local_port, flush=True)
    greeted = set()
    while len(greeted) < expected:
        message = server.get(timeout=60)
        print(f"server got {message.data.decode()!r} from {message.peer}", flush=True)
        greeted.add(message.peer)
        server.put(b"echo:" + message.data, message.peer).result(10)
    server.put(f"all-here:{len(greeted)}".encode()).result(10)
    print("server broadcast to", len(greeted), "clients", flush=True)
print("server closed", flush=True)
