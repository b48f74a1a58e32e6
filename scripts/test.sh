#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest. Exits non-zero on any failure.
#   scripts/test.sh              the whole suite
#   scripts/test.sh --sanitize   the whole suite built with AddressSanitizer + UBSan (build-asan/)
#   scripts/test.sh -R REGEX     only the tests whose name matches (passed to ctest)
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=0
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=1 ;;
    *) ctest_args+=("$1") ;;
  esac
  shift
done

scripts/deps.sh
if [ $sanitize -eq 1 ]; then
  export BUILD_DIR="${BUILD_DIR:-build-asan}"
  scripts/build.sh -DPROVISR_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
else
  export BUILD_DIR="${BUILD_DIR:-build}"
  scripts/build.sh
fi
cd "$BUILD_DIR"
ctest --output-on-failure -j "${TEST_JOBS:-2}" "${ctest_args[@]}"
