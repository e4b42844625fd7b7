#!/usr/bin/env bash
# Starts Open vSwitch (ovsdb-server + ovs-vswitchd) if it is not running.
# Hosts without the kernel module are fine: bridges use the netdev datapath.
set -euo pipefail
if ovs-vsctl --timeout=3 show >/dev/null 2>&1; then exit 0; fi
/usr/share/openvswitch/scripts/ovs-ctl --system-id=random --no-monitor start >/dev/null 2>&1 || true
for _ in $(seq 1 50); do
  ovs-vsctl --timeout=3 show >/dev/null 2>&1 && { echo "ovs: running"; exit 0; }
  sleep 0.2
done
echo "ovs: failed to start" >&2
exit 1
