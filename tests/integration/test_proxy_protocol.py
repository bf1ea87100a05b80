"""PROXY protocol v1/v2 in and out (issue 11, docs/PROXY_PROTOCOL.md).

Inbound: a real HAProxy 2.6 (tests/support/haproxy.py, private config on
loopback) in front of portier's `haproxy = true` listeners; clients connect
from 127.0.0.5, HAProxy from 127.0.0.1, and portier's log and the real
Dovecot backend's log (which learns the address by ID/XCLIENT forwarding)
must both say rip=127.0.0.5. Refusals (untrusted sender, garbage, slowloris,
truncated v2, LOCAL) are driven with raw sockets straight at portier — a
misbehaving sender is fault injection, HAProxy never sends those.

Outbound: a Dovecot listener with `haproxy = yes` behind portier with
`proxy_protocol = v1|v2` (passdb field or [backend] setting) and
`proxy_not_trusted` (no ID/XCLIENT): Dovecot's log shows the client address
it could only have learnt from the PROXY header.
"""
from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import ssl
import struct
import time

import pytest

from tests.support.accounts import BACKEND_USERS, MASTER_USERS
from tests.support.dovecot import DovecotBackend
from tests.support.haproxy import HAProxy, Route
from tests.support.imap_client import client_ssl_context, imap_connect
from tests.support.portier import Listener, User, proxy
from tests.integration.test_managesieve import RawSieve

P1 = BACKEND_USERS["user1"]
CLIENT = "127.0.0.5"
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
HP_LISTENERS = (Listener("imap", "none", haproxy=True), Listener("imap", "starttls", haproxy=True),
                Listener("pop3", "none", haproxy=True), Listener("submission", "none", haproxy=True),
                Listener("imap", "implicit", haproxy=True), Listener("imap", "none"),
                Listener("managesieve", "none", haproxy=True))
HP_SETTINGS = {"login": {"haproxy_trusted_networks": ["127.0.0.1/32"], "haproxy_timeout": "500ms"},
               "log": {"level": "debug"}}


def v2(cmd: int, fam: int, body: bytes) -> bytes:
    return SIG + bytes([0x20 | cmd, fam]) + struct.pack(">H", len(body)) + body


def inet(src: str, sport: int, dst: str = "127.0.0.1", dport: int = 143) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport)


@pytest.fixture(scope="module")
def dc(certs):
    d = DovecotBackend(users=BACKEND_USERS, master_users=MASTER_USERS, certs=certs, haproxy=True)
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def px(module_portier_factory, dc):
    users = [
        User("user1", P1, proxy(dc.ports["imap"])),
        User("popper", P1, proxy(dc.ports["pop3"], destuser="user1")),
        User("sub", P1, proxy(dc.ports["submission"], destuser="user1")),
        User("sieveu", P1, proxy(dc.ports["sieve"], destuser="user1")),
        # Outbound PROXY headers, no ID/XCLIENT: only the header tells Dovecot.
        User("out-v2", P1, proxy(dc.ports["imap_haproxy"], destuser="user1", proxy_protocol="v2",
                                 proxy_not_trusted=True)),
        User("out-v1", P1, proxy(dc.ports["pop3_haproxy"], destuser="user1", proxy_protocol="v1",
                                 proxy_not_trusted=True)),
        User("out-bad", P1, proxy(dc.ports["imap_haproxy"], destuser="user1", proxy_protocol="v3")),
    ]
    return module_portier_factory(users, listeners=HP_LISTENERS, settings=HP_SETTINGS)


@pytest.fixture(scope="module")
def pem(certs, tmp_path_factory):
    p = tmp_path_factory.mktemp("haproxy-pem") / "server.pem"
    p.write_bytes(certs.cert.read_bytes() + certs.key.read_bytes())
    return str(p)


@pytest.fixture(scope="module")
def hp(px, pem, tmp_path_factory):
    routes = [
        Route("imap2", px.port("imap", "none", haproxy=True), "send-proxy-v2"),
        Route("imap1", px.port("imap", "none", haproxy=True), "send-proxy"),
        Route("pop3v1", px.port("pop3", "none", haproxy=True), "send-proxy"),
        Route("pop3v2", px.port("pop3", "none", haproxy=True), "send-proxy-v2"),
        Route("sub2", px.port("submission", "none", haproxy=True), "send-proxy-v2"),
        Route("sieve1", px.port("managesieve", "none", haproxy=True), "send-proxy"),
        # STARTTLS listener: plain through HAProxy, and TLS terminated at HAProxy.
        Route("st_plain", px.port("imap", "starttls", haproxy=True), "send-proxy-v2"),
        Route("st_tls", px.port("imap", "starttls", haproxy=True), "send-proxy-v2-ssl",
              ssl_pem=pem),
        # TLS passed through: portier's implicit-TLS listener terminates it.
        Route("imaps_pass", px.port("imap", "implicit", haproxy=True), "send-proxy-v2"),
    ]
    h = HAProxy(tmp_path_factory.mktemp("haproxy"), routes)
    h.start()
    yield h
    h.stop()


