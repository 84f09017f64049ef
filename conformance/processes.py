"""Peer processes as the runner drives them: one long-lived process per
language and lane, fed runs as JSON lines on standard input; its JSON lines
on standard output are routed to the run they name."""

import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path


class Run:
    """One run in a peer process: its events as they arrive."""

    def __init__(self, process, spec):
        self.process = process
        self.spec = spec
        self.events = []
        self.done = False
        self._queue = queue.Queue()

    def deliver(self, event):
        self._queue.put(event)

    def next(self, deadline):
        """The next event, or None when the deadline passes first."""
        if self.done:
            return None
        try:
            event = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        self.events.append(event)
        if event.get("event") in ("done", "exit"):
            self.done = True
        return event

    def wait_for(self, name, deadline):
        """The first event called name (None when the run ends or the
        deadline passes without it)."""
        for event in self.events:
            if event.get("event") == name:
                return event
        while True:
            event = self.next(deadline)
            if event is None or event.get("event") in ("done", "exit"):
                return event if event is not None and event.get("event") == name else None
            if event.get("event") == name:
                return event

    def finish(self, deadline):
        """Waits for the end of the run; False when the deadline came first."""
        while not self.done:
            if self.next(deadline) is None:
                return self.done
        return True


class PeerProcess:
    """A peer program started with --stdin.  Its standard error goes to
    log_path; stderr_tail() shows the end of it."""

    def __init__(self, language, argv, env, log_path):
        self.language = language
        self.argv = argv
        self.log_path = Path(log_path)
        self._runs = {}
        self._lock = threading.Lock()
        self._exited = False
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            env={**os.environ, **env}, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, name=f"read-{language}", daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                self._note(f"not JSON on stdout: {line.rstrip()[:200]}")
                continue
            with self._lock:
                run = self._runs.get(str(event.get("run", "")))
                if run is not None and event.get("event") == "done":
                    del self._runs[str(event.get("run", ""))]
            if run is not None:
                run.deliver(event)
            else:
                self._note(f"an event for no run: {line.rstrip()[:200]}")
        with self._lock:
            self._exited = True
            runs, self._runs = list(self._runs.values()), {}
        code = self.proc.wait()
        for run in runs:
            run.deliver({"event": "exit", "detail": f"the {self.language} peer exited with {code}"})

    def _note(self, text):
        self._log.write(f"runner: {text}\n".encode())
        self._log.flush()

    def alive(self):
        with self._lock:
            return not self._exited and self.proc.poll() is None

    def start(self, spec):
        """Starts a run; returns its Run."""
        run = Run(self, spec)
        with self._lock:
            if self._exited:
                run.deliver({"event": "exit", "detail": f"the {self.language} peer is not running"})
                return run
            self._runs[str(spec["run"])] = run
        try:
            self.proc.stdin.write(json.dumps(spec) + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            run.deliver({"event": "exit", "detail": f"the {self.language} peer took no input: {exc}"})
        return run

    def stderr_tail(self, lines=15):
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace=10):
        """Ends the process: closes its input, then kills it if it lingers."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
        self._log.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
