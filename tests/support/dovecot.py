"""A private, real Dovecot 2.3 backend for integration tests and the demo.

Everything lives in one temp dir: dovecot.conf, base_dir, state_dir, the log,
passwd files, TLS material and maildirs.  The system Dovecot service is never
touched.  Usage:

    with DovecotBackend(users={"user1": "pass1"}) as dc:
        dc.ports["imap"], dc.ports["imaps"], dc.ports["pop3"], ...
        dc.log.wait_for(r"imap-login: Info: Login: user=<user1>")

Listeners (all on 127.0.0.1, ports chosen free in 20000-32000 unless given):
  imap (STARTTLS offered), imaps (implicit TLS), pop3 (STLS), pop3s,
  submission (587-style, STARTTLS), submissions (465-style, implicit TLS),
  sieve (ManageSieve, STARTTLS).
Mail is relayed by submission to an in-process SMTP sink (`dc.smtp`).

A master user (`master` / `master-pw` by default) is configured with
`auth_master_user_separator = *`, so `AUTHENTICATE PLAIN` with authzid=user,
authid=master works.
"""
from __future__ import annotations

import atexit
import os
import pwd
import grp
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Mapping

from .certs import Certs, make_certs
from .smtp_sink import SmtpSink
from .util import FileLog, die_with_parent, free_port, wait_for_port

DOVECOT = os.environ.get("DOVECOT_BIN", "/usr/sbin/dovecot")

# Names of the listeners we create, with their Dovecot service / listener names.
LISTENERS = {
    # key:          (service,              listener name, ssl)
    "imap":         ("imap-login",         "imap",        False),
    "imaps":        ("imap-login",         "imaps",       True),
    "pop3":         ("pop3-login",         "pop3",        False),
    "pop3s":        ("pop3-login",         "pop3s",       True),
    "submission":   ("submission-login",   "submission",  False),
    "submissions":  ("submission-login",   "submissions", True),
    "sieve":        ("managesieve-login",  "sieve",       False),
}
# With `haproxy=True`: listeners that require a PROXY v1/v2 header
# (`haproxy = yes`, senders from `haproxy_trusted_networks`).
HAPROXY_LISTENERS = {
    "imap_haproxy":       ("imap-login",         "imap_haproxy",       False),
    "pop3_haproxy":       ("pop3-login",         "pop3_haproxy",       False),
    "submission_haproxy": ("submission-login",   "submission_haproxy", False),
    "sieve_haproxy":      ("managesieve-login",  "sieve_haproxy",      False),
}

DEFAULT_USERS = {
    "user1": "pass1",
    "user2": "pass2",
    "user3": "pass3",
}

_instances: list["DovecotBackend"] = []


def _mail_ids() -> tuple[int, int, str]:
    """uid/gid for mail processes: the `dovecot` system user if present (it
    exists on Debian), else the current user."""
    try:
        pw = pwd.getpwnam("dovecot")
        return pw.pw_uid, pw.pw_gid, "dovecot"
    except KeyError:
        return os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name


