"""LDAP passdb (issue 10, LDAP part): the ldap driver against a real private
OpenLDAP slapd (tests/support/slapd.py) holding 100 users, routing logins to
the real Dovecot backend.

Users u000..u099 (mail u000@example.org, uid u000): password = their
Dovecot destuser's (user1/user2/user3, stored {SSHA}), mailHost 127.0.0.1,
mailPort = Dovecot's IMAP port, mailProxy "y"; i % 4 == 1 with
mailStartTLS "yes" (STARTTLS to the backend); i % 10 == 9 without host and
proxy (not routed -> temporary failure); i % 10 == 5 disabled (mailNoLogin
+ mailReason, no proxy). Two entries share dup@example.org.
IMAP is routed by one [[passdb]] reading the attributes, POP3 by another
with constants and a %{ldap:attr} template (`proxy = "=y"`, `port` = the
POP3 port, `destuser = "=%{ldap:mailDestUser}"`).
"""
from __future__ import annotations

import imaplib
import re
import time

import pytest

from tests.support import slapd as slapd_mod
from tests.support.accounts import BACKEND_USERS
from tests.support.imap_client import RawIMAP
from tests.support.passdb_logins import (b64, backend_login_re, frozen_server_times_out, imap_and_pop3,
                                         imap_login, no_secrets)
from tests.support.portier import Listener, User
from tests.support.util import closed_port

pytestmark = pytest.mark.skipif(not slapd_mod.available(), reason="slapd not installed")

DESTS = ("user1", "user2", "user3")
N_USERS = 100
LISTENERS = (Listener("imap", "none"), Listener("pop3", "none"))
FILTER = "(&(objectClass=inetOrgPerson)(mail=%{user}))"
PF_USER, PF_PASS = "pf-user", "pf-Pass-x8Kq"


def user(i: int) -> tuple[str, str]:
    """(mail, destuser) of user i."""
    return f"u{i:03d}@example.org", DESTS[i % 3]


def ldif(dovecot) -> list[str]:
    out = []
    for i in range(N_USERS):
        mail, dest = user(i)
        attrs = [("objectClass", "inetOrgPerson"), ("objectClass", "portierUser"), ("uid", f"u{i:03d}"),
                 ("cn", f"User {i}"), ("sn", f"u{i:03d}"), ("mail", mail),
                 ("userPassword", slapd_mod.ssha(BACKEND_USERS[dest])), ("mailDestUser", dest)]
        if i % 10 == 3:   # multi-valued: the first value counts
            attrs.append(("mailDestUser", "nosuchuser"))
        if i % 10 == 5:
            attrs += [("mailNoLogin", "y"), ("mailReason", "moved to imap2.example.org")]
        elif i % 10 != 9:
            attrs += [("mailHost", "127.0.0.1"), ("mailPort", str(dovecot.ports["imap"])), ("mailProxy", "y")]
            if i % 4 == 1:
                attrs.append(("mailStartTLS", "yes"))
        out.append(slapd_mod.entry(f"uid=u{i:03d},{slapd_mod.PEOPLE}", attrs))
    for n in (1, 2):
        out.append(slapd_mod.entry(f"uid=dup{n},{slapd_mod.PEOPLE}", [
            ("objectClass", "inetOrgPerson"), ("uid", f"dup{n}"), ("cn", "dup"), ("sn", "dup"),
            ("mail", "dup@example.org"), ("userPassword", slapd_mod.ssha("x"))]))
    return out


@pytest.fixture(scope="module")
def ldap(dovecot):
    s = slapd_mod.Slapd()
    try:
        s.load(ldif(dovecot))
        s.start()
        yield s
    finally:
        s.stop()


def toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def passdb_toml(ldap, dovecot, *, auth_bind: bool = False, uris: list[str] | None = None,
                filter: str = FILTER, connections: int | None = None) -> str:
    common = (f'driver = "ldap"\nuris = [{", ".join(toml_str(u) for u in (uris or [ldap.uri]))}]\n'
              f"bind_dn = {toml_str(slapd_mod.SERVICE_DN)}\nbind_password = {toml_str(ldap.service_password)}\n"
              f"base = {toml_str(slapd_mod.PEOPLE)}\nfilter = {toml_str(filter)}\n"
              f"auth_bind = {'true' if auth_bind else 'false'}\n"
              + (f"connections = {connections}\n" if connections else ""))
    pw = "" if auth_bind else 'password = "userPassword", '
    imap = (f'[[passdb]]\nprotocols = ["imap"]\n{common}'
            f'fields = {{ {pw}host = "mailHost", port = "mailPort", proxy = "mailProxy", '
            'destuser = "mailDestUser", starttls = "mailStartTLS", nologin = "mailNoLogin", '
            'reason = "mailReason" }\n')
    pop3 = (f'[[passdb]]\nprotocols = ["pop3"]\n{common}'
            f'fields = {{ {pw}host = "mailHost", proxy = "=y", port = "={dovecot.ports["pop3"]}", '
            'destuser = "=%{ldap:mailDestUser}" }\n')
    return imap + "\n" + pop3


def start(make_portier, toml: str, timeout: str = "10s"):
    return make_portier([User(PF_USER, PF_PASS, "nologin reason=pf-user-ok")], listeners=LISTENERS,
                        extra_toml=toml, settings={"server": {"workers": 1}, "auth": {"passdb_timeout": timeout}})


# ---------------------------------------------------------------- routing
@pytest.mark.parametrize("auth_bind", [False, True], ids=["read-password", "auth-bind"])
def test_routes_imap_and_pop3(make_portier, dovecot, ldap, auth_bind):
    px = start(make_portier, passdb_toml(ldap, dovecot, auth_bind=auth_bind))
    mark = ldap.log_mark()
    for i in (0, 1, 2):   # plain backend, STARTTLS backend, third destuser
        mail, dest = user(i)
        imap_and_pop3(px, dovecot, mail, dest, BACKEND_USERS[dest])
    log = ldap.log_text(mark)
    # The filter sent, %{user} substituted.
    assert "filter=\"(&(objectClass=inetOrgPerson)(mail=u001@example.org))\"" in log
    # Connections are reused: the service account bound once per pooled
    # connection (2 passdbs x at most 4), not once per lookup (6 lookups).
    binds = re.findall(r'BIND dn="cn=portier,dc=example,dc=org" method=128', log)
    assert 1 <= len(binds) <= 2, binds
    user_binds = re.findall(r'BIND dn="uid=u00\d,ou=people,dc=example,dc=org" method=128', log)
    if auth_bind:
        assert len(user_binds) == 6, user_binds
        # The user's DN was bound on its own connection, not the service one.
        svc_conns = set(re.findall(r'conn=(\d+) op=\d+ BIND dn="cn=portier', log))
        user_conns = set(re.findall(r'conn=(\d+) op=\d+ BIND dn="uid=u00', log))
        assert svc_conns and user_conns and not (svc_conns & user_conns)
    else:
        assert not user_binds
    no_secrets(px, ldap.service_password)


@pytest.mark.parametrize("auth_bind", [False, True], ids=["read-password", "auth-bind"])
def test_field_combinations(make_portier, dovecot, ldap, auth_bind):
    px = start(make_portier, passdb_toml(ldap, dovecot, auth_bind=auth_bind))
    # proxied users across the directory
    for i in (13, 21, 42, 97):
        mail, dest = user(i)
        mark = dovecot.log_mark()
        assert imap_login(px, mail, BACKEND_USERS[dest]).startswith(b"a OK"), mail
        dovecot.wait_for_log(backend_login_re("imap", dest), since=mark)
    # nologin + reason: refused with the reason, nothing reaches the backend
    mail, dest = user(5)
    r = imap_login(px, mail, BACKEND_USERS[dest])
    assert r.startswith(b"a NO") and b"moved to imap2.example.org" in r, r
    # no host/proxy: not routed -> temporary failure
    mail, dest = user(9)
    assert imap_login(px, mail, BACKEND_USERS[dest]).startswith(b"a NO [UNAVAILABLE]")
    # wrong password, unknown user: authentication failure; log lines name `ldap`
    mail, _ = user(3)
    assert imap_login(px, mail, "wrong-password").startswith(b"a NO [AUTHENTICATIONFAILED]")
    px.log.wait_for(r"ldap\(u003@example\.org,127\.0\.0\.1,<[^>]+>\): Password mismatch")
    assert imap_login(px, "nobody@example.org", "x").startswith(b"a NO [AUTHENTICATIONFAILED]")
    px.log.wait_for(r"ldap\(nobody@example\.org,127\.0\.0\.1,<[^>]+>\): unknown user")
    # two entries: internal failure, logged
    assert imap_login(px, "dup@example.org", "x").startswith(b"a NO [UNAVAILABLE]")
    px.log.wait_for(r"ldap\(dup@example\.org,.*search returned multiple entries")
    # the passwd-file passdb first in the chain still answers its users
    assert b"pf-user-ok" in imap_login(px, PF_USER, PF_PASS)
    no_secrets(px, ldap.service_password)


