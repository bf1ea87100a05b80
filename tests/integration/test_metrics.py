"""Prometheus metrics (issue 11) through the admin listener's GET /metrics:
a scripted mix of logins against the real Dovecot backend — a success over
plain IMAP and one over implicit TLS, a wrong password, an unknown user, a
backend that refuses the login (failure type x proxy state) and a backend
that is down (retried, then failed) — moves every counter by exactly the
expected amount, and the whole output passes `promtool check metrics`.

Scraped through the admin HTTP listener ([admin] listen + api_key), as an
operator's Prometheus does.
"""
from __future__ import annotations

import signal
import time

from tests.support.accounts import BACKEND_USERS
from tests.support.imap_client import RawIMAP
from tests.support.metrics import ADMIN, admin_port, parse, promtool, scrape, wait_metrics
from tests.support.portier import Listener, User, proxy
from tests.support.util import free_port

P1 = BACKEND_USERS["user1"]
LISTENERS = [Listener("imap", "none"), Listener("imap", "implicit")]


def login(port: int, user: str, pw: str, *, tls: bool = False, ca=None) -> bytes:
    with RawIMAP(port, tls=tls, ca=ca) as c:
        last = c.command("a", f"LOGIN {user} {pw}")[-1]
        if last.startswith(b"a OK"):
            c.command("b", "LOGOUT")
        return last


def test_counters_move_by_exact_amounts(make_portier, dovecot, certs, tmp_path):
    closed = free_port()   # nothing listens there: the backend is down
    users = [User("user1", P1, proxy(dovecot.ports["imap"])),
             # portier accepts any password; Dovecot does not know the user
             User("ghost", None, proxy(dovecot.ports["imap"], nopassword=True)),
             User("down", None, proxy(closed, nopassword=True))]
    p = make_portier(users, listeners=LISTENERS,
                     settings={**ADMIN, "login": {"proxy_max_reconnects": 1}})
    admin = admin_port(p)
    plain, tls = p.port("imap", "none"), p.port("imap", "implicit")
    lp, lt = f'protocol="imap",listener="127.0.0.1:{plain}"', f'protocol="imap",listener="127.0.0.1:{tls}"'

    before = parse(scrape(admin))
    assert login(plain, "user1", P1).startswith(b"a OK")
    assert login(tls, "user1", P1, tls=True, ca=certs.ca).startswith(b"a OK")
    assert login(plain, "user1", "wrong-Pw-1").startswith(b"a NO")
    assert login(plain, "nobody", "x-Pw-2").startswith(b"a NO")
    assert login(plain, "ghost", "ghost-Pw-3").startswith(b"a NO")
    assert login(plain, "down", "down-Pw-4").startswith(b"a NO")
    after = wait_metrics(admin, lambda v: v.get(f"portier_connections_current{{{lp}}}") == 0
                         and v.get(f"portier_connections_current{{{lt}}}") == 0
                         and v.get(f"portier_proxy_sessions_active{{{lp}}}") == 0
                         and v.get(f"portier_proxy_sessions_active{{{lt}}}") == 0)

    def d(series: str) -> float:
        return after.get(series, 0) - before.get(series, 0)

    # connections and sessions by protocol and listener
    assert d(f"portier_connections_total{{{lp}}}") == 5
    assert d(f"portier_connections_total{{{lt}}}") == 1
    assert after[f"portier_connections_current{{{lp}}}"] == 0
    assert d(f"portier_proxy_sessions_established_total{{{lp}}}") == 1
    assert d(f"portier_proxy_sessions_established_total{{{lt}}}") == 1
    ended = sum(d(f'portier_proxy_sessions_finished_total{{{lp},disconnect_side="{s}"}}')
                for s in ("client", "server", "proxy"))
    assert ended == 1
    assert d(f'portier_proxy_bytes_total{{{lp},direction="in"}}') == len(b"b LOGOUT\r\n")
    assert d(f'portier_proxy_bytes_total{{{lp},direction="out"}}') > 0
    # logins by result: exactly one result per attempt
    res = {r: d(f'portier_logins_total{{protocol="imap",result="{r}"}}')
           for r in ("success", "password_mismatch", "user_unknown", "backend_failed",
                     "aborted", "passdb_tempfail", "config_error")}
    assert res == {"success": 2, "password_mismatch": 1, "user_unknown": 1, "backend_failed": 2,
                   "aborted": 0, "passdb_tempfail": 0, "config_error": 0}, res
    # backend failures by type x proxy state
    fails = {k: after[k] - before.get(k, 0) for k in after
             if k.startswith("portier_backend_login_failures_total{") and after[k] != before.get(k, 0)}
    assert fails == {
        'portier_backend_login_failures_total{protocol="imap",type="auth-replied",state="login/id"}': 1,
        'portier_backend_login_failures_total{protocol="imap",type="connect",state=""}': 1,
    }, fails
    assert d('portier_backend_login_retries_total{protocol="imap"}') == 1
    # passdb: user1 x3 (two ok, one mismatch), nobody, ghost, down
    pr = {r: d(f'portier_passdb_requests_total{{passdb="passwd-file",result="{r}"}}')
          for r in ("ok", "password_mismatch", "user_unknown", "internal_failure")}
    assert pr == {"ok": 4, "password_mismatch": 1, "user_unknown": 1, "internal_failure": 0}, pr
    assert d('portier_passdb_request_duration_seconds_count{passdb="passwd-file"}') == 6
    # latency histograms: one observation per successful login
    assert d('portier_login_duration_seconds_count{protocol="imap"}') == 2
    assert d('portier_login_duration_seconds_bucket{protocol="imap",le="+Inf"}') == 2
    assert d('portier_proxy_login_duration_seconds_count{protocol="imap"}') == 2
    # TLS: the implicit-TLS client handshake
    assert d('portier_tls_handshakes_total{protocol="imap",leg="client",result="ok"}') == 1
    assert d('portier_tls_handshakes_total{protocol="imap",leg="client",result="failed"}') == 0
    # process facts and build info
    assert after["process_open_fds"] > 0 and after["process_resident_memory_bytes"] > 0
    assert abs(after["process_start_time_seconds"] - time.time()) < 600
    assert any(k.startswith("portier_build_info{") for k in after)
    # no label carries a user name or a client address
    text = scrape(admin)
    for secret in ("user1", "ghost", "nobody", P1, "127.0.0.1\""):
        assert secret not in text, secret
    promtool(text, tmp_path)


