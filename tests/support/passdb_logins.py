"""Logins through portier routed by an external passdb (the LDAP and SQL
passdb tests): a SASL PLAIN login, IMAP + POP3 logins checked in the real
Dovecot backend's log, and the no-secrets-in-the-log check."""
from __future__ import annotations

import base64
import imaplib
import poplib
import threading
import time

from tests.support.accounts import BACKEND_USERS
from tests.support.imap_client import RawIMAP


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def imap_login(px, user: str, pw: str) -> bytes:
    """AUTHENTICATE PLAIN over portier's IMAP listener: the tagged reply."""
    with RawIMAP(px.port("imap")) as c:
        return c.command("a", f"AUTHENTICATE PLAIN {b64(chr(0) + user + chr(0) + pw)}")[-1]


def backend_login_re(service: str, dest: str) -> str:
    """Dovecot's log line for a login of `dest` proxied by portier."""
    return rf"{service}-login: Info: Login: user=<{dest}>, method=[A-Z-]+, rip=127\.0\.0\.1"


def imap_and_pop3(px, dovecot, user: str, dest: str, pw: str) -> None:
    """`user` logs in over IMAP and POP3; Dovecot sees `dest` each time."""
    mark = dovecot.log_mark()
    c = imaplib.IMAP4("127.0.0.1", px.port("imap"), timeout=10)
    c.authenticate("PLAIN", lambda _: f"\0{user}\0{pw}".encode())
    c.noop()
    c.logout()
    dovecot.wait_for_log(backend_login_re("imap", dest), since=mark)
    mark = dovecot.log_mark()
    p = poplib.POP3("127.0.0.1", px.port("pop3"), timeout=10)
    p.user(user)
    p.pass_(pw)
    p.stat()
    p.quit()
    dovecot.wait_for_log(backend_login_re("pop3", dest), since=mark)


def no_secrets(px, service_password: str) -> None:
    """Neither the passdb's own password nor any user's is in portier's log."""
    text = px.log.text()
    for secret in [service_password, *BACKEND_USERS.values()]:
        assert secret not in text, f"secret {secret!r} in portier's log"


def frozen_server_times_out(px, server, user: str, pw: str, timeout_log_re: str,
                            pf_user: str, pf_pass: str) -> None:
    """The passdb's server frozen (SIGSTOP: `server.freeze()`/`resume()`),
    with [auth] passdb_timeout = 1500ms and one worker: six logins of `user`
    (more than the connection pool) fail with [UNAVAILABLE] within the
    timeout while passwd-file logins (`pf_user`, a nologin entry answering
    "pf-user-ok") on the same worker keep their latency; after SIGCONT
    `user` logs in again."""
    assert imap_login(px, user, pw).startswith(b"a OK")   # pool warm
    server.freeze()
    try:
        results: list[tuple[bytes, float]] = []

        def frozen_login():
            t = time.monotonic()
            r = imap_login(px, user, pw)
            results.append((r, time.monotonic() - t))

        threads = [threading.Thread(target=frozen_login) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        lat = []
        for _ in range(10):
            t0 = time.monotonic()
            assert b"pf-user-ok" in imap_login(px, pf_user, pf_pass)
            lat.append(time.monotonic() - t0)
        for t in threads:
            t.join(10)
        assert max(lat) < 0.25, lat
        assert len(results) == 6
        for r, took in results:
            assert r.startswith(b"a NO [UNAVAILABLE]"), r
            assert took < 1.5 + 1.0, took
        px.log.wait_for(timeout_log_re)
    finally:
        server.resume()
    deadline = time.monotonic() + 15
    while not imap_login(px, user, pw).startswith(b"a OK"):
        assert time.monotonic() < deadline, "no recovery after SIGCONT"
        time.sleep(0.2)
