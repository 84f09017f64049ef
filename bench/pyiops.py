#!/usr/bin/python3
"""bench/pyiops.py: net-queue's own iops workload on the Python binding.

  bench/pyiops.py [--variant pickle|bytes]... [--mode sync|async]...
                  [--protocol tcp|mqtt] [--broker-port P] [--iops PATH]
                  [--timeout S] [IOPS.PY OPTIONS...]

net-queue 2.x ships its throughput test as net_queue/test/iops.py.  This
copies it at run time from an installed net-queue (nothing of net-queue's is
kept in this tree) and runs the copy on the binding, with only the import
changed (`net_queue` becomes `nq`), as a server and a client, two Python
processes, over 127.0.0.1 at a port nobody fixed.  The variants:

  pickle  iops.py as it is: the messages are numpy arrays, pickled
  bytes   the same with BufferSerializer (net_queue.utils.stream's, which
          the binding has as nq.utils.stream's) set in get_options, and the
          two barrier puts of None sending one byte instead: the numpy
          slices go as raw bytes

bench/compare applies the same edits without the import change to run
net-queue itself side by side (write_copies()).

Every copy runs under `bench/pyiops.py --run MODULE COPY ARGS...`, which
adds one line to iops.py's output:

  cpu: 0.912345 [s]

the user + system time of the whole process (every thread, getrusage) from
the call to MODULE.new (after start-up and after iops.py has generated its
messages) to the end of the script.  --run-tally also counts what goes
through the communicator, which iops.py itself never checks:

  tally: put 7 3073 got 7 3073      (messages and bytes)

As a command (the ctest smoke test) it runs each variant and mode once at
the size given (for example --max-size 10 --reps 2) and exits 1 unless every
pair finished in --timeout seconds with both sides printing iops.py's Time,
Transfer and Operations lines and the cpu line, and each side got every
message the other put, as many bytes in all.  Without --iops it takes
iops.py from net-queue 2.6.4 in tools/netqueue-env.sh's virtualenv (built
from PyPI on first use); when this Python has no numpy, iops.py's one
dependency, a virtualenv over it gets numpy from PyPI (NUMPY_VENV).
"""

import argparse
import fcntl
import importlib
import os
import re
import resource
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETQUEUE_VERSION = "2.6.4"
VARIANTS = ("pickle", "bytes")
MODES = ("sync", "async")
NUMPY_VENV = Path.home() / ".cache/libnq/pyiops-numpy-venv"
# The module each world's copy imports as nq.
MODULES = {"net-queue": "net_queue", "nq": "nq"}


# ---------------------------------------------------------------------------
# The copies

def replace_exactly(text, old, new, count=1):
    """text with old replaced by new, which must occur count times: a newer
    iops.py that no longer has it fails loudly instead of running unchanged."""
    if text.count(old) != count:
        raise ValueError(f"iops.py has {text.count(old)} times {old!r}, not {count}")
    return text.replace(old, new)


def copy_text(text, world, variant):
    """iops.py's source text for world (nq: the binding, or net-queue) and
    variant (pickle, bytes)."""
    if variant == "bytes":
        text = replace_exactly(text, "import net_queue as nq\n",
                               "import net_queue as nq\n"
                               "from net_queue.utils.stream import BufferSerializer\n")
        text = replace_exactly(text, "    return nq.CommunicatorOptions(\n",
                               "    return nq.CommunicatorOptions(\n"
                               "        serialization=nq.SerializationOptions(\n"
                               "            load=BufferSerializer().load,\n"
                               "            dump=BufferSerializer().dump),\n")
        # The barrier: None is no buffer.
        text = replace_exactly(text, ".put(None)", ".put(bytes(1))", count=2)
    elif variant != "pickle":
        raise ValueError(f"unknown variant {variant}")
    if world == "nq":
        text = text.replace("net_queue", "nq")
    return text


