#!/usr/bin/env bash
# Installs Debian's nginx so the split_clients parity tests (test/assign-nginx.test.ts) and the
# benchmarks can run it. Idempotent: does nothing when nginx is already there (Debian puts it in
# /usr/sbin, which a non-root PATH may lack). Quiet unless it fails; never prompts (CI=true, no stdin).
set -euo pipefail

if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    echo "install-nginx: not root and no sudo; install nginx by hand" >&2
    exit 1
  fi
fi

LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
apt() {
  if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" </dev/null >>"$LOG" 2>&1; then
    return 1
  fi
}

# The tests start their own nginx with a private prefix; whether the package's service starts
# (policy-rc.d usually forbids it in containers) doesn't matter to them.
if ! apt update -qq \
  || ! { apt install -y -qq --no-install-recommends nginx-light || apt install -y -qq --no-install-recommends nginx; }; then
  cat "$LOG" >&2
  echo "install-nginx: apt-get failed" >&2
  exit 1
fi

NGINX_BIN="$(command -v nginx || echo /usr/sbin/nginx)"
"$NGINX_BIN" -v
