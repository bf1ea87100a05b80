"""POP3 backend fault injection with scripted fake backends (spec §4.1,
§4.2, §14 P1-P9).

Each case starts a fresh portier whose only user `u` points at a fake
backend; the client connects from 127.0.0.2 (portier trusts 127.0.0.0/8).
Timeout cases use proxy_timeout=1 (no retry: a retry needs more than 1.1 s
of the timeout left); retryable cases use proxy_timeout=5 and
proxy_max_reconnects=1, so "retried" means the fake saw exactly 2
connections and the log has `- reconnecting (attempt #1)`.
"""
from __future__ import annotations

import base64
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support import fake_backend as fb
from tests.support.portier import Listener, User, proxy

USER, PW = "u", "u-pop3-client-Pw-42"
RETRYABLE = b"-ERR [SYS/TEMP] Account is temporarily unavailable."
CONFIG = b"-ERR Account is temporarily unavailable."
MASKED = b"-ERR [AUTH] Authentication failed."
NOT_ERR = b"-ERR Authentication failed."
LISTENERS = (Listener("pop3", "none"),)
T = "1"  # proxy_timeout for timeout cases

XCLIENT_RE = (rb"XCLIENT ADDR=(?P<addr>[0-9.]+) PORT=(?P<port>\d+) DESTADDR=(?P<daddr>[0-9.]+) "
              rb"DESTPORT=(?P<dport>\d+) SESSION=(?P<sid>\S+) TTL=(?P<ttl>\d+) "
              rb"CLIENT-TRANSPORT=(?P<transport>TLS|insecure)(?P<rest>[^\r\n]*)\r\n")


# ---------------------------------------------------------- fake POP3 pieces
def banner(xclient: bool = True, text: str = "Fake ready."):
    return fb.send_line(f"+OK [XCLIENT] {text}" if xclient else f"+OK {text}")


def pop3_postlogin_handler(line: str, conn):
    cmd = line.split(" ", 1)[0].upper()
    if cmd == "QUIT":
        return ("+OK fake logging out\r\n", fb.CLOSE)
    if cmd == "STAT":
        return "+OK 0 0\r\n"
    return f"+OK {cmd} done by fake\r\n"


def login_ok(xclient: bool = True):
    """Banner, XCLIENT+USER, +OK both, PASS, +OK, then a tiny POP3 server."""
    steps = [banner(xclient)]
    if xclient:
        steps += [fb.expect_line(rb"^XCLIENT "), fb.expect_line(rb"^USER "),
                  fb.send_line("+OK Updated", "+OK")]
    else:
        steps += [fb.expect_line(rb"^USER "), fb.send_line("+OK")]
    return steps + [fb.expect_line(rb"^PASS "), fb.send_line("+OK Logged in."),
                    fb.serve(pop3_postlogin_handler)]


def pass_reply(reply: str):
    """Banner with XCLIENT, answer XCLIENT and USER, then `reply` to PASS."""
    return [banner(), fb.expect_lines(2), fb.send_line("+OK Updated", "+OK"),
            fb.expect_line(rb"^PASS "), fb.send_line(reply), fb.stall()]


