"""Throwaway X.509 material for tests, made with the openssl CLI.

`make_certs(dir)` creates, under `dir`:
  ca.pem / ca.key            - a test CA
  server.pem / server.key    - leaf for DNS:localhost, IP:127.0.0.1, IP:::1
  wrong.pem / wrong.key      - leaf signed by the same CA for DNS:wrong.example
                               only (name-mismatch tests)
  selfsigned.pem / .key      - self-signed leaf for localhost/127.0.0.1, not
                               signed by the CA (untrusted-issuer tests)
and returns a `Certs` record with the paths.  Everything is EC P-256 so
generation takes milliseconds.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = os.environ.get("OPENSSL", "openssl")


@dataclass(frozen=True)
class Certs:
    dir: Path
    ca: Path
    ca_key: Path
    cert: Path
    key: Path
    wrong_cert: Path
    wrong_key: Path
    self_cert: Path
    self_key: Path


def _run(*args: str, cwd: Path) -> None:
    r = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{r.stderr}")


def _ec_key(path: Path, cwd: Path) -> None:
    _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(path), cwd=cwd)
    path.chmod(0o644)   # Dovecot reads keys as root, portier maybe not: keep it simple


def _leaf(d: Path, name: str, cn: str, san: str, ca: Path, ca_key: Path) -> None:
    key, csr, crt, ext = (d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem",
                          d / f"{name}.ext")
    _ec_key(key, d)
    _run("req", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-out", str(csr), cwd=d)
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={san}\n")
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", str(ext),
         "-out", str(crt), cwd=d)
    csr.unlink()
    ext.unlink()


def make_certs(directory: str | os.PathLike) -> Certs:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca, ca_key = d / "ca.pem", d / "ca.key"
    if not (d / "selfsigned.pem").exists():
        _ec_key(ca_key, d)
        _run("req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=portier test CA",
             "-days", "3650", "-sha256",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", str(ca), cwd=d)
        _leaf(d, "server", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1", ca, ca_key)
        _leaf(d, "wrong", "wrong.example", "DNS:wrong.example", ca, ca_key)
        sk = d / "selfsigned.key"
        _ec_key(sk, d)
        _run("req", "-x509", "-new", "-key", str(sk), "-subj", "/CN=localhost",
             "-days", "3650", "-sha256",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-out", str(d / "selfsigned.pem"), cwd=d)
    for p in d.iterdir():
        p.chmod(0o644)
    return Certs(dir=d, ca=ca, ca_key=ca_key, cert=d / "server.pem", key=d / "server.key",
                 wrong_cert=d / "wrong.pem", wrong_key=d / "wrong.key",
                 self_cert=d / "selfsigned.pem", self_key=d / "selfsigned.key")


if __name__ == "__main__":   # pragma: no cover - manual use
    import sys
    print(make_certs(sys.argv[1] if len(sys.argv) > 1 else "certs"))
