"""POP3 through portier to a real (private) Dovecot 2.3 backend.

One portier instance per module (POP3 listeners: plain, STLS, implicit TLS);
its passdb maps portier users to backend accounts with different backend legs:

  user1          -> user1, plain, client password forwarded
  leg-plain      -> user1 (destuser), plain
  leg-starttls   -> user1, STLS to the backend (starttls=yes)
  leg-ssl        -> user1, implicit TLS to the backend (ssl=yes, pop3s port)
  dest           -> user2 with pass=<user2's backend password>
  nopw           -> user1, `nopassword`: the backend verifies the password
  mu             -> user2 through master user `master` (AUTH PLAIN to the backend)
  down           -> a closed port (connect refused; proxy_timeout=2 -> 1 reconnect)

Clients: Python's poplib (USER/PASS, STLS, POP3_SSL), a raw socket for
byte-exact checks (AUTH, pipelining, bad input) and curl.
"""
from __future__ import annotations

import base64
import poplib
import re
import socket
import ssl
import subprocess

import pytest

from tests.support.accounts import BACKEND_USERS, MASTER_USERS
from tests.support.fake_backend import closed_listener_port
from tests.support.imap_client import client_ssl_context
from tests.support.portier import Listener, User, proxy

P1 = BACKEND_USERS["user1"]
P2 = BACKEND_USERS["user2"]
DEST_PW = "dest-pop3-Pw-61"
MU_PW = "mu-pop3-Pw-77"
DOWN_PW = "down-pop3-Pw-5"
LEGS = ("plain", "starttls", "ssl")
CLIENT_LEGS = ("none", "starttls", "implicit")
LISTENERS = (Listener("pop3", "none"), Listener("pop3", "starttls"),
             Listener("pop3", "implicit"))
UNAVAILABLE = b"-ERR [SYS/TEMP] Account is temporarily unavailable."
AUTH_FAILED = b"-ERR [AUTH] Authentication failed."
CAPA_HEAD = [b"CAPA", b"TOP", b"UIDL", b"RESP-CODES", b"PIPELINING", b"AUTH-RESP-CODE"]


@pytest.fixture(scope="module")
def px(module_portier_factory, dovecot):
    pop, pops = dovecot.ports["pop3"], dovecot.ports["pop3s"]
    users = [
        User("user1", P1, proxy(pop)),
        User("leg-plain", P1, proxy(pop, destuser="user1")),
        User("leg-starttls", P1, proxy(pop, destuser="user1", starttls="yes")),
        User("leg-ssl", P1, proxy(pops, destuser="user1", ssl="yes")),
        User("dest", DEST_PW, proxy(pop, destuser="user2", pass_=P2)),
        User("nopw", None, proxy(pop, destuser="user1", nopassword=True)),
        User("mu", MU_PW, proxy(pop, destuser="user2", master="master",
                                 pass_=MASTER_USERS["master"])),
        User("down", DOWN_PW, proxy(closed_listener_port(), proxy_timeout="2")),
    ]
    return module_portier_factory(users, listeners=LISTENERS,
                                  settings={"auth": {"failure_delay": "100ms"}})


class _SourcePOP3(poplib.POP3):
    """poplib.POP3 bound to a source address (poplib has no such argument)."""

    def __init__(self, host, port, source, timeout=10):
        self._source = source
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0) if self._source else None)


class _SourcePOP3_SSL(poplib.POP3_SSL):
    def __init__(self, host, port, source, context, timeout=10):
        self._source = source
        super().__init__(host, port, timeout=timeout, context=context)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0) if self._source else None)
        return self.context.wrap_socket(sock, server_hostname=self.host)


def pop_connect(px, leg: str, source: str | None = None) -> poplib.POP3:
    port = px.port("pop3", leg)
    ctx = client_ssl_context(px.certs.ca)
    ctx.check_hostname = False  # the test certificate names "localhost", we dial 127.0.0.1
    if leg == "implicit":
        return _SourcePOP3_SSL("127.0.0.1", port, source, ctx)
    p = _SourcePOP3("127.0.0.1", port, source)
    if leg == "starttls":
        p.stls(context=ctx)
    return p


