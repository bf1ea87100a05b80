"""SASL wire forms of the four login protocols over a raw line connection:
OAuth messages (OAUTHBEARER, XOAUTH2), each protocol's AUTHENTICATE/AUTH
command, continuation and final replies. Used by the OAuth tests
(test_oauth_sasl.py, test_oauth_passthrough.py)."""
from __future__ import annotations

import base64

from tests.support.imap_client import RawIMAP


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def message(mech: str, user: str, token: str) -> str:
    if mech == "OAUTHBEARER":
        return b64(f"n,a={user},\x01host=127.0.0.1\x01port=143\x01auth=Bearer {token}\x01\x01")
    return b64(f"user={user}\x01auth=Bearer {token}\x01\x01")


class Proto:
    """One protocol's wire forms over a raw line connection."""

    def __init__(self, name: str) -> None:
        self.name = name

    def auth(self, mech: str, ir: str | None = None) -> str:
        if self.name == "managesieve":
            return f'AUTHENTICATE "{mech}"' + (f' "{ir}"' if ir is not None else "")
        verb = "a AUTHENTICATE" if self.name == "imap" else "AUTH"
        return f"{verb} {mech}" + (f" {ir}" if ir is not None else "")

    def response(self, b64text: str) -> str:
        return f'"{b64text}"' if self.name == "managesieve" else b64text

    def is_final(self, line: bytes) -> bool:
        if self.name == "imap":
            return line.startswith((b"a ", b"+ ", b"* BYE"))
        if self.name == "pop3":
            return line.startswith((b"+OK", b"-ERR", b"+ "))
        if self.name == "submission":
            return len(line) >= 4 and line[3:4] == b" "
        return line.startswith((b"OK", b"NO", b"BYE", b'"'))

    def challenge(self, line: bytes) -> str | None:
        """The base64 of a continuation line, None when `line` is not one."""
        prefix, end = {"imap": (b"+ ", b""), "pop3": (b"+ ", b""), "submission": (b"334 ", b""),
                       "managesieve": (b'"', b'"')}[self.name]
        if len(line) >= len(prefix) + len(end) and line.startswith(prefix) and line.endswith(end):
            return line[len(prefix):len(line) - len(end)].decode()
        return None

    ok = property(lambda self: {"imap": b"a OK", "pop3": b"+OK", "submission": b"235 ",
                                "managesieve": b"OK"}[self.name])
    failed = property(lambda self: {"imap": b"a NO [AUTHENTICATIONFAILED]",
                                    "pop3": b"-ERR [AUTH] Authentication failed",
                                    "submission": b"535 5.7.8",
                                    "managesieve": b'NO "Authentication failed.'}[self.name])


PROTOS = [Proto(n) for n in ("imap", "pop3", "submission", "managesieve")]


class Conn:
    def __init__(self, px, proto: Proto, source: str | None = None,
                 timeout: float | None = None) -> None:
        self.p = proto
        more = {"timeout": timeout} if timeout else {}
        self.c = RawIMAP(px.port(proto.name, "none"), source=source, read_banner=False, **more)
        # ManageSieve's greeting is its capability list: read it up to the OK.
        self.banner = self.read(lambda l: not l.startswith(b'"'))
        self.caps = self.banner           # IMAP, ManageSieve: listed in the greeting
        if proto.name == "submission":
            self.caps = self.cmd("EHLO client.example")
        elif proto.name == "pop3":
            self.c.send(b"CAPA\r\n")
            self.caps = self.read(lambda l: l == b".")

    def read(self, final=None) -> list[bytes]:
        lines = []
        while True:
            lines.append(self.c.readline())
            if (final or self.p.is_final)(lines[-1]):
                return lines

    def cmd(self, text: str) -> list[bytes]:
        self.c.send(text.encode() + b"\r\n")
        return self.read()

    def close(self) -> None:
        self.c.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
