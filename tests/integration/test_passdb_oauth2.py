"""oauth2 passdb: portier validates OAuth 2.0 tokens (RFC 7662 introspection
in post/get/auth mode, or local JWT validation) and proxies the login to a
real Dovecot backend whose own `oauth2` passdb validates the same token
again (tests/support/dovecot.py `oauth2=`), so a token proxied through
portier is accepted by Dovecot itself.

Tokens come from tests/support/oauth.py: a TokenIssuer with keys generated
per run, and two IntrospectionServers sharing one token table — one asked by
portier, one by the backend — so portier's requests (cache) are counted
apart from the backend's. Clients log in with PLAIN/LOGIN and the token as
the password (imaplib login(user, token)).
"""
from __future__ import annotations

import base64
import imaplib
import json
import threading
import time

import pytest

from tests.support.dovecot import DovecotBackend
from tests.support.imap_client import RawIMAP
from tests.support.oauth import CLIENT_ID, ISSUER, IntrospectionServer, TokenIssuer
from tests.support.portier import Listener, User
from tests.support.util import closed_port

LISTENERS = (Listener("imap", "none"),)
USER = "user1"
# A passwd-file user answered first in the chain (nologin: refused with a reason, no backend).
PF = User("pf-user", "pf-Pass-x8Kq", "nologin reason=pf-user-ok")


@pytest.fixture(scope="module")
def oauth(tmp_path_factory):
    issuer = TokenIssuer(tmp_path_factory.mktemp("oauth-keys"))
    front = IntrospectionServer().start()        # asked by portier
    back = IntrospectionServer().start()         # asked by the Dovecot backend
    back.tokens = front.tokens                   # one token table
    yield issuer, front, back
    front.stop()
    back.stop()


@pytest.fixture(scope="module")
def backend(oauth, certs):
    _, _, back = oauth
    dc = DovecotBackend(certs=certs, oauth2={"introspection_mode": "post",
                                             "introspection_url": back.url()})
    dc.start()
    yield dc
    dc.stop()


def toml_list(xs) -> str:
    return "[" + ", ".join(f'"{x}"' for x in xs) + "]"


def oauth2_toml(backend, *, url: str | None = None, mode: str = "post", keys: str | None = None,
                extra: str = "", route: bool = True) -> str:
    t = '[[passdb]]\ndriver = "oauth2"\n'
    t += f'introspection_mode = "{mode}"\n'
    if url:
        t += f'introspection_url = "{url}"\n'
    if keys:
        t += f'local_keys = "{keys}"\n'
    t += (f'client_id = "{CLIENT_ID}"\nissuers = ["{ISSUER}"]\nscope = ["mail", "imap"]\n'
          'openid_configuration_url = "https://issuer.test/.well-known/openid-configuration"\n')
    if route:
        t += f'fields = {{ proxy = "y", host = "127.0.0.1", port = "{backend.ports["imap"]}" }}\n'
    return t + extra


def start(make_portier, toml: str, timeout: str = "5s"):
    return make_portier([PF], listeners=LISTENERS, extra_toml=toml,
                        settings={"server": {"workers": 1}, "auth": {"passdb_timeout": timeout}})


def login(px, user: str, token: str) -> tuple[bool, str]:
    c = imaplib.IMAP4("127.0.0.1", px.port("imap"), timeout=10)
    try:
        c.login(user, token)
        c.noop()
        c.logout()
        return True, ""
    except imaplib.IMAP4.error as e:
        return False, str(e)


def backend_login(backend, since: int) -> None:
    backend.wait_for_log(rf"imap-login: Info: Login: user=<{USER}>", since=since)


def no_tokens(px, *tokens: str) -> None:
    text = px.log.text()
    for t in tokens:
        assert t not in text, "a token appears in portier's log"
        assert t[-20:] not in text


# ------------------------------------------------------------ introspection
@pytest.mark.parametrize("mode,suffix", [("post", ""), ("get", "?token="), ("auth", "")])
def test_introspection_modes(make_portier, backend, oauth, mode, suffix):
    issuer, front, _ = oauth
    px = start(make_portier, oauth2_toml(backend, url=front.url(suffix), mode=mode,
                                         extra="cache_size = 0\n"))
    tok = front.opaque(issuer, USER)
    n = len(front.seen)
    mark = backend.log_mark()
    assert login(px, USER, tok) == (True, "")
    backend_login(backend, mark)
    seen = front.seen[n:]
    assert [s.mode for s in seen] == [mode] and seen[0].token == tok
    # refused: inactive, another user's token, wrong issuer, wrong audience, scope
    for bad in (front.opaque(issuer, USER, active=False),
                front.opaque(issuer, "user2"),
                front.opaque(issuer, USER, iss="https://evil.test"),
                front.opaque(issuer, USER, aud="someone-else"),
                front.opaque(issuer, USER, scope="calendar"),
                front.opaque(issuer, USER, exp_in=-120),
                "unknown-token"):
        ok, msg = login(px, USER, bad)
        assert not ok and "AUTHENTICATIONFAILED" in msg, (bad, msg)
    px.log.wait_for(r"oauth2\(user1,127\.0\.0\.1,<[^>]+>\): .*")
    no_tokens(px, tok)


