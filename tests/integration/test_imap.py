"""IMAP through portier to a real (private) Dovecot backend.

One portier instance per module sits in front of the session Dovecot.  Its
passdb maps portier users to backend accounts with different backend legs:

  user1          -> user1, plain, client password forwarded
  leg-plain      -> user1 (destuser), plain
  leg-starttls   -> user1, STARTTLS to the backend (starttls=yes)
  leg-ssl        -> user1, implicit TLS to the backend (ssl=yes)
  dest           -> user2 with pass=<user2's backend password>
  nopw           -> user1, `nopassword`: backend verifies the password
  mu             -> user2 through master user `master` (AUTHENTICATE PLAIN)
  down           -> a closed port (connect refused, 3 reconnects)
"""
from __future__ import annotations

import base64
import imaplib
import re
import socket
import subprocess
import time
import uuid

import pytest

from tests.support.accounts import BACKEND_USERS, MASTER_USERS
from tests.support.fake_backend import closed_listener_port
from tests.support.imap_client import RawIMAP, imap_connect
from tests.support.portier import User, proxy

P1 = BACKEND_USERS["user1"]
P2 = BACKEND_USERS["user2"]
DEST_PW = "dest-client-Pw-51"
MU_PW = "mu-client-Pw-88"
DOWN_PW = "down-client-Pw-3"
LEGS = ("plain", "starttls", "ssl")
CLIENT_LEGS = ("none", "starttls", "implicit")
AUTH_FAILED = b"NO [AUTHENTICATIONFAILED] Authentication failed."
UNAVAILABLE = b"NO [UNAVAILABLE] Account is temporarily unavailable."


@pytest.fixture(scope="module")
def px(module_portier_factory, dovecot):
    imap, imaps = dovecot.ports["imap"], dovecot.ports["imaps"]
    users = [
        User("user1", P1, proxy(imap)),
        User("leg-plain", P1, proxy(imap, destuser="user1")),
        User("leg-starttls", P1, proxy(imap, destuser="user1", starttls="yes")),
        User("leg-ssl", P1, proxy(imaps, destuser="user1", ssl="yes")),
        User("dest", DEST_PW, proxy(imap, destuser="user2", pass_=P2)),
        User("nopw", None, proxy(imap, destuser="user1", nopassword=True)),
        User("mu", MU_PW, proxy(imap, destuser="user2", master="master",
                                 pass_=MASTER_USERS["master"])),
        User("down", DOWN_PW, proxy(closed_listener_port())),
    ]
    return module_portier_factory(users, settings={"auth": {"failure_delay": "100ms"}})


def listener_port(px, client_leg: str) -> int:
    return px.port("imap", client_leg)


def started_re(user: str, port: int | None = None) -> str:
    dest = rf"127\.0\.0\.1:{port}" if port else r"[^)]+"
    return (rf"imap-login: Info: proxy\({re.escape(user)},{dest}\): Started proxying to "
            rf".*: user=<{re.escape(user)}>, method=(?P<method>[A-Z0-9-]+), "
            rf"rip=(?P<rip>[0-9.]+), lip=(?P<lip>[0-9.]+),.* session=<(?P<session>[^>]+)>")


def message(subject: str) -> bytes:
    return (f"From: tester@example.test\r\nTo: user1@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4()}@example.test>\r\n\r\nHello through portier.\r\n"
            ).encode()


def assert_backend_login(dovecot, mark, user, session, tls: bool | None = None,
                         rip: str | None = None):
    rx = (rf"imap-login: Info: Login: user=<{user}>, method=PLAIN, "
          rf"rip={re.escape(rip) if rip else '[0-9.]+'}, lip=[0-9.]+, mpid=\d+, "
          rf"(?P<sec>[^,]+), session=<{re.escape(session)}>")
    m = dovecot.wait_for_log(rx, since=mark)
    if tls is not None:
        assert (m["sec"] == "TLS") == tls, f"backend leg security: {m.group(0)}"
    return m


