"""Submission backend fault injection with scripted fake backends.

Each case starts a fresh portier whose only user `u` points at a fake
backend.  Stall cases use proxy_timeout=1 (no retry) and check the client
reply and `state=<name>` in portier's log for every Submission state;
retryable cases use proxy_timeout=5 and proxy_max_reconnects=1.
"""
from __future__ import annotations

import base64
import smtplib
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from tests.support import fake_backend as fb
from tests.support.portier import Listener, User, proxy

USER, PW = "u", "u-subm-client-Pw-42"
UNAVAILABLE = (454, b"4.7.0 Account is temporarily unavailable.")
CAPS = "250-fake.test\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"
CAPS_XCLIENT = CAPS + "250 XCLIENT ADDR PORT PROTO HELO LOGIN SESSION TTL\r\n"
CAPS_PLAIN = CAPS + "250 PIPELINING\r\n"
CAPS_STARTTLS = CAPS + "250 STARTTLS\r\n"


def banner():
    return fb.send_line("220 fake.test ESMTP ready")


def ehlo(caps: str = CAPS_PLAIN):
    return fb.respond(r"^EHLO proxy\.test$", caps)


def auth(reply: str):
    return fb.respond(r"^AUTH PLAIN \S+$", reply + "\r\n")


def run_auth(make_portier, make_fake, script, *, fields=None, timeout="5", reconnects=0,
             certs=None):
    fake = make_fake(script)
    f = dict(fields or {})
    f.setdefault("proxy_timeout", timeout)
    px = make_portier([User(USER, PW, proxy(fake.port, **f))],
                      listeners=(Listener("submission", "none"),),
                      settings={"login": {"proxy_max_reconnects": reconnects}})
    s = smtplib.SMTP("127.0.0.1", px.port("submission", "none"), timeout=15)
    s.ehlo("client.test")
    ir = base64.b64encode(f"\0{USER}\0{PW}".encode()).decode()
    reply = s.docmd("AUTH", f"PLAIN {ir}")
    return px, fake, reply, s


# ------------------------------------------------------------ every state
def stall_cases(certs) -> list[tuple[str, list, dict]]:
    return [
        ("banner", [fb.stall()], {}),
        ("ehlo", [banner(), fb.stall()], {}),
        ("starttls", [banner(), ehlo(CAPS_STARTTLS), fb.stall()], {"starttls": "yes"}),
        ("tls-ehlo", [banner(), ehlo(CAPS_STARTTLS),
                      fb.respond(r"^STARTTLS$", "220 2.0.0 go\r\n"),
                      fb.starttls(certs.cert, certs.key), fb.stall()], {"starttls": "yes"}),
        ("xclient", [banner(), ehlo(CAPS_XCLIENT), fb.stall()], {}),
        ("xclient-ehlo", [banner(), ehlo(CAPS_XCLIENT),
                          fb.respond(r"^XCLIENT ", "220 fake.test ready\r\n"), fb.stall()], {}),
        ("authenticate", [banner(), ehlo(), fb.stall()], {}),
    ]


@pytest.mark.parametrize("state", ["banner", "ehlo", "starttls", "tls-ehlo", "xclient",
                                   "xclient-ehlo", "authenticate"])
def test_stall_in_every_state(make_portier, make_fake, certs, state):
    script, fields = {s: (sc, f) for s, sc, f in stall_cases(certs)}[state]
    px, fake, reply, s = run_auth(make_portier, make_fake, script, fields=fields, timeout="1")
    assert reply == UNAVAILABLE
    px.log.wait_for(rf"submission-login: Error: proxy\(u,[^)]+\): Login timed out in "
                    rf"state={state} \(after \d+ secs")
    assert len(fake.connections) == 1
    s.close()


# ------------------------------------------------------------ reply table
@dataclass
class Fault:
    id: str
    script: Any
    reply: tuple[int, bytes]
    connections: int            # 2 = retried once
    log: str | None = None
    fields: dict | None = None


