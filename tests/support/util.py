"""Small shared helpers: free ports, waiting for sockets, line logs with
regex waits (no sleeps-as-synchronisation: every wait has an event and a
deadline)."""
from __future__ import annotations

import os
import random
import re
import socket
import threading
import time
from pathlib import Path
from typing import Iterable

_handed_out: set[int] = set()
_port_lock = threading.Lock()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(lo: int = 20000, hi: int = 32000) -> int:
    """A TCP port in [lo, hi) that is bindable on 127.0.0.1 right now and was
    not handed out before by this process.  Stays below the ephemeral range
    (32768+) so a kernel-chosen source port cannot steal it later."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    with _port_lock:
        for _ in range(2000):
            p = rng.randrange(lo, hi)
            if p in _handed_out:
                continue
            if port_is_free(p) and port_is_free(p, "0.0.0.0"):
                _handed_out.add(p)
                return p
    raise RuntimeError("no free port found")


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connect -> ECONNREFUSED)."""
    return free_port()


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0,
                  proc=None) -> None:
    """Poll-connect until something accepts on host:port."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while waiting for "
                               f"{host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing accepted on {host}:{port} within {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def die_with_parent(argv: list[str]) -> list[str]:
    """Prefix argv so the child gets SIGTERM if the test runner dies
    (PR_SET_PDEATHSIG via util-linux setpriv; essential since util-linux
    is always present on Debian).  No-op if setpriv is missing."""
    import shutil
    sp = shutil.which("setpriv")
    return [sp, "--pdeathsig", "TERM", "--", *argv] if sp else list(argv)


def collapse_plus(s: str) -> str:
    """Dovecot < 2.3.8 printed runs of '+' in IMAP proxy states; normalise."""
    return re.sub(r"\+{2,}", "+", s)


class LineLog:
    """A growing list of text lines with a condition variable.

    Producers call `append(line)`.  Consumers call `wait_for(regex, timeout,
    since=mark)`, which returns the first `re.Match` in a line at index >=
    `since`, or raises TimeoutError with the log tail."""

    def __init__(self, name: str = "log") -> None:
        self.name = name
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self.closed = False

    def append(self, line: str) -> None:
        with self._cond:
            self._lines.append(line)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self._lines)

    def lines(self, since: int = 0) -> list[str]:
        with self._cond:
            return list(self._lines[since:])

    def text(self, since: int = 0) -> str:
        return "\n".join(self.lines(since))

    def refresh(self) -> None:   # overridden by file followers
        pass

    def find(self, regex: str | re.Pattern, since: int = 0) -> list[re.Match]:
        self.refresh()
        rx = re.compile(regex) if isinstance(regex, str) else regex
        out = []
        for line in self.lines(since):
            m = rx.search(line)
            if m:
                out.append(m)
        return out

    def wait_for(self, regex: str | re.Pattern, timeout: float = 10.0,
                 since: int = 0, count: int = 1) -> re.Match:
        """Wait until `count` lines (index >= since) match; return the last of
        those matches."""
        rx = re.compile(regex) if isinstance(regex, str) else regex
        deadline = time.monotonic() + timeout
        while True:
            self.refresh()
            with self._cond:
                found = []
                for line in self._lines[since:]:
                    m = rx.search(line)
                    if m:
                        found.append(m)
                        if len(found) >= count:
                            return m
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    tail = "\n".join(self._lines[-40:])
                    raise TimeoutError(
                        f"{self.name}: no line matching {rx.pattern!r} (x{count}) within "
                        f"{timeout}s; last lines:\n{tail}")
                if self.closed and not self._follows_file():
                    tail = "\n".join(self._lines[-40:])
                    raise TimeoutError(
                        f"{self.name}: stream closed without a line matching "
                        f"{rx.pattern!r}; last lines:\n{tail}")
                self._cond.wait(min(remaining, self._poll_interval()))

    def _follows_file(self) -> bool:
        return False

    def _poll_interval(self) -> float:
        return 1.0


class FileLog(LineLog):
    """LineLog that follows a file written by another process (Dovecot's
    log_path).  `refresh()` reads newly appended complete lines."""

    def __init__(self, path: str | os.PathLike, name: str | None = None) -> None:
        super().__init__(name or str(path))
        self.path = Path(path)
        self._pos = 0
        self._partial = b""
        self._rlock = threading.Lock()

    def refresh(self) -> None:
        with self._rlock:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self._pos)
                    data = f.read()
            except FileNotFoundError:
                return
            if not data:
                return
            self._pos += len(data)
            data = self._partial + data
            *complete, self._partial = data.split(b"\n")
            for raw in complete:
                self.append(raw.decode("utf-8", "replace"))

    def _follows_file(self) -> bool:
        return True

    def _poll_interval(self) -> float:
        return 0.02


def read_lines(sock: socket.socket, n: int, timeout: float = 5.0) -> list[bytes]:
    """Read exactly n CRLF/LF-terminated lines from a raw socket."""
    sock.settimeout(timeout)
    buf = b""
    while buf.count(b"\n") < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n")[:n]


def assert_absent(haystack: str, needles: Iterable[str], what: str = "log") -> None:
    for n in needles:
        assert n not in haystack, f"{what} contains secret {n!r}"