def test_expiry_grace(make_portier, backend, oauth):
    issuer, front, _ = oauth
    px = start(make_portier, oauth2_toml(backend, url=front.url(), extra='token_expire_grace = "60s"\n'))
    # expired 20 s ago: inside the 60 s grace
    assert login(px, USER, front.opaque(issuer, USER, exp_in=-20))[0]
    # expired 5 minutes ago: refused
    assert not login(px, USER, front.opaque(issuer, USER, exp_in=-300))[0]
    # not yet valid (nbf 5 minutes ahead): refused
    assert not login(px, USER, front.opaque(issuer, USER, nbf_in=300))[0]


def test_cache_counts_requests(make_portier, backend, oauth):
    issuer, front, _ = oauth
    px = start(make_portier, oauth2_toml(backend, url=front.url(), extra='cache_ttl = "60s"\n'))
    tok = front.opaque(issuer, USER)
    n = front.requests
    assert login(px, USER, tok)[0]
    assert front.requests == n + 1
    assert login(px, USER, tok)[0]
    assert front.requests == n + 1, "second login introspected again (cache miss)"
    # the cache is per user: the same token for another user is asked again (and refused)
    assert not login(px, "user2", tok)[0]
    assert front.requests == n + 2
    # refused tokens are never cached
    bad = front.opaque(issuer, USER, active=False)
    assert not login(px, USER, bad)[0] and not login(px, USER, bad)[0]
    assert front.requests == n + 4


def test_cache_life_bounded_by_exp(make_portier, backend, oauth):
    issuer, front, _ = oauth
    px = start(make_portier, oauth2_toml(backend, url=front.url(),
                                         extra='cache_ttl = "1h"\ntoken_expire_grace = "0s"\n'))
    tok = front.opaque(issuer, USER, exp_in=2)
    n = front.requests
    assert login(px, USER, tok)[0]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and login(px, USER, tok)[0]:
        time.sleep(0.2)   # polling the token's natural expiry, no event to await
    assert front.requests > n + 1, "cache entry outlived the token's exp"


def test_fixture_down_is_temporary_failure(make_portier, backend, oauth):
    issuer, front, _ = oauth
    px = start(make_portier, oauth2_toml(backend, url=f"http://127.0.0.1:{closed_port()}/introspect"))
    tok = front.opaque(issuer, USER)
    with RawIMAP(px.port("imap")) as c:
        r = c.command("a", f'LOGIN {USER} "{tok}"')[-1]
    assert r.startswith(b"a NO [UNAVAILABLE]"), r
    px.log.wait_for(r"oauth2: introspection request to http://127\.0\.0\.1:\d+ failed")
    no_tokens(px, tok)


@pytest.mark.parametrize("status,body", [(500, b"{}"), (200, b"not json")])
def test_server_errors_are_temporary(make_portier, backend, oauth, status, body):
    issuer, _, _ = oauth
    bad = IntrospectionServer(status=status, body=body).start()
    try:
        px = start(make_portier, oauth2_toml(backend, url=bad.url()))
        with RawIMAP(px.port("imap")) as c:
            r = c.command("a", f'LOGIN {USER} "tok-{status}"')[-1]
        assert r.startswith(b"a NO [UNAVAILABLE]"), r
    finally:
        bad.stop()


