"""Tables for the backend-fault matrix (issue 4, spec §2.3/§2.4, §3.6, §4.2,
§5.4, §6.2, §7, §8.1).

Three tables, combined by `cases()`:

* PROTOCOLS - per protocol: the client dialogue (how a client logs in and
  checks that its session goes on), the documented failure replies, and its
  STATIONS: every backend login state the proxy can wait in.  A station is the
  fake backend's side of the dialogue up to that state (`prefix`), the line
  the backend would send next (`advance`, trickled by the trickle fault), the
  passdb fields that lead there, whether the proxy waits for a line or for a
  TLS handshake (`kind`), and what a garbage line means there (`garbage`).
* FAULTS - what the fake backend does once the proxy is in the state, with
  the rule for where it applies.
* Outcome - the expected failure class: client reply (from the protocol's
  table), final log message (regex) and whether it is retried (§2.4).

A case's fake runs `prefix + [mark("fault")] + fault steps` on every
connection, so a retried case shows the same fault twice.  The matrix runs
with proxy_max_reconnects=1: retried = exactly 2 backend connections.
Timeout outcomes use per-user proxy_timeout=1 (no time left for a retry);
everything else proxy_timeout=3 (time for exactly one retry, so a wrongly
retried failure shows up as a second connection).
"""
from __future__ import annotations

import base64
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from . import fake_backend as fb
from .certs import Certs

Steps = Callable[[Certs], list]           # certs -> FakeBackend steps

# Random-looking, deterministic, no CR/LF; starts with NUL and carries an ESC
# sequence so "no control bytes in the log" is a real check.
GARBAGE = (b"\x00\xff\xfe\x1b[31mgarbage\x1b[0m\x07 " +
           bytes((i * 73 + 41) % 256 for i in range(200) if (i * 73 + 41) % 256 not in (10, 13)))
OVERLONG = 5000                           # > 4096 (§2.3 `Too long input line`)
TRICKLE_DELAY = 0.3                       # one byte per 0.3 s vs proxy_timeout=1
PASSWORD = "Matrix-Pw-7731"


# ===================================================================== outcomes
@dataclass(frozen=True)
class Outcome:
    """kind: retry (connect/remote/protocol failure: retried, the retryable
    reply) | timeout (the retryable reply, but proxy_timeout=1 leaves no time
    for a retry) | config (the configuration reply, never retried) | auth /
    tempfail (the backend answered the login: `reply` given explicitly;
    tempfail is retried, auth never).
    log: regex of the final log message; {state} and {port} are filled in.
    level: log level of that line."""
    kind: str
    log: str
    level: str = "Error"
    reply: str | None = None

    @property
    def retried(self) -> bool:
        return self.kind in ("retry", "tempfail")


def _retry(log: str) -> Outcome:
    return Outcome("retry", log)


def _config(log: str) -> Outcome:
    return Outcome("config", log)


PROTOCOL_ERR = "Remote server sent invalid input: "
REMOTE_ERR = "Aborting due to remote server: "
TIMEOUT = Outcome("timeout", r"Login timed out in state={state} \(after 1 secs")
DISCONNECT = _retry(r"Disconnected by server: Connection closed(: [^()]+)? "
                    r"\(state={state}, duration=\d+s\)")
TLS_FAILED = _retry(r"Failed to start SSL handshake: ")
CERT_FAILED = _config(r"Failed to start SSL handshake: certificate verification failed: "
                      r"IP address mismatch")
REFUSED = _retry(r"connect\(127\.0\.0\.1, {port}\) failed: Connection refused "
                 r"\(after \d+ secs, 1 reconnects")
TOO_LONG = _retry(re.escape(PROTOCOL_ERR) + r"Too long input line")


# ===================================================================== stations
@dataclass(frozen=True)
class Station:
    name: str                 # id part (no '/', no spaces)
    state: str                # expected state= in the log
    prefix: Steps             # fake side up to this state
    advance: bytes = b""      # what the backend would send next (line stations)
    garbage: Outcome | None = None
    kind: str = "line"        # line | tls (the proxy waits for a TLS handshake)
    fields: dict = field(default_factory=dict)
    first: bool = False       # connection refused applies here
    auth: bool = False        # the login reply is next: auth faults apply


