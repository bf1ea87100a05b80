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

# Fixed demo ports: all four protocols, STARTTLS-capable and implicit TLS.
DEMO_LISTENERS = [
    Listener("imap", "starttls", 10143),
    Listener("imap", "implicit", 10993),
    Listener("pop3", "starttls", 10110),
    Listener("pop3", "implicit", 10995),
    Listener("submission", "starttls", 10587),
    Listener("submission", "implicit", 10465),
    Listener("managesieve", "starttls", 14190),
]

# Backend listener (plain, implicit TLS) per protocol in the harness.
BACKEND_PORTS = {"imap": ("imap", "imaps"), "pop3": ("pop3", "pop3s"),
                 "submission": ("submission", "submissions"), "managesieve": ("sieve", None)}


def demo_users(dc: DovecotBackend, protocol: str) -> list[User]:
    """alice: backend leg plain; bob: STARTTLS; carol: implicit TLS (STARTTLS
    for ManageSieve, which has no implicit-TLS port), password checked by the
    backend."""
    plain, tls = BACKEND_PORTS[protocol]
    carol = (proxy(dc.ports[tls], ssl="yes", nopassword=True) if tls
             else proxy(dc.ports[plain], starttls="yes", nopassword=True))
    return [
        User("alice", "alice-pw", proxy(dc.ports[plain])),
        User("bob", "bob-pw", proxy(dc.ports[plain], starttls="yes")),
        User("carol", None, carol),
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
        # One passwd-file per protocol (Dovecot-style per-protocol passdbs):
        # each points the same users at that protocol's backend listener.
        extra = []
        for proto in BACKEND_PORTS:
            path = work / f"passwd.{proto}"
            path.write_text("".join(u.line() for u in demo_users(dc, proto)))
            extra.append(f'[[passdb]]\ndriver = "passwd-file"\npath = "{path}"\n'
                         f'protocols = ["{proto}"]\n')
        px = Portier(work, users=[], certs=certs, listeners=DEMO_LISTENERS,
                     settings={"auth": {"failure_delay": "2s"},
                               "server": {"hostname": "proxy.demo", "allow_root": True}},
                     extra_toml="\n".join(extra), name="portier", echo=True)
        px.start()
        ca = certs.ca
        print(f"""
================================================================ portier demo
Backend: private Dovecot {dc.dir}; log: {dc.log_path}
Proxy:   portier, config {px.conf_path}, passdbs {work}/passwd.<protocol>
Ports:   IMAP 10143 (STARTTLS) / 10993 (TLS), POP3 10110 / 10995,
         Submission 10587 / 10465, ManageSieve 14190 (STARTTLS)
Users:   alice / alice-pw  (backend leg plain)
         bob   / bob-pw    (backend leg STARTTLS)
         carol / carol-pw  (backend leg TLS, password checked by the backend)

Try:
  curl imap://127.0.0.1:10143/ -u alice:alice-pw
  curl --ssl-reqd --cacert {ca} imap://127.0.0.1:10143/ -u bob:bob-pw
  curl --cacert {ca} imaps://127.0.0.1:10993/ -u carol:carol-pw
  curl --cacert {ca} pop3s://127.0.0.1:10995/ -u alice:alice-pw
  curl --ssl-reqd --cacert {ca} smtp://127.0.0.1:10587 -u bob:bob-pw \\
       --mail-from bob@demo --mail-rcpt alice@demo -T /etc/hostname
  sieve-connect --server 127.0.0.1 --port 14190 --user alice --list   # (CA: {ca})
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
