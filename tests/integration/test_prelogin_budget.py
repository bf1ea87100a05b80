"""Issue 8 items 2-3 through the real binary.

Item 2 - one byte budget per pre-login command (`login.max_command_size`),
literals included and checked before they are buffered:
  * IMAP: a `LOGIN` made of many `{65536+}` literals ends at the first
    literal with `* BYE Too long command line.` - several such clients at
    once leave portier's RSS (VmRSS from /proc) bounded, and a client logging
    in meanwhile is unaffected;
  * ManageSieve: hundreds of literals in one command end the same way
    (`BYE "Too long command line."`) within a bounded time (the old parser
    re-parsed the whole command on every read: quadratic);
  * POP3 / Submission: a line over the command budget gets the protocol's
    "too long" error.
Item 3 - IMAP ID is parsed as a stream like Dovecot's imap-login: a 32 KiB
pre-login ID with 32 long pairs gets the same replies through portier as
from a real Dovecot, and the connection then logs in.
"""
from __future__ import annotations

import re
import threading
import time

import pytest

from tests.support import abuse
from tests.support.abuse import Mem, Raw, RssSampler, login, open_client
from tests.support.accounts import BACKEND_USERS
from tests.support.portier import Listener, User, proxy

P1 = BACKEND_USERS["user1"]
P2 = BACKEND_USERS["user2"]
PROTOS = abuse.PROTOS
LISTENERS = tuple(Listener(p.name, "none") for p in PROTOS)
MIB = 1 << 20
FLOODERS = 8                 # concurrent hostile clients
FLOOD_BYTES = 8 * MIB        # each offers this much (old code buffered all of it)
REPLY_WITHIN = 5.0           # seconds until the "too long" reply and the close
RSS_GROWTH_MAX = 24 * MIB    # old code: FLOODERS x FLOOD_BYTES = 64 MiB held
LOGIN_LATENCY_MAX = 2.0      # a bystander's whole login, normally ~50 ms
CLOSE_LOG = r"Disconnected: (Too long command line|Input buffer full|Line too long)"


def users_for(dovecot) -> list[User]:
    return [User(f"u-{p.name}", P1, proxy(dovecot.ports[p.dovecot], destuser="user1"))
            for p in PROTOS] + \
           [User(f"v-{p.name}", P2, proxy(dovecot.ports[p.dovecot], destuser="user2"))
            for p in PROTOS]


@pytest.fixture(scope="module")
def px(module_portier_factory, dovecot):
    # Default limits (max_line_length 8192, max_literal_size 65536,
    # max_command_size 16384); loopback is *not* trusted so that IMAP ID is
    # answered as to any client (Dovecot 2.3 answers `OK ID completed.`).
    return module_portier_factory(
        users_for(dovecot), listeners=LISTENERS,
        settings={"login": {"trusted_networks": ["192.0.2.0/24"]},
                  "auth": {"failure_delay": "0s"}})


def _flood_client(p, port: int, head: bytes, chunk: bytes, total: int, out: dict) -> None:
    """Connect, send `head`, then `chunk` repeatedly up to `total` bytes from a
    thread while this thread reads until the server closes."""
    c = open_client(p, port)
    sent = [0]

    def pump() -> None:
        try:
            if not c.send(head):
                return
            while sent[0] < total:
                if not c.send(chunk):
                    return
                sent[0] += len(chunk)
        except OSError:   # the reader closed the socket: the server is done
            return

    t = threading.Thread(target=pump, daemon=True)
    t0 = time.monotonic()
    t.start()
    rest = c.read_until_closed(timeout=REPLY_WITHIN + 5)
    out.update(rest=rest, ended=c.ended, secs=time.monotonic() - t0, sent=sent[0])
    c.close()
    t.join(5)


def _bystander_login(p, port: int) -> float:
    t0 = time.monotonic()
    c = login(p, port, f"u-{p.name}", P1)
    secs = time.monotonic() - t0
    c.send(p.noop)
    c.expect(p.noop_ok, timeout=5)
    c.close()
    return secs


def _exact_reply(px, p, payload: bytes, reply: bytes) -> None:
    """`payload` (< 4 KiB, one write) is over the budget: the reply is the
    protocol's "too long" error, then the server closes.  (The flood below
    cannot check the reply on every connection: when portier closes with the
    flood's bytes still unread, the kernel answers with a reset that may
    overtake the reply.)"""
    assert len(payload) < 4000
    c = open_client(p, px.port(p.name, "none"))
    c.send(payload)
    t0 = time.monotonic()
    rest = c.read_until_closed(timeout=REPLY_WITHIN)
    assert c.ended == "eof", (c.ended, rest)
    assert rest.endswith(reply), rest
    assert time.monotonic() - t0 < REPLY_WITHIN
    c.close()


