#!/usr/bin/env python3
"""The standing fault trials: a server in one network namespace, a client
in another, every packet between them through linkem (tests/faults), and
faults injected while messages flow: partitions, loss and reordering, a
killed or frozen peer.  Each trial measures what the promise of the header
says and checks it against its bound.

    trials.py run TRIAL TRANSPORT      one trial; exit status 0 when it holds
    trials.py report FILE              every trial on every transport; writes
                                       the table of docs/reliability.md
    trials.py list                     the trials and transports

Options: --peer PATH (trial_peer), --linkem PATH (nq_linkem), --long (more
messages and longer faults).  Needs root, mosquitto and openssl.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "faults"))
from netlab import Lab  # noqa: E402

TRANSPORTS = ("tcp", "tls", "mqtt", "grpc")
PORT = 7000
KEEPALIVE_MS = 2000
# Over MQTT keep-alive is at least 3000 ms (the header says why).
MQTT_KEEPALIVE_MIN_MS = 3000


def dead_bound(keepalive_ms):
    """What the header promises for a silent dead peer: about twice
    keep-alive."""
    return 2 * keepalive_ms + 2000
CLOSE_BOUND_MS = 3000


class Peer:
    """A trial_peer process; its report lines are collected as they come,
    each with the monotonic time it arrived."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.cv = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cv:
                self.lines.append((time.monotonic(), line.strip()))
                self.cv.notify_all()
        with self.cv:
            self.lines.append((time.monotonic(), "<eof>"))
            self.cv.notify_all()

    def wait_for(self, pattern, timeout, after=0.0):
        """The first line matching pattern that arrived after `after`:
        (time, match), or (None, None) on timeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cv:
            while True:
                for t, text in self.lines[seen:]:
                    m = rx.search(text)
                    if m and t >= after:
                        return t, m
                seen = len(self.lines)
                if self.lines and self.lines[-1][1] == "<eof>":
                    return None, None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, None
                self.cv.wait(left)

    def signal(self, sig):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def finish(self, timeout=20):
        """Asks the peer to stop (SIGTERM) and waits for its last lines."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait()
        self.reader.join(timeout=5)

    def summary(self):
        for _, text in reversed(self.lines):
            if " summary " in f" {text} ":
                return dict(re.findall(r"(\w+)=(-?\d+)", text))
        return None


