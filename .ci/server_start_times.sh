#!/usr/bin/env bash
# Which run each shared database server on this machine is in, recorded before the tests
# and checked after them: CI fails when anything stopped or restarted one (tests that need
# an outage use disposable servers of their own, tests/services.py).
#
#   server_start_times.sh record FILE   writes "NAME VALUE" per server (VALUE "down" if it
#                                       does not answer; such a server is not checked)
#   server_start_times.sh check FILE    exits 1 unless each recorded server is in that run
#
# PostgreSQL: pg_postmaster_start_time(). MariaDB: its start in Unix seconds, now minus
# Uptime (whole seconds, so compared within 2 s). Redis: run_id, new on every start.
# The servers are the ones .ci/services.sh manages: 127.0.0.1 ports 5432, 3306, 6379.
set -u

postgres_run() {
  psql -h 127.0.0.1 -p 5432 -U postgres -d test -tAXc 'SELECT pg_postmaster_start_time()' \
    2>/dev/null
}

mysql_run() {
  local out now uptime
  out=$(mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -P 3306 -u root -N -B \
    -e "SELECT UNIX_TIMESTAMP(); SHOW GLOBAL STATUS LIKE 'Uptime'" 2>/dev/null) || return 0
  now=$(sed -n 1p <<<"$out")
  uptime=$(sed -n 2p <<<"$out" | cut -f2)
  [[ $now =~ ^[0-9]+$ && $uptime =~ ^[0-9]+$ ]] && echo $((now - uptime))
}

redis_run() {
  redis-cli -h 127.0.0.1 -p 6379 INFO server 2>/dev/null | tr -d '\r' | sed -n 's/^run_id://p'
}

current() {
  local value
  value=$("$1_run" 2>/dev/null)
  echo "${value:-down}"
}

SERVERS="postgres mysql redis"

record() {
  : >"$1"
  for name in $SERVERS; do
    echo "$name $(current "$name")" | tee -a "$1" | sed 's/^/server runs: /'
  done
}

check() {
  local failed=0 name before now
  while read -r name before; do
    now=$(current "$name")
    if [ "$before" = down ]; then
      echo "server runs: $name was down before the tests; not checked"
    elif [ "$name" = mysql ] && [ "$now" != down ] && ((now - before <= 2 && before - now <= 2)); then
      echo "server runs: $name unchanged (started at $(date -u -d "@$before" '+%F %T') UTC)"
    elif [ "$name" != mysql ] && [ "$now" = "$before" ]; then
      echo "server runs: $name unchanged ($now)"
    else
      echo "server runs: FAILED: the shared $name server was stopped or restarted during" \
        "the tests ($before -> $now). Tests must not stop, restart or reconfigure shared" \
        "servers: use a disposable one (the disposable_server fixture, tests/services.py)." >&2
      failed=1
    fi
  done <"$1"
  return "$failed"
}

case "${1:-} ${2:-}" in
  "record "?*) record "$2" ;;
  "check "?*) check "$2" ;;
  *)
    echo "usage: $0 record|check FILE" >&2
    exit 2
    ;;
esac
