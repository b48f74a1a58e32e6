#!/bin/sh
# Builds and runs daemon_spawn_bench (the real provisr-spawner vs a bare posix_spawn loop).
# usage: bench/spawner/daemon_bench.sh [BUILD_DIR] [N]   (default build-spawnerd, 1000)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build-spawnerd}
case $build in /*) ;; *) build=$root/$build ;; esac
n=${2:-1000}
ninja -C "$build" provisr-spawner provisr_proto provisr_util >/dev/null
mkdir -p "$build/bench"
g++ -std=c++20 -O2 -Wall -Wextra -DMSGPACK_NO_BOOST -I"$root" "$root/bench/spawner/daemon_spawn_bench.cpp" \
  "$build/common/libprovisr_proto.a" "$build/common/libprovisr_util.a" -lzmq -o "$build/bench/daemon_spawn_bench"
"$build/bench/daemon_spawn_bench" "$build/bin" "$n"
