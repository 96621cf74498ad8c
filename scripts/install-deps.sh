#!/usr/bin/env bash
# Installs what scalecast's tests and benchmarks need, idempotently: only what
# is missing is installed. Safe to run on a fresh Debian 12 machine (as root)
# and on a warm one (then it does nothing and takes well under a second).
set -euo pipefail

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus-node-exporter >/dev/null 2>&1 || need_apt+=(prometheus-node-exporter)
# Build dependencies of rdkafka's bundled librdkafka (cmake-build feature).
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)
# librdkafka 2.12's rdkafka_conf.c includes <curl/curl.h> under `#ifdef
# WITH_OAUTHBEARER_OIDC`, which CMake defines as 0: the header must exist even
# though curl is neither enabled nor linked.
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need_apt+=(libcurl4-openssl-dev)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: need root (or sudo) to apt-get install ${need_apt[*]}; tests that need them will skip" >&2
    exit 0
  fi
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "install-deps: apt-get install ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || true
  # --no-install-recommends: 13 packages instead of 37 for prometheus.
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null \
    || echo "install-deps: apt-get install failed; tests that need ${need_apt[*]} will skip" >&2
fi
