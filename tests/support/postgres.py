"""A private PostgreSQL 15 cluster for tests (Debian's postgresql package).

initdb + pg_ctl as an unprivileged system user (initdb refuses root): the
cluster lives in a temp dir that user owns, listens on 127.0.0.1 at a free
port and on a unix socket in the same dir, logs every statement
(log_statement=all) to a file the tests read, and is removed by stop().
Never touches a system cluster or service.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.util import FileLog, free_port, wait_for_port

PG_BIN = Path(os.environ.get("PORTIER_PG_BIN", "/usr/lib/postgresql/15/bin"))
RUN_AS = os.environ.get("PORTIER_PG_USER", "nobody")


def available() -> bool:
    return (PG_BIN / "initdb").exists()


class Postgres:
    def __init__(self, *, db: str = "mail", user: str = "portier", password: str = "pg-Secret-9wq") -> None:
        self.db, self.user, self.password = db, user, password
        self.dir = Path(tempfile.mkdtemp(prefix="pt-pg-", dir="/tmp"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.port = free_port()
        self.log = FileLog(self.log_path, name="postgres.log")
        self._as_root = os.geteuid() == 0
        pw = pwd.getpwnam(RUN_AS) if self._as_root else pwd.getpwuid(os.getuid())
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        os.chmod(self.dir, 0o755)
        os.chown(self.dir, self.uid, self.gid)
        self.log_path.touch()
        os.chown(self.log_path, self.uid, self.gid)

    # ----------------------------------------------------------------- run
    def _run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        if self._as_root:
            argv = ["runuser", "-u", RUN_AS, "--"] + argv
        return subprocess.run(argv, check=True, capture_output=True, text=True,
                              cwd=self.dir, **kw)

    def conninfo(self, **over) -> str:
        parts = {"host": "127.0.0.1", "port": str(self.port), "dbname": self.db,
                 "user": self.user, "password": self.password}
        parts.update({k: str(v) for k, v in over.items()})
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def start(self, timeout: float = 30.0) -> "Postgres":
        if not self.data.exists():
            pwfile = self.dir / "pw"
            pwfile.write_text("initdb-unused-pw\n")
            os.chown(pwfile, self.uid, self.gid)
            self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                       "--auth-local=trust", "--auth-host=scram-sha-256",
                       f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"])
            with open(self.data / "postgresql.conf", "a") as f:
                f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                        f"unix_socket_directories = '{self.dir}'\n"
                        "log_statement = 'all'\nlogging_collector = off\n"
                        "log_line_prefix = '%m [%p] '\nfsync = off\n"
                        "synchronous_commit = off\nfull_page_writes = off\n"
                        "max_connections = 100\nshared_buffers = 16MB\n")
        self.pg_ctl("start", "-w", "-t", str(int(timeout)), "-l", str(self.log_path))
        wait_for_port(self.port, timeout=timeout)
        return self

    def pg_ctl(self, *args: str) -> None:
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args])

    def stop(self, remove: bool = True) -> None:
        self.resume()
        try:
            self.pg_ctl("stop", "-m", "immediate", "-w", "-t", "20")
        except subprocess.CalledProcessError:
            pass
        if remove and not os.environ.get("PORTIER_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split("\n")[0])

    def _all_pids(self) -> list[int]:
        """The postmaster and its children (backends, background workers)."""
        root = self.postmaster_pid()
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(root)], capture_output=True,
                             text=True).stdout.split()
        return [root] + [int(p) for p in out]

    def freeze(self) -> None:
        """SIGSTOP the whole cluster: connections hang, nothing answers."""
        for p in self._all_pids():
            os.kill(p, signal.SIGSTOP)
        self._frozen = True

    def resume(self) -> None:
        if getattr(self, "_frozen", False):
            for p in self._all_pids():
                try:
                    os.kill(p, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            self._frozen = False

    # ----------------------------------------------------------------- SQL
    def psql(self, sql: str, db: str | None = None, user: str = "postgres") -> str:
        """Runs SQL over the unix socket (trust auth) and returns stdout."""
        r = self._run([str(PG_BIN.parent / "bin" / "psql") if (PG_BIN / "psql").exists() else "psql",
                       "-h", str(self.dir), "-p", str(self.port), "-U", user,
                       "-d", db or self.db, "-v", "ON_ERROR_STOP=1", "-q", "-A", "-t", "-f", "-"],
                      input=sql)
        return r.stdout

    def create_db(self) -> None:
        pw = self.password.replace("'", "''")
        self.psql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{pw}';\n"
                  f"CREATE DATABASE {self.db} OWNER {self.user};\n", db="postgres")

    def log_mark(self) -> int:
        """A byte offset into the server log (for log_text(since=...))."""
        return self.log_path.stat().st_size

    def log_text(self, since: int = 0) -> str:
        """The server log from byte offset `since`: statements logged raw
        (log_statement=all), CR/LF inside values included."""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return f.read().decode("utf-8", "replace")
