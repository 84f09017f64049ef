#!/usr/bin/python3
"""The conformance runner: drives the peers of every language through the
cases of cases.json and prints the matrix of results.

    conformance/runner.py [--build DIR] [--servers c,go,...] [--clients ...]
        [--transports tcp,tls,mqtt,grpc] [--cases a,b] [--lanes 2] [--doc FILE]

Every server language runs against every client language over every
transport, with net-queue in both roles; a last column, "mixed", runs the
broadcast case with one client in each language.  "python" is the Python
binding used as net-queue 1.1.1 code uses net-queue, "python2" the same
binding used as net-queue 2.x code does.  A lane is one case at a
time with its own peer processes (one per language, started once, many runs
each) and its own MQTT broker; lanes run side by side.  Exit status: 0 when
no cell failed (cases not applicable or failing for a peer outside this
project, as limitations.json explains, do not count), 1 when one did, 2 when
the run could not start.  Standard library only.
"""

import argparse
import itertools
import json
import os
import queue
import secrets
import shlex
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import casebook
import checks
import report
from processes import PeerProcess
from wire import Hostile, RecordingProxy

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent
LANGUAGES = ("c", "python", "python2", "go", "java", "netqueue")
TRANSPORTS = ("tcp", "tls", "mqtt", "grpc")
# Seconds a run may take beyond its case's timeout before its peers are
# declared stuck and killed.
SLACK = 10


@dataclass
class Result:
    case: str
    transport: str
    server: str
    client: str          # a language, or "mixed"
    status: str          # pass, fail, n/a, known
    reason: str = ""
    problems: list = field(default_factory=list)
    seconds: float = 0.0


