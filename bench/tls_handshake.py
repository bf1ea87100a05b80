#!/usr/bin/env python3
"""TLS handshakes per second per core on an implicit-TLS listener (issue 13).

For an ECDSA P-256 and an RSA-2048 certificate, in the same run:
  - portier: one worker, an implicit-TLS IMAP listener (imaps);
  - `openssl s_server` with the same certificate: the ceiling of OpenSSL's
    own single-threaded server on this machine.
The client is `openssl s_time -new` (full handshakes, no resumption) for a
bounded time; the server's CPU time comes from /proc/<pid>/stat, so the
result is handshakes per CPU-second of the server ("per core"), which stays
meaningful on a busy machine where wall-clock rates do not.

    bench/tls_handshake.py [--portier build/portier] [--seconds 5] [--tls 1.3|1.2]

Prints a Markdown table (and the exact commands) for docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPENSSL = os.environ.get("OPENSSL", "openssl")
TICK = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parent.parent


def cpu(pid: int) -> float:
    """utime + stime of a process and its threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def make_cert(d: Path, kind: str) -> tuple[Path, Path]:
    key, crt = d / f"{kind}.key", d / f"{kind}.pem"
    algo = (["-newkey", "rsa:2048"] if kind == "rsa2048"
            else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
    subprocess.run([OPENSSL, "req", "-x509", *algo, "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-subj", "/CN=localhost", "-days", "30"], check=True, capture_output=True)
    return crt, key


def s_time(port: int, seconds: int, tls: str) -> tuple[int, str]:
    cmd = [OPENSSL, "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds),
           f"-tls1_{tls.split('.')[1]}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    m = re.search(r"(\d+) connections in [\d.]+s", r.stdout)
    if not m:
        raise RuntimeError(f"s_time failed: {r.stdout}\n{r.stderr}")
    return int(m.group(1)), " ".join(cmd)


def measure(pid: int, port: int, seconds: int, tls: str) -> tuple[int, float, float, str]:
    s_time(port, 1, tls)   # warm-up (page faults, first key operations)
    c0, t0 = cpu(pid), time.monotonic()
    n, cmd = s_time(port, seconds, tls)
    c1, t1 = cpu(pid), time.monotonic()
    return n, c1 - c0, t1 - t0, cmd


def run_portier(binary: Path, d: Path, crt: Path, key: Path, port: int) -> subprocess.Popen:
    (d / "users").write_text("")
    conf = d / "portier.toml"
    conf.write_text(f"""[server]
hostname = "bench.test"
workers = 1
allow_root = true
[[listener]]
protocol = "imap"
address = "127.0.0.1"
port = {port}
tls = "implicit"
[tls]
cert = "{crt}"
key = "{key}"
[[passdb]]
driver = "passwd-file"
path = "{d / 'users'}"
[log]
level = "warning"
""")
    p = subprocess.Popen([str(binary), "--config", str(conf)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


def run_s_server(crt: Path, key: Path, port: int) -> subprocess.Popen:
    p = subprocess.Popen([OPENSSL, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(crt),
                          "-key", str(key), "-quiet", "-naccept", "1000000"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--portier", default=str(REPO / "build" / "portier"))
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--tls", default="1.3", choices=["1.2", "1.3"])
    a = ap.parse_args()
    rows, cmds = [], []
    with tempfile.TemporaryDirectory(prefix="tlsbench") as tmp:
        d = Path(tmp)
        for kind in ("ecdsa-p256", "rsa2048"):
            crt, key = make_cert(d, kind)
            for server in ("portier", "openssl s_server"):
                port = free_port()
                p = (run_portier(Path(a.portier), d, crt, key, port) if server == "portier"
                     else run_s_server(crt, key, port))
                try:
                    n, cpu_s, wall, cmd = measure(p.pid, port, a.seconds, a.tls)
                finally:
                    p.terminate()
                    p.wait(10)
                rows.append((kind, server, n, wall, cpu_s))
                cmds.append(f"# {kind} {server}: {cmd}")
    print(f"TLS {a.tls} full handshakes (openssl s_time -new, {a.seconds} s each), "
          f"`{' '.join(sys.argv)}`\n")
    print("| certificate | server | handshakes | per wall second | server CPU s | handshakes per CPU-second (per core) |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, server, n, wall, cpu_s in rows:
        per_core = n / cpu_s if cpu_s > 0 else float("nan")
        print(f"| {kind} | {server} | {n} | {n / wall:.0f} | {cpu_s:.2f} | {per_core:.0f} |")
    print()
    print("\n".join(cmds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