def _lines(*lines: str) -> bytes:
    return b"".join(x.encode() + b"\r\n" for x in lines)


def _steps(*parts: Any) -> Steps:
    """Compose: items are steps or Steps functions (certs -> steps)."""
    def build(certs: Certs) -> list:
        out: list = []
        for p in parts:
            if getattr(p, "_is_steps", False):
                out += p(certs)
            else:
                out.append(p)
        return out
    build._is_steps = True   # type: ignore[attr-defined]
    return build


def _tls(certs: Certs) -> list:
    return [fb.starttls(certs.cert, certs.key)]


_tls._is_steps = True   # type: ignore[attr-defined]


# ------------------------------------------------------------------------ IMAP
IMAP_BANNER = "* OK [CAPABILITY IMAP4rev1 SASL-IR ID STARTTLS AUTH=PLAIN] Fake ready."
IMAP_ID_REPLY = ('* ID ("name" "fake")', "I OK ID completed.")
IMAP_LOGIN_OK = "L OK [CAPABILITY IMAP4rev1 IDLE] Logged in"
_imap_ignored = TIMEOUT          # §3.3: a line that is no reply is ignored -> timeout
_imap_id_login = _steps(fb.send_line(IMAP_BANNER), fb.expect_line(rb"^I ID \("),
                        fb.expect_line(rb"^L LOGIN "))
_imap_id_starttls = _steps(fb.send_line(IMAP_BANNER), fb.expect_line(rb"^I ID \("),
                           fb.expect_line(rb"^S STARTTLS\r\n"))
_imap_starttls_id = _steps(_imap_id_starttls, fb.send_line(*IMAP_ID_REPLY))
_imap_handshake = _steps(_imap_starttls_id, fb.send_line("S OK Begin TLS negotiation now."))
STARTTLS = {"starttls": "yes"}
IMPLICIT = {"ssl": "yes"}

IMAP_STATIONS = [
    Station("none", "/none", _steps(), _lines(IMAP_BANNER),
            _retry(re.escape(PROTOCOL_ERR) + "Invalid banner: "), first=True),
    Station("id+login_banner", "id+login/banner", _imap_id_login, _lines(*IMAP_ID_REPLY),
            _imap_ignored),
    Station("capability+login_banner", "capability+login/banner",
            _steps(fb.send_line("* OK Fake ready."), fb.expect_line(rb"^C CAPABILITY\r\n"),
                   fb.expect_line(rb"^L LOGIN ")),
            _lines("* CAPABILITY IMAP4rev1 ID", "C OK done."), _imap_ignored),
    Station("login_id", "login/id", _steps(_imap_id_login, fb.send_line(*IMAP_ID_REPLY)),
            _lines(IMAP_LOGIN_OK), _imap_ignored, auth=True),
    Station("id+starttls_banner", "id+starttls/banner", _imap_id_starttls,
            _lines(*IMAP_ID_REPLY), _imap_ignored, fields=STARTTLS),
    Station("starttls_id", "starttls/id", _imap_starttls_id,
            _lines("S OK Begin TLS negotiation now."), _imap_ignored, fields=STARTTLS),
    Station("handshake_starttls", "/starttls", _imap_handshake, kind="tls", fields=STARTTLS),
    # After TLS the capabilities are asked for again (what came in plaintext is
    # forgotten: issue 8 item 8), pipelined with LOGIN.
    Station("capability+login_starttls", "capability+login/starttls",
            _steps(_imap_handshake, _tls, fb.expect_line(rb"^C CAPABILITY\r\n"),
                   fb.expect_line(rb"^L LOGIN ")),
            _lines("* CAPABILITY IMAP4rev1 SASL-IR ID AUTH=PLAIN", "C OK done."),
            _imap_ignored, fields=STARTTLS),
    Station("login_capability", "login/capability",
            _steps(_imap_handshake, _tls, fb.expect_line(rb"^C CAPABILITY\r\n"),
                   fb.expect_line(rb"^L LOGIN "),
                   fb.send_line("* CAPABILITY IMAP4rev1 SASL-IR ID AUTH=PLAIN", "C OK done."),
                   # let the proxy read the reply before a fault (a reset
                   # right behind it would discard it unread)
                   fb.sleep(0.2)),
            _lines(IMAP_LOGIN_OK), _imap_ignored, fields=STARTTLS, auth=True),
    Station("implicit_none", "/none", _steps(), kind="tls", fields=IMPLICIT),
]

