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
import json
import os
import poplib
import smtplib
import socket

import pytest

from tests.support.dovecot import DovecotBackend
from tests.support.oauth import IntrospectionServer
from tests.support.portier import Listener
from tests.support.sasl_wire import PROTOS, Conn, message

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


# ---------------------------------------- the client's own OAuth mechanism, passed on
@pytest.fixture(scope="module")
def px_mech(module_portier_factory, backend):
    """portier offering OAUTHBEARER/XOAUTH2 to clients; the static passdb
    sends each protocol to its backend port with `proxy_mech = %{mechanism}`
    (Dovecot's documented pass-through): Dovecot validates the token."""
    ports = {p: backend.ports[BACKEND_PORT[p]] for p in PROTOCOLS}
    return module_portier_factory(
        [], listeners=tuple(Listener(p, "none") for p in PROTOCOLS),
        settings={"auth": {"mechanisms": ["PLAIN", "OAUTHBEARER", "XOAUTH2"],
                           "failure_delay": "10ms"},
                  "login": {"auth_penalty_max": "50ms"}},
        extra_toml="".join(
            "[[passdb]]\ndriver = \"static\"\n"
            f"protocols = [\"{p}\"]\n"
            f"fields = \"proxy host=127.0.0.1 port={ports[p]} nopassword "
            "proxy_mech=%{mechanism} pass=%{password}\"\n" for p in PROTOCOLS))


@pytest.mark.parametrize("mech", ("OAUTHBEARER", "XOAUTH2"))
@pytest.mark.parametrize("proto", PROTOS, ids=lambda p: p.name)
def test_client_mechanism_passed_through(px_mech, backend, introspection, proto, mech):
    """O5: the client's mechanism and token reach Dovecot unchanged."""
    tok = token(introspection)
    mark = backend.log_mark()
    with Conn(px_mech, proto, timeout=TIMEOUT) as c:
        last = c.cmd(proto.auth(mech, message(mech, USER, tok)))[-1]
        assert last.startswith(proto.ok), last
    backend.wait_for_log(rf"{SERVICE[proto.name]}: Info: Login: user=<{USER}>, method={mech}",
                         since=mark)
    assert tok not in px_mech.log.text()


@pytest.mark.parametrize("mech,answer", (("OAUTHBEARER", "AQ=="), ("XOAUTH2", "")))
@pytest.mark.parametrize("proto", PROTOS, ids=lambda p: p.name)
def test_backend_failure_json_relayed_to_the_client(px_mech, introspection, proto, mech, answer):
    """A token Dovecot refuses: Dovecot's own failure JSON reaches the client
    as portier's continuation; after the client's answer, the final failure."""
    tok = token(introspection, active=False)
    # Dovecot's own auth penalty (up to 15 s per failure from one IP) delays
    # its answer: a long timeout.
    with Conn(px_mech, proto, timeout=TIMEOUT) as c:
        line = c.cmd(proto.auth(mech, message(mech, USER, tok)))[-1]
        challenge = proto.challenge(line)
        assert challenge, line
        doc = json.loads(base64.b64decode(challenge))
        # Dovecot 2.3's JSON (not portier's default): XOAUTH2 "401"+schemes,
        # OAUTHBEARER "invalid_token".
        if mech == "XOAUTH2":
            assert doc.get("status") == "401" and doc.get("schemes") == "bearer", doc
        else:
            assert doc.get("status") == "invalid_token", doc
        last = c.cmd(proto.response(answer))[-1]
        assert not last.startswith(proto.ok) and proto.challenge(last) is None, last
    assert tok not in px_mech.log.text()


def test_plain_client_gets_no_oauth_challenge(portiers, introspection):
    """A PLAIN client whose password went to the backend as a token gets the
    plain failure: the backend's OAuth JSON is not relayed to it."""
    px = portiers("imap", "xoauth2")
    tok = token(introspection, active=False)
    with socket.create_connection(("127.0.0.1", px.port("imap")), timeout=TIMEOUT) as s:
        f = s.makefile("rb")
        f.readline()
        ir = base64.b64encode(b"\0" + USER.encode() + b"\0" + tok.encode()).decode()
        s.sendall(f"a AUTHENTICATE PLAIN {ir}\r\n".encode())
        reply = f.readline()
        assert reply.startswith(b"a NO"), reply