# ------------------------------------------------------------------ pre-login
def test_banner_and_prelogin_capabilities(px):
    for leg in CLIENT_LEGS:
        tls = leg == "implicit"
        with RawIMAP(listener_port(px, leg), tls=tls, ca=px.certs.ca) as c:
            assert re.fullmatch(rb"\* OK \[CAPABILITY IMAP4rev1 [^\]]*\] portier ready\.",
                                c.banner), c.banner
            lines = c.command("a", "CAPABILITY")
            assert lines[0].startswith(b"* CAPABILITY IMAP4rev1 "), lines
            assert lines[-1].startswith(b"a OK"), lines
            caps = lines[0].split()[2:]
            assert b"AUTH=PLAIN" in caps
            assert (b"STARTTLS" in caps) == (leg == "starttls"), (leg, caps)
            assert c.command("b", "NOOP")[-1].startswith(b"b OK")
            out = c.command("c", "LOGOUT")
            assert out[0].startswith(b"* BYE") and out[-1].startswith(b"c OK"), out


# --------------------------------------------------------------- full sessions
@pytest.mark.parametrize("backend_leg", LEGS)
@pytest.mark.parametrize("client_leg", CLIENT_LEGS)
def test_session_matrix(px, dovecot, client_leg, backend_leg):
    """LOGIN, APPEND, SELECT, SEARCH, FETCH, LOGOUT for every client leg x
    backend leg; the backend's own log proves which leg was encrypted."""
    user = f"leg-{backend_leg}"
    port = listener_port(px, client_leg)
    mark, dmark = px.log.mark(), dovecot.log_mark()
    c = imap_connect(port, client_leg, ca=px.certs.ca)
    typ, data = c.login(user, P1)
    assert typ == "OK", data
    subject = f"matrix {client_leg}/{backend_leg} {uuid.uuid4().hex[:8]}"
    typ, data = c.append("INBOX", None, None, message(subject))
    assert typ == "OK", data
    typ, data = c.select("INBOX")
    assert typ == "OK" and int(data[0]) >= 1, data
    typ, data = c.search(None, "SUBJECT", f'"{subject}"')
    assert typ == "OK" and data[0], data
    num = data[0].split()[-1]
    typ, data = c.fetch(num, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])")
    assert typ == "OK"
    blob = b"".join(part[1] for part in data if isinstance(part, tuple))
    assert subject.encode() in blob and b"Hello through portier." in blob
    assert c.logout()[0] == "BYE"

    m = px.log.wait_for(started_re(user, dovecot.ports["imaps" if backend_leg == "ssl"
                                                     else "imap"]), since=mark)
    assert m["method"] == "PLAIN" and m["rip"] == "127.0.0.1"
    assert_backend_login(dovecot, dmark, "user1", m["session"], tls=backend_leg != "plain")
    px.log.wait_for(r"Disconnected by (client|server)[:( ]", since=mark)


def test_authenticate_plain_with_continuation(px):
    mark = px.log.mark()
    c = imap_connect(listener_port(px, "none"))
    typ, _ = c.authenticate("PLAIN", lambda _: f"\0user1\0{P1}".encode())
    assert typ == "OK"
    assert c.select("INBOX")[0] == "OK"
    c.logout()
    m = px.log.wait_for(started_re("user1"), since=mark)
    assert m["method"] == "PLAIN"


def test_authenticate_plain_sasl_ir(px):
    ir = base64.b64encode(f"\0user1\0{P1}".encode()).decode()
    with RawIMAP(listener_port(px, "none")) as c:
        lines = c.command("a", f"AUTHENTICATE PLAIN {ir}")
        assert lines[-1].startswith(b"a OK"), lines
        assert c.command("b", "SELECT INBOX")[-1].startswith(b"b OK")


def test_authenticate_login_mechanism(px):
    mark = px.log.mark()
    with RawIMAP(listener_port(px, "none")) as c:
        c.send("a AUTHENTICATE LOGIN\r\n")
        assert c.readline().startswith(b"+ ")
        c.send(base64.b64encode(b"user1") + b"\r\n")
        assert c.readline().startswith(b"+ ")
        c.send(base64.b64encode(P1.encode()) + b"\r\n")
        assert c.read_until_tagged("a")[-1].startswith(b"a OK")
    m = px.log.wait_for(started_re("user1"), since=mark)
    assert m["method"] == "LOGIN"


