"""`scripts/demo.sh`: a private Dovecot backend plus portier in front of it.

Run from the repository root:  /usr/bin/python3 -m tests.support.demo
Stops both on Ctrl-C / SIGTERM.  Files (config, passwd, certs) are kept in
.run/demo/ for inspection; Dovecot's own files live in a /tmp dir (its unix
socket paths must stay short) that is removed on exit.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
from pathlib import Path

from .certs import make_certs
from .dovecot import DovecotBackend
from .portier import Listener, Portier, PortierError, User, portier_bin, proxy
from .util import port_is_free

REPO = Path(__file__).resolve().parents[2]

# Demo accounts on the backend.
DEMO_USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}

# Fixed demo ports (POP3 10110/10995, Submission 10587/10465 and ManageSieve
# 14190 are reserved for the protocols that come next).
DEMO_LISTENERS = [
    Listener("imap", "starttls", 10143),
    Listener("imap", "implicit", 10993),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workdir", default=str(REPO / ".run" / "demo"))
    args = ap.parse_args(argv)

    if not portier_bin().exists():
        print(f"portier binary missing at {portier_bin()} - run scripts/build.sh", file=sys.stderr)
        return 1
    busy = [lst.port for lst in DEMO_LISTENERS if not port_is_free(lst.port)]
    if busy:
        print(f"demo ports already in use: {busy} (another demo running?)", file=sys.stderr)
        return 1

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    certs = make_certs(work / "certs")

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())

    dc = DovecotBackend(users=DEMO_USERS, certs=certs, hostname="backend.demo")
    px = None
    try:
        dc.start()
        imap, imaps = dc.ports["imap"], dc.ports["imaps"]
        users = [
            # portier checks the password, forwards it to a plain backend leg
            User("alice", "alice-pw", proxy(imap)),
            # STARTTLS towards the backend
            User("bob", "bob-pw", proxy(imap, starttls="yes")),
            # implicit TLS towards the backend; the backend checks the password
            User("carol", None, proxy(imaps, ssl="yes", nopassword=True)),
        ]
        px = Portier(work, users=users, certs=certs, listeners=DEMO_LISTENERS,
                     settings={"auth": {"failure_delay": "2s"},
                               "server": {"hostname": "proxy.demo", "allow_root": True}},
                     name="portier", echo=True)
        px.start()
        ca = certs.ca
        print(f"""
================================================================ portier demo
Backend: private Dovecot {dc.dir} (IMAP {imap}, IMAPS {imaps}); log: {dc.log_path}
Proxy:   portier, config {px.conf_path}, passdb {px.passwd_path}
Users:   alice / alice-pw  (backend leg plain)
         bob   / bob-pw    (backend leg STARTTLS)
         carol / carol-pw  (backend leg implicit TLS, password checked by the backend)

Try:
  curl imap://127.0.0.1:10143/ -u alice:alice-pw
  curl --ssl-reqd --cacert {ca} imap://127.0.0.1:10143/ -u bob:bob-pw
  curl --cacert {ca} imaps://127.0.0.1:10993/ -u carol:carol-pw
  openssl s_client -quiet -CAfile {ca} -connect 127.0.0.1:10993
Ctrl-C stops portier and the backend.
=============================================================================
""", flush=True)
        while not stop.wait(0.5):
            if not px.alive():
                print("portier exited unexpectedly", file=sys.stderr)
                return 1
        return 0
    except PortierError as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        if px is not None:
            try:
                rc = px.stop(check=False)
                print(f"portier stopped (exit {rc})", flush=True)
            except Exception as e:   # pragma: no cover
                print(f"stopping portier: {e}", file=sys.stderr)
        dc.stop()
        print("backend stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
