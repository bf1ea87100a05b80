"""The kTLS switch: probed at start, logged, and a silent fallback to
userspace TLS (this project's kernels have no TLS ULP). TLS logins on both
legs keep working either way."""
from __future__ import annotations

from tests.support.accounts import BACKEND_USERS
from tests.support.imap_client import imap_connect
from tests.support.portier import User, proxy

P1 = BACKEND_USERS["user1"]


def kernel_has_tls_ulp() -> bool:
    try:
        with open("/proc/sys/net/ipv4/tcp_available_ulp") as f:
            return "tls" in f.read().split()
    except OSError:
        return False


def test_ktls_switch_probes_and_falls_back(make_portier, dovecot):
    px = make_portier([User("ssl-leg", P1, proxy(dovecot.ports["imaps"], destuser="user1",
                                                 ssl="yes"))],
                      settings={"tls": {"ktls": True}})
    expected = ("kTLS: kernel TLS available" if kernel_has_tls_ulp()
                else "kTLS: the kernel has no TLS ULP; using userspace TLS")
    px.log.wait_for(expected)
    c = imap_connect(px.port("imap", "implicit"), "implicit", ca=px.certs.ca)
    typ, data = c.login("ssl-leg", P1)
    assert typ == "OK", data
    typ, data = c.select("INBOX")
    assert typ == "OK", data
    c.logout()
    px.log.wait_for(r"proxy\(ssl-leg,.*Disconnected by")
