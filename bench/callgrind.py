"""Instructions per login (callgrind): portier under valgrind --tool=callgrind
proxies N1 and then N2 IMAP logins (connect, LOGIN, SELECT INBOX, LOGOUT, one
client, plaintext, bench/fastimapd backend, passwd-file `nopassword` entry);
Ir per login = (Ir(N2) - Ir(N1)) / (N2 - N1), which cancels start-up and
shutdown. Deterministic on a noisy machine, so usable to spot regressions.
Also lists the top functions by self cost of the N2 run. Driven by
bench/callgrind.sh.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import FastBackend, Proc, portier_users  # noqa: E402
from tests.support.portier import Listener, render_config  # noqa: E402
from tests.support.util import free_port, wait_for_port  # noqa: E402


def total_ir(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def functions(path: Path) -> dict[str, int]:
    """Self Ir per function (callgrind_annotate, every function)."""
    r = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", str(path)],
                       capture_output=True, text=True)
    out: dict[str, int] = {}
    for line in r.stdout.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*)$", line)
        if m and "PROGRAM TOTALS" not in line and not m[2].startswith(("Ir", "file:function")):
            fn = re.sub(r"\s+\[[^\]]*\]$", "", m[2].strip())  # drop the [object] suffix
            out[fn] = out.get(fn, 0) + int(m[1].replace(",", ""))
    return out


def top_per_login(f1: dict[str, int], f2: dict[str, int], dn: int, n: int = 25) -> list[dict]:
    """Functions by self Ir per login: (Ir(N2) - Ir(N1)) / (N2 - N1)."""
    diff = {fn: (ir - f1.get(fn, 0)) / dn for fn, ir in f2.items()}
    total = sum(v for v in diff.values() if v > 0) or 1
    top = sorted(diff.items(), key=lambda kv: -kv[1])[:n]
    return [{"ir_per_login": v, "pct": 100 * v / total, "fn": fn} for fn, v in top]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--n1", type=int, default=50)
    ap.add_argument("--n2", type=int, default=250)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    if not shutil.which("valgrind"):
        print("callgrind: valgrind missing (bench/install-deps.sh)", file=sys.stderr)
        return 2
    build = Path(a.build).resolve()
    work = Path(tempfile.mkdtemp(prefix="pt-cg-"))
    fast = FastBackend(build / "bench", work, 1 << 16)
    res: dict = {"workers": a.workers, "n1": a.n1, "n2": a.n2}
    try:
        passwd = work / "portier.passwd"
        passwd.write_text("".join(u.line() for u in portier_users(4, fast.port, fast.port)))
        irs, fns = {}, {}
        for n in (a.n1, a.n2):
            port = free_port()
            conf = work / f"portier-{n}.toml"
            conf.write_text(render_config(listeners=[Listener("imap", "none", port)],
                                          passwd_path=passwd, certs=None,
                                          settings={"server": {"workers": a.workers}}))
            cg_out = work / f"callgrind.{n}.out"
            p = Proc(["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg_out}",
                      str(build / "portier"), "-c", str(conf)], work / f"valgrind-{n}.log", ready=False)
            try:
                wait_for_port(port, timeout=120, proc=p.p)
                lg = [str(build / "bench" / "loadgen"), "login", "--port", str(port), "--clients", "1",
                      "--count", str(n), "--duration", "600", "--timeout", "60",
                      "--user-prefix", "fast", "--users", "4", "--pass", "x"]
                r = subprocess.run(lg, capture_output=True, text=True, timeout=900)
                st = json.loads(r.stdout.strip().splitlines()[-1])
            finally:
                p.stop(timeout=120)
            # wait_for_port's probe connection counts as one extra (login-less) connection
            # in both runs, so it cancels out.
            if st["cycles"] != n or st["errors"]:
                raise RuntimeError(f"loadgen: {st}")
            irs[n] = total_ir(cg_out)
            fns[n] = functions(cg_out)
            if n == a.n2:
                keep = Path(a.out).with_name("callgrind.out")
                shutil.copy(cg_out, keep)
                res["callgrind_out"] = str(keep)
        res.update(ir_n1=irs[a.n1], ir_n2=irs[a.n2],
                   ir_per_login=(irs[a.n2] - irs[a.n1]) / (a.n2 - a.n1),
                   top=top_per_login(fns[a.n1], fns[a.n2], a.n2 - a.n1),
                   cmd=f"bench/callgrind.sh --n1 {a.n1} --n2 {a.n2}")
        Path(a.out).write_text(json.dumps(res, indent=1))
        print(f"callgrind: {res['ir_per_login']:,.0f} instructions per login "
              f"({irs[a.n1]:,} Ir @ {a.n1}, {irs[a.n2]:,} Ir @ {a.n2}) -> {a.out}")
        return 0
    finally:
        fast.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
