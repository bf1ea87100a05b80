"""Process safety (issue 4): privilege drop, root refusal, graceful SIGTERM
with a deadline, SIGHUP reloads that leave running sessions alone, broken
configs rejected on reload.

Backends: a private real Dovecot (module scope, with a dedicated `idler`
account so delivering mail cannot disturb other tests) and scripted fake
backends only for the slow / never-answering login cases.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.support import backend_scripts as bs
from tests.support import fake_backend as fb
from tests.support.accounts import BACKEND_USERS, MASTER_USERS
from tests.support.certs import Certs, make_certs
from tests.support.dovecot import DovecotBackend
from tests.support.imap_client import RawIMAP
from tests.support.portier import (Listener, Portier, PortierError, User, portier_bin, proxy,
                                   render_config)
from tests.support.util import port_is_free

P1 = BACKEND_USERS["user1"]
IDLER, IDLER_PW = "idler", "idler-Pw-8cTz"
SHUTDOWN_LINE = r"Disconnected by proxy: Process shutting down"


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def dc(certs):
    """Private Dovecot for this module (IDLE + deliver() on its own account)."""
    users = dict(BACKEND_USERS)
    users[IDLER] = IDLER_PW
    d = DovecotBackend(users=users, master_users=MASTER_USERS, certs=certs,
                       extra_conf="mail_max_userip_connections = 100\n")
    d.start()
    yield d
    d.stop()


@pytest.fixture
def open_dir():
    """A 0755 temp dir outside pytest's 0700 tmp tree: after the privilege
    drop, `nobody` must still read the config, passwd-file and certificates
    (SIGHUP re-reads them)."""
    d = Path(tempfile.mkdtemp(prefix="pt-priv-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def open_certs(open_dir) -> Certs:
    return make_certs(open_dir / "certs")      # files 0644, dir 0755


class Instances:
    """Portier processes made by a test: stopped (SIGTERM, exit 0 checked)
    and their logs dumped at teardown."""

    def __init__(self) -> None:
        self.items: list[Portier] = []

    def __call__(self, workdir: Path, users, certs, **kw) -> Portier:
        p = Portier(workdir / f"p{len(self.items)}", users=users, certs=certs,
                    name=f"portier{len(self.items)}", **kw)
        self.items.append(p)
        return p.start()

    def teardown(self) -> None:
        errors = []
        for p in self.items:
            try:
                p.stop(check=True)
            except PortierError as e:
                errors.append(str(e))
            print(f"----- {p.name} log ({p.conf_path}) -----\n{p.log.text()}")
            for s in p.secrets():
                if s in p.log.text():
                    errors.append(f"password {s!r} in {p.name}'s log")
        if errors:
            pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture
def portiers():
    inst = Instances()
    yield inst
    inst.teardown()


# ------------------------------------------------------------------- helpers
def login_ok(port: int, user: str, pw: str, *, tls: bool = False, ca=None) -> RawIMAP:
    c = RawIMAP(port, tls=tls, ca=ca)
    lines = c.command("a", f'LOGIN {user} "{pw}"')
    assert lines[-1].startswith(b"a OK"), lines
    return c


def reload(px: Portier, expect: str = r"portier: Info: Config reloaded$",
           timeout: float = 10.0) -> int:
    """SIGHUP and wait for the outcome line; returns the log mark taken
    before the signal."""
    mark = px.log.mark()
    px.signal(signal.SIGHUP)
    px.log.wait_for(expect, since=mark, timeout=timeout)
    return mark


def ids(pid: int, field: str) -> list[str]:
    """`Uid:` / `Gid:` / `Groups:` of every thread of pid."""
    out = []
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        text = (task / "status").read_text()
        m = re.search(rf"^{field}:[ \t]*(.*)$", text, re.M)
        out.append(m.group(1).split() if m else None)
    return out


class Stopper(threading.Thread):
    """SIGTERM + wait in the background, so the test can keep talking to
    clients meanwhile; records the exit code and how long the exit took."""

    def __init__(self, px: Portier, timeout: float) -> None:
        super().__init__(daemon=True)
        self.px, self.timeout = px, timeout
        self.rc: int | None = None
        self.elapsed: float | None = None
        self.error: str | None = None

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            self.rc = self.px.stop(timeout=self.timeout, check=False)
        except Exception as e:   # pragma: no cover - reported by finish()
            self.error = repr(e)
        self.elapsed = time.monotonic() - t0

    def finish(self) -> tuple[int, float]:
        self.join(self.timeout + 10)
        assert self.error is None, self.error
        assert self.rc is not None, "stopper did not finish"
        return self.rc, self.elapsed


def refused(port: int) -> bool:
    """True once nothing listens. A reset means our probe sat in the backlog
    of a listener being closed: not settled yet, probe again."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False


