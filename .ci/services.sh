#!/usr/bin/env bash
# Starts PostgreSQL, MariaDB and Redis on this machine when they are not running.
# Idempotent; prints what it did. Used by .ci/run before the server-backend tests.
set -u

port_open() { (echo >"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do
    port_open "$port" && { echo "services: $name is up on :$port"; return 0; }
    sleep 0.5
  done
  echo "services: $name did not come up on :$port" >&2
  return 1
}

if ! port_open 5432 && command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_port 5432 PostgreSQL || true
fi
if ! port_open 3306 && [ -x /usr/sbin/mariadbd ]; then
  echo "services: starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  wait_port 3306 MariaDB || true
fi
if ! port_open 6379 && command -v redis-server >/dev/null 2>&1; then
  echo "services: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  wait_port 6379 Redis || true
fi
exit 0
