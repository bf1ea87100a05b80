"""IMAP load through portier to a real Dovecot: many idle logged-in sessions
plus a burst of concurrent full logins, with portier's memory measured.

Used by tests/integration/test_load.py (CI size: 2 000 idle + 500 burst) and
by bench/load_idle.sh (9 000 idle + 500 burst).  One asyncio event loop, one
coroutine per connection; every wait has a timeout.

    with LoadRig(n_users=2500, workdir=d) as rig:      # Dovecot + portier
        res = asyncio.run(run_load(rig, idle=2000, burst=500))
    res.errors, res.idle_open_s, res.burst_s, res.mem_per_session_kib, ...

CLI (what bench/ runs):  python3 -m tests.support.loadgen --idle 9000 --burst 500
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .dovecot import DovecotBackend
from .portier import Listener, Portier, User, proxy

# A socket option not exported by every Python: let several connections from
# one bound source address share ports until connect() picks the 4-tuple.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def raise_fd_limit(want: int) -> int:
    """Raise RLIMIT_NOFILE (soft) towards `want`, capped by the hard limit;
    children started afterwards (Dovecot, portier) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(max(soft, want), hard) if hard != resource.RLIM_INFINITY else max(soft, want)
    if new != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


def user_name(i: int) -> str:
    return f"load{i:05d}"


def user_pass(i: int) -> str:
    return f"load-Pw-{i:05d}x"


def dovecot_limits(sessions: int) -> str:
    """Dovecot settings for `sessions` concurrent IMAP sessions: login
    processes in high-performance mode, several clients per imap process
    (all users share one UID), and enough client/process slots everywhere."""
    per_imap = 50
    return f"""
default_process_limit = {sessions // per_imap + 100}
default_client_limit = {sessions * 2 + 1000}
default_vsz_limit = 1G
mail_max_userip_connections = {sessions + 100}
service imap-login {{
  service_count = 0
  process_min_avail = 2
  process_limit = 4
  client_limit = {sessions + 500}
}}
service imap {{
  service_count = 0
  client_limit = {per_imap}
  process_limit = {sessions // per_imap + 100}
}}
service anvil {{
  client_limit = {sessions + 1000}
}}
service auth {{
  client_limit = {sessions + 1000}
}}
"""


class LoadRig:
    """A private Dovecot with `n_users` accounts and portier in front of it
    (plain IMAP listener, one passwd-file line per user)."""

    def __init__(self, n_users: int, workdir: str | os.PathLike, *, workers: int = 2,
                 log_level: str = "info", portier_settings: dict | None = None) -> None:
        self.n_users = n_users
        self.dir = Path(workdir)
        self.workers = workers
        self.log_level = log_level
        self.portier_settings = portier_settings or {}
        self.dovecot: DovecotBackend | None = None
        self.portier: Portier | None = None

    def start(self) -> "LoadRig":
        raise_fd_limit(4 * self.n_users + 2000)
        users = {user_name(i): user_pass(i) for i in range(self.n_users)}
        self.dovecot = DovecotBackend(users=users, extra_conf=dovecot_limits(self.n_users))
        self.dovecot.start(timeout=30)
        port = self.dovecot.ports["imap"]
        settings = {"server": {"workers": self.workers}, "log": {"level": self.log_level},
                    "login": {"proxy_timeout": "30s"}}
        for k, v in self.portier_settings.items():
            settings.setdefault(k, {}).update(v)
        self.portier = Portier(self.dir / "portier", certs=None,
                               listeners=[Listener("imap", "none")], settings=settings,
                               users=[User(user_name(i), user_pass(i), proxy(port))
                                      for i in range(self.n_users)])
        self.portier.start(timeout=30)
        return self

    @property
    def port(self) -> int:
        assert self.portier is not None
        return self.portier.port("imap", "none")

    def stop(self) -> None:
        try:
            if self.portier is not None:
                self.portier.stop(timeout=30, check=False)
        finally:
            if self.dovecot is not None:
                self.dovecot.stop(timeout=30)

    def __enter__(self) -> "LoadRig":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


# ------------------------------------------------------------------- memory
def memory_kib(pid: int) -> dict[str, int]:
    """Rss / Pss / Private_Dirty (kB) of a process from smaps_rollup."""
    out = {}
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    for key in ("Rss", "Pss", "Private_Dirty", "Anonymous"):
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        if m:
            out[key.lower()] = int(m.group(1))
    return out


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# ------------------------------------------------------------------ clients
class LoadError(Exception):
    pass


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    user: str


async def _line(r: asyncio.StreamReader, timeout: float) -> bytes:
    line = await asyncio.wait_for(r.readline(), timeout)
    if not line:
        raise LoadError("connection closed")
    return line.rstrip(b"\r\n")


