"""ManageSieve through portier to a real (private) Dovecot/Pigeonhole backend.

One portier instance per module sits in front of the session Dovecot's
`sieve` listener (plain, STARTTLS offered, XCLIENT for 127.0.0.0/8).
Dovecot has no implicit-TLS ManageSieve listener, so the `ssl=yes` backend
leg goes through a small in-test TLS terminator in front of it.

  user1          -> user1, plain, client password forwarded
  leg-plain      -> user1 (destuser), plain
  leg-starttls   -> user1, STARTTLS to the backend (starttls=yes)
  leg-ssl        -> user1, implicit TLS (ssl=yes, explicit port) via the terminator
  nopw           -> user1, `nopassword`: the backend verifies the password
  mu             -> user2 through master user `master`
  down           -> a closed port (connect refused, 3 reconnects)
  noport-ssl     -> ssl=yes without port: ManageSieve has no implicit-TLS default

Real clients: sieve-connect (PUTSCRIPT/LISTSCRIPTS via --exec, password on
a pipe with --passwordfd) and `RawSieve`, a raw socket client for exact replies.
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid

import pytest

from tests.support.accounts import BACKEND_USERS, MASTER_USERS
from tests.support.fake_backend import closed_listener_port
from tests.support.imap_client import client_ssl_context
from tests.support.portier import Listener, User, proxy

P1 = BACKEND_USERS["user1"]
MU_PW = "mu-sieve-Pw-61"
DOWN_PW = "down-sieve-Pw-5"
NOPORT_PW = "noport-sieve-Pw-8"
CLIENT_LEGS = ("none", "starttls", "implicit")
BACKEND_LEGS = ("plain", "starttls", "ssl")
AUTH_FAILED = b'NO "Authentication failed."'
TRYLATER = b'NO (TRYLATER) "Account is temporarily unavailable."'
LISTENERS = (Listener("managesieve", "none"), Listener("managesieve", "starttls"),
             Listener("managesieve", "implicit"))
SCRIPT = b'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "INBOX"; }\r\n'


# ------------------------------------------------------------------ raw client
class RawSieve:
    """Raw ManageSieve client: reads whole responses (literals included) and
    keeps every byte received in `.transcript`."""

    def __init__(self, port: int, *, tls: bool = False, ca=None, source: str | None = None,
                 timeout: float = 10.0, read_greeting: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout,
                                             source_address=(source, 0) if source else None)
        if tls:
            self.sock = client_ssl_context(ca).wrap_socket(self.sock,
                                                           server_hostname="127.0.0.1")
        self.buf = b""
        self.transcript = b""
        self.greeting = self.response() if read_greeting else None

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data
        self.transcript += data

    def line(self) -> bytes:
        """One logical line: literals `{n}` are read and kept inline."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, _, self.buf = self.buf.partition(b"\r\n")
            out += line
            m = re.search(rb"\{(\d+)\+?\}$", line)
            if not m:
                return out
            n = int(m[1])
            while len(self.buf) < n:
                self._fill()
            out += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]

    def response(self) -> list[bytes]:
        """Lines up to and including the final OK / NO / BYE."""
        lines = []
        while True:
            ln = self.line()
            lines.append(ln)
            if re.match(rb"(?i)(OK|NO|BYE)( |$)", ln):
                return lines

    def command(self, text: bytes | str) -> list[bytes]:
        self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.response()

    def exchange(self, text: bytes | str) -> bytes:
        """Send one line, return the next single line (a SASL challenge)."""
        self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.line()

    def starttls(self, ca) -> list[bytes]:
        assert self.command("STARTTLS") == [b'OK "Begin TLS negotiation now."']
        self.sock = client_ssl_context(ca).wrap_socket(self.sock, server_hostname="127.0.0.1")
        return self.response()

    def authenticate(self, user: str, password: str) -> list[bytes]:
        ir = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.command(f'AUTHENTICATE "PLAIN" "{ir}"')

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RawSieve":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(px, leg: str, **kw) -> RawSieve:
    c = RawSieve(px.port("managesieve", leg), tls=leg == "implicit", ca=px.certs.ca, **kw)
    if leg == "starttls":
        c.starttls(px.certs.ca)
    return c