def test_slow_introspection_does_not_stall_others(make_portier, backend, oauth):
    issuer, front, _ = oauth
    slow = IntrospectionServer(delay=3.0).start()
    slow.tokens = front.tokens
    try:
        toml = oauth2_toml(backend, url=slow.url(), extra='timeout = "1s"\nconnections = 2\n')
        px = start(make_portier, toml, timeout="10s")
        # a passwd-file login is answered while two token logins wait on the slow server
        results = []
        ts = [threading.Thread(target=lambda: results.append(login(px, USER, front.opaque(issuer, USER))))
              for _ in range(2)]
        for t in ts:
            t.start()
        deadline = time.monotonic() + 5
        while slow.requests < 2 and time.monotonic() < deadline:
            time.sleep(0.02)   # until both requests are being held by the slow server
        assert slow.requests == 2
        t0 = time.monotonic()
        with RawIMAP(px.port("imap")) as c:
            r = c.command("a", f"LOGIN {PF.name} {PF.password}")[-1]
        assert b"pf-user-ok" in r, r
        assert time.monotonic() - t0 < 1.0, "a non-token login waited for the slow introspection"
        for t in ts:
            t.join(15)
        # bounded: the 1 s timeout ended them as temporary failures
        assert len(results) == 2 and all(not ok for ok, _ in results), results
        assert all("UNAVAILABLE" in msg for _, msg in results), results
    finally:
        slow.stop()


def test_client_secret_basic_auth(make_portier, backend, oauth):
    issuer, front, _ = oauth
    guarded = IntrospectionServer(client_id=CLIENT_ID, client_secret="s3cret-Client-Zq9").start()
    guarded.tokens = front.tokens
    try:
        extra = 'client_secret = "s3cret-Client-Zq9"\n'
        px = start(make_portier, oauth2_toml(backend, url=guarded.url(), extra=extra))
        assert login(px, USER, front.opaque(issuer, USER))[0]
        assert guarded.seen[-1].authorization.startswith("Basic ")
        assert "s3cret-Client-Zq9" not in px.log.text()
    finally:
        guarded.stop()


# ------------------------------------------------------------- chain routing
def test_continue_ok_then_static_routes(make_portier, backend, oauth):
    issuer, front, _ = oauth
    toml = (oauth2_toml(backend, url=front.url(), route=False) +
            'result_success = "continue-ok"\nresult_failure = "return-fail"\n\n'
            '[[passdb]]\ndriver = "static"\n'
            f'fields = "proxy host=127.0.0.1 port={backend.ports["imap"]}"\n')
    px = start(make_portier, toml)
    mark = backend.log_mark()
    assert login(px, USER, front.opaque(issuer, USER))[0]
    backend_login(backend, mark)
    # a refused token stops the chain: the static passdb never routes it
    ok, msg = login(px, USER, front.opaque(issuer, USER, active=False))
    assert not ok and "AUTHENTICATIONFAILED" in msg


# ---------------------------------------------------------------- local JWT
@pytest.fixture(scope="module")
def local_px(module_portier_factory, backend, oauth):
    issuer, _, _ = oauth
    return module_portier_factory([], listeners=LISTENERS,
                                  settings={"server": {"workers": 1},
                                            "auth": {"mechanisms": ["PLAIN", "OAUTHBEARER", "XOAUTH2"],
                                                     "failure_delay": "10ms"},
                                            "login": {"auth_penalty_max": "50ms"}},
                                  extra_toml=oauth2_toml(backend, mode="local", keys=str(issuer.keydir),
                                                         extra="cache_size = 0\n"))


def jwt(oauth, alg: str, **kw) -> str:
    """A JWT the backend accepts too (its introspection table knows it)."""
    issuer, front, _ = oauth
    t = issuer.mint(USER, alg, **kw)
    front.add(t, issuer.claims(USER))
    return t


@pytest.mark.parametrize("alg", ["RS256", "PS384", "ES256", "ES512", "EdDSA", "HS256"])
def test_local_jwt_accepted(local_px, backend, oauth, alg):
    mark = backend.log_mark()
    tok = jwt(oauth, alg)
    assert login(local_px, USER, tok) == (True, "")
    backend_login(backend, mark)
    no_tokens(local_px, tok)


def test_local_jwt_refusals(local_px, oauth):
    issuer, _, _ = oauth
    rsa = issuer.key("RS256")
    # an RSA key published where an EC key belongs: the header's alg must fit the key type
    confused = issuer.keydir / "default" / "ES256" / "confused"
    confused.parent.mkdir(parents=True, exist_ok=True)
    confused.write_bytes(rsa.public_bytes())
    bad = {
        "expired beyond grace": jwt(oauth, "RS256", exp_in=-300),
        "wrong iss": jwt(oauth, "RS256", iss="https://evil.test"),
        "wrong aud": jwt(oauth, "RS256", aud="other-client"),
        "bad signature": jwt(oauth, "ES256", bad_sig=True),
        "alg none": jwt(oauth, "RS256", none=True),
        "unknown kid": jwt(oauth, "RS256", kid="nope", sign_with=rsa),
        "alg/key mismatch": jwt(oauth, "RS256", kid="confused", header={"alg": "ES256"}, sign_with=rsa),
        "other user": issuer.mint("user2", "RS256"),
        "scope": jwt(oauth, "RS256", scope="calendar"),
        "no exp": jwt(oauth, "RS256", exp_in=None),
    }
    for why, tok in bad.items():
        ok, msg = login(local_px, USER, tok)
        assert not ok and "AUTHENTICATIONFAILED" in msg, why
        # The same token over OAUTHBEARER and XOAUTH2: the failure JSON names why.
        for mech in ("OAUTHBEARER", "XOAUTH2"):
            doc = sasl_refusal(local_px, mech, tok)
            want = "insufficient_scope" if why == "scope" else "invalid_token"
            if mech == "XOAUTH2":
                want = {"insufficient_scope": "403", "invalid_token": "401"}[want]
            assert doc["status"] == want, (why, mech, doc)
        no_tokens(local_px, tok)
    assert login(local_px, USER, jwt(oauth, "RS256", exp_in=-20))[0], "within grace"


