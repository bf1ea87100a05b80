"""A private, real Postfix (Debian 12's 3.7) for the LMTP proxy tests.

Its own config_directory, queue_directory and data_directory in a temp dir;
started with `postfix -c DIR start` (as root: Postfix's master insists on
it, and drops to the `postfix` user itself) and stopped with `postfix -c DIR
stop`.  The system instance is never touched.  One SMTP listener on a free
loopback port accepts mail for `relay_domain` from 127.0.0.0/8 and relays it
with `relay_transport` (e.g. `lmtp:inet:127.0.0.1:PORT`, portier).  Chroot
is off for every service, so nothing needs copying into the queue directory.
The log goes to `<dir>/maillog` (postlogd).

    with PostfixInstance(transport=f"lmtp:inet:127.0.0.1:{port}") as pf:
        smtplib.SMTP("127.0.0.1", pf.port).sendmail(...)
        pf.log.wait_for(r"status=sent")
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .util import FileLog, free_port, wait_for_port

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"


def available() -> str | None:
    """None when a private Postfix can run here, else the reason it cannot."""
    if not Path(POSTFIX).exists():
        return "postfix is not installed (scripts/install-deps.sh installs it)"
    if os.geteuid() != 0:
        return "a private Postfix must be started as root (its master checks)"
    return None


class PostfixInstance:
    def __init__(self, *, transport: str, relay_domain: str = "example.test",
                 extra: dict[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pt-pf-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.conf_dir = self.dir / "etc"
        self.queue_dir = self.dir / "spool"
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "maillog"
        self.port = free_port()
        self.transport = transport
        self.relay_domain = relay_domain
        self.extra = dict(extra or {})
        self.log = FileLog(self.log_path, name="maillog")
        self.started = False

    def _postconf(self, *args: str) -> None:
        subprocess.run([POSTCONF, "-c", str(self.conf_dir), *args], check=True,
                       capture_output=True, text=True)

    def start(self, timeout: float = 30.0) -> "PostfixInstance":
        self.conf_dir.mkdir()
        self.queue_dir.mkdir()
        self.data_dir.mkdir()
        shutil.chown(self.data_dir, "postfix", "postfix")
        self.log_path.touch()
        shutil.copy("/etc/postfix/master.cf.proto", self.conf_dir / "master.cf")
        (self.conf_dir / "main.cf").write_text("")
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "command_directory": "/usr/sbin",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "shlib_directory": "/usr/lib/postfix",
            "meta_directory": "/etc/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mta.test",
            "mydomain": "mta.test",
            "myorigin": "mta.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relay_domains": self.relay_domain,
            "relay_transport": self.transport,
            "smtputf8_enable": "no",
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.dir),
            "alias_maps": "", "alias_database": "",
            "local_recipient_maps": "",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "lmtp_host_lookup": "native",
            "smtp_host_lookup": "native",
            "biff": "no",
            "delay_warning_time": "0",
            "maximal_backoff_time": "60s", "minimal_backoff_time": "5s",
            "queue_run_delay": "5s",
            "message_size_limit": str(100 * 1024 * 1024),
        }
        settings.update(self.extra)
        self._postconf("-e", *[f"{k}={v}" for k, v in settings.items()])
        # The SMTP listener on our port instead of 25; no chroot anywhere;
        # postlogd for maillog_file.
        self._postconf("-M#", "smtp/inet")
        self._postconf("-M", f"127.0.0.1:{self.port}/inet=127.0.0.1:{self.port} inet n - n - - smtpd")
        self._postconf("-F", "*/*/chroot = n")
        self._postconf("-M", "postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd")
        env = {**os.environ, "MAIL_CONFIG": str(self.conf_dir)}
        out = subprocess.run([POSTFIX, "-c", str(self.conf_dir), "start"], env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"postfix start failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
                               f"\nmaillog:\n{self.read_log()}")
        self.started = True
        wait_for_port(self.port, timeout=timeout)
        return self

    def flush(self) -> None:
        """Ask for a queue run now (deferred mail retried)."""
        subprocess.run([POSTFIX, "-c", str(self.conf_dir), "flush"], capture_output=True)

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.started:
            subprocess.run([POSTFIX, "-c", str(self.conf_dir), "stop"], capture_output=True)
            self.started = False
        if not os.environ.get("PORTIER_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "PostfixInstance":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
