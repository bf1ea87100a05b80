"""Backend faults: the full matrix (issue 4; spec §2.3, §2.4, §3.6, §4.2,
§5.4, §6.2, §7, §8.1).

Generated from tests/support/fault_matrix.py: protocol × backend login state
× fault, where the fault applies there.  Ids read `<protocol>-<state>-<fault>`
(e.g. `pop3-login1-reset`; IMAP states write `/` as `_`).

For every case the test checks
  - the client's reply (the protocol's documented reply, §8.1) and that the
    client session goes on afterwards (pre-login again);
  - the final log line: `<proto>-login: <Level>: proxy(<user>,<ip:port>): <message>`
    with `state=<state>` where the spec puts one (timeouts, disconnects);
  - §2.4: a retryable failure is retried (proxy_max_reconnects=1 → the fake saw
    exactly 2 connections and the log has one `- reconnecting (attempt #1)`),
    anything else is not (exactly 1 connection, no reconnecting line);
  - the fault hit the intended state (the fake reached its "fault" mark on
    every connection) and no log line of the case carries control bytes;
  - timing: timeouts fire at proxy_timeout=1, retries come 1 s apart,
    non-retried failures answer at once.

One portier per protocol (module scope) serves all of its cases: each case is
a passdb user pointing at its own fake backend.  All cases of a protocol run
concurrently the first time one of them is asked for; each test then checks
its own result, so the whole matrix takes a few seconds per protocol.

Also here: fast fail (`proxy_host_immediate_failure_after`), TTL loop refusal
(IMAP ID `x-proxy-ttl`, XCLIENT `TTL=`), `Proxying loops to itself`, and a
real IMAP proxy loop through portier itself.
"""
from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import fake_backend as fb
from tests.support import fault_matrix as fm
from tests.support.fake_backend import FakeBackend
from tests.support.portier import Listener, User, proxy
from tests.support.util import free_port

CASES = fm.cases()
PROTO_INDEX = {name: i + 1 for i, name in enumerate(fm.PROTOCOLS)}


# ===================================================================== matrix
class Matrix:
    """Per protocol: one portier, one fake per case, all logins at once."""

    def __init__(self, factory, certs) -> None:
        self.factory = factory
        self.certs = certs
        self.fakes: list[FakeBackend] = []
        self.runs: dict[str, dict] = {}
        self.lock = threading.Lock()

    def get(self, case: fm.Case):
        with self.lock:
            if case.protocol.name not in self.runs:
                try:
                    self.runs[case.protocol.name] = self._run(case.protocol)
                except Exception as e:   # fail this protocol's cases once, not 50 times
                    self.runs[case.protocol.name] = e
        run = self.runs[case.protocol.name]
        if isinstance(run, Exception):
            pytest.fail(f"matrix run for {case.protocol.name} failed: {run}", pytrace=False)
        port, fake, result = run["cases"][case.id]
        return run["portier"], port, fake, result, run["seconds"]

    def _run(self, proto: fm.Protocol) -> dict:
        mine = [c for c in CASES if c.protocol is proto]
        users, backends = [], {}
        for c in mine:
            if c.fault.steps is None:        # connection refused: nobody listens
                fake, port = None, fb.closed_listener_port()
            else:
                fake = FakeBackend(c.script(self.certs), name=c.id)
                self.fakes.append(fake)
                port = fake.port
            backends[c.id] = (port, fake)
            users.append(User(c.user, fm.PASSWORD,
                              proxy(port, proxy_timeout=c.proxy_timeout, **c.station.fields)))
        px = self.factory(users, listeners=(Listener(proto.name, "none"),),
                          settings={"login": {"proxy_timeout": "1s",
                                              "proxy_max_reconnects": 1}})
        lport = px.port(proto.name)
        pi = PROTO_INDEX[proto.name]
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(mine)) as ex:
            futs = {c.id: ex.submit(fm.run_login, proto, lport, c.user, f"127.0.{pi}.{i + 2}")
                    for i, c in enumerate(mine)}
            results = {cid: f.result(timeout=30) for cid, f in futs.items()}
        seconds = time.monotonic() - t0
        # Every client has its final answer, so the proxy is done with every
        # backend: stop the fakes (their records stay) - ~50 idle accept
        # threads per protocol would otherwise poll until module teardown.
        for _, fake in backends.values():
            if fake is not None:
                fake.close()
        print(f"{proto.name}: {len(mine)} cases concurrently in {seconds:.2f}s")
        return {"portier": px, "seconds": seconds,
                "cases": {cid: (*backends[cid], results[cid]) for cid in results}}

    def close(self) -> None:
        for f in self.fakes:
            f.close()