def rip_lines(log_text: str, user: str) -> list[str]:
    return [ln for ln in log_text.splitlines() if f"user=<{user}>" in ln and "rip=" in ln]


def closed_without_banner(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything until EOF (or a reset): must be nothing."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return data


def read_until(sock: socket.socket, marker: bytes, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return data


def raw(px, proto="imap", tls="none", source="127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", px.port(proto, tls, haproxy=True)), 5,
                                    source_address=(source, 0))


# ----------------------------------------------------------- through HAProxy
@pytest.mark.parametrize("route", ["imap2", "imap1"])
def test_imap_client_address_through_haproxy(px, hp, dc, route):
    mark, dmark = px.log.mark(), dc.log_mark()
    c = imap_connect(hp.port(route), source=CLIENT)
    c.login("user1", P1)
    assert c.select("INBOX")[0] == "OK"
    c.logout()
    line = px.log.wait_for(r"imap-login: Info: proxy\(user1,.*Started proxying.*", since=mark)
    assert f"rip={CLIENT}," in line.string and "lip=127.0.0.1" in line.string
    assert ", TLS" not in line.string
    d = dc.wait_for_log(r"imap-login: Info: Login: user=<user1>.*rip=127\.0\.0\.5", since=dmark)
    assert d


def test_pop3_v1_and_v2_through_haproxy(px, hp, dc):
    for route in ("pop3v1", "pop3v2"):
        mark, dmark = px.log.mark(), dc.log_mark()
        p = _pop3_from(hp.port(route), CLIENT)
        p.user("popper")
        p.pass_(P1)
        p.stat()
        p.quit()
        line = px.log.wait_for(r"pop3-login: Info: proxy\(popper,.*Started proxying.*", since=mark)
        assert f"rip={CLIENT}," in line.string
        dc.wait_for_log(r"pop3-login: Info: Login: user=<user1>.*rip=127\.0\.0\.5", since=dmark)


class _SrcPOP3(poplib.POP3):
    def __init__(self, host, port, source):
        self._source = source
        super().__init__(host, port, timeout=10)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))


def _pop3_from(port: int, source: str) -> poplib.POP3:
    return _SrcPOP3("127.0.0.1", port, source)


def test_submission_client_address_through_haproxy(px, hp, dc):
    mark, dmark = px.log.mark(), dc.log_mark()
    s = smtplib.SMTP("127.0.0.1", hp.port("sub2"), source_address=(CLIENT, 0), timeout=10)
    s.ehlo("client.test")
    s.login("sub", P1)
    s.quit()
    line = px.log.wait_for(r"submission-login: Info: proxy\(sub,.*Started proxying.*", since=mark)
    assert f"rip={CLIENT}," in line.string
    dc.wait_for_log(r"submission-login: Info: Login: user=<user1>.*rip=127\.0\.0\.5", since=dmark)


def test_managesieve_client_address_through_haproxy(px, hp, dc):
    mark, dmark = px.log.mark(), dc.log_mark()
    with RawSieve(hp.port("sieve1"), source=CLIENT) as c:
        assert c.authenticate("sieveu", P1)[-1].startswith(b"OK"), c.transcript
        c.command("LOGOUT")
    line = px.log.wait_for(r"managesieve-login: Info: proxy\(sieveu,.*Started proxying.*",
                           since=mark)
    assert f"rip={CLIENT}," in line.string
    dc.wait_for_log(r"managesieve-login: Info: Login: user=<user1>.*rip=127\.0\.0\.5",
                    since=dmark)


