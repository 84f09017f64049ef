#!/usr/bin/env python3
"""The hostile-peer scenarios: a server, one well-behaved client (the
pinger) that keeps a round trip going through it the whole time, and an
attacker doing what the issue "Hostile and heavy traffic" found a peer
could do.  Each scenario states its promise and its bound, measures what
the attacker got (what the server took, how soon it was closed, whether its
data reached the application), what it cost the server (peak resident
memory, CPU), and whether the pinger's echoes kept coming (no gap beyond
its bound, none corrupt, repeated, out of order, no error); it holds only
when every one of those is within bound.  Every peer is a process of its
own on 127.0.0.1 (free ports only): load_peer for the server and the
pinger, and as attacker Python's own sockets (TCP, TLS, and MQTT packets
written by hand) or hostile_peer (gRPC by hand).

    hostile.py run SCENARIO TRANSPORT [--long]   one scenario; exit status
                                                 0 when its promise holds
    hostile.py report FILE                       every scenario, long; writes
                                                 the hostile-peer table
    hostile.py list                              the scenarios

Options: --peer PATH (load_peer), --attacker PATH (hostile_peer, for gRPC).
Needs mosquitto and openssl; self_connect needs unshare and
ip (root, or unprivileged user namespaces).  Every process the script
starts is stopped when the scenario ends, however it ends, and dies with
the script should the script be killed.
"""

import argparse
import os
import re
import signal
import socket
import ssl
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from trials import (HOSTILE_BEGIN, HOSTILE_END, LOAD_END, MQTT_KEEPALIVE_MIN_MS,  # noqa: E402
                    dead_bound, promise_of)
from rig import (MIB, Stage, budget, counts_of, cpu_seconds, errors_of, free_port,  # noqa: E402
                 git_head, markdown_table, put_block, status_kib, wrap)

# The pinger: one client, one message of at most 64 bytes in flight, 50 a
# second; load_peer reports its echoes every 250 ms, so a gap is measured
# to about 250 ms.
PING = ["--clients", 1, "--window", 1, "--size-max", 64, "--rate", 50]
PING_GAP_MS = 1500
# Memory an attack may add to the server's peak (VmHWM).
RSS_BOUND_MIB = 16
NQ_ECONNREFUSED = -9


class Result:
    def __init__(self, held, measured, bound, why=""):
        self.held, self.measured, self.bound, self.why = held, measured, bound, why


def frame_header(length):
    return struct.pack(">Q", length)


def frame(payload):
    return frame_header(len(payload)) + payload


def hex_id():
    return os.urandom(16).hex()


# ---- the scene: a server, the pinger, the measures ---------------------------------------

class Scene:
    """A stage with a server (load_peer serve) and the pinger (load_peer
    soak, one client), both stopped at its end."""

    def __init__(self, args, transport, server=(), pinger=(), pinger_id=None,
                 start_pinger=True):
        self.args, self.transport = args, transport
        self.server_extra, self.pinger_extra = list(server), list(pinger)
        self.pinger_id = pinger_id
        self.start_pinger_now = start_pinger
        self.stage = Stage(args, transport)
        self.pinger = None

    def __enter__(self):
        self.stage.__enter__()
        try:
            self.server, self.port = self.stage.serve(self.server_extra)
            _, m = self.server.wait_for(r"listening port=\d+ id=([0-9a-f]*)", 1)
            self.server_id = m.group(1) if m else ""
            if self.start_pinger_now:
                self.start_pinger()
        except BaseException:
            self.stage.close()
            raise
        return self

    def __exit__(self, *exc):
        self.stage.close()
        return False

    def start_pinger(self):
        extra = PING + self.pinger_extra + (["--id", self.pinger_id] if self.pinger_id else [])
        self.pinger = self.stage.start("soak", self.port, extra)
        t, _ = self.pinger.wait_for(r"ready", 20)
        if t is None:
            raise RuntimeError("the pinger did not get going: %r" % errors_of(self.pinger))
        self.pinger_ready = t
        return t

    def sample(self):
        """The server's peak resident memory (KiB) and CPU seconds now."""
        pid = self.server.proc.pid
        return status_kib(pid, "VmHWM"), cpu_seconds(pid)

    def stats(self):
        """The server's latest counters."""
        for _, text in reversed(self.server.lines):
            if " stats " in text:
                return counts_of(text)
        return {}

    def wait_stat(self, key, want, timeout, at_most=False, after=0.0):
        """The time the server's counter key first reached want (or fell to
        it, with at_most) in a report after `after`, or None."""
        deadline = time.monotonic() + timeout
        while True:
            for t, text in self.server.lines:
                if t >= after and " stats " in text:
                    v = counts_of(text).get(key, 0)
                    if (v <= want) if at_most else (v >= want):
                        return t
            if time.monotonic() >= deadline or self.server.proc.poll() is not None:
                return None
            time.sleep(0.02)

    def pinger_verdict(self, gap_bound_ms=PING_GAP_MS):
        """(held, text): the pinger's echoes since it was ready kept coming,
        no gap beyond gap_bound_ms, nothing corrupt, repeated, out of order,
        no error."""
        if self.pinger is None:
            return False, "no pinger"
        lines = [(t, counts_of(text)) for t, text in self.pinger.lines
                 if " progress " in f" {text} " or " summary " in f" {text} "]
        lines = [(t, c) for t, c in lines if t >= self.pinger_ready]
        if not lines:
            return False, "the pinger reported nothing"
        # The longest time between two reports that counted new echoes (or
        # from the last one to now, while the pinger runs).
        gap, last_t, last_n = 0.0, self.pinger_ready, -1
        for t, c in lines:
            n = c.get("received", 0)
            if n > last_n:
                gap = max(gap, t - last_t)
                last_t, last_n = t, n
        if self.pinger.proc.poll() is None:
            gap = max(gap, time.monotonic() - last_t)
        final = lines[-1][1]
        bad = {k: final.get(k, 0) for k in ("corrupt", "duplicates", "out_of_order", "errors")}
        gap_ms = int(gap * 1000)
        held = gap_ms <= gap_bound_ms and not any(bad.values()) and last_n > 0
        text = (f"pinger {last_n:,} echoes, longest gap {gap_ms} ms, "
                f"{'/'.join(str(v) for v in bad.values())} corrupt/repeated/reordered/errors")
        errors = errors_of(self.pinger, 1)
        if errors:
            text += f" ({errors[0]})"
        return held, text

    def finish(self):
        """Stops the pinger and the server; the server's summary."""
        if self.pinger is not None:
            self.pinger.finish()
        self.server.finish()
        for _, text in reversed(self.server.lines):
            if " summary " in text:
                return counts_of(text)
        return {}


