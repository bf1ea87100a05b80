"""The doveadm proxy ([doveadm], docs/DOVEADM.md) with the real `doveadm`
CLI as the client and two real Dovecot backends with doveadm TCP listeners.

Users are spread over the backends by portier's passwd-file passdb
(`proxy host=127.0.0.1 port=<backend doveadm port>`); each backend holds
mail only it has (a mailbox name and a subject), so a reply proves which
backend answered.  Backend-down and black-hole cases use short timeouts.
"""
from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import metrics
from tests.support.dovecot import DovecotBackend
from tests.support.portier import Listener, User, proxy
from tests.support.util import free_port

CLIENT_PW = "dv-Client-Pw-9x"     # what doveadm clients send to portier
BACKEND_PW = "dv-Backend-Pw-4k"   # what portier sends to the backends
API_KEY = "dv-Api-Key-3j"         # the backends' doveadm_api_key (HTTP API)
LISTEN_RE = re.compile(r"Listening on 127\.0\.0\.1:(\d+) \(doveadm\)")


def msg(subject: str) -> bytes:
    return (f"From: a@example.test\r\nTo: b@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@test>\r\n\r\nbody of {subject}\r\n").encode()


@pytest.fixture(scope="module")
def backends(certs):
    a = DovecotBackend(users={"user1": "x1-pw", "alice": "x2-pw"}, certs=certs,
                       doveadm_password=BACKEND_PW, doveadm_api_key=API_KEY,
                       hostname="backend-a.test")
    b = DovecotBackend(users={"user2": "x3-pw", "user3": "x4-pw"}, certs=certs,
                       doveadm_password=BACKEND_PW, doveadm_api_key=API_KEY,
                       hostname="backend-b.test")
    a.start()
    b.start()
    try:
        a.deliver("user1", msg("on-backend-A"))
        b.deliver("user2", msg("on-backend-B"))
        b.deliver("user3", msg("keep-me"))
        b.deliver("user3", msg("delete-me"))
        for dc, user, box in ((a, "user1", "OnlyOnA"), (b, "user2", "OnlyOnB")):
            r = dc.doveadm("mailbox", "create", "-u", user, box)
            assert r.returncode == 0, r.stderr
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def client_conf(tmp_path_factory) -> Path:
    """A minimal config for the doveadm CLI (it needs one; -S sends the command away)."""
    d = tmp_path_factory.mktemp("dvcli")
    p = d / "doveadm-client.conf"
    p.write_text(f"base_dir = {d}\nssl = no\ndoveadm_password = {CLIENT_PW}\n")
    return p


def start_portier(make_portier, a, b, *, doveadm=None, extra_users=(), settings=None):
    users = [User("user1", None, proxy(port=a.ports["doveadm"])),
             User("alice", None, proxy(port=a.ports["doveadm"])),
             User("user2", None, proxy(port=b.ports["doveadm"])),
             User("user3", None, proxy(port=b.ports["doveadm"])),
             *extra_users]
    settings = {"doveadm": {"listen": "127.0.0.1:0", "password": CLIENT_PW,
                            "backend_password": BACKEND_PW, "timeout": "2s",
                            **(doveadm or {})}, **(settings or {})}
    p = make_portier(users, settings=settings, listeners=(Listener("imap", "none"),))
    port = None
    for line in p.log.lines():
        m = LISTEN_RE.search(line)
        if m:
            port = int(m.group(1))
    assert port, p.log.text()
    p.doveadm_port = port
    return p


def cli(conf: Path, port: int, *args: str, password: str | None = None,
        timeout: float = 20) -> subprocess.CompletedProcess:
    """`doveadm <cmd> -S 127.0.0.1:<port> ...` (2.3: -S follows the command name)."""
    argv = ["doveadm", "-c", str(conf)]
    if password is not None:
        argv += ["-o", f"doveadm_password={password}"]
    # args = (command words..., "--", options...): -S goes right after the words.
    words, rest = list(args), []
    if "--" in words:
        i = words.index("--")
        words, rest = words[:i], words[i + 1:]
    argv += words + ["-S", f"127.0.0.1:{port}"] + rest
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def proxy_up(make_portier, backends):
    a, b = backends
    return start_portier(make_portier, a, b)


