"""A tiny SMTP sink on loopback: accepts any mail and keeps it in memory.

Used as Dovecot's `submission_relay_host` so mail submitted through the
submission service (directly or via portier) is accepted.  Speaks just
enough ESMTP: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""
from __future__ import annotations

import socket
import socketserver
import threading
from dataclasses import dataclass, field


@dataclass
class Message:
    mail_from: str
    rcpt_to: list[str]
    data: bytes


class _Handler(socketserver.StreamRequestHandler):
    def _send(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        sink: SmtpSink = self.server.sink  # type: ignore[attr-defined]
        self._send("220 sink.test ESMTP portier-test-sink")
        mail_from, rcpts = None, []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self._send("250-sink.test")
                self._send("250-8BITMIME")
                self._send("250-PIPELINING")
                self._send("250 ENHANCEDSTATUSCODES")
            elif verb == "HELO":
                self._send("250 sink.test")
            elif verb == "MAIL":
                mail_from, rcpts = cmd[10:].strip(), []
                self._send("250 2.1.0 Ok")
            elif verb == "RCPT":
                rcpts.append(cmd[8:].strip())
                self._send("250 2.1.5 Ok")
            elif verb == "DATA":
                self._send("354 End data with <CR><LF>.<CR><LF>")
                body = []
                while True:
                    dl = self.rfile.readline()
                    if not dl or dl in (b".\r\n", b".\n"):
                        break
                    if dl.startswith(b".."):
                        dl = dl[1:]
                    body.append(dl)
                sink._add(Message(mail_from or "", rcpts, b"".join(body)))
                self._send("250 2.0.0 Ok: queued")
            elif verb == "RSET":
                mail_from, rcpts = None, []
                self._send("250 2.0.0 Ok")
            elif verb == "NOOP":
                self._send("250 2.0.0 Ok")
            elif verb == "QUIT":
                self._send("221 2.0.0 Bye")
                return
            else:
                self._send("502 5.5.2 Command not recognized")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class SmtpSink:
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._server = _Server((self.host, self.port), _Handler)
        self._server.sink = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="smtp-sink", daemon=True)
        self._thread.start()

    def _add(self, m: Message) -> None:
        with self._cond:
            self.messages.append(m)
            self._cond.notify_all()

    def wait_for_messages(self, n: int, timeout: float = 10.0) -> list[Message]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= n, timeout):
                raise TimeoutError(f"smtp sink: {len(self.messages)} < {n} messages")
            return list(self.messages)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
