"""Client certificates and SASL EXTERNAL (issue 13).

[tls] verify_client = optional | required, client_ca, crl,
cert_username_field. EXTERNAL is offered only after a verified certificate
that names a user; the passdb looks the user up without a password (%{cert}
= valid) and the backend login goes through the real Dovecot backend as the
master user (`master`, `pass` from the passdb). Certificates are minted by
the test: valid, expired, from another CA, revoked through the CRL.
"""
from __future__ import annotations

import base64
import signal
import sqlite3
import ssl
import subprocess

import pytest

from tests.support.accounts import BACKEND_USERS, MASTER_USERS
from tests.support.imap_client import RawIMAP
from tests.support.pki import MiniCA, OPENSSL
from tests.support.portier import Listener, User, proxy

P1 = BACKEND_USERS["user1"]
LISTENERS = (Listener("imap", "implicit"), Listener("imap", "starttls"),
             Listener("pop3", "implicit"), Listener("submission", "implicit"),
             Listener("managesieve", "starttls"))


@pytest.fixture(scope="module")
def client_pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("clientpki")
    ca = MiniCA(d / "ca", "client CA")
    other = MiniCA(d / "other", "other CA")
    out = {"ca": ca}
    out["user1"] = ca.issue("user1", "/CN=user1/emailAddress=user1@example.org",
                            san="email:alias1@example.org")
    out["user2"] = ca.issue("user2", "/CN=user2")
    out["nopass"] = ca.issue("nopass", "/CN=nopass")
    out["expired"] = ca.issue("expired", "/CN=user1", start="20200101000000Z",
                              end="20210101000000Z")
    out["revoked"] = ca.issue("revoked", "/CN=user1")
    out["wrongca"] = other.issue("wrongca", "/CN=user1")
    ca.revoke(out["revoked"][0])
    out["crl"] = ca.write_crl(d / "crl.pem")
    return out


def users(dovecot):
    mu = dict(master="master", pass_=MASTER_USERS["master"])
    return [
        User("user1", P1, proxy(dovecot.ports["imap"], **mu)),
        User("user2", "user2-not-used", proxy(dovecot.ports["imap"], **mu)),
        User("nopass", None, proxy(dovecot.ports["imap"], destuser="user1")),
    ]


def portier_with(make_portier, dovecot, pki, verify="optional", field=None, extra="",
                 user_list=None, listeners=LISTENERS, login=None):
    tls = {"verify_client": verify, "client_ca": str(pki["ca"].cert), "crl": str(pki["crl"])}
    if field:
        tls["cert_username_field"] = field
    return make_portier(user_list if user_list is not None else users(dovecot),
                        listeners=listeners, extra_toml=extra,
                        settings={"tls": tls, "login": login or {},
                                  "auth": {"mechanisms": ["PLAIN", "LOGIN", "EXTERNAL"]}})


def client_ctx(px, pki, which: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(px.certs.ca))
    if which:
        cert, key = pki[which]
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def connect(px, pki, which, proto="imap", tls="implicit") -> RawIMAP:
    c = RawIMAP(px.port(proto, tls), read_banner=False)
    c.sock = client_ctx(px, pki, which).wrap_socket(c.sock, server_hostname="localhost")
    c.banner = c.readline()
    return c


def caps(c: RawIMAP) -> bytes:
    return b" ".join(c.command("c", "CAPABILITY"))


def test_valid_cert_offers_external_and_logs_in_through_dovecot(make_portier, dovecot,
                                                                  client_pki):
    px = portier_with(make_portier, dovecot, client_pki)
    mark, dmark = px.log.mark(), dovecot.log_mark()
    with connect(px, client_pki, "user1") as c:
        assert b"AUTH=EXTERNAL" in caps(c)
        assert c.command("a", "AUTHENTICATE EXTERNAL =")[-1].startswith(b"a OK")
        assert c.command("b", "SELECT INBOX")[-1].startswith(b"b OK")
    px.log.wait_for(r"proxy\(user1,.*Started proxying.*\(master master\).*method=EXTERNAL", since=mark)
    dovecot.wait_for_log(r"Master user logging in as user1", since=dmark)


