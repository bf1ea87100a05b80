"""TLS stream and relay robustness (issue 8 items 1 and 9, and the relay's
pipe fallback).

- A partial TLS record (three bytes of a record header, then silence) must
  park the connection on the socket, not spin the worker: on a single-worker
  portier other clients keep logging in with normal latency, the stalled
  connection is closed by client_timeout (client leg) or proxy_timeout
  (backend leg), and portier burns no CPU meanwhile.
- A relayed TLS stream fed one byte per TCP segment costs CPU in proportion
  to the bytes, not to the wall time.
- Half-close: a client that sends a command and then shuts down its sending
  side still gets the whole reply (plain and TLS legs); the other direction
  is bounded by relay_linger.
- When no pipe can be opened (EMFILE), a plaintext relay copies instead of
  dying.
"""
from __future__ import annotations

import os
import resource
import socket
import threading
import time

import pytest

from tests.support import backend_scripts as bs
from tests.support import fake_backend as fb
from tests.support.accounts import BACKEND_USERS
from tests.support.imap_client import RawIMAP
from tests.support.portier import Listener, User, proxy
from tests.support.tlsbio import BioTLS

P1 = BACKEND_USERS["user1"]
PW = "tls-stream-Pw-93"
PARTIAL_RECORD = b"\x17\x03\x03"   # an application-data record header, cut short
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK   # utime + stime


def timed_login(port: int, user: str, pw: str, timeout: float = 3.0) -> float:
    t0 = time.monotonic()
    with RawIMAP(port, timeout=timeout) as c:
        reply = c.command("a", f'LOGIN {user} "{pw}"')[-1]
        assert reply.startswith(b"a OK"), reply
        c.command("z", "LOGOUT")
    return time.monotonic() - t0


def single_worker(make_portier, users, **login):
    settings = {"server": {"workers": 1},
                "login": {"client_timeout": "3s", **login}}
    listeners = (Listener("imap", "none"), Listener("imap", "starttls"),
                 Listener("imap", "implicit"), Listener("pop3", "starttls"))
    return make_portier(users, settings=settings, listeners=listeners)


def tls_client(px, kind: str) -> BioTLS:
    """A finished TLS handshake on the listener kind, nothing sent after it."""
    if kind == "imap-implicit":
        return BioTLS.connect(px.port("imap", "implicit"), px.certs.ca)
    if kind == "imap-starttls":
        s = socket.create_connection(("127.0.0.1", px.port("imap", "starttls")), timeout=5)
        f = s.makefile("rb")
        assert f.readline().startswith(b"* OK")
        s.sendall(b"a STARTTLS\r\n")
        assert f.readline().startswith(b"a OK")
        return BioTLS.over(s, px.certs.ca)
    if kind == "pop3-starttls":
        s = socket.create_connection(("127.0.0.1", px.port("pop3", "starttls")), timeout=5)
        f = s.makefile("rb")
        assert f.readline().startswith(b"+OK")
        s.sendall(b"STLS\r\n")
        assert f.readline().startswith(b"+OK")
        return BioTLS.over(s, px.certs.ca)
    raise ValueError(kind)


