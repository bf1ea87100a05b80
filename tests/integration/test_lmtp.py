"""The LMTP proxy (issue 12, docs/LMTP.md) between real peers: Python's
smtplib.LMTP and a real Postfix in front, two real Dovecot LMTP servers
(dovecot-lmtpd, private configs, separate mail stores) behind. Messages are
checked where they land: the backends' maildirs, byte for byte.
A fake backend only for the fault injection (dying mid-DATA)."""
from __future__ import annotations

import os
import re
import smtplib
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.support.dovecot import DovecotBackend
from tests.support.metrics import ADMIN, admin_port, parse, promtool, scrape, wait_metrics
from tests.support.portier import Listener, User, proxy
from tests.support.postfix import PostfixInstance, available as postfix_available
from tests.support.util import free_port

DOMAIN = "example.test"
LMTP = (Listener("lmtp", "none"),)


def addr(u: str) -> str:
    return f"{u}@{DOMAIN}"


@pytest.fixture(scope="module")
def backends(certs):
    extra1 = "lmtp_hdr_delivery_address = original\n"
    b1 = DovecotBackend(users={addr("alice"): "x", addr("carol"): "x"}, certs=certs, lmtp=True,
                        hostname="b1.test", extra_conf=extra1).start()
    b2 = DovecotBackend(users={addr("bob"): "x"}, certs=certs, lmtp=True, hostname="b2.test").start()
    yield b1, b2
    b1.stop()
    b2.stop()


class FakeLmtp:
    """Fault injection: a fake LMTP/SMTP server on 127.0.0.1. Each connection
    gets `greeting`, `hello` for LHLO/EHLO, 250 for other commands, and
    on_data() for DATA (which returns whether the session goes on); every
    command line is recorded."""

    greeting = b"220 fake LMTP\r\n"
    hello = b"250-fake\r\n250 PIPELINING\r\n"

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.got_data = threading.Event()
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c: socket.socket) -> None:
        f = c.makefile("rb")
        c.sendall(self.greeting)
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                self.lines.append(line)
                verb = line[:4].upper()
                if verb in (b"LHLO", b"EHLO"):
                    c.sendall(self.hello)
                elif verb == b"DATA":
                    c.sendall(b"354 go\r\n")
                    if not self.on_data(c, f):
                        return
                elif verb == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(b"250 2.1.0 ok\r\n")
        finally:
            c.close()

    def on_data(self, c: socket.socket, f) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        self.srv.close()


class DyingBackend(FakeLmtp):
    """Closes the connection after `die_after` body bytes of DATA."""

    def __init__(self, die_after: int = 10) -> None:
        self.die_after = die_after
        super().__init__()

    def on_data(self, c: socket.socket, f) -> bool:
        f.read(self.die_after)
        self.got_data.set()
        c.shutdown(socket.SHUT_RDWR)
        return False


class SmtpBackend(FakeLmtp):
    """Fault-free fake SMTP server (protocol=smtp): EHLO, one DATA reply for
    all recipients."""

    greeting = b"220 smtp fake\r\n"
    hello = b"250-smtp.fake\r\n250 8BITMIME\r\n"

    def on_data(self, c: socket.socket, f) -> bool:
        while f.readline() not in (b".\r\n", b""):
            pass
        c.sendall(b"250 2.0.0 queued as X1\r\n")
        return True


@pytest.fixture(scope="module")
def smtp_fake():
    d = SmtpBackend()
    yield d
    d.close()


@pytest.fixture(scope="module")
def dying():
    d = DyingBackend()
    yield d
    d.close()


@pytest.fixture(scope="module")
def route(backends, dying, smtp_fake):
    b1, b2 = backends
    dead_port = free_port()   # nothing listens there
    users = [
        User(addr("alice"), None, proxy(b1.ports["lmtp"])),
        User(addr("carol"), None, proxy(b1.ports["lmtp"])),
        User(addr("bob"), None, proxy(b2.ports["lmtp"])),
        User(addr("renamed"), None, proxy(b1.ports["lmtp"], destuser=addr("carol"))),
        User(addr("down"), None, proxy(dead_port, proxy_timeout=2)),
        User(addr("dies"), None, proxy(dying.port, proxy_timeout=2)),
        User(addr("blocked"), None, "nologin reason=Mailbox+closed"),
        User(addr("local"), None, "host=127.0.0.1"),
        User(addr("s1"), None, proxy(smtp_fake.port, protocol="smtp")),
        User(addr("s2"), None, proxy(smtp_fake.port, protocol="smtp")),
        User(addr("tls"), None, proxy(b1.ports["lmtp"], starttls="yes", destuser=addr("alice"))),
    ]
    return users


