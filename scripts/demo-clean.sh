#!/usr/bin/env bash
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -f demo-state/secaasd.pid ]; then kill "$(cat demo-state/secaasd.pid)" 2>/dev/null; fi
[ -x bin/secaas ] && bin/secaas lab down -f examples/table2.yaml --bridge secaas-demo --prefix secaas-demo- 2>/dev/null
[ -x bin/secaas ] && bin/secaas lab guest down --name secaas-demo 2>/dev/null
[ -x bin/secaas ] && bin/secaas lab guest down --name secaas-demo-av 2>/dev/null
[ -x bin/secaas ] && bin/secaas lab guest down --name secaas-demo-front 2>/dev/null
ovs-vsctl --timeout=5 --if-exists del-br secaas-demo 2>/dev/null
rm -rf demo-state
echo "demo: cleaned"
