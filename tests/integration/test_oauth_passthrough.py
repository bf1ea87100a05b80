"""OAuth token pass-through to a real Dovecot backend (ops-reference §9.3
"Proxying tokens", §10.9 O5): portier's passdb answers `proxy_mech =
xoauth2|oauthbearer`, `pass = %{password}`, `nopassword` (Dovecot's
password-to-token mode), the client logs in with PLAIN/LOGIN and the token
as its password, and portier logs in to the backend with the OAuth
mechanism. The backend is a private Dovecot 2.3 whose own `oauth2` passdb
validates the token against an RFC 7662 introspection server
(tests/support/oauth.py), so Dovecot itself decides.

Checked per protocol (IMAP, POP3, Submission, ManageSieve) and mechanism:
a valid token logs in (the backend's log names the mechanism; a command
works), an invalid one is refused by the backend (the introspection server
saw the token: it reached Dovecot) and the client gets the usual failure;
a token over 4 KiB goes after the empty challenge (IMAP, POP3, SMTP) or as
a literal (ManageSieve) and is still accepted. Tokens never reach portier's
log.
"""
from __future__ import annotations

import base64
import imaplib
import os
import poplib
import smtplib
import socket

import pytest

from tests.support.dovecot import DovecotBackend
from tests.support.oauth import IntrospectionServer
from tests.support.portier import Listener

USER = "user1"
MECHS = ("xoauth2", "oauthbearer")
PROTOCOLS = ("imap", "pop3", "submission", "managesieve")
BACKEND_PORT = {"imap": "imap", "pop3": "pop3", "submission": "submission",
                "managesieve": "sieve"}
# Dovecot 2.3 reads a SASL response of at most 8 KiB of base64 (its login
# process buffer): ~5 KiB is the longest token it takes, and still over the
# 4 KiB / 255 / 512 byte limits that move the token off the command line.
LONG_TOKEN_BYTES = 5000
# Generous: the shared test machine is often loaded, and every login makes the
# backend ask the introspection server.
TIMEOUT = 40


@pytest.fixture(scope="module")
def introspection():
    srv = IntrospectionServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def backend(introspection, certs):
    dc = DovecotBackend(certs=certs, oauth2={"introspection_mode": "post",
                                             "introspection_url": introspection.url()})
    dc.start()
    yield dc
    dc.stop()


@pytest.fixture(scope="module")
def portiers(module_portier_factory, backend):
    """One portier per (protocol, mechanism): a static passdb sends every
    login to that protocol's backend port with the mechanism."""
    made = {}

    def get(protocol: str, mech: str):
        if (protocol, mech) not in made:
            port = backend.ports[BACKEND_PORT[protocol]]
            made[(protocol, mech)] = module_portier_factory(
                [], listeners=(Listener(protocol, "none"),),
                extra_toml=("[[passdb]]\ndriver = \"static\"\n"
                            f"fields = \"proxy host=127.0.0.1 port={port} nopassword "
                            f"proxy_mech={mech} pass=%{{password}}\"\n"))
        return made[(protocol, mech)]
    return get


def token(srv: IntrospectionServer, size: int = 0, active: bool = True) -> str:
    if size:
        t = base64.urlsafe_b64encode(os.urandom(size * 3 // 4)).decode().rstrip("=")
        return srv.add(t, {"email": USER}, active=active)
    return srv.opaque(None, USER, active=active)


# ------------------------------------------------------------- one login per protocol
def login_imap(port: int, tok: str) -> bool:
    c = imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT)
    try:
        c.login(USER, tok)
    except imaplib.IMAP4.error:
        c.shutdown()
        return False
    typ, _ = c.select("INBOX")  # a command the backend answers
    assert typ == "OK"
    c.logout()
    return True


def login_pop3(port: int, tok: str) -> bool:
    c = poplib.POP3("127.0.0.1", port, timeout=TIMEOUT)
    try:
        c.user(USER)
        c.pass_(tok)
    except poplib.error_proto:
        c.close()
        return False
    assert isinstance(c.stat()[0], int)
    c.quit()
    return True


def login_submission(port: int, tok: str) -> bool:
    c = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
    try:
        c.ehlo("client.test")
        c.user, c.password = USER, tok
        c.auth("PLAIN", c.auth_plain)  # PLAIN only (login() would retry with LOGIN)
    except smtplib.SMTPAuthenticationError:
        c.close()
        return False
    code, _ = c.mail("user1@example.test")  # answered by the backend
    assert code == 250
    c.quit()
    return True


def login_managesieve(port: int, tok: str) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        f = s.makefile("rb")
        while not f.readline().startswith(b"OK"):
            pass
        ir = base64.b64encode(b"\0" + USER.encode() + b"\0" + tok.encode())
        s.sendall(b'AUTHENTICATE "PLAIN" {%d+}\r\n%s\r\n' % (len(ir), ir))
        reply = f.readline()
        if not reply.startswith(b"OK"):
            assert reply.startswith(b"NO"), reply
            return False
        s.sendall(b"LISTSCRIPTS\r\n")  # answered by the backend
        while True:
            line = f.readline()
            assert line, "connection closed"
            if line.startswith((b"OK", b"NO", b"BYE")):
                assert line.startswith(b"OK"), line
                return True


LOGIN = {"imap": login_imap, "pop3": login_pop3, "submission": login_submission,
         "managesieve": login_managesieve}
SERVICE = {"imap": "imap-login", "pop3": "pop3-login", "submission": "submission-login",
           "managesieve": "managesieve-login"}


@pytest.mark.parametrize("size", [0, LONG_TOKEN_BYTES], ids=["short", "long"])
@pytest.mark.parametrize("mech", MECHS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_valid_token_logs_in_with_the_mechanism(portiers, backend, introspection, protocol, mech,
                                                size):
    """A long token goes after the empty challenge (IMAP, POP3, SMTP) or as a
    literal (ManageSieve), and Dovecot still takes it."""
    px = portiers(protocol, mech)
    tok = token(introspection, size)
    mark = backend.log_mark()
    assert LOGIN[protocol](px.port(protocol), tok)
    backend.wait_for_log(rf"{SERVICE[protocol]}: Info: Login: user=<{USER}>, "
                         rf"method={mech.upper()}", since=mark)
    px.log.wait_for(rf"proxy\({USER},.*Started proxying")
    assert tok not in px.log.text()


@pytest.mark.parametrize("mech", MECHS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_invalid_token_refused_by_the_backend(portiers, backend, introspection, protocol, mech):
    px = portiers(protocol, mech)
    tok = token(introspection, active=False)
    seen = introspection.requests
    assert not LOGIN[protocol](px.port(protocol), tok)
    # The backend asked the introspection server about this token: it got it.
    assert introspection.requests > seen
    assert any(s.token == tok for s in introspection.seen)
    # Dovecot answered with its failure JSON challenge; portier acknowledged it
    # (AQ== / empty line) and got the final refusal: an authentication
    # failure, not a protocol error or a retry.
    px.log.wait_for(rf"proxy\({USER},.*Login failed")
    text = px.log.text()
    assert "invalid input" not in text and "reconnecting" not in text, text
    assert tok not in text