class RawPOP3:
    """Line-level POP3 client for byte-exact checks."""

    def __init__(self, port: int, source: str | None = None):
        self.sock = socket.create_connection(("127.0.0.1", port), 10,
                                             source_address=(source, 0) if source else None)
        self.f = self.sock.makefile("rb")
        self.greeting = self.readline()

    def readline(self) -> bytes:
        line = self.f.readline()
        assert line.endswith(b"\r\n"), f"connection closed or bare LF: {line!r}"
        return line[:-2]

    def send(self, data: str | bytes) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def cmd(self, line: str) -> bytes:
        self.send(line + "\r\n")
        return self.readline()

    def multiline(self) -> list[bytes]:
        out = []
        while (line := self.readline()) != b".":
            out.append(line)
        return out

    def at_eof(self) -> bool:
        return self.f.readline() == b""

    def close(self) -> None:
        self.f.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def started_re(user: str, port: int | None = None) -> str:
    dest = rf"127\.0\.0\.1:{port}" if port else r"[^)]+"
    return (rf"pop3-login: Info: proxy\({re.escape(user)},{dest}\): Started proxying to "
            rf".*: user=<{re.escape(user)}>, method=(?P<method>[A-Z0-9-]+), "
            rf"rip=(?P<rip>[0-9.]+), lip=(?P<lip>[0-9.]+),.* session=<(?P<session>[^>]+)>")


def backend_login_re(user: str, rip: str | None = None, session: str | None = None,
                     method: str = "PLAIN") -> str:
    return (rf"pop3-login: Info: Login: user=<{re.escape(user)}>, method={method}, "
            rf"rip={re.escape(rip) if rip else '[0-9.]+'}, lip=[0-9.]+, mpid=\d+, "
            rf"(?P<sec>[^,]+), session=<{re.escape(session) if session else '[^>]+'}>")


# ------------------------------------------------------------------ pre-login
@pytest.mark.parametrize("leg", CLIENT_LEGS)
def test_banner_and_capa(px, leg):
    p = pop_connect(px, leg)
    try:
        # 127.0.0.1 is in portier's trusted_networks: the XCLIENT marker is shown.
        assert p.getwelcome() == b"+OK [XCLIENT] portier ready."
        caps = p._longcmd("CAPA")[1]
        # STLS never: the plain listener has no TLS, the others are on TLS already.
        assert caps == CAPA_HEAD + [b"USER", b"SASL PLAIN LOGIN"]
    finally:
        p.quit()


def test_capa_offers_stls_before_tls(px):
    with RawPOP3(px.port("pop3", "starttls")) as c:
        assert c.cmd("CAPA") == b"+OK"
        assert c.multiline() == CAPA_HEAD + [b"STLS", b"USER", b"SASL PLAIN LOGIN"]


def test_quit_and_bad_commands(px):
    with RawPOP3(px.port("pop3")) as c:
        assert c.cmd("QUIT") == b"+OK Logging out"
        assert c.at_eof()
    with RawPOP3(px.port("pop3")) as c:
        assert c.cmd("STAT") == b"-ERR Unknown command."
        assert c.cmd("LIST") == b"-ERR Unknown command."
        assert c.cmd("NOPE") == b"-ERR Unknown command."
        assert c.readline() == b"-ERR Too many invalid bad commands."
        assert c.at_eof()


# --------------------------------------------------------------- full sessions
@pytest.mark.parametrize("backend_leg", LEGS)
@pytest.mark.parametrize("client_leg", CLIENT_LEGS)
def test_login_matrix(px, dovecot, client_leg, backend_leg):
    """USER/PASS, STAT, UIDL, QUIT for every client leg x backend leg; the
    backend's log proves the leg and the forwarded session."""
    user = f"leg-{backend_leg}"
    mark, dmark = px.log.mark(), dovecot.log_mark()
    p = pop_connect(px, client_leg)
    p.user(user)
    assert p.pass_(P1) == b"+OK Logged in."
    count, _size = p.stat()
    assert count >= 0
    p.uidl()
    assert p.quit().startswith(b"+OK")
    port = dovecot.ports["pop3s" if backend_leg == "ssl" else "pop3"]
    st = px.log.wait_for(started_re(user, port), since=mark)
    assert st["method"] == "PLAIN" and st["rip"] == "127.0.0.1"
    bl = dovecot.wait_for_log(backend_login_re("user1", session=st["session"]), since=dmark)
    assert (bl["sec"] == "TLS") == (backend_leg != "plain"), bl.group(0)
    px.log.wait_for(r"pop3-login: Info: proxy\(.*Disconnected by (client|server)", since=mark)


