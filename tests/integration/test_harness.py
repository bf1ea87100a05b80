"""Self-tests of the test harness itself (no portier needed): the private
Dovecot backend, its TLS listeners and other protocols, ID-based client-IP
forwarding (the mechanism the portier tests rely on), and the fake backend.
"""
from __future__ import annotations

import base64
import imaplib
import poplib
import smtplib
import socket
import ssl
import time

import pytest

from tests.support import backend_scripts as bs
from tests.support import fake_backend as fb
from tests.support.imap_client import RawIMAP, client_ssl_context, imap_connect
from tests.support.util import LineLog, collapse_plus

from tests.support.accounts import BACKEND_USERS, MASTER_USERS

U1, P1 = "user1", BACKEND_USERS["user1"]


@pytest.mark.parametrize("tls", ["none", "starttls", "implicit"])
def test_dovecot_direct_imap(dovecot, certs, tls):
    port = dovecot.ports["imaps" if tls == "implicit" else "imap"]
    c = imap_connect(port, tls, ca=certs.ca)
    assert c.login(U1, P1)[0] == "OK"
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def test_dovecot_logs_client_source_ip(dovecot):
    """A client bound to 127.0.0.2 shows up as rip=127.0.0.2 in the log: the
    same assertion later proves portier forwarded the client IP."""
    mark = dovecot.log_mark()
    c = imap_connect(dovecot.ports["imap"], source="127.0.0.2")
    c.login(U1, P1)
    c.logout()
    dovecot.wait_for_log(r"imap-login: Info: Login: user=<user1>, method=PLAIN, "
                         r"rip=127\.0\.0\.2, lip=127\.0\.0\.1", since=mark)


def test_dovecot_honours_trusted_id(dovecot):
    """What portier does: ID with x-originating-ip from a trusted network
    (127.0.0.1) makes Dovecot log the forwarded IP and session id."""
    mark = dovecot.log_mark()
    with RawIMAP(dovecot.ports["imap"]) as c:
        assert b"ID" in c.banner
        c.send('I ID ("x-session-id" "harnessSess0001" "x-originating-ip" "127.0.0.9" '
               '"x-originating-port" "4444" "x-connected-ip" "127.0.0.1" '
               '"x-connected-port" "143" "x-proxy-ttl" "4" "x-client-transport" "insecure")\r\n'
               f'L LOGIN "{U1}" "{P1}"\r\n')
        lines = c.read_until_tagged("I")
        assert lines[-1].startswith(b"I OK ")   # 2.3 says "ID completed.", 2.4 "Trusted ID ..."
        assert c.read_until_tagged("L")[-1].startswith(b"L OK [CAPABILITY ")
    dovecot.wait_for_log(r"Login: user=<user1>, method=PLAIN, rip=127\.0\.0\.9, "
                         r"lip=127\.0\.0\.1, .*session=<harnessSess0001>", since=mark)


def test_dovecot_master_user(dovecot):
    mark = dovecot.log_mark()
    c = imap_connect(dovecot.ports["imap"])
    c.authenticate("PLAIN", lambda _: f"user2\0master\0{MASTER_USERS['master']}".encode())
    c.logout()
    dovecot.wait_for_log(r"Master user logging in as user2", since=mark)


def test_dovecot_other_protocols(dovecot, certs):
    ctx = client_ssl_context(certs.ca)
    p = poplib.POP3("127.0.0.1", dovecot.ports["pop3"], timeout=10)
    assert b"[XCLIENT]" in p.getwelcome()     # we are a trusted network
    p.user(U1)
    p.pass_(P1)
    p.quit()
    p = poplib.POP3_SSL("127.0.0.1", dovecot.ports["pop3s"], context=ctx, timeout=10)
    p.user(U1)
    p.pass_(P1)
    p.quit()
    before = len(dovecot.smtp.messages)
    s = smtplib.SMTP("127.0.0.1", dovecot.ports["submission"], timeout=10)
    s.starttls(context=ctx)
    s.login(U1, P1)
    s.sendmail("user1@example.test", ["rcpt@example.test"], b"Subject: harness\r\n\r\nhi\r\n")
    s.quit()
    msgs = dovecot.smtp.wait_for_messages(before + 1)
    assert b"Subject: harness" in msgs[-1].data
    s = smtplib.SMTP_SSL("127.0.0.1", dovecot.ports["submissions"], context=ctx, timeout=10)
    s.login(U1, P1)
    s.quit()
    with socket.create_connection(("127.0.0.1", dovecot.ports["sieve"]), timeout=10) as sk:
        f = sk.makefile("rb")
        caps = []
        while not (line := f.readline()).startswith(b"OK"):
            caps.append(line)
        assert b'"XCLIENT"\r\n' in caps and b'"STARTTLS"\r\n' in caps
        ir = base64.b64encode(f"\0{U1}\0{P1}".encode()).decode()
        sk.sendall(f'AUTHENTICATE "PLAIN" "{ir}"\r\n'.encode())
        assert f.readline().startswith(b"OK")