def test_login_with_literals(px):
    """Synchronising and non-synchronising (LITERAL+) literals in LOGIN."""
    with RawIMAP(listener_port(px, "none")) as c:
        c.send(b"a LOGIN {5}\r\n")
        assert c.readline().startswith(b"+")
        c.send(f"user1 {{{len(P1)}}}\r\n".encode())
        assert c.readline().startswith(b"+")
        c.send(P1.encode() + b"\r\n")
        assert c.read_until_tagged("a")[-1].startswith(b"a OK")
    with RawIMAP(listener_port(px, "none")) as c:
        c.send(f"b LOGIN {{5+}}\r\nuser1 {{{len(P1)}+}}\r\n{P1}\r\n".encode())
        assert c.read_until_tagged("b")[-1].startswith(b"b OK")


def test_login_reply_carries_backend_capabilities(px):
    with RawIMAP(listener_port(px, "none")) as c:
        lines = c.command("a", f'LOGIN user1 "{P1}"')
        assert re.fullmatch(rb"a OK \[CAPABILITY IMAP4rev1 .*\] Logged in", lines[-1]), lines
        assert b" UIDPLUS" in lines[-1] and b" MOVE" in lines[-1], "post-login caps missing"


def test_capability_before_login_gets_untagged_capability(px):
    """Reference I16: a client that asked CAPABILITY before login gets
    `* CAPABILITY <backend caps>` then `<tag> OK <text>`."""
    with RawIMAP(listener_port(px, "none")) as c:
        c.command("a", "CAPABILITY")
        lines = c.command("b", f'LOGIN user1 "{P1}"')
        assert lines[-1].startswith(b"b OK"), lines
        untagged = [ln for ln in lines if ln.startswith(b"* CAPABILITY ")]
        assert untagged and b" UIDPLUS" in untagged[-1], lines


def test_pipelined_commands_after_login(px):
    """Commands pipelined behind LOGIN (one TCP write) are answered by the
    backend after the login completes."""
    with RawIMAP(listener_port(px, "none")) as c:
        c.send(f'a LOGIN user1 "{P1}"\r\nb SELECT INBOX\r\nc NOOP\r\nd LOGOUT\r\n')
        assert c.read_until_tagged("a")[-1].startswith(b"a OK")
        b = c.read_until_tagged("b")
        assert b[-1].startswith(b"b OK [READ-WRITE]"), b
        assert any(ln.endswith(b" EXISTS") for ln in b)
        assert c.read_until_tagged("c")[-1].startswith(b"c OK")
        d = c.read_until_tagged("d")
        assert d[0].startswith(b"* BYE") and d[-1].startswith(b"d OK")


def test_idle(px):
    """IDLE relays server pushes: an APPEND on a second session produces
    `* N EXISTS` on the idling one; DONE ends the IDLE."""
    with RawIMAP(listener_port(px, "none")) as a:
        assert a.command("a1", f'LOGIN leg-plain "{P1}"')[-1].startswith(b"a1 OK")
        sel = a.command("a2", "SELECT INBOX")
        exists = [int(ln.split()[1]) for ln in sel if ln.endswith(b" EXISTS")][0]
        a.send("a3 IDLE\r\n")
        assert a.readline().startswith(b"+ "), "no IDLE continuation"
        other = imap_connect(listener_port(px, "starttls"), "starttls", ca=px.certs.ca)
        other.login("leg-starttls", P1)
        other.append("INBOX", None, None, message("idle wakeup"))
        other.logout()
        while True:
            line = a.readline()
            if line.endswith(b" EXISTS"):
                assert int(line.split()[1]) > exists
                break
        a.send("DONE\r\n")
        assert a.read_until_tagged("a3")[-1].startswith(b"a3 OK")
        assert a.command("a4", "LOGOUT")[-1].startswith(b"a4 OK")


def test_client_disconnect_is_logged_with_byte_counts(px):
    mark = px.log.mark()
    c = RawIMAP(listener_port(px, "none"))
    c.command("a", f'LOGIN user1 "{P1}"')
    sent_after = b"b NOOP\r\n"
    lines = c.command("b", "NOOP")
    c.close()
    m = px.log.wait_for(r"proxy\(user1,[^)]+\): Disconnected by client \((\d+)s idle, "
                        r"in=(\d+), out=(\d+)", since=mark)
    assert int(m[2]) >= len(sent_after), m.group(0)
    assert int(m[3]) >= sum(len(x) + 2 for x in lines), m.group(0)