@pytest.fixture(scope="module")
def matrix(module_portier_factory, certs):
    m = Matrix(module_portier_factory, certs)
    yield m
    m.close()


def _case_lines(px, user: str) -> list[str]:
    return [ln for ln in px.log.lines() if f"proxy({user}," in ln or f"user=<{user}>" in ln]


def _describe(px, user: str, fake) -> str:
    out = ["log lines of this case:"] + [f"  {ln}" for ln in _case_lines(px, user)]
    if fake is not None:
        for c in fake.connections:
            out.append(f"  fake conn#{c.index}: failure={c.failure} "
                       f"events={[e for _, e in c.events]} received={c.received[:300]!r}")
    return "\n".join(out)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_backend_fault(matrix, case: fm.Case):
    px, port, fake, res, _ = matrix.get(case)
    o = case.outcome
    why = lambda: _describe(px, case.user, fake)  # noqa: E731

    # -- the client's reply, and the session goes on
    assert res.error is None, f"client: {res.error}\n{why()}"
    assert res.reply == case.reply, f"reply {res.reply!r}, expected {case.reply!r}\n{why()}"
    assert res.usable, f"session not usable after the failed login\n{why()}"

    # -- the log line names the failure (and state= where the spec has one)
    found = True
    try:
        px.log.wait_for(case.log_regex(port), timeout=3)
    except TimeoutError:
        found = False
    if not found:
        pytest.fail(f"no log line matching {case.log_regex(port)!r}\n{why()}", pytrace=False)

    # -- §2.4 retry rule
    reconnecting = re.compile(rf"{case.protocol.service}: Warning: "
                              rf"proxy\({re.escape(case.user)},127\.0\.0\.1:{port}\): .* - "
                              r"reconnecting \(attempt #(\d+)\)")
    retries = [m for m in map(reconnecting.search, px.log.lines()) if m]
    want = 1 if o.retried else 0
    assert len(retries) == want, f"{len(retries)} retries logged, expected {want}\n{why()}"
    if fake is not None:
        conns = fake.wait_done(1 + want, timeout=5)
        assert len(conns) == 1 + want, (f"backend saw {len(conns)} connections, "
                                        f"expected {1 + want}\n{why()}")
        for c in conns:
            assert any(e == "fault" for _, e in c.events), (
                f"conn#{c.index} never reached the fault point (wrong state?)\n{why()}")

    # -- timing
    if o.kind == "timeout":
        assert 0.8 <= res.elapsed <= 2.5, f"timed out after {res.elapsed:.2f}s, want ~1s"
    elif o.retried:
        assert 0.9 <= res.elapsed <= 3.0, f"answered after {res.elapsed:.2f}s, want ~1s (1 retry)"
    else:
        assert res.elapsed < 0.9, f"answered after {res.elapsed:.2f}s; no retry means at once"

    # -- nothing raw from the backend in the log or at the client
    for ln in _case_lines(px, case.user):
        assert not fm.CONTROL_CHARS.search(ln), f"control bytes in log line {ln!r}"
    assert "garbage" not in res.reply


