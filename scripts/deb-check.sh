#!/usr/bin/env bash
# Build the Debian package in a temporary copy of the tree, check it with
# lintian (errors fail), install it, check what it installed, and purge it:
#   - dpkg-buildpackage -b -us -uc -> portier_<version>_<arch>.deb
#   - portier --check -c /etc/portier/portier.toml; man -w portier portier.toml
#   - the `portier` system user, config permissions, fail2ban files, the unit
#     (systemd-analyze verify)
#   - the unit's privilege model without a running systemd: portier as user
#     portier with only CAP_NET_BIND_SERVICE (ambient) and no_new_privs binds
#     a port below 1024 and reads /etc/portier (setpriv)
# Needs root (dpkg -i). Part of scripts/test.sh (CI). Exits non-zero on failure.
#   KEEP_DEB=DIR scripts/deb-check.sh   also copy the .deb to DIR
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
say() { echo "== deb-check: $1 ($(( $(date +%s) - start )) s)"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

# A fixed path: the build's compiler arguments (-ffile-prefix-map=<dir>=.)
# stay the same from run to run, so ccache can hit. One run at a time.
tmp=${TMPDIR:-/tmp}/portier-deb-check
exec 9>"$tmp.lock"
flock -n 9 || { echo "deb-check: another run holds $tmp.lock"; exit 1; }
rm -rf "$tmp"
mkdir -p "$tmp"
installed=""
cleanup() {
  if [ -n "$installed" ]; then $SUDO dpkg --purge portier >/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# The tree as git sees it (tracked + new files, nothing ignored: no build dirs).
mkdir "$tmp/portier"
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done |
  tar --null -T - -cf - | tar -xf - -C "$tmp/portier"

export DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}"
if command -v ccache >/dev/null; then
  export PORTIER_DEB_CCACHE=1 CCACHE_BASEDIR="$tmp/portier" CCACHE_DIR="${CCACHE_DIR:-$HOME/.ccache}"
fi
(cd "$tmp/portier" && dpkg-buildpackage -b -us -uc) >"$tmp/build.log" 2>&1 ||
  { tail -60 "$tmp/build.log"; echo "deb-check: dpkg-buildpackage failed"; exit 1; }
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
arch=$(dpkg --print-architecture)
deb="$tmp/portier_${version}_${arch}.deb"
[ -f "$deb" ] || { ls "$tmp"; echo "deb-check: $deb not built"; exit 1; }
say "built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"
if [ -n "${KEEP_DEB:-}" ]; then cp "$deb" "$KEEP_DEB"/; fi

# lintian: errors fail; warnings are printed (justified ones in debian/portier.lintian-overrides).
lintian --fail-on error --tag-display-limit 0 "$deb" | tee "$tmp/lintian.log"
say "lintian: $(grep -c '^E:' "$tmp/lintian.log" || true) errors, $(grep -c '^W:' "$tmp/lintian.log" || true) warnings"

if dpkg-query -W -f='${Status}' portier 2>/dev/null | grep -q "install ok installed"; then
  echo "deb-check: a portier package is already installed here; refusing to replace it"
  exit 1
fi
installed=1
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$deb" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; exit 1; }
say "installed"

fail() { echo "deb-check: FAILED: $*"; exit 1; }
/usr/sbin/portier --version
/usr/sbin/portier --check -c /etc/portier/portier.toml || fail "portier --check on the packaged config"
man -w portier >/dev/null || fail "man -w portier"
man -w portier.toml >/dev/null || fail "man -w portier.toml"
man -w 8 portier | grep -q 'man8/portier.8' || fail "portier(8) not in section 8"
getent passwd portier >/dev/null || fail "no portier system user"
for f in /etc/portier/portier.toml /etc/portier/users.passwd; do
  [ "$(stat -c '%U:%G %a' "$f")" = "root:portier 640" ] || fail "permissions of $f: $(stat -c '%U:%G %a' "$f")"
done
[ -f /etc/fail2ban/filter.d/portier.conf ] && [ -f /etc/fail2ban/jail.d/portier.conf ] ||
  fail "fail2ban files"
unit=/lib/systemd/system/portier.service
[ -f "$unit" ] || fail "no systemd unit"
grep -q '^Type=notify' "$unit" || fail "unit is not Type=notify"
dpkg-query -L portier | grep -qx /etc/portier/portier.toml || fail "config not in the package"
grep -qx /etc/portier/portier.toml /var/lib/dpkg/info/portier.conffiles || fail "config is not a conffile"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
fi

# The unit's privilege model, emulated: user portier, only CAP_NET_BIND_SERVICE
# (ambient, as AmbientCapabilities=), no_new_privs; reads /etc/portier; binds
# a privileged port (a loopback address of its own: 127.0.0.0/8 is all local).
conf="$tmp/priv.toml"
sed -e 's/^address = "127.0.0.1"/address = "127.11.0.1"/' \
    -e 's|^path = "users.passwd"|path = "/etc/portier/users.passwd"|' \
    /etc/portier/portier.toml >"$conf"
chmod 644 "$conf"
chmod 755 "$tmp"
setpriv --reuid=portier --regid=portier --init-groups --no-new-privs \
  --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service \
  --bounding-set=-all,+net_bind_service \
  /usr/sbin/portier -c "$conf" >"$tmp/run.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  grep -q 'portier: Info: Ready' "$tmp/run.log" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
grep -q 'Listening on 127.11.0.1:143 (imap' "$tmp/run.log" || { cat "$tmp/run.log"; fail "bind 143 as user portier"; }
exec 3<>/dev/tcp/127.11.0.1/143 && read -r -t 5 banner <&3 && exec 3<&- || true
case "${banner:-}" in "* OK"*) ;; *) kill "$pid"; fail "no IMAP greeting from the unprivileged portier: '${banner:-}'";; esac
kill -TERM "$pid"
wait "$pid" || fail "portier did not stop cleanly"
say "runs as user portier with CAP_NET_BIND_SERVICE only"

$SUDO dpkg --purge portier >/dev/null
installed=""
[ ! -e /usr/sbin/portier ] && [ ! -e /etc/portier/portier.toml ] || fail "purge left files behind"
say "purged; package OK"
