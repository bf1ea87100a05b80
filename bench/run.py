"""The side-by-side benchmark (issue 5): one real Dovecot backend, one scripted
fast backend, and in front of them Dovecot's proxy, nginx's mail proxy and
portier, all measured the same way in one run. Driven by bench/run.sh.

Measurements (every one on loopback, bounded in count and time):
  login    connect, LOGIN, SELECT INBOX, LOGOUT against the real Dovecot
           backend at 1 and 50 clients: logins/s, p50/p99 login latency
           (connect -> tagged OK of LOGIN), proxy CPU per login (utime+stime
           of the proxy's process tree, reaped children included, from /proc).
  fast     the same cycle against the scripted fast backend (logins/s).
  idle     N logged-in idle sessions through each proxy, fresh proxy process,
           PSS summed over its processes, (after - before) / N; plain and TLS.
  metrics  CPU per login with GET /metrics scraped every second vs none
           (issue 11), and the CPU of one scrape.
  relay    a large FETCH (fetches x msg-size bytes) through each proxy and
           through bare splice / copy / TLS relays: GB/s and CPU s per GB.
  passdb   the fast-backend login cycle through portier with each passdb:
           passwd-file, pgsql with the auth cache off (cold: one query per
           login) and on (warm: after a warm-up pass), auth_http; and nginx
           with the same auth_http service (tests/support/auth_http.py, in a
           process of its own): logins/s, proxy CPU per login, and the
           database's / auth service's CPU per login apart (aux).
  oauth2   (on request: --phases oauth2) the fast-backend login cycle with an
           OAuth token as password through portier's oauth2 passdb —
           introspection from the cache, local JWT RS256 / ES256 — beside
           passwd-file, one user: extra CPU per OAuth login.

Results go to <out>/results.json; bench/report.py renders them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402
from peers import (AuthHttpService, BareRelay, Direct, DovecotProxy, FastBackend,  # noqa: E402
                   NginxProxy, PortierProxy, portier_users, tree_cpu, tree_pss_kib)
from tests.support.certs import make_certs  # noqa: E402
from tests.support.dovecot import DovecotBackend  # noqa: E402

PASS = "bench-Pw-1"


def box_cpu() -> tuple[float, float]:
    """(busy, softirq) CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    tck = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / tck, softirq / tck


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.bindir = Path(a.build) / "bench"
        self.loadgen = str(self.bindir / "loadgen")
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = self.out / "work"
        self.work.mkdir(exist_ok=True)
        self.results: dict = {"meta": {}, "login": [], "fast": [], "idle": [], "relay": [],
                              "syscalls": [], "passdb": [], "metrics": [], "oauth2": []}
        self.failures: list[str] = []
        self.stack: list = []

    # ------------------------------------------------------------ helpers
    def run_loadgen(self, args: list[str], timeout: float) -> dict:
        cmd = [self.loadgen, *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        try:
            res = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            raise RuntimeError(f"loadgen failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
        res["cmd"] = "loadgen " + " ".join(args)
        return res

    def check(self, what: str, res: dict, need: str) -> None:
        if res.get("errors", 0) or not res.get(need):
            self.failures.append(f"{what}: {need}={res.get(need)} errors={res.get('errors')} "
                                 f"first_error={res.get('first_error')!r}")

    def load(self) -> tuple[str, list[float]]:
        la = os.getloadavg()
        return f"{la[0]:.2f} {la[1]:.2f} {la[2]:.2f}", list(la)

    # ------------------------------------------------------------ setup
    def setup(self) -> None:
        a = self.a
        log(f"output: {self.out}")
        self.certs = make_certs(self.work / "certs")
        users = {f"user{i}": PASS for i in range(a.users)}
        # A backend as fast as Dovecot gets: shared login processes and reused
        # imap processes (the defaults fork a login and an imap process per
        # connection, ~15 ms of CPU each here, which would drown every proxy's
        # overhead).
        extra = ("protocol imap {\n  mail_max_userip_connections = 100000\n}\n"
                 "service imap-login {\n  service_count = 0\n  process_min_avail = 2\n}\n"
                 "service imap {\n  service_count = 0\n  process_min_avail = 8\n}\n"
                 "service auth {\n  client_limit = 4000\n}\n")
        self.dc = DovecotBackend(users=users, tmpdir=self.work / "backend", extra_conf=extra,
                                 certs=self.certs).start()
        self.stack.append(self.dc)
        self.fast = FastBackend(self.bindir, self.work, a.msg_size)
        self.stack.append(self.fast)
        dport, fport = self.dc.ports["imap"], self.fast.port
        routes = {f"user{i}": dport for i in range(a.users)}
        routes.update({f"fast{i}": fport for i in range(a.users)})
        self.proxies = {
            "dovecot": DovecotProxy(self.work / "dovecot-proxy", self.certs, routes),
            "nginx": NginxProxy(self.work / "nginx", self.certs, dport, fport),
            "portier": PortierProxy(Path(a.build) / "portier", self.work / "portier", self.certs,
                                    portier_users(a.users, dport, fport), workers=a.workers),
        }
        for p in self.proxies.values():
            p.start()
            self.stack.append(p)
        self.relays = {m: BareRelay(self.bindir, self.work, m, fport, self.certs)
                       for m in ("splice", "copy", "tls")}
        self.stack.extend(self.relays.values())
        la, _ = self.load()
        self.results["meta"] = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": platform.node(),
            "kernel": platform.release(), "cpus": os.cpu_count(), "load_at_start": la,
            "smoke": a.smoke, "rounds": a.rounds, "duration": a.duration,
            "clients": a.clients, "sessions": a.sessions, "msg_size": a.msg_size,
            "fetches": a.fetches, "relay_rounds": a.relay_rounds, "portier_workers": a.workers,
            "versions": versions(Path(a.build) / "portier"),
            "argv": sys.argv[1:],
            "cmdline": os.environ.get("BENCH_CMDLINE", ""),
        }
        log(f"backend dovecot imap={dport}, fast backend={fport}; proxies: " +
            ", ".join(f"{n} {p.port}/{p.tls_port}" for n, p in self.proxies.items()) +
            "; relays: " + ", ".join(f"{m} {r.port}" for m, r in self.relays.items()))

    def teardown(self) -> None:
        for x in reversed(self.stack):
            try:
                x.stop()
            except Exception as e:  # keep stopping the rest
                log(f"stop {x}: {e}")

    # ------------------------------------------------------------ measurements
    def targets(self, direct_port: int) -> list:
        return [Direct(direct_port)] + list(self.proxies.values())

    def login_round(self, kind: str, prefix: str, direct_port: int, clients: int,
                    rnd: int, targets: list | None = None, users: int | None = None,
                    passwords: dict[str, str] | None = None) -> None:
        """passwords: per target name (default PASS), e.g. OAuth tokens."""
        a = self.a
        for t in targets if targets is not None else self.targets(direct_port):
            roots, extra = t.roots(), t.extra_roots()
            backend_roots = [self.dc.proc.pid] if prefix == "user" else [self.fast.pid]
            c0, x0, b0 = tree_cpu(roots), tree_cpu(extra), tree_cpu(backend_roots)
            m0 = box_cpu()
            args = ["login", "--port", str(t.port), "--clients", str(clients),
                    "--duration", str(a.duration), "--user-prefix", prefix,
                    "--users", str(users or a.users),
                    "--pass", (passwords or {}).get(t.name, PASS),
                    "--threads", str(a.loadgen_threads if clients > 1 else 1)]
            if a.src_ips:
                args += ["--src-ips", str(a.src_ips)]
            res = self.run_loadgen(args, timeout=a.duration + 60)
            c1, x1, b1 = tree_cpu(roots), tree_cpu(extra), tree_cpu(backend_roots)
            m1 = box_cpu()
            n = max(res["cycles"], 1)
            res.update(target=t.name, round=rnd, load=self.load()[0],
                       proxy_cpu_ms_per_login=(c1 - c0) * 1e3 / n if roots else None,
                       aux_cpu_ms_per_login=(x1 - x0) * 1e3 / n if extra else None,
                       backend_cpu_ms_per_login=(b1 - b0) * 1e3 / n,
                       loadgen_cpu_ms_per_login=res["loadgen_cpu_s"] * 1e3 / n,
                       box_cpu_ms_per_login=(m1[0] - m0[0]) * 1e3 / n,
                       softirq_ms_per_login=(m1[1] - m0[1]) * 1e3 / n)
            self.results[kind].append(res)
            self.check(f"{kind} {t.name} c={clients}", res, "cycles")
            cpu = res["proxy_cpu_ms_per_login"]
            log(f"{kind:5} {t.name:8} c={clients:<3} {res['rate']:8.1f}/s p50 {res['p50_ms']:.3f} ms "
                f"p99 {res['p99_ms']:.3f} ms cpu/login "
                f"{'-' if cpu is None else f'{cpu:.3f} ms'} err={res['errors']}")

    def measure_logins(self) -> None:
        for rnd in range(self.a.rounds):
            for clients in self.a.clients:
                self.login_round("login", "user", self.dc.ports["imap"], clients, rnd)

    def measure_fast(self) -> None:
        for rnd in range(self.a.rounds):
            self.login_round("fast", "fast", self.fast.port, self.a.fast_clients, rnd)

    def measure_idle(self) -> None:
        a = self.a
        for n in a.sessions:
            for tls in (False, True):
                for name, p in self.proxies.items():
                    p.restart()
                    port = p.tls_port if tls else p.port
                    # Warm up: a few complete logins so one-time setup is not counted.
                    warm = self.run_loadgen(["login", "--port", str(port), "--clients", "4",
                                             "--count", "40", "--duration", "10",
                                             "--user-prefix", "fast", "--users", str(a.users),
                                             "--pass", PASS] + (["--tls"] if tls else []), 60)
                    self.check(f"idle warm-up {name} tls={tls}", warm, "cycles")
                    before = tree_pss_kib(p.roots())
                    lg = subprocess.Popen(
                        [self.loadgen, "idle", "--port", str(port), "--sessions", str(n),
                         "--concurrency", "50", "--hold", "300", "--user-prefix", "fast",
                         "--users", str(a.users), "--pass", PASS] + (["--tls"] if tls else []),
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                    line = _readline(lg, 300)
                    ready = int(line.split()[1]) if line.startswith("READY") else 0
                    after = tree_pss_kib(p.roots())
                    lg.stdin.write("close\n")
                    lg.stdin.close()
                    out = lg.stdout.read()
                    lg.wait(60)
                    res = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"errors": -1}
                    per = (after - before) / max(ready, 1)
                    res.update(target=name, tls=tls, sessions=n, ready=ready, pss_before_kib=before,
                               pss_after_kib=after, kib_per_session=per, load=self.load()[0],
                               cmd=f"loadgen idle --port {port} --sessions {n} --concurrency 50 "
                                   f"--user-prefix fast --users {a.users} --pass {PASS}"
                                   + (" --tls" if tls else ""))
                    self.results["idle"].append(res)
                    if ready != n:
                        self.failures.append(f"idle {name} tls={tls} n={n}: ready={ready} "
                                             f"({res.get('first_error')})")
                    log(f"idle  {name:8} tls={int(tls)} n={n:<5} ready={ready:<5} "
                        f"PSS {before}->{after} KiB = {per:.2f} KiB/session")

    def measure_relay(self) -> None:
        a = self.a
        plain = [("direct", Direct(self.fast.port), [])] + \
                [(f"{m}-relay", self.relays[m], [self.relays[m].pid]) for m in ("splice", "copy")] + \
                [(n, p, p.roots()) for n, p in self.proxies.items()]
        tls = [("tls-relay", self.relays["tls"], [self.relays["tls"].pid])] + \
              [(n, p, p.roots()) for n, p in self.proxies.items()]
        for rnd in range(a.relay_rounds or a.rounds):
            for is_tls, group in ((False, plain), (True, tls)):
                for name, t, roots in group:
                    port = (t.port if not is_tls or name == "tls-relay" else t.tls_port)
                    c0 = tree_cpu(roots)
                    args = ["fetch", "--port", str(port), "--fetches", str(a.fetches),
                            "--user-prefix", "fast", "--pass", PASS] + (["--tls"] if is_tls else [])
                    res = self.run_loadgen(args, timeout=600)
                    c1 = tree_cpu(roots)
                    gb = res["bytes"] / 1e9
                    res.update(target=name, tls=is_tls, round=rnd, load=self.load()[0],
                               cpu_s=(c1 - c0) if roots else None,
                               cpu_s_per_gb=((c1 - c0) / gb) if roots and gb else None)
                    self.results["relay"].append(res)
                    self.check(f"relay {name} tls={is_tls}", res, "bytes")
                    cpg = res["cpu_s_per_gb"]
                    log(f"relay {name:10} tls={int(is_tls)} {res['gbps']:.3f} GB/s "
                        f"cpu {'-' if cpg is None else f'{cpg:.3f} s/GB'}")

    def measure_syscalls(self) -> None:
        """System calls per login of each proxy's process tree (strace -c -f
        attached for N logins against the fast backend): the kernel half of
        the CPU per login, which callgrind does not see."""
        import shutil
        import signal
        if not shutil.which("strace"):
            log("syscalls: strace missing, skipped")
            return
        a = self.a
        n = a.syscall_logins
        for name, p in self.proxies.items():
            pids = [pid for r in p.roots() for pid in peers.tree_pids(r)]
            outf = self.work / f"strace-{name}.txt"
            st = subprocess.Popen(["strace", "-c", "-f", "-o", str(outf)] +
                                  [x for pid in pids for x in ("-p", str(pid))],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            # strace prints "Process N attached" per task once it is attached.
            attached, deadline = 0, time.monotonic() + 30
            while attached < len(pids) and time.monotonic() < deadline:
                line = st.stderr.readline()
                if not line:
                    break
                attached += "attached" in line
            res = self.run_loadgen(["login", "--port", str(p.port), "--clients", "4", "--count", str(n),
                                    "--duration", "120", "--timeout", "30", "--user-prefix", "fast",
                                    "--users", str(a.users), "--pass", PASS], timeout=300)
            st.send_signal(signal.SIGINT)
            st.wait(30)
            calls = parse_strace(outf.read_text()) if outf.exists() else {}
            logins = max(res["cycles"], 1)
            per = {k: v / logins for k, v in sorted(calls.items(), key=lambda kv: -kv[1])}
            total = sum(per.values())
            self.results.setdefault("syscalls", []).append(
                {"target": name, "logins": res["cycles"], "errors": res["errors"], "per_login": per,
                 "total_per_login": total, "cmd": res["cmd"] + f"  # under strace -c -f -p <{name} pids>"})
            self.check(f"syscalls {name}", res, "cycles")
            top = ", ".join(f"{k} {v:.1f}" for k, v in list(per.items())[:8])
            log(f"sys   {name:8} {total:.1f} syscalls/login: {top}")

    def measure_metrics(self) -> None:
        """Issue 11: CPU per login with GET /metrics scraped every second vs no
        scrapes (counting is always on), on one portier with the admin
        listener, rounds interleaved (off/on, then on/off), fast backend, 50
        clients; plus the CPU of one scrape on an idle process. Skipped (and
        recorded as such) when this build has no admin listener."""
        import threading
        import urllib.request
        a = self.a
        admin = peers.free_port()
        key = "bench-metrics-key"
        p = PortierProxy(Path(a.build) / "portier", self.work / "portier-metrics", self.certs,
                         portier_users(a.users, self.dc.ports["imap"], self.fast.port),
                         workers=a.workers,
                         settings={"admin": {"listen": f"127.0.0.1:{admin}", "api_key": key}})
        try:
            p.start()
        except Exception as e:  # config rejected: no admin listener in this build
            log(f"metrics: skipped, portier with [admin] did not start: {e}")
            self.results["metrics"] = [{"skipped": str(e)}]
            return
        self.stack.append(p)
        url = f"http://127.0.0.1:{admin}/metrics"

        def scrape() -> int:
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
            with urllib.request.urlopen(req, timeout=5) as r:
                return len(r.read())

        size = scrape()
        # The scrape alone: N scrapes of an idle process.
        n = 5 if a.smoke else 50
        c0 = tree_cpu(p.roots())
        for _ in range(n):
            scrape()
        scrape_ms = (tree_cpu(p.roots()) - c0) * 1e3 / n
        rows = self.results.setdefault("metrics", [])
        rows.append({"mode": "scrape", "scrapes": n, "cpu_ms_per_scrape": scrape_ms, "bytes": size})
        log(f"metrics scrape: {size} bytes, {scrape_ms:.3f} ms CPU per scrape (idle, {n} scrapes)")
        for rnd in range(a.rounds):
            for mode in (("off", "on") if rnd % 2 == 0 else ("on", "off")):
                stop = threading.Event()
                scrapes: list[int] = []

                def scraper() -> None:
                    while not stop.wait(1.0):
                        scrapes.append(scrape())
                t = threading.Thread(target=scraper, daemon=True) if mode == "on" else None
                c0 = tree_cpu(p.roots())
                if t:
                    t.start()
                args = ["login", "--port", str(p.port), "--clients", str(a.fast_clients),
                        "--duration", str(a.metrics_duration), "--user-prefix", "fast",
                        "--users", str(a.users), "--pass", PASS, "--threads", str(a.loadgen_threads)]
                res = self.run_loadgen(args, timeout=a.metrics_duration + 60)
                if t:
                    stop.set()
                    t.join(10)
                c1 = tree_cpu(p.roots())
                logins = max(res["cycles"], 1)
                res.update(target="portier", mode=mode, round=rnd, scrapes=len(scrapes),
                           load=self.load()[0], proxy_cpu_ms_per_login=(c1 - c0) * 1e3 / logins)
                rows.append(res)
                self.check(f"metrics {mode}", res, "cycles")
                log(f"metrics {mode:3} round {rnd}: {res['rate']:8.1f}/s cpu/login "
                    f"{res['proxy_cpu_ms_per_login']:.4f} ms, {len(scrapes)} scrapes")
        med = {m: statistics.median(r["proxy_cpu_ms_per_login"] for r in rows if r.get("mode") == m)
               for m in ("off", "on")}
        rows.append({"mode": "summary", "off_ms": med["off"], "on_ms": med["on"],
                     "delta_pct": (med["on"] / med["off"] - 1) * 100 if med["off"] else None})
        log(f"metrics: CPU per login off {med['off']:.4f} ms, on {med['on']:.4f} ms "
            f"({(med['on'] / med['off'] - 1) * 100:+.2f} %)")
        p.stop()
        self.stack.remove(p)

    def measure_passdb(self) -> None:
        """Logins through portier per passdb driver, and nginx + the same
        auth_http service (see the module docstring)."""
        from tests.support import postgres
        if not postgres.available():
            log("passdb: PostgreSQL 15 missing, skipped")
            return
        a, dport, fport = self.a, self.dc.ports["imap"], self.fast.port
        pg = postgres.Postgres()
        self.stack.append(pg)
        pg.start()
        pg.create_db()
        rows = ",".join(f"('{p}{i}', {dport if p == 'user' else fport})"
                        for p in ("user", "fast") for i in range(a.users))
        pg.psql("ALTER SYSTEM SET log_statement = 'none'; SELECT pg_reload_conf();")
        pg.psql("CREATE TABLE users (email text PRIMARY KEY, port int NOT NULL);\n"
                f"INSERT INTO users VALUES {rows};", user=pg.user)
        # The same fields as the passwd-file users (portier_users): proxy,
        # host, port, nopassword (the backend checks the password).
        query = ("SELECT NULL AS password, 'Y' AS nopassword, 'Y' AS proxy, '127.0.0.1' AS host, port "
                 "FROM users WHERE email = '%u'")
        pgsql = (f'[[passdb]]\ndriver = "pgsql"\nconnect = "{pg.conninfo()}"\n'
                 f'query = "{query}"\n')
        svc = AuthHttpService(self.work, dport, fport)
        self.stack.append(svc)
        auth_http = f'[[passdb]]\ndriver = "auth_http"\nurl = "http://127.0.0.1:{svc.port}/auth"\n'
        binary = Path(a.build) / "portier"
        pg_roots = [pg.postmaster_pid()]

        def portier(name: str, extra: str, aux: list[int], cache: bool = False) -> PortierProxy:
            return PortierProxy(binary, self.work / name, self.certs, [], workers=a.workers, name=name,
                                extra_toml=extra, aux=aux,
                                settings={"auth.cache": {"size": "16M"}} if cache else {})
        targets = [self.proxies["portier"],
                   portier("portier-pgsql-cold", pgsql, pg_roots),
                   portier("portier-pgsql-warm", pgsql, pg_roots, cache=True),
                   portier("portier-auth_http", auth_http, [svc.pid]),
                   NginxProxy(self.work / "nginx-auth_http", self.certs, dport, fport,
                              name="nginx-auth_http", auth_service=svc)]
        for t in targets[1:]:
            t.start()
            self.stack.append(t)
        # Warm-up: every user logs in once through each (pools connected,
        # the warm cache filled).
        for t in targets:
            warm = self.run_loadgen(["login", "--port", str(t.port), "--clients", "4",
                                     "--count", str(2 * a.users), "--duration", "30",
                                     "--user-prefix", "fast", "--users", str(a.users),
                                     "--pass", PASS], 90)
            self.check(f"passdb warm-up {t.name}", warm, "cycles")
        for rnd in range(a.rounds):
            for clients in sorted({1, a.fast_clients}):
                self.login_round("passdb", "fast", fport, clients, rnd, targets=targets)

    def measure_oauth2(self) -> None:
        """OAuth logins (the token as LOGIN password, one user fast0)
        through portier with the oauth2 passdb — introspection answered
        from its cache, and local JWT (RS256, ES256) — beside the
        passwd-file reference, same run, same fast backend."""
        from tests.support.oauth import IntrospectionServer, TokenIssuer
        fport = self.fast.port
        issuer = TokenIssuer(self.work / "oauth-keys")
        srv = IntrospectionServer().start()
        self.stack.append(srv)
        route = f'fields = {{ proxy = "y", host = "127.0.0.1", port = "{fport}", nopassword = "y" }}\n'
        common = ('[[passdb]]\ndriver = "oauth2"\nclient_id = "portier"\n'
                  'issuers = ["https://issuer.test"]\nscope = ["mail"]\n' + route)
        intro = common + f'introspection_url = "{srv.url()}"\ncache_ttl = "1h"\n'
        local = common + f'introspection_mode = "local"\nlocal_keys = "{issuer.keydir}"\n'
        binary = Path(self.a.build) / "portier"

        def portier(name: str, extra: str) -> PortierProxy:
            return PortierProxy(binary, self.work / name, self.certs, [], workers=self.a.workers,
                                name=name, extra_toml=extra)
        user = "fast0"
        tokens = {"portier-oauth2-introspect-cached": srv.opaque(issuer, user, exp_in=7200),
                  "portier-oauth2-jwt-rs256": issuer.mint(user, "RS256", exp_in=7200),
                  "portier-oauth2-jwt-es256": issuer.mint(user, "ES256", exp_in=7200)}
        targets = [self.proxies["portier"], portier("portier-oauth2-introspect-cached", intro),
                   portier("portier-oauth2-jwt-rs256", local), portier("portier-oauth2-jwt-es256", local)]
        for t in targets[1:]:
            t.start()
            self.stack.append(t)
        passwords = {t.name: tokens.get(t.name, PASS) for t in targets}
        for t in targets:
            warm = self.run_loadgen(["login", "--port", str(t.port), "--clients", "1", "--count", "3",
                                     "--duration", "30", "--user-prefix", "fast", "--users", "1",
                                     "--pass", passwords[t.name]], 60)
            self.check(f"oauth2 warm-up {t.name}", warm, "cycles")
        log(f"oauth2: introspection requests after warm-up: {srv.requests}")
        for rnd in range(self.a.rounds):
            for clients in sorted({1, self.a.fast_clients}):
                self.login_round("oauth2", "fast", fport, clients, rnd, targets=targets, users=1,
                                 passwords=passwords)
        self.results["oauth2_introspection_requests"] = srv.requests

    def run(self) -> int:
        t0 = time.monotonic()
        try:
            self.setup()
            for phase in self.a.phases:
                log(f"phase {phase}")
                getattr(self, f"measure_{phase}")()
        finally:
            self.teardown()
        la, _ = self.load()
        self.results["meta"]["load_at_end"] = la
        self.results["meta"]["wall_secs"] = round(time.monotonic() - t0, 1)
        self.results["failures"] = self.failures
        path = self.out / "results.json"
        path.write_text(json.dumps(self.results, indent=1))
        log(f"results: {path} ({self.results['meta']['wall_secs']} s)")
        for f in self.failures:
            log(f"FAILED: {f}")
        return 1 if self.failures else 0


def parse_strace(text: str) -> dict[str, int]:
    """`strace -c` summary -> {syscall: calls}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 5 and f[0].replace(".", "").isdigit() and f[-1] != "total":
            try:
                out[f[-1]] = int(f[3])
            except ValueError:
                pass
    return out


def _readline(p: subprocess.Popen, timeout: float) -> str:
    import select
    r, _, _ = select.select([p.stdout], [], [], timeout)
    return p.stdout.readline().strip() if r else ""


def versions(portier: Path) -> dict:
    def cmd(*argv: str) -> str:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except Exception as e:  # informational only
            return f"? ({e})"
    return {"portier": cmd(str(portier), "--version"), "dovecot": cmd("/usr/sbin/dovecot", "--version"),
            "nginx": cmd("/usr/sbin/nginx", "-v"), "openssl": cmd("openssl", "version")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", required=True, help="CMake build dir with portier and bench/")
    ap.add_argument("--out", required=True, help="results directory")
    ap.add_argument("--smoke", action="store_true", help="minimal counts: checks the machinery")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per login run")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 50])
    ap.add_argument("--fast-clients", type=int, default=50)
    ap.add_argument("--loadgen-threads", type=int, default=1)
    ap.add_argument("--src-ips", type=int, default=0)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--sessions", type=int, nargs="+", default=[2000, 9000])
    ap.add_argument("--syscall-logins", type=int, default=500)
    ap.add_argument("--msg-size", type=int, default=64 << 20)
    ap.add_argument("--fetches", type=int, default=16)
    ap.add_argument("--relay-rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2, help="portier worker threads")
    ap.add_argument("--metrics-duration", type=float, default=10.0,
                    help="seconds per login run of the metrics phase")
    ap.add_argument("--phases", nargs="+",
                    default=["logins", "fast", "idle", "relay", "syscalls", "passdb", "metrics"],
                    choices=["logins", "fast", "idle", "relay", "syscalls", "passdb", "metrics",
                             "oauth2"])
    a = ap.parse_args()
    if a.smoke:
        a.rounds, a.duration, a.clients, a.fast_clients = 1, 0.5, [1, 4], 4
        a.relay_rounds = 1
        a.sessions, a.msg_size, a.fetches, a.users = [20], 1 << 20, 2, 4
        a.syscall_logins = 20
        a.metrics_duration = 1.5
    return Bench(a).run()


if __name__ == "__main__":
    sys.exit(main())