class DovecotBackend:
    def __init__(self, users: Mapping[str, str] | None = None, *,
                 ports: Mapping[str, int] | None = None,
                 certs: Certs | None = None,
                 tmpdir: str | os.PathLike | None = None,
                 master_users: Mapping[str, str] | None = None,
                 hostname: str = "backend.test",
                 auth_failure_delay: str = "0",
                 extra_conf: str = "",
                 haproxy: bool = False,
                 haproxy_trusted_networks: str = "127.0.0.0/8",
                 lmtp: bool = False,
                 doveadm_password: str | None = None,
                 doveadm_api_key: str | None = None,
                 oauth2: Mapping[str, str] | None = None,
                 keep: bool = False) -> None:
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.master_users = dict({"master": "master-pw"} if master_users is None
                                 else master_users)
        self.hostname = hostname
        self.auth_failure_delay = auth_failure_delay
        self.extra_conf = extra_conf
        self.keep = keep or bool(os.environ.get("PORTIER_KEEP_TMP"))
        if tmpdir is None:
            # Short path: unix sockets under base_dir must fit in sun_path.
            self.dir = Path(tempfile.mkdtemp(prefix="pt-dc-", dir="/tmp"))
            self._own_dir = True
        else:
            self.dir = Path(tmpdir)
            self.dir.mkdir(parents=True, exist_ok=True)
            self._own_dir = False
        os.chmod(self.dir, 0o755)
        self.certs = certs or make_certs(self.dir / "certs")
        wanted = dict(ports or {})
        self.haproxy = haproxy
        self.haproxy_trusted_networks = haproxy_trusted_networks
        # lmtp=True: an LMTP inet listener (`ports["lmtp"]`, dovecot-lmtpd) for
        # the LMTP proxy tests; XCLIENT is honoured from login_trusted_networks.
        self.lmtp = lmtp
        # doveadm_password: a doveadm TCP listener (ports["doveadm"]); with
        # doveadm_api_key also the doveadm HTTP API (ports["doveadm_http"]).
        self.doveadm_password = doveadm_password
        self.doveadm_api_key = doveadm_api_key
        # oauth2: Dovecot's own `oauth2` passdb (settings of
        # dovecot-oauth2.conf.ext, e.g. introspection_url/introspection_mode
        # from tests/support/oauth.py) replaces the user passwd-file passdb:
        # the password (PLAIN/LOGIN) or OAUTHBEARER/XOAUTH2 token is checked
        # by Dovecot itself (`users` are then unused by the backend).
        self.oauth2 = dict(oauth2) if oauth2 is not None else None
        names = (list(LISTENERS) + (list(HAPROXY_LISTENERS) if haproxy else [])
                 + (["lmtp"] if lmtp else []))
        if doveadm_password is not None:
            names.append("doveadm")
        if doveadm_api_key is not None:
            names.append("doveadm_http")
        self.ports: dict[str, int] = {k: int(wanted.get(k) or free_port()) for k in names}
        self.conf_path = self.dir / "dovecot.conf"
        self.base_dir = self.dir / "run"
        self.state_dir = self.dir / "state"
        self.log_path = self.dir / "dovecot.log"
        self.passwd_path = self.dir / "users.passwd"
        self.master_passwd_path = self.dir / "masters.passwd"
        self.home_root = self.dir / "home"
        self.instance_name = f"portier-test-{os.getpid()}-{id(self) & 0xffff:x}"
        self.smtp: SmtpSink | None = None
        self.proc: subprocess.Popen | None = None
        self.log = FileLog(self.log_path, name="dovecot.log")

    # ------------------------------------------------------------------ setup
    def _write_files(self) -> None:
        uid, gid, uname = _mail_ids()
        self.mail_uid, self.mail_gid = uid, gid
        for d in (self.base_dir, self.state_dir):
            d.mkdir(exist_ok=True)
        self.home_root.mkdir(exist_ok=True)
        os.chown(self.home_root, uid, gid)
        self.passwd_path.write_text(
            "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        self.master_passwd_path.write_text(
            "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.master_users.items()))
        for p in (self.passwd_path, self.master_passwd_path):
            p.chmod(0o644)
        self.log_path.touch()
        self.log_path.chmod(0o666)
        self.smtp = SmtpSink()
        gname = grp.getgrgid(gid).gr_name
        p = self.ports
        c = self.certs
        hp = {svc: "" for svc, _, _ in LISTENERS.values()}
        if self.haproxy:
            for key, (svc, name, _ssl) in HAPROXY_LISTENERS.items():
                hp[svc] += (f"  inet_listener {name} {{\n    address = 127.0.0.1\n"
                            f"    port = {p[key]}\n    haproxy = yes\n  }}\n")
        lmtp_inet = (f"  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {p['lmtp']}\n  }}\n"
                     if self.lmtp else "")
        conf = f"""\
# Generated by tests/support/dovecot.py - private test instance.
instance_name = {self.instance_name}
base_dir = {self.base_dir}
state_dir = {self.state_dir}
listen = 127.0.0.1
protocols = imap pop3 submission sieve{" lmtp" if self.lmtp else ""}
hostname = {self.hostname}
log_path = {self.log_path}
info_log_path = {self.log_path}
debug_log_path = {self.log_path}
log_timestamp = "%Y-%m-%d %H:%M:%S "
verbose_proctitle = no
shutdown_clients = yes

default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = {min(uid, 500)}
first_valid_gid = {min(gid, 500)}
mail_uid = {uid}
mail_gid = {gid}
mail_location = maildir:~/Maildir
mail_privileged_group =

login_trusted_networks = 127.0.0.0/8 ::1/128
haproxy_trusted_networks = {self.haproxy_trusted_networks}
disable_plaintext_auth = no
auth_mechanisms = plain login{" oauthbearer xoauth2" if self.oauth2 is not None else ""}
auth_verbose = yes
auth_failure_delay = {self.auth_failure_delay}
auth_master_user_separator = *
auth_cache_size = 0

ssl = yes
ssl_cert = <{c.cert}
ssl_key = <{c.key}
ssl_ca = <{c.ca}
ssl_require_crl = no
ssl_dh = </usr/share/dovecot/dh.pem
ssl_min_protocol = TLSv1.2

passdb {{
  driver = passwd-file
  master = yes
  args = scheme=PLAIN {self.master_passwd_path}
}}
{self._user_passdb()}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.home_root}/%u
}}

namespace inbox {{
  inbox = yes
  separator = /
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {p['imap']}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {p['imaps']}
    ssl = yes
  }}
{hp['imap-login']}}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {p['pop3']}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {p['pop3s']}
    ssl = yes
  }}
{hp['pop3-login']}}}
service submission-login {{
  inet_listener submission {{
    address = 127.0.0.1
    port = {p['submission']}
  }}
  inet_listener submissions {{
    address = 127.0.0.1
    port = {p['submissions']}
    ssl = yes
  }}
{hp['submission-login']}}}
service managesieve-login {{
  inet_listener sieve {{
    address = 127.0.0.1
    port = {p['sieve']}
  }}
{hp['managesieve-login']}}}
{self._doveadm_conf()}
service lmtp {{
  unix_listener lmtp {{
    mode = 0600
  }}
{lmtp_inet}}}

pop3_uidl_format = %08Xu%08Xv
submission_relay_host = 127.0.0.1
submission_relay_port = {self.smtp.port}
submission_relay_trusted = no
submission_relay_ssl = no

plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}
{self.extra_conf}
"""
        self.conf_path.write_text(conf)
        # `gname` is unused by the config today but documents the mail group.
        self.mail_group = gname

    def _user_passdb(self) -> str:
        if self.oauth2 is None:
            return (f"passdb {{\n  driver = passwd-file\n"
                    f"  args = scheme=PLAIN username_format=%u {self.passwd_path}\n}}")
        settings = {"username_attribute": "email", "active_attribute": "active",
                    "active_value": "true", **self.oauth2}
        ext = self.dir / "dovecot-oauth2.conf.ext"
        ext.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        ext.chmod(0o644)
        return f"passdb {{\n  driver = oauth2\n  mechanisms = plain login oauthbearer xoauth2\n  args = {ext}\n}}"

    def _doveadm_conf(self) -> str:
        """doveadm TCP / HTTP listeners, only when asked for (private ports)."""
        if self.doveadm_password is None and self.doveadm_api_key is None:
            return ""
        out = ""
        listeners = ""
        if self.doveadm_password is not None:
            out += f"doveadm_password = {self.doveadm_password}\n"
            listeners += (f"  inet_listener {{\n    address = 127.0.0.1\n"
                          f"    port = {self.ports['doveadm']}\n  }}\n")
        if self.doveadm_api_key is not None:
            out += f"doveadm_api_key = {self.doveadm_api_key}\n"
            listeners += (f"  inet_listener http {{\n    address = 127.0.0.1\n"
                          f"    port = {self.ports['doveadm_http']}\n    ssl = no\n  }}\n")
        return out + "service doveadm {\n" + listeners + "}\n"

    def doveadm(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """Run the real doveadm CLI against this instance (its own config)."""
        return subprocess.run(["doveadm", "-c", str(self.conf_path), *args],
                              capture_output=True, text=True, timeout=timeout)

    # -------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 20.0) -> "DovecotBackend":
        if not Path(DOVECOT).exists():
            raise RuntimeError(f"{DOVECOT} not found (install dovecot-core; "
                               "scripts/install-deps.sh does)")
        self._write_files()
        # Validate config first: much clearer errors than a dying daemon.
        chk = subprocess.run([DOVECOT, "-c", str(self.conf_path), "-n"],
                             capture_output=True, text=True)
        if chk.returncode != 0:
            raise RuntimeError(f"dovecot config invalid:\n{chk.stderr}")
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "TZ", "LANG")}
        self.proc = subprocess.Popen(
            die_with_parent([DOVECOT, "-c", str(self.conf_path), "-F"]),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, start_new_session=True)
        _instances.append(self)
        try:
            deadline = time.monotonic() + timeout
            for key in self.ports:
                wait_for_port(self.ports[key], timeout=max(0.1, deadline - time.monotonic()),
                              proc=self.proc)
        except Exception:
            out = b""
            if self.proc.poll() is not None and self.proc.stdout:
                out = self.proc.stdout.read()
            self.stop()
            raise RuntimeError(f"dovecot did not come up: {out.decode(errors='replace')}\n"
                               f"log:\n{self.read_log()}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self in _instances:
            _instances.remove(self)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # Kill the whole private process group (we started it).
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
        if self.smtp is not None:
            self.smtp.close()
            self.smtp = None
        if self._own_dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "DovecotBackend":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ logs
    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self) -> int:
        self.log.refresh()
        return self.log.mark()

    def wait_for_log(self, regex: str, timeout: float = 10.0, since: int = 0):
        return self.log.wait_for(regex, timeout=timeout, since=since)

    # ----------------------------------------------------------------- mail
    def maildir(self, user: str) -> Path:
        return self.home_root / user / "Maildir"

    def deliver(self, user: str, message: bytes) -> None:
        """Drop a message straight into user's INBOX (maildir/new)."""
        md = self.maildir(user)
        for sub in ("cur", "new", "tmp"):
            (md / sub).mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}.P{os.getpid()}.portier-test"
        path = md / "new" / name
        path.write_bytes(message)
        for p in [self.home_root / user, md, md / "cur", md / "new", md / "tmp", path]:
            os.chown(p, self.mail_uid, self.mail_gid)


@atexit.register
def _cleanup() -> None:   # pragma: no cover - safety net
    for inst in list(_instances):
        try:
            inst.stop()
        except Exception:
            pass


if __name__ == "__main__":   # pragma: no cover - manual check
    with DovecotBackend() as dc:
        print("dovecot up:", dc.ports, "log:", dc.log_path)
        print(dc.read_log())