def caps_of(lines: list[bytes]) -> dict[str, str | None]:
    out = {}
    for ln in lines[:-1]:
        m = re.fullmatch(rb'"([^"]+)"(?: "([^"]*)")?', ln)
        assert m, ln
        out[m[1].decode()] = m[2].decode() if m[2] is not None else None
    return out


# ------------------------------------------------------- TLS terminator (ssl leg)
class TlsTerminator:
    """Accepts TLS on a free port and pipes the plaintext to `target`."""

    def __init__(self, target: int, cert, key) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.target = target
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                raw, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
            up = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            raw.close()
            return

        def pump(src, dst):
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass
        threading.Thread(target=pump, args=(up, tls), daemon=True).start()
        pump(tls, up)

    def close(self) -> None:
        self.stopped = True
        self.lsock.close()


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def terminator(dovecot, certs):
    t = TlsTerminator(dovecot.ports["sieve"], certs.cert, certs.key)
    yield t
    t.close()


@pytest.fixture(scope="module")
def px(module_portier_factory, dovecot, terminator):
    sieve = dovecot.ports["sieve"]
    users = [
        User("user1", P1, proxy(sieve)),
        User("leg-plain", P1, proxy(sieve, destuser="user1")),
        User("leg-starttls", P1, proxy(sieve, destuser="user1", starttls="yes")),
        User("leg-ssl", P1, proxy(terminator.port, destuser="user1", ssl="yes")),
        User("nopw", None, proxy(sieve, destuser="user1", nopassword=True)),
        User("mu", MU_PW, proxy(sieve, destuser="user2", master="master",
                                 pass_=MASTER_USERS["master"])),
        User("down", DOWN_PW, proxy(closed_listener_port())),
        User("noport-ssl", NOPORT_PW, "proxy host=127.0.0.1 ssl=yes proxy_timeout=2"),
    ]
    return module_portier_factory(users, listeners=LISTENERS,
                                  settings={"auth": {"failure_delay": "100ms"}})


def started_re(user: str) -> str:
    return (rf"managesieve-login: Info: proxy\({re.escape(user)},(?P<dest>[^)]+)\): Started "
            rf"proxying to .*: user=<{re.escape(user)}>, method=(?P<method>[A-Z0-9-]+), "
            rf"rip=(?P<rip>[0-9.]+), lip=(?P<lip>[0-9.]+),.* session=<(?P<session>[^>]+)>")


def backend_login_re(user: str, rip: str = r"[0-9.]+", session: str | None = None) -> str:
    rx = rf"managesieve-login: Info: Login: user=<{user}>, method=PLAIN, rip={rip}, "
    if session:
        rx += rf".*session=<{re.escape(session)}>"
    return rx


# ------------------------------------------------------------------- pre-login
def test_greeting_and_capability(px):
    for leg in CLIENT_LEGS:
        with connect(px, leg) as c:
            g = c.greeting
            assert g[-1] == b'OK "portier ready."', g
            gcaps = caps_of(g)
            assert gcaps["IMPLEMENTATION"] == "portier"
            assert gcaps["VERSION"] == "1.0"
            assert gcaps["NOTIFY"] == "mailto"
            assert "fileinto" in gcaps["SIEVE"].split()
            assert gcaps["SASL"] == "PLAIN LOGIN"
            assert ("STARTTLS" in gcaps) == (leg == "starttls"), (leg, gcaps)
            assert "XCLIENT" in gcaps  # 127.0.0.1 is in trusted_networks
            lines = c.command("CAPABILITY")
            assert lines[-1] == b'OK "Capability completed."', lines
            assert "STARTTLS" not in caps_of(lines)  # TLS is active or not offered here
            assert c.command('NOOP "t1"') == [b'OK (TAG "t1") "Done"']
            assert c.command("LISTSCRIPTS") == [b'NO "Authentication required."']
            assert c.command("LOGOUT") == [b'OK "Logout completed."']


