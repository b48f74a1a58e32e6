#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan; build-fuzz/) and runs them. docs/security.md.
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]   one target (e.g. config_toml), one long run
#   scripts/fuzz.sh --all SECONDS_TOTAL                   every target, the time split between them
#   scripts/fuzz.sh --list                                the targets
#   scripts/fuzz.sh --seeds                               rewrite the seed corpora in fuzz/corpus/
# New inputs go to $BUILD_DIR/corpus/TARGET (seeded from fuzz/corpus/TARGET, which is not written);
# a crash leaves $BUILD_DIR/artifacts/TARGET/crash-* and a non-zero exit. Reproduce with
#   $BUILD_DIR/bin/fuzz_TARGET $BUILD_DIR/artifacts/TARGET/crash-...
# Environment: BUILD_DIR (default build-fuzz), JOBS (build jobs), FUZZ_PARALLEL (--all: targets
# run at once, default 1), FUZZ_NICE (niceness of the fuzzers, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(config_toml config_yaml config_json dotenv command expand proto api_request translate)
BUILD_DIR="${BUILD_DIR:-build-fuzz}"
export BUILD_DIR
NICE="${FUZZ_NICE:-10}"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

build() {
  scripts/deps.sh
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    local gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    local launcher=()
    command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    cmake -S . -B "$BUILD_DIR" "${gen[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER=clang++ -DPROVISR_FUZZ=ON -DPROVISR_BUILD_TESTS=OFF >/dev/null
  fi
  cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}" --target "$@"
}

max_len() {
  case "$1" in
    config_*|translate) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

# run TARGET SECONDS [flags]: one bounded run; prints a summary line; returns libFuzzer's status.
run() {
  local t="$1" secs="$2"
  shift 2
  local bin="$BUILD_DIR/bin/fuzz_$t"
  local work="$BUILD_DIR/corpus/$t" art="$BUILD_DIR/artifacts/$t" log="$BUILD_DIR/logs/$t.log"
  mkdir -p "$work" "$art" "$(dirname "$log")"
  local tmp
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/provisr-fuzz-$t.XXXXXX")"
  local seeds=()
  [ -d "fuzz/corpus/$t" ] && seeds=("fuzz/corpus/$t")
  local rc=0
  # Leaks are checked: the targets free what they allocate. -timeout catches hangs (bounded loops).
  TMPDIR="$tmp" nice -n "$NICE" "$bin" "$work" "${seeds[@]}" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=2048 -max_len="$(max_len "$t")" -artifact_prefix="$art/" -print_final_stats=1 "$@" \
    >"$log" 2>&1 || rc=$?
  rm -rf "$tmp"
  local execs cov ft eps
  execs="$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
  eps="$(grep -m1 -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)"
  ft="$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)"
  printf '%-12s %6ss  execs %-10s exec/s %-7s cov %-6s ft %-6s corpus %-5s %s\n' "$t" "$secs" "${execs:-?}" \
    "${eps:-?}" "${cov:-?}" "${ft:-?}" "$(ls "$work" | wc -l)" "$([ $rc -eq 0 ] && echo ok || echo "FAILED (rc $rc, $log)")"
  if [ $rc -ne 0 ]; then
    grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|fuzz property violated' "$log" || true
    ls -t "$art" | head -1 | sed "s|^|  input: $art/|"
    echo "  reproduce: $bin <input>"
  fi
  return $rc
}

[ $# -ge 1 ] || usage
case "$1" in
  --list) printf '%s\n' "${TARGETS[@]}" ;;
  --seeds)
    build fuzz_seed_writer
    "$BUILD_DIR/bin/fuzz_seed_writer" fuzz/corpus
    python3 fuzz/make_seeds.py
    ;;
  --all)
    [ $# -eq 2 ] || usage
    total="$2"
    per=$(( total / ${#TARGETS[@]} ))
    [ $per -ge 1 ] || per=1
    build fuzz
    par="${FUZZ_PARALLEL:-1}"
    failed=0
    pids=()
    for t in "${TARGETS[@]}"; do
      run "$t" "$per" & pids+=($!)
      if [ ${#pids[@]} -ge "$par" ]; then
        wait "${pids[0]}" || failed=1
        pids=("${pids[@]:1}")
      fi
    done
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    exit $failed
    ;;
  -*) usage ;;
  *)
    [ $# -ge 2 ] || usage
    t="$1" secs="$2"
    shift 2
    printf '%s\n' "${TARGETS[@]}" | grep -qx "$t" || { echo "unknown target $t (see --list)" >&2; exit 2; }
    build "fuzz_$t"
    run "$t" "$secs" "$@"
    ;;
esac
