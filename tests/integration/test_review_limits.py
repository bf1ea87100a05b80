"""Limits, penalties and identity (issue 8, review items 4-6 and 10).

- per-IP connection counts are released under the key they were taken with,
  whatever a trusted upstream's ID says about the client's address (both
  directions: the upstream is not locked out, the forwarded IP gets no bypass);
- a backend refusing the forwarded credentials is a failed login: failure
  delay and per-IP penalty, and a good login afterwards still works;
- Submission `proxy_noauth`: the backend's XCLIENT LOGIN is the authenticated
  user, never a trusted upstream's XCLIENT LOGIN;
- a trusted upstream's session id is filtered in `auth:` log lines;
- an unknown IMAP backend NO code does not reach the client;
- SIGTERM ends the process within shutdown_timeout + 1 s with failure delays
  pending;
- IPv6 clients are grouped by /64 for penalties and limits.

Only fake backends (tests/support/fake_backend.py): no Dovecot needed.
"""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import time

import pytest

from tests.support import fake_backend as fb
from tests.support.abuse import IMAP, SUBMISSION, Raw, open_client, plain_ir
from tests.support.abuse import fake_login_script, _smtp_after
from tests.support.portier import Listener, User, proxy

IMAP_ONLY = (Listener("imap", "none"),)
SUBMISSION_ONLY = (Listener("submission", "none"),)


def imap_id(c: Raw, fields: dict[str, str]) -> None:
    body = " ".join(f'"{k}" "{v}"' for k, v in fields.items())
    c.send(f"i ID ({body})\r\n".encode())
    c.expect(rb"(?m)^i OK ")


def failed_login_secs(c: Raw, user: str, password: str = "wrong-Pw-review-0") -> float:
    t0 = time.monotonic()
    c.send(IMAP.auth_plain(plain_ir(user, password)))
    c.expect(IMAP.fail, timeout=15)
    return time.monotonic() - t0


# ============================================================ item 4
def test_upstream_count_released_after_forwarded_id(make_portier, make_fake):
    """Two closed sessions from a trusted upstream that sent an ID with
    x-originating-ip must not lock the upstream out (max_connections_per_ip=2):
    one ends before login, one after relaying."""
    fake = make_fake(lambda i: fake_login_script("imap"))
    px = make_portier([User("rl", "review-Pw-1", proxy(fake.port, proxy_timeout="5"))],
                      listeners=IMAP_ONLY,
                      settings={"login": {"max_connections_per_ip": 2},
                                "auth": {"failure_delay": "0s"}})
    port = px.port("imap")
    # 1: pre-login, closed by the client.
    mark = px.log.mark()
    c = open_client(IMAP, port, source="127.0.0.1")
    imap_id(c, {"x-originating-ip": "10.1.1.1", "x-originating-port": "4711"})
    c.close()
    px.log.wait_for(r"Disconnected: .*rip=10\.1\.1\.1", since=mark)
    # 2: relayed, then ended by the client.
    mark = px.log.mark()
    c = open_client(IMAP, port, source="127.0.0.1")
    imap_id(c, {"x-originating-ip": "10.1.1.2", "x-originating-port": "4712"})
    c.send(IMAP.auth_plain(plain_ir("rl", "review-Pw-1")))
    c.expect(IMAP.ok, timeout=10)
    c.close()
    px.log.wait_for(r"Disconnected by client.*rip=10\.1\.1\.2", since=mark)
    # The upstream's count is back to 0: two more connections are admitted.
    a = open_client(IMAP, port, source="127.0.0.1")
    b = open_client(IMAP, port, source="127.0.0.1")
    for x in (a, b):
        x.send(b"p NOOP\r\n")
        x.expect(rb"(?m)^p OK ")
        x.close()
    assert not px.log.find(r"Too many connections from this IP")


