"""What the load scenarios (load.py) and the hostile-peer scenarios
(hostile.py) share: free loopback ports, what /proc tells about a process,
a stage that starts load_peer processes (and a mosquitto for MQTT, a
certificate for TLS) and stops every one of them, a short run's time budget,
and the writing of a table block into docs/reliability.md.

Every process a stage starts runs in a process group of its own and dies with
the script (load_peer sets PR_SET_PDEATHSIG, and starts mosquitto through
`load_peer exec`)."""

import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time

from trials import Peer

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
    end.  args.peer is the load_peer program."""

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

    def spawn(self, argv):
        """Any program, in its own process group, stopped with the stage; it
        must die with this script by itself (load_peer exec, or its own
        PR_SET_PDEATHSIG)."""
        proc = subprocess.Popen([str(x) for x in argv], stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
        peer = Peer(proc)
        self.peers.append(peer)
        return peer

    def start(self, mode, port, extra=()):
        """A load_peer process in its own process group."""
        argv = [self.args.peer, mode, "--protocol", self.transport, "--port", str(port)]
        if self.transport == "tls":
            argv += ["--cert", self.cert] + (["--key", self.key] if mode == "serve" else [])
        return self.spawn(argv + list(extra))

    def serve(self, extra=()):
        """A server, once it listens: (peer, the port clients use)."""
        server = self.start("serve", self.broker_port or 0, extra)
        t, m = server.wait_for(r"listening port=(\d+)", 15)
        if t is None:
            raise RuntimeError("the server did not start: %r" % server.lines)
        return server, self.broker_port or int(m.group(1))


# ---- what a load_peer reported --------------------------------------------------------

def counts_of(text):
    return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", text)}


def last_counts(peer, kinds=("progress", "summary")):
    """The counters of a peer's last progress or summary line."""
    for _, text in reversed(peer.lines):
        words = text.split()
        if len(words) > 1 and words[1] in kinds:
            return counts_of(text)
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


def mib(kib):
    return "?" if kib is None else f"{kib / 1024:.1f} MiB"


# ---- a short run's budget ---------------------------------------------------------------

@contextlib.contextmanager
def budget(seconds):
    """Raises TimeoutError in the body once seconds have passed (None: no
    limit), so that a short run ends under CTest's timeout with every
    process it started still stopped by its stage."""
    if seconds is None:
        yield
        return

    def out_of_time(signum, frame):
        raise TimeoutError(f"the scenario ran out of its {seconds} s")

    old = signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---- docs/reliability.md -----------------------------------------------------------------

def wrap(text):
    return textwrap.fill(text, width=80, break_long_words=False, break_on_hyphens=False)


def git_head():
    here = os.path.dirname(os.path.abspath(__file__))
    return subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip() or "unknown"


def markdown_table(columns, rows):
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for cells in rows:
        cells = list(cells) + [""] * (len(columns) - len(cells))
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    return out


def put_block(path, begin, end, block, place):
    """Puts block (which starts with begin and ends with end) in place of
    the text between those markers in path or, without them, at the line
    place(lines) returns; the rest of the file stays as it was."""
    with open(path) as f:
        text = f.read()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + block.rstrip("\n") + tail
    else:
        lines = text.split("\n")
        at = place(lines)
        lines[at:at] = ["", block.rstrip("\n")]
        text = "\n".join(lines)
    with open(path, "w") as f:
        f.write(text)