def wait_closed(sock: socket.socket, timeout: float) -> float:
    """Seconds until the peer closes (EOF or reset); drains what arrives."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < timeout:
        try:
            if not sock.recv(65536):
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - t0
    raise AssertionError(f"connection still open after {timeout}s")


# ===================================================== item 1: partial records
@pytest.mark.parametrize("kind", ["imap-implicit", "imap-starttls", "pop3-starttls"])
def test_partial_tls_record_does_not_stall_the_worker(make_portier, dovecot, kind):
    px = single_worker(make_portier, [User("user1", P1, proxy(dovecot.ports["imap"]))])
    plain = px.port("imap", "none")
    timed_login(plain, "user1", P1)                     # warm up
    t = tls_client(px, kind)
    t.send_raw(PARTIAL_RECORD)
    cpu0, wall0 = cpu_seconds(px.proc.pid), time.monotonic()
    # Other clients on the only worker keep their normal latency.
    lat = [timed_login(plain, "user1", P1) for _ in range(3)]
    assert max(lat) < 1.0, f"logins took {lat} while a partial record was pending"
    # The stalled connection ends by client_timeout (3 s), not never.
    waited = wait_closed(t.sock, timeout=8)
    assert waited < 6, waited
    cpu = cpu_seconds(px.proc.pid) - cpu0
    wall = time.monotonic() - wall0
    assert cpu < 0.5 * wall, f"portier used {cpu:.2f}s CPU in {wall:.2f}s (spinning?)"
    px.log.wait_for(r"Disconnected: Inactivity")
    t.close()


def test_partial_tls_record_from_backend_does_not_stall_the_worker(make_portier, make_fake,
                                                                   dovecot, certs):
    def stall_mid_record(c: fb.Conn) -> None:
        os.write(c.sock.fileno(), PARTIAL_RECORD)   # raw bytes under the TLS layer

    fake = make_fake([fb.call(stall_mid_record), fb.stall()],
                     tls=(str(certs.cert), str(certs.key)))
    px = single_worker(make_portier, [
        User("user1", P1, proxy(dovecot.ports["imap"])),
        User("tlsback", PW, proxy(fake.port, ssl="yes", proxy_timeout="2"))],
        proxy_max_reconnects=0)
    plain = px.port("imap", "none")
    c = RawIMAP(plain)
    c.send(f'a LOGIN tlsback "{PW}"\r\n')
    fake.wait_for_connections(1)
    cpu0, wall0 = cpu_seconds(px.proc.pid), time.monotonic()
    lat = [timed_login(plain, "user1", P1) for _ in range(3)]
    assert max(lat) < 1.0, f"logins took {lat} while a backend record was pending"
    reply = c.read_until_tagged("a")[-1]
    assert reply.startswith(b"a NO"), reply
    assert time.monotonic() - wall0 < 5
    cpu = cpu_seconds(px.proc.pid) - cpu0
    wall = time.monotonic() - wall0
    assert cpu < 0.5 * wall, f"portier used {cpu:.2f}s CPU in {wall:.2f}s (spinning?)"
    px.log.wait_for(r"proxy\(tlsback,.*Login timed out in state=")
    c.close()


def test_relay_cpu_is_proportional_to_bytes_for_split_records(make_portier, dovecot):
    """After login, every TLS record from the client arrives one byte per TCP
    segment; portier must sleep between the bytes."""
    px = make_portier([User("user1", P1, proxy(dovecot.ports["imap"]))],
                      settings={"server": {"workers": 1}})
    t = BioTLS.connect(px.port("imap", "implicit"), px.certs.ca)
    t.read_until(b"\r\n")
    t.send(f'a LOGIN user1 "{P1}"\r\n'.encode())
    t.read_until(b"a OK")
    px.log.wait_for(r"proxy\(user1,.*Started proxying")
    cpu0, wall0 = cpu_seconds(px.proc.pid), time.monotonic()
    sent = 0
    for i in range(80):
        rec = t.ciphertext(f"n{i} NOOP\r\n".encode())
        for b in rec:
            t.send_raw(bytes([b]))
            sent += 1
            time.sleep(0.001)
        t.read_until(f"n{i} OK".encode())
    cpu = cpu_seconds(px.proc.pid) - cpu0
    wall = time.monotonic() - wall0
    # ~1.5k one-byte segments: a sleeping relay needs a few ms of CPU per
    # hundred of them (more under ASan); a spinning one burns the wall time.
    assert wall > 1.0, wall
    assert cpu < 0.3 * wall, f"{cpu:.2f}s CPU for {sent} bytes in {wall:.2f}s"
    t.send(b"z LOGOUT\r\n")
    t.read_until(b"z OK")
    t.close()


# ===================================================== item 9: half-close
BIG = 4 * 1024 * 1024


def half_close_script(tls_cert=None):
    """IMAP login, then: read one command, answer with 4 MiB + tagged OK,
    wait for portier's half-close (EOF), then close."""
    def big_reply(c: fb.Conn) -> None:
        line = c.read_line(timeout=10)
        assert line and line.startswith(b"f FETCH"), line
        body = b"x" * BIG
        c.write(b"* 1 FETCH (BODY[] {%d}\r\n" % len(body) + body + b")\r\nf OK Fetch completed.\r\n")

    return [bs.imap_banner(), fb.expect_line(rb"^I ID \("), fb.expect_line(rb"^L LOGIN "),
            bs.imap_id_reply(), fb.send_line("L OK Logged in"), fb.call(big_reply),
            fb.stall(seconds=20), fb.close()]


