#!/usr/bin/env bash
# Configure (once) and build portier + unit tests into ./build (or $BUILD_DIR).
# Idempotent: re-running only rebuilds what changed.
#   BUILD_TYPE=Release scripts/build.sh      (default RelWithDebInfo)
#   PORTIER_SANITIZE=ON scripts/build.sh     (ASan+UBSan; use a separate BUILD_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}
args=(-S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE")
if [ -n "${PORTIER_SANITIZE:-}" ]; then args+=(-DPORTIER_SANITIZE="$PORTIER_SANITIZE"); fi
# Pick the generator only on first configure; an existing cache keeps its own.
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then args+=(-G Ninja); fi
cmake "${args[@]}"
cmake --build "$BUILD_DIR" --parallel "$(nproc)"
