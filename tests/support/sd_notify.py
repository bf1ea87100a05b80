"""The service manager's side of systemd's notify protocol, for tests: an
AF_UNIX datagram socket a test passes to portier as NOTIFY_SOCKET, and a
receiver thread that records every message (one datagram = one message of
`KEY=VALUE` lines) with its arrival time. The same socket plays a syslog
daemon for [log] target = "syslog" (`raw` keeps every datagram as text).

    with NotifySocket() as ns:
        p = make_portier(users, env=ns.env())
        msg = ns.wait_for("READY", "1")
"""
from __future__ import annotations

import os
import re
import socket
import tempfile
import threading
import time
from typing import Callable


class NotifySocket:
    def __init__(self, *, start: bool = True) -> None:
        # A short path: sun_path holds 107 bytes.
        self.dir = tempfile.mkdtemp(prefix="sdn")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)   # lets the receiver notice close()
        self.messages: list[tuple[float, dict[str, str]]] = []   # (monotonic, fields)
        self.raw: list[str] = []
        self.cond = threading.Condition()
        self.on_message: Callable[[dict[str, str]], None] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="sd-notify", daemon=True)
        if start:
            self._thread.start()

    def start(self) -> None:
        """Start receiving (for a socket made with start=False, left unread
        so that its queue fills up)."""
        self._thread.start()

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.path, **extra}

    def _run(self) -> None:
        while True:
            if self._closed:
                return
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode("utf-8", "replace")
            fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
            if self.on_message:
                self.on_message(fields)
            with self.cond:
                self.messages.append((time.monotonic(), fields))
                self.raw.append(text)
                self.cond.notify_all()

    def wait_raw(self, regex: str, *, since: int = 0, timeout: float = 10.0) -> re.Match:
        """The first datagram at index >= since matching regex; waits for it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for text in self.raw[since:]:
                    m = re.search(regex, text)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no datagram matching {regex!r} within {timeout}s; "
                                       f"got {self.raw[since:]}")
                self.cond.wait(left)

    def all(self) -> list[dict[str, str]]:
        with self.cond:
            return [m for _, m in self.messages]

    def wait_for(self, key: str, value: str | None = None, *, since: int = 0,
                 timeout: float = 10.0) -> dict[str, str]:
        """The first message at index >= since with key (=value); waits for it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for _, m in self.messages[since:]:
                    if key in m and (value is None or m[key] == value):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {key}={value} notification within {timeout}s; "
                                       f"got {[m for _, m in self.messages]}")
                self.cond.wait(left)

    def index_of(self, key: str, value: str | None = None, since: int = 0) -> int:
        """Index of the first message with key (=value), after waiting for it."""
        self.wait_for(key, value, since=since)
        with self.cond:
            for i in range(since, len(self.messages)):
                m = self.messages[i][1]
                if key in m and (value is None or m[key] == value):
                    return i
        raise AssertionError("unreachable")

    def mark(self) -> int:
        with self.cond:
            return len(self.messages)

    def close(self) -> None:
        self._closed = True
        if self._thread.is_alive():
            self._thread.join(2)
        self.sock.close()
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass

    def __enter__(self) -> "NotifySocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
