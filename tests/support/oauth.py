"""OAuth 2.0 test fixtures: a token issuer (JWT minting with keys generated
at start) and an RFC 7662 introspection HTTP server.

TokenIssuer(dir): keys are generated on demand per (alg, kid, azp) with
python3-cryptography (Debian package): RSA-2048 (RS*/PS*), EC P-256/384/521
(ES256/384/512), Ed25519 (EdDSA) and random HMAC secrets (HS*). Every key's
public half is written in Dovecot's local-validation layout

    <keydir>/<azp or "default">/<ALG>/<kid or "default">

(PEM public key; HS*: the raw secret), `/` in azp/kid escaped `%2f` and `%`
as `%25` as Dovecot does. `mint()` builds a JWT with header alg/kid/typ and
the usual claims (iss/aud/sub/email/exp/nbf/iat/scope/azp), or an
`alg=none` / bad-signature token on request. `opaque()` registers an opaque
token in an IntrospectionServer's table.

IntrospectionServer: http.server in a thread on 127.0.0.1:0. Accepts
  POST  <path>              form body `token=<t>`       ("post" mode)
  GET   <path><t>           token appended to the URL   ("get" mode;
                            e.g. `.../introspect?token=` + t)
  GET   <path>              `Authorization: Bearer <t>` ("auth" mode)
optionally requiring HTTP Basic client_id/client_secret. Answers 200 with
the token's claims (`active` included) or `{"active": false}` for unknown
tokens. `requests` counts requests (tests assert the cache), `delay`
slows every answer, `status`/`body` force a fault answer, `stop()` ends it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "https://issuer.test"
CLIENT_ID = "portier"

_HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_HASHLIB = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
_CURVE = {"ES256": (ec.SECP256R1, 32), "ES384": (ec.SECP384R1, 48), "ES512": (ec.SECP521R1, 66)}

ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("/", "%2f")


@dataclass
class Key:
    alg: str
    kid: str | None
    azp: str | None
    private: Any        # cryptography private key, or bytes for HS*
    path: Path

    def public_bytes(self) -> bytes:
        if isinstance(self.private, bytes):
            return self.private
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes) -> bytes:
        alg, bits = self.alg[:2], self.alg[2:]
        if alg == "HS":
            return hmac.new(self.private, data, _HASHLIB[bits]).digest()
        if alg == "RS":
            return self.private.sign(data, padding.PKCS1v15(), _HASH[bits]())
        if alg == "PS":
            h = _HASH[bits]()
            return self.private.sign(data, padding.PSS(padding.MGF1(h), h.digest_size), h)
        if alg == "ES":
            der = self.private.sign(data, ec.ECDSA(_HASH[bits]()))
            r, s = decode_dss_signature(der)
            n = _CURVE[self.alg][1]
            return r.to_bytes(n, "big") + s.to_bytes(n, "big")
        if self.alg == "EdDSA":
            return self.private.sign(data)
        raise ValueError(self.alg)


def _generate(alg: str):
    if alg.startswith("HS"):
        return os.urandom(int(alg[2:]) // 8)
    if alg[:2] in ("RS", "PS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg in _CURVE:
        return ec.generate_private_key(_CURVE[alg][0]())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown alg {alg}")


class TokenIssuer:
    def __init__(self, keydir: str | os.PathLike, *, issuer: str = ISSUER,
                 audience: str = CLIENT_ID) -> None:
        self.keydir = Path(keydir)
        self.keydir.mkdir(parents=True, exist_ok=True)
        self.issuer, self.audience = issuer, audience
        self.keys: dict[tuple[str, str | None, str | None], Key] = {}

    def key(self, alg: str, kid: str | None = "k1", azp: str | None = None) -> Key:
        """The key for (alg, kid, azp), generated and published on first use."""
        k = self.keys.get((alg, kid, azp))
        if k is None:
            path = (self.keydir / _escape(azp or "default") / alg.upper()
                    / _escape(kid or "default"))
            k = Key(alg, kid, azp, _generate(alg), path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(k.public_bytes())
            self.keys[(alg, kid, azp)] = k
        return k

    def claims(self, user: str, *, exp_in: float | None = 300, nbf_in: float | None = None,
               iat_in: float | None = 0, scope: str | None = "mail", azp: str | None = None,
               **extra: Any) -> dict:
        now = int(time.time())
        c: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": user,
                             "email": user}
        if exp_in is not None:
            c["exp"] = now + int(exp_in)
        if nbf_in is not None:
            c["nbf"] = now + int(nbf_in)
        if iat_in is not None:
            c["iat"] = now + int(iat_in)
        if scope is not None:
            c["scope"] = scope
        if azp is not None:
            c["azp"] = azp
        for k, v in extra.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def mint(self, user: str, alg: str = "RS256", kid: str | None = "k1", *,
             azp: str | None = None, none: bool = False, bad_sig: bool = False,
             sign_with: Key | None = None, header: dict | None = None, **claims: Any) -> str:
        """A JWT for `user`. Claims by keyword (None removes one): exp_in,
        nbf_in, iat_in (seconds from now), scope, iss, aud, sub, email, ...
        `none`: header alg=none and no signature. `bad_sig`: a flipped
        signature byte. `sign_with`: sign with another key (header stays)."""
        hdr: dict[str, Any] = {"alg": "none" if none else alg, "typ": "JWT"}
        if kid is not None:
            hdr["kid"] = kid
        hdr.update(header or {})
        body = self.claims(user, azp=azp, **claims)
        signing_input = (b64url(json.dumps(hdr).encode()) + "." +
                         b64url(json.dumps(body).encode())).encode()
        if none:
            return signing_input.decode() + "."
        key = sign_with or self.key(alg, kid, azp)
        sig = bytearray(key.sign(signing_input))
        if bad_sig:
            sig[len(sig) // 2] ^= 0x01
        return signing_input.decode() + "." + b64url(bytes(sig))


# ----------------------------------------------------------------- introspection
@dataclass
class Seen:
    method: str
    path: str
    token: str | None
    mode: str                  # "post", "get" or "auth"
    authorization: str | None


@dataclass
class IntrospectionServer:
    path: str = "/introspect"
    client_id: str | None = None        # require Basic auth with these
    client_secret: str | None = None
    delay: float = 0.0
    status: int | None = None           # force this HTTP status
    body: bytes | None = None           # force this body
    tokens: dict[str, dict] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- token table
    def add(self, token: str, claims: dict | None = None, *, active: bool = True) -> str:
        c = dict(claims or {})
        c["active"] = active
        self.tokens[token] = c
        return token

    def opaque(self, issuer: TokenIssuer | None, user: str, *, active: bool = True,
               **claims: Any) -> str:
        """A random opaque token for `user` with the issuer's claims."""
        tok = b64url(os.urandom(24))
        c = issuer.claims(user, **claims) if issuer else {"email": user, **claims}
        return self.add(tok, c, active=active)

    @property
    def requests(self) -> int:
        with self._lock:
            return self._counter

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def url(self, suffix: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{self.path}{suffix}"

    def _answer(self, h: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(h.path)
        auth = h.headers.get("Authorization")
        token: str | None = None
        mode = "get"
        if h.command == "POST":
            n = int(h.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(h.rfile.read(n).decode("latin-1"))
            token = (form.get("token") or [None])[0]
            mode = "post"
        elif auth and auth.lower().startswith("bearer "):
            token, mode = auth[7:].strip(), "auth"
        else:
            # Token appended to the configured URL: the query's last value,
            # or what follows the configured path.
            q = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
            if q:
                token = q[-1][1]
            elif parsed.path.startswith(self.path):
                token = urllib.parse.unquote(parsed.path[len(self.path):].lstrip("/")) or None
        with self._lock:
            self._counter += 1
            self.seen.append(Seen(h.command, h.path, token, mode, auth))
        if self.delay:
            time.sleep(self.delay)
        if self.client_id is not None and mode != "auth":
            want = "Basic " + base64.b64encode(
                f"{self.client_id}:{self.client_secret or ''}".encode()).decode()
            if auth != want:
                self._send(h, 401, b'{"error":"invalid_client"}')
                return
        if self.status is not None or self.body is not None:
            self._send(h, self.status or 200, self.body if self.body is not None else b"{}")
            return
        claims = self.tokens.get(token or "")
        if claims is None:
            self._send(h, 200 if mode != "auth" else 401, b'{"active":false}')
            return
        self._send(h, 200, json.dumps(claims).encode())

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def start(self) -> "IntrospectionServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner._answer(self)

            do_POST = do_GET

            def log_message(self, *a) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "IntrospectionServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
