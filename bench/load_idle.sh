#!/usr/bin/env bash
# The large load run (not in CI): IDLE logged-in IMAP sessions held through
# portier to a private real Dovecot, plus BURST concurrent full logins while
# they are held; prints timings and portier's RSS/PSS per idle session.
#   bench/load_idle.sh                      9 000 idle + 500 burst
#   IDLE=2000 BURST=500 bench/load_idle.sh  the CI size
#   bench/load_idle.sh --json               (extra args go to tests/support/loadgen.py)
# portier holds 2 descriptors per session: 9 500 sessions need ~19 000, so
# the descriptor limit (soft = hard here: 20 000) caps this at ~9 900.
# Needs root (Dovecot), a built portier ($PORTIER_BIN or build/portier).
set -euo pipefail
cd "$(dirname "$0")/.."
export PORTIER_BIN="${PORTIER_BIN:-$PWD/build/portier}"
ulimit -n "$(ulimit -Hn)"
exec /usr/bin/python3 -m tests.support.loadgen --idle "${IDLE:-9000}" --burst "${BURST:-500}" "$@"
