"""An nginx-style `auth_http` service for tests, and a private nginx mail
proxy that uses it.

AuthHttpService: Python http.server (threaded) on 127.0.0.1, port 0. It
records every request it got — the raw request line and header bytes, in
order — and answers by user name (percent-decoded Auth-User) from
`routes`: a list of (name, value) header pairs, raw bytes, or one of the
fault modes HANG / CLOSE_MID. Unknown users get `Auth-Status: Invalid login
or password`. The same service can drive nginx and portier.

NginxMail: Debian nginx + libnginx-mod-mail from a private config (its own
prefix, pid, logs; never the system service), IMAP/POP3/SMTP listeners on
free loopback ports, `auth_http` pointed at a service.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Union

from .util import free_port, wait_for_port

HANG = "hang"            # accept, read the request, never answer (until stop())
CLOSE_MID = "close-mid"  # send half a header block, then close

Answer = Union[list, bytes, str]


@dataclass
class Recorded:
    raw: bytes                    # request line + headers + blank line, as received
    headers: list[tuple[str, str]]
    user: str                     # Auth-User, percent-decoded
    password: str                 # Auth-Pass, percent-decoded

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def names(self) -> list[str]:
        return [k for k, _ in self.headers]


def decode(v: str) -> str:
    # http.server hands header values over as latin-1 text of the raw bytes.
    raw = v.encode("latin-1", "surrogateescape")
    return urllib.parse.unquote_to_bytes(raw).decode("utf-8", "surrogateescape")


def ok(port: int, host: str = "127.0.0.1", **extra: str) -> list[tuple[str, str]]:
    """Auth-Status: OK to host:port; extra headers by keyword (Auth_User=...)."""
    return ([("Auth-Status", "OK"), ("Auth-Server", host), ("Auth-Port", str(port))] +
            [(k.replace("_", "-"), v) for k, v in extra.items()])


def fail(text: str, wait: int | None = None, **extra: str) -> list[tuple[str, str]]:
    h = [("Auth-Status", text)]
    if wait is not None:
        h.append(("Auth-Wait", str(wait)))
    return h + [(k.replace("_", "-"), v) for k, v in extra.items()]


class _Tee:
    """Wraps the handler's rfile and keeps every header byte read."""

    def __init__(self, f) -> None:
        self.f, self.buf = f, bytearray()

    def readline(self, *a) -> bytes:
        line = self.f.readline(*a)
        self.buf += line
        return line

    def __getattr__(self, name):
        return getattr(self.f, name)


class AuthHttpService:
    def __init__(self, routes: dict[str, Answer] | None = None,
                 default: Callable[[Recorded], Answer] | None = None,
                 check_password: dict[str, str] | None = None) -> None:
        self.routes: dict[str, Answer] = dict(routes or {})
        self.default = default
        # user -> password the service itself checks (as a real auth server would)
        self.check_password = dict(check_password or {})
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._release = threading.Event()
        svc = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def setup(self) -> None:
                super().setup()
                self.rfile = _Tee(self.rfile)

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                rec = Recorded(bytes(self.rfile.buf), list(self.headers.items()),
                               decode(self.headers.get("Auth-User", "")),
                               decode(self.headers.get("Auth-Pass", "")))
                with svc._cond:
                    svc.requests.append(rec)
                    svc._cond.notify_all()
                ans = svc.answer(rec)
                if ans == HANG:
                    svc._release.wait(30)
                    return
                if ans == CLOSE_MID:
                    self.wfile.write(b"HTTP/1.0 200 OK\r\nAuth-Status: O")
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(ans, bytes):
                    self.wfile.write(ans)
                    return
                out = b"HTTP/1.0 200 OK\r\n" + b"".join(
                    f"{k}: {v}\r\n".encode("utf-8", "surrogateescape") for k, v in ans) + b"\r\n"
                self.wfile.write(out)

            def log_message(self, fmt: str, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/auth"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, rec: Recorded) -> Answer:
        want = self.check_password.get(rec.user)
        if want is not None and want != rec.password:
            return fail("Invalid login or password")
        a = self.routes.get(rec.user)
        if a is None and self.default is not None:
            a = self.default(rec)
        if a is None:
            return fail("Invalid login or password")
        return a(rec) if callable(a) else a

    def wait_requests(self, n: int, timeout: float = 10.0) -> list[Recorded]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise AssertionError(f"auth_http service got {len(self.requests)} requests, "
                                     f"expected {n}")
            return list(self.requests)

    def start(self) -> "AuthHttpService":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "AuthHttpService":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def portier_passdb_toml(url: str, **keys) -> str:
    """A [[passdb]] auth_http table (after the harness's passwd-file)."""
    lines = ["[[passdb]]", 'driver = "auth_http"', f'url = "{url}"']
    headers = keys.pop("headers", None)
    for k, v in keys.items():
        lines.append(f'{k} = "{v}"')
    if headers:
        inner = ", ".join(f'"{k}" = "{v}"' for k, v in headers.items())
        lines.append(f"headers = {{ {inner} }}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- nginx
NGINX = "/usr/sbin/nginx"
MAIL_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"


def nginx_available() -> bool:
    return Path(MAIL_MODULE).exists() and Path(NGINX).exists()


@dataclass
class NginxMail:
    workdir: Path
    auth_url: str
    headers: dict[str, str] = field(default_factory=dict)
    certs: object | None = None  # tests.support.certs.Certs: adds an implicit-TLS IMAP listener
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def start(self) -> "NginxMail":
        self.workdir.mkdir(parents=True, exist_ok=True)
        for proto in ("imap", "pop3", "smtp"):
            self.ports[proto] = free_port()
        extra = "".join(f"  auth_http_header {k} {v};\n" for k, v in self.headers.items())
        tls = ""
        if self.certs is not None:
            self.ports["imaps"] = free_port()
            tls = (f"  server {{ listen 127.0.0.1:{self.ports['imaps']} ssl; protocol imap;\n"
                   f"    ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate {self.certs.cert};\n"
                   f"    ssl_certificate_key {self.certs.key}; }}\n")
        url = self.auth_url.removeprefix("http://")
        conf = self.workdir / "nginx.conf"
        conf.write_text(f"""\
# generated by tests/support/auth_http.py: private nginx mail proxy
load_module {MAIL_MODULE};
daemon off;
master_process off;
worker_processes 1;
pid {self.workdir}/nginx.pid;
error_log {self.workdir}/error.log info;
events {{ worker_connections 64; }}
mail {{
  server_name proxy.test;
  auth_http {url};
{extra}  imap_auth plain login;
  pop3_auth plain;
  smtp_auth plain login;
  proxy_smtp_auth on;
  xclient off;
  server {{ listen 127.0.0.1:{self.ports['imap']}; protocol imap; }}
  server {{ listen 127.0.0.1:{self.ports['pop3']}; protocol pop3; }}
  server {{ listen 127.0.0.1:{self.ports['smtp']}; protocol smtp; }}
{tls}}}
""")
        self.proc = subprocess.Popen([NGINX, "-p", str(self.workdir), "-c", str(conf),
                                      "-e", str(self.workdir / "error.log")],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "nginx.stderr", "wb"))
        for port in self.ports.values():
            wait_for_port(port, timeout=15, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        p = self.workdir / "error.log"
        return p.read_text(errors="replace") if p.exists() else ""
