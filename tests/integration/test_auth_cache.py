"""The auth cache ([auth.cache], issue 10) in front of the real PostgreSQL
passdb (the private cluster and 1 000 users of test_passdb_sql.py) routing to
the real Dovecot backend:

- cached users keep logging in while the database is stopped (an expired
  entry is served on the internal failure), users never seen get the
  temporary failure, and everyone recovers after a restart without
  restarting portier;
- a password changed in the database takes effect at once for a user whose
  last login succeeded (the mismatch re-asks the database);
- the cache answers without the database until SIGUSR2 flushes it;
- SIGHUP with a changed query applies to new logins despite cached entries
  (the key includes the passdb's identity), without dropping a session;
- and the static driver's `fields` with %variables, to Dovecot.
Each test uses its own users and puts back what it changed in the database.
"""
from __future__ import annotations

import imaplib
import signal
import time

import pytest

from tests.integration.test_passdb_sql import (LISTENERS, PF_PASS, PF_USER, QUERY, imap_login,
                                               no_secrets, passdb_toml, pg, user_row)
from tests.support import postgres
from tests.support.accounts import BACKEND_USERS
from tests.support.portier import User

pytestmark = pytest.mark.skipif(not postgres.available(), reason="PostgreSQL 15 not installed")

__all__ = ["pg"]   # the module-scoped PostgreSQL fixture, shared with this module

def start(make_portier, pg, *, ttl: str = "1h", query: str = QUERY):
    return make_portier([User(PF_USER, PF_PASS, "nologin reason=pf-user-ok")],
                        listeners=LISTENERS, extra_toml=passdb_toml("pgsql", pg.conninfo(), query),
                        settings={"server": {"workers": 1}, "auth": {"passdb_timeout": "5s"},
                                  "auth.cache": {"size": "1M", "ttl": ttl, "negative_ttl": "1h"}})

def test_cached_users_log_in_while_the_database_is_down(make_portier, dovecot, pg):
    px = start(make_portier, pg, ttl="1s")
    cached, other = user_row(0), user_row(3)
    assert imap_login(px, cached[0], BACKEND_USERS[cached[3]]).startswith(b"a OK")
    pg.pg_ctl("stop", "-m", "fast", "-w")
    try:
        time.sleep(1.2)   # the TTL passes: the entry is expired, only the stale path can serve it
        for _ in range(2):
            mark = dovecot.log_mark()
            r = imap_login(px, cached[0], BACKEND_USERS[cached[3]])
            assert r.startswith(b"a OK"), r
            dovecot.wait_for_log(rf"imap-login: Info: Login: user=<{cached[3]}>", since=mark)
        # Still checked against the cached password.
        assert imap_login(px, cached[0], "wrong").startswith(b"a NO [AUTHENTICATIONFAILED]")
        r = imap_login(px, other[0], BACKEND_USERS[other[3]])
        assert r.startswith(b"a NO [UNAVAILABLE]"), r
    finally:
        pg.pg_ctl("start", "-w", "-l", str(pg.log_path))
    deadline = time.monotonic() + 15
    while True:   # reconnect backoff is at most 5 s
        r = imap_login(px, other[0], BACKEND_USERS[other[3]])
        if r.startswith(b"a OK"):
            break
        assert time.monotonic() < deadline, f"no recovery: {r!r}"
        time.sleep(0.3)
    no_secrets(px, pg.password)

