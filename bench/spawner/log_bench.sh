#!/bin/sh
# Log throughput: `cat FILE > out` (the floor) against the spawner's log writer in each mode.
# usage: bench/spawner/log_bench.sh [BUILD_DIR] [SIZE_MB]
set -eu
build=${1:-build-spawner}
size=${2:-512}
here=$(cd "$(dirname "$0")" && pwd)
bin=$("$here/build.sh" "$build")
work=$(mktemp -d /tmp/provisr-logbench-XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
# 100-byte lines, like a busy service's log.
awk -v n=$((size * 10000)) 'BEGIN { s = sprintf("%91s", ""); gsub(/ /, "x", s); for (i = 0; i < n; i++) printf "%08d %s\n", i, s }' > "$work/input"
cat "$work/input" > /dev/null  # warm the page cache
start=$(date +%s.%N)
cat "$work/input" > "$work/cat.out"
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" -v s="$size" 'BEGIN { printf "%-11s %8.1f MB in %6.3f s = %8.1f MB/s\n", "cat>file", s, b - a, s / (b - a) }'
rm -f "$work/cat.out"
# The same through a pipe, as a child's output reaches the spawner.
start=$(date +%s.%N)
cat "$work/input" | cat > "$work/cat.out"
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" -v s="$size" 'BEGIN { printf "%-11s %8.1f MB in %6.3f s = %8.1f MB/s\n", "cat|cat>f", s, b - a, s / (b - a) }'
rm -f "$work/cat.out"
for mode in splice shared timestamps; do
  "$bin/log_bench" "$mode" "$work/input" "$work"
  rm -f "$work/bench.log"
done
