"""A net-queue 1.1.1 peer with the command line and output of nq_peer.

net-queue exchanges raw bytes here (its BytesSerializer), which is what a
libnq peer sends and receives.  See nq_peer.c for the options, actions and
output lines; both programs must stay in step (--qos is libnq's only:
net-queue always uses QoS 0).  A gRPC server needs a free --port other than
0: net-queue does not report the port it bound.
"""

import faulthandler
import hashlib
import os
import sys
import threading
import uuid
from pathlib import Path

import net_queue as nq
import net_queue.core.comm
import net_queue.grpc
import net_queue.mqtt
import net_queue.mqtt.client
from net_queue.core import (
    CommunicatorOptions,
    NetworkLocation,
    SecurityOptions,
    SerializationOptions,
)
from net_queue.utils.streamtools import BytesSerializer
from netqueue_workarounds import (
    guard_connection_ini,
    load_bytes,
    pin_client_sessions,
    subscribe_before_open,
)

EXIT_USAGE = 1
EXIT_OPEN = 2
EXIT_ACTION = 3
EXIT_WATCHDOG = 124

OPTIONS = {"--protocol", "--host", "--port", "--id", "--key", "--cert", "--timeout"}
PROTOCOLS = {"tcp": nq.Protocol.TCP, "mqtt": nq.Protocol.MQTT, "grpc": nq.Protocol.GRPC}
ACTIONS_WITH_ARG = {
    "--send-hex",
    "--send-size",
    "--send-each-hex",
    "--send-each-size",
    "--send-all-hex",
    "--expect",
}
ACTIONS = ACTIONS_WITH_ARG | {"--targeted", "--echo", "--nowait", "--close", "--drain"}


class ActionError(Exception):
    pass


