"""OAUTHBEARER (RFC 7628) and XOAUTH2 offered to clients in all four login
protocols, against the real Dovecot backend.

Until the oauth2 passdb exists, the token is validated by an ordinary
passwd-file entry whose password IS the token; the backend login then uses
the backend password (`pass=`) with PLAIN. Covered: SASL-IR and the empty
challenge (with a 10 KiB token), the failure JSON challenge and the client's
answer (`AQ==`, empty, `*`), cancel, hidden/refused on insecure connections,
imaplib / smtplib / curl clients, and (conftest) tokens never in the log.
"""
from __future__ import annotations

import base64
import imaplib
import json
import smtplib
import subprocess

import pytest

from tests.support.accounts import BACKEND_USERS
from tests.support.sasl_wire import PROTOS, Conn, Proto, message
from tests.support.portier import Listener, User, proxy

P1 = BACKEND_USERS["user1"]
TOKEN = "oauth-Tok.Qz7_Wm4Kx"
LONG_TOKEN = "LongTok-" + "k9Zp" * 2560          # 10 KiB + 8
WRONG = "wrong-Tok-Yh2Lc8"
MECHS = ("OAUTHBEARER", "XOAUTH2")
LISTENERS = (Listener("imap", "none"), Listener("pop3", "none"),
             Listener("submission", "none"), Listener("managesieve", "none"))
BACKEND_PORT = {"imap": "imap", "pop3": "pop3", "submission": "submission",
                "managesieve": "sieve"}


def users(dovecot) -> list[User]:
    out = []
    for p in PROTOS:
        port = dovecot.ports[BACKEND_PORT[p.name]]
        out.append(User(f"{p.name}-u", TOKEN, proxy(port, destuser="user1", pass_=P1)))
        out.append(User(f"{p.name}-long", LONG_TOKEN, proxy(port, destuser="user1", pass_=P1)))
    return out


# A short failure delay (the penalty doubles it per failure from 127.0.0.1).
AUTH = {"mechanisms": ["PLAIN", "OAUTHBEARER", "XOAUTH2"], "failure_delay": "10ms"}


@pytest.fixture(scope="module")
def px(module_portier_factory, dovecot):
    return module_portier_factory(users(dovecot), listeners=LISTENERS,
                                  settings={"auth": AUTH, "login": {"auth_penalty_max": "50ms"}})


def ids(p: Proto) -> str:
    return p.name


@pytest.mark.parametrize("proto", PROTOS, ids=ids)
@pytest.mark.parametrize("mech", MECHS)
def test_initial_response_logs_in_through_dovecot(px, dovecot, proto, mech):
    mark = px.log.mark()
    with Conn(px, proto) as c:
        assert mech.encode() in b" ".join(c.caps)
        last = c.cmd(proto.auth(mech, message(mech, f"{proto.name}-u", TOKEN)))[-1]
        assert last.startswith(proto.ok), last
    px.log.wait_for(rf"proxy\({proto.name}-u,.*Started proxying.*method={mech}", since=mark)


@pytest.mark.parametrize("proto", PROTOS, ids=ids)
@pytest.mark.parametrize("mech", MECHS)
def test_long_token_after_empty_challenge(px, proto, mech):
    with Conn(px, proto) as c:
        first = c.cmd(proto.auth(mech))[-1]
        assert proto.challenge(first) == "", first
        last = c.cmd(proto.response(message(mech, f"{proto.name}-long", LONG_TOKEN)))[-1]
        assert last.startswith(proto.ok), last


@pytest.mark.parametrize("proto", PROTOS, ids=ids)
def test_long_token_as_initial_response(px, proto):
    # 10 KiB: longer than the ordinary 8 KiB command line.
    with Conn(px, proto) as c:
        ir = message("OAUTHBEARER", f"{proto.name}-long", LONG_TOKEN)
        assert len(ir) > 8192
        assert c.cmd(proto.auth("OAUTHBEARER", ir))[-1].startswith(proto.ok)


@pytest.mark.parametrize("proto", PROTOS, ids=ids)
@pytest.mark.parametrize("mech,answer", [("OAUTHBEARER", "AQ=="), ("XOAUTH2", ""),
                                         ("OAUTHBEARER", "*")])
def test_failure_json_then_final_failure(px, proto, mech, answer):
    with Conn(px, proto) as c:
        line = c.cmd(proto.auth(mech, message(mech, f"{proto.name}-u", WRONG)))[-1]
        challenge = proto.challenge(line)
        assert challenge, line
        doc = json.loads(base64.b64decode(challenge))
        if mech == "OAUTHBEARER":
            assert doc == {"status": "invalid_token", "scope": "mail"}
        else:
            assert doc == {"status": "401", "schemes": "bearer", "scope": "mail"}
        last = c.cmd(proto.response(answer))[-1]
        assert last.startswith(proto.failed), last
        # The connection goes on: the right token logs in.
        last = c.cmd(proto.auth(mech, message(mech, f"{proto.name}-u", TOKEN)))[-1]
        assert last.startswith(proto.ok), last
    assert WRONG not in px.log.text()


@pytest.mark.parametrize("proto", PROTOS, ids=ids)
def test_cancel_during_exchange(px, proto):
    with Conn(px, proto) as c:
        assert proto.challenge(c.cmd(proto.auth("XOAUTH2"))[-1]) == ""
        last = c.cmd(proto.response("*"))[-1]
        assert not last.startswith(proto.ok) and proto.challenge(last) is None, last
        assert b"abort" in last.lower(), last


