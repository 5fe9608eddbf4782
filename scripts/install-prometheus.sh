#!/usr/bin/env bash
# Installs Debian's prometheus so test/promql.test.ts can evaluate the README's PromQL against a
# real server scraping the router. Idempotent and quiet; never prompts (CI=true, no stdin).
set -euo pipefail

if command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-prometheus: not root and no sudo; install prometheus by hand" >&2; exit 1; }
  SUDO=(sudo -n)
fi
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
run() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive "$@" </dev/null >>"$LOG" 2>&1; }
# The test starts its own prometheus on a private port and data dir; the package's service
# (if policy lets it start) is not used.
if ! { run apt-get update -q && run apt-get install -y -q --no-install-recommends prometheus; }; then
  echo "install-prometheus: apt-get failed:" >&2
  cat "$LOG" >&2
  exit 1
fi
