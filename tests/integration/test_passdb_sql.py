"""SQL passdbs (issue 10, SQL part): sqlite and pgsql drivers against a real
private PostgreSQL 15 cluster (tests/support/postgres.py) and a SQLite file
holding the same 1 000 users, routing logins to the real Dovecot backend.

Users u0000..u0999@example.org: destuser user1/user2/user3 (password = that
backend user's), backend 1 (plain) or 2 (STARTTLS to the backend), every
10th (i % 10 == 9) without a backend (proxy NULL -> not proxied), every
10th (i % 10 == 5) disabled (nologin + reason, proxy NULL: Dovecot proxies when
proxy is set, whatever nologin says). `dup@example.org` has two
rows. The query is the fleet shape of ops-reference.md §2.3 with the port
chosen by %{protocol}.
"""
from __future__ import annotations

import imaplib
import os
import re
import signal
import smtplib
import socket
import sqlite3
import threading
import time

import pytest

from tests.support import postgres
from tests.support.accounts import BACKEND_USERS
from tests.support.imap_client import RawIMAP
from tests.support.passdb_logins import (b64, backend_login_re, frozen_server_times_out, imap_and_pop3,
                                         imap_login, no_secrets)
from tests.support.portier import Listener, User, proxy

pytestmark = pytest.mark.skipif(not postgres.available(), reason="PostgreSQL 15 not installed")

DESTS = ("user1", "user2", "user3")
N_USERS = 1000
LISTENERS = (Listener("imap", "none"), Listener("pop3", "none"), Listener("submission", "none"),
             Listener("managesieve", "none"))

QUERY = ("SELECT u.password, CASE WHEN u.backend_id IS NOT NULL AND NOT u.disabled THEN 'Y' END AS proxy, "
         "b.host, "
         "CASE '%{protocol}' WHEN 'imap' THEN b.imap_port WHEN 'pop3' THEN b.pop3_port "
         "WHEN 'submission' THEN b.submission_port ELSE b.sieve_port END AS port, u.destuser, "
         "CASE WHEN b.tls THEN 'yes' END AS starttls, CASE WHEN u.disabled THEN 'Y' END AS nologin, "
         "u.reason, u.email AS userdb_email "
         "FROM users u LEFT JOIN backends b ON b.id = u.backend_id WHERE u.email = '%u'")

# A passwd-file user on the same worker, first in the chain: found, password
# right, `nologin` -> refused at once with its reason (no backend involved).
PF_USER, PF_PASS = "pf-user", "pf-Pass-x8Kq"


def user_row(i: int):
    dest = DESTS[i % 3]
    backend = None if i % 10 == 9 else (2 if i % 4 == 1 else 1)
    disabled = i % 10 == 5
    return (f"u{i:04d}@example.org", "{PLAIN}" + BACKEND_USERS[dest], backend, dest, disabled,
            "moved to imap2.example.org" if disabled else None)


def rows(dovecot):
    p = dovecot.ports
    backends = [(1, "127.0.0.1", p["imap"], p["pop3"], p["submission"], p["sieve"], False),
                (2, "127.0.0.1", p["imap"], p["pop3"], p["submission"], p["sieve"], True)]
    users = [user_row(i) for i in range(N_USERS)]
    users += [("dup@example.org", "{PLAIN}x", 1, "user1", False, None)] * 2
    return backends, users


SCHEMA = ("CREATE TABLE backends (id int PRIMARY KEY, host text NOT NULL, imap_port int, pop3_port int, "
          "submission_port int, sieve_port int, tls boolean NOT NULL);\n"
          "CREATE TABLE users (email text NOT NULL, password text, backend_id int, destuser text, "
          "disabled boolean NOT NULL, reason text);\n")