@pytest.mark.parametrize("client_leg", CLIENT_LEGS)
def test_forwarded_client_ip_reaches_backend(px, dovecot, client_leg):
    """Client bound to 127.0.0.2: portier logs rip=127.0.0.2; XCLIENT carries
    it and the session id to the 2.3 backend, which logs the same rip."""
    mark, dmark = px.log.mark(), dovecot.log_mark()
    p = pop_connect(px, client_leg, source="127.0.0.2")
    p.user("user1")
    p.pass_(P1)
    p.quit()
    m = px.log.wait_for(started_re("user1"), since=mark)
    assert m["rip"] == "127.0.0.2", m.group(0)
    dovecot.wait_for_log(backend_login_re("user1", rip="127.0.0.2", session=m["session"]),
                         since=dmark)


def test_auth_plain_with_and_without_initial_response(px):
    ir = base64.b64encode(f"\0user1\0{P1}".encode()).decode()
    with RawPOP3(px.port("pop3")) as c:
        assert c.cmd(f"AUTH PLAIN {ir}") == b"+OK Logged in."
        assert c.cmd("NOOP") == b"+OK"  # the backend answers now
    with RawPOP3(px.port("pop3")) as c:
        assert c.cmd("AUTH PLAIN") == b"+ "
        assert c.cmd(ir) == b"+OK Logged in."
        assert c.cmd("QUIT").startswith(b"+OK")


def test_auth_login(px):
    mark = px.log.mark()
    with RawPOP3(px.port("pop3")) as c:
        assert c.cmd("AUTH LOGIN") == b"+ VXNlcm5hbWU6"
        assert c.cmd(base64.b64encode(b"user1").decode()) == b"+ UGFzc3dvcmQ6"
        assert c.cmd(base64.b64encode(P1.encode()).decode()) == b"+OK Logged in."
    assert px.log.wait_for(started_re("user1"), since=mark)["method"] == "LOGIN"


def test_auth_cancel_and_mechanism_list(px):
    with RawPOP3(px.port("pop3")) as c:
        assert c.cmd("AUTH") == b"+OK"
        assert c.multiline() == [b"PLAIN", b"LOGIN"]
        assert c.cmd("AUTH PLAIN") == b"+ "
        assert c.cmd("*") == b"-ERR Authentication aborted by client."
        assert c.cmd("USER user1") == b"+OK"
        assert c.cmd(f"PASS {P1}") == b"+OK Logged in."


def test_pipelined_commands_after_pass_reach_backend(px):
    """USER, PASS, STAT and QUIT in one write: +OK from portier, the login
    line from the backend, then the backend answers STAT and QUIT."""
    with RawPOP3(px.port("pop3")) as c:
        c.send(f"USER user1\r\nPASS {P1}\r\nSTAT\r\nQUIT\r\n")
        assert c.readline() == b"+OK"
        assert c.readline() == b"+OK Logged in."
        assert re.fullmatch(rb"\+OK \d+ \d+", c.readline())
        assert c.readline().startswith(b"+OK Logging out")
        assert c.at_eof()


def test_stls_discards_pipelined_plaintext(px, dovecot):
    """Commands pipelined behind STLS arrived in plaintext: never executed."""
    mark = px.log.mark()
    raw = socket.create_connection(("127.0.0.1", px.port("pop3", "starttls")), 10)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"+OK ")
    raw.sendall(f"STLS\r\nUSER user1\r\nPASS {P1}\r\n".encode())
    assert f.readline() == b"+OK Begin TLS negotiation now.\r\n"
    ctx = client_ssl_context(px.certs.ca)
    ctx.check_hostname = False
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tf = tls.makefile("rb")
        tls.sendall(b"PASS x\r\n")
        assert tf.readline() == b"-ERR No username given.\r\n"
        tls.sendall(b"STLS\r\n")
        assert tf.readline() == b"-ERR TLS is already active.\r\n"
    assert "Started proxying" not in px.log.text(since=mark)


def test_curl_pop3(px, dovecot):
    dmark = dovecot.log_mark()
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "--interface", "127.0.0.2",
                        "-u", f"user1:{P1}", f"pop3://127.0.0.1:{px.port('pop3')}/"],
                       capture_output=True, text=True, timeout=25)
    assert r.returncode == 0, r.stderr
    dovecot.wait_for_log(backend_login_re("user1", rip="127.0.0.2"), since=dmark)


# ----------------------------------------------------------- identity / fields
def test_destuser_and_pass_field(px, dovecot):
    mark, dmark = px.log.mark(), dovecot.log_mark()
    p = pop_connect(px, "none")
    p.user("dest")
    assert p.pass_(DEST_PW) == b"+OK Logged in."
    p.quit()
    px.log.wait_for(r"Started proxying to .* as user user2 ", since=mark)
    dovecot.wait_for_log(backend_login_re("user2"), since=dmark)