def write_copies(source, directory, worlds=("nq",), variants=VARIANTS):
    """Writes iops.py's copies into directory: {(world, variant): path}."""
    text = Path(source).read_text()
    out = {}
    for world in worlds:
        for variant in variants:
            path = Path(directory) / f"iops-{world}-{variant}.py"
            path.write_text(copy_text(text, world, variant))
            out[world, variant] = path
    return out


def run_argv(python, world, copy, tally=False):
    """The command line that runs a copy with its cpu line (and with tally,
    its tally line); iops.py's own arguments follow."""
    return [str(python), "-u", str(Path(__file__).resolve()),
            "--run-tally" if tally else "--run", MODULES[world], str(copy)]


# ---------------------------------------------------------------------------
# iops.py's output

SI = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21, "Y": 1e24}


def si_value(text):
    m = re.fullmatch(r"([0-9.]+)([KMGTPEZY]?)", text)
    return float(m.group(1)) * SI[m.group(2)] if m else None


def parse(text):
    """The figures of iops.py's closing lines in text: time_s, bytes, gbps,
    ops, iops, cpu_s when run through --run, and put_count, put_bytes,
    got_count, got_bytes through --run-tally.  Absent when not printed.
    ops is iops.py's Operations count, messages put plus messages got,
    which is the number of messages moved in both directions."""
    out = {}
    m = re.search(r"^Time:\s+([0-9.]+)s", text, re.M)
    if m:
        out["time_s"] = float(m.group(1))
    m = re.search(r"^Transfer:\s+(\S+)B @\s*(\S+)bps", text, re.M)
    if m:
        out["bytes"] = si_value(m.group(1))
        out["gbps"] = si_value(m.group(2)) / 1e9
    m = re.search(r"^Operations:\s+(\S+) @ (\S+)IOPS", text, re.M)
    if m:
        out["ops"] = si_value(m.group(1))
        out["iops"] = si_value(m.group(2))
    m = re.search(r"^cpu: ([0-9.]+) \[s\]$", text, re.M)
    if m:
        out["cpu_s"] = float(m.group(1))
    m = re.search(r"^tally: put (\d+) (\d+) got (\d+) (\d+)$", text, re.M)
    if m:
        out["put_count"], out["put_bytes"], out["got_count"], out["got_bytes"] = \
            map(int, m.groups())
    return {k: v for k, v in out.items() if v is not None}


def complete(figures):
    """Whether figures hold iops.py's statistics and the cpu line."""
    return all(k in figures for k in ("time_s", "bytes", "gbps", "ops", "iops", "cpu_s"))


# ---------------------------------------------------------------------------
# --run: one copy with its CPU time

def cpu_s():
    """User + system seconds of this process, every thread."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def nbytes(data):
    return 0 if data is None else memoryview(data).nbytes


class Tally:
    """A communicator that counts the messages and bytes put into it and
    got out of it (iops.py itself never looks at what it receives).  Each
    count is kept by one thread at a time: the main thread's barrier comes
    before iops.py starts its put and get threads."""

    def __init__(self, comm):
        self._comm = comm
        self.put_count = self.put_bytes = self.got_count = self.got_bytes = 0

    def __enter__(self):
        self._comm.__enter__()
        return self

    def __exit__(self, *exc):
        return self._comm.__exit__(*exc)

    def __str__(self):
        return str(self._comm)

    def __getattr__(self, name):
        return getattr(self._comm, name)

    def put(self, data, *peers):
        self.put_count += 1
        self.put_bytes += nbytes(data)
        return self._comm.put(data, *peers)

    def get(self, *args, **kwargs):
        message = self._comm.get(*args, **kwargs)
        self.got_count += 1
        self.got_bytes += nbytes(message.data)
        return message

    def line(self):
        return (f"tally: put {self.put_count} {self.put_bytes} got {self.got_count} "
                f"{self.got_bytes}")


def run_copy(module, script, argv, tally=False):
    """Runs script as __main__ with argv, then prints the CPU time since its
    call to module.new (and with tally, what went through the communicator).
    The script's own text is not touched: new is wrapped on the module
    object the script imports."""
    mod = importlib.import_module(module)
    new = mod.new
    start = []
    comms = []

    def timed_new(*args, **kwargs):
        start.append(cpu_s())
        comm = new(*args, **kwargs)
        if tally:
            comm = Tally(comm)
            comms.append(comm)
        return comm

    mod.new = timed_new
    sys.argv = [script] + argv
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code
    if code in (0, None) and start:
        print(f"cpu: {cpu_s() - start[0]:.6f} [s]", flush=True)
        for comm in comms:
            print(comm.line(), flush=True)
    return code


# ---------------------------------------------------------------------------
# What the runs need

def iops_origin(python):
    """The path of net_queue/test/iops.py in python's net-queue, or ''."""
    done = subprocess.run(
        [str(python), "-c", "import importlib.util as u; s = u.find_spec('net_queue.test.iops'); "
                            "print(s.origin if s else '')"],
        capture_output=True, text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else ""


def netqueue_iops(version=NETQUEUE_VERSION):
    """iops.py from net-queue version in tools/netqueue-env.sh's virtualenv."""
    done = subprocess.run(["bash", str(ROOT / "tools/netqueue-env.sh"), version],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                          timeout=3600)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"tools/netqueue-env.sh {version} found no net-queue")
    origin = iops_origin(done.stdout.strip())
    if not origin:
        raise RuntimeError(f"net-queue {version} has no net_queue/test/iops.py")
    return origin