@pytest.mark.parametrize("pname", list(fm.PROTOCOLS))
def test_log_lines_are_valid_utf8(matrix, pname):
    """Backend text quoted in log lines (`Invalid banner: <garbage>` ...) must
    not make the log invalid UTF-8.  (The log is decoded with errors=replace,
    so U+FFFD marks an invalid byte sequence.)"""
    case = next(c for c in CASES if c.protocol.name == pname)
    px = matrix.get(case)[0]
    bad = [ln for ln in px.log.lines() if "\ufffd" in ln]
    assert not bad, f"{len(bad)} log lines with invalid UTF-8, e.g. {bad[0]!r}"


def test_matrix_is_complete():
    """Every state of every protocol gets silent + reset, refused once per
    protocol, TLS faults at every TLS point, and the ids are unique."""
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    for name, p in fm.PROTOCOLS.items():
        states = {s.state for s in p.stations}
        for fault in ("silent", "reset"):
            assert states == {c.station.state for c in CASES
                              if c.protocol is p and c.fault.name == fault}
        assert sum(c.fault.name == "refused" for c in CASES if c.protocol is p) == 1
        for s in p.stations:
            if s.kind == "tls":
                got = {c.fault.name for c in CASES if c.station is s}
                assert {"tls-plaintext", "tls-abort", "cert-mismatch"} <= got


# ===================================================== fast fail, TTL, loops
def _ok_script(name: str) -> list:
    """A backend that completes the login (used as a positive control)."""
    if name == "imap":
        return [fb.send_line(fm.IMAP_BANNER), fb.expect_line(rb"^I ID \("),
                fb.expect_line(rb"^L LOGIN "), fb.send_line(*fm.IMAP_ID_REPLY, fm.IMAP_LOGIN_OK),
                fb.stall()]
    if name == "pop3":
        return [fb.send_line(fm.POP3_BANNER_X), fb.expect_line(rb"^XCLIENT "),
                fb.expect_line(rb"^USER "), fb.send_line("+OK Updated", "+OK"),
                fb.expect_line(rb"^PASS "), fb.send_line("+OK Logged in."), fb.stall()]
    if name == "submission":
        return [fb.send_line(fm.SMTP_BANNER), fb.expect_line(rb"^EHLO "),
                fb.send_line(*fm.EHLO_XCLIENT), fb.expect_line(rb"^XCLIENT "),
                fb.expect_line(rb"^EHLO "), fb.send_line(fm.SMTP_BANNER, *fm.EHLO_PLAIN),
                fb.expect_line(rb"^AUTH PLAIN "), fb.send_line("235 2.7.0 Logged in."),
                fb.stall()]
    return [fb.send_line(*fm.SIEVE_GREETING_X), fb.expect_line(rb"^XCLIENT "),
            fb.send_line('OK "Updated"'), fb.expect_line(rb'^AUTHENTICATE "PLAIN" '),
            fb.send_line('OK "Logged in."'), fb.stall()]


TTL_SENT = {"imap": rb'"x-proxy-ttl" "(\d+)"', "pop3": rb"XCLIENT .*\bTTL=(\d+)",
            "submission": rb"XCLIENT .*\bTTL=(\d+)", "managesieve": rb"XCLIENT .*\bTTL=(\d+)"}


