"""Backend referrals followed (issue 13; Dovecot 2.4's redirect without
proxy_redirect_reauth, dovecot-proxy-reference.md §11.6b, checklist C33): a
backend that answers the proxied login with a referral to an IP sends portier
there with a fresh backend dialogue; a hostname (no DNS lookups), a
destination this login already tried, or a malformed target is a failure.

The referring backends are fakes (fault injection); the destination is the
real Dovecot backend, whose log shows the login.
"""
from __future__ import annotations

import base64
import re

import pytest

from tests.support import backend_scripts as bs
from tests.support import fake_backend as fb
from tests.support.accounts import BACKEND_USERS
from tests.support.imap_client import RawIMAP
from tests.support.portier import Listener, User, proxy

PW = BACKEND_USERS["user1"]
LISTENERS = (Listener("imap", "none"), Listener("pop3", "none"), Listener("submission", "none"),
             Listener("managesieve", "none"))


def imap_referrer(target: str):
    return bs.imap_login_reply(f"L NO [REFERRAL imap://user1;AUTH=PLAIN@{target}/] Go there")


def start(make_portier, port: int):
    return make_portier([User("user1", PW, proxy(port, proxy_timeout=8))], listeners=LISTENERS,
                        settings={"server": {"workers": 1}})


def test_imap_referral_to_an_ip_is_followed(make_portier, make_fake, dovecot):
    fake = make_fake(imap_referrer(f"127.0.0.1:{dovecot.ports['imap']}"))
    px = start(make_portier, fake.port)
    mark = dovecot.log_mark()
    with RawIMAP(px.port("imap")) as c:
        assert c.command("a", f'LOGIN user1 "{PW}"')[-1].startswith(b"a OK"), c.transcript
        assert c.command("b", "NOOP")[-1].startswith(b"b OK")
    dovecot.wait_for_log(r"imap-login: Info: Login: user=<user1>", since=mark)
    px.log.wait_for(rf"Backend referral followed to 127\.0\.0\.1:{dovecot.ports['imap']}: .*Go there")
    px.log.wait_for(rf"Started proxying to 127\.0\.0\.1:{dovecot.ports['imap']}")
    assert len(fake.connections) == 1


def test_referral_without_port_keeps_the_current_port(make_portier, make_fake):
    # 127.0.0.2 has nothing listening on the fake's port: a connect failure
    # there proves where portier went.
    fake = make_fake(imap_referrer("127.0.0.2"))
    px = start(make_portier, fake.port)
    with RawIMAP(px.port("imap")) as c:
        assert c.command("a", f'LOGIN user1 "{PW}"')[-1].startswith(b"a NO"), c.transcript
    px.log.wait_for(rf"Backend referral followed to 127\.0\.0\.2:{fake.port}")


def test_referral_back_to_a_visited_backend_is_a_loop(make_portier, make_fake):
    a = make_fake(lambda i: imap_referrer("127.0.0.1:" + str(b.port)))
    b = make_fake(lambda i: imap_referrer("127.0.0.1:" + str(a.port)))
    px = start(make_portier, a.port)
    with RawIMAP(px.port("imap")) as c:
        r = c.command("a", f'LOGIN user1 "{PW}"')[-1]
        # a remote configuration failure, like a TTL that reached zero
        assert r == b"a NO [SERVERBUG] Account is temporarily unavailable.", r
    px.log.wait_for(rf"Proxying loops - already connected to 127\.0\.0\.1:{a.port}")
    assert len(a.connections) == 1 and len(b.connections) == 1


def test_referral_to_a_host_name_is_refused(make_portier, make_fake):
    fake = make_fake(imap_referrer("imap2.example.org:143"))
    px = start(make_portier, fake.port)
    with RawIMAP(px.port("imap")) as c:
        assert c.command("a", f'LOGIN user1 "{PW}"')[-1].startswith(b"a NO"), c.transcript
    px.log.wait_for(r"Redirect to .*imap2\.example\.org:143: Failed to parse IP 'imap2\.example\.org' "
                    r"\(DNS lookups not supported\)")