def test_external_without_initial_response_and_authzid(make_portier, dovecot, client_pki):
    px = portier_with(make_portier, dovecot, client_pki)
    with connect(px, client_pki, "user1") as c:
        c.send(b"a AUTHENTICATE EXTERNAL\r\n")
        assert c.readline().startswith(b"+")
        c.send(b"\r\n")   # empty response: no authorization identity
        assert c.read_until_tagged("a")[-1].startswith(b"a OK")
    with connect(px, client_pki, "user1") as c:
        ir = base64.b64encode(b"user1").decode()
        assert c.command("a", f"AUTHENTICATE EXTERNAL {ir}")[-1].startswith(b"a OK")
    with connect(px, client_pki, "user1") as c:
        ir = base64.b64encode(b"user2").decode()   # someone else: refused
        assert c.command("a", f"AUTHENTICATE EXTERNAL {ir}")[-1].startswith(b"a NO")
        # PLAIN still works on the same connection.
        ir = base64.b64encode(f"\0user1\0{P1}".encode()).decode()
        assert c.command("b", f"AUTHENTICATE PLAIN {ir}")[-1].startswith(b"b OK")


@pytest.mark.parametrize("which", [None, "expired", "wrongca", "revoked"])
def test_optional_without_valid_cert_hides_external(make_portier, dovecot, client_pki, which):
    px = portier_with(make_portier, dovecot, client_pki)
    with connect(px, client_pki, which) as c:
        assert b"AUTH=EXTERNAL" not in caps(c)
        assert c.command("a", "AUTHENTICATE EXTERNAL =")[-1].startswith(b"a NO")
        assert c.command("b", f'LOGIN user1 "{P1}"')[-1].startswith(b"b OK")


@pytest.mark.parametrize("which,why", [
    (None, r"peer did not return a certificate"),
    ("expired", r"client certificate verification failed: certificate has expired"),
    ("wrongca", r"client certificate verification failed: unable to get local issuer certificate"),
    ("revoked", r"client certificate verification failed: certificate revoked")])
def test_required_refuses_handshake_and_logs(make_portier, dovecot, client_pki, which, why):
    px = portier_with(make_portier, dovecot, client_pki, verify="required")
    mark = px.log.mark()
    with pytest.raises((ssl.SSLError, ConnectionError, OSError, EOFError)):
        c = connect(px, client_pki, which)
        c.command("a", "CAPABILITY")   # TLS 1.3: the alert may come with the first read
    px.log.wait_for(r"imap-login: .*Disconnected.*TLS handshaking: .*" + why, since=mark,
                    timeout=10)
    with connect(px, client_pki, "user1") as c:
        assert c.command("a", "AUTHENTICATE EXTERNAL =")[-1].startswith(b"a OK")


