#!/usr/bin/env bash
# Build the lab's Debian 12 systemd image without any image registry: debootstrap from Debian's
# archive, then `docker import`. The image carries a label with a digest of its recipe (this
# script and the CA certificates the building host trusts), so it is rebuilt only when one changes.
#
# The image carries Debian's security updates of its build day (the security suite is in its sources
# and upgraded during the build), so that a lab host's first converge does not spend half a minute
# applying them (the common role's security-updates step still applies any newer ones).
#
# Environment: LAB_IMAGE (name:tag), LAB_DEBIAN_MIRROR, LAB_DEBIAN_SECURITY_MIRROR, LAB_EXTRA_CA_DIR.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
image=${LAB_IMAGE:-chajipoa-lab:bookworm}
mirror=${LAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${LAB_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# Operators behind TLS-intercepting proxies add their CA here; the lab must trust it too.
ca_dir=${LAB_EXTRA_CA_DIR:-/usr/local/share/ca-certificates}
# python3-apt: Ansible's apt module needs it for check mode, and Debian cloud images ship it.
packages=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2

"$here/docker-engine.sh"

ca_files=()
if [ -d "$ca_dir" ]; then
  mapfile -t ca_files < <(find "$ca_dir" -type f -name '*.crt' | sort)
fi

recipe=$( { cat "$0"; echo "$mirror $security_mirror $packages"; for f in "${ca_files[@]}"; do cat "$f"; done; } | sha256sum | cut -c1-16)

if [ "$(docker image inspect -f '{{ index .Config.Labels "org.chajipoa.lab.recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
  echo "lab image $image is current (recipe $recipe)"
  exit 0
fi

command -v debootstrap >/dev/null 2>&1 || {
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

rootfs=$(mktemp -d /var/tmp/chajipoa-lab-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

echo "building lab image $image (recipe $recipe) from $mirror"
debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
  || { tail -20 "$rootfs.log" >&2; echo "Cannot build the lab image: debootstrap failed (log $rootfs.log)" >&2; exit 1; }
rm -f "$rootfs.log"
echo "debootstrap done in $SECONDS s"

# The security suite, and its updates applied now. No service starts inside the build (policy-rc.d);
# /proc is there for the packages' scripts and unmounted before the image is made.
printf 'deb %s bookworm main\ndeb %s bookworm-security main\n' "$mirror" "$security_mirror" >"$rootfs/etc/apt/sources.list"
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
mount -t proc proc "$rootfs/proc"
trap 'umount "$rootfs/proc" 2>/dev/null || true; rm -rf "$rootfs"' EXIT
chroot "$rootfs" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
  'apt-get update -qq && apt-get -y -qq -o Dpkg::Options::=--force-confold dist-upgrade' >"$rootfs.log" 2>&1 \
  || { tail -20 "$rootfs.log" >&2; echo "Cannot build the lab image: the security upgrade failed (log $rootfs.log)" >&2; exit 1; }
umount "$rootfs/proc"
rm -f "$rootfs.log" "$rootfs/usr/sbin/policy-rc.d"
echo "security updates applied at $SECONDS s"

for f in "${ca_files[@]}"; do
  install -m 0644 "$f" "$rootfs/usr/local/share/ca-certificates/$(basename "$f")"
done
chroot "$rootfs" update-ca-certificates >/dev/null 2>&1

# Docker provides these per container; an empty machine-id makes systemd create one at first boot.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/etc/hostname" "$rootfs/var/lib/dbus/machine-id"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
# Ansible's apt module judges cache_valid_time by this directory's mtime while apt has never updated
# here: emptied just now, it would pass for a fresh cache for an hour, and every role's first package
# install in a container of a new image would find no package at all.
touch -d @0 "$rootfs/var/lib/apt/lists"

tar -C "$rootfs" -c . | docker import \
  -c 'CMD ["/lib/systemd/systemd"]' \
  -c 'ENV container=docker' \
  -c "LABEL org.chajipoa.lab.recipe=$recipe" \
  - "$image" >/dev/null
echo "lab image $image built in $SECONDS s"
