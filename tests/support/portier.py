"""Run `build/portier` for a test: generated TOML config + passwd-file,
listener ports parsed from its startup log, stderr captured line by line.

    p = Portier(tmpdir, users=[User("user1", "pw", proxy(port=143))],
                certs=certs).start()
    p.port("imap", "none"), p.port("imap", "starttls"), p.port("imap", "implicit")
    p.log.wait_for(r"Started proxying", timeout=5)
    p.stop()          # SIGTERM, asserts a clean exit (status 0)

Binary: $PORTIER_BIN or <repo>/build/portier.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .certs import Certs
from .util import LineLog, die_with_parent

REPO = Path(__file__).resolve().parents[2]
# Text lines, or [log] format = "json" lines ({…,"service":"portier","message":"…"}).
LISTEN_RE = re.compile(
    r"(?:portier: Info: |\"service\":\"portier\",\"message\":\")Listening on (?P<addr>\[[^\]]+\]|[^ ]+):(?P<port>\d+) "
    r"\((?P<proto>[a-z0-9-]+), tls=(?P<tls>none|starttls|implicit)(?P<haproxy>, haproxy)?\)")
READY_RE = re.compile(r"portier: Info: Ready\b|\"service\":\"portier\",\"message\":\"Ready\"")
# A sanitizer report on portier's stderr (ASan/LSan/UBSan build, scripts/test.sh):
# always a test failure, whatever the exit status.
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|"
                          r"SUMMARY: UndefinedBehaviorSanitizer")


def portier_bin() -> Path:
    return Path(os.environ.get("PORTIER_BIN") or REPO / "build" / "portier")


# ------------------------------------------------------------------ passdb
@dataclass
class User:
    """One passwd-file line: name, password (None = empty field, e.g. for
    `nopassword` users), scheme, and Dovecot-style extra fields."""
    name: str
    password: str | None
    fields: str = ""
    scheme: str = "PLAIN"

    def line(self) -> str:
        pw = "" if self.password is None else f"{{{self.scheme}}}{self.password}"
        return f"{self.name}:{pw}::::::{self.fields}".rstrip() + "\n"


def proxy(port: int, host: str = "127.0.0.1", **kw: Any) -> str:
    """Build passdb extra fields: proxy host=.. port=.. key=value ...; a value
    of True gives a bare flag (`nopassword`, `proxy_nopipelining`).  Use
    `pass_=` for the `pass` field (a Python keyword)."""
    parts = ["proxy", f"host={host}", f"port={port}"]
    for k, v in kw.items():
        k = k.rstrip("_")
        if v is None or v is False:
            continue
        parts.append(k if v is True else f"{k}={v}")
    return " ".join(parts)


# ------------------------------------------------------------------ config
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def _table(name: str, values: Mapping[str, Any], array: bool = False) -> str:
    head = f"[[{name}]]" if array else f"[{name}]"
    return head + "\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items()
                                 if v is not None) + "\n"


@dataclass
class Listener:
    protocol: str = "imap"
    tls: str = "none"          # none | starttls | implicit
    port: int = 0
    address: str = "127.0.0.1"
    haproxy: bool = False      # a PROXY v1/v2 header first (docs/PROXY_PROTOCOL.md)
    path: str | None = None    # a unix socket instead of address/port (LMTP)
    options: tuple = ()        # further keys as (name, value) pairs, e.g. (("verify_client", "required"),)


DEFAULT_LISTENERS = (Listener("imap", "none"), Listener("imap", "starttls"),
                     Listener("imap", "implicit"))


def render_config(*, listeners: Sequence[Listener], passwd_path: Path,
                  certs: Certs | None, settings: Mapping[str, Mapping[str, Any]] | None = None,
                  extra_toml: str = "") -> str:
    sections: dict[str, dict[str, Any]] = {
        # shutdown_timeout: logins still talking to a backend at SIGTERM get
        # this long (default 10 s); short so a test that leaves one hanging
        # does not stretch its teardown.
        "server": {"hostname": "proxy.test", "workers": 2, "allow_root": True,
                   "shutdown_timeout": "3s"},
        "auth": {"allow_cleartext": True, "mechanisms": ["PLAIN", "LOGIN"],
                 "failure_delay": "0s"},
        "login": {"trusted_networks": ["127.0.0.0/8", "::1/128"], "proxy_timeout": "30s",
                  "proxy_max_reconnects": 3, "greeting": "portier ready."},
    }
    if certs is not None:
        sections["tls"] = {"cert": str(certs.cert), "key": str(certs.key)}
        sections["backend"] = {"ca_file": str(certs.ca)}
    for sec, vals in (settings or {}).items():
        sections.setdefault(sec, {}).update(vals)
    out = ["# generated by tests/support/portier.py\n"]
    out.append(_table("server", sections.pop("server")))
    for lst in listeners:
        if lst.path:
            out.append(_table("listener", {"protocol": lst.protocol, "path": lst.path}, array=True))
            continue
        out.append(_table("listener", {"protocol": lst.protocol, "address": lst.address,
                                       "port": lst.port, "tls": lst.tls,
                                       "haproxy": lst.haproxy or None, **dict(lst.options)},
                                array=True))
    for name in ("tls", "backend"):
        if name in sections:
            out.append(_table(name, sections.pop(name)))
    out.append(_table("passdb", {"driver": "passwd-file", "path": str(passwd_path)}, array=True))
    for name, vals in sections.items():
        out.append(_table(name, vals))
    out.append(extra_toml)
    return "".join(out)


# ----------------------------------------------------------------- process
class PortierError(RuntimeError):
    pass


class Portier:
    def __init__(self, workdir: str | os.PathLike, *, users: Iterable[User] = (),
                 certs: Certs | None = None,
                 listeners: Sequence[Listener] = DEFAULT_LISTENERS,
                 settings: Mapping[str, Mapping[str, Any]] | None = None,
                 extra_toml: str = "", name: str = "portier", echo: bool = False,
                 env: Mapping[str, str] | None = None) -> None:
        self.env = dict(env or {})   # extra environment for the portier process
        self.echo = echo          # also print every log line (demo)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.users = list(users)
        self.certs = certs
        self.listeners_cfg = list(listeners)
        self.settings = settings or {}
        self.extra_toml = extra_toml
        self.name = name
        self.conf_path = self.dir / f"{name}.toml"
        self.passwd_path = self.dir / f"{name}.passwd"
        self.log = LineLog(f"{name} log")
        self.proc: subprocess.Popen | None = None
        self.listeners: list[tuple[str, str, str, int]] = []   # (proto, tls, addr, port)
        self.haproxy_ports: set[int] = set()   # ports of `haproxy = true` listeners
        self.returncode: int | None = None
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------- config
    def write_config(self) -> None:
        self.passwd_path.write_text("".join(u.line() for u in self.users))
        self.conf_path.write_text(render_config(
            listeners=self.listeners_cfg, passwd_path=self.passwd_path, certs=self.certs,
            settings=self.settings, extra_toml=self.extra_toml))

    def secrets(self) -> list[str]:
        """Passwords and pass= values that must never show up in the log."""
        out = [u.password for u in self.users if u.password and len(u.password) >= 4]
        for u in self.users:
            out += [m.group(1) for m in re.finditer(r"\bpass=(\S{4,})", u.fields)]
        return out

    # ----------------------------------------------------------- lifecycle
    def _reader(self, stream, prefix: str) -> None:
        for raw in iter(stream.readline, b""):
            line = prefix + raw.decode("utf-8", "replace").rstrip("\r\n")
            if self.echo:
                print(line, flush=True)
            self.log.append(line)
        stream.close()

    def start(self, timeout: float = 15.0) -> "Portier":
        binary = portier_bin()
        if not binary.exists():
            raise PortierError(f"portier binary not found at {binary} (build it with "
                               "scripts/build.sh or set PORTIER_BIN)")
        self.write_config()
        self.proc = subprocess.Popen(die_with_parent([str(binary), "-c", str(self.conf_path)]),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=self.dir,
                                     env={**os.environ, **self.env} if self.env else None)
        for stream, prefix in ((self.proc.stderr, ""), (self.proc.stdout, "[stdout] ")):
            t = threading.Thread(target=self._reader, args=(stream, prefix),
                                 name=f"{self.name}-{prefix or 'stderr'}", daemon=True)
            t.start()
            self._threads.append(t)
        try:
            self.log.wait_for(READY_RE, timeout=timeout)
        except TimeoutError:
            rc = self.proc.poll()
            self.kill()
            raise PortierError(f"portier did not become ready (exit={rc}); log:\n"
                               f"{self.log.text()}\nconfig:\n{self.conf_path.read_text()}")
        for line in self.log.lines():
            m = LISTEN_RE.search(line)
            if m:
                self.listeners.append((m["proto"], m["tls"], m["addr"].strip("[]"),
                                       int(m["port"])))
                if m["haproxy"]:
                    self.haproxy_ports.add(int(m["port"]))
        tcp = [lst for lst in self.listeners_cfg if not getattr(lst, "path", None)]
        if len(self.listeners) != len(tcp):
            raise PortierError(f"expected {len(tcp)} 'Listening on' lines, got "
                               f"{self.listeners}; log:\n{self.log.text()}")
        return self

    def port(self, protocol: str = "imap", tls: str = "none", haproxy: bool = False) -> int:
        for proto, t, _addr, port in self.listeners:
            if proto == protocol and t == tls and (port in self.haproxy_ports) == haproxy:
                return port
        raise KeyError(f"no {protocol} listener with tls={tls}: {self.listeners}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0, check: bool = True) -> int:
        """SIGTERM and wait. With check=True, raise unless it exited 0."""
        if self.proc is None:
            return self.returncode or 0
        crashed_before = self.proc.poll()
        if crashed_before is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self._finish()
                if check:
                    raise PortierError(f"portier did not exit within {timeout}s of SIGTERM; "
                                       f"log tail:\n{self._tail()}")
                return self.returncode or -9
        self._finish()
        self.check_sanitizers()
        if check:
            if crashed_before is not None:
                raise PortierError(f"portier had already exited with {crashed_before} before "
                                   f"SIGTERM; log tail:\n{self._tail()}")
            if self.returncode != 0:
                raise PortierError(f"portier exited with {self.returncode} after SIGTERM; "
                                   f"log tail:\n{self._tail()}")
        return self.returncode or 0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._finish()

    def _finish(self) -> None:
        if self.proc is not None:
            self.returncode = self.proc.returncode
        for t in self._threads:
            t.join(2)
        self.log.close()
        self.proc = None

    def check_sanitizers(self) -> None:
        """Raise if portier's stderr holds a sanitizer report."""
        lines = self.log.lines()
        hits = [i for i, line in enumerate(lines) if SANITIZER_RE.search(line)]
        if hits:
            report = "\n".join(lines[hits[0]:hits[0] + 60])
            raise PortierError(f"sanitizer report in portier's stderr:\n{report}")

    def _tail(self, n: int = 40) -> str:
        return "\n".join(self.log.lines()[-n:])

    def __enter__(self) -> "Portier":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(check=exc[0] is None)
