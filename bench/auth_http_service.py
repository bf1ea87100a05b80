"""tests/support/auth_http.py's AuthHttpService as a process of its own, for
the passdb benchmark rows: the SAME service drives portier's auth_http passdb
and nginx's mail proxy. Like bench/nginx_auth.py it never checks the password
(the backend does): users whose name starts with `fast` go to the scripted
fast backend, everyone else to Dovecot. The request log is cleared as it
grows (bounded memory over a long run).

    python3 bench/auth_http_service.py DOVECOT_PORT FAST_PORT

Prints "READY <port>" when listening; stops on SIGTERM.
"""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.auth_http import AuthHttpService, ok  # noqa: E402


def main() -> None:
    dovecot_port, fast_port = int(sys.argv[1]), int(sys.argv[2])

    def route(rec):
        if len(svc.requests) > 1000:
            with svc._lock:
                svc.requests.clear()
        return ok(fast_port if rec.user.startswith("fast") else dovecot_port)

    svc = AuthHttpService(default=route)
    svc.server.request_queue_size = 1024
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    svc.start()
    print(f"READY {svc.port}", flush=True)
    done.wait()
    svc.stop()


if __name__ == "__main__":
    main()
