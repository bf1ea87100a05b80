"""SNI certificates (issue 13): `[[tls.certificate]] names = [...]`.

- The client's SNI picks the certificate: exact name first, then a one-label
  wildcard (`*.example.net` matches a.example.net, not example.net nor
  a.b.example.net), case-insensitive; anything else (or no SNI) gets the
  default [tls] certificate. Seen by Python ssl and `openssl s_client`.
- RSA and ECDSA pairs for the same names: the client's signature algorithms
  choose (`openssl s_client -sigalgs`).
- SIGHUP reloads renewed certificate files for new connections; a session
  opened before keeps working.
- The SNI name is %{local_name} in passdb queries, and travels to a
  Submission backend as XCLIENT DESTNAME.
"""
from __future__ import annotations

import base64
import os
import re
import signal
import socket
import sqlite3
import ssl
import subprocess

import pytest

from tests.support import fake_backend as fb
from tests.support.accounts import BACKEND_USERS
from tests.support.imap_client import RawIMAP
from tests.support.pki import MiniCA, OPENSSL, subject_cn
from tests.support.portier import Listener, User, proxy

P1 = BACKEND_USERS["user1"]
LISTENERS = (Listener("imap", "implicit"), Listener("imap", "starttls"),
             Listener("submission", "implicit"))


@pytest.fixture(scope="module")
def sni_pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("sni")
    ca = MiniCA(d / "ca", "SNI test CA")
    out = {"ca": ca}
    out["mail_rsa"] = ca.issue("mail_rsa", "/CN=mail-rsa", san="DNS:mail.example.org",
                               eku="serverAuth", key="rsa")
    out["mail_ec"] = ca.issue("mail_ec", "/CN=mail-ec", san="DNS:mail.example.org",
                              eku="serverAuth")
    out["wild"] = ca.issue("wild", "/CN=wild-1", san="DNS:*.example.net", eku="serverAuth")
    return out


def cert_toml(names, cert, key) -> str:
    quoted = ", ".join(f'"{n}"' for n in names)
    return f'[[tls.certificate]]\nnames = [{quoted}]\ncert = "{cert}"\nkey = "{key}"\n\n'


def sni_portier(make_portier, pki, users=(), extra=""):
    toml = (cert_toml(["mail.example.org"], *pki["mail_rsa"]) +
            cert_toml(["MAIL.example.org"], *pki["mail_ec"]) +
            cert_toml(["*.Example.net", "imap.example.com"], *pki["wild"]) + extra)
    return make_portier(list(users), listeners=LISTENERS, extra_toml=toml)


def served_cn(port: int, sni: str | None) -> str:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        with ctx.wrap_socket(s, server_hostname=sni) as t:
            return subject_cn(t.getpeercert(binary_form=True))


def s_client(port: int, *args: str) -> str:
    r = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", *args],
                       input=b"", capture_output=True, timeout=10)
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def s_client_cn(port: int, *args: str) -> str:
    out = s_client(port, *args)
    for line in out.splitlines():
        if line.startswith("subject="):
            return line.split("CN", 1)[1].lstrip(" =").split(",")[0].strip()
    raise AssertionError(out)


def test_sni_selects_exact_wildcard_and_default(make_portier, sni_pki):
    px = sni_portier(make_portier, sni_pki)
    port = px.port("imap", "implicit")
    assert served_cn(port, "mail.example.org") in ("mail-rsa", "mail-ec")
    assert served_cn(port, "MAIL.Example.Org") in ("mail-rsa", "mail-ec")
    assert served_cn(port, "imap.example.com") == "wild-1"
    assert served_cn(port, "a.example.net") == "wild-1"
    assert served_cn(port, "A.EXAMPLE.NET") == "wild-1"
    # One label only; the bare domain and unknown names get the default.
    assert served_cn(port, "example.net") == "localhost"
    assert served_cn(port, "a.b.example.net") == "localhost"
    assert served_cn(port, "other.example.org") == "localhost"
    assert served_cn(port, None) == "localhost"
    # openssl s_client -servername, implicit TLS on another protocol too.
    sub = px.port("submission", "implicit")
    assert s_client_cn(sub, "-servername", "x.example.net") == "wild-1"
    assert s_client_cn(sub, "-servername", "nothing.test") == "localhost"


def test_sni_after_starttls(make_portier, sni_pki):
    px = sni_portier(make_portier, sni_pki)
    out = s_client(px.port("imap", "starttls"), "-starttls", "imap", "-servername", "b.example.net")
    assert "CN = wild-1" in out or "CN=wild-1" in out, out


@pytest.mark.parametrize("sigalg,cn", [("rsa_pss_rsae_sha256", "mail-rsa"),
                                       ("ecdsa_secp256r1_sha256", "mail-ec")])
@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_rsa_or_ecdsa_by_signature_algorithms(make_portier, sni_pki, sigalg, cn, version):
    px = sni_portier(make_portier, sni_pki)
    port = px.port("imap", "implicit")
    assert s_client_cn(port, version, "-servername", "mail.example.org", "-sigalgs", sigalg) == cn


