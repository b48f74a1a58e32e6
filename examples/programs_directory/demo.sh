#!/bin/sh
# A narrated tour of the programs-directory example. Uses the daemon that already answers at the
# config's API URL, or starts one (and stops it, by its pid, at the end). Runs without input.
set -e
cd "$(dirname "$0")"

API="${PROVISR_API_URL:-http://127.0.0.1:8080/api}"
started=""

say() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

cleanup() {
  if [ -n "$started" ]; then
    say "Stopping the daemon this demo started (pid $started)"
    kill -TERM "$started" 2>/dev/null || true
    wait "$started" 2>/dev/null || true
  fi
}
trap cleanup EXIT INT TERM

bindir="$(dirname "$(command -v provisr)")"

say "Validating the configuration"
run provisr validate config.toml

say "The start plan: priority bands, lowest first"
run provisr start --config config.toml --dry-run

if provisr status --api-url "$API" >/dev/null 2>&1; then
  say "A provisr daemon already answers at $API; using it"
elif [ -x "$bindir/provisr-keeper" ]; then
  say "Starting a daemon: provisr serve config.toml"
  provisr serve config.toml >/tmp/provisr-demo-serve.log 2>&1 &
  started=$!
  i=0
  until provisr status --api-url "$API" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 100 ] || ! kill -0 "$started" 2>/dev/null; then
      echo "the daemon did not come up; its output:" >&2
      cat /tmp/provisr-demo-serve.log >&2
      exit 1
    fi
    sleep 0.1
  done
else
  say "This build has no daemon yet (provisr-keeper is missing); showing what the config would load"
  provisr status --config config.toml || true
  exit 0
fi

say "Status of everything"
run provisr status --api-url "$API"

say "Start all programs in priority order (database, cache-redis, api-server x2, frontend, scheduler, worker x3)"
run provisr start --config config.toml --wait 15s

say "Group status"
for g in web-services background-tasks infrastructure; do
  run provisr group-status --config config.toml --group "$g"
done

say "Recent log lines of the database"
run provisr logs database -n 5 --api-url "$API"

say "Restart one api-server instance: only that instance restarts"
run provisr restart --name api-server-1 --api-url "$API"

say "Stop the frontend, then the infrastructure and background groups"
run provisr stop --config config.toml --name frontend
run provisr group-stop --config config.toml --group infrastructure
run provisr group-stop --config config.toml --group background-tasks

say "Final status"
run provisr status --api-url "$API"

say "Log files"
find /tmp/provisr-programs-demo -name '*.log' | sort
