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
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# One line reader and one pair of markers for both scripts.
from trials import LOAD_BEGIN, LOAD_END, TRANSPORTS  # noqa: E402
from rig import (MIB, Stage, budget, cpu_seconds, errors_of, fd_count, git_head,  # noqa: E402
                 last_counts, markdown_table, mib, open_files_hard_limit, put_block,
                 status_kib, wait_peers, wrap)


class Result:
    def __init__(self, held, cells, note=""):
        self.held, self.cells, self.note = held, cells, note


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


def run_one(args, name, transport):
    """The scenario's results (one or more rows), each held or not."""
    try:
        with budget(None if args.long else SHORT_BUDGET_S):
            r = SCENARIOS[name](args, transport)
    except Exception as e:  # a scenario that cannot run has not held
        r = Result(False, None, f"could not run: {e}")
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


def render_tables(tables):
    out = [LOAD_BEGIN, "", "## Load", "",
           wrap(f"Written by `tests/trials/load.py report` (long run) at `{git_head()}`, on "
           f"127.0.0.1 with every peer a process of its own (`tests/trials/load_peer.c`), "
           f"{os.cpu_count()} cores shared by all of them; MQTT through one mosquitto the script "
           "starts (max_connections, max_queued_messages and memory_limit without limit). "
           "`load.py run SCENARIO TRANSPORT --long` runs one row."), ""]
    for name, rows in tables.items():
        text, columns = HEADERS[name]
        out += [wrap(text), ""] + markdown_table(columns, rows) + [""]
    out.append(LOAD_END)
    return "\n".join(out) + "\n"


def after_first_table(lines):
    """Where the load tables go in a file without them: after the file's
    first table (before the notes that follow it)."""
    in_table = False
    for i, line in enumerate(lines):
        if line.startswith("|"):
            in_table = True
        elif in_table:
            return i
    return len(lines)


def write_tables(path, tables):
    """Puts the tables between the markers in path, or, without markers,
    after the file's first table; the rest of the file (the fault table,
    the hostile-peer tables, the notes) stays as it was."""
    put_block(path, LOAD_BEGIN, LOAD_END, render_tables(tables), after_first_table)


if __name__ == "__main__":
    sys.exit(main())