def test_forwarded_ip_gets_no_bypass(make_portier):
    """A trusted upstream's session naming 10.x / 127.0.0.5 must not release
    the count of the real client 127.0.0.5 when it ends."""
    px = make_portier([], listeners=IMAP_ONLY,
                      settings={"login": {"max_connections_per_ip": 1,
                                          "trusted_networks": ["127.0.0.1/32"]},
                                "auth": {"failure_delay": "0s"}})
    port = px.port("imap")
    held = open_client(IMAP, port, source="127.0.0.5")      # counts 127.0.0.5 = 1
    mark = px.log.mark()
    up = open_client(IMAP, port, source="127.0.0.1")
    imap_id(up, {"x-originating-ip": "127.0.0.5", "x-originating-port": "4711"})
    up.close()
    px.log.wait_for(r"Disconnected: .*rip=127\.0\.0\.5", since=mark)
    # 127.0.0.5 still holds its one connection: a second one is refused.
    extra = Raw(port, source="127.0.0.5")
    extra.expect(rb"\* BYE Too many connections from your IP\.\r\n")
    assert extra.closed_by_server(5)
    held.send(b"p NOOP\r\n")
    held.expect(rb"(?m)^p OK ")
    held.close()


# ============================================================ item 5
PENALTY_BASE, PENALTY_MAX = 0.1, 0.8


def test_backend_auth_failure_is_delayed_and_penalised(make_portier, make_fake):
    """`nopassword` user, backend refuses: 0.1, 0.2, 0.4 s (like a local
    failure); a good login afterwards still works and resets the penalty."""
    refusing = make_fake(lambda i: fake_login_script("imap", ok=False), name="refusing")
    good = make_fake(lambda i: fake_login_script("imap"), name="good")
    px = make_portier([User("np", None, proxy(refusing.port, nopassword=True,
                                              proxy_timeout="5")),
                       User("ok", "review-Pw-2", proxy(good.port, proxy_timeout="5"))],
                      listeners=IMAP_ONLY,
                      settings={"login": {"max_auth_attempts": 10,
                                          "auth_penalty_max": f"{int(PENALTY_MAX * 1000)}ms"},
                                "auth": {"failure_delay": f"{int(PENALTY_BASE * 1000)}ms"}})
    c = open_client(IMAP, px.port("imap"), source="127.0.0.2")
    delays = [failed_login_secs(c, "np", "anything-goes") for _ in range(3)]
    expected = [PENALTY_BASE * 2 ** i for i in range(3)]
    for d, e in zip(delays, expected):
        assert e * 0.9 <= d <= e + 0.4, (delays, expected)
    assert len(refusing.connections) == 3
    c.send(IMAP.auth_plain(plain_ir("ok", "review-Pw-2")))
    c.expect(IMAP.ok, timeout=10)
    c.close()
    # The success reset the penalty for 127.0.0.2: back to the base delay.
    c2 = open_client(IMAP, px.port("imap"), source="127.0.0.2")
    d = failed_login_secs(c2, "np", "anything-goes")
    assert PENALTY_BASE * 0.9 <= d <= PENALTY_BASE + 0.4, d
    c2.close()


def test_backend_auth_failures_count_for_max_auth_attempts(make_portier, make_fake):
    refusing = make_fake(lambda i: fake_login_script("imap", ok=False), name="refusing")
    px = make_portier([User("np", None, proxy(refusing.port, nopassword=True,
                                              proxy_timeout="5"))],
                      listeners=IMAP_ONLY,
                      settings={"login": {"max_auth_attempts": 2},
                                "auth": {"failure_delay": "10ms"}})
    c = open_client(IMAP, px.port("imap"))
    failed_login_secs(c, "np", "x1")
    c.send(IMAP.auth_plain(plain_ir("np", "x2")))
    c.expect(rb"(?m)^\* BYE Too many authentication failures\.\r\n", timeout=10)
    assert c.closed_by_server(5)
    px.log.wait_for(r"Disconnected: Too many authentication failures")


# ============================================================ item 6
SMTP_CAPS = ("250-fake.test\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"
             "250 XCLIENT ADDR PORT PROTO HELO LOGIN SESSION TTL FORWARD\r\n")


