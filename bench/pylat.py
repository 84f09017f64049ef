#!/usr/bin/python3
"""bench/pylat.py: the 64 B round trip as a Python program sees it.

  bench/pylat.py [--mode MODE]... [--count N] [--warmup N] [--size B]
                 [--timeout S] [--netqueue-python PY]

For each mode (threaded and asyncio unless told otherwise) it starts an echo
server and a client, each a Python process of its own, over TCP on
127.0.0.1 at a port nobody fixed; the client times --count round trips of
--size raw bytes after --warmup untimed ones.  The modes:

  threaded   nq.new: the client waits for put(data).result(), then get();
             the server get()s and waits for put(data, peer).result()
  asyncio    nq.aio.new: the client awaits put and get; the server is an
             asyncio loop awaiting get and put
  net-queue  the same loop as threaded on net-queue's own API, run by
             --netqueue-python (a Python with net-queue 2.x installed)

The messages are bytes as they are (nq.BytesSerializer, net-queue's
BufferSerializer): the figures are the binding's, not pickle's.

Output, per mode, lines shaped like bench/lat's:

  mode: threaded
  message size: 64 [B]
  roundtrip count: 2000
  rtt p50: 61.20 [us]              (also p99, p99.9, max and mean)
  cpu client: 48.10 [us/roundtrip]
  cpu server: 40.30 [us/roundtrip]
  cpu total: 88.40 [us/roundtrip]
  peak RSS client: 21344 [KiB]
  peak RSS server: 21120 [KiB]

CPU is user + system time of each whole process (every thread; getrusage)
over the timed round trips only, divided by their count; peak RSS is each
process's own VmHWM.  A mode that fails prints "mode: MODE failed: why".

Every wait is bounded: the driver gives each process --timeout seconds and
kills what is left, and each process also arms SIGALRM at --timeout, which
ends it even inside a wait that takes no timeout (net-queue's get).  Exit
status 0 when every mode gave positive figures, 1 otherwise.
"""

import argparse
import asyncio
import json
import math
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import time

HOST = "127.0.0.1"
MODES = ("threaded", "asyncio", "net-queue")
# One put or get of the threaded loops waits at most this long.
OP_TIMEOUT_S = 10.0


# ---------------------------------------------------------------------------
# Output: what the driver prints and what bench/compare reads back

LINE = re.compile(r"^(rtt p50|rtt p99|rtt p99\.9|rtt max|rtt mean|cpu client|cpu server|"
                  r"cpu total|peak RSS client|peak RSS server): ([0-9.]+) \[[^]]+\]$")
KEYS = {"rtt p50": "p50", "rtt p99": "p99", "rtt p99.9": "p99.9", "rtt max": "max",
        "rtt mean": "mean", "cpu client": "cpu_client", "cpu server": "cpu_server",
        "cpu total": "cpu", "peak RSS client": "rss_client_kib",
        "peak RSS server": "rss_server_kib"}
# The figures a run is worth nothing without.
REQUIRED = ("p50", "p99", "p99.9", "cpu_client", "cpu_server", "cpu")


def parse(text):
    """{mode: {figure: value}} for every mode that printed figures in text
    (pylat's output); times in µs, RSS in KiB.  A failed mode is absent."""
    out = {}
    mode = None
    for line in text.splitlines():
        m = re.fullmatch(r"mode: (\S+)", line)
        if m:
            mode = m.group(1)
            out[mode] = {}
            continue
        m = LINE.match(line)
        if m and mode is not None:
            out[mode][KEYS[m.group(1)]] = float(m.group(2))
    return {mode: fig for mode, fig in out.items() if fig}


def complete(figures):
    """Whether a mode's figures hold every required one, each above zero."""
    return all(figures.get(key, 0) > 0 for key in REQUIRED)


def report(mode, size, client, server):
    """The output lines of one mode from its client's and server's results."""
    rtt = sorted(client["rtt_ns"])
    n = len(rtt)

    def pct(p):
        # Nearest rank, as bench/report.c's percentile_us.
        return rtt[min(n, max(1, math.ceil(p * n))) - 1] / 1e3

    cpu_c = client["cpu_s"] * 1e6 / n
    cpu_s = server["cpu_s"] * 1e6 / server["count"]
    return [f"mode: {mode}",
            f"message size: {size} [B]",
            f"roundtrip count: {n}",
            f"rtt p50: {pct(0.50):.2f} [us]",
            f"rtt p99: {pct(0.99):.2f} [us]",
            f"rtt p99.9: {pct(0.999):.2f} [us]",
            f"rtt max: {rtt[-1] / 1e3:.2f} [us]",
            f"rtt mean: {sum(rtt) / n / 1e3:.2f} [us]",
            f"cpu client: {cpu_c:.2f} [us/roundtrip]",
            f"cpu server: {cpu_s:.2f} [us/roundtrip]",
            f"cpu total: {cpu_c + cpu_s:.2f} [us/roundtrip]",
            f"peak RSS client: {client['rss_kib']} [KiB]",
            f"peak RSS server: {server['rss_kib']} [KiB]"]


