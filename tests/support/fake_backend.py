"""A scripted, protocol-agnostic fake backend for fault injection.

A `FakeBackend` listens on 127.0.0.1 (port 0 by default) and runs a *script*
- a list of steps - on every accepted connection, in its own thread.  It
records everything each connection received, both as one byte string and as
the sequence of individual `recv()` results ("chunks"), so tests can check
what arrived in one TCP segment (pipelining).

    fb = FakeBackend([send_line("* OK [CAPABILITY IMAP4rev1 ID] hi"),
                      expect_lines(2), stall()])
    ... point a proxy user at fb.port ...
    fb.wait_for_connections(1)
    conn = fb.connections[0]
    conn.received, conn.chunks, conn.lines()

`script` may also be a callable `f(index) -> list[Step]` to vary behaviour
per connection attempt (e.g. fail the first attempt, succeed on the retry).

Steps (all return objects usable in a list):
  send(data) / send_line(text)      write bytes / text + CRLF
  expect_line(regex=None)           read one line; on regex mismatch the
  expect_lines(n)                   connection is recorded as failed & closed
  read_chunk()                      one recv(), recorded
  respond(regex, reply)             read a line, must match; send reply with
                                    {0},{1},{name} substituted from the match
  serve(handler)                    loop: line -> handler(line, conn) returns
                                    bytes/str/None/CLOSE until CLOSE or EOF
  stall(seconds=None)               read & record until peer closes (or the
                                    backend is closed / seconds pass)
  sleep(seconds)                    pause without reading
  close()                           orderly close (FIN)
  reset()                           SO_LINGER 0 close (RST)
  garbage(n, seed)                  n random bytes (never CR/LF)
  long_line(n, prefix)              one line of n bytes + CRLF
  trickle(data, delay)              one byte at a time, `delay` apart
  starttls(cert, key)               server-side TLS handshake on the socket
  call(fn)                          fn(conn) for anything else
Use `tls=(cert, key)` on the FakeBackend for implicit TLS from the start.
"""
from __future__ import annotations

import os
import random
import re
import select
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence, Union

CLOSE = object()   # returned by serve() handlers to end the connection


class StepFailed(Exception):
    pass


class _Stopped(Exception):
    pass