@pytest.mark.parametrize("proto", PROTOS, ids=ids)
def test_hidden_and_refused_without_tls(module_portier_factory, dovecot, proto):
    px = module_portier_factory(users(dovecot), listeners=LISTENERS,
                                settings={"auth": dict(AUTH, allow_cleartext=False),
                                          "login": {"trusted_networks": ["192.0.2.0/24"]}})
    # From 127.0.0.2 to 127.0.0.1: not a local connection, not TLS.
    with Conn(px, proto, source="127.0.0.2") as c:
        caps = c.cmd("a CAPABILITY") if proto.name == "imap" else c.caps
        text = b" ".join(caps)
        assert b"OAUTHBEARER" not in text and b"XOAUTH2" not in text, text
        for mech in MECHS:
            last = c.cmd(proto.auth(mech, message(mech, f"{proto.name}-u", TOKEN)))[-1]
            assert not last.startswith(proto.ok) and proto.challenge(last) is None, last


@pytest.mark.parametrize("mech", MECHS)
def test_imaplib_authenticate(px, mech):
    raw = base64.b64decode(message(mech, "imap-u", TOKEN))
    with imaplib.IMAP4("127.0.0.1", px.port("imap", "none")) as m:
        typ, _ = m.authenticate(mech, lambda _challenge: raw)
        assert typ == "OK"
        assert m.select("INBOX")[0] == "OK"
    bad = base64.b64decode(message(mech, "imap-u", WRONG))
    answers = []

    def answer(challenge):
        answers.append(challenge)
        return bad if len(answers) == 1 else (b"\x01" if mech == "OAUTHBEARER" else b"")

    with imaplib.IMAP4("127.0.0.1", px.port("imap", "none")) as m:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            m.authenticate(mech, answer)
        assert b'"status"' in answers[1]


@pytest.mark.parametrize("mech", MECHS)
def test_smtplib_auth(px, mech):
    raw = base64.b64decode(message(mech, "submission-u", TOKEN)).decode()
    with smtplib.SMTP("127.0.0.1", px.port("submission", "none")) as s:
        s.ehlo("client.example")
        assert mech in s.esmtp_features["auth"].split()
        code, _ = s.auth(mech, lambda challenge=None: raw)
        assert code == 235
    bad = base64.b64decode(message(mech, "submission-u", WRONG)).decode()
    with smtplib.SMTP("127.0.0.1", px.port("submission", "none")) as s:
        s.ehlo("client.example")
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.auth(mech, lambda challenge=None: bad if challenge is None else "")
        assert e.value.smtp_code == 535


def curl(px, proto: str, user: str, token: str) -> subprocess.CompletedProcess:
    scheme = {"imap": "imap", "pop3": "pop3", "submission": "smtp"}[proto]
    url = f"{scheme}://{user}@127.0.0.1:{px.port(proto, 'none')}/"
    extra = []
    if proto == "submission":   # send a message: curl's default SMTP command (HELP) is not offered
        extra = ["--mail-from", "user1@example.org", "--mail-rcpt", "user1@example.org", "-T", "-"]
    return subprocess.run(["curl", "-sS", "--max-time", "10", url, "--oauth2-bearer", token,
                           *extra], input=b"Subject: oauth\r\n\r\nhello\r\n",
                          capture_output=True)


@pytest.fixture(scope="module")
def px_offering(module_portier_factory, dovecot):
    """A portier that offers only the given OAuth mechanism (curl 7.88 picks
    OAUTHBEARER whenever it is offered, whatever ;AUTH= / --login-options say)."""
    cache = {}

    def get(mech: str):
        if mech not in cache:
            cache[mech] = module_portier_factory(
                users(dovecot), listeners=LISTENERS,
                settings={"auth": dict(AUTH, mechanisms=["PLAIN", mech]),
                          "login": {"auth_penalty_max": "50ms"}})
        return cache[mech]
    return get


@pytest.mark.parametrize("proto", ["imap", "pop3", "submission"])
@pytest.mark.parametrize("mech", MECHS)
def test_curl_oauth2_bearer(px, px_offering, proto, mech):
    # Both offered: curl chooses OAUTHBEARER.
    mark = px.log.mark()
    r = curl(px, proto, f"{proto}-u", TOKEN)
    assert r.returncode == 0, r.stderr
    px.log.wait_for(rf"proxy\({proto}-u,.*Started proxying.*method=OAUTHBEARER", since=mark)
    # Only `mech` offered.
    one = px_offering(mech)
    mark = one.log.mark()
    r = curl(one, proto, f"{proto}-u", TOKEN)
    assert r.returncode == 0, r.stderr
    one.log.wait_for(rf"proxy\({proto}-u,.*Started proxying.*method={mech}", since=mark)
    assert curl(one, proto, f"{proto}-u", WRONG).returncode != 0


def test_last_attempt_answer_is_read_before_the_goodbye(module_portier_factory, dovecot):
    px = module_portier_factory(users(dovecot), listeners=LISTENERS,
                                settings={"auth": AUTH, "login": {"max_auth_attempts": 1}})
    imap = PROTOS[0]
    with Conn(px, imap) as c:
        line = c.cmd(imap.auth("XOAUTH2", message("XOAUTH2", "imap-u", WRONG)))[-1]
        assert imap.challenge(line), line
        c.c.send(b"\r\n")
        rest = c.c.read_until_closed()
        assert rest.startswith(b"a NO [AUTHENTICATIONFAILED]"), rest
        assert b"* BYE Too many authentication failures" in rest, rest