# ---------------------------------------------------------------------------
# The two roles, one process each

def cpu_s():
    """User + system seconds of this process, every thread."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_rss_kib():
    """This process's own peak RSS.  VmHWM belongs to the address space, so
    unlike ru_maxrss it does not carry the parent's over fork and exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def free_port():
    # net-queue's server cannot report the port it got from port 0.
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def nq_options(port):
    import nq
    return nq.CommunicatorOptions(
        netloc=nq.NetworkLocation(HOST, port),
        serialization=nq.SerializationOptions(load=nq.BytesSerializer().load,
                                              dump=nq.BytesSerializer().dump))


def netqueue_options(port):
    import net_queue
    from net_queue.utils.stream import BufferSerializer
    return net_queue.CommunicatorOptions(
        netloc=net_queue.NetworkLocation(HOST, port),
        serialization=net_queue.SerializationOptions(load=BufferSerializer().load,
                                                     dump=BufferSerializer().dump))


def timed(step, warmup, count):
    """Runs step warmup times, then count times timing each (ns) and the
    whole (CPU seconds)."""
    for _ in range(warmup):
        step()
    rtt = []
    c0 = cpu_s()
    for _ in range(count):
        t0 = time.perf_counter_ns()
        step()
        rtt.append(time.perf_counter_ns() - t0)
    return {"cpu_s": cpu_s() - c0, "count": count, "rtt_ns": rtt}


async def timed_async(step, warmup, count):
    """timed() for a coroutine step."""
    for _ in range(warmup):
        await step()
    rtt = []
    c0 = cpu_s()
    for _ in range(count):
        t0 = time.perf_counter_ns()
        await step()
        rtt.append(time.perf_counter_ns() - t0)
    return {"cpu_s": cpu_s() - c0, "count": count, "rtt_ns": rtt}


def serve(args, ready):
    """The echo server of args.mode; calls ready(port) once it listens."""
    if args.mode == "asyncio":
        return asyncio.run(serve_asyncio(args, ready))
    if args.mode == "threaded":
        import nq
        queue = nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, nq_options(0))
        port = queue.local_port

        def step():
            message = queue.get(timeout=OP_TIMEOUT_S)
            queue.put(message.data, message.peer).result(OP_TIMEOUT_S)
    else:
        import net_queue
        port = free_port()
        queue = net_queue.new(net_queue.Protocol.TCP, net_queue.Purpose.SERVER,
                              netqueue_options(port))

        def step():
            message = queue.get()
            queue.put(message.data, message.peer).result(OP_TIMEOUT_S)
    with queue:
        ready(port)
        result = timed(step, args.warmup, args.count)
        result["rtt_ns"] = []
        result["rss_kib"] = peak_rss_kib()
    return result


async def serve_asyncio(args, ready):
    import nq
    import nq.aio
    async with nq.aio.new(nq.Protocol.TCP, nq.Purpose.SERVER, nq_options(0)) as queue:
        ready(queue.local_port)

        async def step():
            message = await queue.get()
            await queue.put(message.data, message.peer)

        # One deadline for the whole loop: a timeout per get would add a
        # task per call to what is measured.
        result = await asyncio.wait_for(timed_async(step, args.warmup, args.count),
                                        args.timeout)
        result["rtt_ns"] = []
        result["rss_kib"] = peak_rss_kib()
    return result


def ping(args):
    """The client of args.mode against the server at args.port."""
    data = bytes(i % 256 for i in range(args.size))
    if args.mode == "asyncio":
        return asyncio.run(ping_asyncio(args, data))
    if args.mode == "threaded":
        import nq
        queue = nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, nq_options(args.port))

        def step():
            queue.put(data).result(OP_TIMEOUT_S)
            check(queue.get(timeout=OP_TIMEOUT_S).data, args.size)
    else:
        import net_queue
        queue = net_queue.new(net_queue.Protocol.TCP, net_queue.Purpose.CLIENT,
                              netqueue_options(args.port))

        def step():
            queue.put(data).result(OP_TIMEOUT_S)
            check(queue.get().data, args.size)
    with queue:
        result = timed(step, args.warmup, args.count)
        result["rss_kib"] = peak_rss_kib()
    return result


