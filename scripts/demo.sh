#!/usr/bin/env bash
# Demo: a private Dovecot backend with demo users on loopback and portier in
# front of it on fixed ports (IMAP 10143 plain+STARTTLS, 10993 implicit TLS).
# Prints how to connect; runs in the foreground until Ctrl-C, then stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
exec /usr/bin/python3 -m tests.support.demo "$@"
