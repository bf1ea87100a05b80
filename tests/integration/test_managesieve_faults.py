"""ManageSieve backend fault injection with scripted fake backends.

Each case starts a fresh portier whose only user `u` points at a fake
backend. Timeout cases use proxy_timeout=1 (no retry: a retry needs more
than 1.1 s left) and assert `state=<name>` for every backend state;
retryable cases use proxy_timeout=5 and proxy_max_reconnects=1, so
"retried" means the fake saw exactly 2 connections.
"""
from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support import fake_backend as fb
from tests.support.portier import Listener, User, proxy
from test_managesieve import RawSieve

USER, PW = "u", "u-sieve-client-Pw-42"
TRYLATER = b'NO (TRYLATER) "Account is temporarily unavailable."'
NORETRY = b'NO (TRYLATER/NORETRY) "Account is temporarily unavailable."'
AUTH_FAILED = b'NO "Authentication failed."'
LISTENERS = (Listener("managesieve", "none"),)
T = "1"

CAPS = ['"IMPLEMENTATION" "Fake Pigeonhole"', '"SIEVE" "fileinto"', '"SASL" "PLAIN LOGIN"',
        '"STARTTLS"', '"VERSION" "1.0"', '"XCLIENT"']


def greeting(without: tuple[str, ...] = (), text: str = "Fake ready."):
    lines = [c for c in CAPS if not any(c.startswith(f'"{w}"') for w in without)]
    return fb.send_line(*lines, f'OK "{text}"')


def postlogin(line: str, conn):
    if line.upper().startswith("LOGOUT"):
        return ('OK "Logout completed."\r\n', fb.CLOSE)
    if line.upper().startswith("LISTSCRIPTS"):
        return '"fake-script" ACTIVE\r\nOK "Listscripts completed."\r\n'
    return 'OK "fake ok"\r\n'


def auth_reply(reply: str):
    """Greeting without XCLIENT, read AUTHENTICATE, answer `reply`, keep the line."""
    return [greeting(("XCLIENT",)), fb.expect_line(rb'^AUTHENTICATE "PLAIN" "'),
            fb.send_line(reply), fb.stall()]


def starttls_steps(cert, key):
    return [greeting(), fb.expect_line(rb"^STARTTLS\r?\n$"),
            fb.send_line('OK "Begin TLS negotiation now."'), fb.starttls(cert, key)]


@dataclass
class Fault:
    id: str
    script: Any                   # list of steps, or f(certs) -> list
    reply: bytes
    retried: bool | None
    log: str | None = None
    state: str | None = None
    fields: dict = field(default_factory=dict)
    timeout: str = "5"
    hidden: bytes | None = None