async def ping_asyncio(args, data):
    import nq
    import nq.aio
    async with nq.aio.new(nq.Protocol.TCP, nq.Purpose.CLIENT, nq_options(args.port)) as queue:
        async def step():
            await queue.put(data)
            check((await queue.get()).data, args.size)

        result = await asyncio.wait_for(timed_async(step, args.warmup, args.count),
                                        args.timeout)
        result["rss_kib"] = peak_rss_kib()
    return result


def check(reply, size):
    if len(reply) != size:
        raise RuntimeError(f"a reply has {len(reply)} bytes, not {size}")


def role_main(args):
    # The hard bound: SIGALRM's default action ends the process wherever it
    # waits.
    signal.alarm(max(1, int(args.timeout)))

    def ready(port):
        print(f"listening {HOST} {port}", flush=True)

    result = serve(args, ready) if args.role == "server" else ping(args)
    print("result " + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------------
# The driver: a server and a client per mode

class Failed(Exception):
    pass


def wait_ready(server, deadline):
    """The port from the server's "listening" line, read before deadline."""
    fd = server.stdout.fileno()
    seen = b""
    while True:
        m = re.search(rb"^listening \S+ (\d+)$", seen, re.M)
        if m:
            return int(m.group(1)), seen
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failed("the server did not listen in time")
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise Failed(f"the server exited before listening ({server.wait()})")
            seen += chunk


def result_of(role, text):
    for line in text.splitlines():
        if line.startswith("result "):
            return json.loads(line[len("result "):])
    raise Failed(f"the {role} printed no result")


def run_mode(mode, args):
    """One server and one client of mode; the output lines."""
    python = args.netqueue_python if mode == "net-queue" else sys.executable
    deadline = time.monotonic() + args.timeout
    common = ["--mode", mode, "--count", str(args.count), "--warmup", str(args.warmup),
              "--size", str(args.size), "--timeout", str(args.timeout)]
    argv = [python, "-u", os.path.abspath(__file__)] + common
    server = subprocess.Popen(argv + ["--role", "server"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE)
    try:
        port, seen = wait_ready(server, min(deadline, time.monotonic() + 30))
        try:
            client = subprocess.run(argv + ["--role", "client", "--port", str(port)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise Failed(f"the client did not finish in {args.timeout} s") from None
        if client.returncode != 0:
            raise Failed(f"the client exited with {client.returncode}")
        try:
            rest, _ = server.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise Failed("the server did not finish after the client") from None
        if server.returncode != 0:
            raise Failed(f"the server exited with {server.returncode}")
        return report(mode, args.size, result_of("client", client.stdout.decode()),
                      result_of("server", (seen + rest).decode()))
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def driver_main(args):
    modes = args.mode or ["threaded", "asyncio"]
    printed = []
    for mode in modes:
        try:
            lines = run_mode(mode, args)
        except (Failed, OSError, ValueError) as e:
            lines = [f"mode: {mode} failed: {e}"]
        print("\n".join(lines), flush=True)
        printed.extend(lines)
    # The output is read back as bench/compare reads it: a mode counts only
    # when its printed figures parse and are all positive.
    figures = parse("\n".join(printed))
    missing = [mode for mode in modes if not complete(figures.get(mode, {}))]
    for mode in missing:
        print(f"pylat: mode {mode} gave no usable figures", file=sys.stderr)
    return 1 if missing else 0


def on_term(signum, frame):
    # The finally blocks stop the server.
    sys.exit(128 + signum)


def main():
    parser = argparse.ArgumentParser(
        prog="bench/pylat.py",
        description="The 64 B round trip between two Python processes: nq.new (threaded), "
                    "nq.aio (asyncio) and net-queue's own API.")
    parser.add_argument("--mode", action="append", choices=MODES,
                        help="a mode to run, repeatable (default: threaded and asyncio)")
    parser.add_argument("--count", type=int, default=2000, help="timed round trips")
    parser.add_argument("--warmup", type=int, default=200, help="untimed round trips first")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes")
    parser.add_argument("--timeout", type=float, default=120,
                        help="seconds a mode may take, start to end")
    parser.add_argument("--netqueue-python", default=sys.executable,
                        help="the Python that runs the net-queue mode")
    parser.add_argument("--role", choices=("server", "client"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count < 1 or args.warmup < 0 or args.size < 1 or args.timeout <= 0:
        parser.error("--count and --size must be at least 1, --warmup at least 0, "
                     "--timeout above 0")
    if args.role:
        if len(args.mode or []) != 1 or (args.role == "client" and not args.port):
            parser.error("--role takes one --mode (and a client a --port)")
        args.mode = args.mode[0]
        return role_main(args)
    signal.signal(signal.SIGTERM, on_term)
    return driver_main(args)


if __name__ == "__main__":
    sys.exit(main())