def test_limits_penalties_and_reloads(make_portier, dovecot, tmp_path):
    users = [User("user1", P1, proxy(dovecot.ports["imap"]))]
    p = make_portier(users, listeners=[Listener("imap", "none")],
                     settings={**ADMIN, "login": {"max_connections_per_ip": 1},
                               "auth": {"failure_delay": "50ms"}})
    admin = admin_port(p)
    port = p.port("imap", "none")
    before = parse(scrape(admin))
    with RawIMAP(port) as c:
        # a second connection from the same address is refused by the limit
        with RawIMAP(port) as c2:
            c2.read_until_closed(5)
        assert c.command("a", "LOGIN user1 wrong-Pw-1")[-1].startswith(b"a NO")
        assert c.command("b", "LOGIN user1 wrong-Pw-2")[-1].startswith(b"b NO")
    p.signal(signal.SIGHUP)
    p.log.wait_for("Config reloaded")
    after = parse(scrape(admin))

    def d(series: str) -> float:
        return after.get(series, 0) - before.get(series, 0)

    assert d('portier_limit_refusals_total{protocol="imap",limit="max_connections_per_ip"}') == 1
    assert d('portier_auth_failure_delays_total{protocol="imap"}') == 2
    assert d('portier_auth_penalties_total{protocol="imap"}') == 1   # the second one doubled
    assert 0.14 < d('portier_auth_failure_delay_seconds_total{protocol="imap"}') < 0.16
    assert d('portier_config_reloads_total{result="ok"}') == 1
    assert after["portier_config_last_reload_success_timestamp_seconds"] > 0
    promtool(scrape(admin), tmp_path)
