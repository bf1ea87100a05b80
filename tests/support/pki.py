"""A small certificate authority for TLS identity tests, driven by the openssl CLI.

`MiniCA(dir, name)` creates a CA (EC P-256) with an `openssl ca` database, so
that it can issue leaves with any validity window (expired ones included),
revoke them and write a CRL:

    ca = MiniCA(tmp / "clients", "client CA")
    cert, key = ca.issue("alice", "/CN=alice", eku="clientAuth")
    old, _ = ca.issue("old", "/CN=old", start="20200101000000Z", end="20210101000000Z")
    ca.revoke(cert); ca.write_crl(tmp / "crl.pem")

Server leaves for SNI tests: `ca.issue("mail", "/CN=mail.example.org",
san="DNS:mail.example.org", eku="serverAuth", key="rsa")`.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

OPENSSL = os.environ.get("OPENSSL", "openssl")

_CNF = """\
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = .
database = ./index.txt
new_certs_dir = ./newcerts
certificate = ./ca.pem
private_key = ./ca.key
serial = ./serial
crlnumber = ./crlnumber
default_md = sha256
default_days = 365
default_crl_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
commonName = optional
emailAddress = optional
organizationName = optional
"""


def run(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{r.stderr}")
    return r


def make_key(path: Path, key: str = "ec") -> None:
    if key == "rsa":
        run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))
    else:
        run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o644)


class MiniCA:
    def __init__(self, directory: str | os.PathLike, name: str) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "newcerts").mkdir(exist_ok=True)
        (self.dir / "openssl.cnf").write_text(_CNF)
        (self.dir / "index.txt").write_text("")
        (self.dir / "serial").write_text("1000\n")
        (self.dir / "crlnumber").write_text("1000\n")
        self.key = self.dir / "ca.key"
        self.cert = self.dir / "ca.pem"
        make_key(self.key)
        run("req", "-x509", "-new", "-key", str(self.key), "-subj", f"/CN={name}",
            "-days", "3650", "-sha256",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-out", str(self.cert))

    def issue(self, name: str, subject: str, *, san: str | None = None,
              eku: str = "clientAuth", key: str = "ec", start: str | None = None,
              end: str | None = None, key_path: Path | None = None,
              out: Path | None = None) -> tuple[Path, Path]:
        """A leaf signed by this CA: (cert, key). `start`/`end` are
        YYYYMMDDHHMMSSZ; `key_path` reuses an existing key."""
        kp = key_path or self.dir / f"{name}.key"
        if key_path is None:
            make_key(kp, key)
        csr, crt, ext = self.dir / f"{name}.csr", out or self.dir / f"{name}.pem", self.dir / f"{name}.ext"
        run("req", "-new", "-key", str(kp), "-subj", subject, "-out", str(csr))
        lines = ["basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature,keyEncipherment",
                 f"extendedKeyUsage={eku}"]
        if san:
            lines.append(f"subjectAltName={san}")
        ext.write_text("\n".join(lines) + "\n")
        args = ["ca", "-batch", "-config", "openssl.cnf", "-notext", "-in", str(csr),
                "-out", str(crt), "-extfile", str(ext)]
        if start:
            args += ["-startdate", start]
        if end:
            args += ["-enddate", end]
        elif start is None:
            args += ["-days", "365"]
        run(*args, cwd=self.dir)
        csr.unlink()
        ext.unlink()
        return crt, kp

    def revoke(self, cert: Path) -> None:
        run("ca", "-config", "openssl.cnf", "-revoke", str(cert), cwd=self.dir)

    def write_crl(self, path: Path) -> Path:
        run("ca", "-config", "openssl.cnf", "-gencrl", "-out", str(path), cwd=self.dir)
        return path


def subject_cn(pem: bytes | str) -> str:
    """The subject CN of a PEM (or DER given as bytes) certificate."""
    args = ["x509", "-noout", "-subject", "-nameopt", "multiline"]
    if isinstance(pem, bytes) and not pem.startswith(b"-----"):
        args += ["-inform", "DER"]
    data = pem if isinstance(pem, bytes) else pem.encode()
    r = subprocess.run([OPENSSL, *args], input=data, capture_output=True, check=True)
    for line in r.stdout.decode().splitlines():
        line = line.strip()
        if line.startswith("commonName"):
            return line.split("=", 1)[1].strip()
    return ""
