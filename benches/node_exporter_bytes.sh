#!/usr/bin/env bash
# Bytes per sample on real node_exporter data: Prometheus scrapes a local
# node_exporter every second and remote-writes to scalecast for DURATION_SECS;
# scalecast is stopped gracefully (flushing to Parquet) and the Parquet bytes
# are divided by the stored rows. Also reports WAL bytes per sample.
#   benches/node_exporter_bytes.sh            # 300 s, target/release/scalecast
#   DURATION_SECS=120 SCALECAST_BIN=target/debug/scalecast benches/node_exporter_bytes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
DURATION_SECS="${DURATION_SECS:-300}"
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/scalecast-target}"
BIN="${SCALECAST_BIN:-$TARGET/release/scalecast}"
W="$(mktemp -d)"
trap 'kill $(cat "$W"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$W"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NE=$(port); SC=$(port); PR=$(port)

cat > "$W/pipeline.yaml" <<YAML
storage:
  wal:
    segment_max_age_secs: $((DURATION_SECS + 600))
    segment_max_bytes: 1073741824
sources:
  prometheus:
    type: remote_write
YAML
nohup prometheus-node-exporter --web.listen-address=127.0.0.1:$NE --no-collector.systemd > "$W/ne.log" 2>&1 &
echo $! > "$W/ne.pid"
RUST_LOG=warn nohup "$BIN" serve --config "$W/pipeline.yaml" --data-dir "$W/data" --listen 127.0.0.1:$SC > "$W/sc.log" 2>&1 &
echo $! > "$W/sc.pid"
until curl -sf 127.0.0.1:$SC/health >/dev/null; do sleep 0.2; done
cat > "$W/prometheus.yml" <<YAML
global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: node
    static_configs: [ { targets: ['127.0.0.1:$NE'] } ]
remote_write:
  - url: http://127.0.0.1:$SC/api/v1/write
    metadata_config: { send: false }
YAML
nohup prometheus --config.file="$W/prometheus.yml" --storage.tsdb.path="$W/prom" \
  --web.listen-address=127.0.0.1:$PR --storage.remote.flush-deadline=1s > "$W/prom.log" 2>&1 &
echo $! > "$W/prom.pid"
echo "collecting node_exporter data for ${DURATION_SECS}s ..." >&2
sleep "$DURATION_SECS"
kill -TERM "$(cat "$W/prom.pid")"; sleep 2
WAL_BYTES=$(curl -s 127.0.0.1:$SC/metrics | awk '/^scalecast_wal_bytes_total/ {print $2}')
kill -TERM "$(cat "$W/sc.pid")"
while kill -0 "$(cat "$W/sc.pid")" 2>/dev/null; do sleep 0.2; done
ROWS=$("$BIN" query --data-dir "$W/data" --format csv "SELECT count(*) AS n FROM samples" | tail -1)
SERIES=$("$BIN" query --data-dir "$W/data" --format csv "SELECT count(DISTINCT series_id) AS n FROM samples" | tail -1)
PQ_BYTES=$(find "$W/data/samples" -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s}')
FILES=$(find "$W/data/samples" -name '*.parquet' | wc -l)
echo "node_exporter via Prometheus remote write, ${DURATION_SECS}s at 1s scrape interval"
echo "series: $SERIES  samples: $ROWS  parquet files: $FILES"
awk -v b="$PQ_BYTES" -v r="$ROWS" -v w="$WAL_BYTES" 'BEGIN {printf "parquet: %d bytes = %.2f bytes/sample;  WAL: %.2f bytes/sample\n", b, b/r, w/r}'
