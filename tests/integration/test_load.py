"""Bounded load (issue 4, CI size): 2 000 idle logged-in IMAP sessions held
through portier to a real Dovecot, plus 500 concurrent full logins while
they are held, with zero errors; portier's memory per idle session is
measured (smaps_rollup) and bounded.

The driver is tests/support/loadgen.py; the large version (9 000 idle) is
bench/load_idle.sh, results in docs/LOAD.md.
"""
from __future__ import annotations

import asyncio
import re
import signal

import pytest

from tests.support.loadgen import LoadRig, raise_fd_limit, run_load

IDLE, BURST = 2000, 500
WARMUP = 8                      # full logins run_load() makes before measuring
DEADLINE = 150                  # seconds for the whole test (typically ~15)
# Regression bound; measured ~2 KiB (docs/LOAD.md).
MAX_PSS_PER_SESSION_KIB = 16


@pytest.mark.slow
def test_idle_sessions_and_concurrent_logins(portier_available, tmp_path, record_property):
    # This test needs more than conftest's default per-test deadline.
    signal.setitimer(signal.ITIMER_REAL, DEADLINE)
    need = 2 * (IDLE + BURST) + 1000       # portier: 2 per session; this process: 1
    have = raise_fd_limit(need)
    assert have >= need, f"RLIMIT_NOFILE hard limit {have} < {need} needed for this test"
    with LoadRig(IDLE + BURST, tmp_path) as rig:
        res = asyncio.run(run_load(rig, IDLE, BURST, ramp=64, timeout=30))
        print(res.summary())
        for k in ("idle_open_s", "burst_s", "burst_p99_ms", "rss_per_session_kib",
                  "pss_per_session_kib", "total_s"):
            record_property(k, round(getattr(res, k), 2))
        px = rig.portier
        # The clients are done; their relays end as portier reads the last
        # end of stream. Await every session's end line before stopping
        # (a stop first would end the stragglers "by proxy").
        try:
            px.log.wait_for(r"proxy\(load\d+,[^)]+\): Disconnected by ",
                            count=IDLE + BURST + WARMUP, timeout=30)
        except TimeoutError:
            pass  # reported by the count below
        dc_log = rig.dovecot.read_log()
        px.stop(timeout=30, check=True)

    assert res.errors == [], "\n".join(res.errors)
    started = px.log.find(r"imap-login: Info: proxy\(load\d+,[^)]+\): Started proxying")
    assert len(started) == IDLE + BURST + WARMUP
    # Every session ended by its LOGOUT (the backend closes first after it).
    ended = px.log.find(r"proxy\(load\d+,[^)]+\): Disconnected by (server|client) ")
    other_ends = [l for l in px.log.lines()
                  if re.search(r"proxy\(load\d+,[^)]+\): Disconnected by (?!server |client )", l)]
    assert len(ended) == IDLE + BURST + WARMUP, "\n".join(other_ends[:20])
    bad = [l for l in px.log.lines() if re.search(r": (Warning|Error|Fatal): ", l)]
    assert bad == [], "\n".join(bad[:20])
    dc_bad = [l for l in dc_log.splitlines()
              if re.search(r": (Warning|Error|Fatal|Panic): ", l)]
    assert dc_bad == [], "\n".join(dc_bad[:20])
    # Both descriptors of every idle session were held at the measurement.
    assert res.fds_idle >= 2 * IDLE, res.summary()
    assert res.pss_per_session_kib < MAX_PSS_PER_SESSION_KIB, res.summary()
    assert res.total_s < 120, res.summary()