def test_sighup_reloads_renewed_certificates(make_portier, sni_pki, tmp_path):
    # The wildcard pair lives in files this test may replace (as certbot does).
    cert, key = tmp_path / "wild.pem", tmp_path / "wild.key"
    cert.write_bytes(sni_pki["wild"][0].read_bytes())
    key.write_bytes(sni_pki["wild"][1].read_bytes())
    pki = dict(sni_pki, wild=(cert, key))
    px = sni_portier(make_portier, pki, users=[User("user1", P1)])
    port = px.port("imap", "implicit")
    assert served_cn(port, "a.example.net") == "wild-1"
    live = RawIMAP(port, read_banner=False)
    ctx = ssl.create_default_context(cafile=str(px.certs.ca))
    live.sock = ctx.wrap_socket(live.sock, server_hostname="localhost")
    live.banner = live.readline()
    # Renew: a new key and certificate, swapped in atomically.
    ca: MiniCA = sni_pki["ca"]
    new_cert, new_key = ca.issue("wild2", "/CN=wild-2", san="DNS:*.example.net", eku="serverAuth")
    os.replace(new_key, key)
    os.replace(new_cert, cert)
    mark = px.log.mark()
    px.signal(signal.SIGHUP)
    px.log.wait_for(r"Config reloaded", since=mark, timeout=10)
    assert served_cn(port, "a.example.net") == "wild-2"
    assert served_cn(port, "mail.example.org") in ("mail-rsa", "mail-ec")
    # The connection opened before the reload is untouched.
    assert live.command("a", "NOOP")[-1].startswith(b"a OK")
    live.close()


def test_bad_certificate_config_is_refused(make_portier, sni_pki, tmp_path):
    px = sni_portier(make_portier, sni_pki)
    conf = px.conf_path
    # Two ECDSA certificates for the same names: ambiguous, refused on reload.
    good = conf.read_text()
    conf.write_text(good + cert_toml(["mail.example.org"], *sni_pki["wild"]))
    mark = px.log.mark()
    px.signal(signal.SIGHUP)
    px.log.wait_for(r"same key type for the same names", since=mark, timeout=10)
    assert served_cn(px.port("imap", "implicit"), "mail.example.org") in ("mail-rsa", "mail-ec")
    conf.write_text(good + cert_toml(["bad name!"], *sni_pki["wild"]))
    mark = px.log.mark()
    px.signal(signal.SIGHUP)
    px.log.wait_for(r"tls\.certificate\.names: 'bad name!' is not a host name", since=mark,
                    timeout=10)
    assert px.alive()


def test_local_name_reaches_passdb_and_backend(make_portier, sni_pki, dovecot, tmp_path):
    """A SQL passdb that answers only for the SNI mail.example.org: a login
    there works, the same login under another name is unknown."""
    db = tmp_path / "sni.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE u (user TEXT, name TEXT, password TEXT, host TEXT, port INT)")
    con.execute("INSERT INTO u VALUES ('user1', 'mail.example.org', ?, '127.0.0.1', ?)",
                ("{PLAIN}" + P1, dovecot.ports["imap"]))
    con.commit()
    con.close()
    extra = (f'[[passdb]]\ndriver = "sqlite"\nconnect = "{db}"\n'
             "query = \"SELECT password, 'Y' AS proxy, host, port FROM u "
             "WHERE user = '%{user}' AND name = '%{local_name}'\"\n\n")
    px = sni_portier(make_portier, sni_pki, extra=extra)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for sni, ok in (("mail.example.org", True), ("a.example.net", False), (None, False)):
        c = RawIMAP(px.port("imap", "implicit"), read_banner=False)
        c.sock = ctx.wrap_socket(c.sock, server_hostname=sni)
        c.banner = c.readline()
        reply = c.command("a", f'LOGIN user1 "{P1}"')[-1]
        assert reply.startswith(b"a OK" if ok else b"a NO"), (sni, reply)
        c.close()


@pytest.mark.parametrize("several", [True, False])
def test_submission_xclient_destname(make_portier, sni_pki, make_fake, several):
    """DESTNAME=<sni> in XCLIENT when the backend advertises it (a fake
    backend: Debian's Dovecot 2.3 does not know DESTNAME)."""
    caps = ("250-fake.test\r\n250-AUTH PLAIN\r\n"
            "250 XCLIENT ADDR PORT PROTO HELO LOGIN SESSION TTL DESTNAME\r\n")
    fake = make_fake([fb.send_line("220 fake.test ESMTP ready"),
                      fb.respond(r"^EHLO ", caps),
                      fb.respond(r"^XCLIENT ", "220 fake.test ready\r\n"),
                      fb.respond(r"^EHLO ", caps),
                      fb.respond(r"^AUTH PLAIN ", "235 2.7.0 ok\r\n"),
                      fb.stall(5)])
    user = [User("user1", P1, proxy(fake.port))]
    # With one certificate (no [[tls.certificate]]) the SNI name is kept too.
    px = (sni_portier(make_portier, sni_pki, users=user) if several
          else make_portier(user, listeners=LISTENERS))
    for sni, want in (("smtp.example.net", rb"DESTNAME=smtp\.example\.net"), (None, None)):
        c = RawIMAP(px.port("submission", "implicit"), read_banner=False)
        c.sock = _nocheck().wrap_socket(c.sock, server_hostname=sni)
        c.banner = c.readline()
        c.send(b"EHLO client.test\r\n")
        while not c.readline().startswith(b"250 "):
            pass
        c.send(b"AUTH PLAIN " + base64.b64encode(f"\0user1\0{P1}".encode()) + b"\r\n")
        assert c.readline().startswith(b"235"), c.transcript
        m = fake.wait_for_received(rb"XCLIENT [^\r]*\r\n")
        if want:
            assert re.search(want, m.group(0)), m.group(0)
        else:
            assert b"DESTNAME" not in m.group(0), m.group(0)
        c.close()


def _nocheck() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