class Rig:
    """A lab with a server in namespace a (and its broker, for MQTT) and the
    means to start clients in namespace b."""

    def __init__(self, args, transport, keepalive_ms=KEEPALIVE_MS, server_extra=()):
        self.args = args
        self.transport = transport
        self.keepalive = keepalive_ms
        # The promise counts the keep-alive in effect.
        self.dead_bound = dead_bound(max(keepalive_ms, MQTT_KEEPALIVE_MIN_MS)
                                     if transport == "mqtt" else keepalive_ms)
        self.server_extra = list(server_extra)
        self.lab = Lab(linkem=args.linkem)
        self.dir = tempfile.mkdtemp(prefix="nqtrial-")
        os.chmod(self.dir, 0o755)
        self.broker = None
        self.server = None

    def __enter__(self):
        self.lab.__enter__()
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        self.lab.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _start(self):
        if self.transport == "tls":
            key, cert = os.path.join(self.dir, "key.pem"), os.path.join(self.dir, "cert.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                            "2", "-subj", "/CN=trial", "-addext",
                            f"subjectAltName=IP:{self.lab.ip('a')}", "-keyout", key, "-out",
                            cert], check=True, capture_output=True)
            self.key, self.cert = key, cert
        if self.transport == "mqtt":
            conf = os.path.join(self.dir, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write(f"allow_anonymous true\nset_tcp_nodelay true\npersistence false\n"
                        f"log_dest stderr\nlistener {PORT} {self.lab.ip('a')}\n")
            os.chmod(conf, 0o644)
            mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            self.broker = self.lab.spawn("a", [mosquitto, "-c", conf],
                                         stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        self.server = self.start_peer("a", "serve", self.server_extra)
        t, _ = self.server.wait_for(r"listening", 10)
        if t is None:
            raise RuntimeError("the server did not start: %r" % self.server.lines)

    def peer_args(self, mode):
        proto = self.transport
        argv = [self.args.peer, mode, "--protocol", proto, "--host", self.lab.ip("a"),
                "--port", str(PORT), "--keepalive", str(self.keepalive),
                "--close-timeout", "5000"]
        if proto == "tls":
            argv += ["--cert", self.cert] + (["--key", self.key] if mode == "serve" else [])
        return argv

    def start_peer(self, side, mode, extra=()):
        return Peer(self.lab.spawn(side, self.peer_args(mode) + list(extra)))

    def client(self, count, interval_us=1000, size=64, duration_ms=120000, extra=()):
        c = self.start_peer("b", "send", ["--count", str(count), "--interval-us",
                                          str(interval_us), "--size", str(size),
                                          "--duration", str(duration_ms)] + list(extra))
        t, _ = c.wait_for(r"connected", 15)
        if t is None:
            raise RuntimeError("the client did not connect: %r" % c.lines)
        return c


class Result:
    def __init__(self, held, measured, bound, note=""):
        self.held, self.measured, self.bound, self.note = held, measured, bound, note


def ms(t0, t1):
    return None if t1 is None else int((t1 - t0) * 1000)


# ---- the trials ----------------------------------------------------------------

def trial_partition(args, transport):
    """Both sides learn of a partition within about twice keep-alive while
    messages flow, and the server's close then returns at once."""
    with Rig(args, transport) as rig:
        c = rig.client(count=10 ** 6, interval_us=2000)
        time.sleep(1.0)
        t0 = time.monotonic()
        rig.lab.fault("partition on")
        ts, _ = rig.server.wait_for(r"peers n=0", rig.dead_bound / 1000 + 10, after=t0)
        tc, _ = c.wait_for(r"error where=(get|future)", rig.dead_bound / 1000 + 10, after=t0)
        c.finish()
        rig.server.finish()
        _, m = rig.server.wait_for(r"closed rc=-?\d+ ms=(\d+)", 1)
        close_ms = int(m.group(1)) if m else None
        server_ms, client_ms = ms(t0, ts), ms(t0, tc)
        held = (server_ms is not None and server_ms <= rig.dead_bound and client_ms is not None
                and client_ms <= rig.dead_bound and close_ms is not None
                and close_ms <= CLOSE_BOUND_MS)
        return Result(held, f"server {fmt(server_ms)}, client {fmt(client_ms)}, close "
                      f"{fmt(close_ms)}", f"{rig.dead_bound} ms; close {CLOSE_BOUND_MS} ms")


def trial_kill_client(args, transport):
    """A client killed with SIGKILL leaves the server's peer list within about
    twice keep-alive, and the server's close returns at once."""
    with Rig(args, transport) as rig:
        c = rig.client(count=10 ** 6, interval_us=2000)
        time.sleep(1.0)
        t0 = time.monotonic()
        c.signal(signal.SIGKILL)
        ts, _ = rig.server.wait_for(r"peers n=0", rig.dead_bound / 1000 + 10, after=t0)
        rig.server.finish()
        _, m = rig.server.wait_for(r"closed rc=-?\d+ ms=(\d+)", 1)
        close_ms = int(m.group(1)) if m else None
        server_ms = ms(t0, ts)
        held = (server_ms is not None and server_ms <= rig.dead_bound and close_ms is not None
                and close_ms <= CLOSE_BOUND_MS)
        return Result(held, f"server {fmt(server_ms)}, close {fmt(close_ms)}",
                      f"{rig.dead_bound} ms; close {CLOSE_BOUND_MS} ms")


def trial_idle_partition(args, transport):
    """An idle client learns of a partition within about twice keep-alive,
    however long it has been idle."""
    with Rig(args, transport) as rig:
        c = rig.start_peer("b", "send", ["--count", "1", "--hold", "1", "--duration", "120000"])
        t, _ = c.wait_for(r"connected", 15)
        if t is None:
            raise RuntimeError("the client did not connect: %r" % c.lines)
        time.sleep(3 * rig.keepalive / 1000)
        t0 = time.monotonic()
        rig.lab.fault("partition on")
        tc, _ = c.wait_for(r"error where=(get|future)", rig.dead_bound / 1000 + 10, after=t0)
        ts, _ = rig.server.wait_for(r"peers n=0", rig.dead_bound / 1000 + 10, after=t0)
        c.finish()
        rig.server.finish()
        client_ms, server_ms = ms(t0, tc), ms(t0, ts)
        held = (client_ms is not None and client_ms <= rig.dead_bound and server_ms is not None
                and server_ms <= rig.dead_bound)
        return Result(held, f"server {fmt(server_ms)}, client {fmt(client_ms)}",
                      f"{rig.dead_bound} ms")


def trial_frozen_server(args, transport):
    """A client notices a server frozen by SIGSTOP (its kernel still answers
    TCP) within about twice keep-alive: between libnq peers the heartbeat
    tells (over MQTT, the broker)."""
    with Rig(args, transport) as rig:
        c = rig.client(count=10 ** 6, interval_us=2000)
        time.sleep(1.0)
        t0 = time.monotonic()
        rig.server.signal(signal.SIGSTOP)
        tc, _ = c.wait_for(r"error where=(get|future)", rig.dead_bound / 1000 + 10, after=t0)
        c.finish()
        rig.server.finish()
        client_ms = ms(t0, tc)
        held = client_ms is not None and client_ms <= rig.dead_bound
        return Result(held, f"client {fmt(client_ms)}", f"{rig.dead_bound} ms")


def trial_blip(args, transport):
    """A 3 s partition, shorter than keep-alive's schedule, is survived:
    every message arrives once, in order, and no future fails."""
    blip = 3.0 if not args.long else 6.0
    with Rig(args, transport, keepalive_ms=15000) as rig:
        count = 3000 if not args.long else 20000
        c = rig.client(count=count, interval_us=2000)
        time.sleep(1.0)
        rig.lab.fault("partition on")
        time.sleep(blip)
        rig.lab.fault("partition off")
        t, _ = c.wait_for(r"summary", 60)
        if t is None:
            c.finish()
        rig.server.finish()
        s = c.summary() or {}
        held = (s.get("sent") == str(count) and s.get("echoed") == str(count)
                and s.get("failed") == "0" and s.get("duplicates") == "0"
                and s.get("out_of_order") == "0")
        return Result(held, summary_text(s), f"{count} of {count}, none failed")


def trial_lossy(args, transport):
    """Over a link that loses 5 % of packets, delays them 10 to 30 ms and
    reorders some, every message arrives once, in order."""
    with Rig(args, transport) as rig:
        rig.lab.fault("loss 0.05")
        rig.lab.fault("delay 10")
        rig.lab.fault("jitter 20")
        rig.lab.fault("reorder 0.02")
        count = 2000 if not args.long else 20000
        c = rig.client(count=count, interval_us=1000, size=512)
        t, _ = c.wait_for(r"summary", 120)
        if t is None:
            c.finish()
        rig.server.finish()
        s = c.summary() or {}
        held = (s.get("echoed") == str(count) and s.get("failed") == "0"
                and s.get("duplicates") == "0" and s.get("out_of_order") == "0")
        return Result(held, summary_text(s), f"{count} of {count}, once, in order")


ACKED = ["--acked", "1"]
# The client's events across reconnections: CONNECTED, then for each lost
# connection DISCONNECTED, RECONNECTING (one per attempt) and CONNECTED, and
# a last DISCONNECTED at its close.
EVENTS_IN_ORDER = re.compile(r"^1(23+1)*2?$")


def events_of(peer):
    return "".join(m.group(1) for _, text in peer.lines
                   for m in [re.search(r"event type=(\d+)", text)] if m)


def trial_frozen_server_acked(args, transport):
    """With acknowledged delivery, a client notices a server frozen by
    SIGSTOP within 1.5 to 2 x keep-alive, through the heartbeat (over MQTT,
    or through the broker's word that the server is lost, if that comes
    first)."""
    # The heartbeat ends the session with NQ_ETIMEDOUT (-3).  Over MQTT the
    # broker, which stops hearing the frozen server too, may publish its
    # will first: the session then ends as lost (NQ_ECONNRESET, -5), as
    # promptly; either notice counts, and the table says which came.
    ends = {"-3": "heartbeat", "-5": "the server's will"}
    reasons = "-3" if transport != "mqtt" else "-3|-5"
    with Rig(args, transport, server_extra=ACKED) as rig:
        bound = 2 * rig.keepalive + 1000
        c = rig.client(count=10 ** 6, interval_us=2000, extra=ACKED)
        time.sleep(1.0)
        t0 = time.monotonic()
        rig.server.signal(signal.SIGSTOP)
        tc, m = c.wait_for(rf"event type=2 reason=({reasons})\b", bound / 1000 + 10, after=t0)
        c.finish()
        rig.server.signal(signal.SIGCONT)
        rig.server.finish()
        client_ms = ms(t0, tc)
        held = client_ms is not None and client_ms <= bound
        how = f" ({ends[m.group(1)]})" if m else ""
        return Result(held, f"client {fmt(client_ms)}{how}", f"{bound} ms")


def trial_acked_disconnects(args, transport):
    """With acknowledged delivery and reconnection, messages cross resets
    and partitions long enough to end the connection: every one arrives
    once, in order, no future fails, and the client's events keep their
    order while the server's peer never leaves."""
    count = 20000 if not args.long else 100000
    cuts, partitions = (8, 2) if not args.long else (15, 5)
    with Rig(args, transport, server_extra=ACKED) as rig:
        c = rig.client(count=count, interval_us=500 if not args.long else 300,
                       duration_ms=600000, extra=ACKED + ["--reconnect", "50"])
        faults = ["partition" if i % ((cuts + partitions) // partitions) == 1 else "cut"
                  for i in range(cuts + partitions)]
        last = 0.0
        for fault in faults:
            # Each fault meets a connection: the client is back since the last.
            c.wait_for(r"event type=1\b", 30, after=last)
            time.sleep(0.4)
            last = time.monotonic()
            if fault == "cut":
                rig.lab.fault("cut")
            else:
                rig.lab.fault("partition on")
                time.sleep(3 * rig.keepalive / 1000)  # the heartbeat ends the connection
                rig.lab.fault("partition off")
        t, _ = c.wait_for(r"summary", 60 if not args.long else 600)
        if t is None:
            c.finish()
        rig.server.finish()
        s = c.summary() or {}
        srv = rig.server.summary() or {}
        client_events, server_events = events_of(c), events_of(rig.server)
        held = (s.get("sent") == str(count) and s.get("echoed") == str(count)
                and s.get("ok") == str(count) and s.get("failed") == "0"
                and s.get("duplicates") == "0" and s.get("out_of_order") == "0"
                and srv.get("received") == str(count) and srv.get("duplicates") == "0"
                and srv.get("out_of_order") == "0"
                and int(s.get("reconnects", "0")) >= len(faults)
                and EVENTS_IN_ORDER.match(client_events) is not None
                and server_events.startswith("1") and "2" not in server_events[:-1])
        return Result(held, summary_text(s) + f", {s.get('reconnects')} reconnections after "
                      f"{cuts} resets and {partitions} partitions, server resumed "
                      f"{srv.get('resumed')}, client events {len(client_events)} in order: "
                      f"{EVENTS_IN_ORDER.match(client_events) is not None}",
                      f"{count} of {count}, once, in order")


TRIALS = {
    "partition": trial_partition,
    "idle_partition": trial_idle_partition,
    "kill_client": trial_kill_client,
    "frozen_server": trial_frozen_server,
    "blip": trial_blip,
    "lossy": trial_lossy,
    "frozen_server_acked": trial_frozen_server_acked,
    "acked_disconnects": trial_acked_disconnects,
}

# Trials that only some transports can run (acknowledged delivery: TCP, TLS,
# MQTT, gRPC).
ONLY = {
    "frozen_server_acked": ("tcp", "tls", "mqtt", "grpc"),
    "acked_disconnects": ("tcp", "tls", "mqtt", "grpc"),
}


def fmt(value):
    return "never" if value is None else f"{value} ms"


def summary_text(s):
    if not s:
        return "no summary"
    return (f"sent {s.get('sent')}, echoed {s.get('echoed')}, futures failed "
            f"{s.get('failed')}, duplicates {s.get('duplicates')}, out of order "
            f"{s.get('out_of_order')}")


# ---- the command line -------------------------------------------------------------

# A short trial's whole budget, under CTest's 180 s: when it runs out the
# trial fails, and its namespaces, link emulator and peers are still taken
# down (CTest's own timeout would kill this process before it could).
SHORT_BUDGET_S = 150


def _out_of_time(signum, frame):
    raise TimeoutError(f"the trial ran out of its {SHORT_BUDGET_S} s")


def run_one(args, name, transport):
    started = time.monotonic()
    if not args.long:
        signal.signal(signal.SIGALRM, _out_of_time)
        signal.alarm(SHORT_BUDGET_S)
    try:
        r = TRIALS[name](args, transport)
    except Exception as e:  # a trial that cannot run has not held
        r = Result(False, f"could not run: {e}", "")
    finally:
        signal.alarm(0)
    r.seconds = time.monotonic() - started
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["run", "report", "list"])
    p.add_argument("rest", nargs="*")
    p.add_argument("--peer", default=os.environ.get("NQ_TRIAL_PEER", "trial_peer"))
    p.add_argument("--linkem", default=os.environ.get("NQ_LINKEM", "nq_linkem"))
    p.add_argument("--long", action="store_true")
    args = p.parse_args()
    if args.command == "list":
        for name, fn in TRIALS.items():
            print(f"{name}: {promise_of(fn)}")
        print("transports:", " ".join(TRANSPORTS))
        return 0
    if os.geteuid() != 0:
        print("trials.py: FAIL: the trials need root (network namespaces, TUN devices)",
              file=sys.stderr)
        return 1
    if args.command == "run":
        name, transport = args.rest
        r = run_one(args, name, transport)
        print(f"{name} over {transport}: {'held' if r.held else 'FAILED'}: {r.measured} "
              f"(bound {r.bound}, {r.seconds:.0f} s)")
        return 0 if r.held else 1
    out = args.rest[0]
    rows = []
    for name, fn in TRIALS.items():
        for transport in ONLY.get(name, TRANSPORTS):
            r = run_one(args, name, transport)
            print(f"{name} {transport}: {'held' if r.held else 'FAILED'}: {r.measured}",
                  flush=True)
            rows.append((name, promise_of(fn), transport, r))
    write_report(out, rows, args.long)
    return 0


def promise_of(fn):
    """A trial's promise: the first sentence of its docstring."""
    text = " ".join(fn.__doc__.split())
    return text.split(". ")[0].rstrip(".") + "."


# The load tables (load.py report) and the hostile-peer table (hostile.py
# report) live in the same file between these lines; a report of the fault
# trials keeps them, in that order, after its table.
LOAD_BEGIN, LOAD_END = "<!-- load tables -->", "<!-- end load tables -->"
HOSTILE_BEGIN, HOSTILE_END = "<!-- hostile tables -->", "<!-- end hostile tables -->"


def kept_blocks_of(path):
    """The load and hostile-peer blocks of path, markers included, each
    after a blank line; nothing for a block the file lacks."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return ""
    kept = ""
    for begin, end in ((LOAD_BEGIN, LOAD_END), (HOSTILE_BEGIN, HOSTILE_END)):
        if begin in text and end in text:
            kept += "\n" + begin + text.split(begin, 1)[1].split(end, 1)[0] + end + "\n"
    return kept


def write_report(path, rows, long_run):
    kept = kept_blocks_of(path)
    with open(path, "w") as f:
        f.write("# Fault trials\n\n")
        f.write("Written by `tests/trials/trials.py report` (%s run). Each trial runs a server in\n"
                "one network namespace and a client in another, every packet through the\n"
                "project's link emulator (`tests/faults/linkem.c`), with keep-alive at %d ms\n"
                "unless the trial says otherwise (over MQTT %d ms in effect: the header says\n"
                "why).\n\n"
                % ("long" if long_run else "short", KEEPALIVE_MS, MQTT_KEEPALIVE_MIN_MS))
        f.write("| trial | transport | promise | held | measured | bound |\n")
        f.write("|---|---|---|---|---|---|\n")
        for name, promise, transport, r in rows:
            f.write(f"| {name} | {transport} | {promise} | {'yes' if r.held else '**no**'} | "
                    f"{r.measured} | {r.bound} |\n")
        f.write(kept)


if __name__ == "__main__":
    sys.exit(main())