def test_dovecot_deliver_and_fetch(dovecot):
    dovecot.deliver("user3", b"From: a@b\r\nSubject: delivered\r\n\r\nbody\r\n")
    c = imap_connect(dovecot.ports["imap"])
    c.login("user3", BACKEND_USERS["user3"])
    typ, data = c.select("INBOX")
    assert int(data[0]) >= 1
    typ, data = c.search(None, "SUBJECT", "delivered")
    assert data[0]
    c.logout()


# ------------------------------------------------------------- fake backend
def test_fake_backend_records_pipelined_batch(make_fake):
    f = make_fake(bs.imap_login_ok())
    with RawIMAP(f.port) as c:
        assert c.banner.startswith(b"* OK [CAPABILITY IMAP4rev1")
        c.send(b'I ID ("a" "b")\r\nL LOGIN "u" "p"\r\n')
        assert c.read_until_tagged("L")[-1].startswith(b"L OK [CAPABILITY")
        assert c.command("x", "NOOP")[-1] == b"x OK NOOP completed by fake backend."
        c.send(b"y LOGOUT\r\n")
        c.read_until_closed()
    conn = f.wait_done(1)[0]
    assert conn.failure is None
    assert conn.chunks[0] == b'I ID ("a" "b")\r\nL LOGIN "u" "p"\r\n'
    assert conn.lines()[-1] == b"y LOGOUT"


def test_fake_backend_script_mismatch_is_recorded(make_fake):
    f = make_fake([fb.expect_line(rb"^HELLO")])
    with socket.create_connection(("127.0.0.1", f.port)) as s:
        s.sendall(b"BYE\r\n")
        f.wait_done(1)
    assert "does not match" in f.connections[0].failure


def test_fake_backend_per_attempt_scripts(make_fake):
    f = make_fake(lambda i: [fb.close()] if i == 0 else [fb.send_line("second")])
    with socket.create_connection(("127.0.0.1", f.port)) as s:
        assert s.recv(100) == b""
    with socket.create_connection(("127.0.0.1", f.port)) as s:
        assert s.recv(100) == b"second\r\n"


def test_fake_backend_reset_and_tls(make_fake, certs):
    f = make_fake([fb.reset()])
    with socket.create_connection(("127.0.0.1", f.port)) as s:
        with pytest.raises(ConnectionResetError):
            s.recv(100)
    f2 = make_fake(bs.imap_login_ok(), tls=(certs.cert, certs.key))
    with RawIMAP(f2.port, tls=True, ca=certs.ca) as c:
        assert c.banner.startswith(b"* OK")
    f3 = make_fake([fb.stall()], tls=(certs.wrong_cert, certs.wrong_key))
    with socket.create_connection(("127.0.0.1", f3.port)) as s:
        with pytest.raises(ssl.SSLCertVerificationError):
            client_ssl_context(certs.ca).wrap_socket(s, server_hostname="127.0.0.1")


def test_fake_backend_trickle_and_long_line(make_fake):
    f = make_fake([fb.trickle("* OK hi\r\n", delay=0.001), fb.long_line(10000)])
    with RawIMAP(f.port) as c:
        assert c.banner == b"* OK hi"
        assert len(c.readline()) == 10000


def test_line_log_wait():
    log = LineLog("t")
    log.append("a 1")
    mark = log.mark()
    log.append("b 2")
    assert log.wait_for(r"b (\d)", timeout=0.1, since=mark).group(1) == "2"
    with pytest.raises(TimeoutError):
        log.wait_for(r"a 1", timeout=0.05, since=mark)
    assert collapse_plus("capability+++login/banner") == "capability+login/banner"