# ------------------------------------------------------------------------ POP3
POP3_BANNER_X = "+OK [XCLIENT] Fake ready."
POP3_BANNER = "+OK Fake ready."
_pop3_stls = _steps(fb.send_line(POP3_BANNER_X), fb.expect_line(rb"^STLS\r\n"))
_pop3_handshake = _steps(_pop3_stls, fb.send_line("+OK Begin TLS negotiation now."))
_pop3_xclient_reply = _config(re.escape(REMOTE_ERR) + "XCLIENT failed: ")
_pop3_login_garbage = Outcome("auth", r"Login failed: ", level="Info",
                              reply="-ERR Authentication failed.")
_pop3_login1 = _steps(fb.send_line(POP3_BANNER), fb.expect_line(rb"^USER \S+\r\n"))

POP3_STATIONS = [
    Station("banner", "banner", _steps(), _lines(POP3_BANNER_X),
            _retry(re.escape(PROTOCOL_ERR) + "Invalid banner: "), first=True),
    Station("starttls", "starttls", _pop3_stls, _lines("+OK Begin TLS negotiation now."),
            _retry(re.escape(REMOTE_ERR) + "STLS failed: "), fields=STARTTLS),
    Station("handshake_starttls", "starttls", _pop3_handshake, kind="tls", fields=STARTTLS),
    Station("xclient", "xclient",
            _steps(fb.send_line(POP3_BANNER_X), fb.expect_line(rb"^XCLIENT "),
                   fb.expect_line(rb"^USER ")),
            _lines("+OK Updated"), _pop3_xclient_reply),
    Station("tls_xclient", "xclient",
            _steps(_pop3_handshake, _tls, fb.expect_line(rb"^XCLIENT "),
                   fb.expect_line(rb"^USER ")),
            _lines("+OK Updated"), _pop3_xclient_reply, fields=STARTTLS),
    Station("login1", "login1", _pop3_login1, _lines("+OK"), _pop3_login_garbage),
    Station("login2", "login2",
            _steps(_pop3_login1, fb.send_line("+OK"), fb.expect_line(rb"^PASS ")),
            _lines("+OK Logged in."), _pop3_login_garbage, auth=True),
    Station("implicit_banner", "banner", _steps(), kind="tls", fields=IMPLICIT),
]

# ------------------------------------------------------------------ Submission
SMTP_BANNER = "220 fake.test ESMTP Fake ready"
EHLO_PLAIN = ("250-fake.test", "250-AUTH PLAIN LOGIN", "250-ENHANCEDSTATUSCODES",
              "250 PIPELINING")
EHLO_STARTTLS = ("250-fake.test", "250-STARTTLS", "250-AUTH PLAIN LOGIN",
                 "250 ENHANCEDSTATUSCODES")
EHLO_XCLIENT = ("250-fake.test", "250-AUTH PLAIN LOGIN", "250-ENHANCEDSTATUSCODES",
                "250 XCLIENT ADDR PORT PROTO HELO LOGIN SESSION TTL DESTADDR DESTPORT "
                "CLIENT-TRANSPORT")
_smtp_ehlo = _steps(fb.send_line(SMTP_BANNER), fb.expect_line(rb"^EHLO \S+\r\n"))
_smtp_starttls = _steps(_smtp_ehlo, fb.send_line(*EHLO_STARTTLS),
                        fb.expect_line(rb"^STARTTLS\r\n"))
_smtp_handshake = _steps(_smtp_starttls, fb.send_line("220 2.0.0 Ready to start TLS"))
_smtp_xclient = _steps(_smtp_ehlo, fb.send_line(*EHLO_XCLIENT), fb.expect_line(rb"^XCLIENT "),
                       fb.expect_line(rb"^EHLO "))
