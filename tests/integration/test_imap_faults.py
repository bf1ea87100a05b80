"""IMAP backend fault injection with scripted fake backends.

Each case starts a fresh portier whose only user `u` points at a fake
backend.  Timeout cases use proxy_timeout=1 (no retry: a retry needs more
than 1.1 s of the timeout left); retryable cases use proxy_timeout=5 and
proxy_max_reconnects=1, so "retried" means the fake saw exactly 2
connections and the log has `- reconnecting (attempt #1)`.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from tests.support import backend_scripts as bs
from tests.support import fake_backend as fb
from tests.support.backend_scripts import IMAP_POSTLOGIN_CAPS, IMAP_PRELOGIN_CAPS
from tests.support.imap_client import RawIMAP
from tests.support.portier import User, proxy
from tests.support.util import collapse_plus

USER, PW = "u", "u-client-Pw-42"
GENERIC_UNAVAILABLE = b"NO [UNAVAILABLE] Account is temporarily unavailable."
GENERIC_SERVERBUG = b"NO [SERVERBUG] Account is temporarily unavailable."
GENERIC_AUTHFAILED = b"NO [AUTHENTICATIONFAILED] Authentication failed."
CAPS_NO_STARTTLS = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN"
CAPS_LOGINDISABLED = "IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ LOGINDISABLED"


def login_with(make_portier, make_fake, script, *, fields: dict[str, Any] | None = None,
               timeout: str = "5", reconnects: int = 1, fake_tls=None, client_tls=False,
               login: str | None = None, user: User | None = None):
    """Start fake + portier, run one LOGIN; return (portier, fake, reply lines,
    elapsed seconds, raw client still open)."""
    fake = make_fake(script, tls=fake_tls)
    fields = dict(fields or {})
    fields.setdefault("proxy_timeout", timeout)
    u = user or User(USER, PW, proxy(fake.port, **fields))
    px = make_portier([u], settings={"login": {"proxy_max_reconnects": reconnects}})
    c = RawIMAP(px.port("imap", "implicit" if client_tls else "none"), tls=client_tls,
                ca=px.certs.ca)
    t0 = time.monotonic()
    lines = c.command("a", login or f'LOGIN {u.name} "{PW}"')
    return px, fake, lines, time.monotonic() - t0, c


# =====================================================================  table
@dataclass
class Fault:
    id: str
    script: Any
    reply: bytes                  # expected tagged reply after "a "
    retried: bool | None          # None: don't check
    log: str | None = None        # regex that must appear in portier's log
    state: str | None = None      # expected state= (runs of '+' collapsed)
    fields: dict = field(default_factory=dict)
    timeout: str = "5"
    fake_tls: str | None = None   # None | "good" | "wrong" | "self"
    hidden: bytes | None = None   # backend text the client must NOT see


banner = bs.imap_banner
stall = fb.stall
T = "1"   # proxy_timeout for timeout cases

FAULTS = [
    # --- timeouts (proxy_timeout=1) ---------------------------------------
    Fault("silent-after-accept", [stall()], GENERIC_UNAVAILABLE, False,
          r"Login timed out in state=\S+ \(after 1 secs", "/none", timeout=T),
    Fault("banner-with-id-then-stall", [banner(), stall()], GENERIC_UNAVAILABLE, False,
          r"Login timed out in state=\S+ \(after 1 secs", "id+login/banner", timeout=T),
    Fault("bare-banner-then-stall", [banner(None), stall()], GENERIC_UNAVAILABLE, False,
          r"Login timed out in state=\S+ \(after 1 secs", "capability+login/banner",
          timeout=T),
    Fault("id-ok-then-stall", [banner(), fb.expect_lines(2), bs.imap_id_reply(), stall()],
          GENERIC_UNAVAILABLE, False, r"Login timed out", "login/id", timeout=T),
    Fault("capability-ok-then-stall",
          [banner(None), fb.expect_lines(2),
           fb.send_line(f"* CAPABILITY {IMAP_PRELOGIN_CAPS}", "C OK Capability completed."),
           stall()],
          GENERIC_UNAVAILABLE, False, r"Login timed out", "login/capability", timeout=T),
    Fault("starttls-sent-id-ok-then-stall",
          [banner(), fb.expect_lines(2), bs.imap_id_reply(), stall()],
          GENERIC_UNAVAILABLE, False, r"Login timed out", "starttls/id", timeout=T,
          fields={"starttls": "yes"}),
    # --- backend goes away during login (retried) --------------------------
    Fault("close-before-banner", [fb.close()], GENERIC_UNAVAILABLE, True,
          r"Disconnected by server: Connection closed.*\(state=\S+, duration=\d+s\)", "/none"),
    Fault("close-after-login-sent", [banner(), fb.expect_lines(2), fb.close()],
          GENERIC_UNAVAILABLE, True,
          r"Disconnected by server: Connection closed.*\(state=\S+, duration=\d+s\)",
          "id+login/banner"),
    Fault("reset-after-login-sent", [banner(), fb.expect_lines(2), fb.reset()],
          GENERIC_UNAVAILABLE, True, r"Disconnected by server: Connection (closed|reset)"),
    # --- protocol errors (retried) -----------------------------------------
    Fault("invalid-banner-bye", [fb.send_line("* BYE go away"), stall()],
          GENERIC_UNAVAILABLE, True, r"Invalid banner: \* BYE go away"),
    Fault("garbage-banner", [fb.garbage(300, seed=7, crlf=True), stall()],
          GENERIC_UNAVAILABLE, True, r"Invalid banner"),
    Fault("overlong-banner", [fb.long_line(70000), stall()],
          GENERIC_UNAVAILABLE, True, r"Too long input line"),
    # --- backend answers LOGIN --------------------------------------------
    Fault("login-no-authenticationfailed",
          bs.imap_login_reply("L NO [AUTHENTICATIONFAILED] secret-ish backend text"),
          GENERIC_AUTHFAILED, False, r"Login failed", hidden=b"secret-ish"),
    Fault("login-no-without-code", bs.imap_login_reply("L NO secret-ish go away"),
          GENERIC_AUTHFAILED, False, r"Login failed", hidden=b"secret-ish"),
    Fault("login-bad", bs.imap_login_reply("L BAD secret-ish syntax error"),
          GENERIC_AUTHFAILED, False, hidden=b"secret-ish"),
    Fault("login-no-unavailable", bs.imap_login_reply("L NO [UNAVAILABLE] busy"),
          b"NO [UNAVAILABLE] busy", True),
    Fault("login-no-serverbug", bs.imap_login_reply("L NO [SERVERBUG] internal detail"),
          GENERIC_SERVERBUG, False, hidden=b"internal detail"),
    Fault("login-no-other-code-verbatim",
          bs.imap_login_reply("L NO [LIMIT] Too many sessions"),
          b"NO [LIMIT] Too many sessions", False),
    # --- backend TLS / capabilities misconfigured (not retried) ------------
    Fault("starttls-not-advertised", [banner(CAPS_NO_STARTTLS), stall()], GENERIC_SERVERBUG,
          False, r"STARTTLS not supported", fields={"starttls": "yes"}),
    Fault("starttls-refused",
          [banner(), fb.expect_lines(2), bs.imap_id_reply(), fb.send_line("S NO no tls here"),
           stall()],
          GENERIC_UNAVAILABLE, True, r"STARTTLS failed", fields={"starttls": "yes"}),
    Fault("logindisabled-without-tls", [banner(CAPS_LOGINDISABLED), stall()],
          GENERIC_SERVERBUG, False, r"LOGINDISABLED"),
    Fault("ssl-cert-name-mismatch", bs.imap_login_ok(), GENERIC_SERVERBUG, False,
          fields={"ssl": "yes"}, fake_tls="wrong"),
    Fault("ssl-cert-untrusted-issuer", bs.imap_login_ok(), GENERIC_SERVERBUG, False,
          fields={"ssl": "yes"}, fake_tls="self"),
    Fault("ssl-to-plaintext-backend", [banner(), stall()], GENERIC_UNAVAILABLE, None,
          fields={"ssl": "yes"}),
]


def _tls(certs, which):
    return {None: None, "good": (certs.cert, certs.key), "wrong": (certs.wrong_cert,
            certs.wrong_key), "self": (certs.self_cert, certs.self_key)}[which]


@pytest.mark.parametrize("case", FAULTS, ids=[f.id for f in FAULTS])
def test_login_fault(make_portier, make_fake, certs, case: Fault):
    px, fake, lines, elapsed, c = login_with(
        make_portier, make_fake, case.script, fields=case.fields, timeout=case.timeout,
        fake_tls=_tls(certs, case.fake_tls))
    c.close()
    assert lines[-1] == b"a " + case.reply, f"client got {lines!r}"
    if case.hidden:
        assert case.hidden not in b"\n".join(lines), "backend text leaked to the client"
    if case.timeout == T:
        assert 0.8 <= elapsed <= 3.5, f"timeout fired after {elapsed:.2f}s, expected ~1s"
    if case.retried is not None:
        want = 2 if case.retried else 1
        assert len(fake.connections) == want, (
            f"backend saw {len(fake.connections)} connection attempts, expected {want}")
        retry_lines = px.log.find(r"- reconnecting \(attempt #1\)")
        assert bool(retry_lines) == case.retried, px.log.text()
        if case.retried:
            assert px.log.find(r"imap-login: Warning: proxy\(u,127\.0\.0\.1:\d+\): .* - "
                               r"reconnecting \(attempt #1\)"), px.log.text()
    if case.log:
        m = px.log.wait_for(case.log, timeout=3)
        assert f"proxy(u,127.0.0.1:{fake.port})" in m.string, m.string
        assert "user=<u>" in m.string, m.string
    if case.state:
        ms = [m for m in px.log.find(r"state=([^ ,)]+)")]
        assert ms, f"no state= in log:\n{px.log.text()}"
        assert collapse_plus(ms[-1][1]) == case.state, ms[-1].string


# ============================================================ success shapes
@dataclass
class Success:
    id: str
    script: Any
    reply: bytes | str            # exact tagged line after "a " (regex if str)
    untagged_present: tuple = ()  # lines the client must see before the tag
    untagged_absent: tuple = ()


SUCCESSES = [
    Success("ok-without-caps-gets-banner-caps",
            [banner(), fb.expect_lines(2), bs.imap_id_reply(), fb.send_line("L OK Logged in"),
             bs.imap_serve()],
            f"OK [CAPABILITY {IMAP_PRELOGIN_CAPS}] Logged in".encode()),
    Success("ok-with-caps-passed-through",
            bs.imap_login_ok(ok_line="L OK [CAPABILITY IMAP4rev1 XYZZY] Welcome"),
            b"OK [CAPABILITY IMAP4rev1 XYZZY] Welcome"),
    Success("ok-other-code-replaced-by-caps",
            [banner(), fb.expect_lines(2), bs.imap_id_reply(),
             fb.send_line("L OK [ALERT] hi there"), bs.imap_serve()],
            f"OK [CAPABILITY {IMAP_PRELOGIN_CAPS}] hi there".encode()),
    Success("caps-from-capability-reply",
            [banner(None), fb.expect_line(rb"^C CAPABILITY"), fb.expect_line(rb"^L LOGIN"),
             fb.send_line("* CAPABILITY IMAP4rev1 FROMCAPA", "C OK done", "L OK Logged in"),
             bs.imap_serve()],
            b"OK [CAPABILITY IMAP4rev1 FROMCAPA] Logged in"),
    Success("untagged-alert-forwarded-bye-and-id-swallowed",
            [banner(), fb.expect_lines(2), bs.imap_id_reply(),
             fb.send_line("* OK [ALERT] maintenance tonight", "* BYE ignore me",
                          f"L OK [CAPABILITY {IMAP_POSTLOGIN_CAPS}] Logged in"),
             bs.imap_serve()],
            f"OK [CAPABILITY {IMAP_POSTLOGIN_CAPS}] Logged in".encode(),
            untagged_present=(b"* OK [ALERT] maintenance tonight",),
            untagged_absent=(b"* BYE ignore me", b'* ID ("name" "fake")')),
]


@pytest.mark.parametrize("case", SUCCESSES, ids=[s.id for s in SUCCESSES])
def test_login_success_reply(make_portier, make_fake, case: Success):
    px, fake, lines, _, c = login_with(make_portier, make_fake, case.script)
    with c:
        assert lines[-1] == b"a " + case.reply, lines
        for want in case.untagged_present:
            assert want in lines[:-1], lines
        for bad in case.untagged_absent:
            assert bad not in lines, lines
        # The session is relayed now.
        assert c.command("n", "NOOP")[-1] == b"n OK NOOP completed by fake backend."
    px.log.wait_for(r"proxy\(u,127\.0\.0\.1:\d+\): Started proxying")


def test_retry_then_success(make_portier, make_fake):
    """First attempt dies after the banner, the retry succeeds with a fresh
    dialogue; the client only sees the success."""
    script = lambda i: [banner(), fb.expect_lines(2), fb.close()] if i == 0 \
        else bs.imap_login_ok()
    px, fake, lines, elapsed, c = login_with(make_portier, make_fake, script)
    with c:
        assert lines[-1].startswith(b"a OK [CAPABILITY"), lines
        assert c.command("n", "NOOP")[-1] == b"n OK NOOP completed by fake backend."
    assert len(fake.connections) == 2
    assert fake.connections[1].lines()[:2][1].startswith(b"L LOGIN ")
    px.log.wait_for(r"reconnecting \(attempt #1\)")
    px.log.wait_for(r"Started proxying to .*1 reconnects")


# ============================================================= wire details
ID_RE = (rb'I ID \("x-session-id" "(?P<sid>[^"]+)" "x-originating-ip" "(?P<oip>[0-9.]+)" '
         rb'"x-originating-port" "(?P<oport>\d+)" "x-connected-ip" "(?P<cip>[0-9.]+)" '
         rb'"x-connected-port" "(?P<cport>\d+)" "x-proxy-ttl" "(?P<ttl>\d+)" '
         rb'"x-client-transport" "(?P<transport>insecure|TLS)"(?P<rest>[^)]*)\)\r\n')


def test_pipelined_id_and_login_in_one_segment(make_portier, make_fake):
    fields = {"destuser": "dst", "pass_": "backend-Pw-9"}
    px, fake, lines, _, c = login_with(make_portier, make_fake, bs.imap_login_ok(),
                                       fields=fields, timeout="5")
    with c:
        assert lines[-1].startswith(b"a OK"), lines
        conn = fake.connections[0]
        first = conn.chunks[0]
        m = re.fullmatch(ID_RE + rb'L LOGIN "dst" "backend-Pw-9"\r\n', first)
        assert m, f"first backend read was {first!r}"
        assert m["oip"] == b"127.0.0.1" and m["cip"] == b"127.0.0.1"
        assert int(m["oport"]) == c.local_port
        assert int(m["cport"]) == px.port("imap", "none")
        # README: [login] proxy_ttl defaults to 5; the backend gets it minus 1
        # (Dovecot 2.3 sends 4 as well, see the reference transcripts).
        assert m["ttl"] == b"4", "x-proxy-ttl should be the default proxy_ttl 5 minus 1"
        assert m["transport"] == b"insecure"
        assert m["rest"] == b""
        started = px.log.wait_for(r"Started proxying.* session=<([^>]+)>")
        assert started[1].encode() == m["sid"], "x-session-id differs from logged session"


def test_id_from_tls_client_and_forward_fields(make_portier, make_fake):
    px, fake, lines, _, c = login_with(make_portier, make_fake, bs.imap_login_ok(),
                                       fields={"forward_foo": "bar"}, client_tls=True)
    c.close()
    m = re.match(ID_RE, fake.connections[0].chunks[0])
    assert m, fake.connections[0].chunks[0]
    assert m["transport"] == b"TLS"
    assert m["rest"] == b' "x-forward-foo" "bar"'


def test_bare_banner_sends_capability_and_login(make_portier, make_fake):
    script = [banner(None), fb.expect_lines(2),
              fb.send_line("* CAPABILITY IMAP4rev1 X", "C OK done", "L OK Logged in"),
              bs.imap_serve()]
    px, fake, lines, _, c = login_with(make_portier, make_fake, script)
    c.close()
    assert fake.connections[0].chunks[0] == f'C CAPABILITY\r\nL LOGIN "u" "{PW}"\r\n'.encode()


def test_proxy_not_trusted_sends_no_id(make_portier, make_fake):
    script = [banner(), fb.expect_line(rb"^L LOGIN"), fb.send_line("L OK Logged in"),
              bs.imap_serve()]
    px, fake, lines, _, c = login_with(make_portier, make_fake, script,
                                       fields={"proxy_not_trusted": True})
    c.close()
    assert lines[-1].startswith(b"a OK"), lines
    assert fake.connections[0].chunks[0] == f'L LOGIN "u" "{PW}"\r\n'.encode()


def test_proxy_nopipelining_waits_for_each_reply(make_portier, make_fake):
    """With proxy_nopipelining nothing follows ID until `I OK`.  Absence can
    only be checked with a bounded wait: we give portier 0.3 s to misbehave."""
    marks = {}
    script = [banner(), fb.expect_line(rb"^I ID \("), fb.stall(0.3),
              fb.call(lambda c: marks.setdefault("before_id_ok", c.received)),
              bs.imap_id_reply(), fb.expect_line(rb"^L LOGIN "),
              fb.send_line("L OK Logged in"), bs.imap_serve()]
    px, fake, lines, _, c = login_with(make_portier, make_fake, script,
                                       fields={"proxy_nopipelining": True})
    c.close()
    assert lines[-1].startswith(b"a OK"), lines
    assert fake.connections[0].failure is None, fake.connections[0].failure
    assert re.fullmatch(ID_RE, marks["before_id_ok"]), marks["before_id_ok"]


def test_starttls_to_backend_wire(make_portier, make_fake, certs):
    px, fake, lines, _, c = login_with(make_portier, make_fake,
                                       bs.imap_starttls_ok(certs.cert, certs.key),
                                       fields={"starttls": "yes"})
    with c:
        assert lines[-1].startswith(b"a OK [CAPABILITY"), lines
        assert c.command("n", "NOOP")[-1] == b"n OK NOOP completed by fake backend."
    conn = fake.connections[0]
    assert conn.failure is None, conn.failure
    assert re.fullmatch(ID_RE + rb"S STARTTLS\r\n", conn.chunks[0]), conn.chunks[0]
    assert conn.tls
    assert f'L LOGIN "u" "{PW}"\r\n'.encode() in conn.received


def test_ssl_any_cert_accepts_bad_certificate(make_portier, make_fake, certs):
    px, fake, lines, _, c = login_with(make_portier, make_fake, bs.imap_login_ok(),
                                       fields={"ssl": "any-cert"},
                                       fake_tls=_tls(certs, "wrong"))
    c.close()
    assert lines[-1].startswith(b"a OK"), lines


@pytest.mark.parametrize("password,wire", [
    ('a"b\\c', b'L LOGIN "u" "a\\"b\\\\c"\r\n'),
    ("p\u00e4ssw\u00f6rd", b'L LOGIN "u" {10}\r\np\xc3\xa4ssw\xc3\xb6rd\r\n'),
], ids=["quoted-escapes", "8bit-literal"])
def test_login_argument_encoding(make_portier, make_fake, password, wire):
    """`nopassword` forwards the client's password; it reaches the backend
    quoted with escapes, or as a literal sent without waiting for `+`."""
    nlines = 2 + wire.count(b"}\r\n")
    script = [banner(), fb.expect_lines(nlines), bs.imap_id_reply(),
              fb.send_line("L OK Logged in"), bs.imap_serve()]
    fake = make_fake(script)
    px = make_portier([User("u", None, proxy(fake.port, nopassword=True, proxy_timeout=5))])
    with RawIMAP(px.port("imap", "none")) as c:
        pw = password.encode()
        c.send(b"a LOGIN u {%d+}\r\n%s\r\n" % (len(pw), pw))
        lines = c.read_until_tagged("a")
        assert lines[-1].startswith(b"a OK"), lines
    recv = fake.connections[0].received
    assert recv.endswith(wire) or wire in recv, recv


def test_pipelined_client_bytes_after_login(make_portier, make_fake):
    fake = make_fake(bs.imap_login_ok())
    px = make_portier([User(USER, PW, proxy(fake.port, proxy_timeout=5))])
    with RawIMAP(px.port("imap", "none")) as c:
        c.send(f'a LOGIN u "{PW}"\r\nb NOOP\r\nc LOGOUT\r\n')
        assert c.read_until_tagged("a")[-1].startswith(b"a OK"), c.transcript
        assert c.read_until_tagged("b")[-1] == b"b OK NOOP completed by fake backend."
        assert c.read_until_tagged("c")[-1] == b"c OK Logout completed."
    conn = fake.wait_done(1)[0]
    assert b"b NOOP" not in conn.chunks[0], "client bytes reached the backend before login"
    assert conn.received.endswith(b"b NOOP\r\nc LOGOUT\r\n"), conn.received


def test_pipelined_client_bytes_after_failed_login_stay_local(make_portier, make_fake):
    fake = make_fake(bs.imap_login_reply("L NO [AUTHENTICATIONFAILED] nope"))
    px = make_portier([User(USER, PW, proxy(fake.port, proxy_timeout=5))])
    with RawIMAP(px.port("imap", "none")) as c:
        c.send(f'a LOGIN u "{PW}"\r\nb NOOP\r\n')
        assert c.read_until_tagged("a")[-1] == b"a " + GENERIC_AUTHFAILED
        assert c.read_until_tagged("b")[-1].startswith(b"b OK"), c.transcript
    assert b"b NOOP" not in fake.connections[0].received


# ===================================================================== relay
def test_relay_large_payloads_both_ways(make_portier, make_fake):
    down = os.urandom(3 * 1024 * 1024 + 17)
    got_up = {}

    def big(c: fb.Conn):
        while True:
            raw = c.read_line()
            if raw is None:
                return
            line = raw.rstrip(b"\r\n")
            tag, cmd = line.split(b" ", 2)[:2]
            if cmd == b"FETCH":
                c.write(b"* 1 FETCH (BODY[] {%d}\r\n" % len(down) + down + b")\r\n" +
                        tag + b" OK Fetch completed.\r\n")
            elif cmd == b"APPEND":
                n = int(re.search(rb"\{(\d+)\+?\}$", line)[1])
                data = c.read_exact(n)
                got_up["sha"] = hashlib.sha256(data).hexdigest()
                c.read_line()
                c.write(tag + b" OK " + got_up["sha"].encode() + b"\r\n")
            elif cmd == b"LOGOUT":
                c.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
                return

    fake = make_fake([banner(), fb.expect_lines(2), bs.imap_id_reply(),
                      fb.send_line("L OK Logged in"), fb.call(big)])
    px = make_portier([User(USER, PW, proxy(fake.port, proxy_timeout=5))])
    up = os.urandom(2 * 1024 * 1024 + 3)
    with RawIMAP(px.port("imap", "implicit"), tls=True, ca=px.certs.ca, timeout=30) as c:
        assert c.command("a", f'LOGIN u "{PW}"')[-1].startswith(b"a OK")
        c.send(b"f FETCH 1 BODY[]\r\n")
        head = c.readline()
        n = int(re.search(rb"\{(\d+)\}$", head)[1])
        while len(c.buf) < n:
            assert c._fill()
        body, c.buf = c.buf[:n], c.buf[n:]
        assert body == down
        assert c.read_until_tagged("f")[-1] == b"f OK Fetch completed."
        c.send(b"u APPEND INBOX {%d+}\r\n" % len(up) + up + b"\r\n")
        assert c.read_until_tagged("u")[-1] == b"u OK " + hashlib.sha256(up).hexdigest().encode()
        c.command("z", "LOGOUT")
    m = px.log.wait_for(r"Disconnected by (client|server)[^(]*\((\d+)s idle, in=(\d+), "
                        r"out=(\d+)")
    assert int(m[3]) >= len(up) and int(m[4]) >= len(down), m.group(0)


def test_backend_disconnect_after_login_closes_client(make_portier, make_fake):
    script = [banner(), fb.expect_lines(2), bs.imap_id_reply(), fb.send_line("L OK Logged in"),
              fb.respond(r"^(\S+) NOOP", "* BYE server shutting down\r\n"), fb.close()]
    fake = make_fake(script)
    px = make_portier([User(USER, PW, proxy(fake.port, proxy_timeout=5))])
    with RawIMAP(px.port("imap", "none")) as c:
        c.command("a", f'LOGIN u "{PW}"')
        c.send("b NOOP\r\n")
        rest = c.read_until_closed(timeout=5)
        assert b"* BYE server shutting down" in rest
    px.log.wait_for(r"proxy\(u,127\.0\.0\.1:\d+\): Disconnected by server")


def test_client_gone_during_backend_login_releases_backend(make_portier, make_fake):
    """A client that hangs up while portier logs in to a stalling backend
    releases the backend connection at once (well before proxy_timeout) and
    causes no reconnect attempts.  (Dovecot stops reading the client during
    the backend login and only notices at the timeout; portier does better.)"""
    fake = make_fake([banner(), fb.expect_lines(2), stall()])
    px = make_portier([User(USER, PW, proxy(fake.port, proxy_timeout=20))])
    c = RawIMAP(px.port("imap", "none"))
    c.send(f'a LOGIN u "{PW}"\r\n')
    fake.wait_for_received(rb"L LOGIN")
    t0 = time.monotonic()
    c.close()
    conn = fake.wait_done(1, timeout=10)[0]
    assert conn.peer_closed, conn.events
    assert time.monotonic() - t0 <= 3, "backend held after the client left"
    assert len(fake.connections) == 1, "reconnected on behalf of a client that is gone"
