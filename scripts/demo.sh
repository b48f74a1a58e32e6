#!/usr/bin/env bash
# Installs what is missing, builds and installs provisr (PREFIX, default /usr/local), then runs the
# seed example: `provisr serve examples/programs_directory/config.toml` in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX="${PREFIX:-/usr/local}"

scripts/deps.sh
BUILD_DIR="${BUILD_DIR:-build}" scripts/build.sh
SUDO=""
if [ ! -w "$PREFIX" ] && [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO cmake --install "${BUILD_DIR:-build}" --prefix "$PREFIX" >/dev/null
echo "demo: installed provisr into $PREFIX/bin"

cd examples/programs_directory
if [ -x "$PREFIX/bin/provisr-keeper" ]; then
  exec "$PREFIX/bin/provisr" serve config.toml
fi
echo "demo: the daemon is not built yet; validating the example config instead"
"$PREFIX/bin/provisr" validate config.toml
"$PREFIX/bin/provisr" start --config config.toml --dry-run
