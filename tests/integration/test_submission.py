"""Submission through portier to a real (private) Dovecot 2.3 backend, which
relays accepted mail to the in-process SMTP sink (`dovecot.smtp`).

One portier instance per module; its passdb maps portier users to backend
accounts with different backend legs:

  user1          -> user1, plain, client password forwarded
  leg-plain      -> user1 (destuser), plain
  leg-starttls   -> user1, STARTTLS to the backend (starttls=yes)
  leg-ssl        -> user1, implicit TLS to the backend (ssl=yes, submissions port)
  dest           -> user2 with pass=<user2's backend password>
  nopw           -> user1, `nopassword`: the backend verifies the password
  mu             -> user2 through master user `master`
  down           -> a closed port (connect refused; proxy_timeout=2 -> 1 reconnect)
"""
from __future__ import annotations

import base64
import re
import smtplib
import socket
import subprocess
import uuid

import pytest

from tests.support.accounts import BACKEND_USERS, MASTER_USERS
from tests.support.fake_backend import closed_listener_port
from tests.support.imap_client import client_ssl_context
from tests.support.portier import Listener, User, proxy

P1 = BACKEND_USERS["user1"]
P2 = BACKEND_USERS["user2"]
DEST_PW = "dest-subm-Pw-61"
MU_PW = "mu-subm-Pw-77"
DOWN_PW = "down-subm-Pw-5"
LEGS = ("plain", "starttls", "ssl")
CLIENT_LEGS = ("none", "starttls", "implicit")
LISTENERS = (Listener("submission", "none"), Listener("submission", "starttls"),
             Listener("submission", "implicit"))
UNAVAILABLE = "454 4.7.0 Account is temporarily unavailable."


@pytest.fixture(scope="module")
def px(module_portier_factory, dovecot):
    sub, subs = dovecot.ports["submission"], dovecot.ports["submissions"]
    users = [
        User("user1", P1, proxy(sub)),
        User("leg-plain", P1, proxy(sub, destuser="user1")),
        User("leg-starttls", P1, proxy(sub, destuser="user1", starttls="yes")),
        User("leg-ssl", P1, proxy(subs, destuser="user1", ssl="yes")),
        User("dest", DEST_PW, proxy(sub, destuser="user2", pass_=P2)),
        User("nopw", None, proxy(sub, destuser="user1", nopassword=True)),
        User("mu", MU_PW, proxy(sub, destuser="user2", master="master",
                                 pass_=MASTER_USERS["master"])),
        User("down", DOWN_PW, proxy(closed_listener_port(), proxy_timeout="2")),
    ]
    return module_portier_factory(users, listeners=LISTENERS,
                                  settings={"auth": {"failure_delay": "100ms"}})


def smtp_connect(px, leg: str, source: str | None = None) -> smtplib.SMTP:
    port = px.port("submission", leg)
    src = (source, 0) if source else None
    if leg == "implicit":
        s = smtplib.SMTP_SSL("127.0.0.1", port, context=client_ssl_context(px.certs.ca),
                             source_address=src, timeout=10)
    else:
        s = smtplib.SMTP("127.0.0.1", port, source_address=src, timeout=10)
    s.ehlo("client.test")
    if leg == "starttls":
        s.starttls(context=client_ssl_context(px.certs.ca))
        s.ehlo("client.test")
    return s


def message(subject: str) -> str:
    return (f"From: user1@example.test\r\nTo: sink@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4()}@example.test>\r\n\r\nHello through portier.\r\n")


def wait_for_sink(dovecot, subject: str):
    """The message with this subject, once the sink has it."""
    n = 1
    while True:
        msgs = dovecot.smtp.wait_for_messages(n, timeout=10)
        for m in msgs:
            if subject.encode() in m.data:
                return m
        n = len(msgs) + 1


def started_re(user: str, port: int | None = None) -> str:
    dest = rf"127\.0\.0\.1:{port}" if port else r"[^)]+"
    return (rf"submission-login: Info: proxy\({re.escape(user)},{dest}\): Started proxying to "
            rf".*: user=<{re.escape(user)}>, method=(?P<method>[A-Z0-9-]+), "
            rf"rip=(?P<rip>[0-9.]+), lip=(?P<lip>[0-9.]+),.* session=<(?P<session>[^>]+)>")


def backend_login_re(user: str, rip: str | None = None, session: str | None = None) -> str:
    return (rf"submission-login: Info: Login: user=<{re.escape(user)}>, method=PLAIN, "
            rf"rip={re.escape(rip) if rip else '[0-9.]+'}, lip=[0-9.]+, mpid=\d+, "
            rf"(?P<sec>[^,]+), session=<{re.escape(session) if session else '[^>]+'}>")


