#!/usr/bin/env bash
# Installs the servers and tools the host-side tests run against, on Debian 12 as root: PostgreSQL 15
# (the backup tests initdb a throwaway cluster of their own, see tests/pgserver.py), the Redis
# tools (redis-cli, and redis-check-rdb to check a dumped RDB file), the Redis server (tests start a
# throwaway TLS one, see tests/redisserver.py), Node.js 18+ with npm (the reference API's tests) and
# python3-psycopg2 (the health gate's postgres probe under Debian's python3); Prometheus's promtool,
# Alertmanager and its amtool, the exporters and PgBouncer the monitoring tests run on loopback
# (tests/integration/test_monitoring_rules.py, test_monitoring_inhibition.py, test_monitoring_exporters.py), and
# Chromium, which renders the monitoring console page (tests/integration/test_monitoring_console.py);
# Debian's nginx, which runs the edge role's configuration on loopback (tests/integration/test_edge_nginx.py).
# No service is left running or enabled. Safe to rerun; silent when everything is already there, so
# `make` output stays quiet on a prepared machine.
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

# The package's own server: the tests run theirs on a free port, in a directory of their own.
if ! command -v redis-server >/dev/null; then
    packages+=(redis-server)
fi

# Debian's psycopg2 for Debian's python3: the health gate's postgres probe runs that way on the
# hosts, and a test runs the module so (tests/integration/test_health_playbook.py).
if ! /usr/bin/python3 -c 'import psycopg2' 2>/dev/null; then
    packages+=(python3-psycopg2)
fi

# The monitoring rules are checked by the tools and exporters of the Debian release the hosts run
# (promtool, amtool and the exporters' metric names change between releases); the packages' own
# services are never started here (policy-rc.d below, and no init system runs them).
declare -A monitoring_tools=(
    [promtool]=prometheus
    [amtool]=prometheus-alertmanager
    [prometheus-node-exporter]=prometheus-node-exporter
    [prometheus-postgres-exporter]=prometheus-postgres-exporter
    [prometheus-redis-exporter]=prometheus-redis-exporter
    [prometheus-pgbouncer-exporter]=prometheus-pgbouncer-exporter
    [prometheus-blackbox-exporter]=prometheus-blackbox-exporter
    [pgbouncer]=pgbouncer
)
for tool in "${!monitoring_tools[@]}"; do
    if ! command -v "$tool" >/dev/null; then
        packages+=("${monitoring_tools[$tool]}")
    fi
done

# Debian's chromium renders the monitoring console page headless, as a person's browser would
# (tests/integration/test_monitoring_console.py); it has no service to keep from starting.
if ! command -v chromium >/dev/null; then
    packages+=(chromium)
fi

# The edge's nginx, the package the edge role installs; the tests run it in a mount namespace of
# their own, never as the package's service.
if ! command -v nginx >/dev/null; then
    packages+=(nginx)
fi

# Any Node.js from 18 on will do (the API's engines field); a machine without one gets Debian's 18.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if ((node_major < 18)); then
    packages+=(nodejs npm)
elif ! command -v npm >/dev/null; then
    packages+=(npm)
fi

if ((${#packages[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    # redis-server's postinst starts its system-wide server (on 6379, through invoke-rc.d where no
    # systemd runs, through systemctl where it does); a policy-rc.d that refuses every start keeps it
    # from doing so, unless the machine already has a policy of its own (a Docker image's refuses).
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# chajipoa lab/test-deps.sh, for the duration of one apt-get install.\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    echo "test packages installed from Debian's archive in $SECONDS s: ${packages[*]}"
    # Not started at boot either (update-rc.d disables the systemd unit too where systemd runs): the
    # Redis server, nginx and every monitoring package's service, each named as its package.
    for service in redis-server nginx "${monitoring_tools[@]}"; do
        if [[ " ${packages[*]} " == *" $service "* ]]; then
            update-rc.d "$service" disable >/dev/null 2>&1
        fi
    done
fi