@dataclass
class Conn:
    """One accepted connection and what happened on it."""
    index: int
    peer: tuple
    sock: socket.socket
    backend: "FakeBackend"
    chunks: list[bytes] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    failure: str | None = None
    peer_closed: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    _buf: bytes = b""
    tls: bool = False

    # ---------------------------------------------------------------- views
    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)

    def lines(self) -> list[bytes]:
        """Received data split into lines (terminators stripped)."""
        data = self.received
        out = data.split(b"\r\n") if b"\r\n" in data else data.split(b"\n")
        if out and out[-1] == b"":
            out.pop()
        return out

    def event(self, what: str) -> None:
        self.events.append((time.monotonic(), what))

    # ----------------------------------------------------------- primitives
    def _recv(self, timeout: float | None = None) -> bytes:
        """One recv() honouring backend stop; b'' on EOF."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.backend._stopping.is_set():
                raise _Stopped()
            if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                ready = True
            else:
                wait = 0.05
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
                try:
                    ready = bool(select.select([self.sock], [], [], wait)[0])
                except (OSError, ValueError):
                    return b""
            if ready:
                try:
                    data = self.sock.recv(65536)
                except ssl.SSLWantReadError:
                    continue
                except (ConnectionResetError, BrokenPipeError, OSError) as e:
                    self.event(f"recv error: {e}")
                    data = b""
                if data:
                    self.chunks.append(data)
                else:
                    self.peer_closed = True
                    self.event("peer closed")
                return data
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError

    def read_line(self, timeout: float | None = 30.0) -> bytes | None:
        """Next line including its terminator, or None on EOF."""
        while b"\n" not in self._buf:
            data = self._recv(timeout)
            if not data:
                return None
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return line + b"\n"

    def read_exact(self, n: int, timeout: float | None = 30.0) -> bytes:
        """Exactly n bytes (e.g. an IMAP literal); fewer only on EOF."""
        while len(self._buf) < n:
            data = self._recv(timeout)
            if not data:
                break
            self._buf += data
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def write(self, data: bytes) -> None:
        self.sent.append(data)
        self.sock.sendall(data)


Step = Callable[[Conn], object]
Script = Union[Sequence[Step], Callable[[int], Sequence[Step]]]


def _b(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


# ------------------------------------------------------------------- steps
def send(data: bytes | str) -> Step:
    def step(c: Conn) -> None:
        c.write(_b(data))
    step.__name__ = f"send({data!r:.40})"
    return step


def send_line(*lines: str | bytes) -> Step:
    """Send each argument followed by CRLF, all in one write."""
    payload = b"".join(_b(x) + b"\r\n" for x in lines)
    return send(payload)


def expect_line(regex: str | bytes | None = None, timeout: float = 30.0) -> Step:
    def step(c: Conn) -> None:
        line = c.read_line(timeout)
        if line is None:
            raise StepFailed(f"EOF while expecting a line{f' matching {regex!r}' if regex else ''}")
        if regex is not None:
            rx = re.compile(_b(regex))
            if not rx.search(line):
                raise StepFailed(f"line {line!r} does not match {regex!r}")
    return step


def expect_lines(n: int, timeout: float = 30.0) -> Step:
    def step(c: Conn) -> None:
        for i in range(n):
            if c.read_line(timeout) is None:
                raise StepFailed(f"EOF after {i} of {n} expected lines")
    return step


def read_chunk(timeout: float = 30.0) -> Step:
    def step(c: Conn) -> None:
        if c._buf:
            return
        c._buf += c._recv(timeout)
    return step


def respond(regex: str, reply: str | bytes, timeout: float = 30.0) -> Step:
    """Read one line; it must match `regex`; send `reply` formatted with the
    match groups ({0} = whole match, {1}.. = groups, {name} = named)."""
    rx = re.compile(regex)

    def step(c: Conn) -> None:
        raw = c.read_line(timeout)
        if raw is None:
            raise StepFailed(f"EOF while expecting {regex!r}")
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        m = rx.search(line)
        if not m:
            raise StepFailed(f"line {line!r} does not match {regex!r}")
        text = _b(reply).decode()
        text = text.format(m.group(0), *m.groups(), **m.groupdict())
        c.write(text.encode())
    return step


def serve(handler: Callable[[str, Conn], object], timeout: float = 60.0) -> Step:
    """Line loop. handler(line_without_crlf, conn) returns bytes/str to send,
    None for nothing, CLOSE to stop (after sending nothing), or a tuple
    (reply, CLOSE) to send then stop."""
    def step(c: Conn) -> None:
        while True:
            raw = c.read_line(timeout)
            if raw is None:
                return
            out = handler(raw.decode("utf-8", "replace").rstrip("\r\n"), c)
            stop = False
            if isinstance(out, tuple):
                out, stop = out[0], out[1] is CLOSE
            if out is CLOSE:
                return
            if out:
                c.write(_b(out))
            if stop:
                return
    return step


def stall(seconds: float | None = None) -> Step:
    """Say nothing; keep reading (and recording) until the peer closes, the
    backend stops, or `seconds` elapse."""
    def step(c: Conn) -> None:
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            try:
                data = c._recv(left)
            except TimeoutError:
                return
            if not data:
                return
            c._buf += data
    return step


def sleep(seconds: float) -> Step:
    def step(c: Conn) -> None:
        if c.backend._stopping.wait(seconds):
            raise _Stopped()
    return step


def close() -> Step:
    def step(c: Conn) -> None:
        c.event("close")
        try:
            c.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        c.sock.close()
        raise _Stopped()
    return step


def reset() -> Step:
    def step(c: Conn) -> None:
        c.event("reset")
        raw = c.sock
        if isinstance(raw, ssl.SSLSocket):
            raw = socket.socket(fileno=os.dup(raw.fileno()))
            c.sock.close()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
        raise _Stopped()
    return step


def garbage(n: int = 256, seed: int = 1, crlf: bool = False) -> Step:
    rng = random.Random(seed)
    data = bytes(b for b in (rng.randrange(256) for _ in range(n * 2)) if b not in (10, 13))[:n]
    return send(data + (b"\r\n" if crlf else b""))


def long_line(n: int = 70000, prefix: bytes | str = b"* OK ") -> Step:
    p = _b(prefix)
    return send(p + b"x" * max(0, n - len(p)) + b"\r\n")


def trickle(data: bytes | str, delay: float = 0.05) -> Step:
    payload = _b(data)

    def step(c: Conn) -> None:
        for i in range(len(payload)):
            c.write(payload[i:i + 1])
            if c.backend._stopping.wait(delay):
                raise _Stopped()
    return step


def starttls(cert: str | os.PathLike, key: str | os.PathLike) -> Step:
    def step(c: Conn) -> None:
        if c._buf:
            raise StepFailed(f"plaintext left over before TLS: {c._buf!r}")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        c.sock.settimeout(10)
        try:
            c.sock = ctx.wrap_socket(c.sock, server_side=True)
        except (ssl.SSLError, OSError) as e:
            raise StepFailed(f"TLS handshake failed: {e}")
        c.sock.settimeout(30)
        c.tls = True
        c.event("tls up")
    return step


def call(fn: Callable[[Conn], object]) -> Step:
    return fn


# ------------------------------------------------------------------ server
class FakeBackend:
    def __init__(self, script: Script, *, host: str = "127.0.0.1", port: int = 0,
                 tls: tuple[str | os.PathLike, str | os.PathLike] | None = None,
                 name: str = "fake") -> None:
        self.script = script
        self.name = name
        self.tls = tls
        self.connections: list[Conn] = []
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((host, port))
        self._lsock.listen(64)
        self.host, self.port = self._lsock.getsockname()[:2]
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop,
                                          name=f"{name}-accept", daemon=True)
        self._acceptor.start()

    def __enter__(self) -> "FakeBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FakeBackend {self.name} {self.host}:{self.port} conns={len(self.connections)}>"

    # ------------------------------------------------------------ internals
    def _steps_for(self, index: int) -> Sequence[Step]:
        return self.script(index) if callable(self.script) else self.script

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                r, _, _ = select.select([self._lsock], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                sock, peer = self._lsock.accept()
            except OSError:
                continue
            with self._cond:
                conn = Conn(index=len(self.connections), peer=peer, sock=sock, backend=self)
                conn.event("accepted")
                self.connections.append(conn)
                self._cond.notify_all()
            t = threading.Thread(target=self._run, args=(conn,),
                                 name=f"{self.name}-conn{conn.index}", daemon=True)
            self._threads.append(t)
            t.start()

    def _run(self, conn: Conn) -> None:
        try:
            # Timeout mode: sendall() waits for buffer space, recv() is only
            # called after select() said readable.
            conn.sock.settimeout(30)
            if self.tls:
                starttls(*self.tls)(conn)
            for step in self._steps_for(conn.index):
                step(conn)
            conn.event("script done")
        except _Stopped:
            pass
        except StepFailed as e:
            conn.failure = str(e)
            conn.event(f"failed: {e}")
        except (OSError, ssl.SSLError) as e:
            conn.event(f"socket error: {e}")
        except Exception as e:  # pragma: no cover - bug in a script
            conn.failure = f"{type(e).__name__}: {e}"
            conn.event(f"exception: {conn.failure}")
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass
            with self._cond:
                conn.done.set()
                self._cond.notify_all()

    # --------------------------------------------------------------- public
    def wait_for_connections(self, n: int, timeout: float = 10.0) -> list[Conn]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.connections) >= n, timeout):
                raise TimeoutError(f"{self}: expected >= {n} connections")
            return list(self.connections)

    def wait_done(self, n: int | None = None, timeout: float = 10.0) -> list[Conn]:
        """Wait until `n` (default: all so far, at least 1) connections ended."""
        with self._cond:
            def ok() -> bool:
                want = n if n is not None else max(1, len(self.connections))
                return (len(self.connections) >= want and
                        all(c.done.is_set() for c in self.connections[:want]))
            if not self._cond.wait_for(ok, timeout):
                raise TimeoutError(f"{self}: connections not finished: "
                                   f"{[(c.index, c.events) for c in self.connections]}")
            return list(self.connections)

    def wait_for_received(self, pattern: bytes | str, timeout: float = 10.0,
                          conn: int = -1) -> re.Match:
        rx = re.compile(_b(pattern))
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                conns = list(self.connections)
            if conns:
                m = rx.search(conns[conn].received)
                if m:
                    return m
            if time.monotonic() > deadline:
                got = conns[conn].received if conns else b"(no connection)"
                raise TimeoutError(f"{self}: {pattern!r} not received; got {got!r}")
            time.sleep(0.01)

    def close(self) -> None:
        self._stopping.set()
        try:
            self._lsock.close()
        except OSError:
            pass
        self._acceptor.join(2)
        for t in self._threads:
            t.join(2)


def closed_listener_port() -> int:
    """A port where nothing listens (connect -> ECONNREFUSED).  Taken from
    the 20000-32000 range below the kernel's ephemeral range, so a later
    bind(port=0) - e.g. portier's own listeners - cannot land on it."""
    from .util import free_port
    return free_port()


def iter_failures(backends: Iterable[FakeBackend]) -> list[str]:
    return [f"{b.name}#{c.index}: {c.failure}" for b in backends for c in b.connections
            if c.failure]
