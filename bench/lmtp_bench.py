#!/usr/bin/env python3
"""LMTP proxy benchmark: deliveries per second and proxy CPU per delivered
message, portier vs Dovecot's own LMTP proxy (`lmtp_proxy = yes`), in the
same run, against the same two real Dovecot LMTP backends.

    PORTIER_BIN=build/portier python3 bench/lmtp_bench.py [--messages 200] [--clients 4]

Cases: 1 KiB and 1 MiB messages, 1 and 10 recipients spread over the two
backends. CPU: portier's utime+stime from /proc; Dovecot's proxy: the whole
proxy instance's process tree (master, lmtp and auth processes, reaped
children included) — both sides do their passdb lookups inside that budget.
Prints a Markdown table (docs/BENCHMARKS.md, "LMTP proxy").
"""
from __future__ import annotations

import argparse
import os
import smtplib
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.dovecot import DovecotBackend  # noqa: E402
from tests.support.portier import Listener, Portier, User, proxy  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
DOMAIN = "example.test"


def proc_cpu(pid: int, children: bool = False) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    t = int(f[11]) + int(f[12])
    if children:
        t += int(f[13]) + int(f[14])
    return t / TICK


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and all its live descendants (reaped ones are in
    their parents' cutime/cstime)."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d.name))
    total, todo = 0.0, [root]
    while todo:
        p = todo.pop()
        try:
            total += proc_cpu(p, children=True)
        except OSError:
            pass
        todo += kids.get(p, [])
    return total


def run_case(port: int, rcpts: list[str], body: bytes, messages: int, clients: int) -> float:
    """Deliver `messages` messages (split over `clients` connections); returns
    wall seconds. Every recipient must get 250."""
    per = messages // clients
    errors: list[str] = []

    def worker() -> None:
        try:
            c = smtplib.LMTP()
            c.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            c.file = None
            c.getreply()
            c.docmd("LHLO", "bench")
            for _ in range(per):
                c.mail("bench@mta.test")
                for r in rcpts:
                    code, msg = c.rcpt(r)
                    if code != 250:
                        errors.append(f"RCPT {r}: {code} {msg!r}")
                        return
                replies = [c.data(body)] + [c.getreply() for _ in range(len(rcpts) - 1)]
                bad = [r for r in replies if r[0] != 250]
                if bad:
                    errors.append(f"DATA: {bad}")
                    return
            c.quit()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[:3])
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    users = [f"u{i}@{DOMAIN}" for i in range(10)]
    b1 = DovecotBackend(users={u: "x" for u in users[0::2]}, lmtp=True, hostname="b1.test").start()
    b2 = DovecotBackend(users={u: "x" for u in users[1::2]}, lmtp=True, hostname="b2.test").start()
    route = {u: (b1 if i % 2 == 0 else b2).ports["lmtp"] for i, u in enumerate(users)}
    work = Path(tempfile.mkdtemp(prefix="pt-lmtp-bench-"))
    work.chmod(0o755)
    # Dovecot's proxy: its own instance; the users are unknown to the
    # harness's passwd-file and found in a second one with proxy fields.
    ppasswd = work / "proxy.passwd"
    ppasswd.write_text("".join(f"{u}:::::::proxy host=127.0.0.1 port={p} nopassword\n"
                               for u, p in route.items()))
    ppasswd.chmod(0o644)
    dproxy = DovecotBackend(users={}, lmtp=True, hostname="dproxy.test", extra_conf=f"""
lmtp_proxy = yes
passdb {{
  driver = passwd-file
  args = {ppasswd}
}}
""").start()
    portier = Portier(work / "portier", users=[User(u, None, proxy(p)) for u, p in route.items()],
                      listeners=(Listener("lmtp"),),
                      settings={"server": {"workers": 1}}).start()
    cases = [("1 KiB", 1024, 1), ("1 KiB", 1024, 10), ("1 MiB", 1 << 20, 1), ("1 MiB", 1 << 20, 10)]
    rows = []
    try:
        for label, size, n in cases:
            body = b"Subject: bench\r\n\r\n" + (b"x" * 78 + b"\r\n") * (size // 80)
            msgs = args.messages if size <= 1024 else max(args.clients, args.messages // 10)
            rcpts = users[:n]
            res = {}
            for name, port, cpu in (
                    ("portier", portier.port("lmtp"), lambda: proc_cpu(portier.proc.pid)),
                    ("dovecot", dproxy.ports["lmtp"], lambda: tree_cpu(dproxy.proc.pid))):
                run_case(port, rcpts, body, args.clients, args.clients)   # warm-up
                c0 = cpu()
                wall = run_case(port, rcpts, body, msgs, args.clients)
                used = cpu() - c0
                res[name] = (msgs / wall, used / msgs * 1000)
            rows.append((label, n, msgs, res))
    except Exception:
        print(portier.log.text()[-300:])
        print(dproxy.read_log()[-3000:])
        raise
    finally:
        portier.stop(check=False)
        dproxy.stop()
        b1.stop()
        b2.stop()
    print(f"\n{args.clients} concurrent LMTP clients; CPU = proxy CPU ms per message "
          f"(all its recipients); portier: 1 worker\n")
    print("| message | rcpts | messages | portier msg/s | Dovecot msg/s | portier CPU ms/msg "
          "| Dovecot CPU ms/msg | CPU ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for label, n, msgs, res in rows:
        p, d = res["portier"], res["dovecot"]
        ratio = p[1] / d[1] if d[1] else float("nan")
        print(f"| {label} | {n} | {msgs} | {p[0]:.0f} | {d[0]:.0f} | {p[1]:.2f} | {d[1]:.2f} "
              f"| {ratio:.2f}× |")


if __name__ == "__main__":
    main()