def test_malformed_referral_is_refused(make_portier, make_fake):
    fake = make_fake(imap_referrer("127.0.0.1:99999"))
    px = start(make_portier, fake.port)
    with RawIMAP(px.port("imap")) as c:
        assert c.command("a", f'LOGIN user1 "{PW}"')[-1].startswith(b"a NO"), c.transcript
    px.log.wait_for(r"Redirect to user1;AUTH=PLAIN@127\.0\.0\.1:99999: Failed to parse host:port")


# ---- the other three protocols: their referral forms --------------------------
def line_referrer(banner: str, trigger: str, referral: str, ok: str = "+OK"):
    """A fake that greets, answers every command with `ok` (multi-line EHLO
    and capability lists are not needed: portier's dialogue tolerates the
    short forms below) and the login command matching `trigger` with
    `referral`."""
    def handler(line: str, conn):
        if re.match(trigger, line, re.I):
            return referral + "\r\n"
        return ok + "\r\n"
    return [fb.send_line(banner), fb.serve(handler)]


def test_pop3_referral_is_followed(make_portier, make_fake, dovecot):
    port = dovecot.ports["pop3"]
    fake = make_fake(line_referrer("+OK fake ready.", r"^(PASS|AUTH)",
                                   f"-ERR [REFERRAL/user1@127.0.0.1:{port}] Referral"))
    px = start(make_portier, fake.port)
    mark = dovecot.log_mark()
    with RawIMAP(px.port("pop3")) as c:
        c.send("USER user1\r\n")
        assert c.readline().startswith(b"+OK")
        c.send(f"PASS {PW}\r\n")
        assert c.readline().startswith(b"+OK"), c.transcript
    dovecot.wait_for_log(r"pop3-login: Info: Login: user=<user1>", since=mark)


def test_submission_referral_is_followed(make_portier, make_fake, dovecot):
    port = dovecot.ports["submission"]

    def handler(line: str, conn):
        u = line.upper()
        if u.startswith("EHLO"):
            return "250-fake\r\n250-AUTH PLAIN\r\n250 ENHANCEDSTATUSCODES\r\n"
        if u.startswith("AUTH"):
            return f"550 5.2.900 user1@127.0.0.1:{port} Referral\r\n"
        return "250 2.0.0 OK\r\n"
    fake = make_fake([fb.send_line("220 fake ESMTP"), fb.serve(handler)])
    px = start(make_portier, fake.port)
    mark = dovecot.log_mark()
    with RawIMAP(px.port("submission")) as c:
        c.send("EHLO client.example\r\n")
        while not c.readline().startswith(b"250 "):
            pass
        c.send("AUTH PLAIN " + base64.b64encode(f"\0user1\0{PW}".encode()).decode() + "\r\n")
        assert c.readline().startswith(b"235"), c.transcript
    dovecot.wait_for_log(r"submission-login: Info: Login: user=<user1>", since=mark)


def test_managesieve_referral_is_followed(make_portier, make_fake, dovecot):
    port = dovecot.ports["sieve"]
    greeting = ('"IMPLEMENTATION" "fake"\r\n"SASL" "PLAIN"\r\n"VERSION" "1.0"\r\nOK "fake ready."')

    def handler(line: str, conn):
        if line.upper().startswith("AUTHENTICATE"):
            return f'NO (REFERRAL sieve://user1@127.0.0.1:{port}) "Go there"\r\n'
        return 'OK "fine"\r\n'
    fake = make_fake([fb.send(greeting.encode() + b"\r\n"), fb.serve(handler)])
    px = start(make_portier, fake.port)
    mark = dovecot.log_mark()
    with RawIMAP(px.port("managesieve"), read_banner=False) as c:
        while not c.readline().startswith(b"OK"):
            pass
        c.send('AUTHENTICATE "PLAIN" "' + base64.b64encode(f"\0user1\0{PW}".encode()).decode() + '"\r\n')
        line = c.readline()
        while line.startswith(b'"'):
            line = c.readline()
        assert line.startswith(b"OK"), c.transcript
    dovecot.wait_for_log(r"managesieve-login: Info: Login: user=<user1>", since=mark)