def test_mailbox_list_reaches_each_users_backend(proxy_up, client_conf):
    r1 = cli(client_conf, proxy_up.doveadm_port, "mailbox", "list", "--", "-u", "user1")
    assert r1.returncode == 0, r1.stderr
    assert set(r1.stdout.split()) == {"INBOX", "OnlyOnA"}
    r2 = cli(client_conf, proxy_up.doveadm_port, "mailbox", "list", "--", "-u", "user2")
    assert r2.returncode == 0, r2.stderr
    assert set(r2.stdout.split()) == {"INBOX", "OnlyOnB"}
    proxy_up.log.wait_for(r"doveadm: Info: proxy\(user2,127\.0\.0\.1\): mailbox list: "
                          r"127\.0\.0\.1:\d+: \+ \(exit code 0", timeout=5)


def test_fetch_and_search_match_the_backend_itself(proxy_up, backends, client_conf):
    a, b = backends
    for dc, user, subject in ((a, "user1", "on-backend-A"), (b, "user2", "on-backend-B")):
        via = cli(client_conf, proxy_up.doveadm_port, "fetch", "--", "-u", user,
                  "hdr.subject text", "mailbox", "INBOX", "all")
        assert via.returncode == 0, via.stderr
        assert f"Subject: {subject}" in via.stdout
        assert f"body of {subject}" in via.stdout
        # The same command sent by the CLI straight to the backend's doveadm
        # server: portier's answer is byte for byte the same.
        direct = cli(client_conf, dc.ports["doveadm"], "fetch", "--", "-u", user,
                     "hdr.subject text", "mailbox", "INBOX", "all", password=BACKEND_PW)
        assert (via.returncode, via.stdout) == (direct.returncode, direct.stdout)
        s_via = cli(client_conf, proxy_up.doveadm_port, "search", "--", "-u", user,
                    "mailbox", "INBOX", "subject", subject)
        s_direct = cli(client_conf, dc.ports["doveadm"], "search", "--", "-u", user,
                       "mailbox", "INBOX", "subject", subject, password=BACKEND_PW)
        assert s_via.returncode == 0 and s_via.stdout == s_direct.stdout and s_via.stdout.strip()
        miss = cli(client_conf, proxy_up.doveadm_port, "search", "--", "-u", user,
                   "mailbox", "INBOX", "subject", "no-such-subject")
        assert miss.returncode == 0 and miss.stdout == ""


def test_expunge_on_the_right_backend(proxy_up, backends, client_conf):
    _a, b = backends
    r = cli(client_conf, proxy_up.doveadm_port, "expunge", "--", "-u", "user3",
            "mailbox", "INBOX", "subject", "delete-me")
    assert r.returncode == 0, r.stderr
    left = b.doveadm("fetch", "-u", "user3", "hdr.subject", "mailbox", "INBOX", "all")
    assert "keep-me" in left.stdout and "delete-me" not in left.stdout


def test_failing_backend_command_keeps_its_exit_code(proxy_up, backends, client_conf):
    # quota plugin not loaded on the backends: `quota get` fails there; portier
    # passes the same output and exit code through.
    a, _b = backends
    via = cli(client_conf, proxy_up.doveadm_port, "quota", "get", "--", "-u", "user1")
    direct = cli(client_conf, a.ports["doveadm"], "quota", "get", "--", "-u", "user1",
                 password=BACKEND_PW)
    assert (via.returncode, via.stdout) == (direct.returncode, direct.stdout)
    # A mailbox that does not exist: Dovecot's own error and exit code.
    via = cli(client_conf, proxy_up.doveadm_port, "mailbox", "status", "--", "-u", "user1",
              "messages", "NoSuchBox")
    direct = cli(client_conf, a.ports["doveadm"], "mailbox", "status", "--", "-u", "user1",
                 "messages", "NoSuchBox", password=BACKEND_PW)
    assert direct.returncode != 0
    assert (via.returncode, via.stdout) == (direct.returncode, direct.stdout)
    assert "NoSuchBox" in via.stderr


def test_unknown_user_exits_67(proxy_up, client_conf):
    r = cli(client_conf, proxy_up.doveadm_port, "mailbox", "list", "--", "-u", "nobody")
    assert r.returncode == 67, (r.returncode, r.stderr)
    assert "User doesn't exist" in r.stderr
    proxy_up.log.wait_for(r"proxy\(nobody,127\.0\.0\.1\): mailbox list: User doesn't exist", timeout=5)


