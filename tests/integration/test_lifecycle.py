"""Command line, signals and configuration handling of the portier process."""
from __future__ import annotations

import re
import signal
import subprocess
import threading
import time

import pytest

from tests.support import backend_scripts as bs
from tests.support import fake_backend as fb
from tests.support.accounts import BACKEND_USERS
from tests.support.imap_client import RawIMAP, imap_connect
from tests.support.portier import Listener, User, portier_bin, proxy, render_config

P1 = BACKEND_USERS["user1"]


def run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([str(portier_bin()), *args], capture_output=True, text=True,
                          timeout=timeout)


def write_config(tmp_path, certs, **kw):
    passwd = tmp_path / "users.passwd"
    passwd.write_text(User("user1", P1, proxy(143)).line())
    conf = tmp_path / "portier.toml"
    conf.write_text(render_config(listeners=[Listener("imap", "none")], passwd_path=passwd,
                                  certs=certs, **kw))
    return conf


def until(pred, timeout: float = 10.0, what: str = "condition"):
    """Poll `pred` with a deadline (for effects with no observable event,
    like a config reload or a passwd-file re-read)."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        r = pred()
        if r:
            return r
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def test_version(portier_available):
    r = run("--version")
    assert r.returncode == 0, r.stderr
    assert re.search(r"\d+\.\d+", r.stdout + r.stderr)


def test_check_accepts_valid_config(portier_available, tmp_path, certs):
    conf = write_config(tmp_path, certs)
    r = run("--check", "-c", str(conf))
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_reports_file_and_line(portier_available, tmp_path, certs):
    conf = write_config(tmp_path, certs, extra_toml="[login]\nno_such_setting = 1\n")
    # (a second [login] table is itself an error; either way: file:line)
    r = run("--check", "-c", str(conf))
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert re.search(re.escape(str(conf)) + r":\d+", out), out


def test_check_reports_unknown_key_line(portier_available, tmp_path, certs):
    conf = write_config(tmp_path, certs)
    text = conf.read_text().replace("workers = 2", "workers = 2\nwrokers = 3")
    conf.write_text(text)
    line = text.splitlines().index("wrokers = 3") + 1
    r = run("--check", "-c", str(conf))
    assert r.returncode != 0
    assert f"{conf}:{line}" in r.stdout + r.stderr, r.stdout + r.stderr


def test_sigterm_ends_relayed_sessions(make_portier, dovecot):
    px = make_portier([User("user1", P1, proxy(dovecot.ports["imap"]))])
    c = RawIMAP(px.port("imap", "none"))
    assert c.command("a", f'LOGIN user1 "{P1}"')[-1].startswith(b"a OK")
    assert c.command("b", "SELECT INBOX")[-1].startswith(b"b OK")
    t0 = time.monotonic()
    px.stop(check=True)            # SIGTERM, must exit 0
    assert time.monotonic() - t0 < 10
    c.read_until_closed(timeout=5)
    assert px.log.find(r"proxy\(user1,[^)]+\): Disconnected by proxy: Process shutting down")


def test_sigterm_lets_a_login_in_progress_finish(make_portier, make_fake):
    """SIGTERM while portier is logging in to a backend: the login may finish
    within [server] shutdown_timeout - the client gets its tagged OK - then
    the session ends with `Disconnected by proxy: Process shutting down`."""
    release = threading.Event()
    fake = make_fake([bs.imap_banner(), fb.expect_lines(2), fb.call(lambda c: release.wait(10)),
                      bs.imap_id_reply(), fb.send_line("L OK Logged in"), bs.imap_serve()])
    px = make_portier([User("u", "u-Pw-4242", proxy(fake.port))],
                      settings={"server": {"shutdown_timeout": "5s"}})
    c = RawIMAP(px.port("imap", "none"))
    c.send('a LOGIN u "u-Pw-4242"\r\n')
    fake.wait_for_received(rb"L LOGIN")
    px.signal(signal.SIGTERM)
    px.log.wait_for(r"portier: Info: Shutting down")
    release.set()
    data = c.read_until_closed(timeout=8)
    assert data.startswith(b"a OK [CAPABILITY "), data
    px.stop(check=True)
    assert px.log.find(r"proxy\(u,[^)]+\): Started proxying")
    assert px.log.find(r"proxy\(u,[^)]+\): Disconnected by proxy: Process shutting down")


def test_sigterm_gives_up_on_a_stalled_login_after_shutdown_timeout(make_portier, make_fake):
    fake = make_fake([bs.imap_banner(), fb.expect_lines(2), fb.stall()])
    px = make_portier([User("u", "u-Pw-4242", proxy(fake.port))],
                      settings={"server": {"shutdown_timeout": "1s"}})
    c = RawIMAP(px.port("imap", "none"))
    c.send('a LOGIN u "u-Pw-4242"\r\n')
    fake.wait_for_received(rb"L LOGIN")
    t0 = time.monotonic()
    px.stop(check=True)                      # SIGTERM; must exit 0
    assert time.monotonic() - t0 < 5, "shutdown_timeout not honoured"
    c.read_until_closed(timeout=5)
    assert fake.wait_done(1, timeout=5)[0].peer_closed


def test_sighup_reloads_config_and_keeps_sessions(make_portier, dovecot):
    px = make_portier([User("user1", P1, proxy(dovecot.ports["imap"]))])
    live = RawIMAP(px.port("imap", "none"))
    assert live.command("a", f'LOGIN user1 "{P1}"')[-1].startswith(b"a OK")
    conf = px.conf_path
    conf.write_text(conf.read_text().replace('greeting = "portier ready."',
                                             'greeting = "reloaded ready."'))
    px.signal(signal.SIGHUP)

    def banner():
        with RawIMAP(px.port("imap", "none")) as c:
            return c.banner.endswith(b"reloaded ready.")
    until(banner, what="new greeting after SIGHUP")
    # The session relayed before the reload is untouched.
    assert live.command("b", "NOOP")[-1].startswith(b"b OK")
    live.close()
    # A broken config on SIGHUP is rejected; the old one stays in force.
    conf.write_text(conf.read_text() + "\n[bogus\n")
    mark = px.log.mark()
    px.signal(signal.SIGHUP)
    px.log.wait_for(r"portier: (Error|Warning): .*", since=mark, timeout=5)
    assert px.alive()
    with RawIMAP(px.port("imap", "none")) as c:
        assert c.banner.endswith(b"reloaded ready.")
        assert c.command("c", f'LOGIN user1 "{P1}"')[-1].startswith(b"c OK")


def test_passwd_file_changes_are_picked_up(make_portier, dovecot):
    px = make_portier([User("user1", P1, proxy(dovecot.ports["imap"]))])
    with px.passwd_path.open("a") as f:
        f.write(User("late", "late-Pw-61", proxy(dovecot.ports["imap"], destuser="user2",
                                                 pass_=BACKEND_USERS["user2"])).line())

    def login():
        with RawIMAP(px.port("imap", "none")) as c:
            return c.command("a", 'LOGIN late "late-Pw-61"')[-1].startswith(b"a OK")
    until(login, what="login of a user added to the passwd-file")


@pytest.mark.parametrize("fields", ["", "proxy port=143", "proxy host=mail.example.org"],
                         ids=["no-proxy-field", "no-host", "host-not-an-ip"])
def test_unusable_passdb_entries_are_temporary_failures(make_portier, fields):
    px = make_portier([User("odd", "odd-Pw-12", fields)])
    with RawIMAP(px.port("imap", "none")) as c:
        lines = c.command("a", 'LOGIN odd "odd-Pw-12"')
        assert lines[-1].startswith(b"a NO [UNAVAILABLE]"), lines
