#!/usr/bin/env bash
# Kafka consume throughput of the scalecast binary (a `type: kafka` pipeline
# source): samples/s from a pre-filled topic into durable storage, compared in
# the same run with `kcat -C -e` reading the same topic to /dev/null (the
# ceiling). Prints the ratio.
#
#   benches/kafka_consume.sh [path/to/scalecast]     # default: the release build
#   MESSAGES=4000 SAMPLES=250 benches/kafka_consume.sh
#
# Messages are JSON series objects (one line each, produced with kcat -l), so
# the decode cost is the JSON path. benches/kafka_consume.rs measures the
# remote-write path in-process.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/scalecast-target}/release/scalecast}"
MESSAGES="${MESSAGES:-4000}"
SAMPLES="${SAMPLES:-250}"
TOTAL=$((MESSAGES * SAMPLES))
[ -x "$BIN" ] || { echo "kafka_consume: no scalecast binary at $BIN" >&2; exit 1; }
TOOLS="$("$ROOT/scripts/install-tansu.sh")"
TANSU="$TOOLS/bin/tansu"
KCAT="$TOOLS/bin/kcat"
[ -x "$KCAT" ] || { echo "kafka_consume: kcat unavailable" >&2; exit 1; }

W="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
STORAGE="memory://tansu/"
grep -qw sqlite "$TOOLS/tansu.storage" && STORAGE="sqlite://$W/tansu.db"
"$TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
  --storage-engine "$STORAGE" --silent >"$W/tansu.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do "$KCAT" -L -b "127.0.0.1:$PORT" -m 1 >/dev/null 2>&1 && break; sleep 0.1; done
"$TANSU" topic create bench --partitions 4 --broker "tcp://127.0.0.1:$PORT" >/dev/null

python3 - "$MESSAGES" "$SAMPLES" >"$W/messages.jsonl" <<'EOF'
import json, sys
n, per = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    print(json.dumps({"name": "bench_metric", "labels": {"msg": str(i), "job": "bench"},
                      "samples": [[1700000000000 + i * per + j, j * 0.5] for j in range(per)]},
                     separators=(",", ":")))
EOF
start=$(date +%s.%N)
"$KCAT" -P -b "127.0.0.1:$PORT" -t bench -l "$W/messages.jsonl"
printf 'kafka_consume: pre-filled %d messages x %d samples = %d samples (%s JSON) in %.2f s\n' \
  "$MESSAGES" "$SAMPLES" "$TOTAL" "$(du -h "$W/messages.jsonl" | cut -f1)" "$(echo "$(date +%s.%N) - $start" | bc)"

start=$(date +%s.%N)
"$KCAT" -C -b "127.0.0.1:$PORT" -t bench -e -q -o beginning >/dev/null
kcat_s=$(echo "$(date +%s.%N) - $start" | bc)

cat >"$W/pipeline.yaml" <<EOF
sources:
  bench:
    type: kafka
    bootstrap_servers: 127.0.0.1:$PORT
    topics: [bench]
    group_id: bench
    format: json
    librdkafka_options:
      session.timeout.ms: 6000
EOF
start=$(date +%s.%N)
"$BIN" serve --config "$W/pipeline.yaml" --data-dir "$W/data" --listen 127.0.0.1:0 >"$W/scalecast.log" 2>&1 &
PIDS+=($!)
addr=""
for _ in $(seq 600); do
  [ -s "$W/data/api.addr" ] && addr="$(cat "$W/data/api.addr")"
  if [ -n "$addr" ]; then
    got="$(curl -s "http://$addr/metrics" | awk '/^scalecast_kafka_samples_total/ {s+=$2} END {print s+0}')"
    [ "${got%.*}" -ge "$TOTAL" ] && break
  fi
  sleep 0.05
done
sc_s=$(echo "$(date +%s.%N) - $start" | bc)
[ "${got%.*}" -ge "$TOTAL" ] || { echo "kafka_consume: scalecast stored only $got of $TOTAL samples" >&2; tail "$W/scalecast.log" >&2; exit 1; }

awk -v t="$TOTAL" -v k="$kcat_s" -v s="$sc_s" 'BEGIN {
  printf "kafka_consume: kcat -C -e  %d samples in %.2f s = %.0f samples/s (ceiling)\n", t, k, t / k;
  printf "kafka_consume: scalecast   %d samples in %.2f s = %.0f samples/s (process start, group join, JSON decode, WAL fsync)\n", t, s, t / s;
  printf "kafka_consume: ratio scalecast/kcat = %.2f\n", (t / s) / (t / k) }'