def judge(checks):
    """(held, why): held when every (ok, what) check is ok; why names the
    ones that are not."""
    failed = [what for ok, what in checks if not ok]
    return not failed, "; ".join(failed)


def cost(before, after):
    """The server's peak memory growth (MiB) and CPU seconds between two
    samples, and their text."""
    (hwm0, cpu0), (hwm1, cpu1) = before, after
    grew = (hwm1 - hwm0) / 1024 if hwm0 and hwm1 else None
    text = (f"server peak RSS +{grew:.1f} MiB" if grew is not None else "server peak RSS ?") + \
        f", {cpu1 - cpu0:.2f} s CPU"
    return grew, cpu1 - cpu0, text


# ---- attackers over TCP and TLS ------------------------------------------------------------

def raw_connect(scene, timeout=5.0):
    """A socket to the server, through TLS for "tls" (the server's
    certificate is not checked: the attacker does not care)."""
    s = socket.create_connection(("127.0.0.1", scene.port), timeout=timeout)
    if scene.transport == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s)
    return s


def reset(s):
    """Closes s with a reset (SO_LINGER 0), not a FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def closed_by_peer(s, timeout):
    """True when the server ended the connection within timeout (EOF or
    reset), reading and dropping what it sends meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        s.settimeout(left)
        try:
            if not s.recv(65536):
                return True
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except OSError:
            return True


def stream_after(s, first, piece, every_s, max_bytes, for_s):
    """Sends first, then pieces of zeros (one every every_s seconds) until
    the server ends the connection, max_bytes went or for_s passed.
    Returns (bytes the kernel took after first, seconds until the server
    ended it or None)."""
    s.sendall(first)
    t0 = time.monotonic()
    sent, zeros = 0, bytes(piece)
    while sent < max_bytes and time.monotonic() - t0 < for_s:
        s.settimeout(max(0.05, min(0.5, for_s - (time.monotonic() - t0))))
        try:
            n = s.send(zeros)
        except (socket.timeout, ssl.SSLWantWriteError):
            continue  # the server is not reading: keep trying until for_s
        except OSError:
            return sent, time.monotonic() - t0
        sent += n
        if every_s and closed_by_peer(s, every_s):
            return sent, time.monotonic() - t0
    return sent, (time.monotonic() - t0) if closed_by_peer(s, 0.5) else None


def attacker_line(peer, pattern, timeout):
    _, m = peer.wait_for(pattern, timeout)
    if m is None:
        raise RuntimeError("the attacker reported nothing: %r" % peer.lines[-3:])
    return counts_of(m.group(0))


def grpc_attacker(scene, argv, pattern, timeout):
    if not scene.args.attacker:
        raise RuntimeError("gRPC attacks need --attacker (hostile_peer)")
    peer = scene.stage.spawn([scene.args.attacker] + argv + ["--port", scene.port])
    counts = attacker_line(peer, pattern, timeout)
    peer.proc.wait(timeout=10)
    return counts


def mqtt_packet(kind, body):
    """An MQTT packet: its type byte, the remaining length, the body."""
    n, length = len(body), b""
    while True:
        n, digit = n >> 7, n & 0x7F
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            return bytes([kind]) + length + body


def mqtt_string(text):
    data = text.encode()
    return struct.pack(">H", len(data)) + data