def test_wrong_password_is_refused(proxy_up, client_conf):
    r = cli(client_conf, proxy_up.doveadm_port, "mailbox", "list", "--", "-u", "user1",
            password="not-the-password")
    assert r.returncode != 0
    assert "authentication failed" in r.stderr
    assert "INBOX" not in r.stdout
    proxy_up.log.wait_for(r"client\(127\.0\.0\.1\): Authentication failed", timeout=5)


def test_backend_refusing_portiers_password(make_portier, backends, client_conf):
    a, b = backends
    p = start_portier(make_portier, a, b, doveadm={"backend_password": "wrong-backend-pw"})
    r = cli(client_conf, p.doveadm_port, "mailbox", "list", "--", "-u", "user1")
    assert r.returncode == 75, r.stderr
    assert "refused portier's doveadm password" in r.stderr


def test_backend_down_fails_fast(make_portier, backends, client_conf):
    a, b = backends
    dead = free_port()   # nothing listens here
    p = start_portier(make_portier, a, b, extra_users=[User("ghost", None, proxy(port=dead))])
    t0 = time.monotonic()
    r = cli(client_conf, p.doveadm_port, "mailbox", "list", "--", "-u", "ghost")
    assert r.returncode == 75, (r.returncode, r.stderr)
    assert f"portier: connect(127.0.0.1:{dead}) failed" in r.stderr
    assert time.monotonic() - t0 < 5
    # The proxy still serves the others.
    ok = cli(client_conf, p.doveadm_port, "mailbox", "list", "--", "-u", "user1")
    assert ok.returncode == 0 and "OnlyOnA" in ok.stdout


def test_commands_counted_in_metrics(make_portier, backends, client_conf):
    """portier_doveadm_commands_total{result}: a command relayed, an unknown
    user, a backend down — one count each."""
    a, b = backends
    dead = free_port()
    p = start_portier(make_portier, a, b, extra_users=[User("ghost", None, proxy(port=dead))],
                      settings=metrics.ADMIN)
    admin = metrics.admin_port(p)
    before = metrics.parse(metrics.scrape(admin))
    assert cli(client_conf, p.doveadm_port, "mailbox", "list", "--", "-u", "user1").returncode == 0
    assert cli(client_conf, p.doveadm_port, "mailbox", "list", "--", "-u", "nobody").returncode == 67
    assert cli(client_conf, p.doveadm_port, "mailbox", "list", "--", "-u", "ghost").returncode == 75
    def moved_by(v: dict[str, float]) -> dict[str, float]:
        return {r: v.get(f'portier_doveadm_commands_total{{result="{r}"}}', 0)
                - before.get(f'portier_doveadm_commands_total{{result="{r}"}}', 0)
                for r in ("ok", "refused", "user_unknown", "tempfail", "aborted")}

    # the relayed command is counted right after its last byte went out
    moved = moved_by(metrics.wait_metrics(admin, lambda v: sum(moved_by(v).values()) >= 3))
    assert moved == {"ok": 1, "refused": 0, "user_unknown": 1, "tempfail": 1, "aborted": 0}, moved


def test_silent_backend_times_out(make_portier, backends, client_conf):
    a, b = backends
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)           # accepts in the kernel, never speaks
    try:
        p = start_portier(make_portier, a, b, doveadm={"timeout": "1s"},
                          extra_users=[User("stuck", None, proxy(port=hole.getsockname()[1]))])
        t0 = time.monotonic()
        r = cli(client_conf, p.doveadm_port, "mailbox", "list", "--", "-u", "stuck")
        took = time.monotonic() - t0
        assert r.returncode == 75, (r.returncode, r.stderr)
        assert "timed out" in r.stderr
        assert took < 4, took
    finally:
        hole.close()


def test_fixed_backend_port_when_passdb_port_is_off(make_portier, backends, client_conf):
    a, b = backends
    # passdb_port = false: the passdb's port (here a dead one) is ignored and
    # [doveadm] port is used - backend B's doveadm port.
    p = start_portier(make_portier, a, b,
                      doveadm={"passdb_port": False, "port": b.ports["doveadm"]},
                      extra_users=[User("user9", None, proxy(port=free_port()))])
    r = cli(client_conf, p.doveadm_port, "mailbox", "list", "--", "-u", "user2")
    assert r.returncode == 0 and "OnlyOnB" in r.stdout, r.stderr


