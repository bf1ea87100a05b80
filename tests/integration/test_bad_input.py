"""Hostile or broken clients in the pre-login phase.  After each case the
proxy must still be alive and a normal login on a fresh connection must work.
"""
from __future__ import annotations

import random
import socket
import ssl

import pytest

from tests.support.accounts import BACKEND_USERS
from tests.support.imap_client import RawIMAP, imap_connect
from tests.support.portier import User, proxy

P1 = BACKEND_USERS["user1"]
TOO_MANY = b"* BYE Too many invalid IMAP commands."


@pytest.fixture(scope="module")
def px(module_portier_factory, dovecot):
    return module_portier_factory([User("user1", P1, proxy(dovecot.ports["imap"]))])


@pytest.fixture(autouse=True)
def still_works_afterwards(request, px):
    yield
    assert px.alive(), f"portier died:\n{px.log.text()}"
    c = imap_connect(px.port("imap", "none"))
    assert c.login("user1", P1)[0] == "OK"
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def open_raw(px, **kw) -> RawIMAP:
    return RawIMAP(px.port("imap", "none"), **kw)


def drain(c: RawIMAP, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Read until the proxy closes the connection or stays quiet for
    `timeout`.  Returns (data, closed)."""
    data = c.read_until_closed(timeout=timeout, quiet_ok=True)
    return data, c.closed


def test_three_invalid_commands_disconnect(px):
    with open_raw(px) as c:
        for i in range(2):
            c.send(f"x{i} FROBNICATE\r\n")
            assert c.readline().startswith(f"x{i} BAD".encode())
        c.send("x2 FROBNICATE\r\n")
        rest = c.readline()
        while rest.startswith(b"x2 "):
            rest = c.readline()
        assert rest == TOO_MANY
        c.read_until_closed(timeout=5)


def test_overlong_command_line(px):
    with open_raw(px) as c:
        try:
            c.send(b"a LOGIN " + b"x" * 200_000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, closed = drain(c)
        # A BAD/BYE or a plain close is fine; the proxy must neither buffer
        # it forever in silence nor try to authenticate it.
        assert b"a OK" not in data
        assert closed or b"BAD" in data or b"BYE" in data, data


def test_binary_garbage(px):
    rng = random.Random(42)
    junk = bytes(rng.randrange(256) for _ in range(4096))
    with open_raw(px) as c:
        try:
            for _ in range(4):
                c.send(junk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, closed = drain(c)
        assert b" OK " not in data
        assert closed and TOO_MANY in data, data


def test_nul_bytes_in_login(px):
    with open_raw(px) as c:
        lines = c.command("a", b'LOGIN "user1\x00" "' + P1.encode() + b'"')
        assert not lines[-1].startswith(b"a OK"), lines


def test_unterminated_literal_then_disconnect(px):
    with open_raw(px) as c:
        c.send(b"a LOGIN {100}\r\n")
        assert c.readline().startswith(b"+")
        c.send(b"only-a-few-bytes")
    # and a literal that claims to be enormous
    with open_raw(px) as c:
        c.send(b"b LOGIN {4294967296}\r\n")
        data, closed = drain(c, timeout=2)
        assert not data.startswith(b"+"), "accepted a 4 GiB literal"
        assert closed or b"b BAD" in data or b"BYE" in data, data


def test_early_disconnects(px):
    for payload in (b"", b"a LOG", b"a LOGIN user1", b"a LOGIN user1 {5}\r\n"):
        s = socket.create_connection(("127.0.0.1", px.port("imap", "none")), timeout=5)
        if payload:
            s.sendall(payload)
        s.close()
    # Disconnect right after sending a complete LOGIN (proxying in progress).
    s = socket.create_connection(("127.0.0.1", px.port("imap", "none")), timeout=5)
    s.recv(1000)
    s.sendall(f'a LOGIN user1 "{P1}"\r\n'.encode())
    s.close()
    # Reset instead of FIN.
    s = socket.create_connection(("127.0.0.1", px.port("imap", "none")), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def test_plaintext_on_implicit_tls_port(px):
    s = socket.create_connection(("127.0.0.1", px.port("imap", "implicit")), timeout=5)
    s.sendall(b"a LOGIN user1 pw\r\n")
    try:
        data = s.recv(1000)
        while data and b"a OK" not in data:
            data = s.recv(1000)
    except (ConnectionResetError, socket.timeout):
        data = b""
    assert b"a OK" not in data
    s.close()


def test_garbage_tls_handshake_after_starttls(px):
    with RawIMAP(px.port("imap", "starttls")) as c:
        assert c.command("s", "STARTTLS")[-1].startswith(b"s OK")
        c.send(b"\x16\x03\x01\x00\xff" + b"\x00" * 300)
        data, closed = drain(c)
        assert closed, "bogus TLS handshake did not end the connection"


def test_tls_client_hello_then_silence_is_not_fatal(px):
    ctx = ssl.create_default_context(cafile=str(px.certs.ca))
    s = socket.create_connection(("127.0.0.1", px.port("imap", "implicit")), timeout=5)
    t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    t.recv(1000)   # banner
    t.close()


def test_starttls_twice_and_commands_after_starttls(px):
    with RawIMAP(px.port("imap", "starttls")) as c:
        c.starttls(px.certs.ca)
        lines = c.command("t", "STARTTLS")
        assert lines[-1].startswith(b"t BAD") or lines[-1].startswith(b"t NO"), lines
        assert c.command("l", f'LOGIN user1 "{P1}"')[-1].startswith(b"l OK")
