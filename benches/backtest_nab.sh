#!/usr/bin/env bash
# Reproduces the forecasting accuracy tables of models/README.md (issue 7 protocol) with the
# release build of `scalecast backtest`. Usage: benches/backtest_nab.sh [OUT_DIR]
# Writes OUT_DIR/{nab,nab_season288,datacenter,azure_timestamps}/report.{md,csv,json},
# params/ and plots/. Wall times are printed by the command itself.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/backtest}"
cargo build --release --quiet
bin=target/release/scalecast
"$bin" backtest datasets/nab/realAWSCloudwatch --no-progress --plots --out "$out/nab"
"$bin" backtest datasets/nab/realAWSCloudwatch --no-progress --season 288 \
  --models seasonal_naive,ets,linreg,auto --out "$out/nab_season288"
"$bin" backtest 'datasets/datacenter_traces/*300_seconds.csv' --step-seconds 300 \
  --no-progress --plots --out "$out/datacenter"
"$bin" backtest datasets/datacenter_traces/azure_v2__with_timestamp_seconds.csv \
  --no-progress --out "$out/azure_timestamps"
echo "reports in $out"
