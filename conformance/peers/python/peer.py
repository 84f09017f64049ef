#!/usr/bin/env python3
"""The Python conformance peer: runs one role of a case from cases.json and
reports what it observes as JSON lines (conformance/README.md).

    peer.py --role server|client --protocol tcp|tls|mqtt|grpc --port P --case NAME
            [--host H] [--id UUID] [--key F] [--cert F] [--ca F]
            [--client-auth optional|required] [--token T]
            [--accept-token T --token-identity NAME] [--part LABEL]
            [--clients N] [--timeout S] [--cases-file F] [--impl libnq|netqueue]
    peer.py --stdin [--cases-file F] [--impl libnq|netqueue]

--impl libnq (the default) runs on the nq binding (PYTHONPATH must reach the
built package), used the way net-queue 1.1.1 code is written;
peers/python2/peer.py runs these runs with net-queue 2.x's API.  --impl
netqueue runs on net-queue 1.1.1 itself (a Python >= 3.13 with net-queue
installed, see netqueue_backend.py).  With --stdin every line of standard
input is one run: a JSON object with the options' names as keys plus "run",
an id echoed in every line of that run; runs go on in parallel, and the
program ends when standard input ends and the runs are done.
"""

import argparse
import json
import os
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import casebook  # noqa: E402

PROTOCOLS = ("tcp", "tls", "mqtt", "grpc")
# The run's TLS options, as the runner names them (conformance/README.md).
TLS_KEYS = ("key", "cert", "ca", "client_auth", "token", "accept_token", "token_identity")


class Output:
    """Standard output, one JSON object per line, shared by every run."""

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, obj):
        line = json.dumps(obj, separators=(",", ":")) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


def token_fields(tls):
    """The binding's SecurityOptions fields for the run's tokens: a client's
    token, a server's accepted token and the name it gives it."""
    fields = {}
    if tls.get("token"):
        fields["token"] = tls["token"]
    if tls.get("accept_token"):
        fields["accept_tokens"] = {tls["accept_token"]: tls.get("token_identity", "")}
    return fields


class LibnqBackend:
    """The nq binding (libnq), used as net-queue 1.1.1 code uses net-queue."""

    name = "libnq"

    def __init__(self):
        import nq

        self.nq = nq
        self._serializer = nq.BytesSerializer()

    def open(self, role, protocol, host, port, ident, tls, timeout):
        """tls: the run's key, cert, ca and client_auth (those it has)."""
        nq = self.nq
        kinds = {"tcp": nq.Protocol.TCP, "tls": nq.Protocol.TCP,
                 "mqtt": nq.Protocol.MQTT, "grpc": nq.Protocol.GRPC}
        purpose = nq.Purpose.SERVER if role == "server" else nq.Purpose.CLIENT
        security = None
        if tls:
            # A client's key makes key and certificate its own (the binding's
            # SecurityOptions), ca the anchors it checks its server against.
            security = nq.SecurityOptions(key=tls.get("key"), certificate=tls.get("cert"),
                                          ca=tls.get("ca"), client_auth=tls.get("client_auth"),
                                          **token_fields(tls))
        options = nq.CommunicatorOptions(
            id=ident,
            netloc=nq.NetworkLocation(host, port),
            serialization=nq.SerializationOptions(
                load=self._serializer.load, dump=self._serializer.dump),
            security=security,
            transport=nq.TransportOptions(close_timeout=timeout),
        )
        comm = nq.new(kinds[protocol], purpose, options)
        bound = comm.local_port if role == "server" and protocol != "mqtt" else port
        return comm, bound

    def put(self, comm, data, peers):
        return comm.put(data, *peers)

    def wait(self, future, timeout):
        future.result(timeout=timeout)

    def get(self, comm, timeout):
        message = comm.get(timeout=timeout)
        return message.peer, message.data

    def close(self, comm):
        comm.close()

    def identity(self, comm, peer):
        return comm.identity(peer)

    def release(self, comm):
        pass

    def error_name(self, exc):
        if isinstance(exc, self.nq.Error) and exc.code is not None:
            return casebook.error_name(exc.code)
        if isinstance(exc, TimeoutError):
            return "timeout"
        return "other:" + type(exc).__name__