def test_starttls_resends_capabilities(px):
    with RawSieve(px.port("managesieve", "starttls")) as c:
        assert "STARTTLS" in caps_of(c.greeting)
        # Pipelined plaintext after STARTTLS is discarded.
        c.send(b"STARTTLS\r\nLOGOUT\r\n")
        assert c.response() == [b'OK "Begin TLS negotiation now."']
        c.sock = client_ssl_context(px.certs.ca).wrap_socket(c.sock, server_hostname="127.0.0.1")
        lines = c.response()
        assert lines[-1] == b'OK "TLS negotiation successful."', lines
        assert "STARTTLS" not in caps_of(lines)
        assert c.command("NOOP") == [b'OK "NOOP Completed"']


# ---------------------------------------------------------------- full sessions
@pytest.mark.parametrize("backend_leg", BACKEND_LEGS)
@pytest.mark.parametrize("client_leg", CLIENT_LEGS)
def test_session_matrix(px, dovecot, client_leg, backend_leg):
    """AUTHENTICATE, PUTSCRIPT, LISTSCRIPTS, GETSCRIPT, DELETESCRIPT, LOGOUT
    for every client leg x backend leg."""
    user = f"leg-{backend_leg}"
    mark, dmark = px.log.mark(), dovecot.log_mark()
    name = f"m-{client_leg}-{backend_leg}-{uuid.uuid4().hex[:6]}"
    with connect(px, client_leg) as c:
        assert c.authenticate(user, P1) == [b'OK "Logged in."']
        put = c.command(f'PUTSCRIPT "{name}" {{{len(SCRIPT)}+}}\r\n'.encode() + SCRIPT)
        assert put[-1].startswith(b"OK"), put
        lst = c.command("LISTSCRIPTS")
        assert f'"{name}"'.encode() in lst and lst[-1].startswith(b"OK"), lst
        got = c.command(f'GETSCRIPT "{name}"')
        assert got[0].endswith(SCRIPT) and got[-1].startswith(b"OK"), got
        assert c.command(f'DELETESCRIPT "{name}"')[-1].startswith(b"OK")
        assert c.command("LOGOUT")[-1].startswith(b"OK")
    m = px.log.wait_for(started_re(user), since=mark)
    assert m["method"] == "PLAIN" and m["rip"] == "127.0.0.1", m.group(0)
    dovecot.wait_for_log(backend_login_re("user1", session=m["session"]), since=dmark)
    px.log.wait_for(r"managesieve-login: Info: proxy\(.*Disconnected by (client|server)",
                    since=mark)


def test_backend_starttls_is_really_tls(px, dovecot):
    dmark = dovecot.log_mark()
    with connect(px, "none") as c:
        assert c.authenticate("leg-starttls", P1) == [b'OK "Logged in."']
    m = dovecot.wait_for_log(backend_login_re("user1"), since=dmark)
    line = m.string if hasattr(m, "string") else str(m)
    assert re.search(r"\bTLS\b", line), line


def test_pipelined_commands_after_authenticate(px):
    ir = base64.b64encode(f"\0user1\0{P1}".encode()).decode()
    with RawSieve(px.port("managesieve", "none")) as c:
        c.send(f'AUTHENTICATE "PLAIN" "{ir}"\r\nLISTSCRIPTS\r\nLOGOUT\r\n')
        assert c.response() == [b'OK "Logged in."']
        assert c.response()[-1] == b'OK "Listscripts completed."'
        assert c.response()[-1] == b'OK "Logout completed."'


def test_authenticate_with_continuation_and_literal(px):
    with RawSieve(px.port("managesieve", "none")) as c:
        assert c.exchange('AUTHENTICATE "PLAIN"') == b'""'
        resp = base64.b64encode(f"\0user1\0{P1}".encode())
        assert c.command(b"{%d+}\r\n" % len(resp) + resp) == [b'OK "Logged in."']
        assert c.command("LOGOUT")[-1].startswith(b"OK")