class Client:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), 15,
                                             source_address=("127.0.0.2", 0))
        self.local_port = self.sock.getsockname()[1]
        self.f = self.sock.makefile("rb")
        self.greeting = self.readline()

    def readline(self) -> bytes:
        return self.f.readline().rstrip(b"\r\n")

    def cmd(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.readline()

    def close(self) -> None:
        self.f.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def login_with(make_portier, make_fake, script, *, fields: dict[str, Any] | None = None,
               timeout: str = "5", reconnects: int = 1):
    """Start fake + portier, run USER/PASS; return (portier, fake, PASS reply,
    elapsed seconds, client still open)."""
    fake = make_fake(script)
    fields = dict(fields or {})
    fields.setdefault("proxy_timeout", timeout)
    px = make_portier([User(USER, PW, proxy(fake.port, **fields))], listeners=LISTENERS,
                      settings={"login": {"proxy_max_reconnects": reconnects}})
    c = Client(px.port("pop3"))
    assert c.cmd(f"USER {USER}") == b"+OK"
    t0 = time.monotonic()
    reply = c.cmd(f"PASS {PW}")
    return px, fake, reply, time.monotonic() - t0, c


# =====================================================================  table
@dataclass
class Fault:
    id: str
    script: Any
    reply: bytes                  # expected reply to PASS
    retried: bool | None          # None: don't check
    log: str | None = None        # regex that must appear in portier's log
    state: str | None = None      # expected state=
    fields: dict = field(default_factory=dict)
    timeout: str = "5"
    hidden: bytes | None = None   # backend text the client must NOT see


stall = fb.stall

FAULTS = [
    # --- P9: every state, by stalling after each step (proxy_timeout=1) ------
    Fault("silent-after-accept", [stall()], RETRYABLE, False,
          r"Login timed out in state=banner \(after 1 secs", "banner", timeout=T),
    Fault("stls-sent-then-stall", [banner(), fb.expect_line(rb"^STLS\r\n"), stall()], RETRYABLE,
          False, r"Login timed out in state=starttls", "starttls", timeout=T,
          fields={"starttls": "yes"}),
    Fault("xclient-sent-then-stall", [banner(), fb.expect_lines(2), stall()], RETRYABLE, False,
          r"Login timed out in state=xclient", "xclient", timeout=T),
    Fault("user-sent-then-stall", [banner(False), fb.expect_line(rb"^USER u\r\n"), stall()],
          RETRYABLE, False, r"Login timed out in state=login1", "login1", timeout=T),
    Fault("xclient-ok-user-pending", [banner(), fb.expect_lines(2), fb.send_line("+OK Updated"),
                                      stall()],
          RETRYABLE, False, r"Login timed out in state=login1", "login1", timeout=T),
    Fault("pass-sent-then-stall", [banner(False), fb.expect_line(rb"^USER "),
                                   fb.send_line("+OK"), fb.expect_line(rb"^PASS "), stall()],
          RETRYABLE, False, r"Login timed out in state=login2", "login2", timeout=T),
    Fault("auth-sent-then-stall", [banner(False), fb.expect_line(rb"^AUTH PLAIN "), stall()],
          RETRYABLE, False, r"Login timed out in state=login2", "login2", timeout=T,
          fields={"proxy_mech": "plain"}),
    # --- backend goes away during login (retried) --------------------------
    Fault("close-before-banner", [fb.close()], RETRYABLE, True,
          r"Disconnected by server: Connection closed.*\(state=banner, duration=\d+s\)",
          "banner"),
    Fault("close-after-user", [banner(), fb.expect_lines(2), fb.close()], RETRYABLE, True,
          r"Disconnected by server: Connection closed.*\(state=xclient, duration=\d+s\)",
          "xclient"),
    Fault("reset-after-pass", [banner(False), fb.expect_line(rb"^USER "), fb.send_line("+OK"),
                               fb.expect_line(rb"^PASS "), fb.reset()],
          RETRYABLE, True, r"Disconnected by server: Connection (closed|reset)"),
    # --- protocol errors (retried) -----------------------------------------
    Fault("invalid-banner", [fb.send_line("-ERR go away"), stall()], RETRYABLE, True,
          r"Remote server sent invalid input: Invalid banner: -ERR go away"),
    Fault("garbage-banner", [fb.garbage(300, seed=7, crlf=True), stall()], RETRYABLE, True,
          r"Invalid banner"),
    Fault("overlong-banner", [fb.long_line(70000, prefix=b"+OK "), stall()], RETRYABLE, True,
          r"Too long input line"),
    Fault("bad-sasl-challenge", [banner(False), fb.expect_line(rb"^AUTH "),
                                 fb.send_line("+ !!notbase64"), stall()],
          RETRYABLE, True, r"Invalid base64 data in AUTH response",
          fields={"proxy_mech": "plain"}),
    # --- STLS / XCLIENT refused ----------------------------------------------
    Fault("stls-refused", [banner(), fb.expect_line(rb"^STLS\r\n"),
                           fb.send_line("-ERR no TLS here"), stall()],
          RETRYABLE, True, r"Aborting due to remote server: STLS failed: -ERR no TLS here",
          fields={"starttls": "yes"}),
    Fault("xclient-refused", [banner(), fb.expect_lines(2), fb.send_line("-ERR Not trusted"),
                              stall()],
          CONFIG, False, r"Aborting due to remote server: XCLIENT failed: -ERR Not trusted"),
    # --- backend answers the login (§4.1 step 7, §13.8) ----------------------
    Fault("pass-auth-text-masked", pass_reply("-ERR [AUTH] secret-ish: no such user"), MASKED,
          False, r"Login failed: \[AUTH\] secret-ish", hidden=b"secret-ish"),
    Fault("pass-plain-text-masked", pass_reply("-ERR secret-ish unknown user"), MASKED, False,
          hidden=b"secret-ish"),
    Fault("user-rejected-masked", [banner(False), fb.expect_line(rb"^USER "),
                                   fb.send_line("-ERR secret-ish no mailbox"), stall()],
          MASKED, False, hidden=b"secret-ish"),
    Fault("pass-not-err", pass_reply("* secret-ish what"), NOT_ERR, False, hidden=b"secret-ish"),
    Fault("pass-sys-temp", pass_reply("-ERR [SYS/TEMP] Backend busy"),
          b"-ERR [SYS/TEMP] Backend busy", True),
    Fault("pass-in-use", pass_reply("-ERR [IN-USE] Mailbox locked"),
          b"-ERR [IN-USE] Mailbox locked", False),
    Fault("pass-sys-perm", pass_reply("-ERR [SYS/PERM] Mailbox corrupt"),
          b"-ERR [SYS/PERM] Mailbox corrupt", False),
    # A referral to a host name cannot be followed (no DNS lookups); one to an
    # IP is followed (test_backend_redirect.py).
    Fault("pass-referral", pass_reply("-ERR [REFERRAL/u@pop9.example.org] moved"), CONFIG, False),
]


@pytest.mark.parametrize("case", FAULTS, ids=[f.id for f in FAULTS])
def test_login_fault(make_portier, make_fake, case: Fault):
    px, fake, reply, elapsed, c = login_with(make_portier, make_fake, case.script,
                                             fields=case.fields, timeout=case.timeout)
    with c:
        assert reply == case.reply
        # The session goes on after a failed login.
        assert c.cmd("CAPA") == b"+OK"
    if case.hidden:
        assert case.hidden not in reply, "backend text leaked to the client"
    if case.timeout == T:
        assert 0.8 <= elapsed <= 3.5, f"timeout fired after {elapsed:.2f}s, expected ~1s"
    if case.retried is not None:
        want = 2 if case.retried else 1
        assert len(fake.connections) == want, (
            f"backend saw {len(fake.connections)} connection attempts, expected {want}")
        retry_lines = px.log.find(r"- reconnecting \(attempt #1\)")
        assert bool(retry_lines) == case.retried, px.log.text()
        if case.retried:
            assert px.log.find(r"pop3-login: Warning: proxy\(u,127\.0\.0\.1:\d+\): .* - "
                               r"reconnecting \(attempt #1\)"), px.log.text()
    if case.log:
        m = px.log.wait_for(case.log, timeout=3)
        assert f"proxy(u,127.0.0.1:{fake.port})" in m.string, m.string
        assert "user=<u>" in m.string and "rip=127.0.0.2" in m.string, m.string
    if case.state:
        ms = px.log.find(r"state=([^ ,)]+)")
        assert ms, f"no state= in log:\n{px.log.text()}"
        assert ms[-1][1] == case.state, ms[-1].string


# ============================================================= wire details
def test_xclient_and_user_pipelined_then_pass(make_portier, make_fake):
    """P1: XCLIENT and USER in one segment; PASS only after USER's +OK."""
    px, fake, reply, _, c = login_with(make_portier, make_fake, login_ok(),
                                       fields={"destuser": "dst", "pass_": "backend-Pw-9"})
    with c:
        assert reply == b"+OK Logged in."
        assert c.cmd("STAT") == b"+OK 0 0"  # relayed now
        conn = fake.connections[0]
        m = re.fullmatch(XCLIENT_RE + rb"USER dst\r\n", conn.chunks[0])
        assert m, f"first backend read was {conn.chunks[0]!r}"
        assert m["addr"] == b"127.0.0.2" and int(m["port"]) == c.local_port
        assert m["daddr"] == b"127.0.0.1" and int(m["dport"]) == px.port("pop3")
        assert m["ttl"] == b"4" and m["transport"] == b"insecure" and m["rest"] == b""
        assert conn.chunks[1] == b"PASS backend-Pw-9\r\n"
        started = px.log.wait_for(r"Started proxying.* session=<([^>]+)>")
        assert started[1].encode() == m["sid"], "SESSION differs from logged session"


def test_no_xclient_without_marker(make_portier, make_fake):
    """P2: a banner without [XCLIENT]: USER, then PASS."""
    px, fake, reply, _, c = login_with(make_portier, make_fake, login_ok(xclient=False))
    c.close()
    assert reply == b"+OK Logged in."
    assert fake.connections[0].chunks[:2] == [b"USER u\r\n", f"PASS {PW}\r\n".encode()]


def test_proxy_not_trusted_sends_no_xclient(make_portier, make_fake):
    script = [banner(), fb.expect_line(rb"^USER "), fb.send_line("+OK"),
              fb.expect_line(rb"^PASS "), fb.send_line("+OK Logged in."),
              fb.serve(pop3_postlogin_handler)]
    px, fake, reply, _, c = login_with(make_portier, make_fake, script,
                                       fields={"proxy_not_trusted": True})
    c.close()
    assert reply == b"+OK Logged in."
    assert fake.connections[0].chunks[0] == b"USER u\r\n"


def test_forward_fields(make_portier, make_fake):
    px, fake, reply, _, c = login_with(make_portier, make_fake, login_ok(),
                                       fields={"forward_foo": "bar"})
    c.close()
    m = re.match(XCLIENT_RE, fake.connections[0].chunks[0])
    assert m, fake.connections[0].chunks[0]
    assert m["rest"] == b" FORWARD=" + base64.b64encode(b"foo=bar")


def test_master_auth_plain_with_initial_response(make_portier, make_fake):
    """P5: master login: AUTH PLAIN <b64 user\\0master\\0pass> after XCLIENT, one write."""
    ir = base64.b64encode(b"u\0mst\0master-Pw-1").decode()
    script = [banner(), fb.expect_line(rb"^XCLIENT "), fb.expect_line(rb"^AUTH PLAIN "),
              fb.send_line("+OK Updated", "+OK Logged in."), fb.serve(pop3_postlogin_handler)]
    px, fake, reply, _, c = login_with(make_portier, make_fake, script,
                                       fields={"master": "mst", "pass_": "master-Pw-1"})
    c.close()
    assert reply == b"+OK Logged in."
    assert re.fullmatch(XCLIENT_RE + f"AUTH PLAIN {ir}\r\n".encode(),
                        fake.connections[0].chunks[0]), fake.connections[0].chunks[0]
    px.log.wait_for(r"Started proxying to .* \(master mst\)")


def test_proxy_mech_login_with_continuations(make_portier, make_fake):
    """P5: AUTH LOGIN = (empty initial response), then `+ <b64>` challenges."""
    script = [banner(False), fb.expect_line(rb"^AUTH LOGIN =\r\n"),
              fb.send_line("+ " + base64.b64encode(b"Username:").decode()),
              fb.expect_line(rb"^dQ==\r\n"),
              fb.send_line("+ " + base64.b64encode(b"Password:").decode()),
              fb.expect_line(("^" + base64.b64encode(PW.encode()).decode() + "\r\n").encode()),
              fb.send_line("+OK Logged in."), fb.serve(pop3_postlogin_handler)]
    px, fake, reply, _, c = login_with(make_portier, make_fake, script,
                                       fields={"proxy_mech": "login"})
    with c:
        assert reply == b"+OK Logged in."
        assert c.cmd("NOOP") == b"+OK NOOP done by fake"
    assert fake.connections[0].failure is None, fake.connections[0].failure


def test_starttls_to_backend_wire(make_portier, make_fake, certs):
    """P4: STLS, +OK, TLS, then XCLIENT+USER at once (no new banner)."""
    script = [banner(), fb.expect_line(rb"^STLS\r\n"), fb.send_line("+OK Begin TLS negotiation now."),
              fb.starttls(certs.cert, certs.key)] + login_ok()[1:]
    px, fake, reply, _, c = login_with(make_portier, make_fake, script,
                                       fields={"starttls": "yes"})
    with c:
        assert reply == b"+OK Logged in."
        assert c.cmd("STAT") == b"+OK 0 0"
    conn = fake.connections[0]
    assert conn.failure is None, conn.failure
    assert conn.tls
    assert conn.chunks[0] == b"STLS\r\n"
    assert f"PASS {PW}\r\n".encode() in conn.received


def test_retry_then_success(make_portier, make_fake):
    script = lambda i: [banner(), fb.expect_lines(2), fb.close()] if i == 0 else login_ok()
    px, fake, reply, _, c = login_with(make_portier, make_fake, script)
    with c:
        assert reply == b"+OK Logged in."
        assert c.cmd("STAT") == b"+OK 0 0"
    assert len(fake.connections) == 2
    px.log.wait_for(r"Started proxying to .*1 reconnects")


def test_backend_refusing_connections(make_portier):
    px = make_portier([User(USER, PW, proxy(fb.closed_listener_port(), proxy_timeout="5"))],
                      listeners=LISTENERS, settings={"login": {"proxy_max_reconnects": 1}})
    with Client(px.port("pop3")) as c:
        assert c.cmd(f"USER {USER}") == b"+OK"
        assert c.cmd(f"PASS {PW}") == RETRYABLE  # P8
    px.log.wait_for(r"pop3-login: Error: proxy\(u,[^)]+\): connect\(127\.0\.0\.1, \d+\) failed: "
                    r"Connection refused \(after \d+ secs, 1 reconnects")
