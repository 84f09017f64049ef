#!/usr/bin/env python3
"""The load scenarios: many clients on one server, a slow consumer flooded
by one client, and a soak in which clients echo without pause while their
processes are killed and started again.  Every peer is a load_peer process
of its own on 127.0.0.1 (free ports only); for MQTT the script starts its
own mosquitto.  Each scenario checks its promise and measures what
docs/reliability.md's load tables show.

    load.py run SCENARIO TRANSPORT [--long]   one scenario; exit status 0
                                              when its promise holds
    load.py report FILE                       every scenario on every
                                              transport, long; writes the
                                              load tables into FILE
    load.py list                              the scenarios and transports

Options: --peer PATH (load_peer).  Needs mosquitto and openssl.  Every
process the script starts is stopped when the scenario ends, however it
ends, and dies with the script (PR_SET_PDEATHSIG) should the script be
killed.
"""

import argparse
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# One line reader and one pair of markers for both scripts.
from trials import LOAD_BEGIN, LOAD_END, TRANSPORTS, Peer  # noqa: E402

MIB = 1 << 20
TICKS = os.sysconf("SC_CLK_TCK")


# ---- what /proc tells about a process ----------------------------------------------

def status_kib(pid, field):
    """A field of /proc/PID/status in KiB (VmHWM, VmRSS), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_files_hard_limit():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


# ---- the stage: peers, a broker, certificates ------------------------------------------

class Stage:
    """A temporary directory, a broker for MQTT, a certificate for TLS, and
    every process started for one scenario, all of them stopped at its
    end."""

    def __init__(self, args, transport):
        self.args = args
        self.transport = transport
        self.dir = tempfile.mkdtemp(prefix="nqload-")
        os.chmod(self.dir, 0o755)
        self.peers = []
        self.broker = None
        self.broker_port = None

    def __enter__(self):
        try:
            if self.transport == "tls":
                self._make_cert()
            if self.transport == "mqtt":
                self._start_broker()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        # What is still running is no longer needed: killed, and waited for.
        for p in self.peers:
            p.signal(signal.SIGKILL)
            p.proc.wait()
            p.reader.join(timeout=5)
        if self.broker is not None:
            self.broker.signal(signal.SIGKILL)
            self.broker.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _make_cert(self):
        self.key = os.path.join(self.dir, "key.pem")
        self.cert = os.path.join(self.dir, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                        "/CN=load", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                        self.key, "-out", self.cert], check=True, capture_output=True)

    def _start_broker(self):
        """A mosquitto for thousands of clients: no limit on connections or
        queued messages, its open-files limit raised by load_peer exec."""
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = os.path.join(self.dir, "mosquitto.conf")
        for _ in range(5):
            port = free_port()
            with open(conf, "w") as f:
                f.write("allow_anonymous true\nset_tcp_nodelay true\npersistence false\n"
                        "log_dest none\nmax_connections -1\nmax_queued_messages 0\n"
                        "max_queued_bytes 0\nmemory_limit 0\nmessage_size_limit 0\n"
                        f"listener {port} 127.0.0.1\n")
                # As root mosquitto would change to its own user, and lose the
                # parent-death signal with it.
                if os.geteuid() == 0:
                    f.write("user root\n")
            os.chmod(conf, 0o644)
            proc = subprocess.Popen([self.args.peer, "exec", mosquitto, "-c", conf],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                    start_new_session=True)
            self.broker = Peer(proc)
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    self.broker_port = port
                    return
                except OSError:
                    if proc.poll() is not None:
                        break
                    time.sleep(0.05)
            self.broker.signal(signal.SIGKILL)
            proc.wait()
            self.broker = None
        raise RuntimeError("mosquitto did not start")

    def start(self, mode, port, extra=()):
        """A load_peer process in its own process group."""
        argv = [self.args.peer, mode, "--protocol", self.transport, "--port", str(port)]
        if self.transport == "tls":
            argv += ["--cert", self.cert] + (["--key", self.key] if mode == "serve" else [])
        proc = subprocess.Popen(argv + [str(x) for x in extra], stdout=subprocess.PIPE,
                                text=True, start_new_session=True)
        peer = Peer(proc)
        self.peers.append(peer)
        return peer

    def serve(self, extra=()):
        """A server, once it listens: (peer, the port clients use)."""
        server = self.start("serve", self.broker_port or 0, extra)
        t, m = server.wait_for(r"listening port=(\d+)", 15)
        if t is None:
            raise RuntimeError("the server did not start: %r" % server.lines)
        return server, self.broker_port or int(m.group(1))


def last_counts(peer, kinds=("progress", "summary")):
    """The counters of a peer's last progress or summary line."""
    for _, text in reversed(peer.lines):
        words = text.split()
        if len(words) > 1 and words[1] in kinds:
            return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", text)}
    return {}


