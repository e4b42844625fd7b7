#!/usr/bin/env bash
# Installs every Debian package and Go module the project needs. Idempotent:
# packages already installed are not touched.
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
PKGS=(qemu-system-x86 qemu-utils busybox-static cpio openvswitch-switch iproute2 iputils-ping ethtool nftables tcpdump iperf3 procps curl netcat-openbsd nmap hping3 tcpreplay ca-certificates clamav-daemon clamav-testfiles e2fsprogs ntfs-3g kmod valgrind postgresql gcc binutils jq)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "deps: Go is required (https://go.dev/dl); this machine kind has it at /usr/local/go" >&2; exit 1; }
go mod download
scripts/guest-kernel.sh >/dev/null
echo "deps: ok"
