#!/usr/bin/env bash
# Installs every Debian 12 package portier needs to build, test and run its demo.
# Safe to run repeatedly. Never starts the system Dovecot (or fail2ban) service.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS=(
  build-essential cmake ninja-build pkg-config
  libasio-dev libssl-dev libfmt-dev libtomlplusplus-dev libcrypt-dev
  libgtest-dev libgmock-dev
  dovecot-core dovecot-imapd dovecot-pop3d dovecot-submissiond dovecot-managesieved
  python3 python3-pytest curl openssl ca-certificates procps iproute2
  sieve-connect
  clang-14 libclang-rt-14-dev llvm-14
  nginx-core libnginx-mod-mail gnuplot-nox libbenchmark-dev
  haproxy
  postgresql libpq-dev libsqlite3-dev
  libsystemd-dev fail2ban scdoc debhelper lintian fakeroot dpkg-dev man-db
  nlohmann-json3-dev slapd ldap-utils libldap-dev dovecot-lmtpd postfix prometheus python3-pytest-xdist
  libhttp-parser-dev python3-cryptography libcurl4-openssl-dev
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  # Keep Debian's maintainer scripts from starting the system dovecot service:
  # tests and the demo run their own private instances.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
