#!/bin/sh
# Builds the spawner benchmarks against an existing build dir's libraries; prints the bin dir.
# usage: bench/spawner/build.sh [BUILD_DIR]   (default build-spawner; run ninja provisr_spawner_core first)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build-spawner}
case $build in /*) ;; *) build=$root/$build ;; esac
out=$build/bench
mkdir -p "$out"
ninja -C "$build" provisr_spawner_core provisr_util >/dev/null
for b in spawn_bench log_bench; do
  g++ -std=c++20 -O2 -Wall -Wextra -I"$root" "$root/bench/spawner/$b.cpp" \
    "$build/spawner/libprovisr_spawner_core.a" "$build/common/libprovisr_util.a" -lz -o "$out/$b" >&2
done
echo "$out"
