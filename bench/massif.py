"""Where portier's idle-session memory goes (valgrind --tool=massif).

portier (2 workers) runs under massif in front of bench/fastimapd; after a few
warm-up logins a detailed heap snapshot is taken (vgdb), then N idle sessions
are logged in (plain or TLS client leg) and a second snapshot is taken. Prints
heap bytes per session (useful + malloc overhead) and the allocation tree of
the difference, deepest frames first, as bytes per session. Driven by
bench/massif.sh.
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
from tests.support.certs import make_certs  # noqa: E402
from tests.support.portier import Listener, render_config  # noqa: E402
from tests.support.util import free_port, wait_for_port  # noqa: E402

NODE = re.compile(r"^(\s*)n\d+: (\d+) (.*)$")


def parse_snapshot(path: Path) -> tuple[int, int, dict[tuple[str, ...], int]]:
    """(heap, extra, {call path (outermost..innermost): bytes}) of the last snapshot."""
    text = path.read_text(errors="replace")
    snap = text[text.rfind("snapshot="):]
    heap = int(re.search(r"mem_heap_B=(\d+)", snap)[1])
    extra = int(re.search(r"mem_heap_extra_B=(\d+)", snap)[1])
    tree: dict[tuple[str, ...], int] = {}
    stack: list[str] = []
    for line in snap.splitlines():
        m = NODE.match(line)
        if not m:
            continue
        depth = len(m[1])
        fn = re.sub(r"^0x[0-9A-F]+: ", "", m[3])
        fn = re.sub(r" \(in /[^)]*\)$", "", fn)
        del stack[depth:]
        stack.append(fn[:140])
        tree[tuple(stack)] = tree.get(tuple(stack), 0) + int(m[2])
    return heap, extra, tree


def vgdb(pid: int, *cmd: str) -> None:
    subprocess.run(["vgdb", f"--pid={pid}", *cmd], capture_output=True, text=True, timeout=120,
                   check=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--out", required=True, help="JSON file to write (tree text beside it)")
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--depth", type=int, default=6)
    a = ap.parse_args()
    if not shutil.which("valgrind"):
        print("massif: valgrind missing (bench/install-deps.sh)", file=sys.stderr)
        return 2
    build = Path(a.build).resolve()
    work = Path(tempfile.mkdtemp(prefix="pt-massif-"))
    certs = make_certs(work / "certs")
    fast = FastBackend(build / "bench", work, 1 << 16)
    lg = None
    try:
        passwd = work / "portier.passwd"
        passwd.write_text("".join(u.line() for u in portier_users(50, fast.port, fast.port)))
        port = free_port()
        conf = work / "portier.toml"
        conf.write_text(render_config(listeners=[Listener("imap", "implicit" if a.tls else "none", port)],
                                      passwd_path=passwd, certs=certs,
                                      settings={"server": {"workers": 2},
                                                "login": {"proxy_timeout": "60s"}}))
        p = Proc(["valgrind", "--tool=massif", "--vgdb=yes", "--threshold=0.1", "--depth=40",
                  f"--massif-out-file={work}/massif.final", str(build / "portier"), "-c", str(conf)],
                 work / "valgrind.log", ready=False)
        try:
            wait_for_port(port, timeout=120, proc=p.p)
            base = [str(build / "bench" / "loadgen")]
            tls = ["--tls"] if a.tls else []
            common = ["--port", str(port), "--user-prefix", "fast", "--users", "50", "--pass", "x",
                      "--timeout", "60"] + tls
            subprocess.run(base + ["login", "--clients", "4", "--count", "40", "--duration", "120"] + common,
                           capture_output=True, text=True, timeout=300, check=True)
            vgdb(p.pid, "detailed_snapshot", f"{work}/before.ms")
            lg = subprocess.Popen(base + ["idle", "--sessions", str(a.sessions), "--concurrency", "20",
                                          "--hold", "600"] + common,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            line = lg.stdout.readline().strip()
            ready = int(line.split()[1]) if line.startswith("READY") else 0
            vgdb(p.pid, "detailed_snapshot", f"{work}/after.ms")
            lg.stdin.write("close\n")
            lg.stdin.close()
            lg.wait(120)
        finally:
            p.stop(timeout=120)
        h0, x0, t0 = parse_snapshot(work / "before.ms")
        h1, x1, t1 = parse_snapshot(work / "after.ms")
        n = max(ready, 1)
        diff = {k: (v - t0.get(k, 0)) / n for k, v in t1.items() if len(k) <= a.depth}
        kids: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for k in diff:
            kids.setdefault(k[:-1], []).append(k)
        lines: list[str] = []

        def walk(k: tuple[str, ...]) -> None:  # depth-first, biggest child first
            for c in sorted(kids.get(k, []), key=lambda c: -diff[c]):
                if abs(diff[c]) >= 16:
                    lines.append(f"{diff[c]:10.0f} B  " + "  " * (len(c) - 1) + c[-1])
                    walk(c)
        walk(())
        tree_txt = Path(a.out).with_suffix(".tree.txt")
        tree_txt.write_text("\n".join(lines) + "\n")
        res = {"sessions": a.sessions, "ready": ready, "tls": a.tls,
               "heap_per_session": (h1 - h0) / n, "malloc_overhead_per_session": (x1 - x0) / n,
               "tree": str(tree_txt), "cmd": f"bench/massif.sh --sessions {a.sessions}" + (" --tls" if a.tls else "")}
        Path(a.out).write_text(json.dumps(res, indent=1))
        print(f"massif: {ready} idle sessions{' (TLS)' if a.tls else ''}: heap "
              f"{res['heap_per_session']:.0f} B + malloc overhead {res['malloc_overhead_per_session']:.0f} B "
              f"per session; tree: {tree_txt}")
        return 0
    finally:
        if lg and lg.poll() is None:
            lg.kill()
        fast.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
