"""Backend referrals followed (issue 13; Dovecot 2.4's redirect,
dovecot-proxy-reference.md §11.6b, checklist C33). Without
proxy_redirect_reauth: a
backend that answers the proxied login with a referral to an IP sends portier
there with a fresh backend dialogue; a hostname (no DNS lookups), a
destination this login already tried, or a malformed target is a failure.

The referring backends are fakes (fault injection); the destination is the
real Dovecot backend, whose log shows the login.

With [login] proxy_redirect_reauth the passdb is asked again (an SQL query on
%{proxy_redirect_host_next} / %{proxy_redirect_host_attempts}): `proxy` leads
to its host (a name the backend referred to becomes an IP), `nologin` + `host`
refers the client, anything else is an internal failure; loops still stop.
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


def imap_login_lands_at(px, dovecot, dest: str):
    """An IMAP LOGIN through `px` ends logged in at the real Dovecot, which
    portier reached as `dest` (a regex)."""
    mark = dovecot.log_mark()
    with RawIMAP(px.port("imap")) as c:
        assert c.command("a", f'LOGIN user1 "{PW}"')[-1].startswith(b"a OK"), c.transcript
        assert c.command("b", "NOOP")[-1].startswith(b"b OK")
    dovecot.wait_for_log(r"imap-login: Info: Login: user=<user1>", since=mark)
    px.log.wait_for(rf"Started proxying to {dest}")


def test_imap_referral_to_an_ip_is_followed(make_portier, make_fake, dovecot):
    fake = make_fake(imap_referrer(f"127.0.0.1:{dovecot.ports['imap']}"))
    px = start(make_portier, fake.port)
    dest = rf"127\.0\.0\.1:{dovecot.ports['imap']}"
    imap_login_lands_at(px, dovecot, dest)
    px.log.wait_for(rf"Backend referral followed to {dest}: .*Go there")
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


# ---- proxy_redirect_reauth: the passdb decides where a referral leads ---------
def reauth_portier(make_portier, tmp_path, first_port: int, rows, via: str = "login"):
    """[login] proxy_redirect_reauth = true with an SQL passdb: the first
    login (next = '') proxies to `first_port`; `rows` are (next, attempts,
    proxy, host, hostip, port, nologin) answers to the re-authentication,
    chosen by %{proxy_redirect_host_next} and %{proxy_redirect_host_attempts}.
    `via`: the [login] setting, or the passdb field on the first answer."""
    import sqlite3
    db = tmp_path / "redirect.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE r (next TEXT, attempts TEXT, password TEXT, proxy TEXT, host TEXT, "
                "hostip TEXT, port INT, nologin TEXT, reauth TEXT)")
    con.execute("INSERT INTO r VALUES ('', '', ?, 'Y', '127.0.0.1', NULL, ?, NULL, ?)",
                ("{PLAIN}" + PW, first_port, "Y" if via == "passdb" else None))
    for row in rows:
        con.execute("INSERT INTO r VALUES (?, ?, NULL, ?, ?, ?, ?, ?, NULL)", row)
    con.commit()
    con.close()
    extra = (f'[[passdb]]\ndriver = "sqlite"\nconnect = "{db}"\n'
             "query = \"SELECT password, proxy, host, hostip, port, nologin, 8 AS proxy_timeout, "
             "reauth AS proxy_redirect_reauth "
             "FROM r WHERE '%{user}' = 'user1' AND next = '%{proxy_redirect_host_next}' "
             "AND attempts IN ('%{proxy_redirect_host_attempts}', '*')\"\n")
    return make_portier([], listeners=LISTENERS, extra_toml=extra,
                        settings={"server": {"workers": 1},
                                  "login": {"proxy_redirect_reauth": via == "login"}})


@pytest.mark.parametrize("via", ["login", "passdb"])
def test_reauth_maps_a_host_name_to_the_next_backend(make_portier, make_fake, dovecot, tmp_path,
                                                      via):
    port = dovecot.ports["imap"]
    fake = make_fake(imap_referrer(f"imap2.example.test:{port}"))
    px = reauth_portier(make_portier, tmp_path, fake.port, [
        (f"imap2.example.test:{port}", f"127.0.0.1:{fake.port}", "Y", "imap2.example.test",
         "127.0.0.1", port, None)], via=via)
    dest = rf"imap2\.example\.test\[127\.0\.0\.1\]:{port}"
    imap_login_lands_at(px, dovecot, dest)
    px.log.wait_for(rf"Backend referral followed to {dest}")


def test_reauth_nologin_refers_the_client(make_portier, make_fake, tmp_path):
    fake = make_fake(imap_referrer("elsewhere.test:143"))
    px = reauth_portier(make_portier, tmp_path, fake.port, [
        ("elsewhere.test:143", "*", None, "imap.elsewhere.test", None, None, "Y")])
    with RawIMAP(px.port("imap")) as c:
        r = c.command("a", f'LOGIN user1 "{PW}"')[-1]
        assert r.startswith(b"a NO [REFERRAL imap://user1;AUTH=PLAIN@imap.elsewhere.test/]"), r
    px.log.wait_for(r"proxy\(user1,.*Redirected to imap\.elsewhere\.test")
    assert len(fake.connections) == 1


def test_reauth_without_proxy_or_nologin_fails(make_portier, make_fake, tmp_path):
    fake = make_fake(imap_referrer("nowhere.test:143"))
    px = reauth_portier(make_portier, tmp_path, fake.port, [
        ("nowhere.test:143", "*", None, None, None, None, None)])
    with RawIMAP(px.port("imap")) as c:
        r = c.command("a", f'LOGIN user1 "{PW}"')[-1]
        assert r == b"a NO [UNAVAILABLE] Account is temporarily unavailable.", r
    px.log.wait_for(r"Aborting due to internal error: Redirect authentication is missing proxy "
                    r"or nologin field")


def test_reauth_loop_is_stopped(make_portier, make_fake, tmp_path):
    a = make_fake(lambda i: imap_referrer(f"b.test:{b.port}"))
    b = make_fake(lambda i: imap_referrer(f"a.test:{a.port}"))
    px = reauth_portier(make_portier, tmp_path, a.port, [
        (f"b.test:{b.port}", "*", "Y", "b.test", "127.0.0.1", b.port, None),
        (f"a.test:{a.port}", "*", "Y", "a.test", "127.0.0.1", a.port, None)])
    with RawIMAP(px.port("imap")) as c:
        r = c.command("a", f'LOGIN user1 "{PW}"')[-1]
        assert r == b"a NO [SERVERBUG] Account is temporarily unavailable.", r
    px.log.wait_for(rf"Proxying loops - already connected to 127\.0\.0\.1:{a.port}")
    assert len(a.connections) == 1 and len(b.connections) == 1