_smtp_bad_ehlo = _retry(re.escape(PROTOCOL_ERR) + "Invalid EHLO line: ")

SUBMISSION_STATIONS = [
    Station("banner", "banner", _steps(), _lines(SMTP_BANNER),
            _retry(re.escape(PROTOCOL_ERR) + "Invalid banner: "), first=True),
    Station("ehlo", "ehlo", _smtp_ehlo, _lines(*EHLO_PLAIN), _smtp_bad_ehlo),
    Station("starttls", "starttls", _smtp_starttls, _lines("220 2.0.0 Ready to start TLS"),
            _retry(re.escape(REMOTE_ERR) + "STARTTLS failed: "), fields=STARTTLS),
    Station("handshake_starttls", "starttls", _smtp_handshake, kind="tls", fields=STARTTLS),
    Station("tls-ehlo", "tls-ehlo",
            _steps(_smtp_handshake, _tls, fb.expect_line(rb"^EHLO \S+\r\n")),
            _lines(*EHLO_PLAIN), _smtp_bad_ehlo, fields=STARTTLS),
    Station("xclient", "xclient", _smtp_xclient, _lines(SMTP_BANNER),
            _config(re.escape(REMOTE_ERR) + "XCLIENT failed: ")),
    Station("xclient-ehlo", "xclient-ehlo", _steps(_smtp_xclient, fb.send_line(SMTP_BANNER)),
            _lines(*EHLO_PLAIN), _smtp_bad_ehlo),
    Station("authenticate", "authenticate",
            _steps(_smtp_ehlo, fb.send_line(*EHLO_PLAIN), fb.expect_line(rb"^AUTH PLAIN \S+\r\n")),
            _lines("235 2.7.0 Logged in."),
            _retry(re.escape(PROTOCOL_ERR) + "Invalid AUTH reply: "), auth=True),
]

# ----------------------------------------------------------------- ManageSieve
SIEVE_GREETING = ('"IMPLEMENTATION" "Fake"', '"SASL" "PLAIN LOGIN"', '"STARTTLS"',
                  '"VERSION" "1.0"', 'OK "Fake ready."')
SIEVE_GREETING_X = SIEVE_GREETING[:3] + ('"XCLIENT"',) + SIEVE_GREETING[3:]
_sieve_start = _steps(fb.send_line(*SIEVE_GREETING), fb.expect_line(rb"^STARTTLS\r\n"))
_sieve_handshake = _steps(_sieve_start, fb.send_line('OK "Begin TLS negotiation now."'))
_sieve_bad_greeting = _retry(re.escape(PROTOCOL_ERR) +
                             "Remote returned with invalid capability/greeting line: ")

MANAGESIEVE_STATIONS = [
    Station("none", "none", _steps(), _lines(*SIEVE_GREETING), _sieve_bad_greeting, first=True),
    Station("tls-start", "tls-start", _sieve_start, _lines('OK "Begin TLS negotiation now."'),
            _retry(re.escape(REMOTE_ERR) + "Remote refused STARTTLS command: "),
            fields=STARTTLS),
    Station("handshake_tls-ready", "tls-ready", _sieve_handshake, kind="tls", fields=STARTTLS),
    Station("tls-ready", "tls-ready", _steps(_sieve_handshake, _tls),
            _lines(*SIEVE_GREETING[:2], *SIEVE_GREETING[3:]), _sieve_bad_greeting,
            fields=STARTTLS),
    Station("xclient", "xclient",
            _steps(fb.send_line(*SIEVE_GREETING_X), fb.expect_line(rb"^XCLIENT ")),
            _lines('OK "Updated"'), _config(re.escape(REMOTE_ERR) + "Remote XCLIENT failed: ")),
    Station("auth", "auth",
            _steps(fb.send_line(*SIEVE_GREETING), fb.expect_line(rb'^AUTHENTICATE "PLAIN" ')),
            _lines('OK "Logged in."'),
            _retry(re.escape(PROTOCOL_ERR) + "Remote sent invalid response: "), auth=True),
]


