#!/usr/bin/env bash
# Fetches Debian's own amd64 kernel for the test guest (no install on the
# host: apt-get download + dpkg-deb -x) into .cache/guest/<version>/.
# Idempotent. Prints the cache directory.
set -euo pipefail
cd "$(dirname "$0")/.."
VER=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: linux-image-\(.*\)-amd64$/\1/p' | head -1)
[ -n "$VER" ] || { echo "guest-kernel: cannot tell the current linux-image-amd64 version (apt-get update?)" >&2; exit 1; }
DIR=.cache/guest/$VER-amd64
if [ ! -s "$DIR/vmlinuz" ]; then
  rm -rf "$DIR"; mkdir -p "$DIR/pkg"
  (cd "$DIR/pkg" && apt-get download -qq "linux-image-$VER-amd64" >/dev/null)
  dpkg-deb -x "$DIR"/pkg/*.deb "$DIR/root"
  cp "$DIR"/root/boot/vmlinuz-* "$DIR/vmlinuz"
  echo "$VER-amd64" >"$DIR/version"
fi
echo "$DIR"