def _run_flood(px, p, head: bytes, chunk: bytes, reply: bytes) -> None:
    port = px.port(p.name, "none")
    closes_before = \
        sum(1 for ln in px.log.lines() if re.search(CLOSE_LOG, ln))
    mem = Mem(px.proc.pid)
    _bystander_login(p, port)   # warm up
    before = mem.rss()
    results = [dict() for _ in range(FLOODERS)]
    threads = [threading.Thread(target=_flood_client,
                                args=(p, port, head, chunk, FLOOD_BYTES, results[i]))
               for i in range(FLOODERS)]
    with RssSampler(mem) as sampler:
        for t in threads:
            t.start()
        latency = _bystander_login(p, port)   # concurrently with the flood
        for t in threads:
            t.join(REPLY_WITHIN + 15)
    report = (f"{p.name}: RSS before {before / MIB:.1f} MiB, peak {sampler.peak / MIB:.1f} MiB; "
              f"bystander login {latency * 1000:.0f} ms; flooders: "
              + "; ".join(f"{r.get('secs', -1):.2f}s sent {r.get('sent', -1) / MIB:.1f} MiB "
                          f"ended {r.get('ended')} tail {r.get('rest', b'')[-60:]!r}"
                          for r in results))
    print(report)
    for r in results:
        assert r.get("ended") in ("eof", "reset"), report
        assert r["secs"] < REPLY_WITHIN, report
        # The reply, unless a reset overtook it (see _exact_reply).
        assert r["rest"].endswith(reply) or (r["ended"] == "reset" and not r["rest"]), report
    # Every flooder was closed for the limit (the log says so).
    deadline = time.monotonic() + 5
    while True:
        closes = sum(1 for ln in px.log.lines() if re.search(CLOSE_LOG, ln)) - closes_before
        if closes >= FLOODERS or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert closes >= FLOODERS, report
    assert sampler.peak - before < RSS_GROWTH_MAX, report
    assert latency < LOGIN_LATENCY_MAX, report
    assert px.alive()


# ---------------------------------------------------------------- item 2
def test_imap_literal_flood_ends_at_the_budget(px):
    _exact_reply(px, abuse.IMAP, b"a LOGIN {65536+}\r\n" + b"x" * 2000, abuse.IMAP.line_too_long)
    _exact_reply(px, abuse.IMAP, b"a LOGIN {16384}\r\n", abuse.IMAP.line_too_long)
    lit = b"{65536+}\r\n" + b"x" * 65536
    _run_flood(px, abuse.IMAP, b"a LOGIN ", lit, abuse.IMAP.line_too_long)


def test_managesieve_literal_flood_ends_at_the_budget(px):
    _exact_reply(px, abuse.MANAGESIEVE, b'AUTHENTICATE "PLAIN" {60000+}\r\n' + b"x" * 2000,
                 abuse.MANAGESIEVE.line_too_long)
    lit = b" {4096+}\r\n" + b"x" * 4096
    _run_flood(px, abuse.MANAGESIEVE, b'AUTHENTICATE "PLAIN"', lit,
               abuse.MANAGESIEVE.line_too_long)


@pytest.mark.parametrize("p", [abuse.POP3, abuse.SUBMISSION], ids=["pop3", "submission"])
def test_line_over_command_budget(make_portier, dovecot, p):
    """max_command_size below max_line_length caps the line of a line-based
    protocol too: one setting bounds every pre-login command."""
    px2 = make_portier(users_for(dovecot), listeners=LISTENERS,
                       settings={"login": {"max_command_size": 2048},
                                 "auth": {"failure_delay": "0s"}})
    port = px2.port(p.name, "none")
    _exact_reply(px2, p, b"AUTH PLAIN " + b"A" * 3000 + b"\r\n", p.line_too_long)
    # Under the budget still works, and a flood of such lines is bounded too.
    assert _bystander_login(p, port) < LOGIN_LATENCY_MAX
    _run_flood(px2, p, b"AUTH PLAIN ", b"A" * 65536, p.line_too_long)


# ---------------------------------------------------------------- item 3
def _id_command(tag: str) -> bytes:
    pairs = []
    # Dovecot 2.3 ends the connection (`* BYE Input buffer full`) for a
    # value over ~1 KiB, so 32 pairs of 1000-byte values make the 32 KiB.
    for i in range(32):
        key = f"x-long-key-number-{i:02d}-padding"          # 29 bytes (Dovecot: <= 30)
        pairs.append(f'"{key}" "{chr(ord("a") + i % 26) * 1000}"')
    cmd = f"{tag} ID ({' '.join(pairs)})\r\n".encode()
    assert len(cmd) > 32 * 1024 and len(cmd) > 4 * 8192
    return cmd


def _id_replies(port: int, greeting: bytes) -> list[bytes]:
    c = Raw(port)
    c.expect(greeting)
    c.send(_id_command("i1"))
    m = c.expect(rb"(?s)(.*?)(?m:^i1 [^\r\n]*\r\n)", timeout=10)
    lines = m.group(0).split(b"\r\n")[:-1]
    c.close()
    # The `* ID (...)` contents are each server's own (imap_id_send); nothing else differs.
    return [re.sub(rb"^\* ID .*", b"* ID <server fields>", ln) for ln in lines]


def test_long_imap_id_like_dovecot_then_login(px, dovecot):
    want = _id_replies(dovecot.ports["imap"], abuse.IMAP.greeting)
    assert want == [b"* ID <server fields>", b"i1 OK ID completed."], want
    got = _id_replies(px.port("imap", "none"), abuse.IMAP.greeting)
    assert got == want
    # The same connection goes on to log in through portier.
    c = open_client(abuse.IMAP, px.port("imap", "none"))
    c.send(_id_command("i1"))
    c.expect(rb"(?m)^i1 OK ID completed\.\r\n", timeout=10)
    c.send(b'a LOGIN "u-imap" "%s"\r\n' % P1.encode())
    c.expect(rb"(?m)^a OK ", timeout=10)
    c.send(b"n NOOP\r\n")
    c.expect(rb"(?m)^n OK ", timeout=5)
    c.close()
