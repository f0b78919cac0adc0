#!/usr/bin/env bash
# Prints the path of a PgBouncer that keeps prepared statements in transaction mode
# (1.21 or later). Debian bookworm packages 1.18, so this builds Debian's own 1.24.1
# source package (from Debian's archive, checksum verified) into /opt/pgbouncer once.
set -euo pipefail
prefix=/opt/pgbouncer
version=1.24.1
sha256=da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
if [ -x "$prefix/bin/pgbouncer" ] && "$prefix/bin/pgbouncer" --version | grep -q "PgBouncer $version"; then
    echo "$prefix/bin/pgbouncer"
    exit 0
fi
if ! dpkg -s libevent-dev libssl-dev pkgconf >/dev/null 2>&1; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libevent-dev libssl-dev pkgconf >&2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL -o "$work/src.tar.gz" \
    "http://deb.debian.org/debian/pool/main/p/pgbouncer/pgbouncer_${version}.orig.tar.gz"
echo "$sha256  $work/src.tar.gz" | sha256sum -c --quiet >&2
tar -C "$work" -xzf "$work/src.tar.gz"
(
    cd "$work/pgbouncer-$version"
    ./configure --prefix="$prefix" --without-cares --with-systemd=no >/dev/null
    make -j"$(nproc)" >/dev/null
    make install >/dev/null
) >&2
echo "$prefix/bin/pgbouncer"
