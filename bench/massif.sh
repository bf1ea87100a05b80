#!/usr/bin/env bash
# Heap per idle session in portier and where it is allocated (valgrind massif).
#   bench/massif.sh [--build DIR] [--out FILE] [--sessions 2000] [--tls]
# See bench/massif.py.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${PORTIER_BUILD_DIR:-$REPO/build}"
OUT=""
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[ -n "$OUT" ] || OUT="$BUILD/bench-results/massif.json"
mkdir -p "$(dirname "$OUT")"
exec /usr/bin/python3 "$REPO/bench/massif.py" --build "$BUILD" --out "$OUT" "${ARGS[@]+"${ARGS[@]}"}"