def test_tls_terminated_at_haproxy_counts_as_tls(make_portier, dc, pem, tmp_path, certs):
    # allow_cleartext = false: plaintext LOGIN is refused unless the session is TLS.
    # 127.0.0.5 must not count as secured by being in trusted_networks.
    settings = {**HP_SETTINGS, "auth": {"allow_cleartext": False},
                "login": {**HP_SETTINGS["login"], "trusted_networks": ["::1/128"]}}
    p = make_portier([User("user1", P1, proxy(dc.ports["imap"]))],
                     listeners=(Listener("imap", "starttls", haproxy=True),), settings=settings)
    port = p.port("imap", "starttls", haproxy=True)
    with HAProxy(tmp_path / "hp", [Route("plain", port, "send-proxy-v2"),
                                   Route("tls", port, "send-proxy-v2-ssl", ssl_pem=pem)]) as h:
        # Plain through HAProxy: STARTTLS offered, LOGIN disabled.
        c = imap_connect(h.port("plain"), source=CLIENT)
        caps = c.capabilities
        assert "STARTTLS" in caps and "LOGINDISABLED" in caps
        c.logout()
        # TLS at HAProxy, PP2_TYPE_SSL with the client bit: TLS for portier.
        mark, dmark = p.log.mark(), dc.log_mark()
        t = imap_connect(h.port("tls"), "implicit", ca=certs.ca, source=CLIENT)
        caps = t.capabilities
        assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps, caps
        t.login("user1", P1)
        t.logout()
        line = p.log.wait_for(r"proxy\(user1,.*Started proxying.*", since=mark)
        assert f"rip={CLIENT}, lip=127.0.0.1, TLS," in line.string
        # The backend hears of it through ID forwarding (x-connected-ip et al.).
        dc.wait_for_log(r"imap-login: Info: Login: user=<user1>.*rip=127\.0\.0\.5", since=dmark)


def test_tls_passthrough_to_implicit_listener(px, hp, certs):
    mark = px.log.mark()
    c = imap_connect(hp.port("imaps_pass"), "implicit", ca=certs.ca, source=CLIENT)
    c.login("user1", P1)
    c.logout()
    line = px.log.wait_for(r"proxy\(user1,.*Started proxying.*", since=mark)
    assert f"rip={CLIENT}," in line.string and ", TLS," in line.string


def test_haproxy_health_checks_are_served_and_quiet(make_portier, dc, tmp_path):
    """send-proxy-v2 health checks carry a v2 LOCAL header: served with the real
    endpoints (a banner check passes), their end logged at debug level only."""
    p = make_portier([User("user1", P1, proxy(dc.ports["imap"]))],
                     listeners=(Listener("imap", "none", haproxy=True),), settings=HP_SETTINGS)
    port = p.port("imap", "none", haproxy=True)
    mark = p.log.mark()
    banner = "    option tcp-check\n    tcp-check expect string *\\ OK\n"
    wrong = "    option tcp-check\n    tcp-check expect string NOT-THE-BANNER\n"
    routes = [Route("tcp", port, "send-proxy-v2", check="check inter 100"),
              Route("banner", port, "send-proxy-v2", check="check inter 100",
                    backend_options=banner),
              Route("wrong", port, "send-proxy-v2", check="check inter 100",
                    backend_options=wrong)]
    with HAProxy(tmp_path / "hp", routes) as h:
        # A handful of checks of each kind (3 routes).
        p.log.wait_for(r"imap-login: Debug: Disconnected: .*no auth attempts.*rip=127\.0\.0\.1,",
                       since=mark, count=12, timeout=15)
        # The control: a check expecting something else fails (so the log
        # would show a failing banner check) ...
        h.log.wait_for(r"Health check for server b_wrong/s_wrong failed", timeout=10)
    # ... while the banner and TCP checks never did.
    failed = [ln for ln in h.log.lines() if "failed" in ln and "s_wrong" not in ln]
    assert not failed, failed
    assert not [ln for ln in p.log.lines(mark)
                if ("Warning" in ln or "Error" in ln or "Info: Disconnected" in ln)]


# ----------------------------------------------------------------- refusals
def test_untrusted_sender_is_refused_without_banner(make_portier, dc):
    p = make_portier([User("user1", P1, proxy(dc.ports["imap"]))],
                     listeners=(Listener("imap", "none", haproxy=True),),
                     settings={"login": {"haproxy_trusted_networks": ["127.0.0.9/32"]}})
    mark = p.log.mark()
    s = raw(p)
    s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 5000 143\r\n")
    assert closed_without_banner(s) == b""
    p.log.wait_for(r"imap-login: Warning: haproxy: Client not trusted \(rip=127\.0\.0\.1\)$",
                   since=mark)