def test_authenticate_login_mechanism(px):
    with RawSieve(px.port("managesieve", "none")) as c:
        assert c.exchange('AUTHENTICATE "LOGIN"') == b'"VXNlcm5hbWU6"'
        assert c.exchange('"%s"' % base64.b64encode(b"user1").decode()) == b'"UGFzc3dvcmQ6"'
        assert c.command('"%s"' % base64.b64encode(P1.encode()).decode()) == [
            b'OK "Logged in."']


def test_master_user_login(px, dovecot):
    mark, dmark = px.log.mark(), dovecot.log_mark()
    with RawSieve(px.port("managesieve", "none")) as c:
        assert c.authenticate("mu", MU_PW) == [b'OK "Logged in."']
        assert c.command("LISTSCRIPTS")[-1].startswith(b"OK")
    m = px.log.wait_for(started_re("mu"), since=mark)
    assert "(master master)" in m.group(0) and " as user user2" in m.group(0), m.group(0)
    dovecot.wait_for_log(r"auth: Info: Master user logging in as user2", since=dmark)


def test_forwarded_client_ip_reaches_backend(px, dovecot):
    """Client bound to 127.0.0.2: portier logs rip=127.0.0.2 and the backend
    logs the same rip and session id - it accepted portier's XCLIENT."""
    mark, dmark = px.log.mark(), dovecot.log_mark()
    with RawSieve(px.port("managesieve", "none"), source="127.0.0.2") as c:
        assert c.authenticate("user1", P1) == [b'OK "Logged in."']
        c.command("LOGOUT")
    m = px.log.wait_for(started_re("user1"), since=mark)
    assert m["rip"] == "127.0.0.2", m.group(0)
    dovecot.wait_for_log(backend_login_re("user1", rip=r"127\.0\.0\.2", session=m["session"]),
                         since=dmark)


# ----------------------------------------------------------------- sieve-connect
SIEVE_CONNECT = shutil.which("sieve-connect")


def sieve_connect(port: int, user: str, password: str, *args: str, cafile=None,
                  timeout: float = 20) -> subprocess.CompletedProcess:
    r, w = os.pipe()
    os.write(w, password.encode() + b"\n")
    os.close(w)
    cmd = [SIEVE_CONNECT, "--server", "127.0.0.1", "--port", str(port), "--user", user,
           "--passwordfd", str(r), "--authmech", "PLAIN", *args]
    if cafile:
        cmd += ["--tlscafile", str(cafile)]
    env = dict(os.environ, HOME=os.environ.get("HOME", "/tmp"))
    try:
        return subprocess.run(cmd, pass_fds=(r,), capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=env)
    finally:
        os.close(r)


@pytest.mark.skipif(SIEVE_CONNECT is None, reason="sieve-connect not installed")
@pytest.mark.parametrize("client_leg", ["starttls", "none"])
def test_sieve_connect_upload_and_list(px, dovecot, tmp_path, client_leg):
    name = f"sc-{client_leg}-{uuid.uuid4().hex[:6]}"
    local = tmp_path / "in.siv"
    local.write_bytes(SCRIPT)
    port = px.port("managesieve", client_leg)
    extra = (["--clearchan"] if client_leg == "none" else [])
    mark, dmark = px.log.mark(), dovecot.log_mark()
    up = sieve_connect(port, "user1", P1, *extra, "--localsieve", str(local),
                       "--remotesieve", name, "--upload", cafile=px.certs.ca)
    assert up.returncode == 0, (up.stdout, up.stderr)
    ls = sieve_connect(port, "user1", P1, *extra, "--list", cafile=px.certs.ca)
    assert ls.returncode == 0, (ls.stdout, ls.stderr)
    assert name.encode() in ls.stdout, ls.stdout
    # --exec: a command file, as in the interactive shell.
    cmds = tmp_path / "cmds"
    cmds.write_text(f"download {name} {tmp_path / 'out.siv'}\ndelete {name}\nlist\n")
    ex = sieve_connect(port, "user1", P1, *extra, "--exec", str(cmds), cafile=px.certs.ca)
    assert ex.returncode == 0, (ex.stdout, ex.stderr)
    assert (tmp_path / "out.siv").read_bytes().replace(b"\r\n", b"\n") == \
        SCRIPT.replace(b"\r\n", b"\n")
    assert name.encode() not in ex.stdout
    px.log.wait_for(started_re("user1"), since=mark)
    dovecot.wait_for_log(backend_login_re("user1"), since=dmark)