class Mqtt:
    """A bare MQTT 3.1.1 client on its own socket, as an attacker needs no
    more: CONNECT with any client id, QoS 0 PUBLISH on any topic,
    DISCONNECT."""

    def __init__(self, port, client_id):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.s.sendall(mqtt_packet(0x10, mqtt_string("MQTT") + b"\x04\x02"
                                   + struct.pack(">H", 60) + mqtt_string(client_id)))
        ack = b""
        while len(ack) < 4:
            got = self.s.recv(4 - len(ack))
            if not got:
                break
            ack += got
        if ack[:1] != b"\x20" or ack[3:4] != b"\x00":
            self.s.close()
            raise RuntimeError(f"the broker refused the connection: {ack!r}")

    def publish(self, topic, payload):
        self.s.sendall(mqtt_packet(0x30, mqtt_string(topic) + payload))

    def close(self):
        """DISCONNECT, after which the broker has handled every publish."""
        self.s.sendall(b"\xe0\x00")
        self.s.close()


def mqtt_publish(scene, topic, payloads):
    """Publishes each payload on topic from a client of its own."""
    m = Mqtt(scene.stage.broker_port, f"nq-hostile-{hex_id()[:8]}")
    for p in payloads:
        m.publish(topic, p)
    m.close()


# ---- the scenarios ---------------------------------------------------------------------------