def noauth_script(i):
    return [fb.send_line("220 fake.test ESMTP ready"), fb.respond(r"^EHLO ", SMTP_CAPS),
            fb.respond(r"^XCLIENT ", "220 fake.test ESMTP ready\r\n"),
            fb.respond(r"^EHLO ", SMTP_CAPS), fb.serve(_smtp_after)]


def test_submission_noauth_login_is_the_authenticated_user(make_portier, make_fake):
    fake = make_fake(noauth_script)
    px = make_portier([User("realuser", "review-Pw-3",
                            proxy(fake.port, proxy_noauth=True, proxy_timeout="5"))],
                      listeners=SUBMISSION_ONLY, settings={"auth": {"failure_delay": "0s"}})
    c = open_client(SUBMISSION, px.port("submission"), source="127.0.0.1")   # trusted
    c.send(b"XCLIENT LOGIN=someone-else ADDR=10.2.3.4\r\n")
    c.expect(rb"(?m)^220 ")
    c.send(b"EHLO client.test\r\n")
    c.expect(rb"(?m)^250 ")
    c.send(SUBMISSION.auth_plain(plain_ir("realuser", "review-Pw-3")))
    c.expect(rb"(?m)^235 ", timeout=10)
    conn = fake.wait_for_connections(1)[0]
    xclient = [ln for ln in conn.lines() if ln.startswith(b"XCLIENT ")]
    assert xclient, conn.received
    assert b" LOGIN=realuser" in xclient[0], xclient
    assert b"someone-else" not in conn.received, conn.received
    px.log.wait_for(r"Ignoring XCLIENT LOGIN=<someone-else>.*rip=10\.2\.3\.4")
    px.log.wait_for(r"proxy\(realuser,.*Started proxying")
    c.close()


# ============================================================ item 10
def test_trusted_session_id_filtered_in_auth_lines(make_portier):
    px = make_portier([User("sid", "review-Pw-4", proxy(9))], listeners=IMAP_ONLY,
                      settings={"auth": {"failure_delay": "0s", "verbose": True}})
    c = open_client(IMAP, px.port("imap"), source="127.0.0.1")
    imap_id(c, {"x-session-id": "ab>, user=<evil)", "x-originating-ip": "10.3.3.3"})
    mark = px.log.mark()
    failed_login_secs(c, "sid")
    m = px.log.wait_for(r"auth: .*passwd-file\(sid,10\.3\.3\.3,<(.*)>\): Password mismatch",
                        since=mark)
    sid = m.group(1)
    assert re.fullmatch(r"[A-Za-z0-9+/=._?-]*", sid), sid
    assert sid.startswith("ab???user=?evil"), sid
    for line in px.log.lines():
        assert ", user=<evil" not in line, line
    c.close()


def test_unknown_backend_no_code_is_not_forwarded(make_portier, make_fake):
    fake = make_fake(lambda i: [*fake_login_script("imap", ok=False)[:3],
                                fb.send_line("L NO [X-NOSUCHUSER] alice does not exist"),
                                fb.stall()])
    px = make_portier([User("nc", "review-Pw-5", proxy(fake.port, proxy_timeout="5"))],
                      listeners=IMAP_ONLY, settings={"auth": {"failure_delay": "0s"}})
    c = open_client(IMAP, px.port("imap"))
    c.send(IMAP.auth_plain(plain_ir("nc", "review-Pw-5")))
    c.expect(rb"(?m)^a NO \[AUTHENTICATIONFAILED\] Authentication failed\.\r\n", timeout=10)
    assert b"does not exist" not in c.data
    # The backend's text stays in the log.
    px.log.wait_for(r"Login failed: \[X-NOSUCHUSER\] alice does not exist")
    c.close()


