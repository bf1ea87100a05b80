"""The processes of a benchmark run: proxies (Dovecot's proxy, nginx mail,
portier), the scripted fast backend, the bare relays, and /proc accounting
(CPU of a process tree, PSS of a process tree).

The real Dovecot backend is tests/support/dovecot.py's DovecotBackend; the
portier config is tests/support/portier.py's render_config. Everything binds
127.0.0.1 only; every wait has a deadline.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.portier import Listener, User, proxy, render_config  # noqa: E402
from tests.support.util import die_with_parent, free_port, wait_for_port  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


# ------------------------------------------------------------ /proc helpers
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rfind(b")") + 2:].split()
        kids.setdefault(int(rest[1]), []).append(int(d))
    return kids


def tree_pids(root: int) -> list[int]:
    """root and all its descendants (now)."""
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _stat_cpu(pid: int) -> float:
    """utime+stime+cutime+cstime of one process, seconds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
    except OSError:
        return 0.0
    rest = s[s.rfind(b")") + 2:].split()
    # rest[0] is field 3 (state): utime is field 14 -> rest[11]
    return sum(int(x) for x in rest[11:15]) / CLK_TCK


def tree_cpu(roots: Sequence[int]) -> float:
    """CPU seconds (user+system, reaped children included) of the trees."""
    total = 0.0
    for r in roots:
        for p in tree_pids(r):
            total += _stat_cpu(p)
    return total