# ==================================================================== clients
class LineClient:
    """A raw client from a chosen loopback source address."""

    def __init__(self, port: int, source: str = "127.0.0.2", timeout: float = 15.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout,
                                             source_address=(source, 0))
        self.f = self.sock.makefile("rb")

    def readline(self) -> str:
        raw = self.f.readline()
        if not raw:
            raise EOFError("connection closed")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def read_until(self, pred: Callable[[str], bool], limit: int = 50) -> list[str]:
        out = []
        for _ in range(limit):
            out.append(self.readline())
            if pred(out[-1]):
                return out
        raise AssertionError(f"no final line in {out!r}")

    def close(self) -> None:
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass


@dataclass(frozen=True)
class Protocol:
    name: str                   # imap | pop3 | submission | managesieve
    service: str                # log prefix, e.g. imap-login
    stations: Sequence[Station]
    reply_retry: str            # §8.1 "retryable" column
    reply_config: str           # §8.1 "configuration" column
    auth_fail: tuple[str, str]  # (backend line, client reply)
    tempfail: tuple[str, str]
    greet: Callable[[LineClient], None]
    login: Callable[[LineClient, str, str], str]      # -> final reply line
    still_usable: Callable[[LineClient], bool]
    xclient_ttl: Callable[[LineClient, int], None]    # a trusted client sets its TTL

    def reply_for(self, o: Outcome) -> str:
        if o.reply is not None:
            return o.reply
        return self.reply_config if o.kind == "config" else self.reply_retry


# --- client dialogues
def _imap_greet(c: LineClient) -> None:
    assert c.readline().startswith("* OK")


def _imap_login(c: LineClient, user: str, pw: str) -> str:
    c.send(f'a LOGIN "{user}" "{pw}"')
    return c.read_until(lambda s: s.startswith("a "))[-1]


def _imap_usable(c: LineClient) -> bool:
    c.send("b NOOP")
    return c.read_until(lambda s: s.startswith("b "))[-1].startswith("b OK")


def _imap_ttl(c: LineClient, ttl: int) -> None:
    c.send(f't ID ("x-proxy-ttl" "{ttl}")')
    assert c.read_until(lambda s: s.startswith("t "))[-1].startswith("t OK")


def _pop3_greet(c: LineClient) -> None:
    assert c.readline().startswith("+OK")


def _pop3_login(c: LineClient, user: str, pw: str) -> str:
    c.send(f"USER {user}")
    assert c.readline().startswith("+OK")
    c.send(f"PASS {pw}")
    return c.readline()


def _pop3_usable(c: LineClient) -> bool:
    c.send("CAPA")
    return c.read_until(lambda s: s == "." or s.startswith("-ERR"))[0] == "+OK"


def _pop3_ttl(c: LineClient, ttl: int) -> None:
    c.send(f"XCLIENT TTL={ttl}")
    assert c.readline().startswith("+OK")


def _smtp_reply(c: LineClient) -> list[str]:
    return c.read_until(lambda s: len(s) < 4 or s[3] != "-")


def _smtp_greet(c: LineClient) -> None:
    assert _smtp_reply(c)[-1].startswith("220 ")
    c.send("EHLO client.test")
    assert _smtp_reply(c)[-1].startswith("250 ")


def _plain_ir(user: str, pw: str) -> str:
    return base64.b64encode(f"\0{user}\0{pw}".encode()).decode()


def _smtp_login(c: LineClient, user: str, pw: str) -> str:
    c.send(f"AUTH PLAIN {_plain_ir(user, pw)}")
    return "\n".join(_smtp_reply(c))


def _smtp_usable(c: LineClient) -> bool:
    c.send("NOOP")
    return _smtp_reply(c)[-1].startswith("250 ")


def _smtp_ttl(c: LineClient, ttl: int) -> None:
    c.send(f"XCLIENT TTL={ttl}")
    assert _smtp_reply(c)[-1].startswith("220 ")     # a fresh greeting: EHLO again
    c.send("EHLO client.test")
    assert _smtp_reply(c)[-1].startswith("250 ")


def _sieve_greet(c: LineClient) -> None:
    c.read_until(lambda s: s.startswith("OK"))


