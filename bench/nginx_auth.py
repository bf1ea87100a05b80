"""nginx mail auth_http responder for the benchmarks (Python http.server, one
thread, like the reference setup). It never checks the password (the backend
does, as with the other proxies' `nopassword`): users whose name starts with
`fast` go to the scripted fast backend, everyone else to Dovecot.

    python3 bench/nginx_auth.py PORT DOVECOT_PORT FAST_PORT

Prints "READY <port>" when listening. Its CPU is measured separately from
nginx's (the reference counts it apart, too).
"""
from __future__ import annotations

import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    dovecot_port = 0
    fast_port = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        user = self.headers.get("Auth-User", "")
        port = self.fast_port if user.startswith("fast") else self.dovecot_port
        self.send_response(200)
        self.send_header("Auth-Status", "OK")
        self.send_header("Auth-Server", "127.0.0.1")
        self.send_header("Auth-Port", str(port))
        self.end_headers()

    def log_message(self, fmt: str, *args) -> None:  # quiet
        pass


class Server(HTTPServer):
    request_queue_size = 1024
    allow_reuse_address = True


def main() -> None:
    port, Handler.dovecot_port, Handler.fast_port = (int(a) for a in sys.argv[1:4])
    srv = Server(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"READY {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.5)
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