FAULTS = [
    Fault("auth-failed-forwarded", [banner(), ehlo(), auth("535 5.7.8 Authentication failed.")],
          (535, b"5.7.8 Authentication failed."), 1,
          r"Info: proxy\(u,[^)]+\): Login failed: Authentication failed\."),
    Fault("tempfail-retried-then-forwarded",
          [banner(), ehlo(), auth("454 4.7.0 Temporary authentication failure.")],
          (454, b"4.7.0 Temporary authentication failure."), 2),
    Fault("xclient-refused-not-retried",
          [banner(), ehlo(CAPS_XCLIENT),
           fb.respond(r"^XCLIENT ", "550 5.7.14 You are not from trusted IP\r\n"), fb.stall(3)],
          UNAVAILABLE, 1, r"Aborting due to remote server: XCLIENT failed: 550 5\.7\.14"),
    Fault("no-auth-advertised", [banner(), ehlo("250 fake.test\r\n"), fb.stall(3)],
          UNAVAILABLE, 1, r"Authentication support not advertised \(TLS required\?\)"),
    Fault("starttls-missing", [banner(), ehlo(), fb.stall(3)], UNAVAILABLE, 1,
          r"Aborting due to remote server: STARTTLS not supported", {"starttls": "yes"}),
    Fault("invalid-banner-retried", [fb.send_line("* OK IMAP here"), fb.stall(3)],
          UNAVAILABLE, 2, r"Remote server sent invalid input: Invalid banner: \* OK IMAP here"),
    Fault("inconsistent-reply", [banner(), ehlo("250-fake.test\r\n251 x\r\n"), fb.stall(3)],
          UNAVAILABLE, 2, r"Inconsistent SMTP reply: 251 x \(status != 250\)"),
    Fault("disconnect-mid-login", [banner(), fb.expect_line(), fb.close()], UNAVAILABLE, 2,
          r"Disconnected by server: Connection closed \(state=ehlo"),
]


@pytest.mark.parametrize("f", FAULTS, ids=[f.id for f in FAULTS])
def test_fault_replies(make_portier, make_fake, f):
    px, fake, reply, s = run_auth(make_portier, make_fake, f.script, fields=f.fields,
                                  reconnects=1)
    assert reply == f.reply
    if f.log:
        px.log.wait_for(f.log)
    assert len(fake.connections) == f.connections, fake.connections
    # The client stays in the pre-login dialogue.
    assert s.noop()[0] == 250
    s.close()


def test_backend_refusing_connections(make_portier, make_fake):
    port = fb.closed_listener_port()
    px = make_portier([User(USER, PW, proxy(port, proxy_timeout="5"))],
                      listeners=(Listener("submission", "none"),),
                      settings={"login": {"proxy_max_reconnects": 1}})
    with smtplib.SMTP("127.0.0.1", px.port("submission", "none"), timeout=15) as s:
        s.ehlo("c")
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login(USER, PW)
        assert (e.value.smtp_code, e.value.smtp_error) == UNAVAILABLE
    px.log.wait_for(r"connect\(127\.0\.0\.1, \d+\) failed: Connection refused \(after \d+ secs, "
                    r"1 reconnects")


# ------------------------------------------------------------ proxy_noauth
def test_proxy_noauth_end_to_end(make_portier, make_fake):
    """XCLIENT LOGIN=<user>, no AUTH; the client gets 235 and then talks to
    the backend directly."""
    def postlogin(line: str, conn):
        if line.startswith("MAIL "):
            return "250 2.1.0 backend ok\r\n"
        if line == "QUIT":
            return ("221 2.0.0 Bye\r\n", fb.CLOSE)
        return "500 5.5.1 unexpected\r\n"
    script = [banner(), ehlo(CAPS_XCLIENT),
              fb.respond(r"^XCLIENT HELO=client\.test PROTO=ESMTP LOGIN=u TTL=\d+ PORT=\d+ "
                         r"ADDR=127\.0\.0\.1 SESSION=\S+$", "220 fake.test ready\r\n"),
              ehlo(CAPS_XCLIENT), fb.serve(postlogin)]
    px, fake, reply, s = run_auth(make_portier, make_fake, script,
                                  fields={"proxy_noauth": True})
    assert reply == (235, b"2.7.0 Logged in.")
    assert s.docmd("MAIL FROM:<u@x>") == (250, b"2.1.0 backend ok")
    s.quit()
    fake.wait_done(1)
    assert fake.connections[0].failure is None, fake.connections[0].failure
    assert b"AUTH" not in fake.connections[0].received
