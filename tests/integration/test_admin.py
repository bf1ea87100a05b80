"""The admin API (docs/ADMIN.md): doveadm-shaped POST /doveadm/v1 on the HTTP
listener (API key) and on the unix socket (`portier ctl`), GET /metrics,
kick across workers (goodbye before the relay, `Disconnected by proxy:
Kicked by admin` while relaying), delayed kicks, reload, HTTP bounds.

Real clients (curl, http.client, imaplib, `portier ctl`), the session
Dovecot as the relaying backend, a fake backend that stalls mid-login."""
from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import stat
import subprocess
import threading
import time

import pytest

from tests.support import backend_scripts as bs
from tests.support import fake_backend as fb
from tests.support.accounts import BACKEND_USERS
from tests.support.imap_client import RawIMAP, imap_connect
from tests.support.portier import Listener, User, portier_bin, proxy

P1 = BACKEND_USERS["user1"]
KEY = "adm-Key-7f3e9c2a51d04b68"
SLOW_PW = "slow-Pw-41"
ADMIN_RE = re.compile(r"Listening on 127\.0\.0\.1:(\d+) \(admin\)")


def until(pred, timeout: float = 10.0, what: str = "condition"):
    """Poll `pred` with a deadline (the API has no push channel)."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        r = pred()
        if r:
            return r
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


class Admin:
    def __init__(self, px, sock_path):
        m = px.log.wait_for(ADMIN_RE, timeout=5)
        self.port = int(m.group(1))
        self.sock = sock_path
        self.px = px

    def raw(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def post(self, cmds, auth="dovecot"):
        h = {"Content-Type": "application/json"}
        if auth == "dovecot":
            h["Authorization"] = "X-Dovecot-API " + base64.b64encode(KEY.encode()).decode()
        elif auth == "bearer":
            h["Authorization"] = "Bearer " + KEY
        elif auth:
            h["Authorization"] = auth
        st, data = self.raw("POST", "/doveadm/v1", json.dumps(cmds), h)
        return st, json.loads(data) if data.startswith((b"[", b"{")) else data

    def call(self, name, params=None, tag="t1"):
        st, out = self.post([[name, params or {}, tag]])
        assert st == 200, (st, out)
        assert out[0][2] == tag
        return out[0]

    def rows(self, **params):
        r = self.call("proxyList", params)
        assert r[0] == "doveadmResponse", r
        return r[1]


def ctl(*args, timeout=20):
    return subprocess.run([str(portier_bin()), "ctl", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def setup(make_portier, make_fake, dovecot, tmp_path):
    """portier with the admin listener and socket; user1 relays to Dovecot,
    `slow` logs in to a fake that stalls after ID+LOGIN."""
    stuck = make_fake([bs.imap_banner(), fb.stall()])
    sock = tmp_path / "admin.sock"
    users = [User("user1", P1, proxy(dovecot.ports["imap"])),
             User("slow", SLOW_PW, proxy(stuck.port, proxy_timeout="30"))]
    px = make_portier(users, listeners=[Listener("imap", "none")],
                      settings={"admin": {"listen": "127.0.0.1:0", "api_key": KEY,
                                          "socket": str(sock)}})
    return px, Admin(px, sock)


def login_user1(px, source=None):
    c = imap_connect(px.port("imap"), source=source)
    c.login("user1", P1)
    return c


def start_slow_login(px, source=None):
    c = RawIMAP(px.port("imap"), source=source)
    c.send(f'a LOGIN slow "{SLOW_PW}"\r\n')
    return c


def test_list_shows_relaying_and_stuck_sessions(setup):
    px, adm = setup
    c = login_user1(px, source="127.0.0.7")
    c.noop()
    slow = start_slow_login(px)
    rows = until(lambda: (r := adm.rows()) and len(r) == 2 and
                 any(x["state"] == "id+login/banner" for x in r) and r, what="two rows")
    by_user = {r["username"]: r for r in rows}
    rel = by_user["user1"]
    assert rel["state"] == "relaying"
    assert rel["service"] == "imap"
    assert rel["src-ip"] == "127.0.0.7"
    assert int(rel["src-port"]) == c.sock.getsockname()[1]
    assert rel["dest-ip"] == "127.0.0.1" and rel["dest-port"] == str(px and
                                                                     int(rel["dest-port"]))
    assert int(rel["bytes-in"]) > 0 and int(rel["bytes-out"]) > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rel["connected-since"])
    st = by_user["slow"]
    assert st["state"] == "id+login/banner"
    # Filters: user mask, client network, backend host.
    assert [r["username"] for r in adm.rows(user="us*1")] == ["user1"]
    assert [r["username"] for r in adm.rows(ip="127.0.0.7/32")] == ["user1"]
    assert adm.rows(host="127.0.0.9") == []
    # stats counts both, per protocol.
    s = adm.call("stats")[1][0]
    assert s["sessions"] == "2" and s["relaying"] == "1" and s["logging-in"] == "1"
    assert s["sessions-imap"] == "2"
    # curl, as an operator would script it.
    out = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {KEY}", "-d",
                          '[["proxyList",{},"c1"]]', f"http://127.0.0.1:{adm.port}/doveadm/v1"],
                         capture_output=True, text=True, timeout=10)
    j = json.loads(out.stdout)
    assert j[0][0] == "doveadmResponse" and j[0][2] == "c1" and len(j[0][1]) == 2
    c.logout()
    slow.sock.close()


def test_kick_by_user_relaying_and_prelogin(setup):
    px, adm = setup
    c = login_user1(px)
    slow = start_slow_login(px)
    until(lambda: len(adm.rows()) == 2, what="two sessions")
    r = adm.call("proxyKick", {"user": ["user1"]})
    assert r == ["doveadmResponse", [{"count": "1"}], "t1"]
    px.log.wait_for(r"imap-login: Info: proxy\(user1,[^)]*\): Disconnected by proxy: Kicked by admin")
    with pytest.raises((OSError, EOFError, Exception)):
        c.noop()
    # The session still logging in gets the protocol's goodbye.
    r = adm.call("proxyKick", {"user": "slo?"})
    assert r[1] == [{"count": "1"}]
    data = slow.read_until_closed(timeout=5)
    assert b"* BYE Kicked by admin." in data
    px.log.wait_for(r"Disconnected: Kicked by admin")
    assert adm.rows() == []
    # Nothing matches: 0; no criterion at all: usage error (EX_USAGE).
    assert adm.call("proxyKick", {"user": "nobody"})[1] == [{"count": "0"}]
    e = adm.call("proxyKick", {})
    assert e[0] == "error" and e[1]["exitCode"] == 64


def test_kick_by_host_and_cidr(setup):
    px, adm = setup
    a = login_user1(px, source="127.0.0.5")
    b = login_user1(px, source="127.0.0.6")
    until(lambda: len(adm.rows()) == 2, what="two sessions")
    assert adm.call("proxyKick", {"host": "127.0.0.9"})[1] == [{"count": "0"}]
    assert adm.call("proxyKick", {"ip": "127.0.0.5/32"})[1] == [{"count": "1"}]
    until(lambda: [r["src-ip"] for r in adm.rows()] == ["127.0.0.6"], what="only .6 left")
    b.noop()  # untouched
    assert adm.call("proxyKick", {"host": "127.0.0.1"})[1] == [{"count": "1"}]
    until(lambda: adm.rows() == [], what="all gone")
    for c in (a, b):
        with pytest.raises(Exception):
            c.noop()


def test_kick_delay_spreads_disconnects(setup):
    px, adm = setup
    n = 8
    clients = [RawIMAP(px.port("imap")) for _ in range(n)]
    for i, c in enumerate(clients):
        c.command("a", f'LOGIN user1 "{P1}"')
    until(lambda: len(adm.rows()) == n, what=f"{n} sessions")
    t0 = time.monotonic()
    assert adm.call("proxyKick", {"user": "user1", "delay": "2s"})[1] == [{"count": str(n)}]
    done = []

    def wait(c):
        c.read_until_closed(timeout=8, quiet_ok=True)
        done.append(time.monotonic() - t0)

    ts = [threading.Thread(target=wait, args=(c,)) for c in clients]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    done.sort()
    assert len(done) == n
    assert done[0] < 0.8, done             # the first goes at once
    assert done[-1] > 1.2, done            # the last near the end of the delay
    assert done[-1] < 3.5, done
    px.log.wait_for(r"Disconnected by proxy: Kicked by admin", count=n)


def test_api_key_required(setup):
    px, adm = setup
    for auth in (None, "X-Dovecot-API " + base64.b64encode(b"wrong-key-xxxxxxxx").decode(),
                 "Bearer " + KEY[:-1], "X-Dovecot-API !!!notbase64", "Basic Zm9vOmJhcg=="):
        st, body = adm.post([["proxyList", {}, "x"]], auth=auth)
        assert st == 401, (auth, st, body)
        assert b"username" not in body
    st, _ = adm.raw("GET", "/metrics")
    assert st == 401
    assert adm.post([["proxyList", {}, "x"]], auth="bearer")[0] == 200
    assert adm.post([["proxyList", {}, "x"]], auth="dovecot")[0] == 200
    px.log.wait_for(r"admin\(127\.0\.0\.1\): POST /doveadm/v1: missing or wrong API key")
    assert KEY not in px.log.text()
    assert base64.b64encode(KEY.encode()).decode() not in px.log.text()


def test_metrics_and_unknown_routes(setup):
    px, adm = setup
    c = login_user1(px)
    c.logout()
    h = {"Authorization": "Bearer " + KEY}
    st, body = adm.raw("GET", "/metrics", headers=h)
    assert st == 200
    assert re.search(rb'portier_logins_total\{protocol="imap",result="success"\} 1\n', body), body
    assert adm.raw("GET", "/nope", headers=h)[0] == 404
    assert adm.raw("GET", "/doveadm/v1", headers=h)[0] == 405
    st, body = adm.raw("POST", "/doveadm/v1", "{not json", h)
    assert st == 400
    st, body = adm.raw("POST", "/doveadm/v1", '{"a":1}', h)
    assert st == 400
    st, out = adm.post([["frobnicate", {}, "z"]])
    assert st == 200 and out[0][0] == "error" and out[0][1]["type"] == "unknownMethod"
    assert out[0][1]["exitCode"] == 64 and out[0][2] == "z"
    e = adm.call("authCacheFlush")
    assert e[0] == "error" and e[1]["exitCode"] == 69


def raw_http(port, data: bytes, timeout=5.0) -> bytes:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
    except OSError:
        pass
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except ConnectionResetError:
        pass
    s.close()
    return out


def test_bad_http_is_refused_and_closed(setup):
    px, adm = setup
    out = raw_http(adm.port, b"\x16\x03\x01garbage garbage\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out
    out = raw_http(adm.port, b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * (2 * 1024 * 1024))
    assert out.startswith(b"HTTP/1.1 413 "), out[:100]
    out = raw_http(adm.port, b"POST /doveadm/v1 HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 "), out
    out = raw_http(adm.port, b"POST /doveadm/v1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 411 "), out
    # Keep-alive: two requests on one connection, pipelined.
    req = (f"GET /metrics HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\n\r\n" * 2).encode()
    s = socket.create_connection(("127.0.0.1", adm.port), timeout=5)
    s.sendall(req)
    got = b""
    while got.count(b"HTTP/1.1 200") < 2:
        d = s.recv(65536)
        assert d, got
        got += d
    s.close()
    assert px.alive()


def test_slow_admin_client_times_out(make_portier, tmp_path):
    px = make_portier([], listeners=[Listener("imap", "none")],
                      settings={"admin": {"listen": "127.0.0.1:0", "api_key": KEY,
                                          "timeout": "1s"}})
    adm = Admin(px, None)
    s = socket.create_connection(("127.0.0.1", adm.port), timeout=5)
    s.sendall(b"GET /metr")
    t0 = time.monotonic()
    assert s.recv(100) == b""     # closed by the server
    assert time.monotonic() - t0 < 3
    s.close()
    # Meanwhile another client is served at once.
    assert adm.raw("GET", "/metrics", headers={"Authorization": "Bearer " + KEY})[0] == 200


def test_ctl_over_socket(setup):
    px, adm = setup
    mode = stat.S_IMODE(os.stat(adm.sock).st_mode)
    assert mode == 0o600, oct(mode)
    c = login_user1(px)
    until(lambda: len(adm.rows()) == 1, what="one session")
    r = ctl("--socket", str(adm.sock), "who")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["username", "service", "src-ip"]
    assert lines[1].split()[0] == "user1" and "relaying" in lines[1]
    r = ctl("--socket", str(adm.sock), "list", "--json")
    assert json.loads(r.stdout)[0]["username"] == "user1"
    r = ctl("-c", str(px.conf_path), "stats")
    assert r.returncode == 0 and "sessions: 1" in r.stdout, r.stdout + r.stderr
    r = ctl("--socket", str(adm.sock), "kick", "user1")
    assert r.returncode == 0 and r.stdout.strip() == "1 connections kicked", r.stdout
    px.log.wait_for(r"Disconnected by proxy: Kicked by admin")
    r = ctl("--socket", str(adm.sock), "cache-flush")
    assert r.returncode == 69, r
    assert ctl("--socket", str(adm.sock), "kick").returncode == 64
    assert ctl("--socket", str(adm.sock), "bogus").returncode == 64
    r = ctl("--socket", str(adm.sock) + ".missing", "who")
    assert r.returncode == 69 and "cannot talk" in r.stderr
    with pytest.raises(Exception):
        c.noop()


def test_reload_via_api(setup):
    px, adm = setup
    px.settings = {**px.settings, "login": {"greeting": "reloaded greeting."}}
    px.write_config()
    r = adm.call("reload")
    assert r[0] == "doveadmResponse", r
    px.log.wait_for(r"Config reloaded")
    c = RawIMAP(px.port("imap"), read_banner=False)
    assert b"reloaded greeting." in c.readline()
    # A broken config is refused and the old one kept (EX_CONFIG).
    px.conf_path.write_text(px.conf_path.read_text() + "\n[bogus]\nx = 1\n")
    r = adm.call("reload")
    assert r[0] == "error" and r[1]["exitCode"] == 78 and r[1]["errors"], r
    r = ctl("--socket", str(adm.sock), "reload")
    assert r.returncode == 78, r
    c2 = RawIMAP(px.port("imap"), read_banner=False)
    assert b"reloaded greeting." in c2.readline()


def test_kick_churn_1000_sessions(make_portier, make_fake, tmp_path):
    """1 000 sessions (logins to a fake backend and bare connections) opened
    and closed on two workers while kicks (immediate and delayed) and lists
    run: no crash, no hang, every session ends, nothing is left behind."""
    fake = make_fake(bs.imap_login_ok())
    sock = tmp_path / "admin.sock"
    px = make_portier([User("churn", "churn-Pw-1", proxy(fake.port))],
                      listeners=[Listener("imap", "none")],
                      settings={"admin": {"listen": "127.0.0.1:0", "api_key": KEY,
                                          "socket": str(sock)},
                                "login": {"max_connections": 2000,
                                          "max_connections_per_ip": 2000,
                                          "max_sessions_per_user": 2000}})
    adm = Admin(px, sock)
    total = 1000
    lock = threading.Lock()
    next_i = [0]
    stop = threading.Event()
    errors = []

    def client():
        while True:
            with lock:
                if next_i[0] >= total:
                    return
                i = next_i[0]
                next_i[0] += 1
            try:
                s = socket.create_connection(("127.0.0.1", px.port("imap")), timeout=10)
                if i % 2 == 0:
                    s.sendall(b'a LOGIN churn "churn-Pw-1"\r\n')
                    buf = b""
                    s.settimeout(10)
                    while b"a OK" not in buf and b"BYE" not in buf:
                        d = s.recv(4096)
                        if not d:
                            break
                        buf += d
                s.close()
            except OSError as e:
                if "timed out" in str(e):
                    errors.append(f"session {i}: {e}")

    def kicker():
        k = 0
        while not stop.is_set():
            params = [{"user": "churn"}, {"ip": "127.0.0.0/8"},
                      {"user": "c*", "delay": "300ms"}][k % 3]
            st, out = adm.post([["proxyKick", params, "k"], ["proxyList", {}, "l"]])
            assert st == 200 and out[0][0] == "doveadmResponse", out
            k += 1
        return k

    kt = threading.Thread(target=kicker)
    kt.start()
    ts = [threading.Thread(target=client) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    stop.set()
    kt.join(10)
    assert not errors, errors[:5]
    assert px.alive()
    # Everything ends: clients closed, kicked or done.
    until(lambda: adm.call("stats")[1][0]["sessions"] == "0", timeout=15, what="no sessions")
    assert len(px.log.find(r"Kicked by admin")) > 0


def test_admin_over_tls(make_portier, certs):
    px = make_portier([], listeners=[Listener("imap", "none")],
                      settings={"admin": {"listen": "127.0.0.1:0", "api_key": KEY,
                                          "cert": str(certs.cert), "key": str(certs.key)}})
    m = px.log.wait_for(r"Listening on 127\.0\.0\.1:(\d+) \(admin, tls\)", timeout=5)
    url = f"https://127.0.0.1:{m.group(1)}"
    out = subprocess.run(["curl", "-sS", "--cacert", str(certs.ca), "-H", f"Authorization: Bearer {KEY}",
                          "-d", '[["stats",{},"s"]]', url + "/doveadm/v1"],
                         capture_output=True, text=True, timeout=10)
    assert json.loads(out.stdout)[0][1][0]["sessions"] == "0", out
    # Plain HTTP to the TLS listener: no answer in clear, closed.
    assert not raw_http(int(m.group(1)), b"GET /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/")
