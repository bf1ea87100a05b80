#!/usr/bin/env bash
# Debian 12 packages the benchmarks need on top of scripts/install-deps.sh:
# nginx + its mail module (peer), gnuplot (chart), Google Benchmark (micro
# benchmarks), valgrind (callgrind instruction counts), strace (system calls
# per login). Safe to run repeatedly.
# Never starts the system nginx or Dovecot service.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS=(nginx-core libnginx-mod-mail gnuplot-nox libbenchmark-dev valgrind strace)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