def has_numpy(python):
    return subprocess.run([str(python), "-c", "import numpy"], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=120).returncode == 0


def python_with_numpy(python, log=print):
    """python when it imports numpy, else the Python of a virtualenv over
    it (which sees its packages, and PYTHONPATH) with numpy from PyPI."""
    if has_numpy(python):
        return str(python)
    py = NUMPY_VENV / "bin/python"
    stamp = NUMPY_VENV / ".libnq-ready"
    base = subprocess.run([str(python), "-c", "import sys; print(sys._base_executable)"],
                          capture_output=True, text=True, check=True).stdout.strip()
    NUMPY_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{NUMPY_VENV}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.exists() and stamp.read_text() == base and has_numpy(py)):
            log(f"pyiops: {python} has no numpy; building {NUMPY_VENV} with numpy from PyPI")
            subprocess.run(["rm", "-rf", str(NUMPY_VENV)], check=True)
            subprocess.run([base, "-m", "venv", "--system-site-packages", str(NUMPY_VENV)],
                           check=True, stdout=sys.stderr)
            subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check",
                            "--quiet", "numpy"], check=True, stdout=sys.stderr)
            stamp.write_text(base)
    return str(py)


# ---------------------------------------------------------------------------
# The smoke run: each variant and mode once

class Failed(Exception):
    pass


def free_port():
    # iops.py's server cannot report the port it got from port 0.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, log):
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def last_line(log):
    lines = [t.strip() for t in Path(log).read_text(errors="replace").replace("\r", "\n")
             .splitlines() if t.strip()]
    return lines[-1] if lines else "no output"


def run_pair(head, tail, work, tag, timeout, settle):
    """Server (head + server + tail), then client once the server printed
    its Communicator line and settle seconds passed; both bounded by
    timeout.  Returns (server figures, client figures)."""
    deadline = time.monotonic() + timeout
    logs = {role: work / f"{tag}.{role}.log" for role in ("server", "client")}
    procs = {}
    try:
        procs["server"] = start(head + ["server"] + tail, logs["server"])
        while "Communicator(" not in logs["server"].read_text(errors="replace"):
            if procs["server"].poll() is not None:
                raise Failed(f"the server exited with {procs['server'].returncode}: "
                             f"{last_line(logs['server'])}")
            if time.monotonic() > deadline:
                raise Failed("the server did not start in time")
            time.sleep(0.02)
        time.sleep(settle)
        procs["client"] = start(head + ["client"] + tail, logs["client"])
        figures = {}
        for role in ("client", "server"):
            try:
                code = procs[role].wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise Failed(f"the {role} did not finish in {timeout} s: "
                             f"{last_line(logs[role])}") from None
            figures[role] = parse(logs[role].read_text(errors="replace"))
            if code != 0 or not complete(figures[role]):
                raise Failed(f"the {role} exited with {code}, its statistics "
                             f"{'complete' if complete(figures[role]) else 'missing'}: "
                             f"{last_line(logs[role])}")
        return figures["server"], figures["client"]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def check_tallies(server, client):
    """Each side got every message the other put, byte for byte in total."""
    for a, b, way in ((client, server, "client to server"), (server, client, "server to client")):
        if "put_count" not in a or "got_count" not in b:
            raise Failed("no tally line")
        sent, got = (a["put_count"], a["put_bytes"]), (b["got_count"], b["got_bytes"])
        if sent != got or sent[1] == 0:
            raise Failed(f"{way}: put {sent[0]} messages of {sent[1]} B in all, "
                         f"got {got[0]} of {got[1]} B")