def test_missing_header_garbage_is_refused(px):
    mark = px.log.mark()
    s = raw(px)
    s.sendall(b"a1 LOGIN user1 " + P1.encode() + b"\r\n")
    assert closed_without_banner(s) == b""
    px.log.wait_for(r"imap-login: Warning: haproxy: Client disconnected: Invalid header "
                    r"\(rip=127\.0\.0\.1\)$", since=mark)


def test_bad_v1_line_is_refused(px):
    mark = px.log.mark()
    s = raw(px, "pop3")
    s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 5000 110\n")
    assert closed_without_banner(s) == b""
    px.log.wait_for(r"pop3-login: Warning: haproxy\(v1\): Client disconnected: Line ends with a "
                    r"bare LF \(rip=127\.0\.0\.1\)$", since=mark)


def test_slowloris_header_times_out(px):
    mark = px.log.mark()
    s = raw(px)
    start = time.monotonic()
    header = b"PROXY TCP4 192.0.2.7 127.0.0.1 5000 143\r\n"
    got = b""
    try:
        for i in range(len(header) - 2):
            s.sendall(header[i:i + 1])
            s.settimeout(0.1)
            try:
                chunk = s.recv(100)
                if not chunk:
                    break
                got += chunk
            except socket.timeout:
                pass
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert closed_without_banner(s) == b"" and got == b""
    elapsed = time.monotonic() - start
    assert elapsed < 2.5, elapsed  # haproxy_timeout = 500ms, not the whole trickle
    px.log.wait_for(r"imap-login: Warning: haproxy: Client timed out \(rip=127\.0\.0\.1\)$",
                    since=mark)


def test_truncated_v2_header(px):
    full = v2(1, 0x11, inet("192.0.2.7", 5000))
    # Sender stops: the deadline ends it.
    mark = px.log.mark()
    s = raw(px)
    s.sendall(full[:20])
    assert closed_without_banner(s) == b""
    px.log.wait_for(r"haproxy: Client timed out \(rip=127\.0\.0\.1\)$", since=mark)
    # Sender closes: refused at once.
    mark = px.log.mark()
    s = raw(px)
    s.sendall(full[:20])
    s.shutdown(socket.SHUT_WR)
    assert closed_without_banner(s) == b""
    px.log.wait_for(r"haproxy\(v2\): Client disconnected: Truncated header \(rip=127\.0\.0\.1\)$",
                    since=mark)


def test_v2_unsupported_transport_is_refused(px):
    mark = px.log.mark()
    s = raw(px)
    s.sendall(v2(1, 0x12, inet("192.0.2.7", 5000)))  # DGRAM
    assert closed_without_banner(s) == b""
    px.log.wait_for(r"haproxy\(v2\): Client disconnected: Unsupported transport protocol", since=mark)


def test_v2_local_is_served_with_real_endpoints_and_logged_quietly(px):
    mark = px.log.mark()
    s = raw(px)
    s.sendall(v2(0, 0x00, b""))
    s.settimeout(5)
    assert s.recv(100).startswith(b"* OK ")
    s.close()
    px.log.wait_for(r"imap-login: Debug: Disconnected: .* \(no auth attempts in 0 secs\): "
                    r"user=<>, rip=127\.0\.0\.1, lip=127\.0\.0\.1,", since=mark)
    assert not [ln for ln in px.log.lines(mark) if "Warning" in ln or "Info:" in ln]


def test_v2_local_with_a_login_is_logged_as_usual(px):
    """LOCAL keeps the real endpoints; a login on it is not hidden."""
    mark = px.log.mark()
    s = raw(px)
    s.sendall(v2(0, 0x11, inet("192.0.2.7", 5000)) + b"a1 LOGIN user1 " + P1.encode() + b"\r\n")
    data = read_until(s, b"a1 ")
    assert b"a1 OK" in data, data
    s.close()
    line = px.log.wait_for(r"proxy\(user1,.*Started proxying", since=mark)
    assert "rip=127.0.0.1," in line.string   # not the ignored address block


# --------------------------------------------- header details, straight at portier
def test_pipelined_command_after_header_is_kept(px):
    mark = px.log.mark()
    s = raw(px)
    s.sendall(b"PROXY TCP6 2001:db8::7 ::1 40000 143\r\na1 CAPABILITY\r\n")
    data = read_until(s, b"a1 OK")
    assert data.startswith(b"* OK ") and b"* CAPABILITY " in data
    s.sendall(b"a2 LOGOUT\r\n")
    closed_without_banner(s)
    px.log.wait_for(r"imap-login: Info: Disconnected: Logged out .*rip=2001:db8::7, lip=::1,",
                    since=mark)


