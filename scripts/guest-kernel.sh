#!/usr/bin/env bash
# Fetches Debian's own kernels for the test guests — the generic (amd64) and
# cloud (cloud-amd64) flavours of the current linux-image-amd64 version — with
# no install on the host (apt-get download + dpkg-deb -x) into
# .cache/guest/<version>-<flavour>/, and builds the test modules (the rootkit
# the monitor tamperer and the hooker, internal/lab/rootkit) against the matching
# linux-headers package.
# Idempotent. Prints the cache directories.
set -euo pipefail
cd "$(dirname "$0")/.."
VER=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: linux-image-\(.*\)-amd64$/\1/p' | head -1)
[ -n "$VER" ] || { echo "guest-kernel: cannot tell the current linux-image-amd64 version (apt-get update?)" >&2; exit 1; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
for FLAVOUR in amd64 cloud-amd64; do
  KVER=$VER-$FLAVOUR
  DIR=.cache/guest/$KVER
  if [ ! -s "$DIR/vmlinuz" ]; then
    rm -rf "$DIR"; mkdir -p "$DIR/pkg"
    (cd "$DIR/pkg" && apt-get download -qq "linux-image-$KVER" >/dev/null)
    dpkg-deb -x "$DIR"/pkg/*.deb "$DIR/root"
    rm -rf "$DIR/pkg"
    cp "$DIR"/root/boot/vmlinuz-* "$DIR/vmlinuz"
    echo "$KVER" >"$DIR/version"
  fi
  # modules.dep (the package leaves it to the install step): guests load
  # drivers (virtio, ext4) with their dependencies.
  if [ ! -s "$DIR/root/lib/modules/$KVER/modules.dep" ]; then
    depmod -b "$DIR/root" "$KVER"
  fi
  # The test rootkit, built against this exact kernel's headers.
  HDR=/usr/src/linux-headers-$KVER
  if [ ! -d "$HDR" ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "linux-headers-$KVER" make gcc >/dev/null
  fi
  RK=$DIR/rootkit
  MODS="secaas_dkom secaas_tamper secaas_hook"
  STALE=""
  for M in $MODS; do
    for SRC in internal/lab/rootkit/$M.c internal/lab/rootkit/Kbuild internal/lab/rootkit/*.h; do
      if [ ! -s "$RK/$M.ko" ] || [ "$SRC" -nt "$RK/$M.ko" ]; then STALE=1; fi
    done
  done
  if [ -n "$STALE" ]; then
    rm -rf "$RK"; mkdir -p "$RK"
    for M in $MODS; do cp internal/lab/rootkit/$M.c "$RK/"; done
    cp internal/lab/rootkit/Kbuild internal/lab/rootkit/*.h "$RK/"
    make -s -C "$HDR" M="$PWD/$RK" modules 2>&1 | grep -v "Skipping BTF generation" >&2 || true
    for M in $MODS; do
      [ -s "$RK/$M.ko" ] || { echo "guest-kernel: building the test module $M for $KVER failed" >&2; exit 1; }
    done
  fi
  echo "$DIR"
done
