#!/usr/bin/env python3
"""Regenerates the seed corpora in fuzz/corpus/ from the reference transcripts
(../shared/reference/transcripts, when present) and the hand-written seeds
below. Deterministic; file names are content hashes (libFuzzer style).

    fuzz/tools/make_corpus.py [--transcripts DIR]

Transcript format (tools/pcap2transcript.py): `+t sN [X->Y] text` opens a
segment, indented lines continue it; s0 is the client stream, others are
backend streams. Binary TLS segments are skipped.
"""
import argparse
import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fuzz" / "corpus"
DEFAULT_TRANSCRIPTS = ROOT.parent / "shared" / "reference" / "transcripts"
SEG = re.compile(r"^\+[\d.]+ s(\d+)\s+\[(\w)->(\w)\] ?(.*)$")
PROTO = {"imap": "imap", "pop3": "pop3", "submission": "submission", "sieve": "managesieve"}


def parse(path: Path):
    """-> (protocol, client lines, backend lines) or None."""
    text = path.read_text("utf-8", "replace").splitlines()
    m = re.search(r"\((imap|pop3|submission|sieve), user", text[0]) if text else None
    if not m:
        return None
    client, backend, cur = [], [], None
    for line in text:
        s = SEG.match(line)
        if s:
            stream, src = int(s[1]), s[2]
            cur = client if (stream == 0 and src == "C") else backend if src == "B" else None
            payload = s[4]
        elif line.startswith("      ") and cur is not None:
            payload = line.strip()
        else:
            cur = None if not line.startswith("      ") else cur
            continue
        if cur is not None and not re.fullmatch(r"<\d+ bytes binary.*>", payload):
            cur.append(payload)
    return PROTO[m[1]], client, backend


