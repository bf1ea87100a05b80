"""Helpers for the client-abuse tests (tests/integration/test_client_abuse.py).

- `PROTOS`: one `Proto` per protocol with the client commands and the exact
  replies portier gives (limits, timeouts, goodbyes), so tests are tables.
- `Raw`: a raw socket client that keeps every byte, waits for a regex and
  tells how the server ended the connection (eof / reset / still open).
- `trickle()`: slowloris sender (one byte every `interval`), bounded.
- `Mem`: RSS / high-water mark / open fds of a process from /proc.
- `garbage_burst()`: N hostile connections, bounded concurrency, bounded time,
  outcomes counted.
- `imap_commands()`: split an IMAP command stream into commands (literals
  honoured) to prove what a backend received is well-formed.
- Fake-backend scripts that log in successfully for every protocol and keep
  serving afterwards (so pipelined bytes can be traced to the backend).
"""
from __future__ import annotations

import asyncio
import base64
import os
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from . import fake_backend as fb
from .backend_scripts import imap_banner, imap_id_reply, imap_postlogin_handler

HOST = "proxy.test"   # server.hostname in tests/support/portier.py


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def plain_ir(authcid: bytes | str, password: bytes | str, authzid: bytes | str = b"") -> str:
    def b(x):
        return x.encode() if isinstance(x, str) else x
    return b64(b(authzid) + b"\0" + b(authcid) + b"\0" + b(password))


# ----------------------------------------------------------------- protocols
@dataclass(frozen=True)
class Proto:
    name: str
    dovecot: str                      # key in DovecotBackend.ports
    greeting: bytes                   # regex: the complete greeting has arrived
    hello: bytes                      # sent right after the greeting ("" = nothing)
    hello_done: bytes                 # regex for the reply to `hello`
    auth_plain: Callable[[str], bytes]   # base64 initial response -> command
    auth_start: bytes                 # AUTHENTICATE/AUTH PLAIN without initial response
    cont: Callable[[str], bytes]      # base64 SASL continuation line
    ok: bytes                         # regex: login succeeded
    fail: bytes                       # regex: login refused (any error reply)
    noop: bytes                       # a post-login command for a real Dovecot
    noop_ok: bytes
    invalid: bytes                    # one invalid pre-login command
    too_many_invalid: bytes           # the reply that ends the connection
    line_too_long: bytes
    idle_timeout: bytes
    login_timeout: bytes
    bad_base64: bytes                 # regex: reply to broken base64
    user_limit: bytes                 # regex: reply when max_sessions_per_user is hit
    goodbye: Callable[[str], bytes]
    ping: bytes = b""                 # a harmless pre-login command ...
    pong: bytes = b""                 # ... and its reply (regex)
    sasl_challenge: bytes = b""       # regex: the server's SASL continuation

    def __repr__(self) -> str:
        return self.name


def _imap_goodbye(r: str) -> bytes:
    return f"* BYE {r}\r\n".encode()


IMAP = Proto(
    name="imap", dovecot="imap",
    greeting=rb"^\* OK .*\r\n", hello=b"", hello_done=b"",
    auth_plain=lambda ir: f"a AUTHENTICATE PLAIN {ir}\r\n".encode(),
    auth_start=b"a AUTHENTICATE PLAIN\r\n",
    cont=lambda s: f"{s}\r\n".encode(),
    ok=rb"(?m)^a OK ", fail=rb"(?m)^a (NO|BAD) ",
    noop=b"n NOOP\r\n", noop_ok=rb"(?m)^n OK ",
    invalid=b"x FROBNICATE\r\n",
    too_many_invalid=b"* BYE Too many invalid IMAP commands.\r\n",
    line_too_long=b"* BYE Too long command line.\r\n",
    idle_timeout=b"* BYE Disconnected for inactivity.\r\n",
    login_timeout=b"* BYE Timeout while finishing login.\r\n",
    bad_base64=rb"(?m)^a BAD Invalid base64 data",
    user_limit=rb"(?m)^a NO \[LIMIT\] Too many sessions for this user\.\r\n",
    goodbye=_imap_goodbye,
    ping=b"p NOOP\r\n", pong=rb"(?m)^p OK NOOP completed\.\r\n", sasl_challenge=rb"(?m)^\+ ?\r\n",
)