class Extras:
    """One portier with all four protocols on fixed ports (for the self-loop),
    proxy_host_immediate_failure_after=1s, proxy_max_reconnects=1."""

    def __init__(self, factory) -> None:
        self.fakes: dict[str, FakeBackend] = {}
        self.ports = {p: free_port() for p in fm.PROTOCOLS}
        users = []
        for p in fm.PROTOCOLS:
            # fast fail: the first connection fails at once, later ones hang.
            ff = FakeBackend(lambda i: [fb.close()] if i == 0 else [fb.stall()], name=f"ff-{p}")
            ttl = FakeBackend([fb.stall()], name=f"ttl-{p}")
            ok = FakeBackend(_ok_script(p), name=f"ttl2-{p}")
            self.fakes.update({f"ff-{p}": ff, f"ttl-{p}": ttl, f"ttl2-{p}": ok})
            users += [User(f"ff-{p}", fm.PASSWORD, proxy(ff.port, proxy_timeout="2500ms")),
                      User(f"ttl-{p}", fm.PASSWORD, proxy(ttl.port, proxy_timeout="3")),
                      User(f"ttl2-{p}", fm.PASSWORD, proxy(ok.port, proxy_timeout="3")),
                      User(f"loop-{p}", fm.PASSWORD, proxy(self.ports[p], proxy_timeout="3"))]
        # A real loop through portier itself: ping -> pong -> ping ... (IMAP).
        imap = self.ports["imap"]
        users += [User("ping", fm.PASSWORD, proxy(imap, destuser="pong", proxy_timeout="3")),
                  User("pong", fm.PASSWORD, proxy(imap, destuser="ping", proxy_timeout="3"))]
        self.px = factory(users, listeners=[Listener(p, "none", port=self.ports[p])
                                            for p in fm.PROTOCOLS],
                          settings={"login": {"proxy_timeout": "1s", "proxy_max_reconnects": 1,
                                              "proxy_host_immediate_failure_after": "1s"}})

    def close(self) -> None:
        for f in self.fakes.values():
            f.close()


@pytest.fixture(scope="module")
def extras(module_portier_factory):
    e = Extras(module_portier_factory)
    yield e
    e.close()


PROTOS = list(fm.PROTOCOLS)


@pytest.mark.parametrize("pname", PROTOS)
def test_fast_fail(extras, pname):
    """§2.3: a host failing for longer than proxy_host_immediate_failure_after
    (1s) while another login already waits on it: the new login fails at once
    with `Host has been down for N secs`, is not retried and opens no
    connection."""
    p, px, fake = fm.PROTOCOLS[pname], extras.px, extras.fakes[f"ff-{pname}"]
    user, port = f"ff-{pname}", extras.ports[pname]
    pi = PROTO_INDEX[pname]
    with ThreadPoolExecutor(1) as ex:
        # A: first attempt fails (conn#0 closes), retry 1 s later hangs (conn#1):
        # the host has been failing for > 1 s and A is waiting on it.
        first = ex.submit(fm.run_login, p, port, user, f"127.0.{10 + pi}.2")
        fake.wait_for_connections(2, timeout=5)
        t0 = time.monotonic()
        res = fm.run_login(p, port, user, f"127.0.{10 + pi}.3")
        fast = time.monotonic() - t0
        a = first.result(timeout=10)
    assert res.error is None, res.error
    assert res.reply == p.reply_retry
    assert res.elapsed < 0.5 and fast < 1.0, f"fast fail took {res.elapsed:.2f}s"
    assert res.usable
    m = px.log.wait_for(rf"{p.service}: Error: proxy\({user},127\.0\.0\.1:{fake.port}\): "
                        r"Host has been down for (\d+) secs \(last success was (\d+)\): "
                        rf".*rip=127\.0\.{10 + pi}\.3\b", timeout=3)
    assert m[1] == "1", m.string
    assert not px.log.find(rf"reconnecting .*rip=127\.0\.{10 + pi}\.3\b"), "fast fail was retried"
    assert len(fake.connections) == 2, "the fast-failed login connected to the backend"
    # A itself ran into its timeout in the hanging second attempt.
    assert a.reply == p.reply_retry, a