@pytest.fixture(scope="module")
def portier(module_portier_factory, route):
    return module_portier_factory(route, listeners=LMTP)


def maildir_messages(dc: DovecotBackend, user: str) -> list[bytes]:
    out = []
    for sub in ("new", "cur"):
        d = dc.maildir(user) / sub
        if d.is_dir():
            out += [p.read_bytes() for p in sorted(d.iterdir())]
    return out


def wait_for_message(dc: DovecotBackend, user: str, marker: bytes, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        for m in maildir_messages(dc, user):
            if marker in m:
                return m
        if time.monotonic() > deadline:
            raise AssertionError(f"no message with {marker!r} for {user} in {dc.maildir(user)}")
        time.sleep(0.05)


def lmtp_client(portier, source: str = "127.0.0.1") -> smtplib.LMTP:
    c = smtplib.LMTP()
    c.sock = socket.create_connection(("127.0.0.1", portier.port("lmtp")), timeout=15,
                                      source_address=(source, 0))
    c.file = None
    code, _ = c.getreply()
    assert code == 220
    code, _ = c.docmd("LHLO", "client.test")
    assert code == 250
    return c


def send(c: smtplib.LMTP, rcpts: list[str], body: bytes, sender: str = "sender@mta.test"):
    """MAIL, RCPTs, DATA; returns ([rcpt replies], [data replies]) in order."""
    code, _ = c.mail(sender)
    assert code == 250
    rr = [c.rcpt(r) for r in rcpts]
    ok = sum(1 for code, _ in rr if code // 100 == 2)
    if not ok:
        return rr, []
    first = c.data(body)
    rest = [c.getreply() for _ in range(ok - 1)]
    return rr, [first] + rest


def test_one_transaction_split_over_two_backends(portier, backends):
    b1, b2 = backends
    marker = f"split-{time.time_ns()}".encode()
    body = b"Subject: split\r\n\r\n" + marker + b"\r\n"
    with lmtp_client(portier, source="127.0.0.2") as c:
        rr, dr = send(c, [addr("alice"), addr("bob"), addr("nobody"), "alice+news@" + DOMAIN,
                          addr("blocked")], body)
    codes = [code for code, _ in rr]
    assert codes == [250, 250, 550, 250, 550], rr
    assert rr[2][1].startswith(b"5.1.1 <nobody@example.test> User doesn't exist"), rr[2]
    assert rr[4][1].startswith(b"5.3.5"), rr[4]
    assert [code for code, _ in dr] == [250, 250, 250], dr
    for code, text in dr:
        assert re.match(rb"2\.0\.0 <[^>]+> \S+ Saved", text), text
    wait_for_message(b1, addr("alice"), marker)
    bob = wait_for_message(b2, addr("bob"), marker)
    # The detail address landed in alice's INBOX as its own delivery.
    msgs = [m for m in maildir_messages(b1, addr("alice")) if marker in m]
    assert len(msgs) == 2, msgs
    # XCLIENT carried the original client's address and our session id (one
    # per backend connection): Dovecot's Received: header names them
    # (portier itself connects from 127.0.0.1).
    sid = re.search(r"lmtp: Info: (\S+): Connect from 127\.0\.0\.2", portier.log.text()).group(1)
    ids = set()
    for m in msgs + [bob]:
        received = m.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        assert re.search(rb"Received: from \S+ \(\[127\.0\.0\.2\]\)", received), received
        ids.add(re.search(rb"\tid (\S+?:P\d)", received).group(1).decode())
    assert ids == {sid + ":P1", sid + ":P2"}, ids
    portier.log.wait_for(r"Sent message to <alice@example.test> at 127\.0\.0\.1:\d+: 250 .* \(1/3 at \d+ ms\)")
    portier.log.wait_for(r"Sent message to <bob@example.test> at 127\.0\.0\.1:\d+: 250")


def test_renamed_recipient_gets_orcpt(portier, backends):
    b1, _ = backends
    marker = f"rename-{time.time_ns()}".encode()
    with lmtp_client(portier) as c:
        rr, dr = send(c, [addr("renamed")], b"Subject: r\r\n\r\n" + marker + b"\r\n")
    assert rr[0][0] == 250 and dr[0][0] == 250, (rr, dr)
    msg = wait_for_message(b1, addr("carol"), marker)
    # lmtp_hdr_delivery_address = original: Dovecot writes ORCPT's address.
    assert b"Delivered-To: renamed@example.test" in msg, msg[:400]


def test_backend_down_fails_only_its_recipients(portier, backends):
    b1, _ = backends
    marker = f"down-{time.time_ns()}".encode()
    with lmtp_client(portier) as c:
        rr, dr = send(c, [addr("down"), addr("alice")], b"Subject: d\r\n\r\n" + marker + b"\r\n")
    assert rr[0][0] == 451, rr
    assert re.match(rb"4\.4\.0 Proxy failed \(connect, session=\S+\)", rr[0][1]), rr[0]
    assert rr[1][0] == 250 and [d[0] for d in dr] == [250]
    wait_for_message(b1, addr("alice"), marker)


def test_backend_dying_mid_data(portier, backends, dying):
    b1, b2 = backends
    marker = f"dies-{time.time_ns()}".encode()
    body = b"Subject: dies\r\n\r\n" + marker + b"\r\n" + b"x" * 200000 + b"\r\n"
    with lmtp_client(portier) as c:
        rr, dr = send(c, [addr("alice"), addr("dies"), addr("bob")], body)
    assert [r[0] for r in rr] == [250, 250, 250], rr
    assert dying.got_data.is_set()
    assert dr[0][0] == 250 and dr[2][0] == 250, dr
    assert dr[1][0] == 451 and re.match(rb"4\.4\.0 Proxy failed \(connection lost, session=", dr[1][1]), dr
    wait_for_message(b1, addr("alice"), marker)
    wait_for_message(b2, addr("bob"), marker)
    portier.log.wait_for(r"Failed to send message to <dies@example.test> at 127\.0\.0\.1:\d+: 451")


def test_dot_stuffing_is_byte_exact(portier, backends):
    b1, _ = backends
    marker = f"dots-{time.time_ns()}".encode()
    lines = [b"Subject: dots", b"", marker, b".", b"..", b".leading dot", b"...three",
             b" .", b"end."]
    text = b"\r\n".join(lines) + b"\r\n"
    with lmtp_client(portier) as c:
        rr, dr = send(c, [addr("alice")], text)   # smtplib dot-stuffs
    assert dr[0][0] == 250
    msg = wait_for_message(b1, addr("alice"), marker)
    body = msg.split(b"\n\n", 1)[1] if b"\r\n\r\n" not in msg else msg.split(b"\r\n\r\n", 1)[1]
    got = body.replace(b"\r\n", b"\n")
    want = b"\n".join(lines[2:]) + b"\n"
    assert got == want, (got, want)


def test_smtp_backend_single_reply_for_all_its_recipients(portier, smtp_fake):
    with lmtp_client(portier) as c:
        rr, dr = send(c, [addr("s1"), addr("s2")], b"Subject: s\r\n\r\nsmtp\r\n",
                      sender="sender@mta.test")
    assert [r[0] for r in rr] == [250, 250]
    assert [d[0] for d in dr] == [250, 250], dr
    cmds = [l.split(b":")[0].split(b" ")[0] for l in smtp_fake.lines]
    assert cmds.count(b"EHLO") == 1 and cmds.count(b"MAIL") == 1 and cmds.count(b"RCPT") == 2


def test_starttls_to_backend(portier, backends):
    b1, _ = backends
    marker = f"tls-{time.time_ns()}".encode()
    with lmtp_client(portier) as c:
        rr, dr = send(c, [addr("tls")], b"Subject: t\r\n\r\n" + marker + b"\r\n")
    assert rr[0][0] == 250 and dr[0][0] == 250, (rr, dr)
    msg = wait_for_message(b1, addr("alice"), marker)
    assert re.search(rb"with LMTPS", msg), msg[:300]


def test_client_gone_mid_data_delivers_nothing(portier, backends):
    b1, _ = backends
    marker = f"gone-{time.time_ns()}".encode()
    s = socket.create_connection(("127.0.0.1", portier.port("lmtp")), timeout=5)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    while not f.readline().startswith(b"354"):
        pass
    s.sendall(b"Subject: gone\r\n\r\n" + marker + b"\r\nno final dot\r\n")
    s.shutdown(socket.SHUT_RDWR)
    f.close()
    s.close()
    portier.log.wait_for(r"Client disconnected in DATA")
    assert not [m for m in maildir_messages(b1, addr("alice")) if marker in m]


def test_session_commands(portier):
    with lmtp_client(portier) as c:
        assert c.docmd("NOOP")[0] == 250
        assert c.docmd("RCPT", "TO:<alice@example.test>")[0] == 503
        assert c.docmd("DATA")[0] == 503
        assert c.docmd("MAIL", "FROM:<a@b> BODY=8BITMIME SIZE=100")[0] == 250
        assert c.docmd("MAIL", "FROM:<a@b>")[0] == 503
        assert c.docmd("DATA")[0] == 554                       # no valid recipients
        assert c.docmd("RSET")[0] == 250
        assert c.docmd("RCPT", "TO:<alice@example.test>")[0] == 503
        assert c.docmd("BDAT", "10 LAST")[0] == 502
        assert c.docmd("MAIL", "FROM:no-brackets")[0] == 501
        assert c.docmd("XCLIENT", "ADDR=bogus")[0] == 501        # trusted, but invalid
        assert c.docmd("XCLIENT", "PORT=70000")[0] == 501
        assert c.docmd("QUIT")[0] == 221


def test_unproxied_entry_refused(portier):
    with lmtp_client(portier) as c:
        c.mail("a@mta.test")
        code, text = c.rcpt(addr("local"))
    assert code == 550 and b"not served by this proxy" in text


def test_overlong_line_and_garbage(portier):
    s = socket.create_connection(("127.0.0.1", portier.port("lmtp")), timeout=5)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220")
    s.sendall(b"LHLO " + b"x" * 20000 + b"\r\n")
    assert f.readline().startswith(b"500 5.5.2")
    assert f.readline() == b""           # closed
    s.close()


def rss_hwm(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


def test_50mib_message_bounded_memory(portier, backends):
    b1, b2 = backends
    pid = portier.proc.pid
    # Warm up (buffers, allocator arenas) with a small delivery first.
    with lmtp_client(portier) as c:
        send(c, [addr("alice"), addr("bob")], b"Subject: warm\r\n\r\nwarm\r\n")
    before = rss_hwm(pid)
    marker = f"big-{time.time_ns()}".encode()
    line = b"0123456789" * 9 + b"\r\n"          # 92 bytes
    body = b"Subject: big\r\n\r\n" + marker + b"\r\n" + line * (50 * 1024 * 1024 // len(line))
    with lmtp_client(portier) as c:
        c.sock.settimeout(60)
        rr, dr = send(c, [addr("alice"), addr("bob")], body)
    assert [d[0] for d in dr] == [250, 250], dr
    after = rss_hwm(pid)
    grew_kib = after - before
    print(f"VmHWM before {before} KiB, after {after} KiB, growth {grew_kib} KiB "
          f"for a {len(body) >> 20} MiB message to 2 backends")
    if not os.environ.get("PORTIER_SANITIZER"):   # ASan's quarantine keeps freed memory
        assert grew_kib < 4 * 1024, f"portier's RSS high-water mark grew by {grew_kib} KiB"
    msg = wait_for_message(b1, addr("alice"), marker, timeout=30)
    assert len(msg) >= len(body) - body.count(b"\r")   # the maildir keeps LF line ends
    wait_for_message(b2, addr("bob"), marker, timeout=30)


def test_ttl_loop_and_self_destination(module_portier_factory, backends):
    p1_port, p2_port = free_port(), free_port()
    loop = addr("loop")
    p1 = module_portier_factory([User(loop, None, proxy(p2_port)),
                                 User(addr("self"), None, proxy(p1_port))],
                                listeners=(Listener("lmtp", "none", port=p1_port),))
    module_portier_factory([User(loop, None, proxy(p1_port))],
                           listeners=(Listener("lmtp", "none", port=p2_port),))
    with lmtp_client(p1) as c:
        c.mail("a@mta.test")
        code, text = c.rcpt(loop)
        code2, text2 = c.rcpt(addr("self"))
    assert code == 554 and b"5.4.6" in text and b"Proxying appears to be looping (TTL=0)" in text, text
    assert code2 == 554 and b"Proxying loops to itself" in text2, text2


def test_untrusted_client_gets_no_xclient(module_portier_factory, backends):
    b1, _ = backends
    p = module_portier_factory([User(addr("alice"), None, proxy(b1.ports["lmtp"]))], listeners=LMTP,
                               settings={"login": {"trusted_networks": ["10.0.0.0/8"]}})
    with lmtp_client(p) as c:
        code, caps = c.docmd("LHLO", "x")
        assert b"XCLIENT" not in caps
        assert c.docmd("XCLIENT", "ADDR=1.2.3.4")[0] == 550


@pytest.mark.skipif(postfix_available() is not None, reason=str(postfix_available()))
def test_postfix_relays_through_portier(portier, backends):
    b1, b2 = backends
    marker = f"postfix-{time.time_ns()}".encode()
    with PostfixInstance(transport=f"lmtp:inet:127.0.0.1:{portier.port('lmtp')}",
                         relay_domain=DOMAIN) as pf:
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=10) as s:
            refused = s.sendmail("sender@mta.test", [addr("alice"), addr("bob"), "alice+pf@" + DOMAIN],
                                 b"Subject: via postfix\r\n\r\n" + marker + b"\r\n.dot line\r\n")
        assert refused == {}
        wait_for_message(b1, addr("alice"), marker, timeout=20)
        wait_for_message(b2, addr("bob"), marker, timeout=20)
        pf.log.wait_for(r"to=<alice\+pf@example.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.*status=sent",
                        timeout=20)
        pf.log.wait_for(r"to=<bob@example.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.*status=sent",
                        timeout=20)
    msgs = [m for m in maildir_messages(b1, addr("alice")) if marker in m]
    assert len(msgs) == 2 and all(b"\n.dot line" in m for m in msgs)


class StallingBackend(FakeLmtp):
    """Takes the whole message, then never answers the final dot."""

    def on_data(self, c: socket.socket, f) -> bool:
        while f.readline() not in (b".\r\n", b""):
            pass
        self.got_data.set()
        f.read()          # until the proxy goes away
        return False


@pytest.mark.skipif(postfix_available() is not None, reason=str(postfix_available()))
def test_portier_killed_mid_data_loses_nothing(tmp_path, backends):
    """SIGKILL while a backend has not answered the final dot: Postfix got no
    250 for anyone, defers the whole message and retries it later."""
    from tests.support.portier import Portier
    b1, _ = backends
    stall = StallingBackend()
    p = Portier(tmp_path / "pk", listeners=LMTP, users=[
        User(addr("alice"), None, proxy(b1.ports["lmtp"])),
        User(addr("stuck"), None, proxy(stall.port, proxy_timeout=30))]).start()
    try:
        with PostfixInstance(transport=f"lmtp:inet:127.0.0.1:{p.port('lmtp')}",
                             relay_domain=DOMAIN) as pf:
            with smtplib.SMTP("127.0.0.1", pf.port, timeout=10) as s:
                s.sendmail("sender@mta.test", [addr("stuck"), addr("alice")],
                           b"Subject: kill\r\n\r\nkilled mid-DATA\r\n")
            assert stall.got_data.wait(20)
            p.kill()
            pf.log.wait_for(r"to=<stuck@example.test>.*status=deferred", timeout=20)
            pf.log.wait_for(r"to=<alice@example.test>.*status=deferred", timeout=20)
            assert "status=sent" not in pf.read_log()
    finally:
        p.kill()
        stall.close()


def test_unproxied_entry_to_default_destination(module_portier_factory, backends):
    _, b2 = backends
    p = module_portier_factory([User(addr("bob"), None, "")], listeners=LMTP,
                               settings={"lmtp": {"unproxied": "default", "default_host": "127.0.0.1",
                                                  "default_port": b2.ports["lmtp"]}})
    marker = f"default-{time.time_ns()}".encode()
    with lmtp_client(p) as c:
        rr, dr = send(c, [addr("bob"), addr("nobody")], b"Subject: d\r\n\r\n" + marker + b"\r\n")
    assert [r[0] for r in rr] == [250, 550] and [d[0] for d in dr] == [250], (rr, dr)
    wait_for_message(b2, addr("bob"), marker)


def test_xclient_from_trusted_upstream_is_forwarded(portier, backends):
    """A trusted upstream's XCLIENT ADDR reaches the backend (its Received:
    header), and its TTL counts down: TTL=1 leaves nothing to proxy with."""
    b1, _ = backends
    marker = f"xclient-{time.time_ns()}".encode()
    with lmtp_client(portier) as c:
        code, text = c.docmd("XCLIENT", "ADDR=192.0.2.7 PORT=4711 HELO=upstream.test")
        assert code == 220, text
        assert c.docmd("LHLO", "upstream.test")[0] == 250
        rr, dr = send(c, [addr("alice")], b"Subject: x\r\n\r\n" + marker + b"\r\n")
        assert dr[0][0] == 250
        assert c.docmd("XCLIENT", "TTL=1")[0] == 220
        assert c.docmd("LHLO", "upstream.test")[0] == 250
        c.mail("a@mta.test")
        code, text = c.rcpt(addr("alice"))
        assert code == 554 and b"(TTL=0)" in text
    msg = wait_for_message(b1, addr("alice"), marker)
    assert re.search(rb"Received: from \S+ \(\[192\.0\.2\.7\]\)", msg), msg[:300]


def test_unix_socket_listener(module_portier_factory, route, backends, tmp_path):
    """`path = ...`: LMTP on a unix socket (Postfix's `lmtp:unix:`), mode 0666,
    removed at shutdown; a delivery through it lands in the backend."""
    b1, _b2 = backends
    sock = tmp_path / "lmtp.sock"
    p = module_portier_factory(route, listeners=(Listener("lmtp", path=str(sock)),))
    p.log.wait_for(rf"Listening on {re.escape(str(sock))} \(lmtp, unix\)")
    assert sock.is_socket() and (sock.stat().st_mode & 0o777) == 0o666
    marker = f"unix-{time.time_ns()}".encode()
    c = smtplib.LMTP(str(sock), timeout=15)   # a path: smtplib connects to the unix socket
    try:
        assert c.ehlo()[0] == 250                 # LMTP: sent as LHLO
        rr, dr = send(c, [addr("alice")], b"Subject: unix\r\n\r\n" + marker + b"\r\n")
    finally:
        c.close()
    assert [code for code, _ in rr] == [250] and [code for code, _ in dr] == [250], (rr, dr)
    wait_for_message(b1, addr("alice"), marker)
    p.stop()
    assert not sock.exists()


def test_delivery_metrics(module_portier_factory, route, backends, tmp_path):
    """portier_lmtp_* (docs/METRICS.md) move by exactly what one transaction
    did: two deliveries to the real Dovecots, an unknown user and a nologin
    refused at RCPT, a backend down (refused at RCPT, its connection failed)
    and a backend dying in DATA (tempfail after the final dot)."""
    p = module_portier_factory(route, listeners=LMTP, settings=ADMIN)
    admin = admin_port(p)
    before = parse(scrape(admin))
    body = b"Subject: metrics\r\n\r\n" + f"metrics-{time.time_ns()}".encode() + b"\r\n"
    with lmtp_client(p) as c:
        rr, dr = send(c, [addr("alice"), addr("bob"), addr("nobody"), addr("blocked"), addr("down"),
                          addr("dies")], body)
        c.quit()
    assert [code for code, _ in rr] == [250, 250, 550, 550, 451, 250], rr
    assert [code for code, _ in dr] == [250, 250, 451], dr
    after = wait_metrics(admin, lambda v: v.get("portier_lmtp_sessions_current") == 0)

    def d(series: str) -> float:
        return after.get(series, 0) - before.get(series, 0)

    assert d("portier_lmtp_sessions_total") == 1
    assert after["portier_lmtp_sessions_current"] == 0
    moved = {k: d(k) for k in after if k.startswith("portier_lmtp_recipients_total{") and d(k)}
    assert moved == {
        'portier_lmtp_recipients_total{result="delivered",reason="backend"}': 2,
        'portier_lmtp_recipients_total{result="permfail",reason="unknown_user"}': 1,
        'portier_lmtp_recipients_total{result="permfail",reason="disabled"}': 1,
        'portier_lmtp_recipients_total{result="tempfail",reason="backend_failure"}': 2,
    }, moved
    assert d("portier_lmtp_messages_total") == 1
    assert d("portier_lmtp_bytes_total") == len(body) + len(b".\r\n")   # as sent, the final dot included
    assert d('portier_lmtp_backend_connections_total{result="ok"}') == 3   # b1, b2, dying
    assert d('portier_lmtp_backend_connections_total{result="failed"}') == 1
    assert d("portier_lmtp_data_duration_seconds_count") == 1
    text = scrape(admin)
    for name in ("alice", "nobody", "127.0.0.1\""):
        assert name not in text, name
    promtool(text, tmp_path)