# ------------------------------------------------------------------------ curl
def curl(*args: str, timeout: int = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args],
                          capture_output=True, text=True, timeout=timeout + 5)


def test_curl_plain_list_append_fetch(px, dovecot, tmp_path):
    port = listener_port(px, "none")
    url = f"imap://127.0.0.1:{port}"
    auth = ["-u", f"user1:{P1}", "--interface", "127.0.0.2"]
    dmark = dovecot.log_mark()
    r = curl(*auth, f"{url}/")
    assert r.returncode == 0, r.stderr
    assert "INBOX" in r.stdout
    subject = f"curl-{uuid.uuid4().hex[:10]}"
    f = tmp_path / "msg.eml"
    f.write_bytes(message(subject))
    r = curl(*auth, "-T", str(f), f"{url}/INBOX")
    assert r.returncode == 0, r.stderr
    r = curl(*auth, f"{url}/INBOX?SUBJECT%20{subject}")
    assert r.returncode == 0, r.stderr
    m = re.search(r"\* SEARCH ([\d ]+)", r.stdout)
    assert m, r.stdout
    uid_or_index = m.group(1).split()[-1]
    r = curl(*auth, f"{url}/INBOX;MAILINDEX={uid_or_index}")
    assert r.returncode == 0, r.stderr
    assert subject in r.stdout and "Hello through portier." in r.stdout
    dovecot.wait_for_log(r"Login: user=<user1>, method=PLAIN, rip=127\.0\.0\.2,", since=dmark)


def test_curl_starttls_and_imaps(px):
    r = curl("--ssl-reqd", "--cacert", str(px.certs.ca), "-u", f"leg-starttls:{P1}",
             f"imap://127.0.0.1:{listener_port(px, 'starttls')}/")
    assert r.returncode == 0 and "INBOX" in r.stdout, r.stderr
    r = curl("--cacert", str(px.certs.ca), "-u", f"leg-ssl:{P1}",
             f"imaps://127.0.0.1:{listener_port(px, 'implicit')}/")
    assert r.returncode == 0 and "INBOX" in r.stdout, r.stderr


# ----------------------------------------------------------- identity / fields
def test_forwarded_client_ip_reaches_backend(px, dovecot):
    """Client bound to 127.0.0.2: portier logs rip=127.0.0.2, and the backend
    Dovecot logs the same rip and session id - it accepted portier's ID."""
    mark, dmark = px.log.mark(), dovecot.log_mark()
    c = imap_connect(listener_port(px, "none"), source="127.0.0.2")
    c.login("user1", P1)
    c.logout()
    m = px.log.wait_for(started_re("user1", dovecot.ports["imap"]), since=mark)
    assert m["rip"] == "127.0.0.2", m.group(0)
    assert_backend_login(dovecot, dmark, "user1", m["session"], rip="127.0.0.2")


def test_destuser_and_pass_field(px, dovecot):
    mark, dmark = px.log.mark(), dovecot.log_mark()
    c = imap_connect(listener_port(px, "none"))
    assert c.login("dest", DEST_PW)[0] == "OK"
    c.logout()
    m = px.log.wait_for(started_re("dest"), since=mark)
    assert " as user user2" in m.group(0), m.group(0)
    assert_backend_login(dovecot, dmark, "user2", m["session"])


def test_master_user_login(px, dovecot):
    mark, dmark = px.log.mark(), dovecot.log_mark()
    c = imap_connect(listener_port(px, "none"))
    assert c.login("mu", MU_PW)[0] == "OK"
    assert c.select("INBOX")[0] == "OK"
    c.logout()
    m = px.log.wait_for(started_re("mu"), since=mark)
    assert "(master master)" in m.group(0), m.group(0)
    dovecot.wait_for_log(r"auth: Info: Master user logging in as user2", since=dmark)
    assert_backend_login(dovecot, dmark, "user2", m["session"])