class Run:
    """One role of one case, run step by step."""

    def __init__(self, spec, backend, book, out):
        self.spec = spec
        self.backend = backend
        self.book = book
        self.out = out
        self.run_id = str(spec.get("run", ""))
        self.role = spec["role"]
        self.protocol = spec["protocol"]
        self.id = uuid.UUID(spec["id"]) if spec.get("id") else uuid.uuid4()
        self.clients = int(spec.get("clients", 1))
        self.timeout = float(spec.get("timeout") or book.get("timeout", 60))
        self.deadline = time.monotonic() + self.timeout
        self.comm = None
        self.closed = False
        self.senders = []
        self.last = []

    def emit(self, **fields):
        self.out.write({"run": self.run_id, **fields})

    def remaining(self):
        return max(0.0, self.deadline - time.monotonic())

    def failure(self, exc):
        return {"result": self.backend.error_name(exc), "detail": " ".join(str(exc).split())[:200]}

    def execute(self):
        try:
            if self.role not in ("server", "client") or self.protocol not in PROTOCOLS:
                raise ValueError(f"bad role {self.role!r} or protocol {self.protocol!r}")
            case = casebook.find(self.book, self.spec["case"])
            steps = casebook.steps_of(case, self.role, self.spec.get("part"))
            if self.open(-1, listening=self.role == "server"):
                for index, step in enumerate(steps):
                    op = casebook.op_of(step)
                    self.emit(step=index, op=op, **getattr(self, "_" + op)(step))
                if not self.closed:
                    self.emit(step=len(steps), op="close", implicit=True, **self._close({}))
        except Exception as exc:  # noqa: BLE001 - reported, the process serves other runs
            self.emit(event="error", detail="".join(traceback.format_exception(exc))[-2000:])
        finally:
            if self.comm is not None:
                self.release()
            self.emit(event="done")

    def release(self):
        """Lets the backend clean up after the communicator; what it found
        wrong meanwhile (see peers/python2/peer.py) is reported as an error."""
        for problem in self.backend.release(self.comm) or ():
            self.emit(event="error", detail=problem)

    def open(self, index, listening=False):
        spec = self.spec
        try:
            tls = {k: spec[k] for k in TLS_KEYS if spec.get(k)}
            self.comm, port = self.backend.open(
                self.role, self.protocol, spec.get("host") or "127.0.0.1", int(spec.get("port") or 0),
                self.id, tls, self.timeout)
        except Exception as exc:  # noqa: BLE001 - an observation
            self.comm = None
            self.emit(step=index, op="open", **self.failure(exc))
            return False
        self.closed = False
        self.emit(step=index, op="open", result="ok")
        if listening:
            self.emit(event="listening", port=port)
        return True

    def _targets(self, to):
        """(peers, receiver) pairs for a put's "to"."""
        if to == "each":
            return [((s,), s) for s in self.senders]
        if to == "senders":
            return [(tuple(self.senders), None)]
        if to == "unknown":
            return [((uuid.uuid4(),), None)]
        return [((), None)]

    def _put(self, step):
        targets = self._targets(step.get("to", "default"))
        # The payload, then those under "then", one after the other.
        payloads = [step["put"], *step.get("then", [])]
        rows = [[casebook.payload(p, self.id, receiver) for _, receiver in targets] for p in payloads]
        wait = step.get("wait", "each")
        repeat = step.get("repeat")
        outcome = {"result": "ok"}
        pending = []
        count = 0

        def note(exc):
            if outcome["result"] == "ok":
                outcome.update(self.failure(exc))

        for bases in rows:
            for k in range(1 if repeat is None else repeat):
                index = None if repeat is None else k
                for (peers, _), base in zip(targets, bases):
                    count += 1
                    try:
                        future = self.backend.put(self.comm, casebook.message(base, index), peers)
                    except Exception as exc:  # noqa: BLE001 - an observation
                        note(exc)
                        continue
                    if wait == "each":
                        try:
                            self.backend.wait(future, self.remaining())
                        except Exception as exc:  # noqa: BLE001
                            note(exc)
                    elif wait == "end":
                        pending.append(future)
        for future in pending:
            try:
                self.backend.wait(future, self.remaining())
            except Exception as exc:  # noqa: BLE001
                note(exc)
        outcome["count"] = count
        return outcome

    def _take(self, tally):
        """One get into tally; None when it worked, else the failure."""
        try:
            peer, data = self.backend.get(self.comm, self.remaining())
        except Exception as exc:  # noqa: BLE001 - an observation
            return self.failure(exc)
        tally.add(peer, data)
        self.last.append((peer, data))
        if peer not in self.senders:
            self.senders.append(peer)
        return None

    def _expect(self, step):
        wanted = casebook.expect_count(step, self.clients)
        tally = casebook.Tally()
        self.last = []
        outcome = {"result": "ok"}
        for _ in range(wanted):
            failed = self._take(tally)
            if failed:
                outcome = failed
                break
        return {**outcome, "count": len(self.last), "from": tally.summary()}

    def _echo(self, step):
        outcome = {"result": "ok"}
        for peer, data in list(self.last):
            try:
                self.backend.wait(self.backend.put(self.comm, data, (peer,)), self.remaining())
            except Exception as exc:  # noqa: BLE001 - an observation
                if outcome["result"] == "ok":
                    outcome = self.failure(exc)
        return {**outcome, "count": len(self.last)}

    def _close(self, step):
        start = time.monotonic()
        try:
            self.backend.close(self.comm)
            outcome = {"result": "ok"}
        except Exception as exc:  # noqa: BLE001 - an observation
            outcome = self.failure(exc)
        self.closed = True
        return {**outcome, "ms": round((time.monotonic() - start) * 1000)}

    def _drain(self, step):
        tally = casebook.Tally()
        self.last = []
        while True:
            failed = self._take(tally)
            if failed:
                return {"result": "ok", "end": failed["result"], "detail": failed["detail"],
                        "count": len(self.last), "from": tally.summary()}

    def _identity(self, step):
        outcome = {"result": "ok"}
        peers = []
        for peer in self.senders:
            try:
                identity = self.backend.identity(self.comm, peer)
            except Exception as exc:  # noqa: BLE001 - an observation
                identity = ""
                if outcome["result"] == "ok":
                    outcome = self.failure(exc)
            peers.append({"peer": str(peer), "identity": identity})
        return {**outcome, "peers": peers}

    def _sleep(self, step):
        time.sleep(step["sleep"] / 1000)
        return {"result": "ok"}

    def _reopen(self, step):
        closing = self._close(step) if not self.closed else None
        self.release()
        self.comm = None
        opened = self.open(None)
        outcome = {"result": "ok" if opened else "failed"}
        if closing is not None:
            outcome["close"] = closing["result"]
        return outcome