def sasl_refusal(px, mech: str, tok: str) -> dict:
    """AUTHENTICATE with a refused token: the failure JSON of the challenge,
    after which the client's answer gets the final NO."""
    with RawIMAP(px.port("imap")) as c:
        c.send(f"a AUTHENTICATE {mech} {sasl_message(mech, USER, tok)}\r\n")
        line = c.readline()
        assert line.startswith(b"+ "), line
        c.send(b"AQ==\r\n" if mech == "OAUTHBEARER" else b"\r\n")
        last = c.readline()
        assert last.startswith(b"a NO [AUTHENTICATIONFAILED]"), last
        return json.loads(base64.b64decode(line[2:]))


# ------------------------------------------- OAUTHBEARER / XOAUTH2 (SASL side)
def sasl_message(mech: str, user: str, token: str) -> str:
    if mech == "OAUTHBEARER":
        raw = f"n,a={user},\x01host=127.0.0.1\x01port=143\x01auth=Bearer {token}\x01\x01"
    else:
        raw = f"user={user}\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(raw.encode()).decode()


@pytest.fixture(scope="module")
def sasl_px(module_portier_factory, backend, oauth):
    _, front, _ = oauth
    return module_portier_factory(
        [PF], listeners=LISTENERS, extra_toml=oauth2_toml(backend, url=front.url()),
        settings={"server": {"workers": 1},
                  "auth": {"mechanisms": ["PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"],
                           "failure_delay": "10ms"},
                  "login": {"auth_penalty_max": "50ms"}})


@pytest.mark.parametrize("mech", ["OAUTHBEARER", "XOAUTH2"])
def test_sasl_mechanism_validated_by_passdb(sasl_px, backend, oauth, mech):
    issuer, front, _ = oauth
    tok = front.opaque(issuer, USER)
    mark = backend.log_mark()
    with RawIMAP(sasl_px.port("imap")) as c:
        r = c.command("a", f"AUTHENTICATE {mech} {sasl_message(mech, USER, tok)}")[-1]
        assert r.startswith(b"a OK"), r
    backend_login(backend, mark)
    no_tokens(sasl_px, tok)


@pytest.mark.parametrize("mech,claims,status", [
    ("OAUTHBEARER", {"scope": "calendar"}, "insufficient_scope"),
    ("OAUTHBEARER", {"active": False}, "invalid_token"),
    ("XOAUTH2", {"scope": "calendar"}, "403"),
    ("XOAUTH2", {"iss": "https://evil.test"}, "401"),
])
def test_sasl_failure_json_from_passdb(sasl_px, oauth, mech, claims, status):
    issuer, front, _ = oauth
    claims = dict(claims)
    active = claims.pop("active", True)
    tok = front.opaque(issuer, USER, active=active, **claims)
    with RawIMAP(sasl_px.port("imap")) as c:
        c.send(f"a AUTHENTICATE {mech} {sasl_message(mech, USER, tok)}\r\n")
        line = c.readline()
        assert line.startswith(b"+ "), line
        doc = json.loads(base64.b64decode(line[2:]))
        assert doc["status"] == status
        assert doc["scope"] == "mail imap"          # the configured scopes, space-joined
        assert doc["openid-configuration"] == "https://issuer.test/.well-known/openid-configuration"
        if mech == "XOAUTH2":
            assert doc["schemes"] == "bearer"
        c.send(b"AQ==\r\n" if mech == "OAUTHBEARER" else b"\r\n")
        last = c.readline()
        assert last.startswith(b"a NO [AUTHENTICATIONFAILED]"), last
    no_tokens(sasl_px, tok)