# ------------------------------------------------------------------ pre-login
@pytest.mark.parametrize("leg", CLIENT_LEGS)
def test_banner_and_ehlo(px, leg):
    port = px.port("submission", leg)
    if leg == "implicit":
        s = smtplib.SMTP_SSL("127.0.0.1", port, context=client_ssl_context(px.certs.ca),
                             timeout=10)
    else:
        s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    with s:
        code, text = s.ehlo("client.test")
        assert code == 250 and text.split(b"\n")[0] == b"proxy.test", text
        f = s.esmtp_features
        assert f["auth"].split() == ["PLAIN", "LOGIN"], f
        for cap in ("8bitmime", "enhancedstatuscodes", "size", "pipelining"):
            assert cap in f, (cap, f)
        assert ("starttls" in f) == (leg == "starttls"), f
        assert "xclient" in f, f  # 127.0.0.1 is in portier's trusted_networks
        assert s.noop()[0] == 250
        assert s.rset()[0] == 250
        assert s.docmd("MAIL FROM:<a@b>") == (530, b"5.7.0 Authentication required.")
        assert s.docmd("QUIT") == (221, b"2.0.0 Bye")


# --------------------------------------------------------------- full sessions
@pytest.mark.parametrize("backend_leg", LEGS)
@pytest.mark.parametrize("client_leg", CLIENT_LEGS)
def test_send_matrix(px, dovecot, client_leg, backend_leg):
    """AUTH, MAIL, RCPT, DATA, QUIT for every client leg x backend leg: the
    message arrives at the sink, and the backend's log proves the leg."""
    user = f"leg-{backend_leg}"
    mark, dmark = px.log.mark(), dovecot.log_mark()
    subject = f"matrix {client_leg}/{backend_leg} {uuid.uuid4().hex[:8]}"
    with smtp_connect(px, client_leg) as s:
        assert s.login(user, P1) == (235, b"2.7.0 Logged in.")
        refused = s.sendmail("user1@example.test", ["sink@example.test"], message(subject))
        assert refused == {}
    m = wait_for_sink(dovecot, subject)
    assert m.rcpt_to == ["<sink@example.test>"] and b"Hello through portier." in m.data
    st = px.log.wait_for(started_re(user, dovecot.ports["submissions" if backend_leg == "ssl"
                                                        else "submission"]), since=mark)
    assert st["method"] == "PLAIN" and st["rip"] == "127.0.0.1"
    bl = dovecot.wait_for_log(backend_login_re("user1", session=st["session"]), since=dmark)
    assert (bl["sec"] == "TLS") == (backend_leg != "plain"), bl.group(0)
    px.log.wait_for(r"Disconnected by (client|server)[:( ]", since=mark)


def test_forwarded_client_ip_reaches_backend(px, dovecot):
    """Client bound to 127.0.0.2: portier logs rip=127.0.0.2; XCLIENT carries
    it (and the session id) to the 2.3 backend, which logs the same rip."""
    mark, dmark = px.log.mark(), dovecot.log_mark()
    with smtp_connect(px, "none", source="127.0.0.2") as s:
        s.login("user1", P1)
    m = px.log.wait_for(started_re("user1"), since=mark)
    assert m["rip"] == "127.0.0.2", m.group(0)
    dovecot.wait_for_log(backend_login_re("user1", rip="127.0.0.2", session=m["session"]),
                         since=dmark)


def test_auth_login_and_plain_without_initial_response(px):
    for mech in ("LOGIN", "PLAIN"):
        mark = px.log.mark()
        with smtp_connect(px, "none") as s:
            code, text = s.docmd("AUTH", mech)
            if mech == "LOGIN":
                assert (code, text) == (334, b"VXNlcm5hbWU6")
                code, text = s.docmd(base64.b64encode(b"user1").decode())
                assert (code, text) == (334, b"UGFzc3dvcmQ6")
                code, text = s.docmd(base64.b64encode(P1.encode()).decode())
            else:
                assert (code, text) == (334, b"")
                code, text = s.docmd(base64.b64encode(f"\0user1\0{P1}".encode()).decode())
            assert (code, text) == (235, b"2.7.0 Logged in."), mech
            assert s.noop()[0] == 250  # the backend answers now
        m = px.log.wait_for(started_re("user1"), since=mark)
        assert m["method"] == mech


def test_auth_cancel_then_retry(px):
    with smtp_connect(px, "none") as s:
        assert s.docmd("AUTH", "PLAIN") == (334, b"")
        assert s.docmd("*") == (501, b"5.5.2 Authentication aborted by client.")
        assert s.login("user1", P1)[0] == 235


