#!/usr/bin/env bash
# Make sure a Docker engine answers, installing and starting Debian's docker.io where none runs.
# Machines without systemd as PID 1 (CI sandboxes, this project's own build hosts) cannot
# `systemctl start docker`, so the daemon is started in the background and waited for.
set -euo pipefail

engine_answers() { docker info >/dev/null 2>&1; }

engine_answers && exit 0

if ! command -v dockerd >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || { echo "Cannot install docker.io: not root; install a Docker engine first" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  echo "docker.io installed from Debian's archive in $SECONDS s"
fi

if [ -d /run/systemd/system ]; then
  systemctl start docker
else
  log=/var/log/chajipoa-dockerd.log
  nohup dockerd >"$log" 2>&1 &
fi

for _ in $(seq 1 60); do
  engine_answers && { echo "Docker engine started ($SECONDS s in all)"; exit 0; }
  sleep 0.5
done
echo "Cannot start the Docker engine: it did not answer within 30 s (see /var/log/chajipoa-dockerd.log)" >&2
exit 1
