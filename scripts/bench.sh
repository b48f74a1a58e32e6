#!/bin/bash
# provisr against supervisord, PM2, s6, runit and daemontools, side by side in one run (issue 8).
#
# usage: scripts/bench.sh [--reps N] [--peers provisr,s6,...] [--no-install] [--no-build] [WORKLOAD...]
#   WORKLOAD: start (cold start + stop of 500), idle (CPU over 10 s + PSS, 100 children),
#             status (CLI status of 100, hyperfine), restart (latency, child living 0.2 s),
#             log (200 MB through the supervisor's log file), http (wrk on GET /status?name=),
#             scale (100..5000 instances). None = all of them (about 15 minutes on 2 cores).
#
# Installs what is missing (Debian: supervisor s6 runit daemontools hyperfine wrk gnuplot-nox;
# npm: pm2 into bench/.peers/, not committed), builds provisr in build-bench (RelWithDebInfo) and
# the two bench programs, runs the workloads, and writes bench/RESULTS.md (+ bench/scale.png).
# A run of some workloads writes its RESULTS.md into build-bench/bench/out-*/ instead.
# Run it in the foreground of a terminal session: PM2 behaves differently in the background.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${PROVISR_BENCH_BUILD:-$root/build-bench}
peers_dir=$root/bench/.peers
install=1
build_it=1
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --no-install) install=0 ;;
    --no-build) build_it=0 ;;  # use the binaries already in build-bench
    --reps|--peers) args+=("$1" "$2"); shift ;;
    -h|--help) sed -n 2,14p "$0"; exit 0 ;;
    *) args+=("$1") ;;
  esac
  shift
done

if [ $install = 1 ]; then
  need=()
  for pair in supervisord:supervisor s6-svscan:s6 runsvdir:runit svscan:daemontools hyperfine:hyperfine \
              wrk:wrk gnuplot:gnuplot-nox strace:strace; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "bench: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  fi
  if [ ! -x "$peers_dir/npm/node_modules/.bin/pm2" ]; then
    command -v npm >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >&2; }
    echo "bench: installing pm2 into $peers_dir/npm" >&2
    npm install --prefix "$peers_dir/npm" --no-audit --no-fund pm2@7 >&2
  fi
  "$root/scripts/deps.sh" >&2
fi

export CCACHE_BASEDIR=$root CCACHE_DIR=${CCACHE_DIR:-/work/.ccache}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [ $build_it = 1 ]; then
[ -f "$build/CMakeCache.txt" ] || cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >&2
cmake --build "$build" -j2 --target provisr provisr-keeper provisr-spawner provisr-master provisr-gateway >&2
echo "$(git -C "$root" describe --always --dirty 2>/dev/null), built $(date -u +%H:%MZ)" > "$build/bench-built-from.txt"
fi
mkdir -p "$build/bench"
gcc -O2 -Wall -Wextra "$root/bench/child.c" -o "$build/bench/bchild"
gcc -O2 -Wall -Wextra "$root/bench/spawn_loop.c" -o "$build/bench/spawn_loop"

out=$build/bench/out-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
uptime > "$out/load-before.txt"
cp "$build/bench-built-from.txt" "$out/git.txt" 2>/dev/null || git -C "$root" describe --always --dirty > "$out/git.txt" 2>/dev/null || true
ulimit -n 65536 2>/dev/null || true
/usr/bin/python3 "$root/bench/bench.py" --bin "$build/bin" --child "$build/bench/bchild" \
  --loop "$build/bench/spawn_loop" --pm2 "$peers_dir/npm/node_modules/.bin/pm2" --out "$out" "${args[@]}"
uptime > "$out/load-after.txt"
# Only a run of every workload replaces bench/RESULTS.md; a partial run reports into its out dir.
results=$root/bench
for a in "${args[@]}"; do
  case $a in start|idle|status|restart|log|http|scale) results=$out ;; esac
done
/usr/bin/python3 "$root/bench/report.py" --out "$out" --results "$results/RESULTS.md" \
  --plot "$results/scale.png" --bin "$build/bin" --pm2 "$peers_dir/npm/node_modules/.bin/pm2"
echo "bench: wrote $results/RESULTS.md (samples in $out/samples.jsonl)" >&2