FAULTS = [
    # --- every state stalls (proxy_timeout=1) ------------------------------
    Fault("stall-none", [fb.stall()], TRYLATER, False,
          r"Login timed out in state=none \(after 1 secs", "none", timeout=T),
    Fault("stall-none-mid-greeting", [fb.send_line(CAPS[0]), fb.stall()], TRYLATER, False,
          r"Login timed out in state=none", "none", timeout=T),
    Fault("stall-tls-start", [greeting(), fb.expect_line(rb"^STARTTLS"), fb.stall()],
          TRYLATER, False, r"Login timed out in state=tls-start", "tls-start", timeout=T,
          fields={"starttls": "yes"}),
    Fault("stall-tls-ready", lambda c: starttls_steps(c.cert, c.key) + [fb.stall()],
          TRYLATER, False, r"Login timed out in state=tls-ready", "tls-ready", timeout=T,
          fields={"starttls": "yes"}),
    Fault("stall-xclient", [greeting(), fb.expect_line(rb"^XCLIENT "), fb.stall()],
          TRYLATER, False, r"Login timed out in state=xclient", "xclient", timeout=T),
    Fault("stall-auth", [greeting(("XCLIENT",)), fb.expect_line(rb"^AUTHENTICATE "),
                         fb.stall()],
          TRYLATER, False, r"Login timed out in state=auth", "auth", timeout=T),
    # --- backend goes away / breaks the protocol (retried) -----------------
    Fault("close-before-greeting", [fb.close()], TRYLATER, True,
          r"Disconnected by server: Connection closed.*\(state=none, duration=\d+s\)", "none"),
    Fault("close-after-authenticate",
          [greeting(("XCLIENT",)), fb.expect_line(rb"^AUTHENTICATE"), fb.close()],
          TRYLATER, True, r"Disconnected by server: Connection closed.*\(state=auth,", "auth"),
    Fault("imap-banner", [fb.send_line("* OK IMAP ready"), fb.stall()], TRYLATER, True,
          r"Remote returned with invalid capability/greeting line: \* OK IMAP ready"),
    Fault("no-instead-of-greeting", [fb.send_line('NO "busy"'), fb.stall()], TRYLATER, True,
          r"Remote sent unexpected NO/BYE instead of capability response"),
    Fault("sasl-without-value", [fb.send_line('"SASL"', "OK"), fb.stall()], TRYLATER, True,
          r"Server returned erroneous SASL capability"),
    Fault("overlong-line", [fb.long_line(70000, prefix=b'"SIEVE" "'), fb.stall()],
          TRYLATER, True, r"Too long input line"),
    Fault("starttls-refused",
          [greeting(), fb.expect_line(rb"^STARTTLS"), fb.send_line('NO "nope"'), fb.stall()],
          TRYLATER, True, r"Remote refused STARTTLS command: NO \"nope\"",
          fields={"starttls": "yes"}),
    # --- configuration failures (not retried) ------------------------------
    Fault("starttls-not-advertised", [greeting(("STARTTLS",)), fb.stall()], NORETRY, False,
          r"Aborting due to remote server: Remote doesn't support STARTTLS",
          fields={"starttls": "yes"}),
    Fault("xclient-refused",
          [greeting(), fb.expect_line(rb"^XCLIENT "), fb.send_line('NO "not trusted"'),
           fb.stall()],
          NORETRY, False, r"Remote XCLIENT failed: NO \"not trusted\""),
    Fault("auth-disabled", [fb.send_line('"SASL" ""', "OK"), fb.stall()], NORETRY, False,
          r"Server has disabled authentication \(TLS required\?\)"),
    # --- backend answers AUTHENTICATE ---------------------------------------
    Fault("auth-no", auth_reply('NO "secret-ish backend text"'), AUTH_FAILED, False,
          r"Login failed", hidden=b"secret-ish"),
    Fault("auth-no-trylater", auth_reply('NO (TRYLATER) "Backend busy."'),
          b'NO (TRYLATER) "Backend busy."', True),
    Fault("auth-no-trylater-noretry", auth_reply('NO (TRYLATER/NORETRY) "broken detail"'),
          NORETRY, False, r"TRYLATER/NORETRY", hidden=b"broken detail"),
    Fault("auth-no-limit", auth_reply('NO (LIMIT/CONNECTIONS) "Too many sessions."'),
          b'NO (LIMIT/CONNECTIONS) "Too many sessions."', False),
    Fault("auth-bye", auth_reply('BYE "going away"'), TRYLATER, True,
          r"Remote sent invalid response: BYE"),
]


def run_login(make_portier, make_fake, certs, script, fields, timeout, reconnects=1,
              source=None):
    if callable(script):
        script = script(certs)
    fake = make_fake(script)
    fields = dict(fields)
    fields.setdefault("proxy_timeout", timeout)
    if fields.get("starttls"):
        fields.setdefault("starttls", "yes")
    px = make_portier([User(USER, PW, proxy(fake.port, **fields))], listeners=LISTENERS,
                      settings={"login": {"proxy_max_reconnects": reconnects}})
    c = RawSieve(px.port("managesieve", "none"), source=source)
    t0 = time.monotonic()
    reply = c.authenticate(USER, PW)
    return px, fake, reply, time.monotonic() - t0, c


