#!/usr/bin/env bash
# The side-by-side benchmark of issue 5 (see docs/BENCHMARKS.md):
# a real Dovecot backend + a scripted fast backend on loopback, and in front of
# them Dovecot's proxy, nginx's mail proxy, portier and bare splice/copy/TLS
# relays, all measured the same way in one run.
#
#   bench/run.sh                 full run (~10 min): builds what is missing,
#                                measures, writes docs/BENCHMARKS.md + chart
#   bench/run.sh --smoke         seconds: builds nothing, minimal counts,
#                                checks that every measurement works (CI)
#   bench/run.sh [--build DIR] [--out DIR] [--no-report] [--no-callgrind]
#                [run.py options...]
#
# The build dir defaults to $PORTIER_BUILD_DIR or ./build; results go to
# <build>/bench-results/<timestamp>/ unless --out is given.
# Needs: scripts/install-deps.sh + bench/install-deps.sh packages.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${PORTIER_BUILD_DIR:-$REPO/build}"
export BENCH_CMDLINE="bench/run.sh $*"
OUT=""
SMOKE=0
REPORT=1
CALLGRIND=1
PASS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    --no-report) REPORT=0; shift ;;
    --no-callgrind) CALLGRIND=0; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exec /usr/bin/python3 "$REPO/bench/run.py" --help ;;
    *) PASS+=("$1"); shift ;;
  esac
done
BUILD="$(cd "$BUILD" 2>/dev/null && pwd || echo "$BUILD")"
TOOLS=(portier bench/loadgen bench/fastimapd bench/barerelay)

if [ "$SMOKE" = 0 ]; then
  if [ ! -f "$BUILD/build.ninja" ] && [ ! -f "$BUILD/Makefile" ]; then
    cmake -S "$REPO" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
  fi
  cmake --build "$BUILD" --target portier bench_loadgen bench_fastimapd bench_barerelay
fi
for t in "${TOOLS[@]}"; do
  if [ ! -x "$BUILD/$t" ]; then
    echo "bench/run.sh: $BUILD/$t missing: build with -DPORTIER_BENCH=ON first" >&2
    exit 2
  fi
done

if [ -z "$OUT" ]; then
  OUT="$BUILD/bench-results/$(date +%Y%m%d-%H%M%S)$([ "$SMOKE" = 1 ] && echo -smoke)"
fi
ARGS=(--build "$BUILD" --out "$OUT")
[ "$SMOKE" = 1 ] && ARGS+=(--smoke)
rc=0
/usr/bin/python3 "$REPO/bench/run.py" "${ARGS[@]}" "${PASS[@]+"${PASS[@]}"}" || rc=$?

if [ "$SMOKE" = 1 ]; then
  # Smoke: render the report into the results dir (never over docs/), and run
  # each micro-benchmark for a moment.
  /usr/bin/python3 "$REPO/bench/report.py" --results "$OUT/results.json" \
    --doc "$OUT/BENCHMARKS.md" --png "$OUT/benchmarks.png" || rc=1
  for m in "$BUILD"/bench/micro_*; do
    [ -x "$m" ] || continue
    "$m" --benchmark_min_time=0.001 >"$OUT/$(basename "$m").txt" 2>&1 \
      || { echo "smoke: $m failed" >&2; rc=1; }
  done
  [ "$rc" = 0 ] && echo "bench smoke: OK ($OUT)" || echo "bench smoke: FAILED ($OUT)"
  exit "$rc"
fi
if [ "$CALLGRIND" = 1 ] && command -v valgrind >/dev/null; then
  "$REPO/bench/callgrind.sh" --build "$BUILD" --out "$OUT/callgrind.json" || rc=1
fi
if [ "$REPORT" = 1 ] && [ -f "$OUT/results.json" ]; then
  /usr/bin/python3 "$REPO/bench/report.py" --results "$OUT/results.json" \
    --doc "$REPO/docs/BENCHMARKS.md" --png "$REPO/docs/benchmarks.png"
fi
exit "$rc"