def test_tls_client_hello_in_the_same_segment_as_the_header(px, certs):
    """The ClientHello right behind the header stays in the socket for OpenSSL."""
    mark = px.log.mark()
    s = raw(px, "imap", "implicit")
    ctx = client_ssl_context(certs.ca)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    s.sendall(v2(1, 0x11, inet("198.51.100.9", 6000, "127.0.0.1", 993)) + out.read())
    s.settimeout(5)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            if out.pending:
                s.sendall(out.read())
            chunk = s.recv(65536)
            assert chunk, "closed during the handshake"
            inc.write(chunk)
    if out.pending:
        s.sendall(out.read())
    banner = b""
    while b"\r\n" not in banner:
        try:
            banner += tls.read(4096)
        except ssl.SSLWantReadError:
            chunk = s.recv(65536)
            assert chunk
            inc.write(chunk)
    assert banner.startswith(b"* OK ")
    s.close()
    px.log.wait_for(r"Disconnected: .*rip=198\.51\.100\.9, lip=127\.0\.0\.1, TLS", since=mark)


def test_proxied_address_drives_per_ip_limits(make_portier, dc):
    p = make_portier([User("user1", P1, proxy(dc.ports["imap"]))],
                     listeners=(Listener("imap", "none", haproxy=True),),
                     settings={**HP_SETTINGS, "login": {**HP_SETTINGS["login"],
                                                        "max_connections_per_ip": 1}})
    hdr = lambda ip: f"PROXY TCP4 {ip} 127.0.0.1 5000 143\r\n".encode()  # noqa: E731
    a = raw(p)
    a.sendall(hdr("192.0.2.1"))
    a.settimeout(5)
    assert a.recv(100).startswith(b"* OK")
    # A second client from the same proxied IP is over the limit ...
    mark = p.log.mark()
    b = raw(p)
    b.sendall(hdr("192.0.2.1"))
    b.settimeout(5)
    assert b"Too many connections" in b.recv(200)
    p.log.wait_for(r"Too many connections from this IP.*rip=192\.0\.2\.1,", since=mark)
    # ... one from another proxied IP (same HAProxy address) is not.
    c = raw(p)
    c.sendall(hdr("192.0.2.2"))
    c.settimeout(5)
    assert c.recv(100).startswith(b"* OK")
    for s in (a, b, c):
        s.close()


# ------------------------------------------------------------------ outbound
def test_outbound_v2_to_dovecot_haproxy_listener(px, dc):
    dmark = dc.log_mark()
    c = imap_connect(px.port("imap", "none"), source=CLIENT)
    c.login("out-v2", P1)
    assert c.select("INBOX")[0] == "OK"
    c.logout()
    dc.wait_for_log(r"imap-login: Info: Login: user=<user1>.*rip=127\.0\.0\.5", since=dmark)


def test_outbound_v1_pop3_through_haproxy_and_portier(px, hp, dc):
    """Client → HAProxy (v1) → portier → Dovecot haproxy=yes (v1): the address
    crosses two PROXY hops without any ID/XCLIENT."""
    dmark = dc.log_mark()
    p = _pop3_from(hp.port("pop3v1"), CLIENT)
    p.user("out-v1")
    p.pass_(P1)
    p.quit()
    dc.wait_for_log(r"pop3-login: Info: Login: user=<user1>.*rip=127\.0\.0\.5", since=dmark)


def test_backend_setting_proxy_protocol(make_portier, dc):
    p = make_portier([User("user1", P1, proxy(dc.ports["imap_haproxy"], proxy_not_trusted=True))],
                     listeners=(Listener("imap", "none"),),
                     settings={"backend": {"proxy_protocol": "v2"}})
    dmark = dc.log_mark()
    c = imap_connect(p.port("imap", "none"), source="127.0.0.6")
    c.login("user1", P1)
    c.logout()
    dc.wait_for_log(r"imap-login: Info: Login: user=<user1>.*rip=127\.0\.0\.6", since=dmark)


def test_bad_proxy_protocol_field_is_a_config_error(px):
    mark = px.log.mark()
    c = imap_connect(px.port("imap", "none"), source=CLIENT)
    with pytest.raises(imaplib.IMAP4.error):
        c.login("out-bad", P1)
    c.logout()
    px.log.wait_for(r"Invalid proxy_protocol value 'v3'", since=mark)
