"""IMAP client helpers for tests: imaplib with a chosen source address and
TLS mode, and a raw line-level client for byte-exact checks."""
from __future__ import annotations

import imaplib
import socket
import ssl
import time
from pathlib import Path

TIMEOUT = 15.0


def client_ssl_context(ca: str | Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = True
    return ctx


class SrcIMAP4(imaplib.IMAP4):
    """imaplib.IMAP4 whose socket is bound to `source` (e.g. 127.0.0.2)."""

    def __init__(self, host: str, port: int, source: str | None = None,
                 timeout: float = TIMEOUT) -> None:
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        src = (self._source, 0) if self._source else None
        return socket.create_connection((self.host, self.port), timeout, source_address=src)


class SrcIMAP4_SSL(imaplib.IMAP4_SSL):
    def __init__(self, host: str, port: int, source: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, timeout: float = TIMEOUT) -> None:
        self._source = source
        super().__init__(host, port, ssl_context=ssl_context, timeout=timeout)

    def _create_socket(self, timeout):
        src = (self._source, 0) if self._source else None
        sock = socket.create_connection((self.host, self.port), timeout, source_address=src)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


def imap_connect(port: int, tls: str = "none", *, ca: str | Path | None = None,
                 source: str | None = None, host: str = "127.0.0.1") -> imaplib.IMAP4:
    """tls: 'none' (plain), 'starttls' (connect plain, then STARTTLS),
    'implicit' (TLS from the first byte)."""
    if tls == "implicit":
        assert ca is not None
        return SrcIMAP4_SSL(host, port, source=source, ssl_context=client_ssl_context(ca))
    c = SrcIMAP4(host, port, source=source)
    if tls == "starttls":
        assert ca is not None
        c.starttls(ssl_context=client_ssl_context(ca))
    elif tls != "none":
        raise ValueError(tls)
    return c


class RawIMAP:
    """Line-oriented raw client. Keeps every byte received in `.transcript`."""

    def __init__(self, port: int, *, host: str = "127.0.0.1", source: str | None = None,
                 tls: bool = False, ca: str | Path | None = None,
                 timeout: float = TIMEOUT, read_banner: bool = True) -> None:
        src = (source, 0) if source else None
        self.sock = socket.create_connection((host, port), timeout, source_address=src)
        self.host = host
        self.sock.settimeout(timeout)
        if tls:
            self.sock = client_ssl_context(ca).wrap_socket(self.sock, server_hostname=host)
        self.buf = b""
        self.transcript = b""
        self.banner = self.readline() if read_banner else None

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        self.transcript += data
        return True

    def readline(self) -> bytes:
        """Next line with CRLF stripped; raises EOFError at end of stream."""
        while b"\n" not in self.buf:
            if not self._fill():
                if self.buf:
                    line, self.buf = self.buf, b""
                    return line
                raise EOFError("connection closed")
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def read_until_tagged(self, tag: str | bytes) -> list[bytes]:
        """Lines up to and including the tagged completion for `tag`."""
        t = (tag.encode() if isinstance(tag, str) else tag) + b" "
        out = []
        while True:
            line = self.readline()
            out.append(line)
            if line.startswith(t):
                return out

    def command(self, tag: str, text: str | bytes) -> list[bytes]:
        body = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + body + b"\r\n")
        return self.read_until_tagged(tag)

    def starttls(self, ca: str | Path, tag: str = "S1") -> list[bytes]:
        lines = self.command(tag, "STARTTLS")
        assert lines[-1].startswith(f"{tag} OK".encode()), lines
        assert not self.buf, f"data after STARTTLS OK: {self.buf!r}"
        self.sock = client_ssl_context(ca).wrap_socket(self.sock, server_hostname=self.host)
        return lines

    def read_until_closed(self, timeout: float = 10.0, *, quiet_ok: bool = False) -> bytes:
        """Read until EOF (or reset). Returns all remaining data. If the peer
        keeps the connection open for `timeout`: raise TimeoutError, or with
        quiet_ok=True return what arrived (and set self.closed = False)."""
        self.closed = False
        deadline = time.monotonic() + timeout
        data = self.buf
        self.buf = b""
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                if quiet_ok:
                    return data
                raise TimeoutError(f"connection still open after {timeout}s; got {data!r}")
            except (ConnectionResetError, ssl.SSLError, OSError):
                self.closed = True
                return data
            if not chunk:
                self.closed = True
                return data
            data += chunk
            self.transcript += chunk

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RawIMAP":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