def sql_literal(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


@pytest.fixture(scope="module")
def pg(dovecot):
    db = postgres.Postgres()
    try:
        db.start()
        db.create_db()
        backends, users = rows(dovecot)
        sql = [SCHEMA.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS")]
        sql += ["INSERT INTO backends VALUES (" + ", ".join(map(sql_literal, b)) + ");" for b in backends]
        sql += ["INSERT INTO users VALUES " + ",\n".join(
            "(" + ", ".join(map(sql_literal, u)) + ")" for u in users) + ";"]
        db.psql("\n".join(sql), user=db.user)
        yield db
    finally:
        db.stop()


@pytest.fixture(scope="module")
def sqlite_db(dovecot, tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlite") / "users.db"
    backends, users = rows(dovecot)
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.executemany("INSERT INTO backends VALUES (?,?,?,?,?,?,?)", backends)
    con.executemany("INSERT INTO users VALUES (?,?,?,?,?,?)", users)
    con.commit()
    con.close()
    return path


def passdb_toml(driver: str, connect: str, query: str = QUERY) -> str:
    esc = lambda s: s.replace("\\", "\\\\").replace('"', '\\"')
    return f'[[passdb]]\ndriver = "{driver}"\nconnect = "{esc(connect)}"\nquery = "{esc(query)}"\n'


def start(make_portier, driver_toml: str, timeout: str = "10s"):
    return make_portier([User(PF_USER, PF_PASS, "nologin reason=pf-user-ok")],
                        listeners=LISTENERS, extra_toml=driver_toml,
                        settings={"server": {"workers": 1}, "auth": {"passdb_timeout": timeout}})


# --------------------------------------------------------------- routing
def login_all_protocols(px, dovecot, user: str, dest: str, pw: str) -> None:
    imap_and_pop3(px, dovecot, user, dest, pw)
    mark = dovecot.log_mark()
    s = smtplib.SMTP("127.0.0.1", px.port("submission"), timeout=10)
    s.ehlo("client.test")
    s.login(user, pw)
    s.noop()
    s.quit()
    dovecot.wait_for_log(backend_login_re("submission", dest), since=mark)

    mark = dovecot.log_mark()
    with socket.create_connection(("127.0.0.1", px.port("managesieve")), 10) as so:
        f = so.makefile("rwb")
        while not f.readline().startswith(b"OK"):
            pass
        f.write(f'AUTHENTICATE "PLAIN" "{b64(chr(0) + user + chr(0) + pw)}"\r\n'.encode())
        f.flush()
        line = f.readline()
        while not re.match(rb"(OK|NO|BYE)", line):
            line = f.readline()
        assert line.startswith(b"OK"), f"managesieve login refused: {line!r}"
        f.write(b"LOGOUT\r\n")
        f.flush()
    dovecot.wait_for_log(backend_login_re("managesieve", dest), since=mark)


def test_pgsql_routes_all_four_protocols(make_portier, dovecot, pg):
    px = start(make_portier, passdb_toml("pgsql", pg.conninfo()))
    for i in (0, 1):   # backend 1 (plain) and backend 2 (STARTTLS to the backend)
        dest = user_row(i)[3]
        login_all_protocols(px, dovecot, user_row(i)[0], dest, BACKEND_USERS[dest])
    # The database saw the expanded query, %{protocol} per protocol.
    stmts = pg.log_text()
    for proto in ("imap", "pop3", "submission", "sieve"):
        assert QUERY.replace("%{protocol}", proto).replace("%u", "u0000@example.org") in stmts, proto
    no_secrets(px, pg.password)


@pytest.mark.parametrize("driver", ["sqlite", "pgsql"])
def test_field_combinations(make_portier, dovecot, pg, sqlite_db, driver):
    connect = str(sqlite_db) if driver == "sqlite" else pg.conninfo()
    px = start(make_portier, passdb_toml(driver, connect))
    # proxied, plain backend / STARTTLS backend (IMAP)
    for i in (3, 13, 21):
        u = user_row(i)
        mark = dovecot.log_mark()
        assert imap_login(px, u[0], BACKEND_USERS[u[3]]).startswith(b"a OK"), u
        dovecot.wait_for_log(backend_login_re("imap", u[3]), since=mark)
    # nologin + reason: refused with the reason, nothing reaches the backend
    u = user_row(5)
    r = imap_login(px, u[0], BACKEND_USERS[u[3]])
    assert r.startswith(b"a NO") and b"moved to imap2.example.org" in r, r
    # NULL proxy: not proxied -> temporary failure (portier only proxies)
    u = user_row(9)
    assert imap_login(px, u[0], BACKEND_USERS[u[3]]).startswith(b"a NO [UNAVAILABLE]")
    # wrong password, unknown user: authentication failure; the log names `sql`
    u = user_row(3)
    assert imap_login(px, u[0], "wrong-password").startswith(b"a NO [AUTHENTICATIONFAILED]")
    px.log.wait_for(r"sql\(u0003@example\.org,127\.0\.0\.1,<[^>]+>\): Password mismatch")
    assert imap_login(px, "nobody@example.org", "x").startswith(b"a NO [AUTHENTICATIONFAILED]")
    px.log.wait_for(r"sql\(nobody@example\.org,127\.0\.0\.1,<[^>]+>\): unknown user")
    # two rows: internal failure, logged
    assert imap_login(px, "dup@example.org", "x").startswith(b"a NO [UNAVAILABLE]")
    px.log.wait_for(r"sql\(dup@example\.org,.*Password query returned multiple matches")
    # the passwd-file passdb first in the chain still answers its users
    assert b"pf-user-ok" in imap_login(px, PF_USER, PF_PASS)
    no_secrets(px, pg.password)


# ------------------------------------------------------------- injection
HOSTILE = ["o'brien@example.org", "x' OR '1'='1", 'dq"uote', "back\\slash'", "pct%u%%", "st*r",
           "(paren)", "com,ma", "eq=ual", "cr\rlf\nx", "' ; DROP TABLE users; --", "a" * 1024,
           "u0000@example.org' --", "\\' OR 1=1 --"]


def test_pgsql_injection_never_changes_the_query(make_portier, dovecot, pg):
    px = start(make_portier, passdb_toml("pgsql", pg.conninfo()))
    mark = pg.log_mark()
    for name in HOSTILE:
        r = imap_login(px, name, BACKEND_USERS["user1"])
        assert r.startswith(b"a NO"), (name, r)
    # NUL inside the user name (LOGIN mechanism): a clean failure, no query.
    with RawIMAP(px.port("imap")) as c:
        c.send("n AUTHENTICATE LOGIN\r\n")
        assert c.readline().startswith(b"+ ")
        c.send(b64("u0000@example.org\0' OR 1=1 --") + "\r\n")
        r = c.readline()
        if r.startswith(b"+ "):   # refused at the password step, or right away
            c.send(b64(BACKEND_USERS["user1"]) + "\r\n")
            r = c.readline()
        assert r.startswith((b"n NO", b"n BAD")), r
    # Table still there, right user still works.
    assert imap_login(px, "u0000@example.org", BACKEND_USERS["user1"]).startswith(b"a OK")
    text = pg.log_text(mark).replace("\n\t", "\n")   # the log indents continuation lines
    expected = {QUERY.replace("%{protocol}", "imap").replace("%u", n.replace("'", "''"))
                for n in HOSTILE + ["u0000@example.org"]}
    executed = re.findall(r"LOG:  statement: (SELECT u\.password.*?WHERE u\.email = '(?:[^']|'')*')",
                          text, re.S)
    assert executed, "no statements logged"
    for s in executed:
        assert s in expected, f"unexpected statement: {s!r}"
    for n in HOSTILE:
        if len(n) < 1000:
            assert QUERY.replace("%{protocol}", "imap").replace("%u", n.replace("'", "''")) in text, n


# ---------------------------------------------------------------- faults
def test_pgsql_stopped_then_recovers(make_portier, dovecot, pg):
    px = start(make_portier, passdb_toml("pgsql", pg.conninfo()))
    u = user_row(0)
    assert imap_login(px, u[0], BACKEND_USERS["user1"]).startswith(b"a OK")
    pg.pg_ctl("stop", "-m", "fast", "-w")
    try:
        for _ in range(3):   # dead pooled connection, refused connect, then backoff: all fast
            t0 = time.monotonic()
            r = imap_login(px, u[0], BACKEND_USERS["user1"])
            assert r.startswith(b"a NO [UNAVAILABLE]"), r
            assert time.monotonic() - t0 < 2, "a stopped database must fail fast"
        px.log.wait_for(r"sql\(u0000@example\.org,.*pgsql: ")
        # passwd-file users are unaffected
        assert b"pf-user-ok" in imap_login(px, PF_USER, PF_PASS)
    finally:
        pg.pg_ctl("start", "-w", "-l", str(pg.log_path))
    deadline = time.monotonic() + 15
    while True:   # reconnect backoff is at most 5 s
        r = imap_login(px, u[0], BACKEND_USERS["user1"])
        if r.startswith(b"a OK"):
            break
        assert time.monotonic() < deadline, f"no recovery: {r!r}"
        time.sleep(0.3)


def test_pgsql_hanging_times_out_and_worker_stays_fast(make_portier, dovecot, pg):
    px = start(make_portier, passdb_toml("pgsql", pg.conninfo()), timeout="1500ms")
    u = user_row(0)
    frozen_server_times_out(px, pg, u[0], BACKEND_USERS["user1"],
                            r"sql\(u0000@example\.org,.*passdb lookup timed out after 1500 ms", PF_USER, PF_PASS)


# ---------------------------------------------------------------- reload
def test_reload_changes_query_and_connect_keeping_sessions(make_portier, dovecot, pg, sqlite_db):
    px = start(make_portier, passdb_toml("pgsql", pg.conninfo()))
    u = user_row(0)
    c = imaplib.IMAP4("127.0.0.1", px.port("imap"), timeout=10)
    c.login(u[0], BACKEND_USERS["user1"])
    # New query: everyone is disabled with a reason; new connect string too.
    q2 = (QUERY.replace("CASE WHEN u.backend_id IS NOT NULL AND NOT u.disabled THEN 'Y' END AS proxy",
                        "NULL AS proxy")
          .replace("u.reason,", "'reloaded' AS reason,")
          .replace("CASE WHEN u.disabled THEN 'Y' END AS nologin", "'Y' AS nologin"))
    assert q2.count("reloaded") == 1 and "NULL AS proxy" in q2 and "'Y' AS nologin" in q2
    px.extra_toml = passdb_toml("pgsql", pg.conninfo(application_name="portier-reloaded"), q2)
    px.write_config()
    mark = px.log.mark()
    px.signal(signal.SIGHUP)
    px.log.wait_for(r"portier: Info: Config reloaded$", since=mark)
    r = imap_login(px, u[0], BACKEND_USERS["user1"])
    assert r.startswith(b"a NO") and b"reloaded" in r, r
    assert c.noop()[0] == "OK"   # the old session lives on
    c.logout()
    # And to the SQLite file: the same users log in again.
    px.extra_toml = passdb_toml("sqlite", str(sqlite_db))
    px.write_config()
    mark = px.log.mark()
    px.signal(signal.SIGHUP)
    px.log.wait_for(r"portier: Info: Config reloaded$", since=mark)
    assert imap_login(px, u[0], BACKEND_USERS["user1"]).startswith(b"a OK")


def test_bad_query_variable_is_a_config_error_with_line(make_portier, pg, tmp_path):
    import subprocess
    from tests.support.portier import portier_bin
    conf = tmp_path / "bad.toml"
    conf.write_text('[[listener]]\nprotocol = "imap"\nport = 0\n\n[[passdb]]\ndriver = "pgsql"\n'
                    f'connect = "{pg.conninfo()}"\nquery = "SELECT password FROM u WHERE e = \'%{{usr}}\'"\n')
    r = subprocess.run([str(portier_bin()), "-c", str(conf), "--check"], capture_output=True, text=True)
    assert r.returncode != 0
    assert re.search(r"bad\.toml:8:\d+: passdb\.query: unknown variable '%\{usr\}'", r.stderr), r.stderr
    assert pg.password not in r.stderr + r.stdout


# A query that sleeps in the database (once, in a one-row subquery) for user
# names starting with "slow" (`%%` is a literal '%').
SLEEPY = QUERY.replace(" FROM users u", " FROM (SELECT pg_sleep(CASE WHEN '%u' LIKE 'slow%%' THEN 30 "
                       "ELSE 0 END)) AS s, users u")


def test_pgsql_pg_sleep_times_out_and_broken_query_fails_fast(make_portier, dovecot, pg):
    px = start(make_portier, passdb_toml("pgsql", pg.conninfo(), SLEEPY), timeout="1s")
    u = user_row(0)
    assert imap_login(px, u[0], BACKEND_USERS["user1"]).startswith(b"a OK")
    t0 = time.monotonic()
    r = imap_login(px, "slow1@example.org", "x")
    took = time.monotonic() - t0
    assert r.startswith(b"a NO [UNAVAILABLE]"), r
    assert 0.9 < took < 2.0, took
    px.log.wait_for(r"sql\(slow1@example\.org,.*passdb lookup timed out after 1000 ms")
    pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE '%pg_sleep(CASE%' AND pid <> pg_backend_pid();")

    # A connection killed in the middle of a query: a temporary failure at
    # once, not at the timeout.
    px2 = start(make_portier, passdb_toml("pgsql", pg.conninfo(), SLEEPY), timeout="20s")
    out: list[tuple[bytes, float]] = []

    def slow_login():
        t = time.monotonic()
        out.append((imap_login(px2, "slow2@example.org", "x"), time.monotonic() - t))

    th = threading.Thread(target=slow_login)
    th.start()
    deadline = time.monotonic() + 10
    while "1" not in pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%slow2@%' "
                             "AND pid <> pg_backend_pid();"):
        assert time.monotonic() < deadline, "the sleeping query never showed up"
        time.sleep(0.05)
    killed_at = time.monotonic()
    pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%slow2@%' "
            "AND pid <> pg_backend_pid();")
    th.join(10)
    assert out and out[0][0].startswith(b"a NO [UNAVAILABLE]"), out
    assert time.monotonic() - killed_at < 3, "broken connection not noticed"
    px2.log.wait_for(r"sql\(slow2@example\.org,.*pgsql: ")
    # The pool recovers: the next login gets a fresh connection.
    assert imap_login(px2, u[0], BACKEND_USERS["user1"]).startswith(b"a OK")


def test_pgsql_multi_host_failover(make_portier, dovecot, pg):
    """Several hosts in the conninfo: libpq moves to the next one inside
    PQconnectPoll (a new socket); the first host here refuses."""
    from tests.support.util import closed_port
    conn = pg.conninfo(host="127.0.0.1,127.0.0.1", port=f"{closed_port()},{pg.port}")
    px = start(make_portier, passdb_toml("pgsql", conn))
    for i in (0, 1, 2):
        u = user_row(i)
        assert imap_login(px, u[0], BACKEND_USERS[u[3]]).startswith(b"a OK"), u