def wait_peers(server, n, timeout):
    """Waits until the server's latest count of peers is n; True if so."""
    deadline = time.monotonic() + timeout
    while True:
        counts = [m.group(1) for _, text in server.lines
                  for m in [re.search(r" peers n=(\d+)", text)] if m]
        if counts and int(counts[-1]) == n:
            return True
        if time.monotonic() >= deadline or server.proc.poll() is not None:
            return False
        time.sleep(0.05)


def errors_of(peer, limit=2):
    return [text.split(" ", 1)[1] for _, text in peer.lines if " error " in f" {text} "][:limit]


class Result:
    def __init__(self, held, cells, note=""):
        self.held, self.cells, self.note = held, cells, note


def mib(kib):
    return "?" if kib is None else f"{kib / 1024:.1f} MiB"


def thousands(n):
    return f"{n:,}"


# ---- many clients -----------------------------------------------------------------------

MANY_GOALS = {"tcp": 10000, "tls": 5000, "mqtt": 5000, "grpc": 5000}
MANY_SHORT = {"tcp": 1000, "tls": 200, "mqtt": 300, "grpc": 300}
# A client holds three descriptors (its socket, its loop's epoll and
# eventfd); gRPC clients also two threads.  Clients are split over processes
# of at most this many.
CLIENTS_PER_PROCESS = 2000
FDS_PER_CLIENT = 3