def test_master_user_login(px, dovecot):
    mark, dmark = px.log.mark(), dovecot.log_mark()
    p = pop_connect(px, "none")
    p.user("mu")
    assert p.pass_(MU_PW) == b"+OK Logged in."
    p.quit()
    px.log.wait_for(r"Started proxying to .* as user user2 \(master master\)", since=mark)
    dovecot.wait_for_log(r"pop3-login: Info: Login: user=<user2>", since=dmark)


# ------------------------------------------------------------------ failures
def test_wrong_password_local(px):
    with RawPOP3(px.port("pop3")) as c:
        assert c.cmd("USER user1") == b"+OK"
        assert c.cmd("PASS wrong-password") == AUTH_FAILED
        assert c.cmd("USER user1") == b"+OK"  # the session goes on
        assert c.cmd(f"PASS {P1}") == b"+OK Logged in."


def test_wrong_password_verified_by_backend(px):
    """`nopassword` user: portier accepts anything, the backend says
    `-ERR [AUTH] ...` and the client gets the uniform reply."""
    mark = px.log.mark()
    with RawPOP3(px.port("pop3")) as c:
        assert c.cmd("USER nopw") == b"+OK"
        assert c.cmd("PASS wrong-password") == AUTH_FAILED
        assert c.cmd("USER nopw") == b"+OK"
        assert c.cmd(f"PASS {P1}") == b"+OK Logged in."
    px.log.wait_for(r"pop3-login: Info: proxy\(nopw,[^)]+\): Login failed: \[AUTH\] ",
                    since=mark)


def test_backend_refusing_connections(px):
    mark = px.log.mark()
    with RawPOP3(px.port("pop3")) as c:
        assert c.cmd("USER down") == b"+OK"
        assert c.cmd(f"PASS {DOWN_PW}") == UNAVAILABLE
    px.log.wait_for(r"pop3-login: Warning: proxy\(down,[^)]+\): connect\(127\.0\.0\.1, "
                    r"\d+\) failed: Connection refused .* - reconnecting \(attempt #1\)",
                    since=mark)
    px.log.wait_for(r"pop3-login: Error: proxy\(down,[^)]+\): connect\(127\.0\.0\.1, "
                    r"\d+\) failed: Connection refused \(after \d+ secs, 1 reconnects", since=mark)


def test_untrusted_client(make_portier, dovecot):
    """Outside trusted_networks: no [XCLIENT] marker, XCLIENT ignored, no USER
    without TLS when cleartext is off."""
    px2 = make_portier([User("user1", P1, proxy(dovecot.ports["pop3"]))],
                       listeners=(Listener("pop3", "starttls"),),
                       settings={"login": {"trusted_networks": ["192.0.2.0/24"]},
                                 "auth": {"allow_cleartext": False}})
    with RawPOP3(px2.port("pop3", "starttls"), source="127.0.0.2") as c:
        assert c.greeting == b"+OK portier ready."
        assert c.cmd("XCLIENT ADDR=10.1.2.3") == b"+OK You are not from trusted IP - ignoring"
        assert c.cmd("CAPA") == b"+OK"
        assert c.multiline() == CAPA_HEAD + [b"STLS", b"SASL"]
        assert c.cmd("USER user1") == (b"-ERR [AUTH] Plaintext authentication disallowed on "
                                      b"non-secure (SSL/TLS) connections.")


def test_trusted_xclient_overrides_client_address(px, dovecot):
    """A trusted upstream proxy's XCLIENT sets the address the backend sees."""
    mark, dmark = px.log.mark(), dovecot.log_mark()
    with RawPOP3(px.port("pop3")) as c:
        assert c.cmd("XCLIENT ADDR=127.0.0.9 PORT=4242 SESSION=upstreamSess1 TTL=4") == \
            b"+OK Updated"
        assert c.cmd("USER user1") == b"+OK"
        assert c.cmd(f"PASS {P1}") == b"+OK Logged in."
    m = px.log.wait_for(started_re("user1"), since=mark)
    assert m["rip"] == "127.0.0.9" and m["session"] == "upstreamSess1", m.group(0)
    dovecot.wait_for_log(backend_login_re("user1", rip="127.0.0.9", session="upstreamSess1"),
                         since=dmark)


def test_no_passwords_in_log(px):
    text = px.log.text()
    for pw in (P1, P2, DEST_PW, MU_PW, DOWN_PW, MASTER_USERS["master"]):
        assert pw not in text
        assert base64.b64encode(pw.encode()).decode() not in text