def test_other_protocols(make_portier, dovecot, client_pki, tmp_path):
    """POP3 AUTH, SMTP AUTH and ManageSieve AUTHENTICATE with EXTERNAL. One
    SQL passdb row per protocol, only for a valid certificate (%{cert})."""
    db = tmp_path / "ext.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE u (user TEXT, proto TEXT, port INT)")
    for proto, key in (("pop3", "pop3"), ("submission", "submission"), ("sieve", "sieve"),
                       ("imap", "imap")):
        con.execute("INSERT INTO u VALUES ('user1', ?, ?)", (proto, dovecot.ports[key]))
    con.commit()
    con.close()
    extra = (f'[[passdb]]\ndriver = "sqlite"\nconnect = "{db}"\n'
             "query = \"SELECT NULL AS password, 'Y' AS proxy, '127.0.0.1' AS host, port, "
             f"'master' AS master, '{MASTER_USERS['master']}' AS pass FROM u "
             "WHERE user = '%{user}' AND proto = '%{protocol}' AND '%{cert}' = 'valid'\"\n")
    px = portier_with(make_portier, dovecot, client_pki, user_list=[], extra=extra)
    with connect(px, client_pki, "user1", "pop3") as c:
        c.send(b"CAPA\r\n")
        lines = [c.readline()]
        while lines[-1] != b".":
            lines.append(c.readline())
        assert any(b"SASL" in l and b"EXTERNAL" in l for l in lines), lines
        c.send(b"AUTH EXTERNAL =\r\n")
        assert c.readline().startswith(b"+OK"), c.transcript
        c.send(b"STAT\r\n")
        assert c.readline().startswith(b"+OK")
    with connect(px, client_pki, "user1", "submission") as c:
        c.send(b"EHLO client.test\r\n")
        lines = [c.readline()]
        while not lines[-1].startswith(b"250 "):
            lines.append(c.readline())
        assert any(b"AUTH" in l and b"EXTERNAL" in l for l in lines), lines
        c.send(b"AUTH EXTERNAL =\r\n")
        assert c.readline().startswith(b"235"), c.transcript
    c = RawIMAP(px.port("managesieve", "starttls"), read_banner=False)
    while not c.readline().startswith(b"OK"):
        pass
    c.send(b"STARTTLS\r\n")
    assert c.readline().startswith(b"OK")
    c.sock = client_ctx(px, client_pki, "user1").wrap_socket(c.sock, server_hostname="localhost")
    lines = [c.readline()]
    while not lines[-1].startswith(b"OK"):
        lines.append(c.readline())
    assert any(b'"SASL"' in l and b"EXTERNAL" in l for l in lines), lines
    c.send(b'AUTHENTICATE "EXTERNAL" ""\r\n')
    assert c.readline().startswith(b"OK"), c.transcript
    c.close()


def test_username_fields(make_portier, dovecot, client_pki):
    """emailAddress / subjectAltName:email pick other user names."""
    mu = dict(master="master", pass_=MASTER_USERS["master"])
    for field, name in (("emailAddress", "user1@example.org"),
                        ("subjectAltName:email", "alias1@example.org")):
        px = portier_with(make_portier, dovecot, client_pki, field=field,
                          user_list=[User(name, None, proxy(dovecot.ports["imap"],
                                                            destuser="user1", **mu))])
        mark = px.log.mark()
        with connect(px, client_pki, "user1") as c:
            assert c.command("a", "AUTHENTICATE EXTERNAL =")[-1].startswith(b"a OK")
        px.log.wait_for(rf"proxy\({name},.*Started proxying", since=mark)
        px.stop()


def test_external_without_pass_is_a_clear_config_error(make_portier, dovecot, client_pki):
    px = portier_with(make_portier, dovecot, client_pki)
    mark = px.log.mark()
    with connect(px, client_pki, "nopass") as c:
        assert c.command("a", "AUTHENTICATE EXTERNAL =")[-1].startswith(b"a NO")
    px.log.wait_for(r"EXTERNAL login needs a pass field", since=mark)


def test_s_client_with_certificate(make_portier, dovecot, client_pki):
    """openssl s_client -cert: a real TLS client presenting the certificate."""
    px = portier_with(make_portier, dovecot, client_pki, verify="required")
    cert, key = client_pki["user1"]
    r = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{px.port('imap', 'implicit')}",
                        "-cert", str(cert), "-key", str(key), "-CAfile", str(px.certs.ca),
                        "-quiet", "-verify_return_error"],
                       input=b"a CAPABILITY\r\nb AUTHENTICATE EXTERNAL =\r\nc LOGOUT\r\n",
                       capture_output=True, timeout=15)
    out = r.stdout.decode(errors="replace")
    assert "AUTH=EXTERNAL" in out and "b OK" in out, out + r.stderr.decode(errors="replace")