def wait_refused(port: int, timeout: float = 5.0) -> None:
    """Listener closure has no log event of its own: poll, bounded."""
    deadline = time.monotonic() + timeout
    while not refused(port):
        assert time.monotonic() < deadline, f"port {port} still accepts after SIGTERM"
        time.sleep(0.02)


def privileged_free_port() -> int:
    for p in range(700, 1000):
        if port_is_free(p) and port_is_free(p, "0.0.0.0"):
            return p
    pytest.skip("no free port below 1024")


# =========================================================== privilege drop
def test_drops_privileges_to_configured_user(portiers, open_dir, open_certs, dc):
    nobody = pwd.getpwnam("nobody")
    low = privileged_free_port()      # binding it proves the bind happened as root
    users = [User("user1", P1, proxy(dc.ports["imap"]))]
    px = portiers(open_dir, users, open_certs,
                  listeners=[Listener("imap", "none", port=low),
                             Listener("imap", "implicit")],
                  settings={"server": {"user": "nobody", "allow_root": False}})
    uid, gid = str(nobody.pw_uid), str(nobody.pw_gid)
    pid = px.proc.pid

    def check_ids():
        for u in ids(pid, "Uid"):
            assert u == [uid] * 4, f"Uid (real, effective, saved, fs) = {u}"
        for g in ids(pid, "Gid"):
            assert g == [gid] * 4, f"Gid = {g}"
        for groups in ids(pid, "Groups"):
            assert groups == [], f"supplementary groups kept: {groups}"
    check_ids()
    assert px.port("imap", "none") == low
    # Logins work after the drop (plain and TLS: the key was loaded before).
    c = login_ok(low, "user1", P1)
    assert c.command("b", "SELECT INBOX")[-1].startswith(b"b OK")
    login_ok(px.port("imap", "implicit"), "user1", P1, tls=True, ca=open_certs.ca).close()

    # SIGHUP as nobody: config, passwd-file and certificates are re-read.
    new_certs = make_certs(open_dir / "certs2")
    px.certs = new_certs
    px.users.append(User("late", "late-Pw-5x", proxy(dc.ports["imap"], destuser="user2",
                                                     pass_=BACKEND_USERS["user2"])))
    px.settings = {"server": {"user": "nobody", "allow_root": False},
                   "login": {"greeting": "after reload."}}
    px.write_config()
    reload(px)
    check_ids()
    with RawIMAP(low) as n:
        assert n.banner.endswith(b"after reload."), n.banner
    login_ok(low, "late", "late-Pw-5x").close()
    login_ok(px.port("imap", "implicit"), "user1", P1, tls=True, ca=new_certs.ca).close()
    assert c.command("c", "NOOP")[-1].startswith(b"c OK")    # the old session lives on
    c.close()

    # A key only root can read is rejected on reload, the old config stays.
    os.chmod(new_certs.key, 0o600)
    px.settings["login"]["greeting"] = "never applied."
    px.write_config()
    mark = reload(px, expect=r"portier: Error: Config reload failed")
    px.log.wait_for(re.escape(str(new_certs.key)) + "|[Pp]ermission denied", since=mark,
                    timeout=5)
    with RawIMAP(low) as n:
        assert n.banner.endswith(b"after reload."), n.banner
    login_ok(px.port("imap", "implicit"), "user1", P1, tls=True, ca=new_certs.ca).close()