def parse_args(argv, impl=True):
    parser = argparse.ArgumentParser(description="The Python conformance peer.")
    parser.add_argument("--stdin", action="store_true", help="read runs as JSON lines from standard input")
    if impl:
        parser.add_argument("--impl", choices=("libnq", "netqueue"), default="libnq")
    parser.add_argument("--cases-file", default=str(casebook.DEFAULT_FILE))
    parser.add_argument("--role", choices=("server", "client"))
    parser.add_argument("--protocol", choices=PROTOCOLS, default="tcp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--case")
    parser.add_argument("--id")
    parser.add_argument("--key")
    parser.add_argument("--cert")
    parser.add_argument("--ca")
    parser.add_argument("--client-auth", choices=("optional", "required"))
    parser.add_argument("--token")
    parser.add_argument("--accept-token")
    parser.add_argument("--token-identity")
    parser.add_argument("--part")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--timeout", type=float)
    args = parser.parse_args(argv)
    if not args.stdin and (args.role is None or args.case is None):
        parser.error("--role and --case are required without --stdin")
    return args


def make_backend(impl):
    if impl == "netqueue":
        from netqueue_backend import NetQueueBackend

        return NetQueueBackend()
    return LibnqBackend()


def main(argv, backend=None):
    """Runs the peer on backend, or without one on the backend --impl names."""
    args = parse_args(argv, impl=backend is None)
    book = casebook.load(args.cases_file)
    if backend is None:
        backend = make_backend(args.impl)
    out = Output(sys.stdout)
    if not args.stdin:
        spec = {k: v for k, v in vars(args).items() if k not in ("stdin", "impl", "cases_file")}
        # A run that outlives its budget by far is stuck: end the process.
        watchdog = threading.Timer(float(args.timeout or book.get("timeout", 60)) + 30, os._exit, (124,))
        watchdog.daemon = True
        watchdog.start()
        Run(spec, backend, book, out).execute()
        return 0
    runs = []
    for line in sys.stdin:
        if not line.strip():
            continue
        run = Run(json.loads(line), backend, book, out)
        thread = threading.Thread(target=run.execute, name=f"run-{run.run_id}", daemon=True)
        thread.start()
        runs.append(thread)
        runs = [t for t in runs if t.is_alive()]
    for thread in runs:
        thread.join()
    # Threads a library left behind (net-queue's pools) must not hold the
    # exit up: every run has reported.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