async def command(c: Conn, tag: str, cmd: str, timeout: float) -> bytes:
    """Send `tag cmd`, return the tagged completion (untagged lines skipped)."""
    c.writer.write(f"{tag} {cmd}\r\n".encode())
    t = tag.encode() + b" "
    for _ in range(1000):
        line = await _line(c.reader, timeout)
        if line.startswith(t):
            return line
    raise LoadError(f"{tag}: no tagged reply within 1000 lines")


async def login(port: int, user: str, pw: str, *, source: str | None = None,
                timeout: float = 30.0) -> Conn:
    sock = None
    if source:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(
            sock, ("127.0.0.1", port)), timeout)
        r, w = await asyncio.open_connection(sock=sock, limit=16384)
    else:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, limit=16384),
                                      timeout)
    c = Conn(r, w, user)
    try:
        banner = await _line(r, timeout)
        if not banner.startswith(b"* OK"):
            raise LoadError(f"banner {banner[:100]!r}")
        reply = await command(c, "a", f'LOGIN "{user}" "{pw}"', timeout)
        if not reply.startswith(b"a OK"):
            raise LoadError(f"LOGIN {user}: {reply[:200]!r}")
    except BaseException:
        w.close()
        raise
    return c


async def close(c: Conn, logout: bool, timeout: float) -> None:
    try:
        if logout:
            reply = await command(c, "z", "LOGOUT", timeout)
            if not reply.startswith(b"z OK"):
                raise LoadError(f"LOGOUT {c.user}: {reply[:200]!r}")
    finally:
        c.writer.close()
        try:
            await asyncio.wait_for(c.writer.wait_closed(), timeout)
        except (OSError, asyncio.TimeoutError):
            pass


# ------------------------------------------------------------------ scenario
@dataclass
class Result:
    idle: int
    burst: int
    errors: list[str] = field(default_factory=list)
    idle_open_s: float = 0.0           # time to log in all idle sessions
    idle_rate: float = 0.0             # logins/s while opening them
    burst_s: float = 0.0               # wall time of the concurrent burst
    burst_p50_ms: float = 0.0
    burst_p99_ms: float = 0.0
    burst_max_ms: float = 0.0
    noop_all_s: float = 0.0            # NOOP on every idle session afterwards
    mem_base_kib: dict = field(default_factory=dict)
    mem_idle_kib: dict = field(default_factory=dict)
    rss_per_session_kib: float = 0.0
    pss_per_session_kib: float = 0.0
    fds_base: int = 0
    fds_idle: int = 0
    portier_cpu_s: float = 0.0         # portier's user+sys CPU during the run
    total_s: float = 0.0

    def summary(self) -> str:
        return (f"idle={self.idle} opened in {self.idle_open_s:.1f}s ({self.idle_rate:.0f}/s); "
                f"burst={self.burst} in {self.burst_s:.1f}s (p50 {self.burst_p50_ms:.0f} ms, "
                f"p99 {self.burst_p99_ms:.0f} ms, max {self.burst_max_ms:.0f} ms); "
                f"NOOP on all idle in {self.noop_all_s:.1f}s; portier RSS "
                f"{self.mem_base_kib.get('rss')}->{self.mem_idle_kib.get('rss')} KiB, "
                f"PSS {self.mem_base_kib.get('pss')}->{self.mem_idle_kib.get('pss')} KiB = "
                f"{self.rss_per_session_kib:.1f} KiB RSS / {self.pss_per_session_kib:.1f} KiB "
                f"PSS per idle session; fds {self.fds_base}->{self.fds_idle}; "
                f"portier CPU {self.portier_cpu_s:.1f}s; "
                f"errors={len(self.errors)}; total {self.total_s:.1f}s")


def _sources(n: int) -> list[str | None]:
    return [f"127.0.{1 + i // 250}.{2 + i % 250}" for i in range(n)] if n else [None]