def test_auth_bind_never_sends_an_empty_password(make_portier, dovecot, ldap):
    px = start(make_portier, passdb_toml(ldap, dovecot, auth_bind=True))
    mail, dest = user(0)
    assert imap_login(px, mail, BACKEND_USERS[dest]).startswith(b"a OK")   # connections warm
    mark = ldap.log_mark()
    r = imap_login(px, mail, "")
    assert r.startswith((b"a NO", b"a BAD")), r
    r = imap_login(px, mail, "wrong")
    assert r.startswith(b"a NO [AUTHENTICATIONFAILED]"), r
    # slapd may log the bind's RESULT line after it sent the result: wait
    # for it (bounded) before reading the log.
    deadline = time.monotonic() + 5
    while not re.search(r"RESULT tag=97 err=49 ", ldap.log_text(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    log = ldap.log_text(mark)
    # Exactly one user bind (the wrong password, refused with err=49): the
    # empty one never reached slapd, and no anonymous bind happened.
    binds = re.findall(r'conn=(\d+) op=(\d+) BIND dn="([^"]*)" method=128', log)
    assert [b[2] for b in binds] == ["uid=u000,ou=people,dc=example,dc=org"], binds
    conn, op = binds[0][:2]
    assert re.search(rf"conn={conn} op={op} RESULT tag=97 err=49 ", log), log


# -------------------------------------------------------------- injection
HOSTILE = ["*", "(", ")", "\\", ",", "=", "'", '"', "a" * 1024, "u000@example.org)(mail=*",
           "*)(|(mail=*", "u00*", "u000@example.org))(|(objectClass=*", "\\2a", "u000@example.org\\00x",
           "j\u00f6rg@example.org", "o'brien@example.org", 'dq"uote@example.org', "eq=ual,com,ma"]


def rfc4515(v: str) -> str:
    out = []
    for b in v.encode():
        c = chr(b)
        out.append(f"\\{b:02X}" if b < 0x20 or b >= 0x7F or c in "*()\\" else c)
    return "".join(out)


def test_injection_never_changes_the_filter(make_portier, dovecot, ldap):
    px = start(make_portier, passdb_toml(ldap, dovecot))
    mark = ldap.log_mark()
    for name in HOSTILE:
        r = imap_login(px, name, BACKEND_USERS["user1"])
        assert r.startswith(b"a NO [AUTHENTICATIONFAILED]"), (name, r)
    # Upper case is the same user (mail is case-insensitive): the right one.
    assert imap_login(px, "U000@EXAMPLE.ORG", BACKEND_USERS["user1"]).startswith(b"a OK")
    # NUL inside the user name (LOGIN mechanism): a clean failure, no search.
    with RawIMAP(px.port("imap")) as c:
        c.send("n AUTHENTICATE LOGIN\r\n")
        assert c.readline().startswith(b"+ ")
        c.send(b64("u000@example.org\0)(mail=*") + "\r\n")
        r = c.readline()
        if r.startswith(b"+ "):
            c.send(b64(BACKEND_USERS["user1"]) + "\r\n")
            r = c.readline()
        assert r.startswith((b"n NO", b"n BAD")), r
    assert imap_login(px, "u000@example.org", BACKEND_USERS["user1"]).startswith(b"a OK")
    # slapd's own log: every filter it ran is the template with one escaped value.
    # (slapd logs the assertion value normalised, so compare case-insensitively;
    # "(?mail=" marks a value invalid for mail's IA5 syntax: undefined, no match)
    expected = {f"(&(objectClass=inetOrgPerson)(mail={rfc4515(n)}))".lower()
                for n in HOSTILE + ["U000@EXAMPLE.ORG", "u000@example.org"]}
    ran = [f.lower().replace("(?mail=", "(mail=") for f in ldap.filters(mark)]
    assert ran, "no searches logged"
    for f in ran:
        assert f in expected, f"unexpected filter: {f!r}"
    for n in HOSTILE:
        assert f"(&(objectClass=inetOrgPerson)(mail={rfc4515(n)}))".lower() in ran, n


# ------------------------------------------------------------------ faults
def test_stopped_slapd_hangs_then_times_out_and_worker_stays_fast(make_portier, dovecot, ldap):
    px = start(make_portier, passdb_toml(ldap, dovecot), timeout="1500ms")
    mail, dest = user(0)
    frozen_server_times_out(px, ldap, mail, BACKEND_USERS[dest],
                            r"ldap\(u000@example\.org,.*(passdb lookup timed out after 1500 ms|ldap: )",
                            PF_USER, PF_PASS)


def test_slapd_restarted_recovers_without_restarting_portier(make_portier, dovecot, ldap):
    px = start(make_portier, passdb_toml(ldap, dovecot))
    mail, dest = user(0)
    assert imap_login(px, mail, BACKEND_USERS[dest]).startswith(b"a OK")
    ldap.stop(remove=False)
    try:
        for _ in range(3):   # dead pooled connection, then refused connects: all fast
            t0 = time.monotonic()
            r = imap_login(px, mail, BACKEND_USERS[dest])
            assert r.startswith(b"a NO [UNAVAILABLE]"), r
            assert time.monotonic() - t0 < 2, "a stopped server must fail fast"
        px.log.wait_for(r"ldap\(u000@example\.org,.*ldap: connect/bind")
        assert b"pf-user-ok" in imap_login(px, PF_USER, PF_PASS)
    finally:
        ldap.start()
    # The first login after the restart works: no backoff, no portier restart.
    assert imap_login(px, mail, BACKEND_USERS[dest]).startswith(b"a OK")
    imap_and_pop3(px, dovecot, mail, dest, BACKEND_USERS[dest])
    # A restart between two logins: the pooled connection is dead, the
    # lookup notices, reconnects and retries once - the client sees nothing.
    ldap.stop(remove=False)
    ldap.start()
    mark = ldap.log_mark()
    assert imap_login(px, mail, BACKEND_USERS[dest]).startswith(b"a OK")
    assert re.search(r'BIND dn="cn=portier,dc=example,dc=org" method=128', ldap.log_text(mark))


def test_several_uris_fail_over(make_portier, dovecot, ldap):
    dead = f"ldap://127.0.0.1:{closed_port()}"
    px = start(make_portier, passdb_toml(ldap, dovecot, uris=[dead, ldap.uri]))
    for i in (0, 1, 2):
        mail, dest = user(i)
        assert imap_login(px, mail, BACKEND_USERS[dest]).startswith(b"a OK"), mail


def test_base_template_escaped_per_rfc4514(make_portier, dovecot, ldap):
    """`base` built from the user name (scope base): the value is one RDN
    value whatever it holds; a base that does not exist is an unknown user."""
    toml = (f'[[passdb]]\ndriver = "ldap"\nuris = ["{ldap.uri}"]\nbind_dn = {toml_str(slapd_mod.SERVICE_DN)}\n'
            f"bind_password = {toml_str(ldap.service_password)}\n"
            f'base = "uid=%n,{slapd_mod.PEOPLE}"\nscope = "base"\nfilter = "(objectClass=inetOrgPerson)"\n'
            'fields = { password = "userPassword", host = "mailHost", port = "mailPort", proxy = "mailProxy", '
            'destuser = "mailDestUser" }\n')
    px = start(make_portier, toml)
    mark = ldap.log_mark()
    assert imap_login(px, "u000", BACKEND_USERS["user1"]).startswith(b"a OK")
    for name in ("u000,ou=people", "u000+cn=x", "#u000", 'u0"0;0<>\\'):
        r = imap_login(px, name, BACKEND_USERS["user1"])
        assert r.startswith(b"a NO [AUTHENTICATIONFAILED]"), (name, r)
    # An escaped leading space: the same entry (uid matching ignores
    # insignificant spaces, RFC 4518) - the right user, not another one.
    assert imap_login(px, " u000", BACKEND_USERS["user1"]).startswith(b"a OK")
    px.log.wait_for(r"ldap\(u000,ou=people,127\.0\.0\.1,<[^>]+>\): unknown user")
    bases = re.findall(r' SRCH base="([^"]*)" scope=0 ', ldap.log_text(mark))
    assert bases[0] == f"uid=u000,{slapd_mod.PEOPLE}", bases
    # Every other search stayed one RDN under ou=people (slapd shows the
    # escaped comma/plus as \2C / \2B): none of them named another entry.
    assert len(bases) == 6, bases
    for b in bases[1:]:
        assert b.endswith(f",{slapd_mod.PEOPLE}") and b.count(",") == 3, b
        assert "+" not in b.replace("\\2B", "").replace("\\+", ""), b


def test_reload_changes_filter_keeping_sessions(make_portier, dovecot, ldap):
    import signal
    px = start(make_portier, passdb_toml(ldap, dovecot))
    mail, dest = user(0)
    c = imaplib.IMAP4("127.0.0.1", px.port("imap"), timeout=10)
    c.login(mail, BACKEND_USERS[dest])
    # New filter: users are found by uid instead of mail.
    px.extra_toml = passdb_toml(ldap, dovecot, filter="(&(objectClass=inetOrgPerson)(uid=%{user}))")
    px.write_config()
    mark = px.log.mark()
    px.signal(signal.SIGHUP)
    px.log.wait_for(r"portier: Info: Config reloaded$", since=mark)
    assert imap_login(px, mail, BACKEND_USERS[dest]).startswith(b"a NO [AUTHENTICATIONFAILED]")
    assert imap_login(px, "u000", BACKEND_USERS[dest]).startswith(b"a OK")
    assert c.noop()[0] == "OK"   # the old session lives on
    c.logout()


def test_auth_cache_keeps_ldap_users_logging_in_while_slapd_is_down(make_portier, dovecot, ldap):
    """The auth cache covers LDAP too (key: the base and filter variables):
    a cached user logs in while slapd is stopped, without asking it (its log
    shows no search); auth_bind entries are never cached (the bind is the
    password check)."""
    toml = passdb_toml(ldap, dovecot) + '\n[auth.cache]\nsize = "1M"\nttl = "1h"\n'
    px = make_portier([User(PF_USER, PF_PASS, "nologin reason=pf-user-ok")], listeners=LISTENERS,
                      extra_toml=toml, settings={"server": {"workers": 1}})
    mail, dest = user(1)
    other, odest = user(2)
    assert imap_login(px, mail, BACKEND_USERS[dest]).startswith(b"a OK")
    mark = ldap.log_mark()
    assert imap_login(px, mail, BACKEND_USERS[dest]).startswith(b"a OK")
    assert "SRCH" not in ldap.log_text(mark), "a cached answer must not search again"
    ldap.stop(remove=False)
    try:
        assert imap_login(px, mail, BACKEND_USERS[dest]).startswith(b"a OK")
        assert imap_login(px, other, BACKEND_USERS[odest]).startswith(b"a NO [UNAVAILABLE]")
    finally:
        ldap.start()
    assert imap_login(px, other, BACKEND_USERS[odest]).startswith(b"a OK")
    # auth_bind: every login binds, cache or not
    px2 = make_portier([User(PF_USER, PF_PASS, "nologin reason=pf-user-ok")], listeners=LISTENERS,
                       extra_toml=passdb_toml(ldap, dovecot, auth_bind=True)
                       + '\n[auth.cache]\nsize = "1M"\nttl = "1h"\n',
                       settings={"server": {"workers": 1}})
    assert imap_login(px2, mail, BACKEND_USERS[dest]).startswith(b"a OK")
    mark = ldap.log_mark()
    assert imap_login(px2, mail, BACKEND_USERS[dest]).startswith(b"a OK")
    assert "SRCH" in ldap.log_text(mark)