@pytest.mark.parametrize("case", FAULTS, ids=[f.id for f in FAULTS])
def test_login_fault(make_portier, make_fake, certs, case: Fault):
    px, fake, reply, elapsed, c = run_login(make_portier, make_fake, certs, case.script,
                                            case.fields, case.timeout)
    # The client is back in the pre-login state.
    assert c.command("NOOP") == [b'OK "NOOP Completed"']
    c.close()
    assert reply == [case.reply], f"client got {reply!r}"
    if case.hidden:
        assert case.hidden not in b"".join(reply), "backend text leaked to the client"
    if case.timeout == T:
        assert 0.8 <= elapsed <= 3.5, f"timeout fired after {elapsed:.2f}s, expected ~1s"
    if case.retried is not None:
        want = 2 if case.retried else 1
        assert len(fake.connections) == want, (
            f"backend saw {len(fake.connections)} connection attempts, expected {want}")
        assert bool(px.log.find(r"- reconnecting \(attempt #1\)")) == case.retried, \
            px.log.text()
    if case.log:
        m = px.log.wait_for(case.log, timeout=3)
        assert f"managesieve-login: " in m.string and \
            f"proxy(u,127.0.0.1:{fake.port})" in m.string, m.string
    if case.state:
        states = px.log.find(r"state=([^ ,)]+)")
        assert states, f"no state= in log:\n{px.log.text()}"
        assert states[-1][1] == case.state, states[-1].string


# ======================================================== what reaches the backend
def test_xclient_contents_and_success(make_portier, make_fake, certs):
    script = [greeting(), fb.expect_line(rb"^XCLIENT "), fb.send_line('OK "Updated"'),
              fb.expect_line(rb'^AUTHENTICATE "PLAIN" "'), fb.send_line('OK "Logged in."'),
              fb.serve(postlogin)]
    px, fake, reply, _, c = run_login(make_portier, make_fake, certs, script,
                                      {"forward_k": "v"}, "5", source="127.0.0.2")
    assert reply == [b'OK "Logged in."']
    assert c.command("LISTSCRIPTS") == [b'"fake-script" ACTIVE', b'OK "Listscripts completed."']
    c.close()
    lines = fake.connections[0].lines()
    m = re.fullmatch(rb"XCLIENT ADDR=127\.0\.0\.2 PORT=(\d+) DESTADDR=127\.0\.0\.1 "
                     rb"DESTPORT=(\d+) SESSION=(\S+) TTL=(\d+) CLIENT-TRANSPORT=insecure "
                     rb"FORWARD=(\S+)\r?\n?", lines[0])
    assert m, lines[0]
    assert int(m[2]) == px.port("managesieve", "none")
    assert base64.b64decode(m[5]) == b"k=v"
    session = m[3].decode()
    px.log.wait_for(rf"Started proxying to .*session=<{re.escape(session)}>")
    assert lines[1].rstrip(b"\r\n") == b'AUTHENTICATE "PLAIN" "%s"' % base64.b64encode(
        f"\0{USER}\0{PW}".encode())


def test_proxy_not_trusted_suppresses_xclient(make_portier, make_fake, certs):
    script = [greeting(), fb.expect_line(rb'^AUTHENTICATE "PLAIN" "'),
              fb.send_line('OK "Logged in."'), fb.serve(postlogin)]
    px, fake, reply, _, c = run_login(make_portier, make_fake, certs, script,
                                      {"proxy_not_trusted": True}, "5")
    c.close()
    assert reply == [b'OK "Logged in."']
    assert not any(l.startswith(b"XCLIENT") for l in fake.connections[0].lines())


def test_starttls_then_login_mech_with_challenges(make_portier, make_fake, certs):
    u64 = base64.b64encode(USER.encode())
    p64 = base64.b64encode(PW.encode())
    script = starttls_steps(certs.cert, certs.key) + [
        greeting(("STARTTLS", "XCLIENT")),
        fb.expect_line(rb'^AUTHENTICATE "LOGIN"\r\n$'),
        fb.send_line('"VXNlcm5hbWU6"'), fb.expect_line(rb'^"' + re.escape(u64) + rb'"\r\n$'),
        fb.send_line("{12}", "UGFzc3dvcmQ6"), fb.expect_line(rb'^"' + re.escape(p64) + rb'"\r\n$'),
        fb.send_line('OK (SASL "") "Logged in over TLS."'), fb.serve(postlogin)]
    px, fake, reply, _, c = run_login(make_portier, make_fake, certs, script,
                                      {"starttls": "yes", "proxy_mech": "LOGIN"}, "5")
    assert reply == [b'OK (SASL "") "Logged in over TLS."'], (reply, fake.connections[0].failure)
    assert c.command("LOGOUT") == [b'OK "Logout completed."']
    c.close()
    assert fake.connections[0].failure is None
