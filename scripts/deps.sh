#!/usr/bin/env bash
# Installs the Debian packages provisr needs to build and test, only those missing. Quiet when
# everything is present. Needs root (or sudo) only when something is missing.
set -euo pipefail

PKGS=(
  g++ cmake ninja-build pkg-config make
  libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libyaml-cpp-dev libtomlplusplus-dev
  nlohmann-json3-dev catch2 libcpp-httplib-dev libcli11-dev zlib1g-dev
  python3 procps
  clang libclang-rt-dev   # the libFuzzer targets (scripts/fuzz.sh): clang 14, libFuzzer + ASan/UBSan runtimes
  prometheus
  openssl curl   # tests_security: self-signed certificates, HTTPS requests
)
if [ "${PROVISR_DEPS_EXTRA:-}" != "" ]; then
  read -r -a extra <<<"$PROVISR_DEPS_EXTRA"
  PKGS+=("${extra[@]}")
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
