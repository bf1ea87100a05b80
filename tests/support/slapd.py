"""A private OpenLDAP slapd for tests (Debian's slapd package).

The config is a generated slapd.conf in a temp dir (mdb backend in the same
dir, Debian's core/cosine/inetorgperson schemas plus a small test schema for
the routing attributes), the data is loaded offline with slapadd, and slapd
runs in the foreground as the current user (`-d stats`: its stats log, with
every search's `filter=`, goes to a file the tests read), listening on
ldap://127.0.0.1:<free port>. Never touches a system slapd or service.
stop() kills it and removes the dir; freeze()/resume() SIGSTOP/SIGCONT it.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.support.util import FileLog, free_port, wait_for_port

SLAPD = Path(os.environ.get("PORTIER_SLAPD", "/usr/sbin/slapd"))
SLAPADD = Path("/usr/sbin/slapadd")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

SUFFIX = "dc=example,dc=org"
PEOPLE = f"ou=people,{SUFFIX}"
SERVICE_DN = f"cn=portier,{SUFFIX}"

# Routing attributes for the tests (a private OID arc: test data only).
TEST_SCHEMA = """
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'mailHost' EQUALITY caseIgnoreMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.2 NAME 'mailPort' EQUALITY integerMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.3 NAME 'mailProxy' EQUALITY caseIgnoreMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.4 NAME 'mailDestUser' EQUALITY caseIgnoreMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.1.5 NAME 'mailNoLogin' EQUALITY caseIgnoreMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.6 NAME 'mailReason' EQUALITY caseIgnoreMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.7 NAME 'mailStartTLS' EQUALITY caseIgnoreMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'portierUser' SUP top AUXILIARY
  MAY ( mailHost $ mailPort $ mailProxy $ mailDestUser $ mailNoLogin $ mailReason $ mailStartTLS ) )
"""


def available() -> bool:
    return SLAPD.exists() and SLAPADD.exists() and (SCHEMA_DIR / "inetorgperson.schema").exists()


def ssha(password: str, salt: bytes | None = None) -> str:
    """RFC 2307 {SSHA}: slapd verifies it for binds, portier for lookups."""
    salt = salt if salt is not None else os.urandom(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def ldif_value(attr: str, value: str) -> str:
    """One LDIF line; base64 (`::`) when the value is not plain ASCII text."""
    if not value or re.search(r"[^\x20-\x7e]", value) or value[0] in " :<" or value[-1] == " ":
        return f"{attr}:: {base64.b64encode(value.encode()).decode()}"
    return f"{attr}: {value}"


def entry(dn: str, attrs: list[tuple[str, str]]) -> str:
    return "\n".join([ldif_value("dn", dn)] + [ldif_value(a, v) for a, v in attrs]) + "\n"


class Slapd:
    def __init__(self, *, service_password: str = "ldap-Svc-Pw-4hT9") -> None:
        self.service_password = service_password
        self.dir = Path(tempfile.mkdtemp(prefix="pt-slapd-", dir="/tmp"))
        self.db_dir = self.dir / "db"
        self.db_dir.mkdir()
        self.conf = self.dir / "slapd.conf"
        self.log_path = self.dir / "slapd.log"
        self.log_path.touch()
        self.log = FileLog(self.log_path, name="slapd.log")
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._frozen = False
        self._write_conf()

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def _write_conf(self) -> None:
        (self.dir / "portier-test.schema").write_text(TEST_SCHEMA)
        schemas = [SCHEMA_DIR / f"{s}.schema" for s in ("core", "cosine", "inetorgperson")]
        schemas.append(self.dir / "portier-test.schema")
        self.conf.write_text(
            "".join(f"include {s}\n" for s in schemas)
            + f"pidfile {self.dir}/slapd.pid\nargsfile {self.dir}/slapd.args\n"
            f"modulepath {MODULE_DIR}\nmoduleload back_mdb\n"
            "loglevel stats\n"
            "database mdb\nmaxsize 33554432\n"
            f'suffix "{SUFFIX}"\nrootdn "cn=admin,{SUFFIX}"\nrootpw admin-unused-Pw\n'
            f"directory {self.db_dir}\n"
            "index objectClass eq\nindex mail eq\nindex uid eq\n"
            # The service account reads passwords; users may bind (auth_bind).
            f'access to attrs=userPassword\n  by dn.exact="{SERVICE_DN}" read\n'
            "  by anonymous auth\n  by * none\n"
            "access to *\n  by * read\n")

    # ------------------------------------------------------------- data
    def load(self, entries: list[str]) -> None:
        """Loads LDIF entries offline (before start(); the suffix, ou=people
        and the service account are added first)."""
        base = [
            entry(SUFFIX, [("objectClass", "dcObject"), ("objectClass", "organization"),
                           ("dc", "example"), ("o", "Example")]),
            entry(PEOPLE, [("objectClass", "organizationalUnit"), ("ou", "people")]),
            entry(SERVICE_DN, [("objectClass", "person"), ("cn", "portier"), ("sn", "portier"),
                               ("userPassword", ssha(self.service_password))]),
        ]
        ldif = self.dir / "data.ldif"
        ldif.write_text("\n".join(base + entries))
        subprocess.run([str(SLAPADD), "-f", str(self.conf), "-q", "-l", str(ldif)], check=True,
                       capture_output=True, text=True)

    # -------------------------------------------------------------- run
    def start(self, timeout: float = 15.0) -> "Slapd":
        for attempt in range(5):
            port = self.port or free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [str(SLAPD), "-f", str(self.conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "stats"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                wait_for_port(port, timeout=timeout)
                self.port = port
                return self
            except Exception:
                self.proc.kill()
                self.proc.wait()
                self.proc = None
                if self.port:   # a restart on the same port: keep trying it
                    continue
        raise RuntimeError(f"slapd did not start; log:\n{self.log_path.read_text()[-2000:]}")

    def stop(self, remove: bool = True) -> None:
        self.resume()
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if remove and not os.environ.get("PORTIER_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def freeze(self) -> None:
        """SIGSTOP slapd: connections are accepted by the kernel, nothing answers."""
        assert self.proc
        os.kill(self.proc.pid, signal.SIGSTOP)
        self._frozen = True

    def resume(self) -> None:
        if self._frozen and self.proc:
            os.kill(self.proc.pid, signal.SIGCONT)
        self._frozen = False

    # -------------------------------------------------------------- log
    def log_mark(self) -> int:
        return self.log_path.stat().st_size

    def log_text(self, since: int = 0) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return f.read().decode("utf-8", "replace")

    def filters(self, since: int = 0) -> list[str]:
        """The filters of the searches slapd ran, as its stats log shows them."""
        return re.findall(r' SRCH base="[^"]*" scope=\d deref=\d filter="(.*)"$', self.log_text(since), re.M)