@pytest.mark.skipif(SIEVE_CONNECT is None, reason="sieve-connect not installed")
def test_sieve_connect_wrong_password(px):
    r = sieve_connect(px.port("managesieve", "starttls"), "user1", "wrong-SC-Pw-4",
                      "--list", cafile=px.certs.ca)
    assert r.returncode != 0
    assert b"Authentication failed" in r.stdout + r.stderr, (r.stdout, r.stderr)


# --------------------------------------------------------------------- failures
def test_wrong_password_local(px):
    mark = px.log.mark()
    wrong = "wrong-Local-Sieve-Pw-19"
    with RawSieve(px.port("managesieve", "none")) as c:
        t0 = time.monotonic()
        assert c.authenticate("user1", wrong) == [AUTH_FAILED]
        assert time.monotonic() - t0 >= 0.09, "no failure_delay applied"
        # The same connection may try again and succeed.
        assert c.authenticate("user1", P1) == [b'OK "Logged in."']
    assert wrong not in px.log.text(since=mark)


def test_wrong_password_verified_by_backend(px, dovecot):
    mark, dmark = px.log.mark(), dovecot.log_mark()
    wrong = "wrong-Backend-Sieve-Pw-77"
    with RawSieve(px.port("managesieve", "none"), source="127.0.0.79") as c:
        assert c.authenticate("nopw", wrong) == [AUTH_FAILED]
    px.log.wait_for(r"proxy\(nopw,[^)]+\): Login failed", since=mark)
    dovecot.wait_for_log(r"passwd-file\(user1,127\.0\.0\.79,<[^>]+>\): Password mismatch",
                         since=dmark)
    assert wrong not in px.log.text()


@pytest.mark.slow
def test_backend_refusing_connections(px):
    port = re.search(r"port=(\d+)", next(u.fields for u in px.users if u.name == "down"))[1]
    mark = px.log.mark()
    with RawSieve(px.port("managesieve", "none")) as c:
        t0 = time.monotonic()
        assert c.authenticate("down", DOWN_PW) == [TRYLATER]
        elapsed = time.monotonic() - t0
        assert 2.5 <= elapsed <= 8, f"took {elapsed:.2f}s, expected ~3s of retries"
        assert c.authenticate("user1", P1) == [b'OK "Logged in."']
    px.log.wait_for(rf"managesieve-login: Warning: proxy\(down,127\.0\.0\.1:{port}\): "
                    rf"connect\(127\.0\.0\.1, {port}\) failed: Connection refused.* - "
                    rf"reconnecting \(attempt #3\)", since=mark)
    px.log.wait_for(rf"managesieve-login: Error: proxy\(down,127\.0\.0\.1:{port}\): "
                    rf"connect\(127\.0\.0\.1, {port}\) failed: Connection refused "
                    rf"\(after \d+ secs, 3 reconnects", since=mark)


def test_ssl_without_port_is_refused(px):
    """ManageSieve has no implicit-TLS port (default_tls_port 0): `ssl=yes`
    without `port` must fail at once as a configuration error (§13.2), not
    try port 0."""
    mark = px.log.mark()
    with RawSieve(px.port("managesieve", "none")) as c:
        reply = c.authenticate("noport-ssl", NOPORT_PW)
    assert reply in ([b'NO (TRYLATER) "Temporary authentication failure."'], [TRYLATER]), reply
    assert not px.log.find(r"connect\(127\.0\.0\.1, 0\)", since=mark), px.log.text(since=mark)


def test_no_passwords_in_log(px):
    text = px.log.text()
    assert "Started proxying" in text
    for secret in [*BACKEND_USERS.values(), *MASTER_USERS.values(), MU_PW, DOWN_PW,
                   base64.b64encode(f"\0user1\0{P1}".encode()).decode()]:
        assert secret not in text, f"{secret!r} leaked into portier's log"
