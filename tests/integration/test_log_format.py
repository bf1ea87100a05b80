"""[log] format = "json" (one JSON object per line, the event's typed fields)
and target = "syslog" (RFC 3164 datagrams, facility mail, to a private
socket standing in for /dev/log), against the real Dovecot backend."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest

from tests.support.accounts import BACKEND_USERS
from tests.support.imap_client import RawIMAP
from tests.support.portier import Listener, Portier, User, portier_bin, proxy
from tests.support.sd_notify import NotifySocket
from tests.support.util import FileLog

P1 = BACKEND_USERS["user1"]
IMAP = [Listener("imap", "none")]


def users(dovecot):
    return [User("user1", P1, proxy(dovecot.ports["imap"]))]


def login(port: int, user: str, pw: str) -> list[bytes]:
    with RawIMAP(port) as c:
        r = c.command("a", f"LOGIN {user} {pw}")
        c.command("b", "LOGOUT")
        return r


def events(p) -> list[dict]:
    out = []
    for line in p.log.lines():
        if line.startswith("[stdout]"):
            continue
        d = json.loads(line)          # every stderr line is one JSON object
        assert {"time", "level", "service", "message"} <= d.keys(), d
        out.append(d)
    return out


def test_json_lines_carry_typed_fields(make_portier, dovecot):
    p = make_portier(users(dovecot), listeners=IMAP, settings={"log": {"format": "json"}})
    port = p.port("imap", "none")
    assert login(port, "user1", P1)[-1].startswith(b"a OK")
    assert login(port, "user1", "wrong-Pw-123")[-1].startswith(b"a NO")
    p.log.wait_for(r'"event":"relay_ended"')
    p.log.wait_for(r'"event":"prelogin_ended"')
    evs = events(p)

    listening = [e for e in evs if e["message"].startswith("Listening on")]
    assert listening and listening[0]["service"] == "portier" and listening[0]["level"] == "info"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", listening[0]["time"])

    started = next(e for e in evs if e.get("event") == "proxy_started")
    assert started["service"] == "imap-login" and started["level"] == "info"
    assert started["user"] == "user1" and started["destuser"] == "user1"
    assert started["rip"] == "127.0.0.1" and started["method"] == "PLAIN"
    assert started["dest"] == f"127.0.0.1:{dovecot.ports['imap']}"
    assert isinstance(started["took_ms"], int) and started["reconnects"] == 0
    assert started["tls"] is False and started["session"]
    assert started["message"].startswith("proxy(user1,")   # the text line, unchanged

    ended = next(e for e in evs if e.get("event") == "relay_ended")
    # After LOGOUT either side may close first.
    assert ended["side"] in ("client", "server") and ended["in"] > 0 and ended["out"] > 0
    assert ended["user"] == "user1" and ended["session"] == started["session"]

    refused = next(e for e in evs if e.get("event") == "auth_refused")
    assert refused["service"] == "auth" and refused["why"] == "password_mismatch"
    assert refused["driver"] == "passwd-file" and refused["rip"] == "127.0.0.1"

    failed = next(e for e in evs if e.get("event") == "prelogin_ended")
    assert failed["summary"].startswith("auth failed, 1 attempts")
    assert failed["user"] == "user1" and failed["rip"] == "127.0.0.1"
    assert "wrong-Pw-123" not in p.log.text()


def test_json_escapes_peer_bytes(make_portier, dovecot):
    p = make_portier(users(dovecot), listeners=IMAP, settings={"log": {"format": "json"}})
    with RawIMAP(p.port("imap", "none")) as c:
        # A user name with a quote, a backslash and UTF-8: still one valid object.
        c.command("a", 'LOGIN "we\\"ird\\\\é" wrong-Pw-9')
        c.command("b", "LOGOUT")
    p.log.wait_for(r'"event":"prelogin_ended"')
    ended = next(e for e in events(p) if e.get("event") == "prelogin_ended")
    assert ended["user"] == 'we"ird\\é'


# ---------------------------------------------------------------- syslog
def start_syslog_portier(tmp_path, certs, dovecot, sock: NotifySocket, **log):
    p = Portier(tmp_path / "p", users=users(dovecot), certs=certs, listeners=IMAP,
                settings={"log": {"target": "syslog", "syslog_socket": sock.path, **log}})
    p.write_config()
    proc = subprocess.Popen([str(portier_bin()), "-c", str(p.conf_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p, proc


def stop(proc) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    return proc.returncode, (err or b"").decode()


def test_syslog_target(tmp_path, certs, dovecot, portier_available):
    with NotifySocket() as sl:
        p, proc = start_syslog_portier(tmp_path, certs, dovecot, sl)
        try:
            # <22> = facility mail (2) * 8 + info (6); RFC 3164 date; tag portier[pid].
            m = sl.wait_raw(r"^<22>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d portier\[(\d+)\]: "
                            r"portier: Info: Listening on 127\.0\.0\.1:(\d+) \(imap")
            assert int(m[1]) == proc.pid
            sl.wait_raw(r"portier\[\d+\]: portier: Info: Ready$")
            port = int(m[2])
            assert login(port, "user1", "wrong-Pw-77")[-1].startswith(b"a NO")
            sl.wait_raw(r"^<22>.* portier\[\d+\]: auth: Info: passwd-file\(user1,127\.0\.0\.1,"
                        r"<[^>]+>\): Password mismatch$")
            sl.wait_raw(r"^<22>.* imap-login: Info: Disconnected: .*\(auth failed, 1 attempts")
            assert login(port, "user1", P1)[-1].startswith(b"a OK")
            sl.wait_raw(r"Started proxying to")
        finally:
            rc, err = stop(proc)
        assert rc == 0, err
        sl.wait_raw(r"portier: Info: Stopped$")
        assert err == "", f"nothing goes to stderr with target=syslog: {err!r}"
        assert not any("wrong-Pw-77" in r or P1 in r for r in sl.raw)


def test_syslog_json_and_ident(tmp_path, certs, dovecot, portier_available):
    with NotifySocket() as sl:
        p, proc = start_syslog_portier(tmp_path, certs, dovecot, sl, format="json",
                                       syslog_ident="dovecot")
        try:
            m = sl.wait_raw(r"^<22>.* dovecot\[\d+\]: (\{.*\"message\":\"Ready\"\})$")
            assert json.loads(m[1])["service"] == "portier"
        finally:
            rc, err = stop(proc)
        assert rc == 0, err


def test_syslog_socket_missing_is_a_clear_error(tmp_path, certs, dovecot, portier_available):
    p = Portier(tmp_path / "p", users=users(dovecot), certs=certs, listeners=IMAP,
                settings={"log": {"target": "syslog",
                                  "syslog_socket": str(tmp_path / "no-such.sock")}})
    p.write_config()
    r = subprocess.run([str(portier_bin()), "-c", str(p.conf_path)], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert "cannot connect to syslog socket" in r.stderr and "no-such.sock" in r.stderr


def test_full_syslog_socket_drops_lines_and_never_blocks(tmp_path, certs, dovecot,
                                                         portier_available):
    # Nobody reads the socket at first: its queue (net.unix.max_dgram_qlen,
    # 10 by default) fills up; logins must go on, the lines are dropped and
    # counted, and the count is reported once the socket drains.
    sl = NotifySocket(start=False)
    try:
        p, proc = start_syslog_portier(tmp_path, certs, dovecot, sl)
        try:
            # The port is ephemeral: read its "Listening" line, leave the rest queued.
            sl.sock.settimeout(10)
            first = sl.sock.recv(65536).decode()
            port = int(re.search(r"Listening on 127\.0\.0\.1:(\d+)", first)[1])
            qlen = int(open("/proc/sys/net/unix/max_dgram_qlen").read())
            for i in range(qlen + 5):   # at least one line each
                assert login(port, "user1", f"wrong-Pw-{i}")[-1].startswith(b"a NO")
            sl.start()
            # Await the drain (the full queue holds qlen or qlen + 1 datagrams),
            # then one more line: it finds room, and the report precedes it.
            sl.wait_raw(r"", since=qlen - 2)
            proc.send_signal(signal.SIGHUP)
            sl.wait_raw(r"portier: Warning: \d+ log lines dropped: the syslog socket's "
                        r"queue was full")
            sl.wait_raw(r"portier: Info: Config reloaded")
        finally:
            rc, err = stop(proc)
        assert rc == 0, err
    finally:
        sl.close()


def test_journal_stderr_gets_priority_prefix_and_no_date(tmp_path, certs, dovecot,
                                                         portier_available):
    # Under systemd, stderr is a journal stream named by JOURNAL_STREAM=dev:ino.
    p = Portier(tmp_path / "p", users=users(dovecot), certs=certs, listeners=IMAP)
    p.write_config()
    log = tmp_path / "stderr.log"
    with open(log, "wb") as f:
        st = os.fstat(f.fileno())
        proc = subprocess.Popen([str(portier_bin()), "-c", str(p.conf_path)], stderr=f,
                                env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        try:
            FileLog(log).wait_for(r"portier: Info: Ready$")
        finally:
            rc, _ = stop(proc)
    assert rc == 0
    lines = log.read_text().splitlines()
    assert "<6>portier: Info: Ready" in lines, lines
    assert any(re.fullmatch(r"<6>portier: Info: Listening on 127\.0\.0\.1:\d+ \(imap, tls=none\)",
                            line) for line in lines), lines