def scenario_many(args, transport):
    """Every one of N clients, in processes apart from the server's,
    connects and gets its echo."""
    goal = (MANY_GOALS if args.long else MANY_SHORT)[transport]
    hard = open_files_hard_limit()
    count, why = goal, ""
    # The server (or, over MQTT, the broker) holds one descriptor per client.
    if count + 64 > hard:
        count = hard - 64
        why = f"the hard limit of open files is {hard}"
    per_process = min(CLIENTS_PER_PROCESS, (hard - 64) // FDS_PER_CLIENT)
    processes = math.ceil(count / per_process)
    threads = 8 if transport == "mqtt" else 4
    wait_s = 240 if args.long else 30  # for the echoes, from the start
    with Stage(args, transport) as stage:
        server, port = stage.serve()
        time.sleep(0.5)
        hwm0, cpu0 = status_kib(server.proc.pid, "VmHWM"), cpu_seconds(server.proc.pid)
        broker0 = status_kib(stage.broker.proc.pid, "VmHWM") if stage.broker else None
        t0 = time.monotonic()
        clients = []
        for i in range(processes):
            share = count * (i + 1) // processes - count * i // processes
            clients.append(stage.start("clients", port, ["--count", share, "--threads", threads,
                                                         "--timeout-ms", wait_s * 1000]))
        echoed, last = 0, t0
        for c in clients:
            t, m = c.wait_for(r"echoed n=(\d+) of=(\d+)", wait_s + 30)
            if t is not None:
                echoed += int(m.group(1))
                last = max(last, t)
        took = last - t0
        listed = wait_peers(server, count, 10)
        hwm1, cpu1 = status_kib(server.proc.pid, "VmHWM"), cpu_seconds(server.proc.pid)
        broker1 = status_kib(stage.broker.proc.pid, "VmHWM") if stage.broker else None
        errors = [e for c in clients for e in errors_of(c, 1)][:2]
        # The clients go first, so that the server's close waits for none.
        for c in clients:
            c.signal(signal.SIGTERM)
        for c in clients:
            c.proc.wait()
        server.finish()
        s = last_counts(server, ("summary",))
    held = (echoed == count and listed and s.get("received") == count
            and s.get("corrupt") == 0)
    note = []
    if count < goal:
        note.append(f"goal {thousands(goal)} not tried: {why}")
    if not held:
        note.append(f"{thousands(echoed)} of {thousands(count)} echoed"
                    + (f" ({'; '.join(errors)})" if errors else "")
                    + ("" if listed else ", the server never listed them all"))
    if broker0 is not None:
        note.append(f"mosquitto {mib(broker0)} → {mib(broker1)}")
    per_client_kib = (hwm1 - hwm0) / count if hwm0 and hwm1 else 0
    cells = [transport, thousands(goal), thousands(count), processes, f"{took:.1f} s",
             f"{mib(hwm0)} → {mib(hwm1)}", f"{per_client_kib:.1f} KiB",
             f"{(cpu1 - cpu0) * 1000 / count:.2f} ms", "yes" if held else "**no**",
             "; ".join(note)]
    return Result(held, cells, f"{echoed} of {count} echoed in {took:.1f} s")


# ---- a slow consumer ----------------------------------------------------------------------

QUEUE_SIZE = 16
MESSAGE_SIZE = 64 * 1024
SEND_LIMIT = 32 * MIB
# What a server that stops reading may hold on top of its start, where the
# transport promises to hold the sender back: its queue (16 messages of
# 64 KiB), what the transport buffers (gRPC's flow-control windows; with
# acknowledged delivery over MQTT, the 16 MiB a sender lets wait for ACKs)
# and the allocator's slack.
SLOW_BOUND_MIB = 48


def slow_consumer_once(args, transport, acked):
    """One run: the server stops reading for a while as one client floods
    it; every message must arrive once, in order, intact."""
    count = 4096 if args.long else 512
    pause_ms = 5000 if args.long else 1000
    ack = ["--acked", 1] if acked else []
    with Stage(args, transport) as stage:
        server, port = stage.serve(["--queue", QUEUE_SIZE, "--pause-ms", pause_ms, "--echo", 0,
                                    "--expect", count] + ack)
        time.sleep(0.3)
        hwm0 = status_kib(server.proc.pid, "VmHWM")
        sender = stage.start("flood", port, ["--count", count, "--size", MESSAGE_SIZE,
                                             "--send-limit", SEND_LIMIT,
                                             "--timeout-ms", 120000] + ack)
        _, resumed = server.wait_for(r"resumed taken=(\d+) bytes=(\d+)", pause_ms / 1000 + 30)
        tc, _ = server.wait_for(r"complete received=", 150)
        _, sent = sender.wait_for(r"sent n=(\d+) efull=(\d+) first_efull_ms=(-?\d+) ms=(\d+) "
                                  r"hwm_kib=(-?\d+)", 30 if tc else 1)
        _, first = sender.wait_for(r"efull first sent=(\d+)", 0)
        sender.wait_for(r"closed rc=", 30 if tc else 1)
        hwm1 = status_kib(server.proc.pid, "VmHWM")
        broker = status_kib(stage.broker.proc.pid, "VmHWM") if stage.broker else None
        server.finish()
        s = last_counts(server, ("summary",))
    promises_bound = transport != "mqtt" or acked
    grew = (hwm1 - hwm0) / 1024 if hwm0 and hwm1 else None
    arrived = (tc is not None and s.get("received") == count and s.get("corrupt") == 0
               and s.get("duplicates") == 0 and s.get("out_of_order") == 0)
    bounded = grew is not None and grew <= SLOW_BOUND_MIB
    held = arrived and sent is not None and int(sent.group(1)) == count and (
        bounded or not promises_bound)
    taken = (f"{int(resumed.group(1)):,} ({int(resumed.group(2)) / MIB:.1f} MiB)"
             if resumed else "?")
    if sent:
        n, efull, _, put_ms, sender_hwm = (int(x) for x in sent.groups())
        refused = (f"{efull:,} puts refused (NQ_EFULL), the first after {int(first.group(1)):,}"
                   if first else "never refused")
        saw = (f"{refused}; all {n:,} put in {put_ms / 1000:.1f} s; peak RSS {mib(sender_hwm)}")
    else:
        saw = "; ".join(["did not finish"] + errors_of(sender))
    cells = [transport, "acked" if acked else "written",
             f"{count * MESSAGE_SIZE // MIB} MiB", f"{mib(hwm1)} (+{grew or 0:.1f} MiB)"
             + (f"; mosquitto {mib(broker)}" if broker else ""),
             f"≤ {SLOW_BOUND_MIB} MiB" if promises_bound else "none (a broker cannot hold a "
             "publisher back)", taken, saw,
             (f"{s.get('received', 0):,} of {count:,}, duplicates {s.get('duplicates')}, "
              f"out of order {s.get('out_of_order')}, corrupt {s.get('corrupt')}"),
             "yes" if held else "**no**"]
    return Result(held, cells, f"{'acked' if acked else 'written'}: grew {grew} MiB, "
                  f"arrived {arrived}, taken {taken}")


def scenario_slow_consumer(args, transport):
    """A server that stops reading for seconds while one client floods it
    holds the sender back (within its queue) where the transport can, and
    every message then arrives once, in order."""
    return [slow_consumer_once(args, transport, acked) for acked in (False, True)]


# ---- the soak ---------------------------------------------------------------------------------

SOAK_PROCESSES = 5
SOAK_CLIENTS = 10  # per process
# How far the server may drift between the samples: descriptors (a killed
# client's connection the server has not yet seen end), resident memory.
SOAK_FD_SLACK = 2
SOAK_RSS_SLACK_MIB = 8


def sample(pid):
    return status_kib(pid, "VmRSS"), fd_count(pid)


def scenario_soak(args, transport):
    """Fifty clients echo without pause through one server while one of
    their processes is killed (SIGKILL) and started again every few
    seconds: nothing arrives corrupt, twice or out of order, and the
    server's memory and descriptors stay flat."""
    duration = 180 if args.long else 8
    kill_every = 3 if args.long else 2
    # The short run keeps the machine free for the rest of the suite.
    rate = [] if args.long else ["--rate", 100]
    soak_args = ["--clients", SOAK_CLIENTS, "--window", 4, "--size-max", 4096] + rate
    with Stage(args, transport) as stage:
        server, port = stage.serve()
        spid = server.proc.pid
        slots = [stage.start("soak", port, soak_args) for _ in range(SOAK_PROCESSES)]
        everyone = list(slots)
        for p in slots:
            if p.wait_for(r"ready", 30)[0] is None:
                raise RuntimeError("a client process did not get going: %r"
                                   % errors_of(p))
        if not wait_peers(server, SOAK_PROCESSES * SOAK_CLIENTS, 10):
            raise RuntimeError("the server never listed every client")
        time.sleep(1.0)  # past the first allocations
        t0 = time.monotonic()
        samples = {"start": sample(spid)}
        kills, i, stalled = 0, 0, []
        while time.monotonic() - t0 + kill_every < duration:
            time.sleep(kill_every)
            if "middle" not in samples and time.monotonic() - t0 >= duration / 2:
                samples["middle"] = sample(spid)
            victim = i % SOAK_PROCESSES
            slots[victim].signal(signal.SIGKILL)
            slots[victim].proc.wait()
            kills += 1
            slots[victim] = stage.start("soak", port, soak_args)
            everyone.append(slots[victim])
            if slots[victim].wait_for(r"ready", 30)[0] is None:
                stalled.append(victim)
            i += 1
        left = duration - (time.monotonic() - t0)
        time.sleep(max(0.0, min(left, kill_every)))
        wait_peers(server, SOAK_PROCESSES * SOAK_CLIENTS, 10)
        samples.setdefault("middle", sample(spid))
        samples["end"] = sample(spid)
        elapsed = time.monotonic() - t0
        for p in slots:
            p.finish()
        server.finish()
        totals = {}
        for p in everyone:
            for k, v in last_counts(p).items():
                totals[k] = totals.get(k, 0) + v
        s = last_counts(server, ("summary",))
    (rss0, fd0), (rss1, fd1), (rss2, fd2) = (samples[k] for k in ("start", "middle", "end"))
    flat_fds = abs(fd2 - fd0) <= SOAK_FD_SLACK
    slack = SOAK_RSS_SLACK_MIB * 1024
    flat_rss = rss2 - rss1 <= slack and rss2 - rss0 <= 2 * slack
    clean = (all(totals.get(k, 1) == 0 for k in ("corrupt", "duplicates", "out_of_order", "errors"))
             and all(s.get(k, 1) == 0 for k in ("corrupt", "duplicates", "out_of_order")))
    held = clean and flat_fds and flat_rss and not stalled and totals.get("received", 0) > 0
    cells = [transport, SOAK_PROCESSES * SOAK_CLIENTS, f"{elapsed:.0f} s", kills,
             f"{totals.get('received', 0):,}", f"{totals.get('bytes', 0) / MIB:,.0f} MiB",
             f"{totals.get('corrupt')} / {totals.get('duplicates')} / "
             f"{totals.get('out_of_order')} / {totals.get('errors')}; server "
             f"{s.get('corrupt')} / {s.get('duplicates')} / {s.get('out_of_order')}",
             f"{mib(rss0)}, {mib(rss1)}, {mib(rss2)}", f"{fd0}, {fd1}, {fd2}",
             "yes" if held else "**no**"]
    note = "" if not stalled else f"restarted processes that never got going: {stalled}"
    return Result(held, cells, note or f"checked {totals.get('received', 0)} echoes")


SCENARIOS = {
    "many": scenario_many,
    "slow_consumer": scenario_slow_consumer,
    "soak": scenario_soak,
}


# ---- the command line -----------------------------------------------------------------------

# A short scenario's whole budget, under CTest's timeout: when it runs out
# the scenario fails and every process it started is still stopped.
SHORT_BUDGET_S = 100


def _out_of_time(signum, frame):
    raise TimeoutError(f"the scenario ran out of its {SHORT_BUDGET_S} s")


def run_one(args, name, transport):
    """The scenario's results (one or more rows), each held or not."""
    if not args.long:
        signal.signal(signal.SIGALRM, _out_of_time)
        signal.alarm(SHORT_BUDGET_S)
    try:
        r = SCENARIOS[name](args, transport)
    except Exception as e:  # a scenario that cannot run has not held
        r = Result(False, None, f"could not run: {e}")
    finally:
        signal.alarm(0)
    return r if isinstance(r, list) else [r]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["run", "report", "list"])
    p.add_argument("rest", nargs="*")
    p.add_argument("--peer", default=os.environ.get("NQ_LOAD_PEER", "load_peer"))
    p.add_argument("--long", action="store_true")
    args = p.parse_args()
    if args.command == "list":
        for name, fn in SCENARIOS.items():
            print(f"{name}: {' '.join(fn.__doc__.split())}")
        print("transports:", " ".join(TRANSPORTS))
        return 0
    if args.command == "run":
        if len(args.rest) != 2 or args.rest[0] not in SCENARIOS or args.rest[1] not in TRANSPORTS:
            p.error("run SCENARIO TRANSPORT")
        name, transport = args.rest
        started = time.monotonic()
        results = run_one(args, name, transport)
        for r in results:
            print(f"{name} over {transport}: {'held' if r.held else 'FAILED'}: {r.note}"
                  + (f"\n  {' | '.join(str(c) for c in r.cells)}" if r.cells else ""))
        print(f"({time.monotonic() - started:.0f} s)")
        return 0 if all(r.held for r in results) else 1
    if len(args.rest) != 1:
        p.error("report FILE")
    args.long = True
    tables = {}
    for name in SCENARIOS:
        for transport in TRANSPORTS:
            for r in run_one(args, name, transport):
                print(f"{name} {transport}: {'held' if r.held else 'FAILED'}: {r.note}",
                      flush=True)
                cells = r.cells or [transport] + ["could not run: " + r.note]
                tables.setdefault(name, []).append(cells)
    write_tables(args.rest[0], tables)
    return 0


