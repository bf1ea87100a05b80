"""A TLS client whose every ciphertext byte the test controls.

`BioTLS` runs the TLS handshake through `ssl.SSLObject` + memory BIOs over a
plain socket, so a test can send *raw* bytes after the handshake (a partial
record header, a record split one byte per TCP segment), half-close the TCP
connection, or send close_notify and keep reading — none of which
`ssl.SSLSocket` allows.

    t = BioTLS.connect(port, ca)            # implicit TLS
    t = BioTLS.over(sock, ca)               # after a STARTTLS exchange
    t.send(b"a NOOP\\r\\n"); t.read_until(b"a OK")
    t.send_raw(b"\\x17\\x03\\x03")           # three bytes of a record header
"""
from __future__ import annotations

import select
import socket
import ssl
import time
from pathlib import Path


class BioTLS:
    def __init__(self, sock: socket.socket, ca: str | Path, server_hostname: str = "localhost"):
        self.sock = sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx = ssl.create_default_context(cafile=str(ca))
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname)
        self.plain = b""          # decrypted bytes not yet consumed
        self.eof = False          # the peer ended its stream (TCP or close_notify)

    # ------------------------------------------------------------ set-up
    @classmethod
    def connect(cls, port: int, ca: str | Path, host: str = "127.0.0.1",
                timeout: float = 10.0) -> "BioTLS":
        s = socket.create_connection((host, port), timeout=timeout)
        t = cls(s, ca)
        t.handshake(timeout)
        return t

    @classmethod
    def over(cls, sock: socket.socket, ca: str | Path, timeout: float = 10.0) -> "BioTLS":
        t = cls(sock, ca)
        t.handshake(timeout)
        return t

    def handshake(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._pull(deadline):
                    raise ConnectionError("peer closed during the TLS handshake")
        self._flush()

    # ------------------------------------------------------------ wire
    def _flush(self) -> None:
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _pull(self, deadline: float) -> bool:
        """One recv into the incoming BIO; False on EOF."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data from the peer")
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            raise TimeoutError("no data from the peer")
        data = self.sock.recv(65536)
        if not data:
            self.inc.write_eof()
            return False
        self.inc.write(data)
        return True

    def ciphertext(self, plaintext: bytes) -> bytes:
        """Encrypt without sending: the TLS records for `plaintext`."""
        self.obj.write(plaintext)
        return self.out.read()

    def send(self, plaintext: bytes) -> None:
        self.sock.sendall(self.ciphertext(plaintext))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_notify(self) -> None:
        """Send TLS close_notify (our direction only); reading goes on."""
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        self._flush()

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def _decrypt(self) -> None:
        while True:
            try:
                chunk = self.obj.read(65536)
            except ssl.SSLWantReadError:
                return
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.eof = True
                return
            if not chunk:
                self.eof = True
                return
            self.plain += chunk

    def read_until(self, marker: bytes, timeout: float = 10.0) -> bytes:
        """Decrypted bytes up to and including `marker` (consumed)."""
        deadline = time.monotonic() + timeout
        while marker not in self.plain:
            self._decrypt()
            if marker in self.plain or self.eof:
                break
            if not self._pull(deadline):
                self._decrypt()
                self.eof = True
                break
        i = self.plain.find(marker)
        if i < 0:
            raise ConnectionError(f"stream ended before {marker!r}; got {self.plain[-200:]!r}")
        out, self.plain = self.plain[:i + len(marker)], self.plain[i + len(marker):]
        return out

    def read_all(self, timeout: float = 20.0) -> bytes:
        """Everything until the peer ends its stream."""
        deadline = time.monotonic() + timeout
        while True:
            self._decrypt()
            if self.eof:
                break
            try:
                if not self._pull(deadline):
                    self._decrypt()
                    break
            except ConnectionResetError:
                break
        out, self.plain = self.plain, b""
        return out

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