REFUSALS = [
    # id, server settings, expected stderr regex
    ("root-without-user", {"allow_root": False},
     r"Refusing to run as root: set server\.user"),
    ("unknown-user", {"allow_root": False, "user": "no-such-user-pt"},
     r"server\.user no-such-user-pt does not exist"),
]


@pytest.mark.parametrize("server,message", [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refuses_to_run_as_root(portier_available, tmp_path, certs, server, message):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    passwd = tmp_path / "u.passwd"
    passwd.write_text(User("user1", P1, proxy(143)).line())
    conf = tmp_path / "p.toml"
    conf.write_text(render_config(listeners=[Listener("imap", "none")], passwd_path=passwd,
                                  certs=certs, settings={"server": server}))
    r = subprocess.run([str(portier_bin()), "-c", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert re.search(r"portier: Fatal: " + message, r.stderr), r.stderr
    assert "Ready" not in r.stderr


# ================================================================== SIGTERM
def test_sigterm_closes_relays_and_idle_clients(make_portier, dc):
    """N relayed sessions (some in IDLE) and a few pre-login clients: each
    relay logs the shutdown line, every client sees the close, the process
    exits 0 without waiting for the (long) shutdown deadline."""
    n_relay, n_pre = 12, 3
    px = make_portier([User("user1", P1, proxy(dc.ports["imap"]))],
                      settings={"server": {"shutdown_timeout": "20s"}})
    port = px.port("imap", "none")
    relays = []
    for i in range(n_relay):
        c = login_ok(port, "user1", P1)
        if i % 2:
            assert c.command("s", "SELECT INBOX")[-1].startswith(b"s OK")
            c.send("i IDLE\r\n")
            assert c.readline().startswith(b"+ ")
        relays.append(c)
    pre = [RawIMAP(port) for _ in range(n_pre)]
    px.log.wait_for(r"Started proxying", count=n_relay)

    stopper = Stopper(px, timeout=30)
    stopper.start()
    wait_refused(port)
    for c in relays:
        c.read_until_closed(timeout=5)
    for c in pre:
        rest = c.read_until_closed(timeout=5)
        assert rest.startswith(b"* BYE "), rest
    rc, elapsed = stopper.finish()
    assert rc == 0
    # No login in progress: no waiting for the 20 s deadline (margin for a busy CI box).
    assert elapsed < 8, f"exit took {elapsed:.1f}s with no login in progress"
    shut = px.log.find(r"proxy\(user1,[^)]+\): " + SHUTDOWN_LINE)
    assert len(shut) == n_relay, px.log.text()
    # (>=: a probe of wait_refused() may have been accepted just before the close)
    assert len(px.log.find(r"Disconnected: Process shutting down")) >= n_pre
    assert px.log.find(r"portier: Info: Stopped")


def slow_login_script(delay, *, answer: bool):
    """Banner, read ID + LOGIN, then answer after `delay` (or never)."""
    head = [bs.imap_banner(), fb.expect_line(rb"^I ID \("), fb.expect_line(rb"^L LOGIN ")]
    if not answer:
        return head + [fb.stall()]
    return head + [fb.sleep(delay), bs.imap_id_reply(),
                   fb.send_line(f"L OK [CAPABILITY {bs.IMAP_POSTLOGIN_CAPS}] Logged in"),
                   bs.imap_serve()]


def test_sigterm_lets_login_in_progress_finish(make_portier, make_fake):
    """A login waiting on a backend that answers after ~1 s completes (the
    client gets its OK) and the session is then closed; the process exits
    soon after, long before shutdown_timeout."""
    fake = make_fake(slow_login_script(1.0, answer=True))
    px = make_portier([User("u", "u-Pw-31", proxy(fake.port))],
                      settings={"server": {"shutdown_timeout": "20s"}})
    port = px.port("imap", "none")
    c = RawIMAP(port)
    c.send('a LOGIN u "u-Pw-31"\r\n')
    fake.wait_for_received(rb"L LOGIN ", timeout=5)
    stopper = Stopper(px, timeout=30)
    stopper.start()
    wait_refused(port)
    lines = c.read_until_tagged("a")
    assert lines[-1].startswith(b"a OK"), lines
    c.read_until_closed(timeout=5)
    rc, elapsed = stopper.finish()
    assert rc == 0
    assert elapsed < 8, f"exit took {elapsed:.1f}s (backend answered after 1 s; deadline 20 s)"
    assert px.log.find(r"proxy\(u,[^)]+\): Started proxying")
    assert px.log.find(r"proxy\(u,[^)]+\): " + SHUTDOWN_LINE)


def never_finishing_login(make_portier, make_fake):
    """A login stuck on a backend that never answers LOGIN, then SIGTERM with
    shutdown_timeout=2s. Returns (portier, fake, what the client got, rc,
    seconds from SIGTERM to exit)."""
    fake = make_fake(slow_login_script(None, answer=False))
    px = make_portier([User("u", "u-Pw-31", proxy(fake.port, proxy_timeout="30"))],
                      settings={"server": {"shutdown_timeout": "2s"}})
    c = RawIMAP(px.port("imap", "none"))
    c.send('a LOGIN u "u-Pw-31"\r\n')
    fake.wait_for_received(rb"L LOGIN ", timeout=5)
    stopper = Stopper(px, timeout=15)
    stopper.start()
    rest = c.read_until_closed(timeout=8)
    rc, elapsed = stopper.finish()
    fake.wait_done(1, timeout=5)      # the backend connection was closed too
    return px, fake, rest, rc, elapsed


def test_sigterm_deadline_bounds_a_login_that_never_finishes(make_portier, make_fake):
    px, fake, rest, rc, elapsed = never_finishing_login(make_portier, make_fake)
    assert rc == 0
    assert 1.8 <= elapsed < 6, f"exit took {elapsed:.1f}s, shutdown_timeout is 2s"
    assert b"a OK" not in rest, rest
    assert not px.log.find(r"Started proxying")
    assert px.log.find(r"imap-login: Info: Disconnected: Process shutting down .*user=<u>")


def test_sigterm_deadline_says_goodbye_to_cut_login(make_portier, make_fake):
    px, fake, rest, rc, elapsed = never_finishing_login(make_portier, make_fake)
    assert rest == b"* BYE Server shutting down.\r\n", rest
    line = px.log.find(r"Disconnected: Process shutting down .*user=<u>")[0].string
    assert "Disconnected by server" not in line, line


# ==================================================================== SIGHUP
def test_idle_session_survives_three_reloads(make_portier, dc):
    px = make_portier([User(IDLER, IDLER_PW, proxy(dc.ports["imap"]))])
    port = px.port("imap", "none")
    c = login_ok(port, IDLER, IDLER_PW)
    sel = c.command("s", "SELECT INBOX")
    assert sel[-1].startswith(b"s OK"), sel
    before = int(next(re.match(rb"\* (\d+) EXISTS", l).group(1) for l in sel
                      if re.match(rb"\* \d+ EXISTS", l)))
    c.send("i IDLE\r\n")
    assert c.readline().startswith(b"+ ")
    for k in range(3):
        px.settings = {"login": {"greeting": f"reload {k}."}}
        px.write_config()
        reload(px)
        with RawIMAP(port) as n:                     # the reload took effect
            assert n.banner.endswith(f"reload {k}.".encode()), n.banner
    dc.deliver(IDLER, b"From: a@b\r\nSubject: after reloads\r\n\r\nhello\r\n")
    c.sock.settimeout(40)     # inotify normally; Dovecot's 30 s check interval at worst
    line = c.readline()
    while not line.endswith(b"EXISTS"):
        assert line.startswith(b"* "), line
        line = c.readline()
    assert line == f"* {before + 1} EXISTS".encode(), line
    c.send("DONE\r\n")
    assert c.read_until_tagged("i")[-1].startswith(b"i OK")
    assert c.command("z", "LOGOUT")[-1].startswith(b"z OK")
    assert not px.log.find(SHUTDOWN_LINE)


def test_reload_switches_passdb_for_new_sessions_only(make_portier, dc):
    px = make_portier([User("user1", P1, proxy(dc.ports["imap"]))])
    port = px.port("imap", "none")
    old = login_ok(port, "user1", P1)
    assert old.command("s", "SELECT INBOX")[-1].startswith(b"s OK")
    # A different passwd-file without user1 but with a new user.
    px.passwd_path = px.dir / "second.passwd"
    px.users = [User("fresh", "fresh-Pw-77", proxy(dc.ports["imap"], destuser="user2",
                                                   pass_=BACKEND_USERS["user2"]))]
    px.write_config()
    reload(px)
    login_ok(port, "fresh", "fresh-Pw-77").close()
    with RawIMAP(port) as n:
        lines = n.command("a", f'LOGIN user1 "{P1}"')
        assert lines[-1].startswith(b"a NO [AUTHENTICATIONFAILED]"), lines
    assert old.command("n", "NOOP")[-1].startswith(b"n OK")     # untouched
    assert old.command("z", "LOGOUT")[-1].startswith(b"z OK")


def cert_der(port: int) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s) as t:
            return t.getpeercert(binary_form=True)


def pem_der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(Path(path).read_text())


def test_reload_changes_certificate_for_new_tls_sessions(make_portier, dc, tmp_path):
    px = make_portier([User("user1", P1, proxy(dc.ports["imap"]))])
    first = px.certs
    tls_port = px.port("imap", "implicit")
    assert cert_der(tls_port) == pem_der(first.cert)
    old = login_ok(tls_port, "user1", P1, tls=True, ca=first.ca)
    second = make_certs(tmp_path / "second-certs")
    px.certs = second
    px.write_config()
    reload(px)
    assert cert_der(tls_port) == pem_der(second.cert)
    login_ok(tls_port, "user1", P1, tls=True, ca=second.ca).close()
    # STARTTLS picks up the new certificate as well.
    with RawIMAP(px.port("imap", "starttls")) as s:
        s.starttls(second.ca)
        assert s.sock.getpeercert(binary_form=True) == pem_der(second.cert)
    assert old.command("n", "NOOP")[-1].startswith(b"n OK")    # old TLS session lives
    old.close()


BROKEN = [
    # id, edit(config text, tmp dir) -> text, error regex (besides the headline)
    ("toml-syntax", lambda t, d: t + "\n[bogus\n", r"\.toml:\d+"),
    ("unknown-key", lambda t, d: t.replace("workers = 2", "workers = 2\nwrokers = 3"),
     r"\.toml:\d+.*wrokers"),
    ("bad-value", lambda t, d: t.replace('proxy_timeout = "30s"', 'proxy_timeout = "soon"'),
     r"\.toml:\d+.*proxy_timeout"),
    ("missing-cert", lambda t, d: re.sub(r'(?m)^cert = ".*"$', f'cert = "{d}/nope.pem"', t,
                                         count=1), r"nope\.pem"),
    ("unknown-protocol", lambda t, d: t.replace('protocol = "imap"', 'protocol = "nntp"'),
     r"nntp"),
]


@pytest.mark.parametrize("edit,error", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_config_on_reload_keeps_old_config(make_portier, dc, tmp_path, edit, error):
    px = make_portier([User("user1", P1, proxy(dc.ports["imap"]))],
                      settings={"login": {"greeting": "old config."}})
    port = px.port("imap", "none")
    live = login_ok(port, "user1", P1)
    good = px.conf_path.read_text()
    broken = edit(good.replace('greeting = "old config."', 'greeting = "new config."'),
                  tmp_path)
    assert broken != good
    px.conf_path.write_text(broken)
    mark = reload(px, expect=r"portier: Error: Config reload failed, keeping the old config")
    px.log.wait_for(r"portier: Error: .*" + error, since=mark, timeout=5)
    assert not px.log.find(r"Config reloaded", since=mark)
    assert px.alive()
    with RawIMAP(port) as n:                           # old config still in force
        assert n.banner.endswith(b"old config."), n.banner
    login_ok(port, "user1", P1).close()
    assert live.command("n", "NOOP")[-1].startswith(b"n OK")
    # Fixing the file and reloading again applies the new config.
    px.conf_path.write_text(good.replace('greeting = "old config."',
                                         'greeting = "fixed config."'))
    reload(px)
    with RawIMAP(port) as n:
        assert n.banner.endswith(b"fixed config."), n.banner
    live.close()