HEADERS = {
    "many": ("Many clients: each client connects, puts one 64-byte message and waits for "
             "its echo; the clients are split over processes of at most "
             f"{CLIENTS_PER_PROCESS:,}, each opening its share in a few threads. Time runs "
             "from starting the client processes to the last echo. The server's resident "
             "memory is its peak (VmHWM) before the clients and after the last echo; its CPU "
             "time (utime + stime) is what the clients cost it, divided by their number.",
             ["transport", "goal", "clients", "client processes", "connected and echoed in",
              "server RSS before → after", "per client", "server CPU per client",
              "every echo arrived", "note"]),
    "slow_consumer": (
        f"Slow consumer: the server (NQ_OPT_QUEUE_SIZE {QUEUE_SIZE}) stops calling get "
        "for 5 s once the first message is in, while one client puts 4,096 copied messages "
        f"of 64 KiB (256 MiB) as fast as put takes them, with NQ_OPT_SEND_LIMIT at "
        f"{SEND_LIMIT // MIB} MiB; a put refused with NQ_EFULL is tried again 1 ms later. "
        "Written is the default delivery, acked NQ_DELIVERY_ACKED on both sides. "
        "The server's peak is its VmHWM at the end (growth over its start in brackets); "
        "taken is what libnq received from the network while the server was not reading.",
        ["transport", "delivery", "offered", "server peak RSS", "promised bound",
         "taken while not reading", "what the sender saw", "arrived at the server", "held"]),
    "soak": (
        f"Soak: {SOAK_PROCESSES * SOAK_CLIENTS} clients in {SOAK_PROCESSES} processes each "
        "keep 4 messages of 16 to 4,096 bytes in flight through one echoing server and check "
        "every echo (its number comes next, its bytes are intact); every 3 s one client "
        "process is killed with SIGKILL and started again. Corrupt / duplicated / out of "
        "order / errors are the clients' counts (a killed process's up to its last report), "
        "then the server's. The server's resident memory (VmRSS) and open descriptors are "
        "sampled once every client is up, in the middle and at the end; the promise allows "
        f"the descriptors at the end to be {SOAK_FD_SLACK} from those at the start, and "
        f"resident memory at the end to be {SOAK_RSS_SLACK_MIB} MiB above the middle and "
        f"{2 * SOAK_RSS_SLACK_MIB} MiB above the start.",
        ["transport", "clients", "ran", "processes killed", "echoes checked", "bytes checked",
         "corrupt / dup / reordered / errors", "server RSS start, middle, end",
         "server fds start, middle, end", "held"]),
}