def scenario_before_ini(args, transport):
    """A connection that has not sent its INI and announces a 1 GiB frame
    is closed at the header: it cannot make the server hold what it streams
    after it, and nothing of it reaches get."""
    offer = (1 << 30) if args.long else (256 * MIB)
    close_bound_ms, taken_bound = 2000, 32 * MIB
    with Scene(args, transport) as scene:
        before = scene.sample()
        errors0 = scene.stats().get("protocol_errors", 0)
        t0 = time.monotonic()
        if transport in ("tcp", "tls"):
            with raw_connect(scene) as s:
                taken, closed_s = stream_after(s, frame_header(1 << 30), 65536, 0, offer, 5)
            closed_ms = None if closed_s is None else int(closed_s * 1000)
        elif transport == "grpc":
            a = grpc_attacker(scene, ["header", "--len", 1 << 30, "--max", offer,
                                      "--for-ms", 5000], r"attack .*", 30)
            taken, closed_ms = a["sent"], a["ms"] if a["ended"] else None
        else:
            # Through the broker: whole publishes on a topic of a client id
            # no one has, the first opening with the 1 GiB header.
            piece = MIB
            first = frame_header(1 << 30) + bytes(piece - 8)
            taken = offer // 16
            mqtt_publish(scene, f"c2s/{hex_id()}",
                         [first] + [bytes(piece)] * (taken // piece - 1))
        seen = scene.wait_stat("protocol_errors", errors0 + 1, 5)
        if transport == "mqtt":
            closed_ms = None if seen is None else int((seen - t0) * 1000)
        time.sleep(0.3)
        after = scene.sample()
        pinger_ok, pinger_text = scene.pinger_verdict()
        summary = scene.finish()
    grew, cpu, cost_text = cost(before, after)
    reached = summary.get("corrupt", 1)
    checks = [(closed_ms is not None and closed_ms <= close_bound_ms,
               f"closed after {closed_ms} ms" if closed_ms is not None else "never closed"),
              (seen is not None, "no protocol error counted"),
              (reached == 0, f"{reached} messages of it reached get"),
              (grew is not None and grew <= RSS_BOUND_MIB, "the server's memory grew"),
              (pinger_ok, f"the pinger: {pinger_text}")]
    if transport != "mqtt":
        checks.append((taken <= taken_bound, f"the server took {taken / MIB:.1f} MiB"))
    held, why = judge(checks)
    took = (f"the broker took {taken / MIB:.0f} MiB in 1 MiB publishes" if transport == "mqtt"
            else f"{taken / MIB:.1f} MiB taken of {offer // MIB} MiB offered")
    measured = (f"closed {closed_ms} ms after the header; {took}; "
                f"{'nothing' if reached == 0 else reached} reached get; {cost_text}; "
                f"{pinger_text}")
    bound = (f"closed ≤ {close_bound_ms} ms" + ("" if transport == "mqtt" else
                                                 f", taken ≤ {taken_bound // MIB} MiB")
             + f", RSS +{RSS_BOUND_MIB} MiB, ping gap ≤ {PING_GAP_MS} ms")
    return Result(held, measured, bound, why)


def scenario_paused_reset(args, transport):
    """A peer held back by NQ_OPT_QUEUE_SIZE (the server takes no message of
    it) that resets its connection leaves the peer list at once, and the
    server's I/O thread does not spin on the reset."""
    pinger_id = hex_id()
    idle_s = 5.0 if args.long else 1.0
    leave_bound_ms, cpu_bound = 1000, 0.25 * idle_s
    with Scene(args, transport, server=["--queue", 1, "--only", pinger_id],
               pinger_id=pinger_id) as scene:
        before = scene.sample()
        s = raw_connect(scene)
        s.sendall(frame(bytes.fromhex(hex_id())) + frame(bytes(1000)) * 100)
        paused = scene.wait_stat("read_pauses", 1, 5) is not None
        listed = scene.wait_stat("peers", 2, 5) is not None
        time.sleep(0.2)
        t0 = time.monotonic()
        reset(s)
        left = scene.wait_stat("peers", 1, 5, at_most=True, after=t0)
        left_ms = None if left is None else int((left - t0) * 1000)
        cpu0 = scene.sample()[1]
        time.sleep(idle_s)
        cpu1 = scene.sample()[1]
        after = scene.sample()
        lost = scene.stats().get("lost", 0)
        pinger_ok, pinger_text = scene.pinger_verdict()
        scene.finish()
    grew, _, cost_text = cost(before, after)
    spent = cpu1 - cpu0
    held, why = judge([(paused and listed, "the attacker was never held back"),
                       (left_ms is not None and left_ms <= leave_bound_ms,
                        f"left the peer list after {left_ms} ms"),
                       (lost >= 1, "the reset was not counted as a lost connection"),
                       (spent <= cpu_bound, f"the server spent {spent:.2f} s CPU idle"),
                       (pinger_ok, f"the pinger: {pinger_text}")])
    measured = (f"held back (NQ_STAT_READ_PAUSES {'≥ 1' if paused else '0'}), reset: left the "
                f"peer list after {left_ms} ms; server CPU in the next {idle_s:.0f} s "
                f"{spent:.2f} s; {cost_text}; {pinger_text}")
    bound = (f"left ≤ {leave_bound_ms} ms (counters looked at every 200 ms), CPU ≤ "
             f"{cpu_bound:.2f} s in {idle_s:.0f} s, ping gap ≤ {PING_GAP_MS} ms")
    return Result(held, measured, bound, why)


def dead_bound_ms(transport, keepalive_ms):
    """When keep-alive would declare a silent peer lost (over MQTT, the
    keep-alive in effect)."""
    if transport == "mqtt":
        keepalive_ms = max(keepalive_ms, MQTT_KEEPALIVE_MIN_MS)
    return dead_bound(keepalive_ms)


def scenario_flow_control(args, transport):
    """A sender held back by a reader that takes none of its messages (at
    NQ_OPT_QUEUE_SIZE) is held back, not cut off: past keep-alive's whole
    schedule its connection stays, and once the reader takes them every
    message arrives."""
    keepalive = 1000
    # Past keep-alive's schedule (dead_bound_ms); over TCP and TLS also long
    # enough for the kernel's probes of the closed window to be spaced
    # seconds apart (a sender once dropped its peer some 12 s in).
    short_s = 15 if transport in ("tcp", "tls") else dead_bound_ms(transport, keepalive) / 1000 + 1
    hold_s = 30 if args.long else short_s
    count, size = 32, MIB
    acked = ["--acked", 1] if transport == "mqtt" else []
    pinger_id = hex_id()
    with Scene(args, transport, server=["--queue", 4, "--only", pinger_id, "--keepalive",
                                        keepalive] + acked,
               pinger=acked, pinger_id=pinger_id) as scene:
        before = scene.sample()
        flood = scene.stage.start("flood", scene.port, [
            "--count", count, "--size", size, "--keepalive", keepalive,
            "--timeout-ms", int((hold_s + 60) * 1000), "--log", 1] + acked)
        _, sent = flood.wait_for(r"sent n=(\d+)", 30)
        time.sleep(hold_s)
        held_back = scene.stats().get("read_pauses", 0) >= 1
        during = flood.proc.poll() is None and not errors_of(flood)
        scene.server.signal(signal.SIGUSR1)
        _, closed = flood.wait_for(r"closed rc=(-?\d+)", 60)
        _, fstats = flood.wait_for(r"stats .*", 1)
        after = scene.sample()
        pinger_ok, pinger_text = scene.pinger_verdict()
        summary = scene.finish()
    # The sender's messages among what the server took: the pinger's, of
    # 64 bytes at most, add up to less than one of them.
    arrived = summary.get("bytes", 0) // size
    # What libnq said when it dropped the connection, if it did.
    dropped = next((text.split(" ", 3)[3] for _, text in flood.lines
                    if " log " in text and ("dropping" in text or "lost" in text)), "")
    lost = counts_of(fstats.group(0)).get("lost", -1) if fstats else -1
    rc = int(closed.group(1)) if closed else None
    grew, _, cost_text = cost(before, after)
    clean = all(summary.get(k, 1) == 0 for k in ("corrupt", "duplicates", "out_of_order"))
    put_all = sent is not None and int(sent.group(1)) == count
    held, why = judge([(put_all, "the sender did not put every message"),
                       (held_back, "the sender was never held back"),
                       (during and lost == 0, f"the sender lost its connection ({lost})"),
                       (rc == 0, f"the sender's close returned {rc}"),
                       (clean and arrived == count,
                        f"{arrived} of {count} arrived"
                        + ("" if clean else ", some corrupt, repeated or out of order")),
                       (pinger_ok, f"the pinger: {pinger_text}")])
    measured = (f"{count} × 1 MiB held back {hold_s:.0f} s (keep-alive {keepalive} ms"
                f"{f', {MQTT_KEEPALIVE_MIN_MS} in effect' if transport == 'mqtt' else ''}): connections lost "
                f"{lost}{' (' + dropped + ')' if dropped else ''}; then {arrived} of {count} "
                f"arrived, close rc {rc}; {cost_text}; {pinger_text}")
    bound = (f"held {hold_s:.0f} s > {dead_bound_ms(transport, keepalive)} ms with 0 lost; "
             f"every message arrives; ping gap ≤ {PING_GAP_MS} ms")
    return Result(held, measured, bound, why)


def scenario_hijack(args, transport):
    """A call from another connection whose metadata names a live peer's id
    (nq-id, with or without nq-stream) neither takes that peer's session nor
    feeds it: the server refuses the call and the peer goes on."""
    victim = hex_id()
    with Scene(args, transport, pinger_id=victim) as scene:
        errors0 = scene.stats().get("protocol_errors", 0)
        calls = []
        for stream in (1, 0):
            calls.append(grpc_attacker(scene, ["hijack", "--id", victim, "--stream", stream,
                                               "--for-ms", 2000], r"hijack .*", 20))
        refused = scene.wait_stat("protocol_errors", errors0 + 2, 3) is not None
        time.sleep(0.5)
        pinger_ok, pinger_text = scene.pinger_verdict()
        stats = scene.stats()
        summary = scene.finish()
    reached = summary.get("corrupt", 1)
    ended = all(c.get("ended") == 1 for c in calls)
    held, why = judge([(refused and ended, "a hijacking call was not refused"),
                       (reached == 0, f"{reached} injected messages reached get"),
                       (stats.get("lost", 1) == 0, "the victim's connection was lost"),
                       (pinger_ok, f"the pinger: {pinger_text}")])
    measured = ("; ".join(f"call {'with' if c['stream'] else 'without'} nq-stream ended by the "
                          f"server after {c['ms']} ms (status {c['status']})" for c in calls)
                + f"; {'nothing' if reached == 0 else reached} reached get; victim: "
                + pinger_text)
    bound = f"both refused; victim's echoes on, gap ≤ {PING_GAP_MS} ms, none lost"
    return Result(held, measured, bound, why)


def scenario_server_client_id(args, transport):
    """Someone connecting to the broker with the server's MQTT client id
    (its id in hex) takes the server's broker connection for a moment, not
    for good: the server connects again and its clients carry on, with
    nothing lost or repeated."""
    attacks = 3 if args.long else 1
    # paho tries again after 1 s, then the client's session resumes.
    gap_bound_ms = 8000
    acked = ["--acked", 1]
    with Scene(args, transport, server=acked, pinger=acked + ["--reconnect", 50]) as scene:
        before = scene.sample()
        back_ms = []
        for _ in range(attacks):
            t0 = time.monotonic()
            # Taken over for the time a publish takes.
            m = Mqtt(scene.stage.broker_port, scene.server_id)
            m.publish("nq-hostile", b"x")
            m.close()
            # The echoes in flight may still come; then they stop until the
            # server is back.
            time.sleep(1.5)
            stalled = pinger_received(scene)
            back = wait_received(scene, stalled + 5, gap_bound_ms / 1000 + 10)
            back_ms.append(None if back is None else int((back - t0) * 1000))
        after = scene.sample()
        alive = scene.server.proc.poll() is None
        pinger_ok, pinger_text = scene.pinger_verdict(gap_bound_ms)
        scene.finish()
    _, _, cost_text = cost(before, after)
    every = alive and all(b is not None for b in back_ms)
    held, why = judge([(every, "the server's echoes did not come back"),
                       (pinger_ok, f"the pinger: {pinger_text}")])
    measured = (f"{attacks} takeover{'s' if attacks > 1 else ''} of the server's client id: "
                "echoes flowing again by "
                + ", ".join("never" if b is None else f"{b} ms" for b in back_ms)
                + f" after it; {cost_text}; {pinger_text}")
    bound = f"server back, ping gap ≤ {gap_bound_ms} ms, nothing lost or repeated"
    return Result(held, measured, bound, why)


def pinger_received(scene):
    """The pinger's echoes so far, by its latest report."""
    for _, text in reversed(scene.pinger.lines):
        if " progress " in text:
            return counts_of(text).get("received", 0)
    return 0


def wait_received(scene, n, timeout):
    """The time the pinger first reported n echoes or more, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and scene.pinger.proc.poll() is None:
        for t, text in scene.pinger.lines:
            if " progress " in text and counts_of(text).get("received", 0) >= n:
                return t
        time.sleep(0.05)
    return None


# A server keeps at most this many clients heard only in their INI
# (transports/mqtt/route.c).
STRANGERS_MAX = 1024


def scenario_forged_ini(args, transport):
    """INIs anyone publishes on an open broker cost a bounded number of
    sessions (at most 1,024 kept, the longest silent dropped), and none
    holds a closing server for good (close timeout: wait as long as it
    takes): silent for three keep-alive periods, a forged client is taken
    for lost."""
    keepalive = 1000
    forged = 5000 if args.long else 1200
    close_bound_ms = 3 * keepalive + 2000
    with Scene(args, transport, server=["--keepalive", keepalive, "--close-timeout", -1,
                                        "--log", 1]) as scene:
        before = scene.sample()
        m = Mqtt(scene.stage.broker_port, f"nq-hostile-{hex_id()[:8]}")
        for _ in range(forged):
            client = hex_id()
            m.publish(f"c2s/{client}", frame(bytes.fromhex(client)))
        m.close()
        full = scene.wait_stat("peers", STRANGERS_MAX + 1, 10) is not None
        time.sleep(0.5)
        most = max(counts_of(text).get("peers", 0) for _, text in scene.server.lines
                   if " stats " in text)
        after = scene.sample()
        pinger_ok, pinger_text = scene.pinger_verdict()
        scene.pinger.finish()
        t0 = time.monotonic()
        scene.server.signal(signal.SIGTERM)
        _, closed = scene.server.wait_for(r"closed rc=(-?\d+) ms=(\d+)", close_bound_ms / 1000 + 15)
        close_ms = int(closed.group(2)) if closed else None
        waited_ms = int((time.monotonic() - t0) * 1000)
        scene.finish()
    grew, _, cost_text = cost(before, after)
    held, why = judge([(full, "the forged INIs were never listed"),
                       (most <= STRANGERS_MAX + 1, f"{most} peers listed at once"),
                       (close_ms is not None and close_ms <= close_bound_ms,
                        f"close took {close_ms if close_ms is not None else waited_ms} ms"),
                       (grew is not None and grew <= RSS_BOUND_MIB, "the server's memory grew"),
                       (pinger_ok, f"the pinger: {pinger_text}")])
    measured = (f"{forged:,} forged INIs: at most {most:,} peers listed (the pinger and "
                f"{most - 1:,} forged); the server's close returned after {close_ms} ms (rc "
                f"{closed.group(1) if closed else '?'}); {cost_text}; {pinger_text}")
    bound = (f"≤ {STRANGERS_MAX:,} forged kept; close ≤ {close_bound_ms} ms (3 × keep-alive "
             f"{keepalive} ms + 2 s); RSS +{RSS_BOUND_MIB} MiB, ping gap ≤ {PING_GAP_MS} ms")
    return Result(held, measured, bound, why)


def scenario_forged_fin(args, transport):
    """A FIN someone publishes on a client's topic does not make that
    client's id unusable on the server: a client coming with that id is
    served."""
    victim = hex_id()
    serve_bound_ms = 3000
    with Scene(args, transport) as scene:
        first = scene.stage.start("clients", scene.port, ["--count", 1, "--id", victim])
        if first.wait_for(r"echoed n=1 ", 15)[0] is None:
            raise RuntimeError("the victim was not served: %r" % errors_of(first))
        # The victim's FIN is a 16-byte frame holding its own id.
        mqtt_publish(scene, f"c2s/{victim}", [frame(bytes.fromhex(victim))])
        time.sleep(0.5)
        t0 = time.monotonic()
        again = scene.stage.start("clients", scene.port, ["--count", 1, "--id", victim,
                                                          "--timeout-ms", serve_bound_ms + 2000])
        t, m = again.wait_for(r"echoed n=(\d+) ", serve_bound_ms / 1000 + 10)
        served_ms = int((t - t0) * 1000) if m and m.group(1) == "1" else None
        pinger_ok, pinger_text = scene.pinger_verdict()
        # Gone before the server closes, which would wait for them.
        first.finish()
        again.finish()
        scene.finish()
    held, why = judge([(served_ms is not None and served_ms <= serve_bound_ms,
                        f"a client with the id was {'not served' if served_ms is None else f'served after {served_ms} ms'}"),
                       (pinger_ok, f"the pinger: {pinger_text}")])
    measured = (f"after the forged FIN a client with the victim's id was "
                + ("never served" if served_ms is None else f"served in {served_ms} ms")
                + f"; {pinger_text}")
    bound = f"served ≤ {serve_bound_ms} ms, ping gap ≤ {PING_GAP_MS} ms"
    return Result(held, measured, bound, why)


def scenario_trickle(args, transport):
    """A peer that sent its INI and then trickles a frame in, a byte every
    100 ms, is closed once the frame gained less than 1 KiB in each of two
    handshake periods in a row."""
    handshake = 1000 if args.long else 300
    close_bound_ms = 3 * handshake + 500
    for_s = close_bound_ms / 1000 + 3
    with Scene(args, transport, server=["--handshake-ms", handshake]) as scene:
        before = scene.sample()
        timeouts0 = scene.stats().get("handshake_timeouts", 0)
        if transport in ("tcp", "tls"):
            with raw_connect(scene) as s:
                first = frame(bytes.fromhex(hex_id())) + frame_header(MIB)
                sent, closed_s = stream_after(s, first, 1, 0.1, MIB, for_s)
            closed_ms = None if closed_s is None else int(closed_s * 1000)
        else:
            a = grpc_attacker(scene, ["header", "--ini", 1, "--len", MIB, "--piece", 1,
                                      "--every-ms", 100, "--for-ms", int(for_s * 1000)],
                              r"attack .*", for_s + 20)
            sent, closed_ms = a["sent"], a["ms"] if a["ended"] else None
        counted = scene.wait_stat("handshake_timeouts", timeouts0 + 1, 3) is not None
        after = scene.sample()
        pinger_ok, pinger_text = scene.pinger_verdict()
        summary = scene.finish()
    _, _, cost_text = cost(before, after)
    reached = summary.get("corrupt", 1)
    held, why = judge([(closed_ms is not None and closed_ms <= close_bound_ms,
                        f"closed after {closed_ms} ms"),
                       (counted, "no handshake timeout counted"),
                       (reached == 0, f"{reached} messages of it reached get"),
                       (pinger_ok, f"the pinger: {pinger_text}")])
    measured = (f"closed {closed_ms} ms into the trickle, after {sent} bytes; "
                f"{cost_text}; {pinger_text}")
    bound = (f"closed ≤ {close_bound_ms} ms (handshake timeout {handshake} ms), ping gap ≤ "
             f"{PING_GAP_MS} ms")
    return Result(held, measured, bound, why)


def scenario_id_claim(args, transport):
    """A raw connection that claims a client's id before the client comes
    does not lock it out: the client, connecting with that id, is served
    at once and the squatter's connection is closed."""
    victim = hex_id()
    serve_bound_ms = 2000
    with Scene(args, transport, pinger_id=victim, start_pinger=False) as scene:
        s = raw_connect(scene)
        s.sendall(frame(bytes.fromhex(victim)))
        listed = scene.wait_stat("peers", 1, 5) is not None
        time.sleep(0.5 if not args.long else 3.0)
        t0 = time.monotonic()
        ready = scene.start_pinger()
        served_ms = int((ready - t0) * 1000)
        squatter_closed = closed_by_peer(s, 2)
        s.close()
        time.sleep(1.0)
        peers = scene.stats().get("peers")
        pinger_ok, pinger_text = scene.pinger_verdict()
        scene.finish()
    held, why = judge([(listed, "the squatter was never listed"),
                       (served_ms <= serve_bound_ms, f"the client waited {served_ms} ms"),
                       (squatter_closed, "the squatter's connection stayed open"),
                       (peers == 1, f"{peers} peers listed"),
                       (pinger_ok, f"the pinger: {pinger_text}")])
    measured = (f"client with the claimed id echoed {served_ms} ms after it started; squatter "
                f"{'closed' if squatter_closed else 'still open'}; {pinger_text}")
    bound = f"served ≤ {serve_bound_ms} ms, squatter closed, ping gap ≤ {PING_GAP_MS} ms"
    return Result(held, measured, bound, why)


def scenario_self_connect(args, transport):
    """A TCP client whose server is not listening never connects to itself,
    even where the kernel hands it the server's port as its own (TCP's
    simultaneous open): it takes the attempt for a failed one."""
    # In a network namespace of its own, where the only ports a connection
    # may take are the server's and one more, the kernel picks the server's.
    port = free_port() & ~1
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    script = ('ip link set lo up && echo "$1 $2" > /proc/sys/net/ipv4/ip_local_port_range '
              '&& shift 2 && exec "$@"')
    with Scene(args, transport) as scene:
        client = scene.stage.spawn(unshare + ["sh", "-c", script, "sh", port, port + 1,
                                              args.peer, "clients", "--protocol", "tcp",
                                              "--port", port, "--count", 1,
                                              "--timeout-ms", 2000, "--log", 1])
        _, echoed = client.wait_for(r"echoed n=(\d+)", 15)
        time.sleep(0.5)  # the pinger meanwhile
        trapped = [text for _, text in client.lines if "connected to itself" in text]
        errors = errors_of(client, 5)
        pinger_ok, pinger_text = scene.pinger_verdict()
        scene.finish()
    codes = [int(m.group(1)) for e in errors for m in [re.search(r"code=(-?\d+)", e)] if m]
    if echoed is None and not trapped:
        raise RuntimeError("the client did not run: %r" % client.lines[-3:])
    held, why = judge([(bool(trapped), "the kernel never handed the client its server's port"),
                       (echoed is not None and echoed.group(1) == "0",
                        "the client took itself for its server"),
                       (NQ_ECONNREFUSED in codes, f"the client failed with {codes}"),
                       (pinger_ok, f"the pinger: {pinger_text}")])
    measured = (f"the connection to port {port} came from port {port} "
                f"({len(trapped)} time{'s' if len(trapped) != 1 else ''}, logged); the client "
                f"failed with {codes[0] if codes else '?'} (NQ_ECONNREFUSED), never served; "
                f"{pinger_text}")
    bound = f"never connected to itself, ping gap ≤ {PING_GAP_MS} ms"
    return Result(held, measured, bound, why)


# Scenario: (its row of the issue, the transports it runs on).
SCENARIOS = {
    "before_ini": (1, scenario_before_ini, ("tcp", "tls", "grpc", "mqtt")),
    "paused_reset": (2, scenario_paused_reset, ("tcp", "tls")),
    "flow_control": (3, scenario_flow_control, ("tcp", "tls", "grpc", "mqtt")),
    "hijack": (5, scenario_hijack, ("grpc",)),
    "server_client_id": (6, scenario_server_client_id, ("mqtt",)),
    "forged_ini": (6, scenario_forged_ini, ("mqtt",)),
    "forged_fin": (6, scenario_forged_fin, ("mqtt",)),
    "trickle": (9, scenario_trickle, ("tcp", "tls", "grpc")),
    "id_claim": (9, scenario_id_claim, ("tcp",)),
    "self_connect": (9, scenario_self_connect, ("tcp",)),
}

# The rows the load tables carry: (row, what, transports, which load rows).
BY_LOAD = [
    (4, "receive bound per transport", "tcp tls grpc mqtt",
     "load table \"Slow consumer\": the server's peak RSS against its promised bound, "
     "written and acked, on every transport"),
    (7, "gRPC connect storm", "grpc",
     "load table \"Many clients\", row grpc: every client connects at once and gets its echo"),
    (8, "no silent MQTT loss at many clients", "mqtt",
     "load table \"Many clients\", row mqtt: every client's echo arrives through one "
     "mosquitto"),
]


# ---- the command line -------------------------------------------------------------------------

# A short scenario's whole budget, under CTest's timeout.
SHORT_BUDGET_S = 80



def run_one(args, name, transport):
    try:
        with budget(None if args.long else SHORT_BUDGET_S):
            r = SCENARIOS[name][1](args, transport)
    except Exception as e:  # a scenario that cannot run has not held
        r = Result(False, f"could not run: {e}", "", f"could not run: {e}")
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["run", "report", "list"])
    p.add_argument("rest", nargs="*")
    p.add_argument("--peer", default=os.environ.get("NQ_LOAD_PEER", "load_peer"))
    p.add_argument("--attacker", default=os.environ.get("NQ_HOSTILE_PEER", ""))
    p.add_argument("--long", action="store_true")
    args = p.parse_args()
    if args.command == "list":
        for name, (row, fn, transports) in SCENARIOS.items():
            print(f"{name} (row {row}; {' '.join(transports)}): {promise_of(fn)}")
        return 0
    if args.command == "run":
        if (len(args.rest) != 2 or args.rest[0] not in SCENARIOS
                or args.rest[1] not in SCENARIOS[args.rest[0]][2]):
            p.error("run SCENARIO TRANSPORT (see list)")
        name, transport = args.rest
        started = time.monotonic()
        r = run_one(args, name, transport)
        print(f"{name} over {transport}: {'held' if r.held else 'FAILED: ' + r.why}\n"
              f"  measured: {r.measured}\n  bound: {r.bound}\n"
              f"({time.monotonic() - started:.0f} s)")
        return 0 if r.held else 1
    if len(args.rest) != 1:
        p.error("report FILE")
    args.long = True
    rows = []
    for name, (row, fn, transports) in SCENARIOS.items():
        for transport in transports:
            r = run_one(args, name, transport)
            print(f"{name} {transport}: {'held' if r.held else 'FAILED: ' + r.why}: "
                  f"{r.measured}", flush=True)
            rows.append([row, name, transport, promise_of(fn),
                         "yes" if r.held else f"**no**: {r.why}", r.measured, r.bound])
    for row, what, transports, where in BY_LOAD:
        rows.append([row, what, transports, "as the load table says", "see there", where,
                     "see there"])
    rows.sort(key=lambda cells: cells[0])
    put_block(args.rest[0], HOSTILE_BEGIN, HOSTILE_END, render(rows), after_load_tables)
    return 0


def render(rows):
    out = [HOSTILE_BEGIN, "", "## Hostile peers", "",
           wrap(f"Written by `tests/trials/hostile.py report` (long run) at `{git_head()}`, on "
                f"127.0.0.1 with every peer a process of its own, {os.cpu_count()} cores shared "
                "by all of them. In each scenario one well-behaved client (the pinger: "
                "`load_peer soak`, one message of up to 64 bytes in flight, 50 a second) keeps "
                "a round trip going through the server the whole time, and an attacker does "
                "what the row of the issue \"Hostile and heavy traffic\" names: Python's own "
                "sockets over TCP and TLS, MQTT packets it writes itself (an open broker takes "
                "any client id and any topic), `hostile_peer` (grpc core by hand) over gRPC. Held is computed from the measures against the bound; the "
                "server's cost is its peak resident memory (VmHWM) growth and CPU time over the "
                "attack. `hostile.py run SCENARIO TRANSPORT --long` runs one row; the short "
                "forms are the CTest tests hostile_SCENARIO_TRANSPORT."), ""]
    out += markdown_table(["row", "scenario", "transport", "promise", "held", "measured",
                           "bound"], rows)
    if any(cells[4].startswith("**no**") for cells in rows):
        out += ["", wrap("Where a row does not hold, its held cell says why; its CTest test "
                         "is listed disabled in `tests/trials/CMakeLists.txt` until the library "
                         "is fixed.")]
    out += ["", HOSTILE_END]
    return "\n".join(out) + "\n"


def after_load_tables(lines):
    """Where the table goes in a file without it: right after the load
    tables (before the notes that follow them), else at the end."""
    for i, line in enumerate(lines):
        if line.strip() == LOAD_END:
            return i + 1
    return len(lines)


if __name__ == "__main__":
    sys.exit(main())