def test_sigterm_with_failure_delays_pending(make_portier, make_fake):
    """Failure delays of 5 s (local and backend-refused logins) are pending
    at SIGTERM: the process exits within shutdown_timeout (1 s) + 1 s."""
    refusing = make_fake(lambda i: fake_login_script("imap", ok=False), name="refusing")
    px = make_portier([User("lc", "review-Pw-6", proxy(9)),
                       User("np", None, proxy(refusing.port, nopassword=True,
                                              proxy_timeout="5"))],
                      listeners=IMAP_ONLY,
                      settings={"server": {"shutdown_timeout": "1s"},
                                "login": {"auth_penalty_max": "30s"},
                                "auth": {"failure_delay": "5s", "verbose": True}})
    port = px.port("imap")
    clients = []
    for i in range(3):
        c = open_client(IMAP, port, source=f"127.0.0.{10 + i}")
        c.send(IMAP.auth_plain(plain_ir("lc", "wrong-Pw-review-9")))
        clients.append(c)
    nb = open_client(IMAP, port, source="127.0.0.20")
    nb.send(IMAP.auth_plain(plain_ir("np", "whatever")))
    clients.append(nb)
    px.log.wait_for(r"Password mismatch", count=3)
    px.log.wait_for(r"proxy\(np,.*Login failed: ")
    t0 = time.monotonic()
    px.signal(signal.SIGTERM)
    try:
        px.proc.wait(6)
    except subprocess.TimeoutExpired:
        pass
    elapsed = time.monotonic() - t0
    rc = px.proc.poll()
    if rc is None:
        px.kill()
    else:
        px._finish()
    assert rc == 0 and elapsed <= 2.0, (rc, elapsed)
    for c in clients:
        c.close()


# ============================================================ item 10: IPv6
def test_ipv6_penalty_groups_by_prefix(make_portier):
    """Forwarded IPv6 addresses from one /64 share a penalty; another /64
    does not."""
    px = make_portier([User("v6", "review-Pw-7", proxy(9))], listeners=IMAP_ONLY,
                      settings={"login": {"max_auth_attempts": 10, "auth_penalty_max": "800ms"},
                                "auth": {"failure_delay": "100ms"}})
    port = px.port("imap")

    def fail_as(addr: str) -> float:
        c = open_client(IMAP, port, source="127.0.0.1")
        imap_id(c, {"x-originating-ip": addr, "x-originating-port": "1"})
        d = failed_login_secs(c, "v6")
        c.close()
        return d

    first = [fail_as("2001:db8:1:2::1"), fail_as("2001:db8:1:2::2")]
    same = fail_as("2001:db8:1:2:ffff::3")
    other = fail_as("2001:db8:1:3::1")
    assert 0.09 <= first[0] <= 0.5 and 0.18 <= first[1] <= 0.6, first
    assert 0.36 <= same <= 0.8, (first, same)
    assert 0.09 <= other <= 0.5, (first, same, other)


def _has_ipv6_loopback() -> bool:
    try:
        out = subprocess.run(["ip", "-6", "addr", "show", "dev", "lo"], capture_output=True,
                             text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "::1/128" in out


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="::1 is not configured")
def test_ipv6_loopback_connection_limit(make_portier):
    px = make_portier([], listeners=(Listener("imap", "none", address="::1"),),
                      settings={"login": {"max_connections_per_ip": 1},
                                "auth": {"failure_delay": "0s"}})
    port = px.port("imap")
    a = socket.create_connection(("::1", port), 5)
    assert a.recv(256).startswith(b"* OK ")
    b = socket.create_connection(("::1", port), 5)
    data = b""
    deadline = time.monotonic() + 5
    while b"\r\n" not in data and time.monotonic() < deadline:
        chunk = b.recv(256)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"* BYE Too many connections from your IP."), data
    px.log.wait_for(r"max_connections_per_ip=1.*rip=::1")
    a.close()
    b.close()
    # Released under the same key: a new connection is admitted. (Wait for
    # the end of the admitted session `a`, not the refusal's own line.)
    px.log.wait_for(r"Disconnected: Connection closed .*rip=::1", count=1)
    c = socket.create_connection(("::1", port), 5)
    assert c.recv(256).startswith(b"* OK ")
    c.close()