# -------------------------------------------------------------------- failures
def test_wrong_password_local(px):
    mark = px.log.mark()
    wrong = "wrong-Local-Pw-19"
    with RawIMAP(listener_port(px, "none")) as c:
        t0 = time.monotonic()
        lines = c.command("a", f'LOGIN user1 "{wrong}"')
        elapsed = time.monotonic() - t0
        assert lines[-1] == b"a " + AUTH_FAILED, lines
        assert elapsed >= 0.09, f"no failure_delay applied ({elapsed:.3f}s)"
        # The same connection may try again and succeed.
        assert c.command("b", f'LOGIN user1 "{P1}"')[-1].startswith(b"b OK")
    c2 = RawIMAP(listener_port(px, "none"))
    c2.command("a", f'LOGIN user1 "{wrong}"')
    c2.close()
    px.log.wait_for(r"Disconnected[^(]*\(auth failed, 1 attempts in \d+ secs\): "
                    r"user=<user1>, method=PLAIN", since=mark)
    assert wrong not in px.log.text()


def test_wrong_password_verified_by_backend(px, dovecot):
    """`nopassword`: portier accepts any password, the backend rejects it.
    A dedicated source IP keeps Dovecot's per-IP auth penalty away from
    the other tests."""
    mark, dmark = px.log.mark(), dovecot.log_mark()
    wrong = "wrong-Backend-Pw-77"
    with RawIMAP(listener_port(px, "none"), source="127.0.0.77") as c:
        lines = c.command("a", f'LOGIN nopw "{wrong}"')
        assert lines[-1] == b"a " + AUTH_FAILED, lines
    px.log.wait_for(r"proxy\(nopw,[^)]+\): Login failed", since=mark)
    dovecot.wait_for_log(r"passwd-file\(user1,127\.0\.0\.77,<[^>]+>\): Password mismatch",
                         since=dmark)
    assert wrong not in px.log.text()
    # The right password (forwarded as-is) works.
    with RawIMAP(listener_port(px, "none"), source="127.0.0.78") as c:
        assert c.command("b", f'LOGIN nopw "{P1}"')[-1].startswith(b"b OK")


@pytest.mark.slow
def test_backend_refusing_connections(px):
    """Connect refused: 1 + 3 reconnects, 1 s apart, then UNAVAILABLE."""
    port = re.search(r"port=(\d+)", next(u.fields for u in px.users if u.name == "down"))[1]
    mark = px.log.mark()
    with RawIMAP(listener_port(px, "none")) as c:
        t0 = time.monotonic()
        lines = c.command("a", f'LOGIN down "{DOWN_PW}"')
        elapsed = time.monotonic() - t0
        assert lines[-1] == b"a " + UNAVAILABLE, lines
        assert 2.5 <= elapsed <= 8, f"took {elapsed:.2f}s, expected ~3s of retries"
        # Pre-login state is restored: the client can log in as someone else.
        assert c.command("b", f'LOGIN user1 "{P1}"')[-1].startswith(b"b OK")
    for n in (1, 2, 3):
        px.log.wait_for(rf"imap-login: Warning: proxy\(down,127\.0\.0\.1:{port}\): "
                        rf"connect\(127\.0\.0\.1, {port}\) failed: Connection refused.* - "
                        rf"reconnecting \(attempt #{n}\)", since=mark)
    px.log.wait_for(rf"imap-login: Error: proxy\(down,127\.0\.0\.1:{port}\): "
                    rf"connect\(127\.0\.0\.1, {port}\) failed: Connection refused "
                    rf"\(after \d+ secs, 3 reconnects(, local=127\.0\.0\.1(:\d+)?)?\): "
                    rf"user=<down>", since=mark)
    assert not px.log.find(r"reconnecting \(attempt #4\)", since=mark)


def test_no_passwords_in_log(px):
    """Runs last in this module: nothing typed as a password, and no pass=
    value, appears anywhere in portier's log."""
    text = px.log.text()
    assert "Started proxying" in text
    for secret in [*BACKEND_USERS.values(), *MASTER_USERS.values(), DEST_PW, MU_PW, DOWN_PW,
                   base64.b64encode(f"\0user1\0{P1}".encode()).decode()]:
        assert secret not in text, f"{secret!r} leaked into portier's log"
