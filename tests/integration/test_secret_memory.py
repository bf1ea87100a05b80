"""Secrets leave no copy in portier's memory (issue 9).

A client logs in with a unique password (LOGIN, AUTHENTICATE PLAIN with and
without SASL-IR; plain and TLS client legs); once the session is relaying,
the test reads portier's whole address space (/proc/PID/maps + /proc/PID/mem;
the tests run as root) and looks for the password, raw and as the base64 of
the PLAIN message. None may be found. The same scan with wiping disabled
(PORTIER_TEST_NO_WIPE, a test switch) must find it — so the test can fail.

The passwd-file holds only a salted hash of the password (SSHA512), and the
backend is a fake that accepts any password, so no legitimate copy of the
password exists in portier.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets

import pytest

from tests.support import backend_scripts as bs
from tests.support.imap_client import RawIMAP
from tests.support.portier import User, proxy


def ssha512(pw: str) -> str:
    salt = os.urandom(8)
    return base64.b64encode(hashlib.sha512(pw.encode() + salt).digest() + salt).decode()


CHUNK = 64 << 20


def memory_hits(pid: int, needles: list[bytes]) -> dict[bytes, int]:
    """How often each needle occurs in the process's readable memory."""
    hits = {n: 0 for n in needles}
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)", line)
            if not m or not m[3].startswith("r") or m[4] in ("[vvar]", "[vsyscall]"):
                continue
            start, end = int(m[1], 16), int(m[2], 16)
            overlap = max(len(n) for n in needles) - 1
            pos = start
            while pos < end:   # in chunks, overlapping so no needle is cut in two
                size = min(CHUNK, end - pos)
                try:
                    mem.seek(pos)
                    chunk = mem.read(size)
                except (OSError, ValueError, OverflowError):
                    break
                for n in needles:
                    hits[n] += chunk.count(n)
                if pos + size >= end:
                    break
                pos += size - overlap
    return hits


def login(px, how: str, tls: bool, user: str, pw: str) -> RawIMAP:
    c = RawIMAP(px.port("imap", "implicit" if tls else "none"), tls=tls, ca=px.certs.ca)
    plain = base64.b64encode(f"\0{user}\0{pw}".encode()).decode()
    if how == "login":
        reply = c.command("a", f'LOGIN {user} "{pw}"')[-1]
    elif how == "sasl-ir":
        reply = c.command("a", f"AUTHENTICATE PLAIN {plain}")[-1]
    else:
        c.send(b"a AUTHENTICATE PLAIN\r\n")
        assert c.readline().startswith(b"+")
        c.send(plain.encode() + b"\r\n")
        reply = c.read_until_tagged("a")[-1]
    assert reply.startswith(b"a OK"), reply
    return c


def scan_after_login(make_portier, make_fake, how: str, tls: bool, wipe: bool) -> dict:
    pw = "Sc4n-" + secrets.token_hex(12)
    user = "memscan"
    fake = make_fake(bs.imap_login_ok())
    env = {} if wipe else {"PORTIER_TEST_NO_WIPE": "1"}
    px = make_portier([User(user, ssha512(pw), proxy(fake.port), scheme="SSHA512")],
                      settings={"server": {"workers": 1}}, env=env)
    c = login(px, how, tls, user, pw)
    px.log.wait_for(r"proxy\(memscan,.*Started proxying")
    assert c.command("n", "NOOP")[-1].startswith(b"n OK")   # relaying
    fake.wait_for_received(pw.encode())                      # the backend got it
    plain = base64.b64encode(f"\0{user}\0{pw}".encode())
    hits = memory_hits(px.proc.pid, [pw.encode(), plain])
    c.command("z", "LOGOUT")
    c.close()
    return hits


@pytest.mark.parametrize("how", ["login", "sasl-ir", "sasl"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_no_copy_of_the_password_while_relaying(make_portier, make_fake, how, tls):
    hits = scan_after_login(make_portier, make_fake, how, tls, wipe=True)
    assert not any(hits.values()), f"password copies in portier's memory: {hits}"


@pytest.mark.parametrize("how", ["login", "sasl"])
def test_the_scan_finds_it_when_wiping_is_disabled(make_portier, make_fake, how):
    hits = scan_after_login(make_portier, make_fake, how, False, wipe=False)
    assert any(hits.values()), "the scan found nothing even without wiping: it proves nothing"
