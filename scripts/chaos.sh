#!/usr/bin/env bash
# Builds provisr and runs the chaos suite (tests/chaos) for as long as asked: a component SIGKILLed
# at a random moment of every round while a client drives random actions, invariants checked after
# every round. Prints the seed first and a summary at the end; the same --seed replays a run.
#   scripts/chaos.sh --rounds N [--seed S] [--seconds T] [--victims gateway,master,spawner[,keeper]] [--keeper|--ci]
#   default: gateway, master and spawner kills; --keeper: the keeper too; --ci: the one-minute CI case
#   PROVISR_CHAOS_KEEPER_STALL_MS=N stops the keeper N ms before each spawner kill; PROVISR_CHAOS_KEEP=1
#   keeps the serve logs of a passing run too
#   BUILD_DIR       build directory (default: build/, as scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=""
seed=""
seconds=""
victims=""
case_name="chaos: random kills of gateway master spawner"
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="${2:?}"; shift ;;
    --seed) seed="${2:?}"; shift ;;
    --seconds) seconds="${2:?}"; shift ;;
    --victims) victims="${2:?}"; shift ;;
    --keeper) case_name="chaos: random kills of every component including the keeper" ;;
    --ci) case_name="chaos: random kills of gateway master and spawner in CI" ;;
    -h|--help) usage ;;
    *) echo "chaos.sh: unknown argument $1" >&2; usage ;;
  esac
  shift
done
if [ -z "$rounds" ] && [ -z "$seconds" ]; then
  echo "chaos.sh: give --rounds N (or --seconds T)" >&2
  usage
fi

scripts/deps.sh
export BUILD_DIR="${BUILD_DIR:-build}"
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  scripts/build.sh
fi
cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}" --target tests_chaos

export PROVISR_CHAOS_ROUNDS="$rounds" PROVISR_CHAOS_SEED="$seed" PROVISR_CHAOS_SECONDS="$seconds"
export PROVISR_CHAOS_VICTIMS="$victims"
exec "$BUILD_DIR/bin/tests_chaos" "$case_name" --durations yes
