#!/usr/bin/env bash
# Builds the base image the deployment tests use where no image registry is reachable: a
# minimal Debian bookworm root file system (debootstrap, from Debian's package mirror),
# imported as `tenantry-base:bookworm` (or $1). Does nothing when the image exists.
set -euo pipefail
image="${1:-tenantry-base:bookworm}"
if docker image inspect "$image" >/dev/null 2>&1; then
    exit 0
fi
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
root=$(mktemp -d /var/tmp/tenantry-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
# What a container never reads: documentation, manuals, translations, package lists.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
    "$root"/usr/share/info/* "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import - "$image" >/dev/null
echo "built $image ($(docker image inspect --format '{{.Size}}' "$image") bytes)"
