"""An echo over TCP with the installed Python package nq (python3-libnq),
run by Debian's python3 from outside the source tree.

  echo.py server            listens on 127.0.0.1, on a port the system
                            picks; prints "listening 127.0.0.1 PORT", then
                            sends the first message it gets back to its
                            sender and exits
  echo.py client PORT TEXT  sends TEXT to 127.0.0.1:PORT and prints
                            "reply TEXT" with what came back

Both print "nq VERSION from PATH" first: the package's version and the
file it was imported from.  Exits 1 when the echo does not come back within
WAIT seconds, 2 for bad arguments.
"""

import sys

import nq

WAIT = 30


def options(port):
    return nq.CommunicatorOptions(netloc=nq.NetworkLocation("127.0.0.1", port))


def serve():
    with nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, options(0)) as server:
        print(f"listening 127.0.0.1 {server.local_port}", flush=True)
        message = server.get(timeout=WAIT)
        server.put(message.data, message.peer).result(timeout=WAIT)
        print(f"echoed {message.data}", flush=True)


def ask(port, text):
    with nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, options(port)) as client:
        client.put(text).result(timeout=WAIT)
        print(f"reply {client.get(timeout=WAIT).data}", flush=True)


def main(args):
    print(f"nq {nq.__version__} from {nq.__file__}", flush=True)
    if args == ["server"]:
        serve()
    elif len(args) == 3 and args[0] == "client":
        ask(int(args[1]), args[2])
    else:
        print("usage: echo.py server | echo.py client PORT TEXT", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (nq.Error, TimeoutError) as error:
        print(f"echo.py: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