@pytest.mark.parametrize("pname", PROTOS)
def test_ttl_loop_refused(extras, pname):
    """§2.3/§11.3: a trusted client's TTL 1 (IMAP ID x-proxy-ttl, XCLIENT TTL=)
    → `TTL reached zero - proxies appear to be looping?`, the configuration
    reply, no backend connection, no retry.  Control: TTL 2 goes through and
    the backend is told TTL 1."""
    p, px = fm.PROTOCOLS[pname], extras.px
    fake, ok = extras.fakes[f"ttl-{pname}"], extras.fakes[f"ttl2-{pname}"]
    pi = PROTO_INDEX[pname]
    res = fm.run_login(p, extras.ports[pname], f"ttl-{pname}", f"127.0.{20 + pi}.2", ttl=1)
    assert res.error is None, res.error
    assert res.reply == p.reply_config
    assert res.elapsed < 0.5 and res.usable
    px.log.wait_for(rf"{p.service}: Error: proxy\(ttl-{pname},127\.0\.0\.1:{fake.port}\): "
                    r"Aborting due to remote server: TTL reached zero - proxies appear to be "
                    r"looping\?", timeout=3)
    assert not px.log.find(rf"proxy\(ttl-{pname},.* reconnecting")
    assert fake.connections == [], "connected to the backend despite TTL 1"

    c = fm.LineClient(extras.ports[pname], f"127.0.{20 + pi}.3")
    try:
        p.greet(c)
        p.xclient_ttl(c, 2)
        reply = p.login(c, f"ttl2-{pname}", fm.PASSWORD)
        assert "Logged in" in reply, reply
    finally:
        c.close()
    m = re.search(TTL_SENT[pname], ok.connections[0].received)
    assert m and m[1] == b"1", ok.connections[0].received


@pytest.mark.parametrize("pname", PROTOS)
def test_proxying_loops_to_itself(extras, pname):
    """§2.2: passdb points at portier's own listener with the same user →
    `Proxying loops to itself` (internal failure: the temporarily-unavailable
    reply, no retry, nothing connected)."""
    p, px = fm.PROTOCOLS[pname], extras.px
    port = extras.ports[pname]
    mark = px.log.mark()
    res = fm.run_login(p, port, f"loop-{pname}", f"127.0.{30 + PROTO_INDEX[pname]}.2")
    assert res.error is None, res.error
    assert res.reply == p.reply_retry
    assert res.elapsed < 0.5 and res.usable
    px.log.wait_for(rf"{p.service}: Error: proxy\(loop-{pname},127\.0\.0\.1:{port}\): "
                    r"Aborting due to internal error: Proxying loops to itself", timeout=3,
                    since=mark)
    assert not px.log.find(rf"proxy\(loop-{pname},.*(reconnecting|Started proxying)")


def test_real_imap_loop_stopped_by_ttl(extras):
    """ping → (destuser pong) → portier → (destuser ping) → portier → ...: no
    hop is a self-loop (the user changes), so the TTL carried in the trusted ID
    must end it: one `TTL reached zero`, the SERVERBUG reply travels back."""
    p, px = fm.PROTOCOLS["imap"], extras.px
    mark = px.log.mark()
    res = fm.run_login(p, extras.ports["imap"], "ping", "127.0.40.2")
    why = lambda: "\n".join(px.log.lines(mark))  # noqa: E731
    assert res.error is None, f"{res.error}\n{why()}"
    assert res.reply == p.reply_config, f"{res.reply}\n{why()}"
    assert res.elapsed < 2.0, why()
    px.log.wait_for(r"TTL reached zero - proxies appear to be looping\?", timeout=3, since=mark)
    # One refusal; the innermost hop's `Disconnected: … last failure: …` line
    # repeats it and may or may not have been written yet.
    assert len(px.log.find(r"Error: proxy\(.*TTL reached zero", since=mark)) == 1, why()
    assert not px.log.find(r"proxy\((ping|pong),.* reconnecting", since=mark), why()
    # default proxy_ttl 5: hops with TTL 5,4,3,2 go on; the 5th (TTL 1) refuses,
    # the 4 others fail on the SERVERBUG coming back (remote-config, no retry)
    hop = (r"imap-login: Error: proxy\((ping|pong),127\.0\.0\.1:\d+\): "
           r"Aborting due to remote server: ")
    px.log.wait_for(hop + r"\[SERVERBUG\] Account is temporarily unavailable\.", count=4,
                    since=mark, timeout=3)
    assert len(px.log.find(hop, since=mark)) == 5, why()
