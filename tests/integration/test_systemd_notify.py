"""systemd's notify protocol (Type=notify): READY=1 only once the listeners
accept, RELOADING=1 + MONOTONIC_USEC then READY=1 around SIGHUP, STOPPING=1
on SIGTERM, STATUS= with the connection count, WATCHDOG=1 pings when
WATCHDOG_USEC is set for this process. The harness plays the service
manager: an AF_UNIX datagram socket passed as NOTIFY_SOCKET
(tests/support/sd_notify.py)."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from tests.support.portier import Listener, Portier, User, portier_bin, proxy
from tests.support.sd_notify import NotifySocket
from tests.support.util import free_port

USERS = [User("user1", "notify-Pw-1", proxy(143))]


@pytest.fixture
def ns():
    s = NotifySocket()
    yield s
    s.close()


def greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        return c.recv(200)


def test_ready_only_once_the_port_accepts(make_portier, ns):
    port = free_port()
    seen: dict[str, object] = {}

    def on_message(m):
        # At the moment READY=1 arrives, the listener must already answer.
        if m.get("READY") == "1" and "greeting" not in seen:
            try:
                seen["greeting"] = greeting(port)
            except OSError as e:
                seen["greeting"] = e
    ns.on_message = on_message
    make_portier(USERS, listeners=[Listener("imap", "none", port)], env=ns.env())
    ns.wait_for("READY", "1")
    assert isinstance(seen["greeting"], bytes) and seen["greeting"].startswith(b"* OK"), seen
    first = ns.all()[0]
    assert first.get("READY") == "1", f"READY=1 must be the first notification: {ns.all()}"
    assert ns.wait_for("STATUS")["STATUS"] == "0 connections"


def test_no_ready_when_a_listener_cannot_bind(tmp_path, certs, portier_available, ns):
    # No SO_REUSEPORT on the blocker: portier's bind fails.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    p = Portier(tmp_path / "p", users=USERS, certs=certs,
                listeners=[Listener("imap", "none", port)])
    p.write_config()
    try:
        r = subprocess.run([str(portier_bin()), "-c", str(p.conf_path)], capture_output=True,
                           text=True, timeout=10, env={**os.environ, **ns.env()})
    finally:
        blocker.close()
    assert r.returncode == 1, r.stderr
    assert re.search(r"bind\(127\.0\.0\.1, \d+\) failed", r.stderr), r.stderr
    # The process has exited: anything it sent is already queued.
    assert not any(m.get("READY") == "1" for m in ns.all()), ns.all()


def test_reload_sends_reloading_then_ready(make_portier, ns):
    p = make_portier(USERS, listeners=[Listener("imap", "none")], env=ns.env())
    ns.wait_for("READY", "1")
    mark = ns.mark()
    before = time.monotonic_ns() // 1000
    p.signal(signal.SIGHUP)
    i = ns.index_of("RELOADING", "1", since=mark)
    m = ns.all()[i]
    usec = int(m["MONOTONIC_USEC"])   # CLOCK_MONOTONIC, as systemd requires
    assert before <= usec <= time.monotonic_ns() // 1000
    j = ns.index_of("READY", "1", since=i + 1)
    p.log.wait_for(r"portier: Info: Config reloaded")
    status = ns.wait_for("STATUS", since=j + 1)["STATUS"]
    assert "failed" not in status

    # A broken config: still RELOADING=1 then READY=1, and the status says so.
    good = p.conf_path.read_text()
    p.conf_path.write_text(good + "\n[bogus]\n")
    mark = ns.mark()
    p.signal(signal.SIGHUP)
    i = ns.index_of("RELOADING", "1", since=mark)
    j = ns.index_of("READY", "1", since=i + 1)
    st = ns.wait_for("STATUS", since=j + 1)
    assert "last reload failed" in st["STATUS"], ns.all()[mark:]
    p.log.wait_for(r"Config reload failed, keeping the old config")
    p.conf_path.write_text(good)


def test_stopping_on_sigterm(make_portier, ns):
    p = make_portier(USERS, listeners=[Listener("imap", "none")], env=ns.env())
    ns.wait_for("READY", "1")
    mark = ns.mark()
    p.stop()
    ns.wait_for("STOPPING", "1", since=mark, timeout=5)


def test_status_counts_connections(make_portier, ns):
    # A watchdog makes portier tick every 50 ms; STATUS follows the count at
    # each tick instead of every 5 s.
    p = make_portier(USERS, listeners=[Listener("imap", "none")],
                     env=ns.env(WATCHDOG_USEC="200000"))
    ns.wait_for("STATUS", "0 connections")
    port = p.port("imap", "none")
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    try:
        for c in clients:
            assert c.recv(100).startswith(b"* OK")
        ns.wait_for("STATUS", "2 connections", timeout=5)
    finally:
        for c in clients:
            c.close()
    ns.wait_for("STATUS", "0 connections", since=ns.index_of("STATUS", "2 connections"),
                timeout=5)


def test_watchdog_pings(make_portier, ns):
    p = make_portier(USERS, listeners=[Listener("imap", "none")],
                     env=ns.env(WATCHDOG_USEC="400000"))
    p.log.wait_for(r"Service watchdog enabled: pinging every 100 ms")
    mark = ns.mark()
    for _ in range(4):
        mark = ns.index_of("WATCHDOG", "1", since=mark) + 1
    with ns.cond:
        times = [t for t, m in ns.messages if m.get("WATCHDOG") == "1"]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # Every quarter of WATCHDOG_USEC (100 ms), and never a gap the manager
    # would kill for (400 ms), even on a loaded CI machine.
    assert min(gaps) > 0.05 and max(gaps) < 0.4, gaps


def test_watchdog_for_another_pid_is_ignored(make_portier, ns):
    # WATCHDOG_PID names a different process: the settings are not ours.
    p = make_portier(USERS, listeners=[Listener("imap", "none")],
                     env=ns.env(WATCHDOG_USEC="200000", WATCHDOG_PID="1"))
    ns.wait_for("READY", "1")
    assert not p.log.find(r"Service watchdog enabled")
    p.stop()
    assert not any("WATCHDOG" in m for m in ns.all()), ns.all()