def test_external_through_haproxy_verified_cn(make_portier, dovecot, client_pki):
    """PROXY v2 with an SSL TLV (client TLS + certificate, verify = 0) and
    SSL_CN: the CN is the EXTERNAL user, as Dovecot does it; with verify != 0
    EXTERNAL is not offered."""
    import socket
    import struct
    sig = b"\r\n\r\n\x00\r\nQUIT\n"

    def header(verify: int, cn: bytes) -> bytes:
        sub = bytes([0x22]) + struct.pack(">H", len(cn)) + cn
        ssl_tlv_body = bytes([0x01 | 0x02]) + struct.pack(">I", verify) + sub
        tlv = bytes([0x20]) + struct.pack(">H", len(ssl_tlv_body)) + ssl_tlv_body
        addrs = socket.inet_aton("127.0.0.9") + socket.inet_aton("127.0.0.1") + struct.pack(">HH", 40000, 143)
        body = addrs + tlv
        return sig + bytes([0x21, 0x11]) + struct.pack(">H", len(body)) + body

    px = portier_with(make_portier, dovecot, client_pki,
                      listeners=(Listener("imap", "none", haproxy=True),),
                      login={"haproxy_trusted_networks": ["127.0.0.1/32"]})
    for verify, ok in ((0, True), (1, False)):
        c = RawIMAP(px.port("imap", "none", haproxy=True), read_banner=False)
        c.send(header(verify, b"user1"))
        c.banner = c.readline()
        assert (b"AUTH=EXTERNAL" in caps(c)) == ok
        reply = c.command("a", "AUTHENTICATE EXTERNAL =")[-1]
        assert reply.startswith(b"a OK" if ok else b"a NO"), reply
        c.close()


def test_per_listener_client_certificates(make_portier, dovecot, client_pki, tmp_path):
    """verify_client on a [[listener]] overrides [tls]: the implicit-TLS
    listener requires a certificate while the STARTTLS one (the [tls] value,
    none) never asks for one. SNI still picks the named certificate on the
    listener with its own settings, and SIGHUP applies a changed listener
    setting to new connections."""
    ca = client_pki["ca"]
    sni_cert, sni_key = ca.issue("sni", "/CN=sni-mail", san="DNS:mail.example.org",
                                 eku="serverAuth")
    sni = (f'[[tls.certificate]]\nnames = ["mail.example.org"]\ncert = "{sni_cert}"\n'
           f'key = "{sni_key}"\n\n')
    listeners = (Listener("imap", "implicit", options=(("verify_client", "required"),)),
                 Listener("imap", "starttls"))
    px = portier_with(make_portier, dovecot, client_pki, verify="none", listeners=listeners,
                      extra=sni)
    mark = px.log.mark()
    with pytest.raises((ssl.SSLError, ConnectionError, OSError, EOFError)):
        c = connect(px, client_pki, None)
        c.command("a", "CAPABILITY")   # TLS 1.3: the alert may come with the first read
    px.log.wait_for(r"Disconnected.*TLS handshaking: .*peer did not return a certificate",
                    since=mark, timeout=10)
    with connect(px, client_pki, "user1") as c:
        assert c.command("a", "AUTHENTICATE EXTERNAL =")[-1].startswith(b"a OK")
    # SNI on the listener with its own verification: the named certificate.
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    ctx.load_cert_chain(*(str(p) for p in client_pki["user1"]))
    c = RawIMAP(px.port("imap", "implicit"), read_banner=False)
    c.sock = ctx.wrap_socket(c.sock, server_hostname="mail.example.org")
    assert c.sock.getpeercert()["subject"][-1][0] == ("commonName", "sni-mail")
    c.banner = c.readline()
    assert b"AUTH=EXTERNAL" in caps(c)
    c.close()
    # STARTTLS listener: no certificate asked for, so none is verified.
    c = RawIMAP(px.port("imap", "starttls"))
    c.command("s", "STARTTLS")
    c.sock = client_ctx(px, client_pki, "user1").wrap_socket(c.sock, server_hostname="localhost")
    assert b"AUTH=EXTERNAL" not in caps(c)
    assert c.command("b", f'LOGIN user1 "{P1}"')[-1].startswith(b"b OK")
    c.close()
    # Reload: the implicit listener becomes optional.
    px.listeners_cfg = [Listener("imap", "implicit", options=(("verify_client", "optional"),)),
                        Listener("imap", "starttls")]
    px.write_config()
    mark = px.log.mark()
    px.signal(signal.SIGHUP)
    px.log.wait_for(r"Config reloaded", since=mark, timeout=10)
    with connect(px, client_pki, None) as c:
        assert b"AUTH=EXTERNAL" not in caps(c)
        assert c.command("b", f'LOGIN user1 "{P1}"')[-1].startswith(b"b OK")