def tree_pss_kib(roots: Sequence[int]) -> int:
    """PSS summed over the trees' processes (smaps_rollup), KiB."""
    total = 0
    for r in roots:
        for p in tree_pids(r):
            try:
                with open(f"/proc/{p}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1])
                            break
            except OSError:
                pass
    return total


# ------------------------------------------------------------ processes
class Proc:
    """A child started with a pdeathsig, stdout read for `READY <port>`."""

    def __init__(self, argv: list[str], log: Path, ready: bool = True,
                 timeout: float = 15.0, env: dict | None = None) -> None:
        self.log = log
        self.logf = open(log, "ab")
        self.p = subprocess.Popen(die_with_parent(argv), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE if ready else self.logf,
                                  stderr=self.logf, env=env)
        self.port = 0
        if ready:
            line = _readline_deadline(self.p, timeout)
            if not line.startswith("READY"):
                self.stop()
                raise RuntimeError(f"{argv[0]} did not start: {line!r}; see {log}")
            self.port = int(line.split()[1])

    @property
    def pid(self) -> int:
        return self.p.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        if self.p.stdout:
            self.p.stdout.close()
        self.logf.close()


def _readline_deadline(p: subprocess.Popen, timeout: float) -> str:
    import select
    assert p.stdout is not None
    r, _, _ = select.select([p.stdout], [], [], timeout)
    if not r:
        return ""
    return p.stdout.readline().decode(errors="replace").strip()


class FastBackend(Proc):
    def __init__(self, bindir: Path, workdir: Path, msg_size: int) -> None:
        super().__init__([str(bindir / "fastimapd"), "--port", "0", "--msg-size", str(msg_size)],
                         workdir / "fastimapd.log")


class BareRelay(Proc):
    def __init__(self, bindir: Path, workdir: Path, mode: str, to: int, certs=None) -> None:
        argv = [str(bindir / "barerelay"), "--mode", mode, "--listen", "0", "--to", str(to)]
        if mode == "tls":
            argv += ["--cert", str(certs.cert), "--key", str(certs.key)]
        super().__init__(argv, workdir / f"barerelay-{mode}.log")


class NginxAuth(Proc):
    def __init__(self, workdir: Path, dovecot_port: int, fast_port: int) -> None:
        super().__init__([PYTHON, str(REPO / "bench" / "nginx_auth.py"), "0", str(dovecot_port),
                          str(fast_port)], workdir / "nginx-auth.log")


class AuthHttpService(Proc):
    """tests/support/auth_http.py's service in its own process (the passdb
    rows: one service behind both portier's auth_http passdb and nginx)."""
    def __init__(self, workdir: Path, dovecot_port: int, fast_port: int) -> None:
        super().__init__([PYTHON, str(REPO / "bench" / "auth_http_service.py"), str(dovecot_port),
                          str(fast_port)], workdir / "auth-http-service.log")


# ------------------------------------------------------------ proxies
class ProxyBase:
    name = "?"
    port = 0       # plaintext IMAP
    tls_port = 0   # implicit-TLS IMAP

    def roots(self) -> list[int]:
        raise NotImplementedError

    def extra_roots(self) -> list[int]:
        """Helper processes measured apart (nginx's auth_http server)."""
        return []

    def restart(self) -> None:
        self.stop()
        self.start()


class PortierProxy(ProxyBase):
    name = "portier"

    def __init__(self, binary: Path, workdir: Path, certs, users: list[User],
                 workers: int = 2, log_level: str = "info", name: str = "portier",
                 extra_toml: str = "", settings: dict | None = None,
                 aux: list[int] | None = None) -> None:
        """extra_toml / settings: more passdbs and sections (the passdb rows);
        aux: helper processes (a database, an auth service) measured apart."""
        self.binary, self.dir, self.certs, self.users = binary, workdir, certs, users
        self.workers, self.log_level = workers, log_level
        self.name, self.extra_toml, self.settings, self.aux = name, extra_toml, settings or {}, aux or []
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: Proc | None = None

    def start(self) -> None:
        passwd = self.dir / "portier.passwd"
        passwd.write_text("".join(u.line() for u in self.users))
        conf = self.dir / "portier.toml"
        self.port, self.tls_port = free_port(), free_port()
        conf.write_text(render_config(
            listeners=[Listener("imap", "none", self.port), Listener("imap", "implicit", self.tls_port)],
            passwd_path=passwd, certs=self.certs,
            settings={"server": {"workers": self.workers},
                      "login": {"proxy_timeout": "10s"},
                      "log": {"level": self.log_level}, **self.settings},
            extra_toml=self.extra_toml))
        log = self.dir / "portier.log"
        self.proc = Proc([str(self.binary), "-c", str(conf)], log, ready=False)
        for port in (self.port, self.tls_port):
            wait_for_port(port, timeout=15, proc=self.proc.p)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None

    def roots(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def extra_roots(self) -> list[int]:
        return self.aux


class DovecotProxy(ProxyBase):
    """A second private Dovecot whose passdb answers proxy=y host=... nopassword=y
    (shared login processes: service_count=0, Dovecot's high-performance mode)."""
    name = "dovecot"

    def __init__(self, workdir: Path, certs, routes: dict[str, int]) -> None:
        self.dir, self.certs, self.routes = workdir, certs, routes
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.proc: Proc | None = None
        self.conf = self.dir / "dovecot.conf"

    def _write(self) -> None:
        self.port, self.tls_port = free_port(), free_port()
        passwd = self.dir / "proxy.passwd"
        passwd.write_text("".join(
            f"{u}:::::::proxy=y host=127.0.0.1 port={port} nopassword=y\n"
            for u, port in self.routes.items()))
        passwd.chmod(0o644)
        log = self.dir / "dovecot.log"
        log.touch()
        log.chmod(0o666)
        for d in ("run", "state"):
            (self.dir / d).mkdir(exist_ok=True)
        c = self.certs
        self.conf.write_text(f"""\
# Generated by bench/peers.py: Dovecot as a login proxy, private instance.
instance_name = portier-bench-proxy-{os.getpid()}
base_dir = {self.dir}/run
state_dir = {self.dir}/state
listen = 127.0.0.1
protocols = imap
log_path = {log}
info_log_path = {log}
log_timestamp = "%Y-%m-%d %H:%M:%S "
verbose_proctitle = no
shutdown_clients = yes
default_internal_user = dovecot
default_login_user = dovenull
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
ssl = yes
ssl_cert = <{c.cert}
ssl_key = <{c.key}
ssl_dh = </usr/share/dovecot/dh.pem
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home=/nonexistent
}}
default_client_limit = 20000
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 2
  process_limit = 2
  client_limit = 9800
  vsz_limit = 2G
}}
service anvil {{
  client_limit = 20000
}}
service auth {{
  client_limit = 20000
}}
""")

    def start(self) -> None:
        self._write()
        chk = subprocess.run(["/usr/sbin/dovecot", "-c", str(self.conf), "-n"],
                             capture_output=True, text=True)
        if chk.returncode != 0:
            raise RuntimeError(f"dovecot proxy config invalid:\n{chk.stderr}")
        self.proc = Proc(["/usr/sbin/dovecot", "-c", str(self.conf), "-F"],
                         self.dir / "dovecot.stderr", ready=False,
                         env={k: v for k, v in os.environ.items() if k in ("PATH", "TZ", "LANG")})
        for port in (self.port, self.tls_port):
            wait_for_port(port, timeout=20, proc=self.proc.p)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None

    def roots(self) -> list[int]:
        return [self.proc.pid] if self.proc else []


class NginxProxy(ProxyBase):
    """Debian nginx + libnginx-mod-mail, 2 workers (one per core), auth_http to
    bench/nginx_auth.py (measured apart)."""
    name = "nginx"
    MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"

    def __init__(self, workdir: Path, certs, dovecot_port: int, fast_port: int,
                 name: str = "nginx", auth_service: "AuthHttpService | None" = None) -> None:
        """auth_service: a running shared auth_http service (not owned);
        default: its own bench/nginx_auth.py."""
        self.name, self.shared_auth = name, auth_service
        self.dir, self.certs = workdir, certs
        self.dovecot_port, self.fast_port = dovecot_port, fast_port
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: Proc | None = None
        self.auth: NginxAuth | None = None

    def start(self) -> None:
        if not Path(self.MODULE).exists() or not shutil.which("nginx", path="/usr/sbin:/usr/bin"):
            raise RuntimeError("nginx or its mail module missing: run bench/install-deps.sh")
        self.auth = self.shared_auth or NginxAuth(self.dir, self.dovecot_port, self.fast_port)
        self.port, self.tls_port = free_port(), free_port()
        c = self.certs
        conf = self.dir / "nginx.conf"
        conf.write_text(f"""\
# Generated by bench/peers.py: nginx mail proxy, private instance.
load_module {self.MODULE};
daemon off;
worker_processes 2;
worker_rlimit_nofile 19900;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{
  worker_connections 19800;
}}
mail {{
  server_name proxy.test;
  auth_http 127.0.0.1:{self.auth.port}/auth;
  imap_auth plain login;
  server {{
    listen 127.0.0.1:{self.port};
    protocol imap;
  }}
  server {{
    listen 127.0.0.1:{self.tls_port} ssl;
    protocol imap;
    ssl_certificate {c.cert};
    ssl_certificate_key {c.key};
  }}
}}
""")
        self.proc = Proc(["/usr/sbin/nginx", "-p", str(self.dir), "-c", str(conf),
                          "-e", str(self.dir / "error.log")],
                         self.dir / "nginx.stderr", ready=False)
        for port in (self.port, self.tls_port):
            wait_for_port(port, timeout=15, proc=self.proc.p)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None
        if self.auth and self.auth is not self.shared_auth:
            self.auth.stop()
        self.auth = None

    def roots(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def extra_roots(self) -> list[int]:
        return [self.auth.pid] if self.auth else []


class Direct(ProxyBase):
    """No proxy: the backend itself (for latency deltas)."""
    name = "direct"

    def __init__(self, port: int, tls_port: int = 0) -> None:
        self.port, self.tls_port = port, tls_port

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def roots(self) -> list[int]:
        return []


def portier_users(n: int, dovecot_port: int, fast_port: int) -> list[User]:
    return ([User(f"user{i}", None, proxy(port=dovecot_port, nopassword=True)) for i in range(n)] +
            [User(f"fast{i}", None, proxy(port=fast_port, nopassword=True)) for i in range(n)])
