#!/usr/bin/env bash
# The whole test suite, as CI runs it on a fresh Debian 12 machine:
# Debian packages, build, unit tests (ctest), then the integration tests
# (pytest, Debian's /usr/bin/python3) against a private Dovecot backend.
# Exits non-zero on any failure; pytest's summary line is the last output.
#   PYTEST_ARGS="-k faults -x" scripts/test.sh   extra pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure --parallel "$(nproc)"
export PORTIER_BIN="${PORTIER_BIN:-$PWD/${BUILD_DIR:-build}/portier}"
# -p no:cacheprovider: leave no .pytest_cache behind in the checkout.
# shellcheck disable=SC2086
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider ${PYTEST_ARGS:-} tests/integration