def _sieve_login(c: LineClient, user: str, pw: str) -> str:
    c.send(f'AUTHENTICATE "PLAIN" "{_plain_ir(user, pw)}"')
    return c.readline()


def _sieve_usable(c: LineClient) -> bool:
    c.send("NOOP")
    return c.readline().startswith("OK")


def _sieve_ttl(c: LineClient, ttl: int) -> None:
    c.send(f"XCLIENT TTL={ttl}")
    assert c.readline().startswith("OK")


PROTOCOLS = {
    "imap": Protocol(
        "imap", "imap-login", IMAP_STATIONS,
        "a NO [UNAVAILABLE] Account is temporarily unavailable.",
        "a NO [SERVERBUG] Account is temporarily unavailable.",
        ("L NO [AUTHENTICATIONFAILED] Authentication failed.",
         "a NO [AUTHENTICATIONFAILED] Authentication failed."),
        ("L NO [UNAVAILABLE] Fake busy", "a NO [UNAVAILABLE] Fake busy"),
        _imap_greet, _imap_login, _imap_usable, _imap_ttl),
    "pop3": Protocol(
        "pop3", "pop3-login", POP3_STATIONS,
        "-ERR [SYS/TEMP] Account is temporarily unavailable.",
        "-ERR Account is temporarily unavailable.",
        ("-ERR [AUTH] Authentication failed.", "-ERR [AUTH] Authentication failed."),
        ("-ERR [SYS/TEMP] Fake busy", "-ERR [SYS/TEMP] Fake busy"),
        _pop3_greet, _pop3_login, _pop3_usable, _pop3_ttl),
    "submission": Protocol(
        "submission", "submission-login", SUBMISSION_STATIONS,
        "454 4.7.0 Account is temporarily unavailable.",
        "454 4.7.0 Account is temporarily unavailable.",
        ("535 5.7.8 Authentication failed.", "535 5.7.8 Authentication failed."),
        ("454 4.7.0 Fake busy", "454 4.7.0 Fake busy"),
        _smtp_greet, _smtp_login, _smtp_usable, _smtp_ttl),
    "managesieve": Protocol(
        "managesieve", "managesieve-login", MANAGESIEVE_STATIONS,
        'NO (TRYLATER) "Account is temporarily unavailable."',
        'NO (TRYLATER/NORETRY) "Account is temporarily unavailable."',
        ('NO "Authentication failed."', 'NO "Authentication failed."'),
        ('NO (TRYLATER) "Fake busy"', 'NO (TRYLATER) "Fake busy"'),
        _sieve_greet, _sieve_login, _sieve_usable, _sieve_ttl),
}


# ====================================================================== faults
@dataclass(frozen=True)
class Fault:
    name: str
    applies: Callable[[Station], bool]
    steps: Callable[[Protocol, Station, Certs], list] | None   # None: no backend at all
    outcome: Callable[[Protocol, Station], Outcome]


def _line(s: Station) -> bool:
    return s.kind == "line"


def _tls_point(s: Station) -> bool:
    return s.kind == "tls"