def write(target: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def crlf(lines) -> bytes:
    return b"".join(l.encode() + b"\r\n" for l in lines)


# Frontend header: byte0 = ClientInfo/chunking, byte1 = engine decisions
# (fuzz/frontend_driver.hpp). A few useful combinations per transcript.
FRONT_HEADERS = [bytes([0x10, 0x06]), bytes([0xE2, 0x00]), bytes([0x2B, 0x45]), bytes([0x03, 0x87])]
# Backend header: byte0 = params, byte1 = client/credentials (backend_driver.hpp).
BACK_HEADERS = [bytes([0x00, 0x00]), bytes([0x03, 0x21]), bytes([0x88, 0x14]), bytes([0x50, 0x62])]

EXTRA_CLIENT = {
    "imap": [
        "a CAPABILITY\r\nb ID (\"name\" \"x\" \"x-originating-ip\" \"1.2.3.4\")\r\nc LOGIN {5}\r\nuser1 {4+}\r\npass\r\n",
        "a AUTHENTICATE PLAIN\r\nAHVzZXIxAHBhc3M=\r\n",
        "a AUTHENTICATE PLAIN AHVzZXIxAHBhc3M=\r\nb NOOP\r\n",
        "a AUTHENTICATE LOGIN\r\ndXNlcjE=\r\ncGFzcw==\r\n",
        "a AUTHENTICATE PLAIN\r\n*\r\nb STARTTLS\r\nc LOGOUT\r\n",
        "a STARTTLS\r\nb LOGIN user1 pass\r\n",
        "a LOGIN \"us\\\"er\" \"p\\\\ass\"\r\nSELECT INBOX\r\n",
        "a LOGIN {99999999}\r\n",
        "a ENABLE IDLE\r\nb NOOP (1 (2 (3)))\r\n\r\nx\x00y\r\nc LOGOUT\r\n",
    ],
    "pop3": [
        "CAPA\r\nUSER user1\r\nPASS pass\r\nSTAT\r\n",
        "AUTH PLAIN AHVzZXIxAHBhc3M=\r\n",
        "AUTH PLAIN\r\nAHVzZXIxAHBhc3M=\r\n",
        "AUTH LOGIN\r\ndXNlcjE=\r\ncGFzcw==\r\n",
        "AUTH\r\nSTLS\r\nUSER a\r\nQUIT\r\n",
        "XCLIENT ADDR=192.0.2.9 PORT=4711 SESSION=abc TTL=3\r\nUSER u\r\nPASS p\r\n",
        "APOP user1 c4c9334bac560ecc979e58001b3e22fb\r\nNOOP\r\n",
    ],
    "submission": [
        "EHLO client.example.org\r\nAUTH PLAIN AHVzZXIxAHBhc3M=\r\nMAIL FROM:<a@b>\r\n",
        "EHLO c\r\nAUTH LOGIN\r\ndXNlcjE=\r\ncGFzcw==\r\n",
        "EHLO c\r\nAUTH PLAIN\r\n=\r\nAUTH PLAIN\r\n*\r\n",
        "HELO c\r\nSTARTTLS\r\nEHLO c\r\nAUTH PLAIN AHVzZXIxAHBhc3M=\r\n",
        "EHLO c\r\nXCLIENT ADDR=192.0.2.9 PORT=1 HELO=x+20y LOGIN=u PROTO=ESMTP TTL=2\r\nEHLO c\r\n",
        "NOOP\r\nRSET\r\nHELP\r\nQUIT\r\n",
    ],
    "managesieve": [
        "CAPABILITY\r\nAUTHENTICATE \"PLAIN\" \"AHVzZXIxAHBhc3M=\"\r\n",
        "AUTHENTICATE \"PLAIN\" {16+}\r\nAHVzZXIxAHBhc3M=\r\n",
        "AUTHENTICATE \"LOGIN\"\r\n\"dXNlcjE=\"\r\n{8+}\r\ncGFzcw==\r\n",
        "AUTHENTICATE \"PLAIN\"\r\n\"*\"\r\nNOOP \"tag\"\r\nLOGOUT\r\n",
        "STARTTLS\r\nAUTHENTICATE \"PLAIN\" \"AHVzZXIxAHBhc3M=\"\r\n",
        "XCLIENT ADDR=192.0.2.9 PORT=1 SESSION=s TTL=2\r\nCAPABILITY\r\n",
    ],
}

EXTRA_BACKEND = {
    "imap": [
        ["* OK [CAPABILITY IMAP4rev1 LOGINDISABLED STARTTLS] ready", "S OK Begin TLS",
         "* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR", "C OK done", "L NO [AUTHENTICATIONFAILED] bad"],
        ["* OK ready", "* ID NIL", "I OK", "+ ", "L OK [CAPABILITY IMAP4rev1] Logged in"],
        ["* OK ready", "L NO [UNAVAILABLE] Temporary", "* BYE bye"],
        ["* BYE Too many connections"],
        ["* PREAUTH already"],
        ["* OK [CAPABILITY IMAP4rev1 SASL-IR] x", "* CAPABILITY {5}", "IMAP4", "L BAD [SERVERBUG] x"],
    ],
    "pop3": [
        ["+OK ready", "+OK Begin TLS", "+OK", "-ERR [AUTH] Authentication failed."],
        ["+OK [XCLIENT] ready", "-ERR XCLIENT denied", "+OK", "+OK"],
        ["+OK ready", "+ ", "+ ", "-ERR [SYS/TEMP] later"],
        ["-ERR [IN-USE] busy"],
    ],
    "submission": [
        ["220 mx ESMTP", "250-mx", "250-STARTTLS", "250 AUTH PLAIN", "220 2.0.0 Ready",
         "250-mx", "250 AUTH PLAIN LOGIN", "535 5.7.8 Authentication failed"],
        ["220-mx", "220 ESMTP", "250-mx", "250 XCLIENT ADDR PORT LOGIN HELO PROTO TTL SESSION",
         "220 mx", "250 mx", "235 2.7.0 ok"],
        ["220 mx", "250 mx", "454 4.7.0 Temporary failure", "421 4.3.2 bye"],
        ["554 5.3.2 no service"],
        ["220 mx", "250-mx", "250 AUTH LOGIN", "334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "235 ok"],
    ],
    "managesieve": [
        ["\"IMPLEMENTATION\" \"x\"", "\"STARTTLS\"", "OK", "OK \"Begin TLS\"", "\"SASL\" \"PLAIN\"",
         "OK", "NO (AUTH-TOO-WEAK) \"weak\""],
        ["\"SASL\" {5}", "PLAIN", "\"XCLIENT\"", "OK", "OK", "{0}", "", "OK (SASL \"x\") \"done\""],
        ["\"SASL\" \"LOGIN\"", "OK", "\"VXNlcm5hbWU6\"", "\"UGFzc3dvcmQ6\"", "NO (TRYLATER) \"later\""],
        ["BYE (REFERRAL \"sieve://other\") \"go away\""],
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--transcripts", type=Path, default=DEFAULT_TRANSCRIPTS)
    args = ap.parse_args()
    clients = {p: [] for p in PROTO.values()}
    backends = {p: [] for p in PROTO.values()}
    if args.transcripts.is_dir():
        for path in sorted(args.transcripts.glob("*.txt")):
            r = parse(path)
            if r:
                proto, c, b = r
                if c:
                    clients[proto].append(crlf(c))
                if b:
                    backends[proto].append(crlf(b))
    for proto in PROTO.values():
        clients[proto] += [s.encode("latin-1") for s in EXTRA_CLIENT[proto]]
        backends[proto] += [crlf(lines) for lines in EXTRA_BACKEND[proto]]
        for i, c in enumerate(clients[proto]):
            for h in FRONT_HEADERS[: 4 if i % 2 else 2]:
                write(f"{proto}_frontend", h + c)
        for i, b in enumerate(backends[proto]):
            for h in BACK_HEADERS[: 4 if i % 2 else 2]:
                write(f"{proto}_backend", h + b)
    for c in clients["imap"]:
        write("imap_parser", b"\x00" + c)
        write("imap_parser", b"\x01" + c)

    # FuzzedDataProvider layout: strings from the front ("\\" + other byte ends
    # one), integral flags from the back.
    for d in [b"\x00user1\x00pass\\x\x02", b"user1\x00user1\x00pass\\x\x02", b"\\x*\\x\x00",
              b"dXNlcjE=\\xuser1\\xpass\\x\x01", b"user1\\xpass\\x\x03", b"\x00\x00\\x\x02"]:
        write("sasl_server", d)
    for d in [b"\\x\\xuser1\\xpass\\x\\x\\x\x00\x01", b"master\\xuser1\\xpass\\x\\x\x00\x01",
              b"\\xuser1\\xpass\\xUsername:\\xPassword:\\xmore\\x\x01\x01",
              b"CRAM-MD5\\x\\xu\\xp\\x\x00"]:
        write("sasl_client", d)
    for d in [b"", b"=", b"YQ==", b"YR==", b"YWI=", b"YWJj", b"AHVzZXIxAHBhc3M=", b"dXNlcjE",
              b"dXNl cjE=", b"====", b"A===", b"////++++", b"-_-_"]:
        write("base64", d)
    passwd = (ROOT / "tests" / "unit" / "data" / "users.passwd")
    if passwd.exists():
        write("passwd_file", passwd.read_bytes())
    for d in [b"user1:{PLAIN}pass::::::proxy host=127.0.0.1 port=143\n",
              b"# comment\n\nu2:{SHA512-CRYPT}$6$salt$hash:1000:1000:gecos:/home:/bin/sh:proxy nopassword\n",
              b"u3::::::: nologin reason=Moved\\ away\nu3:{PLAIN}x\n:nouser\nbad line\n",
              b"u4:{SSHA256}AAAA:::::: proxy host=h hostip=192.0.2.1 starttls=any-cert forward_x=1\r\n",
              b"u5:{BLF-CRYPT}$2y$05$abc::::::proxy ssl=yes port=993 master=adm pass=secret destuser=u6\n"]:
        write("passwd_file", d)
    for d in [b"user1\nproxy host=127.0.0.1 port=143",
              b"user1\nproxy host=backend.lab hostip=192.0.2.1 port=1993 ssl=any-cert pass=S3cretpw",
              b"u\nproxy host=::1 starttls=yes destuser=u2 master=m proxy_mech=login proxy_timeout=5s",
              b"u\nproxy=n nologin reason=Moved",
              b"u\nproxy host=127.0.0.1 port=70000 pass=abcdefgh",
              b"u\nproxy host=127.0.0.1 hostip=10.0.0.1 source_ip=bad proxy_timeout=x",
              b"u\nproxy host=127.0.0.1 proxy_noauth proxy_nopipelining proxy_not_trusted forward_a=b nopassword"]:
        write("proxy_fields", d)
    for p in [ROOT / "tests" / "unit" / "data" / "portier.toml", ROOT / "examples" / "portier.toml"]:
        if p.exists():
            write("config", p.read_bytes())
    for d in [b'[server]\nhostname = "proxy.example.org"\nworkers = 2\n\n[[listener]]\nprotocol = "imap"\n'
              b'port = 143\ntls = "starttls"\n\n[tls]\ncert = "c.pem"\nkey = "k.pem"\n\n[[passdb]]\n'
              b'driver = "passwd-file"\npath = "users"\n',
              b'[login]\nproxy_timeout = "1s"\ntrusted_networks = ["127.0.0.0/8", "::1/128"]\n'
              b'max_line_length = 100\n[auth]\nmechanisms = ["PLAIN", "LOGIN"]\n[log]\nlevel = "debug"\n',
              b'[[listener]]\nprotocol = "pop3"\naddress = "::"\nport = 0\n[[listener]]\nprotocol = "sieve"\n'
              b'[[passdb]]\ndriver = "static"\nprotocols = ["imap"]\ndefault_fields = "proxy host=1"\n']:
        write("config", d)


if __name__ == "__main__":
    main()
