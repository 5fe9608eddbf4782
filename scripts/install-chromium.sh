#!/usr/bin/env bash
# Installs Debian's chromium so test/console.test.ts can drive the admin console in a real browser
# through playwright-core (which never downloads a browser of its own here). Idempotent and quiet;
# never prompts (CI=true, no stdin).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-chromium: not root and no sudo; install chromium by hand" >&2; exit 1; }
  SUDO=(sudo -n)
fi
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
run() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive "$@" </dev/null >>"$LOG" 2>&1; }
if ! { run apt-get update -q && run apt-get install -y -q --no-install-recommends chromium; }; then
  echo "install-chromium: apt-get failed:" >&2
  cat "$LOG" >&2
  exit 1
fi
