#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks for Tideline's demo and tests, and nothing more:
#   - PostgreSQL 15 from Debian's packages (server, pg_waldump, pg_receivewal, pgbench), without
#     the default cluster: every test starts servers of its own on its own ports;
#   - the npm dependencies (`npm ci`) when node_modules is missing or older than the lock file.
# Safe to run again: it only acts on what is missing. Called by `npm test` and `npm run demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_bin=/usr/lib/postgresql/15/bin
if [ ! -x "$pg_bin/pg_waldump" ] || [ ! -x "$pg_bin/pgbench" ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "ensure-deps: PostgreSQL 15 is missing and this user cannot install it; run as root: apt-get install postgresql-15" >&2
    exit 1
  fi
  echo "ensure-deps: installing postgresql-15 from Debian's packages" >&2
  $sudo mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # Our createcluster.conf exists before the package that ships it: keep ours, never prompt.
  keep=(-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${keep[@]}" \
    postgresql-15 postgresql-contrib-15 >/dev/null 2>&1 \
    || $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${keep[@]}" postgresql-15
fi

# A C compiler for the optional native CRC-32C addon (scripts/build-native.mjs; without one,
# Tideline computes CRCs in JavaScript, slower). Installed only when missing and allowed.
if ! command -v "${CC:-cc}" >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "ensure-deps: installing a C compiler (gcc) for the native CRC-32C addon" >&2
    { env DEBIAN_FRONTEND=noninteractive apt-get update -qq && env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev; } >/dev/null 2>&1 \
      || echo "ensure-deps: could not install gcc; CRC-32C will be computed in JavaScript" >&2
  else
    echo "ensure-deps: no C compiler; CRC-32C will be computed in JavaScript (apt-get install gcc for the native addon)" >&2
  fi
fi

# Node's own headers (node_api.h) for that addon: NodeSource's and the official builds ship
# them; Debian's nodejs package has them in libnode-dev.
node_headers=$(node -p 'require("path").join(process.execPath, "..", "..", "include", "node", "node_api.h")')
if [ ! -f "$node_headers" ] && [ ! -f /usr/include/node/node_api.h ] && [ "$(id -u)" -eq 0 ]; then
  echo "ensure-deps: installing Node's headers (libnode-dev) for the native CRC-32C addon" >&2
  { env DEBIAN_FRONTEND=noninteractive apt-get update -qq && env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libnode-dev; } >/dev/null 2>&1 \
    || echo "ensure-deps: could not install libnode-dev; CRC-32C will be computed in JavaScript" >&2
fi

# PostgreSQL refuses to run as root: tests run servers as this unprivileged user.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "ensure-deps: installing npm dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund >&2
fi
