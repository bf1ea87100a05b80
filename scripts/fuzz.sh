#!/usr/bin/env bash
# Builds the libFuzzer targets (CMake preset `fuzz`: clang-14, ASan+UBSan,
# build-fuzz/) and, for each target, replays its committed corpus
# (fuzz/corpus/<target>) and then fuzzes it for FUZZ_SECONDS.
# Exits non-zero if any target crashes, leaks, times out or breaks an invariant.
#
#   scripts/fuzz.sh                      all targets, 30 s each (CI)
#   FUZZ_SECONDS=300 scripts/fuzz.sh imap_frontend pop3_backend
#   FUZZ_SECONDS=0 scripts/fuzz.sh       replay the corpora only
#   FUZZ_JOBS=2        targets fuzzed at the same time (default: nproc)
#   FUZZ_WORK=dir      new inputs, crash artifacts, logs (default build-fuzz/fuzz-work)
#   FUZZ_MERGE=1       afterwards, merge new coverage-increasing inputs into fuzz/corpus
#   FUZZ_NO_BUILD=1    use the existing build-fuzz/
# One summary line per target: execs, coverage (cov: edges, ft: features), corpus size.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-30}
JOBS=${FUZZ_JOBS:-$(nproc)}
BUILD=build-fuzz
WORK=${FUZZ_WORK:-$BUILD/fuzz-work}

if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz --parallel "$(nproc)" --target fuzz_all
fi

ALL=$(sed -n '/^set(PORTIER_FUZZ_TARGETS$/,/)/p' fuzz/CMakeLists.txt | tr -d '()' |
      sed 's/set//; s/PORTIER_FUZZ_TARGETS//' | xargs)
TARGETS=${*:-$ALL}

dict_for() {
  case "$1" in
    imap_*) echo imap ;;
    pop3_*) echo pop3 ;;
    submission_*) echo submission ;;
    managesieve_*) echo managesieve ;;
    sasl_*) echo sasl ;;
    passwd_file | proxy_fields) echo passwd ;;
    *) echo "$1" ;;
  esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

run_one() {
  local t=$1 bin=$BUILD/fuzz/fuzz_$1 d log
  d=fuzz/dict/$(dict_for "$t").dict
  log=$WORK/logs/$t.log
  mkdir -p "$WORK/corpus/$t" "$WORK/artifacts" "$WORK/logs"
  local common=(-dict="$d" -max_len=8192 -timeout=10 -rss_limit_mb=2048
                -artifact_prefix="$WORK/artifacts/$t-" -print_final_stats=1)
  # 1. Replay every committed input once.
  if ! "$bin" "${common[@]}" -runs=0 "fuzz/corpus/$t" >"$log" 2>&1; then
    echo "fuzz $t: REPLAY FAILED (log: $log)"; tail -40 "$log"; return 1
  fi
  [ "$SECONDS_EACH" -gt 0 ] || { echo "fuzz $t: corpus replayed ok"; return 0; }
  # 2. Fuzz; new inputs go to $WORK, the committed corpus is only read.
  if ! "$bin" "${common[@]}" -max_total_time="$SECONDS_EACH" \
      "$WORK/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1; then
    echo "fuzz $t: FAILED after fuzzing (log: $log)"; grep -a -A40 -m1 -E "ERROR|invariant|deadly|Timeout" "$log" || tail -40 "$log"
    return 1
  fi
  local execs cov ft corpus
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  read -r cov ft corpus < <(grep -a -E '^#[0-9]+' "$log" | tail -1 |
    sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/\1 \2 \3/')
  echo "fuzz $t: ok ${SECONDS_EACH}s execs=$execs cov=$cov ft=$ft corpus=$corpus"
  if [ -n "${FUZZ_MERGE:-}" ]; then
    "$bin" -merge=1 "fuzz/corpus/$t" "$WORK/corpus/$t" >>"$log" 2>&1
  fi
}

fail=0
pids=() names=()
for t in $TARGETS; do
  [ -x "$BUILD/fuzz/fuzz_$t" ] || { echo "fuzz: no target $t"; exit 2; }
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  run_one "$t" &
  pids+=($!) names+=("$t")
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { fail=1; echo "fuzz: ${names[$i]} failed"; }
done
exit $fail
