"""Login referrals (issue 13): a passdb entry with `host` but no `proxy` tells
the client where to log in instead — RFC 2221 for IMAP, Dovecot's forms for
POP3, Submission and ManageSieve (dovecot-proxy-reference.md §3.8, §4.3, §5.5,
§6.3, §11.6a). Priority as Dovecot: `proxy` beats `host` beats `nologin`.
No backend is involved: every reply here comes from portier itself.
"""
from __future__ import annotations

import base64

import pytest

from tests.support.imap_client import RawIMAP
from tests.support.portier import Listener, User

LISTENERS = (Listener("imap", "none"), Listener("pop3", "none"), Listener("submission", "none"),
             Listener("managesieve", "none"))

USERS = [
    User("ref1", "pw1", "nologin host=imap2.example.org"),
    User("ref2@example.org", "pw2",
         "nologin host=192.0.2.7 port=1143 destuser=bob@example.org reason=Mailbox_moved"),
    User("ref3", "pw3", "host=2001:db8::1"),          # no nologin: "logged in, but use that"
    User("ref4", "pw4", "nologin host=mail.example.net port=110"),
    User("bad", "pw5", "nologin host=evil]x"),       # would break the reply: refused, logged
    User("off", "pw6", "nologin reason=Gone_fishing"),  # nologin without host: no referral
]


@pytest.fixture
def px(make_portier):
    return make_portier(USERS, listeners=LISTENERS,
                        settings={"server": {"workers": 1}, "login": {"max_auth_attempts": 10}})


def plain(user: str, pw: str) -> str:
    return base64.b64encode(f"\0{user}\0{pw}".encode()).decode()


def test_imap_nologin_referral_names_user_mechanism_host_and_port(px):
    with RawIMAP(px.port("imap")) as c:
        assert c.command("a", "LOGIN ref1 pw1")[-1] == \
            b"a NO [REFERRAL imap://ref1;AUTH=PLAIN@imap2.example.org/] Try this server instead."
        # destuser (URL-encoded, RFC 5092), a non-default port, the passdb's reason
        assert c.command("b", f"AUTHENTICATE PLAIN {plain('ref2@example.org', 'pw2')}")[-1] == \
            b"b NO [REFERRAL imap://bob%40example.org;AUTH=PLAIN@192.0.2.7:1143/] Mailbox_moved"
        # a refusal: the session goes on
        assert c.command("c", "NOOP")[-1].startswith(b"c OK")


def test_imap_referral_without_nologin_is_ok_and_ends_the_session(px):
    with RawIMAP(px.port("imap")) as c:
        assert c.command("a", "LOGIN ref3 pw3")[-1] == (
            b"a OK [REFERRAL imap://ref3;AUTH=PLAIN@[2001:db8::1]/] "
            b"Logged in, but you should use this server instead.")
        assert c.read_until_closed(timeout=5) == b""
    px.log.wait_for(r"Disconnected: Login with referral")


def test_wrong_password_gets_no_referral(px):
    with RawIMAP(px.port("imap")) as c:
        r = c.command("a", "LOGIN ref1 wrong")[-1]
        assert r.startswith(b"a NO [AUTHENTICATIONFAILED]") and b"REFERRAL" not in r


def test_bad_referral_host_is_a_logged_configuration_error(px):
    with RawIMAP(px.port("imap")) as c:
        assert c.command("a", "LOGIN bad pw5")[-1].startswith(b"a NO [UNAVAILABLE]")
    px.log.wait_for(r"referral: invalid host in passdb: evil\]x")


def test_nologin_without_host_is_not_a_referral(px):
    with RawIMAP(px.port("imap")) as c:
        r = c.command("a", "LOGIN off pw6")[-1]
        assert r.startswith(b"a NO") and b"Gone_fishing" in r and b"REFERRAL" not in r


def test_pop3_referral(px):
    with RawIMAP(px.port("pop3")) as c:
        assert c.banner.startswith(b"+OK")
        c.send("USER ref1\r\n")
        assert c.readline().startswith(b"+OK")
        c.send("PASS pw1\r\n")
        assert c.readline() == b"-ERR [REFERRAL/ref1@imap2.example.org] Referral"
        # POP3's default port is left out; no OK form: a refusal even without nologin
        c.send(f"AUTH PLAIN {plain('ref4', 'pw4')}\r\n")
        assert c.readline() == b"-ERR [REFERRAL/ref4@mail.example.net] Referral"
        c.send(f"AUTH PLAIN {plain('ref3', 'pw3')}\r\n")
        assert c.readline() == b"-ERR [REFERRAL/ref3@[2001:db8::1]] Referral"
        c.send("QUIT\r\n")
        assert c.readline().startswith(b"+OK")


def test_submission_referral(px):
    with RawIMAP(px.port("submission")) as c:
        assert c.banner.startswith(b"220 ")
        c.send("EHLO client.example\r\n")
        while not c.readline().startswith(b"250 "):
            pass
        c.send(f"AUTH PLAIN {plain('ref2@example.org', 'pw2')}\r\n")
        assert c.readline() == b"550 5.2.900 bob%40example.org@192.0.2.7:1143 Referral"
        c.send(f"AUTH PLAIN {plain('ref1', 'pw1')}\r\n")
        assert c.readline() == b"550 5.2.900 ref1@imap2.example.org Referral"
        c.send("QUIT\r\n")
        assert c.readline().startswith(b"221 ")


def test_managesieve_referral(px):
    with RawIMAP(px.port("managesieve"), read_banner=False) as c:
        while not c.readline().startswith(b"OK"):
            pass
        c.send(f'AUTHENTICATE "PLAIN" "{plain("ref1", "pw1")}"\r\n')
        assert c.readline() == b'NO (REFERRAL sieve://ref1@imap2.example.org) "Try this server instead."'
        c.send(f'AUTHENTICATE "PLAIN" "{plain("ref3", "pw3")}"\r\n')
        assert c.readline() == (b'OK (REFERRAL sieve://ref3@[2001:db8::1]) '
                                b'"Logged in, but you should use this server instead."')
        assert c.read_until_closed(timeout=5) == b""