@pytest.mark.parametrize("legs", ["plain-plain", "tls-plain", "plain-tls"])
def test_half_close_delivers_the_whole_reply(make_portier, make_fake, certs, legs):
    client_tls, backend_tls = legs.split("-")
    fake = make_fake(half_close_script(),
                     tls=(str(certs.cert), str(certs.key)) if backend_tls == "tls" else None)
    fields = {"ssl": "yes"} if backend_tls == "tls" else {}
    px = make_portier([User("hc", PW, proxy(fake.port, **fields))])
    cmd = b"f FETCH 1 BODY[]\r\n"
    if client_tls == "tls":
        t = BioTLS.connect(px.port("imap", "implicit"), px.certs.ca)
        t.read_until(b"\r\n")
        t.send(f'a LOGIN hc "{PW}"\r\n'.encode())
        t.read_until(b"a OK")
        t.send(cmd)
        t.close_notify()
        t.shutdown_write()
        data = t.read_all(timeout=20)
        t.close()
    else:
        c = RawIMAP(px.port("imap", "none"))
        c.command("a", f'LOGIN hc "{PW}"')
        c.send(cmd)
        c.sock.shutdown(socket.SHUT_WR)
        data = c.read_until_closed(timeout=20)
        c.close()
    assert data.endswith(b"f OK Fetch completed.\r\n"), (len(data), data[-80:])
    assert len(data) > BIG
    conn = fake.wait_done(1, timeout=10)[0]
    assert conn.peer_closed, conn.events     # the half-close reached the backend
    m = px.log.wait_for(r"proxy\(hc,[^)]*\): Disconnected by client \(\d+s idle, in=\d+, "
                        r"out=(\d+)\)")
    assert int(m[1]) > BIG, m.group(0)


def test_half_close_is_bounded_by_relay_linger(make_portier, make_fake):
    """The client half-closes, the backend never answers nor closes: the
    relay ends after relay_linger of silence."""
    fake = make_fake([bs.imap_banner(), fb.expect_line(rb"^I ID \("),
                      fb.expect_line(rb"^L LOGIN "), bs.imap_id_reply(),
                      fb.send_line("L OK Logged in"), fb.sleep(30)])
    px = make_portier([User("hc", PW, proxy(fake.port))],
                      settings={"login": {"relay_linger": "1s"}})
    c = RawIMAP(px.port("imap", "none"))
    c.command("a", f'LOGIN hc "{PW}"')
    c.send(b"n NOOP\r\n")
    c.sock.shutdown(socket.SHUT_WR)
    t0 = time.monotonic()
    c.read_until_closed(timeout=10)
    assert 0.8 <= time.monotonic() - t0 < 4
    px.log.wait_for(r"proxy\(hc,[^)]*\): Disconnected by client \(")
    c.close()


# ===================================================== pipe2() failure
def test_relay_copies_when_no_pipe_can_be_opened(make_portier, make_fake):
    fake = make_fake(bs.imap_login_ok())
    px = make_portier([User("pf", PW, proxy(fake.port))], settings={"server": {"workers": 1}})
    c = RawIMAP(px.port("imap", "none"))
    assert c.command("a", f'LOGIN pf "{PW}"')[-1].startswith(b"a OK")
    pid = px.proc.pid
    open_fds = len(os.listdir(f"/proc/{pid}/fd"))
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    # No new descriptor can be opened now: pipe2() fails with EMFILE.
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds, old[1]))
    try:
        # Commands bigger than the relay's 16 KiB copy buffer: a full read
        # switches a plaintext direction to splice, which needs a pipe.
        for i in range(3):
            assert c.command(f"n{i}", "NOOP " + "x" * 40000)[-1] == \
                f"n{i} OK NOOP completed by fake backend.".encode()
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    c.command("z", "LOGOUT")
    c.close()
    assert not px.log.find(r"pipe2\(\) failed")