def wrap(text):
    return textwrap.fill(text, width=80, break_long_words=False, break_on_hyphens=False)


def render_tables(tables):
    rev = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "unknown"
    out = [LOAD_BEGIN, "", "## Load", "",
           wrap(f"Written by `tests/trials/load.py report` (long run) at `{rev}`, on 127.0.0.1 "
           f"with every peer a process of its own (`tests/trials/load_peer.c`), {os.cpu_count()} "
           "cores shared by all of them; MQTT through one mosquitto the script starts "
           "(max_connections, max_queued_messages and memory_limit without limit). "
           "`load.py run SCENARIO TRANSPORT --long` runs one row."), ""]
    for name, rows in tables.items():
        text, columns = HEADERS[name]
        out += [wrap(text), "", "| " + " | ".join(columns) + " |",
                "|" + "---|" * len(columns)]
        for cells in rows:
            cells = list(cells) + [""] * (len(columns) - len(cells))
            out.append("| " + " | ".join(str(c) for c in cells) + " |")
        out.append("")
    out.append(LOAD_END)
    return "\n".join(out) + "\n"


def write_tables(path, tables):
    """Puts the tables between the markers in path, or, without markers,
    after the file's first table (before the notes that follow it); the rest
    of the file stays as it was."""
    with open(path) as f:
        text = f.read()
    block = render_tables(tables)
    if LOAD_BEGIN in text and LOAD_END in text:
        head, rest = text.split(LOAD_BEGIN, 1)
        tail = rest.split(LOAD_END, 1)[1]
        text = head + block.rstrip("\n") + tail
    else:
        lines = text.split("\n")
        at = len(lines)
        in_table = False
        for i, line in enumerate(lines):
            if line.startswith("|"):
                in_table = True
            elif in_table:
                at = i
                break
        lines[at:at] = ["", block.rstrip("\n")]
        text = "\n".join(lines)
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
