#!/usr/bin/env bash
# Compares the 202 path of two trees: OLD (a directory holding an old spikard_tasks
# package, put first on PYTHONPATH) and the current one, alternately, RUNS times each.
# Prints wrk's requests/s, p50, p99 and the server's CPU time per request of each run.
# Usage: benches/http/compare.sh OLD_PYTHONPATH [RUNS] [DURATION]
set -euo pipefail
old=$1
runs=${2:-3}
duration=${3:-10s}
here=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
port=${PORT:-8765}

cpu_ticks() {  # utime + stime of a process, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

one() {  # one(label, pythonpath)
  local label=$1 pp=$2 tmp pid
  tmp=$(mktemp -d)
  SPIKARD_TASKS_URL="sqlite:///$tmp/jobs.db" PYTHONPATH="$pp:$here" "$python" -m uvicorn \
    benches.http_enqueue:app --port "$port" --log-level warning --no-access-log &
  pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null -X POST -H 'content-type: application/json' -d '{"args":[1,2]}' \
      "http://127.0.0.1:$port/tasks/add" && break
    sleep 0.1
  done
  # warm-up, then the measured run
  wrk -t2 -c32 -d2s -s "$here/benches/http/post.lua" "http://127.0.0.1:$port/tasks/add" >/dev/null
  local before after out requests
  before=$(cpu_ticks "$pid")
  out=$(wrk -t2 -c32 -d"$duration" -s "$here/benches/http/post.lua" \
    "http://127.0.0.1:$port/tasks/add" | grep RESULT)
  after=$(cpu_ticks "$pid")
  requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")
  # the server's CPU time (user + system, all threads) per request: less sensitive to
  # other load on the machine than requests/s
  printf '%-4s %s server_cpu_us_per_request=%.0f\n' "$label" "$out" \
    "$(bc -l <<<"($after - $before) * 1000000 / $(getconf CLK_TCK) / $requests")"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}

for i in $(seq "$runs"); do
  one old "$old"
  one new "$here/python"
done
