"""Readiness waits without EPOLL_CTL_MOD (src/net/readiness.hpp) lose no wake-up.

portier skips Asio's re-registration of a socket before a wait only where
the socket is proven drained (EAGAIN, a fresh descriptor). These cases are
the ones a wrong proof would hang: bytes and FIN arriving together (one
edge-triggered event for both), a backend that greets late after a deferred
connect, a refused deferred connect, a client that pipelines before the
banner. Each is repeated, single worker, with short timeouts.
"""
from __future__ import annotations

import socket
import time

from tests.support import backend_scripts as bs
from tests.support import fake_backend as fb
from tests.support.imap_client import RawIMAP
from tests.support.portier import User, proxy

USER, PW = "u", "u-client-Pw-42"
ROUNDS = 25


def _login(px) -> RawIMAP:
    c = RawIMAP(px.port("imap", "none"), timeout=3)
    lines = c.command("a", f'LOGIN {USER} "{PW}"')
    assert lines[-1].startswith(b"a OK"), lines
    return c


def test_backend_reply_and_close_together_reach_the_client(make_portier, make_fake):
    # The fake answers LOGOUT and closes at once: the reply and the FIN come
    # in one burst, so one event announces both. The client must get both.
    fake = make_fake(bs.imap_login_ok())
    px = make_portier([User(USER, PW, proxy(fake.port))], settings={"server": {"workers": 1}})
    for _ in range(ROUNDS):
        c = _login(px)
        c.send("b LOGOUT\r\n")
        t0 = time.monotonic()
        rest = c.read_until_closed(timeout=3)
        assert b"b OK Logout completed." in rest
        assert time.monotonic() - t0 < 2
        c.close()


def test_client_command_and_close_together_reach_the_backend(make_portier, make_fake):
    # The client sends a command and its FIN together: the backend must see
    # the command and then the end of stream (the relay passes the half-close on).
    fake = make_fake(bs.imap_login_ok())
    px = make_portier([User(USER, PW, proxy(fake.port))], settings={"server": {"workers": 1}})
    for i in range(ROUNDS):
        c = _login(px)
        c.sock.sendall(f"n{i} NOOP\r\n".encode())
        c.sock.shutdown(socket.SHUT_WR)
        rest = c.read_until_closed(timeout=3)
        assert f"n{i} OK NOOP completed by fake backend.".encode() in rest
        c.close()
    fake.wait_for_connections(ROUNDS)


def test_late_banner_after_deferred_connect(make_portier, make_fake):
    # The first backend read waits without a probe while the connect runs;
    # a banner that comes late must still wake it.
    script = [fb.sleep(0.2)] + bs.imap_login_ok()
    fake = make_fake(script)
    px = make_portier([User(USER, PW, proxy(fake.port))], settings={"server": {"workers": 1}})
    for _ in range(5):
        t0 = time.monotonic()
        c = _login(px)
        assert time.monotonic() - t0 < 2
        c.close()


def test_refused_deferred_connect_is_a_connect_failure(make_portier):
    # Nothing listens: the deferred connect fails on the banner read and is
    # reported exactly as an awaited connect (text and proxy state).
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    px = make_portier([User(USER, PW, proxy(port, proxy_timeout="2"))],
                      settings={"login": {"proxy_max_reconnects": 0}})
    c = RawIMAP(px.port("imap", "none"), timeout=5)
    lines = c.command("a", f'LOGIN {USER} "{PW}"')
    assert lines[-1].startswith(b"a NO"), lines
    px.log.wait_for(rf"connect\(127\.0\.0\.1, {port}\) failed: Connection refused \(after 0 secs", timeout=3)
    c.close()


def test_client_pipelining_before_the_banner(make_portier, make_fake):
    # Bytes that arrive before portier's first wait on a fresh socket raise
    # their event at registration (EPOLL_CTL_ADD): no wait may miss them.
    fake = make_fake(bs.imap_login_ok())
    px = make_portier([User(USER, PW, proxy(fake.port))], settings={"server": {"workers": 1}})
    for i in range(ROUNDS):
        s = socket.create_connection(("127.0.0.1", px.port("imap", "none")), timeout=3)
        s.sendall(f'a LOGIN {USER} "{PW}"\r\nb{i} NOOP\r\n'.encode())
        data = b""
        while f"b{i} OK".encode() not in data:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
        s.close()