# ------------------------------------------------ raw protocol (no CLI)
def raw_session(port: int, minor: int, password: str = CLIENT_PW) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"VERSION\tdoveadm-server\t1\t{minor}\n".encode())
    want = b"-\n" if minor == 0 else b"VERSION\tdoveadm-client\t1\t1\n-\n"
    got = b""
    while len(got) < len(want):
        got += s.recv(100)
    assert got == want
    s.sendall(b"PLAIN\t" + base64.b64encode(b"\0doveadm\0" + password.encode()) + b"\n")
    assert s.recv(10) == b"+\n"
    return s


def recv_until(s: socket.socket, end: bytes) -> bytes:
    out = b""
    while not out.endswith(end):
        d = s.recv(65536)
        if not d:
            break
        out += d
    return out


def test_protocol_1_0_and_several_commands_per_connection(proxy_up):
    s = raw_session(proxy_up.doveadm_port, 0)
    s.sendall(b"\tuser1\tmailbox list\n")
    out = recv_until(s, b"\n+\n")
    assert b"OnlyOnA\t" in out and b"OnlyOnB" not in out
    s.sendall(b"\tuser2\tmailbox list\n")
    out = recv_until(s, b"\n+\n")
    assert b"OnlyOnB\t" in out and b"OnlyOnA" not in out
    s.sendall(b"\tnobody\tmailbox list\n")
    assert recv_until(s, b"\n") + recv_until(s, b"\n") == b"\n-NOUSER\n"
    s.close()


def test_command_without_user_is_refused(proxy_up):
    s = raw_session(proxy_up.doveadm_port, 1)
    s.sendall(b"\t\tmailbox list\n")
    out = recv_until(s, b"\n-USAGE\n")
    assert out.endswith(b"\n-USAGE\n") and b"only per-user commands" in out
    s.sendall(b"garbage\n")
    assert recv_until(s, b"\n-USAGE\n").endswith(b"\n-USAGE\n")
    s.close()


def test_bad_handshake_and_overlong_line_are_closed(proxy_up):
    s = socket.create_connection(("127.0.0.1", proxy_up.doveadm_port), timeout=5)
    s.sendall(b"HELLO\n")
    assert s.recv(100) == b""
    s.close()
    s = raw_session(proxy_up.doveadm_port, 1)
    try:
        s.sendall(b"x" * (200 * 1024))
    except OSError:
        pass
    try:
        assert recv_until(s, b"never") == b""
    except ConnectionResetError:
        pass   # closed with our unread bytes pending: a reset is fine
    s.close()
    proxy_up.log.wait_for(r"Disconnected: command line too long", timeout=5)


def test_secrets_stay_out_of_the_log(proxy_up, client_conf):
    cli(client_conf, proxy_up.doveadm_port, "mailbox", "list", "--", "-u", "user1")
    cli(client_conf, proxy_up.doveadm_port, "mailbox", "list", "--", "-u", "user1", password="bad-pw-123")
    text = proxy_up.log.text()
    for secret in (CLIENT_PW, BACKEND_PW, "bad-pw-123",
                   base64.b64encode(b"\0doveadm\0" + CLIENT_PW.encode()).decode()):
        assert secret not in text


