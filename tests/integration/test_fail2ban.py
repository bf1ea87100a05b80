"""fail2ban on portier's real log: failed logins (wrong password, unknown
user, a backend refusing the forwarded password) and successful logins for
IMAP, POP3, Submission and ManageSieve through portier to the real Dovecot
backend; then Debian's `fail2ban-regex` with the stock
/etc/fail2ban/filter.d/dovecot.conf and with contrib/fail2ban/filter.d/portier.conf.

Every failed-login line must match, with the client's IP, and nothing from a
successful login may match. Log shapes covered:
  - portier's stderr written to a file of its own (`<date> imap-login: Info: …`);
  - the same lines as rsyslog writes them for [log] target = "syslog"
    (`<Mmm dd hh:mm:ss> <host> portier[pid]: imap-login: Info: …`), whose tag
    the stock filter does not accept (unless syslog_ident = "dovecot").
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.accounts import BACKEND_USERS
from tests.support.portier import REPO, Listener, User, proxy

P1 = BACKEND_USERS["user1"]
STOCK = Path("/etc/fail2ban/filter.d/dovecot.conf")
CONTRIB = REPO / "contrib" / "fail2ban" / "filter.d" / "portier.conf"
OK_IP = "127.0.0.2"
PROTOS = {  # protocol -> (dovecot port key, greeting regex)
    "imap": ("imap", r"\* OK"),
    "pop3": ("pop3", r"\+OK"),
    "submission": ("submission", r"220 "),
    "managesieve": ("sieve", r"OK"),
}
# The lines the stock filter is meant to catch (2.3 forms, §4.3 of the ops reference).
STOCK_FAIL_RE = re.compile(r"Password mismatch$|unknown user$|\(auth failed, \d+ attempts|"
                           r"\(proxy dest auth failed\)")
EXTRA_FAIL_RE = re.compile(r"Login failed: |Too many connections from this IP")

pytestmark = pytest.mark.skipif(shutil.which("fail2ban-regex") is None or not STOCK.exists(),
                                reason="Debian package fail2ban not installed "
                                       "(scripts/install-deps.sh)")


def plain(user: str, pw: str) -> str:
    return base64.b64encode(f"\0{user}\0{pw}".encode()).decode()


def talk(port: int, src: str, script: list[tuple[str | None, str]]) -> list[str]:
    """Send each line and read up to the reply line matching its regex."""
    out = []
    with socket.create_connection(("127.0.0.1", port), 10, source_address=(src, 0)) as s:
        f = s.makefile("rb")
        for send, until in script:
            if send is not None:
                s.sendall(send.encode() + b"\r\n")
            while True:
                raw = f.readline()
                if not raw:
                    raise EOFError(f"connection closed; replies so far: {out}")
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if re.match(until, line):
                    out.append(line)
                    break
    return out


def login(proto: str, port: int, src: str, user: str, pw: str) -> bool:
    """One login attempt, then a clean logout. True when it succeeded."""
    greet = PROTOS[proto][1]
    if proto == "imap":
        r = talk(port, src, [(None, greet), (f"a LOGIN {user} {pw}", r"a (OK|NO|BAD)"),
                             ("b LOGOUT", r"b OK")])
        return r[1].startswith("a OK")
    if proto == "pop3":
        r = talk(port, src, [(None, greet), (f"USER {user}", r"[+-]"),
                             (f"PASS {pw}", r"\+OK|-ERR"), ("QUIT", r"\+OK")])
        return r[2].startswith("+OK")
    if proto == "submission":
        r = talk(port, src, [(None, greet), ("EHLO client.test", r"250 "),
                             (f"AUTH PLAIN {plain(user, pw)}", r"\d{3} "), ("QUIT", r"221 ")])
        return r[2].startswith("235")
    r = talk(port, src, [(None, greet), (f'AUTHENTICATE "PLAIN" "{plain(user, pw)}"', r"OK|NO"),
                         ("LOGOUT", r"OK")])
    return r[1].startswith("OK")


def fail2ban(log: Path, filt: Path) -> list[tuple[str, str]]:
    r = subprocess.run(["fail2ban-regex", "-o", "<ip> <msg>", str(log), str(filt)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    return [tuple(line.split(" ", 1)) for line in r.stdout.splitlines() if line.strip()]


def line_ip(line: str) -> str:
    m = re.search(r"rip=([0-9a-f.:]+)|\w\([^,]*,([0-9a-f.:]+),", line)
    assert m, line
    return m[1] or m[2]


@pytest.fixture(scope="module")
def logs(module_portier_factory, dovecot, tmp_path_factory):
    users = []
    for proto, (key, _) in PROTOS.items():
        port = dovecot.ports[key]
        users.append(User(f"{proto}-u", P1, proxy(port, destuser="user1")))
        # No password check here: the backend refuses the forwarded password.
        users.append(User(f"{proto}-nopw", None, proxy(port, destuser="user1", nopassword=True)))
    p = module_portier_factory(users, listeners=[Listener(proto) for proto in PROTOS],
                               settings={"login": {"max_connections_per_ip": 2}})
    fail_ips: dict[str, str] = {}
    n = 0
    for proto in PROTOS:
        port = p.port(proto, "none")
        assert login(proto, port, OK_IP, f"{proto}-u", P1), proto
        for what, user, pw in (("wrong password", f"{proto}-u", "wrong-Pw-1"),
                               ("unknown user", f"nobody-{proto}", "wrong-Pw-2"),
                               ("backend refused", f"{proto}-nopw", "wrong-Pw-3")):
            n += 1
            ip = f"127.0.1.{n}"
            fail_ips[ip] = f"{proto}: {what}"
            assert not login(proto, port, ip, user, pw), (proto, what)
    for ip in fail_ips:
        p.log.wait_for(rf"\((auth failed|proxy dest auth failed)[^)]*\): .*rip={re.escape(ip)},")
    for proto in PROTOS:
        p.log.wait_for(rf"{proto}-login: Info: proxy\({proto}-u,.*Disconnected by")
    # One address over max_connections_per_ip.
    flood_ip = "127.0.2.1"
    port = p.port("imap", "none")
    held = [socket.create_connection(("127.0.0.1", port), 5, source_address=(flood_ip, 0))
            for _ in range(3)]
    p.log.wait_for(rf"Too many connections from this IP .*rip={re.escape(flood_ip)},")
    for s in held:
        s.close()

    d = tmp_path_factory.mktemp("f2b")
    lines = [line for line in p.log.lines() if not line.startswith("[stdout]")]
    own_file = d / "portier.log"
    own_file.write_text("\n".join(lines) + "\n")

    def as_syslog(tag: str) -> Path:
        # What rsyslog writes to /var/log/mail.log for [log] target = "syslog".
        out = d / f"mail-{tag}.log"
        out.write_text("".join(
            f"{time.strftime('%b %e %H:%M:%S')} mx1 {tag}[4242]: {line.split(' ', 2)[2]}\n"
            for line in lines if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line)))
        return out

    # portier.conf next to the stock filters, as an operator installs it.
    fdir = d / "filter.d"
    shutil.copytree(STOCK.parent, fdir)
    shutil.copy(CONTRIB, fdir / "portier.conf")
    return {"lines": lines, "fail_ips": fail_ips, "flood_ip": flood_ip, "own_file": own_file,
            "syslog_portier": as_syslog("portier"), "syslog_dovecot": as_syslog("dovecot"),
            "stock": fdir / "dovecot.conf", "portier": fdir / "portier.conf"}


def check(matched, logs, expect_re):
    want = [line for line in logs["lines"] if expect_re.search(line)]
    body = {line.split(" ", 2)[2] for line in want}
    got = {}
    for ip, msg in matched:
        tail = next((b for b in body if msg.endswith(b)), None)
        assert tail is not None, f"matched a line that is no failed login: {msg}"
        assert ip == line_ip(tail), (ip, msg)
        assert ip in logs["fail_ips"] or ip == logs["flood_ip"], (ip, msg)
        got[tail] = ip
    missing = body - set(got)
    assert not missing, "failed-login lines fail2ban missed:\n" + "\n".join(sorted(missing))
    assert OK_IP not in got.values()
    # Every protocol, every kind of failure, each from its own address.
    assert set(logs["fail_ips"]) <= set(got.values())
    return got


def test_stock_dovecot_filter_on_portier_log_file(logs):
    got = check(fail2ban(logs["own_file"], logs["stock"]), logs, STOCK_FAIL_RE)
    for proto in PROTOS:
        assert any(f"{proto}-login: Info: Disconnected" in line for line in got), proto
        assert any(f"{proto}-login: Info: Disconnected: " in line and "(proxy dest auth failed)"
                   in line for line in got), proto


def test_portier_filter_on_portier_log_file(logs):
    combined = re.compile(STOCK_FAIL_RE.pattern + "|" + EXTRA_FAIL_RE.pattern)
    got = check(fail2ban(logs["own_file"], logs["portier"]), logs, combined)
    assert logs["flood_ip"] in got.values()
    assert sum("Login failed: " in line for line in got) == len(PROTOS)


def test_portier_filter_on_syslog_lines(logs):
    combined = re.compile(STOCK_FAIL_RE.pattern + "|" + EXTRA_FAIL_RE.pattern)
    check(fail2ban(logs["syslog_portier"], logs["portier"]), logs, combined)


def test_stock_filter_and_the_syslog_tag(logs):
    # Tag `portier`: the stock filter's _daemon does not accept it (documented;
    # use filter.d/portier.conf or syslog_ident = "dovecot").
    assert fail2ban(logs["syslog_portier"], logs["stock"]) == []
    check(fail2ban(logs["syslog_dovecot"], logs["stock"]), logs, STOCK_FAIL_RE)


# ------------------------------------------------------- a real fail2ban ban
def test_fail2ban_bans_after_repeated_failures(make_portier, dovecot, tmp_path):
    """fail2ban-server itself (private config, socket, in-memory database, the
    `dummy` action writing to a file instead of a firewall) follows portier's
    log with the stock dovecot jail settings (maxretry 5 in 10 min) and the
    portier filter: the address with repeated failures is banned, the one with
    fewer is not, the one that logged in successfully never."""
    if os.geteuid() != 0:
        pytest.skip("fail2ban-server needs root for its own files")
    p = make_portier([User("imap-u", P1, proxy(dovecot.ports["imap"], destuser="user1"))],
                     listeners=[Listener("imap")])
    port = p.port("imap", "none")
    bad, few = "127.0.3.1", "127.0.3.2"
    for i in range(3):
        assert not login("imap", port, bad, "imap-u", f"wrong-Pw-{i}")
    assert not login("imap", port, few, "imap-u", "wrong-Pw-x")  # 2 matching lines < 5
    assert login("imap", port, OK_IP, "imap-u", P1)
    p.log.wait_for(rf"\(auth failed, 1 attempts in \d+ secs\): .*rip={re.escape(few)},")
    p.log.wait_for(r"proxy\(imap-u,.*Disconnected by")
    log = tmp_path / "portier.log"
    log.write_text("\n".join(line for line in p.log.lines()
                             if not line.startswith("[stdout]")) + "\n")

    conf = tmp_path / "fail2ban"
    shutil.copytree(STOCK.parent.parent, conf)
    shutil.rmtree(conf / "jail.d")            # Debian's enables [sshd]
    (conf / "jail.d").mkdir()
    shutil.copy(CONTRIB, conf / "filter.d" / "portier.conf")
    (conf / "fail2ban.local").write_text("[DEFAULT]\ndbfile = :memory:\n")
    jails = {"dovecot": "stock", "portier": "portier"}
    (conf / "jail.local").write_text("[DEFAULT]\nignoreself = false\nbackend = polling\n" + "".join(
        f"[{name}-test]\nenabled = true\nfilter = {name}\nlogpath = {log}\n"
        f"action = dummy[target={tmp_path}/banned-{name}]\nmaxretry = 5\nfindtime = 10m\n"
        f"bantime = 10m\n" for name in jails))
    sock = tmp_path / "f2b.sock"
    server = subprocess.Popen(["fail2ban-server", "-c", str(conf), "-s", str(sock), "-p",
                               str(tmp_path / "f2b.pid"), "-f", "-x", "--logtarget",
                               str(tmp_path / "f2b.log")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for name in jails:
            banned = tmp_path / f"banned-{name}"
            deadline = time.monotonic() + 30
            # Await the ban, then the jail having read all 8 failure lines.
            while True:
                status = subprocess.run(["fail2ban-client", "-s", str(sock), "status",
                                         f"{name}-test"], capture_output=True, text=True)
                total = re.search(r"Total failed:\s+(\d+)", status.stdout)
                if (banned.exists() and f"+{bad}" in banned.read_text()
                        and total and int(total[1]) == 8):
                    break
                assert server.poll() is None, (tmp_path / "f2b.log").read_text()
                assert time.monotonic() < deadline, (
                    f"{name}: no ban of {bad}; status:\n{status.stdout}{status.stderr}\n"
                    f"log:\n{(tmp_path / 'f2b.log').read_text()}")
                time.sleep(0.2)   # fail2ban offers no event to await
            text = banned.read_text()
            assert few not in text and OK_IP not in text, text
    finally:
        subprocess.run(["fail2ban-client", "-s", str(sock), "stop"], capture_output=True,
                       timeout=20)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