POP3 = Proto(
    name="pop3", dovecot="pop3",
    greeting=rb"^\+OK .*\r\n", hello=b"", hello_done=b"",
    auth_plain=lambda ir: f"AUTH PLAIN {ir}\r\n".encode(),
    auth_start=b"AUTH PLAIN\r\n",
    cont=lambda s: f"{s}\r\n".encode(),
    ok=rb"(?m)^\+OK ", fail=rb"(?m)^-ERR ",
    noop=b"STAT\r\n", noop_ok=rb"(?m)^\+OK \d+ \d+",
    invalid=b"FROBNICATE\r\n",
    too_many_invalid=b"-ERR Too many invalid bad commands.\r\n",
    line_too_long=b"-ERR Input buffer full, aborting\r\n",
    idle_timeout=b"-ERR Disconnected for inactivity.\r\n",
    login_timeout=b"-ERR Timeout while finishing login.\r\n",
    bad_base64=rb"(?m)^-ERR ",
    user_limit=rb"(?m)^-ERR \[IN-USE\] Too many connections for this user\.\r\n",
    goodbye=lambda r: f"-ERR {r}\r\n".encode(),
    ping=b"CAPA\r\n", pong=rb"(?m)^\.\r\n", sasl_challenge=rb"(?m)^\+ ?\r\n",
)

SUBMISSION = Proto(
    name="submission", dovecot="submission",
    greeting=rb"^220 .*\r\n", hello=b"EHLO client.test\r\n", hello_done=rb"(?m)^250 .*\r\n",
    auth_plain=lambda ir: f"AUTH PLAIN {ir}\r\n".encode(),
    auth_start=b"AUTH PLAIN\r\n",
    cont=lambda s: f"{s}\r\n".encode(),
    ok=rb"(?m)^235 ", fail=rb"(?m)^[45]\d\d ",
    noop=b"NOOP\r\n", noop_ok=rb"(?m)^250 ",
    invalid=b"FROBNICATE\r\n",
    too_many_invalid=f"421 4.7.0 {HOST} Too many invalid commands.\r\n".encode(),
    line_too_long=b"500 5.5.2 Line too long\r\n",
    idle_timeout=f"421 4.4.2 {HOST} Disconnected for inactivity.\r\n".encode(),
    login_timeout=f"421 4.4.2 {HOST} Timeout while finishing login.\r\n".encode(),
    bad_base64=rb"(?m)^501 ",
    user_limit=rb"(?m)^454 4\.7\.0 Too many sessions for this user\.\r\n",
    goodbye=lambda r: f"421 4.7.0 {HOST} {r}\r\n".encode(),
    ping=b"NOOP\r\n", pong=rb"(?m)^250 [^\r\n]*\r\n", sasl_challenge=rb"(?m)^334 ?\r\n",
)

MANAGESIEVE = Proto(
    name="managesieve", dovecot="sieve",
    greeting=rb'(?m)^OK ".*"\r\n', hello=b"", hello_done=b"",
    auth_plain=lambda ir: f'AUTHENTICATE "PLAIN" "{ir}"\r\n'.encode(),
    auth_start=b'AUTHENTICATE "PLAIN"\r\n',
    cont=lambda s: f'"{s}"\r\n'.encode(),
    ok=rb"(?m)^OK", fail=rb"(?m)^(NO|BYE)\b",
    noop=b"NOOP\r\n", noop_ok=rb"(?m)^OK",
    invalid=b"FROBNICATE\r\n",
    too_many_invalid=b'BYE "Too many invalid commands."\r\n',
    line_too_long=b'BYE "Too long command line."\r\n',
    idle_timeout=b'BYE "Disconnected for inactivity."\r\n',
    login_timeout=b'BYE "Timeout while finishing login."\r\n',
    bad_base64=rb'(?m)^NO "Invalid base64',
    user_limit=rb'(?m)^NO \(LIMIT/CONNECTIONS\) "Too many connections for this user\."\r\n',
    goodbye=lambda r: f'BYE "{r}"\r\n'.encode(),
    ping=b"NOOP\r\n", pong=rb"(?m)^OK[^\r\n]*\r\n", sasl_challenge=rb'(?m)^""\r\n',
)

