"""netlab: two network namespaces joined by linkem, for the fault trials.

    with Lab(linkem="build/tests/faults/nq_linkem") as lab:
        server = lab.spawn("a", ["trial_peer", "serve", ...])
        lab.fault("partition on")            # both directions
        lab.fault("a2b loss 0.2")            # one direction
        lab.ip("a"), lab.ip("b")             # 10.77.0.1, 10.77.0.2

Namespace "a" and namespace "b" each have a loopback and one TUN device;
every packet between them crosses linkem, which applies the faults in force
(see tests/faults/linkem.c).  The namespaces' names carry this process's id
and a counter, so labs of parallel tests never meet.  Everything a lab
started is killed (its process group) and both namespaces are deleted when
the lab ends, whatever happened; the lab also ends at interpreter exit.
Needs root (ip netns, /dev/net/tun).
"""

import atexit
import itertools
import os
import signal
import socket
import subprocess
import tempfile
import time

ADDRESSES = {"a": "10.77.0.1", "b": "10.77.0.2"}
_counter = itertools.count()
_open_labs = []


def _run(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Lab:
    def __init__(self, linkem, seed=1):
        self.linkem_path = linkem
        self.seed = seed
        n = next(_counter)
        tag = f"{os.getpid() % 100000}x{n}"
        self.ns = {side: f"nqf-{tag}-{side}" for side in ("a", "b")}
        self.dev = {side: f"nqf{tag}{side}"[:15] for side in ("a", "b")}
        self.dir = tempfile.mkdtemp(prefix="nqlab-")
        self.control = os.path.join(self.dir, "control")
        self.procs = []
        self.linkem = None

    # ---- life ----------------------------------------------------------------

    def __enter__(self):
        _open_labs.append(self)
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _start(self):
        for side in ("a", "b"):
            _run("ip", "netns", "add", self.ns[side])
        self.linkem = subprocess.Popen(
            [self.linkem_path, "--a", self.dev["a"], "--b", self.dev["b"],
             "--control", self.control, "--seed", str(self.seed)],
            stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.linkem.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"linkem did not start: {line!r}")
        for side, other in (("a", "b"), ("b", "a")):
            ns, dev = self.ns[side], self.dev[side]
            _run("ip", "link", "set", dev, "netns", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "addr", "add", ADDRESSES[side], "peer", ADDRESSES[other],
                 "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")

    def close(self):
        for p in self.procs:
            _kill_group(p)
        self.procs = []
        if self.linkem is not None:
            _kill_group(self.linkem)
            self.linkem = None
        for side in ("a", "b"):
            subprocess.run(["ip", "netns", "del", self.ns[side]],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for name in os.listdir(self.dir):
                os.unlink(os.path.join(self.dir, name))
            os.rmdir(self.dir)
        except OSError:
            pass
        if self in _open_labs:
            _open_labs.remove(self)

    # ---- use -------------------------------------------------------------------

    def ip(self, side):
        return ADDRESSES[side]

    def spawn(self, side, argv, **kwargs):
        """Starts argv in the namespace of side, in a process group of its own,
        its standard output a pipe of text lines."""
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[side]] + list(argv),
                             stdout=subprocess.PIPE, text=True, start_new_session=True,
                             **kwargs)
        self.procs.append(p)
        return p

    def fault(self, command):
        """Sends one command to linkem and returns its answer."""
        me = os.path.join(self.dir, f"client-{time.monotonic_ns()}")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.bind(me)
            s.settimeout(5)
            s.sendto(command.encode(), self.control)
            reply = s.recv(256).decode()
        finally:
            s.close()
            os.unlink(me)
        if reply.startswith("error"):
            raise ValueError(f"linkem: {command}: {reply}")
        return reply


def _kill_group(p):
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


@atexit.register
def _close_all():
    for lab in list(_open_labs):
        lab.close()
