#!/usr/bin/env bash
# Instructions per IMAP login in portier, counted by callgrind (deterministic,
# unlike wall-clock on this shared 2-core machine). See bench/callgrind.py.
#   bench/callgrind.sh [--build DIR] [--out FILE] [--n1 50] [--n2 250] [--workers 1]
# Prints the figure; writes JSON (default <build>/bench-results/callgrind.json)
# and keeps the N2 run's callgrind.out next to it for callgrind_annotate.
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
[ -n "$OUT" ] || OUT="$BUILD/bench-results/callgrind.json"
mkdir -p "$(dirname "$OUT")"
exec /usr/bin/python3 "$REPO/bench/callgrind.py" --build "$BUILD" --out "$OUT" "${ARGS[@]+"${ARGS[@]}"}"
