#!/usr/bin/env bash
# Installs the servers and tools the host-side tests run against, on Debian 12 as root: PostgreSQL 15
# (the backup tests initdb a throwaway cluster of their own, see tests/pgserver.py) and the Redis
# tools (redis-cli, and redis-check-rdb to check a dumped RDB file). Safe to rerun; silent when
# everything is already there, so `make` output stays quiet on a prepared machine.
set -euo pipefail

PG_BINDIR=/usr/lib/postgresql/15/bin
# The postgresql-common drop-in directory read by pg_createcluster and by the package's postinst.
NO_MAIN_CLUSTER=/etc/postgresql-common/createcluster.d/00-chajipoa-no-main.conf

packages=()

if [[ ! -x $PG_BINDIR/initdb ]]; then
    # Written before the package exists: otherwise its postinst creates a "main" cluster and, where
    # an init system is running, starts it on 5432, a system-wide server the tests neither need nor
    # want (it would hold the port and the memory for nothing).
    mkdir -p "$(dirname "$NO_MAIN_CLUSTER")"
    if [[ ! -e $NO_MAIN_CLUSTER ]]; then
        cat >"$NO_MAIN_CLUSTER" <<'EOF'
# chajipoa lab/test-deps.sh: the tests start throwaway clusters of their own; no default one.
create_main_cluster = false
EOF
    fi
    # citext and pgcrypto ship inside postgresql-15 itself on Debian 12; no contrib package needed.
    packages+=(postgresql-15 postgresql-client-15)
fi

# Debian 12 puts redis-check-rdb (the real binary; redis-server is only a symlink to it) in
# redis-tools, so the tools alone are enough to check an RDB file without installing a server.
if ! command -v redis-cli >/dev/null || ! command -v redis-check-rdb >/dev/null; then
    packages+=(redis-tools)
fi

if ((${#packages[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