def test_pipelined_mail_after_auth_reaches_backend(px, dovecot):
    """AUTH, MAIL, RCPT, DATA and the body in one write: the client gets the
    235 from portier, everything else from the backend."""
    subject = f"pipelined {uuid.uuid4().hex[:8]}"
    ir = base64.b64encode(f"\0user1\0{P1}".encode()).decode()
    with socket.create_connection(("127.0.0.1", px.port("submission", "none")), 10) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220 proxy.test ")
        sock.sendall(b"EHLO client.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        sock.sendall(f"AUTH PLAIN {ir}\r\nMAIL FROM:<user1@example.test>\r\n"
                     f"RCPT TO:<sink@example.test>\r\nDATA\r\n".encode())
        replies = [f.readline() for _ in range(4)]
        assert replies[0] == b"235 2.7.0 Logged in.\r\n", replies
        assert replies[1].startswith(b"250 ") and replies[2].startswith(b"250 "), replies
        assert replies[3].startswith(b"354 "), replies
        sock.sendall(message(subject).encode() + b".\r\nQUIT\r\n")
        assert f.readline().startswith(b"250 ")
        assert f.readline().startswith(b"221 ")
    wait_for_sink(dovecot, subject)


# ------------------------------------------------------------------- curl
def curl(*args: str, timeout: int = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args],
                          capture_output=True, text=True, timeout=timeout + 5)


@pytest.mark.parametrize("leg", CLIENT_LEGS)
def test_curl_smtp(px, dovecot, tmp_path, leg):
    subject = f"curl-{leg}-{uuid.uuid4().hex[:8]}"
    f = tmp_path / "msg.eml"
    f.write_text(message(subject))
    scheme = "smtps" if leg == "implicit" else "smtp"
    extra = ["--ssl-reqd"] if leg == "starttls" else []
    dmark = dovecot.log_mark()
    r = curl(*extra, "--cacert", str(px.certs.ca), "--interface", "127.0.0.2",
             "-u", f"user1:{P1}", "--mail-from", "user1@example.test",
             "--mail-rcpt", "sink@example.test", "--upload-file", str(f),
             f"{scheme}://127.0.0.1:{px.port('submission', leg)}")
    assert r.returncode == 0, r.stderr
    wait_for_sink(dovecot, subject)
    dovecot.wait_for_log(backend_login_re("user1", rip="127.0.0.2"), since=dmark)


# ----------------------------------------------------------- identity / fields
def test_destuser_and_pass_field(px, dovecot):
    mark, dmark = px.log.mark(), dovecot.log_mark()
    with smtp_connect(px, "none") as s:
        assert s.login("dest", DEST_PW)[0] == 235
    px.log.wait_for(r"Started proxying to .* as user user2 ", since=mark)
    dovecot.wait_for_log(backend_login_re("user2"), since=dmark)


def test_master_user_login(px, dovecot):
    mark, dmark = px.log.mark(), dovecot.log_mark()
    with smtp_connect(px, "none") as s:
        assert s.login("mu", MU_PW)[0] == 235
    px.log.wait_for(r"Started proxying to .* as user user2 \(master master\)", since=mark)
    dovecot.wait_for_log(r"submission-login: Info: Login: user=<user2>", since=dmark)


# ------------------------------------------------------------------ failures
def test_wrong_password_local(px):
    mark = px.log.mark()
    with smtp_connect(px, "none") as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("user1", "wrong-password")
        assert (e.value.smtp_code, e.value.smtp_error) == (535, b"5.7.8 Authentication failed.")
        assert s.login("user1", P1)[0] == 235  # the session goes on
    assert "Started proxying" in px.log.text(since=mark)


def test_wrong_password_verified_by_backend(px, dovecot):
    """`nopassword` user: portier accepts anything, the backend says 535 and
    the client gets the backend's reply."""
    mark = px.log.mark()
    with smtp_connect(px, "none") as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("nopw", "wrong-password")
        assert e.value.smtp_code == 535, e.value
        assert e.value.smtp_error.startswith(b"5.7.8 "), e.value
        assert s.login("nopw", P1)[0] == 235
    px.log.wait_for(r"submission-login: Info: proxy\(nopw,[^)]+\): Login failed: ", since=mark)


def test_backend_refusing_connections(px):
    mark = px.log.mark()
    with smtp_connect(px, "none") as s:
        code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(
            f"\0down\0{DOWN_PW}".encode()).decode())
        assert f"{code} {text.decode()}" == UNAVAILABLE
    px.log.wait_for(r"submission-login: Warning: proxy\(down,[^)]+\): connect\(127\.0\.0\.1, "
                    r"\d+\) failed: Connection refused .* - reconnecting \(attempt #1\)",
                    since=mark)
    px.log.wait_for(r"submission-login: Error: proxy\(down,[^)]+\): connect\(127\.0\.0\.1, "
                    r"\d+\) failed: Connection refused \(after \d+ secs, 1 reconnects", since=mark)


def test_no_passwords_in_log(px):
    text = px.log.text()
    for pw in (P1, P2, DEST_PW, MU_PW, DOWN_PW, MASTER_USERS["master"]):
        assert pw not in text
        assert base64.b64encode(pw.encode()).decode() not in text