async def run_load(rig: LoadRig, idle: int, burst: int, *, ramp: int = 64,
                   timeout: float = 30.0, source_addrs: int = 8,
                   max_errors: int = 20) -> Result:
    """Open `idle` logged-in sessions (at most `ramp` logins in flight), then
    run `burst` full logins (login, NOOP, LOGOUT) all at once while the idle
    ones are held, then NOOP every idle session and log them all out.
    Users 0..idle-1 hold the idle sessions, idle..idle+burst-1 the burst."""
    assert rig.n_users >= idle + burst, "LoadRig needs one account per session"
    assert rig.portier is not None and rig.portier.proc is not None
    pid = rig.portier.proc.pid
    port = rig.port
    srcs = _sources(source_addrs)
    res = Result(idle=idle, burst=burst)
    t_start = time.monotonic()

    def err(what: str, e: BaseException) -> None:
        if len(res.errors) < max_errors:
            res.errors.append(f"{what}: {type(e).__name__}: {e}")
        elif len(res.errors) == max_errors:
            res.errors.append("... (more errors not recorded)")

    # Warm-up: a few full logins so allocator arenas and caches exist.
    for i in range(min(8, burst)):
        c = await login(port, user_name(idle + i), user_pass(idle + i), timeout=timeout)
        await close(c, True, timeout)
    res.mem_base_kib = memory_kib(pid)
    res.fds_base = fd_count(pid)
    cpu0 = cpu_seconds(pid)

    # 1. idle sessions, ramped.
    sem = asyncio.Semaphore(ramp)
    conns: list[Conn | None] = [None] * idle

    async def open_one(i: int) -> None:
        async with sem:
            try:
                conns[i] = await login(port, user_name(i), user_pass(i),
                                       source=srcs[i % len(srcs)], timeout=timeout)
            except Exception as e:
                err(f"idle login {user_name(i)}", e)
    t0 = time.monotonic()
    await asyncio.gather(*(open_one(i) for i in range(idle)))
    res.idle_open_s = time.monotonic() - t0
    res.idle_rate = idle / res.idle_open_s if res.idle_open_s else 0.0
    res.mem_idle_kib = memory_kib(pid)
    res.fds_idle = fd_count(pid)
    if idle:
        res.rss_per_session_kib = (res.mem_idle_kib["rss"] - res.mem_base_kib["rss"]) / idle
        res.pss_per_session_kib = (res.mem_idle_kib["pss"] - res.mem_base_kib["pss"]) / idle

    # 2. the burst: all at once.
    lat: list[float] = []

    async def full(i: int) -> None:
        u = idle + i
        t = time.monotonic()
        try:
            c = await login(port, user_name(u), user_pass(u), source=srcs[u % len(srcs)],
                            timeout=timeout)
            reply = await command(c, "n", "NOOP", timeout)
            if not reply.startswith(b"n OK"):
                raise LoadError(f"NOOP: {reply[:200]!r}")
            await close(c, True, timeout)
            lat.append(time.monotonic() - t)
        except Exception as e:
            err(f"burst login {user_name(u)}", e)
    t0 = time.monotonic()
    await asyncio.gather(*(full(i) for i in range(burst)))
    res.burst_s = time.monotonic() - t0
    if lat:
        lat.sort()
        res.burst_p50_ms = statistics.median(lat) * 1000
        res.burst_p99_ms = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        res.burst_max_ms = lat[-1] * 1000

    # 3. every idle session still relays; then log out.
    async def noop(i: int) -> None:
        c = conns[i]
        if c is None:
            return
        try:
            reply = await command(c, "n", "NOOP", timeout)
            if not reply.startswith(b"n OK"):
                raise LoadError(f"NOOP: {reply[:200]!r}")
        except Exception as e:
            err(f"idle NOOP {c.user}", e)
    t0 = time.monotonic()
    await asyncio.gather(*(noop(i) for i in range(idle)))
    res.noop_all_s = time.monotonic() - t0

    async def bye(c: Conn) -> None:
        async with sem:
            try:
                await close(c, True, timeout)
            except Exception as e:
                err(f"idle LOGOUT {c.user}", e)
    await asyncio.gather(*(bye(c) for c in conns if c is not None))
    res.portier_cpu_s = cpu_seconds(pid) - cpu0
    res.total_s = time.monotonic() - t_start
    return res


# ----------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--burst", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ramp", type=int, default=64, help="idle logins in flight at once")
    ap.add_argument("--sources", type=int, default=8, help="client source addresses")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="pt-load-", dir="/tmp"))
    try:
        with LoadRig(a.idle + a.burst, work, workers=a.workers, log_level=a.log_level) as rig:
            res = asyncio.run(run_load(rig, a.idle, a.burst, ramp=a.ramp,
                                       source_addrs=a.sources))
            bad = [l for l in rig.portier.log.lines()
                   if re.search(r": (Error|Warning|Fatal): ", l)]
            bad += ["dovecot: " + l for l in rig.dovecot.read_log().splitlines()
                    if re.search(r": (Error|Warning|Fatal|Panic): ", l)]
        print(json.dumps(asdict(res), indent=2) if a.json else res.summary())
        for e in res.errors:
            print("ERROR", e, file=sys.stderr)
        for l in bad[:20]:
            print("LOG", l, file=sys.stderr)
        return 0 if not res.errors and not bad else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