def smoke(args, iops_options):
    source = args.iops or netqueue_iops()
    python = python_with_numpy(sys.executable)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="nq-pyiops-") as tmp:
        work = Path(tmp)
        copies = write_copies(source, work, variants=args.variant)
        for variant in args.variant:
            for mode in args.mode:
                port = args.broker_port if args.protocol == "mqtt" else free_port()
                head = run_argv(python, "nq", copies["nq", variant], tally=True) + \
                    [args.protocol]
                tail = [mode] + iops_options + ["--port", str(port)]
                label = f"{args.protocol} {mode} {variant}"
                try:
                    # An MQTT server subscribes after its constructor returns;
                    # a client publishing before that is lost (QoS 0).
                    server, client = run_pair(head, tail, work, f"{mode}-{variant}",
                                              args.timeout,
                                              0.5 if args.protocol == "mqtt" else 0.0)
                    check_tallies(server, client)
                except (Failed, OSError) as e:
                    print(f"{label}: FAILED {e}", flush=True)
                    failed += 1
                    continue
                print(f"{label}: ok, {client['put_count'] + server['put_count']} messages, "
                      f"{client['put_bytes'] + server['put_bytes']} B, "
                      f"client {client['gbps']:.3f} Gbit/s, CPU {server['cpu_s']:.3f} + "
                      f"{client['cpu_s']:.3f} s", flush=True)
    print(f"{len(args.variant) * len(args.mode) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def main():
    if sys.argv[1:2] in (["--run"], ["--run-tally"]):
        if len(sys.argv) < 4:
            sys.exit("usage: pyiops.py --run|--run-tally MODULE COPY [IOPS.PY ARGS...]")
        return run_copy(sys.argv[2], sys.argv[3], sys.argv[4:], sys.argv[1] == "--run-tally")
    parser = argparse.ArgumentParser(
        prog="bench/pyiops.py", allow_abbrev=False,
        description="net-queue's own iops.py, copied from an installed net-queue, run on the "
                    "Python binding; options it does not know go to iops.py.")
    parser.add_argument("--variant", action="append", choices=VARIANTS,
                        help="pickle or bytes, repeatable (default: both)")
    parser.add_argument("--mode", action="append", choices=MODES,
                        help="iops.py's mode, repeatable (default: both)")
    parser.add_argument("--protocol", choices=("tcp", "mqtt"), default="tcp")
    parser.add_argument("--broker-port", type=int, help="the MQTT broker's port on 127.0.0.1")
    parser.add_argument("--iops", help="net-queue's iops.py (default: net-queue "
                                       f"{NETQUEUE_VERSION}'s, from tools/netqueue-env.sh)")
    parser.add_argument("--timeout", type=float, default=120,
                        help="seconds a server and client pair may take, start to end")
    args, iops_options = parser.parse_known_args()
    if args.protocol == "mqtt" and not args.broker_port:
        parser.error("--protocol mqtt needs --broker-port")
    if args.timeout <= 0:
        parser.error("--timeout must be above 0")
    args.variant = args.variant or list(VARIANTS)
    args.mode = args.mode or list(MODES)
    return smoke(args, iops_options)


if __name__ == "__main__":
    sys.exit(main())