# ------------------------------------------------ HTTP API (C++ side)
def test_http_api_forwarding(backends, tmp_path):
    """Service::http_command (for the admin listener's POST /doveadm/v1) against
    backend A's real doveadm HTTP API: run by the C++ test DoveadmHttp.*, which
    needs the backend this test starts."""
    a, _b = backends
    unit = Path(os.environ.get("PORTIER_UNIT_BIN") or
                Path(os.environ.get("PORTIER_BIN", "build/portier")).parent / "portier_unit")
    if not unit.exists():
        pytest.skip(f"{unit} not built")
    passwd = tmp_path / "users"
    passwd.write_text("user1:{PLAIN}x::::::proxy host=127.0.0.1 port=1\n")
    env = {**os.environ, "PORTIER_TEST_DOVEADM_HTTP":
           f"{passwd} {API_KEY} {a.ports['doveadm_http']} {free_port()}"}
    r = subprocess.run([str(unit), "--gtest_filter=DoveadmHttp.*"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[  PASSED  ] 2 tests" in r.stdout and "SKIPPED" not in r.stdout, r.stdout


def vm_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def test_large_fetch_is_streamed_with_bounded_memory(proxy_up, backends, client_conf):
    """A 24 MiB message fetched through portier: passed on as it comes, so
    portier's peak RSS grows by far less than the message."""
    a, _b = backends
    line = b"x" * 76 + b"\r\n"
    a.deliver("alice", msg("big-one")[:-2] + line * (24 * 1024 * 1024 // len(line)))
    pid = proxy_up.proc.pid
    before = vm_kib(pid, "VmHWM")
    r = cli(client_conf, proxy_up.doveadm_port, "fetch", "--", "-u", "alice", "text",
            "mailbox", "INBOX", "subject", "big-one", timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) > 23 * 1024 * 1024   # CRLF printed as LF
    grew = vm_kib(pid, "VmHWM") - before
    print(f"portier peak RSS grew by {grew} KiB for a {len(r.stdout) >> 20} MiB fetch")
    if not os.environ.get("PORTIER_SANITIZER"):   # ASan's quarantine keeps freed memory
        assert grew < 8 * 1024, grew


def test_stop_with_open_doveadm_connections(make_portier, backends):
    """SIGTERM with an idle authenticated client and one mid-handshake: a clean, quick exit."""
    a, b = backends
    p = start_portier(make_portier, a, b)
    idle = raw_session(p.doveadm_port, 1)
    half = socket.create_connection(("127.0.0.1", p.doveadm_port), timeout=5)
    t0 = time.monotonic()
    assert p.stop() == 0
    assert time.monotonic() - t0 < 5
    idle.close()
    half.close()


ADMIN_KEY = "dv-admin-api-key-0123456789"
ADMIN_RE = re.compile(r"Listening on 127\.0\.0\.1:(\d+) \(admin")


def http_post(port: int, key: str, body: str) -> tuple[int, object]:
    import json
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
                        "-H", f"Authorization: X-Dovecot-API {base64.b64encode(key.encode()).decode()}",
                        "-H", "Content-Type: application/json", "--data-binary", body,
                        f"http://127.0.0.1:{port}/doveadm/v1"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    text, _, code = r.stdout.rpartition("\n")
    try:
        return int(code), json.loads(text)
    except ValueError:
        return int(code), text


def test_http_api_through_the_admin_listener(make_portier, backends):
    """curl → portier's admin listener POST /doveadm/v1 → the user's backend's
    doveadm HTTP API: the same answer as asking that backend directly; an
    unknown user gets doveadm's exit code 67."""
    a, b = backends
    users = [User("user1", None, proxy(port=a.ports["doveadm"])),
             User("alice", None, proxy(port=a.ports["doveadm"]))]
    settings = {"doveadm": {"listen": "127.0.0.1:0", "password": CLIENT_PW,
                            "backend_password": BACKEND_PW, "timeout": "2s",
                            "http_port": a.ports["doveadm_http"], "backend_api_key": API_KEY},
                "admin": {"listen": "127.0.0.1:0", "api_key": ADMIN_KEY}}
    p = make_portier(users, settings=settings, listeners=(Listener("imap", "none"),))
    admin = int(p.log.wait_for(ADMIN_RE).group(1))
    req = '[["mailboxList", {"user": "user1"}, "t1"]]'
    code, via = http_post(admin, ADMIN_KEY, req)
    assert code == 200, via
    code, direct = http_post(a.ports["doveadm_http"], API_KEY, req)
    assert code == 200, direct
    assert via == direct, (via, direct)
    assert via[0][0] == "doveadmResponse" and via[0][2] == "t1"
    assert any(row.get("mailbox") == "OnlyOnA" for row in via[0][1]), via
    code, miss = http_post(admin, ADMIN_KEY, '[["mailboxList", {"user": "nobody"}, "t2"]]')
    assert miss[0][0] == "error" and miss[0][2] == "t2", miss
    assert miss[0][1].get("exitCode") == 67, miss
    # the admin key, not the backends' key, opens portier's API
    code, _ = http_post(admin, API_KEY, req)
    assert code == 401