def test_password_changed_in_the_database_takes_effect(make_portier, dovecot, pg):
    px = start(make_portier, pg)
    email, _, _, dest, _, _ = user_row(1)
    assert dest == "user2"
    assert imap_login(px, email, BACKEND_USERS["user2"]).startswith(b"a OK")
    # The user moves to backend account user3, with user3's password.
    pg.psql(f"UPDATE users SET password = '{{PLAIN}}{BACKEND_USERS['user3']}', destuser = 'user3' "
            f"WHERE email = '{email}'", user=pg.user)
    try:
        # The old password still matches the cached entry (Dovecot: until the TTL).
        assert imap_login(px, email, BACKEND_USERS["user2"]).startswith(b"a OK")
        # The new one mismatches after a good login: the database is asked again.
        mark = dovecot.log_mark()
        r = imap_login(px, email, BACKEND_USERS["user3"])
        assert r.startswith(b"a OK"), r
        dovecot.wait_for_log(r"imap-login: Info: Login: user=<user3>", since=mark)
        # ... and the refreshed entry is what the next login uses.
        assert imap_login(px, email, BACKEND_USERS["user3"]).startswith(b"a OK")
    finally:
        pg.psql(f"UPDATE users SET password = '{{PLAIN}}{BACKEND_USERS['user2']}', destuser = 'user2' "
                f"WHERE email = '{email}'", user=pg.user)

def test_cache_answers_until_sigusr2_flushes_it(make_portier, dovecot, pg):
    px = start(make_portier, pg)
    email, pw = user_row(2)[0], BACKEND_USERS[user_row(2)[3]]
    assert imap_login(px, email, pw).startswith(b"a OK")
    pg.psql(f"UPDATE users SET disabled = true, reason = 'flushed-now' WHERE email = '{email}'", user=pg.user)
    try:
        r = imap_login(px, email, pw)
        assert r.startswith(b"a OK"), r   # the cached entry still routes
        mark = px.log.mark()
        px.signal(signal.SIGUSR2)
        px.log.wait_for(r"portier: Info: Auth cache flushed: [1-9]\d* entries removed$", since=mark)
        r = imap_login(px, email, pw)
        assert r.startswith(b"a NO") and b"flushed-now" in r, r
    finally:
        pg.psql(f"UPDATE users SET disabled = false, reason = NULL WHERE email = '{email}'", user=pg.user)

def test_reload_with_a_changed_query_bypasses_old_entries(make_portier, dovecot, pg):
    px = start(make_portier, pg)
    email, pw = user_row(4)[0], BACKEND_USERS[user_row(4)[3]]
    assert imap_login(px, email, pw).startswith(b"a OK")
    c = imaplib.IMAP4("127.0.0.1", px.port("imap"), timeout=10)
    c.login(email, pw)
    q2 = (QUERY.replace("CASE WHEN u.backend_id IS NOT NULL AND NOT u.disabled THEN 'Y' END AS proxy",
                        "NULL AS proxy")
          .replace("u.reason,", "'reloaded' AS reason,")
          .replace("CASE WHEN u.disabled THEN 'Y' END AS nologin", "'Y' AS nologin"))
    px.extra_toml = passdb_toml("pgsql", pg.conninfo(application_name="portier-reloaded"), q2)
    px.write_config()
    mark = px.log.mark()
    px.signal(signal.SIGHUP)
    px.log.wait_for(r"portier: Info: Config reloaded$", since=mark)
    r = imap_login(px, email, pw)
    assert r.startswith(b"a NO") and b"reloaded" in r, r
    assert c.noop()[0] == "OK"   # the relaying session lives on
    c.logout()


def test_static_fields_expand_variables(make_portier, dovecot):
    """The static driver's `fields` with %variables (2.4 and 2.3 forms): the
    domain part picks the backend host and the user part the backend account."""
    px = make_portier([], listeners=LISTENERS,
                      extra_toml=("[[passdb]]\ndriver = \"static\"\n"
                                  "fields = \"proxy host=%{user | domain} "
                                  f"port={dovecot.ports['imap']} destuser=%n nopassword\"\n"))
    mark = dovecot.log_mark()
    r = imap_login(px, "user3@127.0.0.1", BACKEND_USERS["user3"])
    assert r.startswith(b"a OK"), r
    dovecot.wait_for_log(r"imap-login: Info: Login: user=<user3>", since=mark)
    # Another domain: another host (nothing listens on 127.0.0.2 at that port).
    assert imap_login(px, "user3@127.0.0.2", BACKEND_USERS["user3"]).startswith(b"a NO")
