"""Per-protocol building blocks for FakeBackend scripts.

IMAP is here now; POP3 / Submission / ManageSieve helpers go next to it
using the same generic steps from fake_backend.
"""
from __future__ import annotations

import re

from .fake_backend import (CLOSE, Conn, close, expect_line, expect_lines, send_line,
                           serve, stall, starttls)

# ----------------------------------------------------------------------- IMAP
# What a Dovecot 2.3 backend says before login (captured, see
# /work/shared/reference/transcripts/dovecot-imap.txt).
IMAP_PRELOGIN_CAPS = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
                      "AUTH=PLAIN AUTH=LOGIN")
IMAP_POSTLOGIN_CAPS = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT UIDPLUS MOVE FAKE-BACKEND"


def imap_banner(caps: str | None = IMAP_PRELOGIN_CAPS, text: str = "Fake ready."):
    """`* OK [CAPABILITY caps] text`, or a bare `* OK text` with caps=None."""
    if caps is None:
        return send_line(f"* OK {text}")
    return send_line(f"* OK [CAPABILITY {caps}] {text}")


def imap_id_reply():
    return send_line('* ID ("name" "fake")', "I OK Trusted ID completed.")


def imap_postlogin_handler(line: str, conn: Conn):
    """A tiny post-login IMAP server: OK for everything, LOGOUT closes,
    NOOP answers with a recognisable text."""
    m = re.match(r"(\S+) (\S+)", line)
    if not m:
        return "* BAD fake: could not parse\r\n"
    tag, cmd = m.group(1), m.group(2).upper()
    if cmd == "LOGOUT":
        return (f"* BYE fake logging out\r\n{tag} OK Logout completed.\r\n", CLOSE)
    if cmd == "NOOP":
        return f"{tag} OK NOOP completed by fake backend.\r\n"
    if cmd == "SELECT":
        return (f"* 0 EXISTS\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n"
                f"{tag} OK [READ-WRITE] Select completed.\r\n")
    return f"{tag} OK {cmd} completed.\r\n"


def imap_serve():
    return serve(imap_postlogin_handler)


def imap_login_ok(caps: str = IMAP_PRELOGIN_CAPS,
                  ok_line: str = f"L OK [CAPABILITY {IMAP_POSTLOGIN_CAPS}] Logged in"):
    """Full successful dialogue for a banner with ID: ID+LOGIN pipelined,
    replies, then a tiny post-login server."""
    return [imap_banner(caps), expect_line(rb"^I ID \("), expect_line(rb"^L LOGIN "),
            imap_id_reply(), send_line(ok_line), imap_serve()]


def imap_login_reply(reply: str, caps: str = IMAP_PRELOGIN_CAPS):
    """Banner with ID, read ID+LOGIN, answer ID OK and `reply` to LOGIN, then
    keep the connection until the proxy closes it."""
    return [imap_banner(caps), expect_line(rb"^I ID \("), expect_line(rb"^L LOGIN "),
            imap_id_reply(), send_line(reply), stall()]


def imap_starttls_ok(cert, key, caps: str = IMAP_PRELOGIN_CAPS):
    """Banner with ID+STARTTLS; expect `I ID` + `S STARTTLS`, OK both, TLS,
    then LOGIN over TLS and success."""
    return [imap_banner(caps), expect_line(rb"^I ID \("), expect_line(rb"^S STARTTLS"),
            imap_id_reply(), send_line("S OK Begin TLS negotiation now."),
            starttls(cert, key), expect_line(rb"^C CAPABILITY"), expect_line(rb"^L LOGIN "),
            send_line("* CAPABILITY IMAP4rev1 SASL-IR ID AUTH=PLAIN", "C OK Capability completed."),
            send_line(f"L OK [CAPABILITY {IMAP_POSTLOGIN_CAPS}] Logged in"), imap_serve()]


# Convenience re-exports so test modules import one place.
__all__ = [
    "IMAP_PRELOGIN_CAPS", "IMAP_POSTLOGIN_CAPS", "imap_banner", "imap_id_reply",
    "imap_postlogin_handler", "imap_serve", "imap_login_ok", "imap_login_reply",
    "imap_starttls_ok", "close", "expect_line", "expect_lines", "send_line", "stall",
]