class Certificates:
    """A self-signed certificate for 127.0.0.1 and localhost with its key,
    and another one for the same names that the server does not hold; for
    client certificates, an authority the server trusts with a client
    certificate it signed, and a client certificate another authority
    signed."""

    CLIENT_NAME = "nq-conformance-client"
    _NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")

    def __init__(self, directory):
        directory.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = directory / "key.pem", directory / "cert.pem"
        self.wrong_key, self.wrong = directory / "wrong-key.pem", directory / "wrong.pem"
        for key, cert in ((self.key, self.cert), (self.wrong_key, self.wrong)):
            self._openssl("req", "-x509", *self._NEW_KEY, "-keyout", key, "-out", cert, "-days", "2",
                          "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
        self.ca = directory / "ca.pem"
        self.client_key, self.client = directory / "client-key.pem", directory / "client.pem"
        self.untrusted_key, self.untrusted = directory / "untrusted-key.pem", directory / "untrusted.pem"
        other_ca = directory / "other-ca.pem"
        for authority in (self.ca, other_ca):
            self._openssl("req", "-x509", *self._NEW_KEY, "-keyout", authority.with_suffix(".key"),
                          "-out", authority, "-days", "2", "-subj", f"/CN={authority.stem}",
                          "-addext", "basicConstraints=critical,CA:TRUE",
                          "-addext", "keyUsage=critical,keyCertSign")
        for key, cert, authority in ((self.client_key, self.client, self.ca),
                                     (self.untrusted_key, self.untrusted, other_ca)):
            csr = cert.with_suffix(".csr")
            self._openssl("req", "-new", *self._NEW_KEY, "-keyout", key, "-out", csr,
                          "-subj", f"/CN={self.CLIENT_NAME}")
            self._openssl("x509", "-req", "-in", csr, "-CA", authority, "-CAkey", authority.with_suffix(".key"),
                          "-CAcreateserial", "-days", "2", "-out", cert)

    @staticmethod
    def _openssl(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)

    def client_identity(self, which):
        """The key and certificate a client group presents: "trusted" (the
        server's authority signed it), "untrusted" (another one did) or None
        (it presents none)."""
        if which is None:
            return None
        return {"trusted": (self.client_key, self.client),
                "untrusted": (self.untrusted_key, self.untrusted)}[which]


class Tokens:
    """The bearer token a server accepts, the name it gives the clients
    that send it, and another token it does not accept."""

    NAME = "nq-conformance-client"

    def __init__(self):
        self.accepted = secrets.token_hex(16)
        self.refused = secrets.token_hex(16)

    def of(self, which):
        """The token a client group sends: "accepted", "refused" or None
        (it sends none)."""
        return None if which is None else {"accepted": self.accepted, "refused": self.refused}[which]


class Limitations:
    """limitations.json: cases a peer outside this project cannot take
    ("run": false, reported n/a) or fails for a known reason of its own
    ("run": true, a failure is reported as known)."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.entries = json.load(f)["limitations"]

    def find(self, case, transport, server, client):
        for entry in self.entries:
            if all(value in entry.get(key, [value]) for key, value in
                   (("cases", case), ("transports", transport), ("servers", server), ("clients", client))):
                return entry
        return None


class Setup:
    """What every lane shares: paths, peer command lines, certificates."""

    def __init__(self, args):
        self.build = Path(args.build).resolve()
        self.work = Path(args.work).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.cases_file = Path(args.cases_file).resolve()
        self.book = casebook.load(self.cases_file)
        self.limitations = Limitations(HERE / "limitations.json")
        self.run_limited = args.run_limited
        self.certs = Certificates(self.work / "certs")
        self.tokens = Tokens()
        self.commands, self.missing = self._commands(args)
        self.version = self._version()

    def _commands(self, args):
        conf = self.build / "conformance"
        java = self.build / "bindings" / "java"
        tail = ["--stdin", "--cases-file", str(self.cases_file)]
        py_peer = str(HERE / "peers" / "python" / "peer.py")
        py_env = {"PYTHONPATH": str(self.build / "bindings" / "python"), "PYTHONDONTWRITEBYTECODE": "1"}
        commands = {
            "c": ([str(conf / "nq_conformance_peer")], {}),
            "python": ([args.python, py_peer], py_env),
            "python2": ([args.python, str(HERE / "peers" / "python2" / "peer.py")], py_env),
            "go": ([str(conf / "nq_conformance_peer_go")], {}),
            "java": ([args.java, "-XX:+UseSerialGC", f"-Djava.library.path={java}",
                      "-cp", f"{java / 'libnq.jar'}{os.pathsep}{conf / 'nq_conformance_peer.jar'}",
                      "org.libnq.conformance.Peer"], {}),
        }
        needs = {
            "c": [conf / "nq_conformance_peer"],
            "python": [self.build / "bindings" / "python" / "nq" / "nqraw.py"],
            "python2": [self.build / "bindings" / "python" / "nq" / "nqraw.py"],
            "go": [conf / "nq_conformance_peer_go"],
            "java": [java / "libnq.jar", java / "libnqjni.so", conf / "nq_conformance_peer.jar"],
        }
        missing = {}
        for language, files in needs.items():
            absent = [str(f) for f in files if not f.exists()]
            if absent:
                missing[language] = "not built: " + ", ".join(absent)
        if "netqueue" in args.servers + args.clients:
            env = subprocess.run([str(SOURCE / "tools" / "netqueue-env.sh")], capture_output=True, text=True)
            if env.returncode == 0 and env.stdout.strip():
                commands["netqueue"] = ([env.stdout.strip(), py_peer, "--impl", "netqueue"],
                                        {"PYTHONDONTWRITEBYTECODE": "1"})
            else:
                missing["netqueue"] = "tools/netqueue-env.sh failed: " + env.stderr.strip()[-300:]
        return {k: (argv + tail, env) for k, (argv, env) in commands.items()}, missing

    def _version(self):
        try:
            text = (SOURCE / "CMakeLists.txt").read_text()
            return text.split("project(libnq VERSION ", 1)[1].split()[0]
        except (OSError, IndexError):
            return "?"


class Broker:
    """A private mosquitto (tests/mqtt-broker.sh) that dies with the runner:
    a detached watcher stops it if the runner is killed without cleanup."""

    def __init__(self, directory):
        self.directory = directory
        script = SOURCE / "tests" / "mqtt-broker.sh"
        done = subprocess.run([str(script), "start", str(directory)], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"mosquitto did not start: {done.stderr.strip()}")
        self.port = int(done.stdout.strip())
        pid = (directory / "pid").read_text().strip()
        watch = (f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
                 f"if grep -qF {shlex.quote(str(directory))} /proc/{pid}/cmdline 2>/dev/null; "
                 f"then kill {pid}; fi")
        subprocess.Popen(["sh", "-c", watch], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        subprocess.run([str(SOURCE / "tests" / "mqtt-broker.sh"), "stop", str(self.directory)],
                       capture_output=True, timeout=60)


class Lane:
    """Runs cases one at a time with peer processes of its own."""

    def __init__(self, index, setup):
        self.index = index
        self.setup = setup
        self.processes = {}
        self.broker = None
        self._ids = itertools.count(1)

    def process(self, language, role):
        """The lane's peer process for language in role.  Servers and clients
        live in separate processes, so even a cell of one language crosses a
        process boundary (and paho.mqtt.c, which connects a process's second
        MQTT client only after a poll timeout of a second or two, does not
        slow every MQTT case down)."""
        key = (language, role)
        current = self.processes.get(key)
        if current is None or not current.alive():
            if current is not None:
                current.kill()
            argv, env = self.setup.commands[language]
            log = self.setup.work / f"lane{self.index}-{language}-{role}.log"
            self.processes[key] = PeerProcess(language, argv, env, log)
        return self.processes[key]

    def broker_port(self):
        if self.broker is None:
            self.broker = Broker(self.setup.work / f"broker{self.index}")
        return self.broker.port

    def close(self):
        for process in self.processes.values():
            process.stop()
        if self.broker is not None:
            self.broker.stop()

    def run_case(self, case, transport, server_lang, client_langs):
        """Runs case with a server in server_lang and one client per entry of
        client_langs (in the order of the case's client groups); returns the
        problems found (empty: pass)."""
        setup = self.setup
        timeout = case.get("timeout", setup.book.get("timeout", 60))
        tls = transport == "tls" or (transport == "grpc" and case.get("tls"))
        groups = casebook.client_groups(case)
        if case.get("mixed"):
            groups = [dict(groups[0], count=len(client_langs))]
        server = checks.Party(f"server ({server_lang})", "server", server_lang, uuid.uuid4())
        clients = []
        for group in groups:
            for _ in range(group["count"]):
                language = client_langs[len(clients)]
                name = f"client {len(clients) + 1} ({language})"
                if len(groups) > 1:
                    name = f"{group['label']} client ({language})"
                clients.append(checks.Party(name, "client", language, uuid.uuid4(), group))
        parties = [server] + clients

        base = {"protocol": transport, "host": "127.0.0.1", "case": case["name"],
                "timeout": timeout, "clients": len(clients)}
        port = self.broker_port() if transport == "mqtt" else 0
        spec = {**base, "run": f"{self.index}.{next(self._ids)}", "role": "server",
                "id": str(server.id), "port": port}
        client_auth = case.get("client_auth") if tls else None
        if tls:
            spec.update(key=str(setup.certs.key), cert=str(setup.certs.cert))
        if client_auth:
            spec.update(ca=str(setup.certs.ca), client_auth=client_auth)
        tokens = tls and case.get("tokens")
        if tokens:
            spec.update(accept_token=setup.tokens.accepted, token_identity=setup.tokens.NAME)
        started = time.monotonic()
        deadline = started + timeout + SLACK
        runs = {server.name: self.process(server_lang, "server").start(spec)}
        listening = runs[server.name].wait_for("listening", min(deadline, started + 30))
        proxy = hostile = None
        if listening is not None:
            port = listening["port"]
            if case.get("proxy"):
                proxy = RecordingProxy(port)
            if case.get("hostile"):
                hostile = Hostile(transport, port)
                hostile.start()
            for party in clients:
                spec = {**base, "run": f"{self.index}.{next(self._ids)}", "role": "client",
                        "part": party.group["label"], "id": str(party.id),
                        "port": proxy.port if proxy else port}
                trusted = setup.certs.wrong if party.group.get("trust") == "wrong" else setup.certs.cert
                if client_auth:
                    # The anchors go in "ca", so that "key" and "cert" are
                    # the client's own certificate.
                    spec["ca"] = str(trusted)
                    identity = setup.certs.client_identity(party.group.get("certificate"))
                    if identity is not None:
                        spec.update(key=str(identity[0]), cert=str(identity[1]))
                elif tls:
                    spec["cert"] = str(trusted)
                token = setup.tokens.of(party.group.get("token")) if tokens else None
                if token is not None:
                    spec["token"] = token
                runs[party.name] = self.process(party.language, "client").start(spec)
            for party in clients:
                runs[party.name].finish(deadline)
        if hostile is not None:
            hostile.stop()
        runs[server.name].finish(deadline)
        if proxy is not None:
            proxy.finish(grace=3)

        problems = []
        if listening is None:
            problems.append(f"{server.name}: never reported listening")
        for party in parties:
            if party.name not in runs:
                continue
            steps = casebook.steps_of(case, party.role, party.group.get("label"))
            for problem in checks.check_party(party, steps, runs[party.name].events, parties, len(clients)):
                problems.append(f"{party.name}: {problem}")
        if proxy is not None and len(clients) == 1:
            problems += [f"proxy: {p}" for p in proxy.check(
                clients[0].id, server.id,
                _put_payloads(case, "client", clients[0], server), _put_payloads(case, "server", server, clients[0]))]
        stuck = [r for r in runs.values() if not r.done or r.events[-1].get("event") == "exit"]
        for run in stuck:
            tail = run.process.stderr_tail(8)
            if tail:
                problems.append(f"the {run.process.language} peer's standard error ends with:\n{tail}")
        if problems:
            # What a failed run leaves behind (a communicator that never
            # closed, threads still polling a server that is gone) must not
            # leak into the next case: its peers start afresh on demand.
            for process in {id(r.process): r.process for r in runs.values()}.values():
                process.kill()
        return problems


def _put_payloads(case, role, sender, receiver):
    """The payloads of a role's single puts, in order (for the proxy)."""
    return [casebook.payload(payload, sender.id, receiver.id)
            for step in casebook.steps_of(case, role) if "put" in step and "repeat" not in step
            for payload in (step["put"], *step.get("then", []))]


class Matrix:
    """The jobs (one cell each: a transport, a server language and a client
    language or "mixed") and their results."""

    def __init__(self, setup, args):
        self.setup = setup
        self.args = args
        self.results = []
        self._lock = threading.Lock()
        self.jobs = queue.Queue()
        cells = []
        for transport in args.transports:
            for server in args.servers:
                for client in args.clients:
                    cells.append((transport, server, client))
                if args.mixed:
                    cells.append((transport, server, "mixed"))
        # The slow cells first, so that the lanes end together.
        cells.sort(key=lambda c: -(3 * ("netqueue" in c) + 2 * (c[0] == "grpc") + ("java" in c)))
        self.total = len(cells)
        for cell in cells:
            self.jobs.put(cell)
        self.finished = 0

    def cases_for(self, transport, client):
        wanted = set(self.args.cases) if self.args.cases else None
        for case in self.setup.book["cases"] * self.args.repeat:
            if wanted is not None and case["name"] not in wanted:
                continue
            if transport not in case.get("transports", TRANSPORTS):
                continue
            if bool(case.get("mixed")) != (client == "mixed"):
                continue
            yield case

    def run_cell(self, lane, transport, server, client):
        results = []
        setup = self.setup
        for case in self.cases_for(transport, client):
            started = time.monotonic()
            result = Result(case["name"], transport, server, client, "pass")
            if client == "mixed":
                langs = [c for c in self.args.clients if _skipped(setup, case, transport, server, c) is None]
            else:
                langs = [client] * sum(g["count"] for g in casebook.client_groups(case))
            limit = _skipped(setup, case, transport, server, client)
            unavailable = [lang for lang in set([server] + langs) if lang in setup.missing]
            if limit is not None:
                result.status, result.reason = "n/a", limit["reason"]
            elif unavailable:
                result.status = "fail"
                result.problems = [f"the {lang} peer is unavailable ({setup.missing[lang]})" for lang in unavailable]
            else:
                result.problems = lane.run_case(case, transport, server, langs)
                if result.problems:
                    known = setup.limitations.find(case["name"], transport, server, client)
                    if known is not None:
                        result.status, result.reason = "known", known["reason"]
                    else:
                        result.status = "fail"
            result.seconds = time.monotonic() - started
            results.append(result)
            if result.status == "fail" and self.args.verbose:
                print(f"  FAIL {case['name']} ({transport}, {server} server, {client} client):", flush=True)
                for problem in result.problems:
                    print("    " + problem.replace("\n", "\n    "), flush=True)
        return results

    def lane_loop(self, lane):
        try:
            while True:
                try:
                    transport, server, client = self.jobs.get_nowait()
                except queue.Empty:
                    return
                started = time.monotonic()
                results = self.run_cell(lane, transport, server, client)
                with self._lock:
                    self.results += results
                    self.finished += 1
                    print(f"[{self.finished}/{self.total}] {transport:4} {server:>8} server, {client:8} "
                          f"client: {report.cell_text(results)} ({time.monotonic() - started:.1f} s)", flush=True)
        finally:
            lane.close()


def _skipped(setup, case, transport, server, client):
    """The limitation that keeps case from running with this server and
    client (a language, or "mixed"), if any."""
    entry = setup.limitations.find(case["name"], transport, server, client)
    if entry is None or entry.get("run", True) or setup.run_limited:
        return None
    return entry


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default=str(SOURCE / "build"), help="the CMake build tree")
    parser.add_argument("--work", help="scratch directory (default BUILD/conformance/work)")
    parser.add_argument("--cases-file", default=str(casebook.DEFAULT_FILE))
    parser.add_argument("--servers", default=",".join(LANGUAGES))
    parser.add_argument("--clients", default=",".join(LANGUAGES))
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    parser.add_argument("--cases", default="", help="only these cases (comma-separated)")
    parser.add_argument("--no-mixed", dest="mixed", action="store_false", help="leave out the mixed column")
    parser.add_argument("--lanes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="run every case this many times (flaky cases)")
    parser.add_argument("--run-limited", action="store_true",
                        help="also run the cases limitations.json leaves out (to see that they still fail)")
    parser.add_argument("--doc", help="write the matrix as Markdown here (default docs/conformance.md "
                                      "for a full run, nothing for a partial one)")
    parser.add_argument("--json", help="write every result as JSON here")
    parser.add_argument("--python", default="/usr/bin/python3", help="the Python the nq binding was built for")
    parser.add_argument("--java", default="java")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each failure as it happens")
    args = parser.parse_args(argv)
    partial = any(getattr(args, k) != parser.get_default(k)
                  for k in ("servers", "clients", "transports", "cases", "repeat", "run_limited"))
    for name, allowed in (("servers", LANGUAGES), ("clients", LANGUAGES), ("transports", TRANSPORTS)):
        values = [v for v in getattr(args, name).split(",") if v]
        bad = [v for v in values if v not in allowed]
        if bad:
            parser.error(f"--{name}: unknown {', '.join(bad)} (known: {', '.join(allowed)})")
        setattr(args, name, values)
    args.cases = [c for c in args.cases.split(",") if c]
    args.mixed = args.mixed and len(args.clients) > 1
    if args.work is None:
        args.work = str(Path(args.build) / "conformance" / "work")
    if args.doc is None and not partial:
        args.doc = str(SOURCE / "docs" / "conformance.md")
    return args


def main(argv):
    args = parse_args(argv)
    try:
        setup = Setup(args)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        print(f"runner: cannot start: {exc}", file=sys.stderr)
        return 2
    known = {case["name"] for case in setup.book["cases"]}
    unknown = [c for c in args.cases if c not in known]
    if unknown:
        print(f"runner: unknown cases {', '.join(unknown)}", file=sys.stderr)
        return 2
    for language, why in sorted(setup.missing.items()):
        print(f"runner: the {language} peer is unavailable: {why}", file=sys.stderr)

    started = time.monotonic()
    matrix = Matrix(setup, args)
    lanes = [threading.Thread(target=matrix.lane_loop, args=(Lane(i, setup),), name=f"lane{i}")
             for i in range(max(1, args.lanes))]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    seconds = time.monotonic() - started

    results = matrix.results
    columns = args.clients
    print()
    print(report.text_matrix(results, args.transports, args.servers, columns))
    failed = [r for r in results if r.status == "fail"]
    for r in failed:
        print(f"FAIL {r.case} ({r.transport}, {r.server} server, {r.client} client):")
        for problem in r.problems:
            print("  " + problem.replace("\n", "\n  "))
    counts = report.cell_counts(results)
    print(f"\n{len(results)} case runs in {seconds:.0f} s: " +
          ", ".join(f"{counts[s]} {s}" for s in ("pass", "fail", "known", "n/a")))

    shown = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg.split("=")[0] in ("--doc", "--json", "--build", "--work", "--python", "--java"):
            skip = "=" not in arg
        else:
            shown.append(shlex.quote(arg))
    meta = {"command": " ".join(["conformance/runner.py"] + shown),
            "runs": len(results), "seconds": seconds, "lanes": len(lanes), "version": setup.version}
    if args.doc:
        Path(args.doc).write_text(report.markdown(results, setup.book, meta, args.transports, args.servers, columns))
        print(f"wrote {args.doc}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
