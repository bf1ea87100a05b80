"""Shared fixtures for portier's integration tests.

Session scope: throwaway certificates and one private Dovecot backend.
Function scope: `make_portier(...)` (started portier processes, stopped with
SIGTERM at teardown and checked for a clean exit and for leaked passwords)
and `make_fake(...)` (scripted fake backends).

Every test runs under a hard deadline (PORTIER_TEST_TIMEOUT, default 60 s)
so a hang fails one test instead of the whole CI job.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.support.accounts import BACKEND_USERS, MASTER_USERS
from tests.support.certs import Certs, make_certs
from tests.support.dovecot import DovecotBackend
from tests.support.fake_backend import FakeBackend
from tests.support.portier import (DEFAULT_LISTENERS, Listener, Portier, PortierError, User,
                                   portier_bin)


TEST_TIMEOUT = float(os.environ.get("PORTIER_TEST_TIMEOUT", "60"))


# ------------------------------------------------------------ per-test deadline
class DeadlineExceeded(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    def _alarm(signum, frame):
        raise DeadlineExceeded(f"test exceeded {TEST_TIMEOUT:.0f}s deadline")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------- backends
@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def dovecot(certs) -> DovecotBackend:
    dc = DovecotBackend(users=BACKEND_USERS, master_users=MASTER_USERS, certs=certs)
    dc.start()
    yield dc
    dc.stop()


@pytest.fixture(scope="session")
def portier_available() -> Path:
    b = portier_bin()
    if not b.exists():
        pytest.fail(f"portier binary missing: {b} (run scripts/build.sh)", pytrace=False)
    return b


def _dump(p: Portier) -> None:
    # Shown by pytest only for failing tests ("Captured stdout teardown").
    print(f"----- {p.name} log ({p.conf_path}) -----")
    print(p.log.text())


def check_no_secrets(p: Portier, extra: list[str] = ()) -> None:
    text = p.log.text()
    for s in list(p.secrets()) + list(extra):
        assert s not in text, f"password {s!r} appears in portier's log"


class PortierFactory:
    """Creates started Portier instances; stops and checks them at teardown."""

    def __init__(self, tmp_path: Path, certs: Certs) -> None:
        self.tmp_path = tmp_path
        self.certs = certs
        self.instances: list[Portier] = []

    def __call__(self, users: list[User], *, settings: dict[str, dict[str, Any]] | None = None,
                 listeners=DEFAULT_LISTENERS, extra_toml: str = "",
                 env: dict[str, str] | None = None) -> Portier:
        n = len(self.instances)
        p = Portier(self.tmp_path / f"portier{n}", users=users, certs=self.certs,
                    listeners=listeners, settings=settings, extra_toml=extra_toml,
                    name=f"portier{n}", env=env)
        self.instances.append(p)
        p.start()
        return p

    def teardown(self) -> None:
        errors = []
        for p in self.instances:
            try:
                p.stop(check=True)
            except PortierError as e:
                errors.append(str(e))
            _dump(p)
            try:
                check_no_secrets(p)
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture
def make_portier(tmp_path, certs, portier_available) -> Callable[..., Portier]:
    f = PortierFactory(tmp_path, certs)
    yield f
    f.teardown()


@pytest.fixture(scope="module")
def module_portier_factory(tmp_path_factory, certs, portier_available):
    f = PortierFactory(tmp_path_factory.mktemp("portier"), certs)
    yield f
    f.teardown()


class FakeFactory:
    def __init__(self) -> None:
        self.backends: list[FakeBackend] = []

    def __call__(self, script, **kw) -> FakeBackend:
        fb = FakeBackend(script, name=kw.pop("name", f"fake{len(self.backends)}"), **kw)
        self.backends.append(fb)
        return fb

    def close(self) -> None:
        for fb in self.backends:
            fb.close()
            for c in fb.connections:
                print(f"{fb.name} conn#{c.index}: failure={c.failure} events={c.events}\n"
                      f"  received={c.received!r}\n  sent={b''.join(c.sent)!r}")


@pytest.fixture
def make_fake() -> Callable[..., FakeBackend]:
    f = FakeFactory()
    yield f
    f.close()


# --------------------------------------------------------------------- report
def pytest_report_header(config):
    b = portier_bin()
    return [f"portier binary: {b} ({'present' if b.exists() else 'MISSING'}); "
            f"python: {sys.executable}"]
