#!/usr/bin/env bash
# The test command: installs what the tests need (idempotently), then runs the
# whole suite, real-component tests included (real Prometheus and
# node_exporter, kill -9 crash test). `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build outputs live outside the clone so that fresh clones reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scalecast-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

scripts/install-deps.sh

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
else
  echo "test.sh: rustfmt is not installed; skipping the format check" >&2
fi
cargo test --locked --all-targets --no-run -q
cargo test --locked -- --test-threads 2