def usage(message):
    print(f"usage error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def pattern(size):
    """The deterministic payload: byte i is i % 251."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def bind_grpc_port_alone():
    """Makes a net-queue gRPC server fail to start on a port already bound.

    grpc sets SO_REUSEPORT on its listening sockets by default, so a server
    given a port that another grpc server (a libnq one, say) holds would
    start and share that port's connections with it.  The driver picks a
    free port before starting the server and retries when the start fails;
    that works only if a taken port does fail.  Only the listening socket's
    options change, not the bytes on the wire.
    """
    base = net_queue.grpc.Protocol
    original = base.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._grpc_options["grpc.so_reuseport"] = 0

    base.__init__ = init


def emit(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def describe(message):
    data = bytes(message.data)
    prefix = data[:16].hex() or "-"
    return f"got {message.peer} {len(data)} {hashlib.sha256(data).hexdigest()} {prefix}"


def start_watchdog(seconds):
    def expire():
        sys.stderr.write("error watchdog: the run took too long\n")
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(EXIT_WATCHDOG)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


class Peer:
    def __init__(self, comm, is_server, timeout):
        self.comm = comm
        self.is_server = is_server
        self.timeout = timeout
        self.wait_puts = True
        self.closed = False
        self.senders = []
        self.last = []

    def put(self, data, *peers):
        try:
            future = self.comm.put(data, *peers)
            if self.wait_puts:
                future.result(timeout=self.timeout)
        except Exception as exc:
            raise ActionError(f"put: {exc!r}") from exc
        emit(f"sent {len(data)}")

    def require_server(self, action):
        if not self.is_server:
            usage(f"{action} is a server action")

    def expect(self, count):
        self.last = []
        for index in range(count):
            try:
                message = self.comm.get()
            except Exception as exc:
                raise ActionError(f"expect: message {index + 1} of {count}: {exc!r}") from exc
            emit(describe(message))
            if message.peer not in self.senders:
                self.senders.append(message.peer)
            self.last.append(message)

    def close(self):
        try:
            self.comm.close()
        except Exception as exc:
            emit(f"closed {type(exc).__name__}")
        else:
            emit("closed ok")
        self.closed = True

    def drain(self):
        while True:
            try:
                message = self.comm.get()
            except ConnectionError:
                emit("drained closed")
                return
            except Exception as exc:
                emit(f"drained {type(exc).__name__}")
                return
            emit(describe(message))

    def run(self, actions):
        index = 0
        while index < len(actions):
            action = actions[index]
            if action not in ACTIONS:
                usage(f"unknown action {action}")
            arg = None
            if action in ACTIONS_WITH_ARG:
                if index + 1 >= len(actions):
                    usage(f"{action} needs an argument")
                arg = actions[index + 1]
                index += 1
            index += 1

            if action == "--send-hex":
                self.put(bytes.fromhex(arg))
            elif action == "--send-size":
                self.put(pattern(int(arg)))
            elif action in ("--send-each-hex", "--send-each-size"):
                self.require_server(action)
                data = bytes.fromhex(arg) if action.endswith("hex") else pattern(int(arg))
                for sender in self.senders:
                    self.put(data, sender)
            elif action == "--send-all-hex":
                self.require_server(action)
                self.put(bytes.fromhex(arg), *self.senders)
            elif action == "--targeted":
                self.require_server(action)
                for sender in self.senders:
                    self.put(f"to {sender}".encode(), sender)
            elif action == "--echo":
                self.require_server(action)
                for message in self.last:
                    self.put(bytes(message.data), message.peer)
            elif action == "--nowait":
                self.wait_puts = False
            elif action == "--expect":
                self.expect(int(arg))
            elif action == "--close":
                self.close()
            elif action == "--drain":
                self.drain()


def main(argv):
    if len(argv) < 1 or argv[0] not in ("server", "client"):
        usage("first argument must be server or client")
    is_server = argv[0] == "server"
    settings = {"--protocol": "tcp", "--host": "127.0.0.1", "--timeout": "60"}
    index = 1
    while index < len(argv) and argv[index] in OPTIONS:
        if index + 1 >= len(argv):
            usage(f"{argv[index]} needs an argument")
        settings[argv[index]] = argv[index + 1]
        index += 2
    if "--port" not in settings:
        usage("--port is required")
    if settings["--protocol"] not in PROTOCOLS:
        usage("--protocol must be tcp, mqtt or grpc")
    mqtt = settings["--protocol"] == "mqtt"
    grpc = settings["--protocol"] == "grpc"
    if mqtt and int(settings["--port"]) == 0:
        usage("over mqtt --port names the broker and cannot be 0")
    if grpc and is_server and int(settings["--port"]) == 0:
        usage("net-queue does not report the port a gRPC server bound: --port cannot be 0")
    if (mqtt or grpc) and ("--key" in settings or "--cert" in settings):
        usage("--key and --cert are for tcp")
    if is_server and ("--key" in settings) != ("--cert" in settings):
        usage("a TLS server needs both --key and --cert")
    if not is_server and "--key" in settings:
        usage("a client takes no --key")

    timeout = float(settings["--timeout"])
    start_watchdog(timeout)
    guard_connection_ini()
    if mqtt and is_server:
        subscribe_before_open(timeout)
    if not is_server:
        pin_client_sessions()
    if grpc and is_server:
        bind_grpc_port_alone()

    serializer = BytesSerializer()
    security = None
    if "--cert" in settings:
        key = Path(settings["--key"]) if is_server else None
        security = SecurityOptions(key=key, certificate=Path(settings["--cert"]))
    options = CommunicatorOptions(
        id=uuid.UUID(settings["--id"]) if "--id" in settings else uuid.uuid4(),
        netloc=NetworkLocation(settings["--host"], int(settings["--port"])),
        serialization=SerializationOptions(load=load_bytes, dump=serializer.dump),
        security=security,
    )
    purpose = nq.Purpose.SERVER if is_server else nq.Purpose.CLIENT
    try:
        comm = nq.new(PROTOCOLS[settings["--protocol"]], purpose, options)
    except Exception as exc:
        # A half-built communicator may leave threads that would hold up a
        # normal exit.
        print(f"error open: {exc!r}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(EXIT_OPEN)
    if is_server:
        port = settings["--port"] if mqtt or grpc else comm._comm.getsockname()[1]
        emit(f"listening {port}")

    peer = Peer(comm, is_server, timeout)
    try:
        peer.run(argv[index:])
    except ActionError as exc:
        print(f"error {exc}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(EXIT_ACTION)
    if not peer.closed:
        peer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