PROTOS = (IMAP, POP3, SUBMISSION, MANAGESIEVE)
BY_NAME = {p.name: p for p in PROTOS}


# ------------------------------------------------------------------ raw client
class Raw:
    """Raw client. `data` keeps every byte received; `pos` marks what earlier
    `expect()` calls consumed.  `ended` is None while open, else "eof",
    "reset" (ECONNRESET/EPIPE) or "timeout" (read_until_closed gave up)."""

    def __init__(self, port: int, *, source: str | None = None, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout,
                                             source_address=(source, 0) if source else None)
        self.data = b""
        self.pos = 0
        self.ended: str | None = None

    # -- sending
    def send(self, data: bytes) -> bool:
        """False when the server already closed (EPIPE / reset)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.ended = self.ended or "reset"
            return False

    # -- receiving
    def _recv(self, timeout: float) -> bytes | None:
        """One recv; b"" on EOF/reset (sets ended); None on timeout."""
        if self.ended:
            return b""
        self.sock.settimeout(max(0.01, timeout))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return None
        except (ConnectionResetError, BrokenPipeError):
            self.ended = "reset"
            return b""
        if not chunk:
            self.ended = "eof"
        self.data += chunk
        return chunk

    def expect(self, regex: bytes, timeout: float = 5.0) -> re.Match:
        """Wait until `regex` matches the unconsumed data; consume through it."""
        rx = re.compile(regex)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.data, self.pos)
            if m:
                self.pos = m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0 or self.ended:
                raise AssertionError(f"no {regex!r} within {timeout}s (ended={self.ended}); "
                                     f"unconsumed: {self.data[self.pos:][-2000:]!r}")
            self._recv(left)

    def read_until_closed(self, timeout: float = 5.0) -> bytes:
        """Everything until the server closes; returns the unconsumed rest."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                self.ended = "timeout"
                break
            self._recv(left)
        rest, self.pos = self.data[self.pos:], len(self.data)
        return rest

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        self.read_until_closed(timeout)
        return self.ended in ("eof", "reset")

    def rst(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Raw":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_client(p: Proto, port: int, *, source: str | None = None) -> Raw:
    """Connect, read the greeting, send the protocol's hello (EHLO)."""
    c = Raw(port, source=source)
    c.expect(p.greeting)
    if p.hello:
        c.send(p.hello)
        c.expect(p.hello_done)
    return c


def login(p: Proto, port: int, user: str, password: str, *, source: str | None = None) -> Raw:
    """A logged-in (relaying) client; asserts success."""
    c = open_client(p, port, source=source)
    c.send(p.auth_plain(plain_ir(user, password)))
    c.expect(p.ok, timeout=10)
    return c


def trickle(c: Raw, data: bytes, interval: float, limit: float) -> float:
    """Slowloris: one byte every `interval` s until the server closes or
    `limit` s pass.  Returns the seconds it took."""
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < limit:
        if not c.send(data[i % len(data):i % len(data) + 1]):
            break
        i += 1
        # Read what the server says meanwhile; this is also the pacing wait.
        c._recv(interval)
        if c.ended:
            break
    return time.monotonic() - t0


# ------------------------------------------------------------------- memory
class Mem:
    """Memory and descriptors of a process, from /proc (bytes)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def status(self) -> dict[str, int]:
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "VmSize"):
                    out[k] = int(v.split()[0]) * 1024
        return out

    def rss(self) -> int:
        return self.status()["VmRSS"]

    def hwm(self) -> int:
        return self.status()["VmHWM"]

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def wait_fds_at_most(self, n: int, timeout: float) -> int:
        """Wait (polling /proc, bounded) until the process holds <= n fds."""
        deadline = time.monotonic() + timeout
        while True:
            cur = self.fds()
            if cur <= n or time.monotonic() > deadline:
                return cur
            time.sleep(0.05)


class RssSampler:
    """Samples VmRSS every `interval` s in a thread; `.peak` is the maximum."""

    def __init__(self, mem: Mem, interval: float = 0.02) -> None:
        self.mem, self.interval = mem, interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.mem.rss())
                self.samples += 1
            except (OSError, KeyError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join(2)
        try:
            self.peak = max(self.peak, self.mem.rss())
        except (OSError, KeyError):
            pass


# ---------------------------------------------------------------- the burst
BURST_KINDS = ("close", "rst", "binary", "longline", "partial", "invalid", "literal")


@dataclass
class BurstResult:
    outcomes: Counter = field(default_factory=Counter)   # eof / reset / timeout / connect_error
    kinds: Counter = field(default_factory=Counter)
    replied: int = 0          # connections that got any byte beyond the greeting
    logged_in: int = 0        # must stay 0
    elapsed: float = 0.0
    max_in_flight: int = 0
    hung_kinds: Counter = field(default_factory=Counter)   # kind@port that timed out


async def _one(i: int, port: int, kind: str, rng: random.Random, res: BurstResult,
               ok_rx: re.Pattern, read_timeout: float) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except (OSError, asyncio.TimeoutError):
        res.outcomes["connect_error"] += 1
        return
    sock = writer.get_extra_info("socket")
    data = b""
    try:
        if kind == "close":
            res.outcomes["client_closed"] += 1
            return
        if kind == "rst":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            res.outcomes["client_reset"] += 1
            return
        if kind == "binary":
            payload = bytes(rng.randrange(256) for _ in range(2048)) + b"\0\r\n"
            payload = payload * 3
        elif kind == "longline":
            payload = b"A" * 20000
        elif kind == "partial":
            payload = b"a LOGIN user1"
        elif kind == "invalid":
            payload = b"x FROB\0NICATE\r\n" * 4
        else:  # literal (a parse error for the protocols without literals)
            payload = b"a LOGIN {4294967296}\r\n" + b"\0" * 100 + b"\r\n"
        # Every kind ends in something that must make portier close: three
        # invalid commands (unless a limit closed the connection already).
        if kind != "partial":
            payload += b"x FROB\r\n" * 3
        writer.write(payload)
        try:
            await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            pass
        if kind == "partial":
            writer.write_eof()
        try:
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
                if not chunk:
                    res.outcomes["eof"] += 1
                    break
                data += chunk
        except asyncio.TimeoutError:
            res.outcomes["timeout"] += 1
            res.hung_kinds[f"{kind}@{port}"] += 1
        except (ConnectionResetError, BrokenPipeError):
            res.outcomes["reset"] += 1
    finally:
        if data.count(b"\n") > 1 or (data and kind != "close"):
            res.replied += 1
        if ok_rx.search(data):
            res.logged_in += 1
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 2)
        except (OSError, asyncio.TimeoutError):
            pass


async def _burst(ports: list[int], n: int, concurrency: int, seed: int,
                 read_timeout: float) -> BurstResult:
    res = BurstResult()
    rng = random.Random(seed)
    sem = asyncio.Semaphore(concurrency)
    in_flight = 0
    # Any success reply of the four protocols after a login command.
    ok_rx = re.compile(rb"(?m)^(a OK|235 |\+OK Logged in)")

    async def run(i: int) -> None:
        nonlocal in_flight
        async with sem:
            in_flight += 1
            res.max_in_flight = max(res.max_in_flight, in_flight)
            kind = BURST_KINDS[i % len(BURST_KINDS)]
            res.kinds[kind] += 1
            try:
                await _one(i, ports[i % len(ports)], kind, rng, res, ok_rx, read_timeout)
            finally:
                in_flight -= 1

    t0 = time.monotonic()
    await asyncio.gather(*(run(i) for i in range(n)))
    res.elapsed = time.monotonic() - t0
    return res


def garbage_burst(ports: list[int], n: int = 10_000, concurrency: int = 200, seed: int = 7,
                  read_timeout: float = 10.0, deadline: float = 120.0) -> BurstResult:
    """`n` hostile connections round-robin over `ports`, at most `concurrency`
    at a time, the whole burst bounded by `deadline` seconds."""
    return asyncio.run(asyncio.wait_for(_burst(ports, n, concurrency, seed, read_timeout),
                                        deadline))


# ------------------------------------------------------------ IMAP commands
_IMAP_TOKEN = re.compile(rb'\s*(?:"((?:[^"\\\r\n]|\\["\\])*)"|\{(\d+)\+?\}\r\n|([^\s"(){}]+)|(\()|(\)))')


def imap_commands(stream: bytes) -> list[list[bytes]]:
    """Split what a backend received into IMAP commands, each a list of
    tokens (quoted strings unescaped, literals read by their length).  Raises
    ValueError on anything that is not well-formed: a CR or LF outside a
    literal, an unterminated quoted string, a short literal."""
    out: list[list[bytes]] = []
    i = 0
    while i < len(stream):
        toks: list[bytes] = []
        while True:
            if stream.startswith(b"\r\n", i):
                i += 2
                break
            m = _IMAP_TOKEN.match(stream, i)
            if not m or m.end() == i:
                raise ValueError(f"malformed IMAP at {i}: {stream[i:i + 60]!r}")
            i = m.end()
            if m.group(1) is not None:
                toks.append(re.sub(rb'\\(["\\])', rb"\1", m.group(1)))
            elif m.group(2) is not None:
                n = int(m.group(2))
                if len(stream) < i + n:
                    raise ValueError("short literal")
                toks.append(stream[i:i + n])
                i += n
            elif m.group(3) is not None:
                toks.append(m.group(3))
            else:
                toks.append(m.group(4) or m.group(5))
        out.append(toks)
    return out


# -------------------------------------------------------- fake backend scripts
def _imap_after(line: str, conn):
    return imap_postlogin_handler(line, conn)


def _pop3_after(line: str, conn):
    cmd = line.split(" ", 1)[0].upper()
    if cmd == "QUIT":
        return ("+OK fake logging out\r\n", fb.CLOSE)
    return f"+OK {cmd or 'EMPTY'} done by fake\r\n"


def _smtp_after(line: str, conn):
    cmd = line.split(" ", 1)[0].upper()
    if cmd == "QUIT":
        return ("221 2.0.0 fake bye\r\n", fb.CLOSE)
    return f"250 2.0.0 {cmd or 'EMPTY'} done by fake\r\n"


def _sieve_after(line: str, conn):
    if line.upper().startswith("LOGOUT"):
        return ('OK "fake logout"\r\n', fb.CLOSE)
    return f'OK "{line.split(" ", 1)[0] or "EMPTY"} done by fake"\r\n'


def mark_login_reply(conn) -> None:
    """Record how many bytes the backend had read when it sent its login
    success reply (bytes after this mark arrived afterwards)."""
    conn.login_mark = len(conn.received)
    conn.event(f"login reply at {conn.login_mark}")


def _read_until(rx: bytes, timeout: float = 10.0):
    """Read until the bytes received match `rx` (literals, multi-line)."""
    pattern = re.compile(rx)

    def step(c) -> None:
        deadline = time.monotonic() + timeout
        while not pattern.search(c.received):
            left = deadline - time.monotonic()
            if left <= 0:
                raise fb.StepFailed(f"{rx!r} not received: {c.received!r}")
            try:
                if not c._recv(left):
                    raise fb.StepFailed(f"EOF before {rx!r}: {c.received!r}")
            except TimeoutError:
                continue
        c._buf = b""
    return step


def fake_login_script(proto: str, *, ok: bool = True, xclient: bool = True,
                      login_done: bytes | None = None) -> list:
    """A backend that logs the proxy in (or refuses with ok=False) and then
    serves post-login commands with '... by fake' replies.  `login_done`:
    regex over all bytes received that means the login command is complete
    (default: per protocol)."""
    if proto == "imap":
        done = login_done or rb"L LOGIN [^\r\n]*\r\n"
        reply = ("L OK [CAPABILITY IMAP4rev1 FAKE] Logged in" if ok
                 else "L NO [AUTHENTICATIONFAILED] Authentication failed.")
        return [imap_banner(), _read_until(done), imap_id_reply(), fb.send_line(reply),
                fb.call(mark_login_reply), fb.serve(_imap_after) if ok else fb.stall()]
    if proto == "pop3":
        banner = "+OK [XCLIENT] Fake ready." if xclient else "+OK Fake ready."
        steps = [fb.send_line(banner)]
        if login_done:
            return steps + [_read_until(login_done),
                            fb.send_line("+OK Updated", "+OK Logged in." if ok
                                         else "-ERR [AUTH] Authentication failed."),
                            fb.call(mark_login_reply),
                            fb.serve(_pop3_after) if ok else fb.stall()]
        if xclient:
            steps += [fb.expect_line(rb"^XCLIENT "), fb.expect_line(rb"^USER "),
                      fb.send_line("+OK Updated", "+OK")]
        else:
            steps += [fb.expect_line(rb"^USER "), fb.send_line("+OK")]
        return steps + [fb.expect_line(rb"^PASS "),
                        fb.send_line("+OK Logged in." if ok
                                     else "-ERR [AUTH] Authentication failed."),
                        fb.call(mark_login_reply),
                        fb.serve(_pop3_after) if ok else fb.stall()]
    if proto == "submission":
        caps = "250-fake.test\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"
        caps += ("250 XCLIENT ADDR PORT PROTO HELO LOGIN SESSION TTL FORWARD\r\n" if xclient
                 else "250 PIPELINING\r\n")
        steps = [fb.send_line("220 fake.test ESMTP ready"), fb.respond(r"^EHLO ", caps)]
        if xclient:
            steps += [fb.respond(r"^XCLIENT ", "220 fake.test ESMTP ready\r\n"),
                      fb.respond(r"^EHLO ", caps)]
        return steps + [fb.expect_line(rb"^AUTH PLAIN \S+\r\n"),
                        fb.send_line("235 2.7.0 Logged in." if ok
                                     else "535 5.7.8 Authentication failed."),
                        fb.call(mark_login_reply),
                        fb.serve(_smtp_after) if ok else fb.stall()]
    if proto == "managesieve":
        caps = ['"IMPLEMENTATION" "Fake"', '"SIEVE" "fileinto"', '"SASL" "PLAIN"',
                '"VERSION" "1.0"'] + (['"XCLIENT"'] if xclient else [])
        steps = [fb.send_line(*caps, 'OK "Fake ready."')]
        if xclient:
            steps += [fb.expect_line(rb"^XCLIENT "), fb.send_line('OK "Updated"')]
        return steps + [fb.expect_line(rb'^AUTHENTICATE "PLAIN" "'),
                        fb.send_line('OK "Logged in."' if ok else 'NO "Authentication failed."'),
                        fb.call(mark_login_reply),
                        fb.serve(_sieve_after) if ok else fb.stall()]
    raise ValueError(proto)
