"""Review of issue 8, passdb items: password schemes (item 7) and passwd-file
re-reads that must not stall logins (item 10)."""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

from tests.support.accounts import BACKEND_USERS
from tests.support.imap_client import RawIMAP
from tests.support.portier import User, proxy

P1 = BACKEND_USERS["user1"]
P2 = BACKEND_USERS["user2"]

# crypt(3) hashes made once with Python's crypt module (libxcrypt):
#   DES, salt "ab", of "user1-Pw-7fQx" (DES uses the first 8 characters)
DES_USER1 = "abhS4JTT9QSfo"
#   SHA512-CRYPT, salt "saltsalt", of "user2-Pw-K3vd"
SHA512_USER2 = ("$6$saltsalt$kYBABkyNni/BAWwMe5HO2Pt0yzxYWBJDBpv0Q5f75DfgDjmkDpyPbsJtN52cvL0iQM"
                ".oue3z/1HE53V4Pv3xJ.")


@dataclass
class Unprefixed(User):
    """A passwd-file line whose stored password has no {SCHEME} prefix, as
    in a file migrated from /etc/shadow or an old Dovecot setup."""
    stored: str = ""

    def line(self) -> str:
        return f"{self.name}:{self.stored}::::::{self.fields}\n"


def login(port: int, user: str, password: str) -> bytes:
    with RawIMAP(port) as c:
        return c.command("a", f'LOGIN "{user}" "{password}"')[-1]


# ------------------------------------------------------------------ item 7
def test_unprefixed_crypt_entries_verify_as_crypt(make_portier, dovecot):
    """Dovecot's passwd-file default scheme is CRYPT: `user1:abp7Q0MpQz0Mw`
    logs in with the real password, and the hash string is no password."""
    port = dovecot.ports["imap"]
    px = make_portier([Unprefixed("user1", P1, proxy(port), stored=DES_USER1),
                       Unprefixed("user2", P2, proxy(port), stored=SHA512_USER2)])
    imap = px.port("imap", "none")
    assert login(imap, "user1", P1).startswith(b"a OK"), "DES entry: real password refused"
    assert login(imap, "user2", P2).startswith(b"a OK"), "$6$ entry: real password refused"
    assert login(imap, "user1", DES_USER1).startswith(b"a NO")
    assert login(imap, "user2", SHA512_USER2).startswith(b"a NO")
    # The hash itself must not have been accepted by portier's passdb (the
    # backend would refuse it anyway): the mismatch is portier's.
    px.log.wait_for(r"passwd-file\(user1,.*\): Password mismatch")


# ----------------------------------------------------------------- item 10
N_USERS = 1_000_000


def big_passwd(path, tag: str, head: str, tail: str) -> None:
    """`head`, N_USERS cleartext users (answered on the worker, no hashing),
    then `tail`; written to a temporary file and renamed into place."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(head)
        chunk = 50_000
        for start in range(0, N_USERS, chunk):
            f.write("".join(f"u{i}:{{PLAIN}}{tag}{i}::::::\n"
                            for i in range(start, start + chunk)))
        f.write(tail)
    os.replace(tmp, path)


def timed_mismatch(port: int, i: int) -> float:
    """One client login of an existing user with a wrong password: the reply
    comes right after the passdb lookup (failure_delay 0)."""
    with RawIMAP(port) as c:
        t = time.monotonic()
        r = c.command("a", f'LOGIN u{i} "wrong-{i}"')[-1]
        dt = time.monotonic() - t
    assert r.startswith(b"a NO"), r
    return dt


def test_passwd_file_reload_does_not_stall_logins(make_portier, dovecot):
    """A changed 1 M-line passwd-file is parsed off the event loop: logins of
    other users made while it is re-read keep their latency (a synchronous
    re-read made every lookup wait for the whole parse, seconds here)."""
    port = dovecot.ports["imap"]
    user1 = User("user1", P1, proxy(port)).line()
    marker = User("marker", "marker-Pw-35", proxy(port, destuser="user2", pass_=P2))
    probe = User("probe", "probe-Pw-93", proxy(port, destuser="user2", pass_=P2))
    px = make_portier([User("user1", P1, proxy(port))])
    px.users += [marker, probe]  # their passwords must not reach the log either
    # Start from the big file without the probe; `marker` (at the end) logs
    # in once the whole file is in use.
    t = time.monotonic()
    big_passwd(px.passwd_path, "a", user1, marker.line())
    gen_s = time.monotonic() - t
    imap = px.port("imap", "none")
    # No event tells that a re-read finished: poll with a deadline and backoff.
    # Bounds leave room for an ASan build within the 60 s per-test deadline.
    deadline = time.monotonic() + 25
    delay = 0.02
    while not login(imap, "marker", "marker-Pw-35").startswith(b"a OK"):
        assert time.monotonic() < deadline, "the 1 M-line file was never loaded"
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
    baseline = [timed_mismatch(imap, i) for i in range(20)]

    # Replace it: the same users with other passwords, and at the end a new
    # user whose successful login shows that the new table is in use.
    big_passwd(px.passwd_path, "b", user1, probe.line())
    t0 = time.monotonic()
    during: list[float] = []
    reloaded_after = None
    for n in range(100_000):
        if time.monotonic() - t0 > 25:
            break
        during.append(timed_mismatch(imap, n % 1000))
        if n % 3 == 2 and login(imap, "probe", "probe-Pw-93").startswith(b"a OK"):
            reloaded_after = time.monotonic() - t0
            break
    assert reloaded_after is not None, (f"the re-read never completed ({len(during)} logins); "
                                        f"log tail:\n" + "\n".join(px.log.lines()[-15:]))
    during.sort()
    p95 = during[min(len(during) - 1, int(len(during) * 0.95))]
    report = (f"file written in {gen_s:.2f}s; baseline median "
              f"{statistics.median(baseline) * 1000:.1f} ms; re-read visible after "
              f"{reloaded_after:.2f}s; {len(during)} logins meanwhile, median "
              f"{statistics.median(during) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
              f"max {during[-1] * 1000:.1f} ms")
    print(report)
    assert len(during) >= 3, report
    assert p95 < 0.2, report
    # The marker is gone with the old file.
    assert login(imap, "marker", "marker-Pw-35").startswith(b"a NO")
