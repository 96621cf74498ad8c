#!/usr/bin/env bash
# Installs the moto AWS mock server (moto[server] from PyPI) into a virtualenv,
# idempotently: nothing is downloaded when the venv already has a working
# moto_server. The CloudWatch black-box tests run this script themselves.
#
#   ${SCALECAST_TOOLS_DIR:-$HOME/.cache/scalecast-tools}/venv/bin/moto_server
#
# Prints the path of moto_server on stdout; exits non-zero (with the reason on
# stderr) when the install is impossible (no python3, no venv module, no
# network to PyPI).
set -euo pipefail

tools="${SCALECAST_TOOLS_DIR:-$HOME/.cache/scalecast-tools}"
venv="$tools/venv"
moto="$venv/bin/moto_server"

if [ -x "$moto" ] && "$venv/bin/python" -c 'import moto.server, boto3' >/dev/null 2>&1; then
  echo "$moto"
  exit 0
fi

py="$(command -v python3 || true)"
if [ -z "$py" ]; then
  echo "install-moto: python3 not found" >&2
  exit 1
fi
mkdir -p "$tools"
# A half-made venv (interrupted install) is rebuilt from scratch.
if [ ! -x "$venv/bin/python" ]; then
  rm -rf "$venv"
  "$py" -m venv "$venv" || { echo "install-moto: python3 -m venv failed (install python3-venv)" >&2; exit 1; }
fi
"$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]' boto3 >&2 \
  || { echo "install-moto: pip install 'moto[server]' boto3 failed" >&2; exit 1; }
"$venv/bin/python" -c 'import moto.server, boto3' \
  || { echo "install-moto: moto installed but does not import" >&2; exit 1; }
echo "$moto"