FAULTS = [
    Fault("refused", lambda s: s.first, None, lambda p, s: REFUSED),
    Fault("silent", lambda s: True, lambda p, s, c: [fb.stall()], lambda p, s: TIMEOUT),
    # RST.  At a TLS point only once the ClientHello is in (a RST discards
    # unread data: the STARTTLS reply would be lost); the TLS layer reports it.
    Fault("reset", lambda s: True,
          lambda p, s, c: ([fb.read_chunk(), fb.reset()] if s.kind == "tls" else
                           # before any dialogue: let the proxy see the connect
                           # succeed first (else it is `connect() failed: reset`)
                           [fb.sleep(0.2), fb.reset()] if s.first else [fb.reset()]),
          lambda p, s: TLS_FAILED if s.kind == "tls" else DISCONNECT),
    Fault("garbage", _line, lambda p, s, c: [fb.send(GARBAGE + b"\r\n"), fb.stall()],
          lambda p, s: s.garbage),
    Fault("overlong", _line, lambda p, s, c: [fb.long_line(OVERLONG, b""), fb.stall()],
          lambda p, s: TOO_LONG),
    Fault("trickle", _line,
          lambda p, s, c: [fb.trickle(s.advance, TRICKLE_DELAY), fb.stall()],
          lambda p, s: TIMEOUT),
    # Plaintext where the ServerHello should be (after reading the ClientHello,
    # so it cannot be mistaken for bytes pipelined behind the STARTTLS reply).
    Fault("tls-plaintext", _tls_point,
          lambda p, s, c: [fb.read_chunk(), fb.send(s.advance or b"* plaintext, not TLS\r\n"),
                           fb.stall()],
          lambda p, s: TLS_FAILED),
    Fault("tls-abort", _tls_point, lambda p, s, c: [fb.read_chunk(), fb.close()],
          lambda p, s: TLS_FAILED),
    Fault("cert-mismatch", _tls_point,
          lambda p, s, c: [fb.starttls(c.wrong_cert, c.wrong_key), fb.stall()],
          lambda p, s: CERT_FAILED),
    Fault("auth-fail", lambda s: s.auth,
          lambda p, s, c: [fb.send_line(p.auth_fail[0]), fb.stall()],
          lambda p, s: Outcome("auth", r"Login failed: ", "Info", p.auth_fail[1])),
    Fault("auth-tempfail", lambda s: s.auth,
          lambda p, s, c: [fb.send_line(p.tempfail[0]), fb.stall()],
          lambda p, s: Outcome("tempfail", r"Login failed: ", "Info", p.tempfail[1])),
]


def mark(what: str):
    """A step that records an event: the prefix completed, the fault starts."""
    return fb.call(lambda c: c.event(what))


# ====================================================================== cases
@dataclass(frozen=True)
class Case:
    protocol: Protocol
    station: Station
    fault: Fault

    @property
    def id(self) -> str:
        return f"{self.protocol.name}-{self.station.name}-{self.fault.name}"

    @property
    def user(self) -> str:
        return "m-" + re.sub(r"[^a-z0-9-]", "_", f"{self.station.name}-{self.fault.name}")

    @property
    def outcome(self) -> Outcome:
        o = self.fault.outcome(self.protocol, self.station)
        assert o is not None, f"{self.id}: no outcome in the table"
        return o

    @property
    def proxy_timeout(self) -> str:
        return "1" if self.outcome.kind == "timeout" else "3"

    @property
    def reply(self) -> str:
        return self.protocol.reply_for(self.outcome)

    def script(self, certs: Certs) -> list:
        assert self.fault.steps is not None
        return (self.station.prefix(certs) + [mark("fault")] +
                self.fault.steps(self.protocol, self.station, certs))

    def log_regex(self, port: int) -> str:
        msg = self.outcome.log.format(state=re.escape(self.station.state), port=port)
        return (rf"{self.protocol.service}: {self.outcome.level}: "
                rf"proxy\({re.escape(self.user)},127\.0\.0\.1:{port}\): {msg}")


def cases(protocols: Sequence[str] = tuple(PROTOCOLS)) -> list[Case]:
    out = []
    for pname in protocols:
        p = PROTOCOLS[pname]
        for s in p.stations:
            for f in FAULTS:
                if f.applies(s):
                    out.append(Case(p, s, f))
    return out


# ==================================================================== running
@dataclass
class Result:
    reply: str | None = None
    elapsed: float = 0.0
    usable: bool | None = None
    error: str | None = None


def run_login(proto: Protocol, port: int, user: str, source: str,
              password: str = PASSWORD, ttl: int | None = None) -> Result:
    """One client: greet, (set TTL), log in, check the session goes on."""
    r = Result()
    c = None
    try:
        c = LineClient(port, source)
        proto.greet(c)
        if ttl is not None:
            proto.xclient_ttl(c, ttl)
        t0 = time.monotonic()
        r.reply = proto.login(c, user, password)
        r.elapsed = time.monotonic() - t0
        r.usable = proto.still_usable(c)
    except Exception as e:   # reported by the test that owns the case
        r.error = f"{type(e).__name__}: {e}"
    finally:
        if c is not None:
            c.close()
    return r


CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
