#!/usr/bin/env bash
# make demo: the paper's Table 2 lab on a real OVS bridge, enforced by
# secaasd through its API. Idempotent; make demo-clean tears it down.
set -euo pipefail
cd "$(dirname "$0")/.."
BR=secaas-demo
PFX=secaas-demo-
STATE=demo-state
API=http://127.0.0.1:8470
mkdir -p "$STATE"
bin/secaas lab down -f examples/table2.yaml --bridge $BR --prefix $PFX >/dev/null 2>&1 || true
if [ -f $STATE/secaasd.pid ] && kill -0 "$(cat $STATE/secaasd.pid)" 2>/dev/null; then
  kill "$(cat $STATE/secaasd.pid)"; sleep 1
fi

echo "== 1. Table 2 VMs as network namespaces on OVS bridge $BR (netdev datapath, fail_mode=secure)"
bin/secaas lab up -f examples/table2.yaml --bridge $BR --prefix $PFX

echo "== 2. secaasd (API + SQLite store + node agent) on $API"
# Host resources of VMs (disk images, sockets, RAM files) are host
# inventory that the admin sets; secaasd opens them only beneath these roots.
mkdir -p $STATE/images .cache/lab
nohup bin/secaasd --bridge $BR --db $STATE/secaas.db --admin-token-file $STATE/admin.token \
  --image-root "$PWD/$STATE/images" --run-root "$PWD/.cache/lab" --shm-root /dev/shm \
  --listen 127.0.0.1:8470 >$STATE/secaasd.log 2>&1 &
echo $! >$STATE/secaasd.pid
for _ in $(seq 1 50); do curl -fsS $API/healthz >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS $API/healthz >/dev/null || { cat $STATE/secaasd.log; exit 1; }

echo "== 3. tenant 'demo', its switch ports leased by the admin (host inventory), and the paper's ACRs through the API"
if [ ! -s $STATE/tenant.token ]; then
  bin/secaas tenant create demo --name "Demo tenant" --api $API --token-file $STATE/admin.token >$STATE/tenant.json
  sed -n 's/.*"token": "\(.*\)".*/\1/p' $STATE/tenant.json >$STATE/tenant.token
  chmod 600 $STATE/tenant.json $STATE/tenant.token
fi
for port in vm1 vm2 vm3; do
  bin/secaas inventory set $port --tenant demo --api $API --token-file $STATE/admin.token >/dev/null
done
if ! bin/secaas domain get 100 --api $API --token-file $STATE/tenant.token >/dev/null 2>&1; then
  bin/secaas domain create -f examples/table2.yaml --api $API --token-file $STATE/tenant.token
fi
bin/secaas domain list --api $API --token-file $STATE/tenant.token
# Committed first, then published to this host's agent (desired state with
# a generation); the agent reports what its switch enforces.
bin/secaas domain status 100 --api $API --token-file $STATE/tenant.token
bin/secaas host list --api $API --token-file $STATE/admin.token

echo "== 4. reachability matrix: real ping and TCP/22 between the namespaces, beside the oracle"
bin/secaas lab matrix -f examples/table2.yaml --prefix $PFX --tcp 22

echo "== 5. drift: delete the output table by hand; the reconcile loop restores it"
ovs-ofctl -O OpenFlow14 del-flows $BR table=45
sleep 3
bin/secaas acl trace -f examples/table2.yaml --bridge $BR --from VM1 --to VM2 --proto icmp
bin/secaas events -o json --kind flows.drift_repaired --limit 1 --api $API --token-file $STATE/admin.token | grep -o '"kind": "flows.drift_repaired"' | head -1

echo "== 6. live anomaly detection on VM3 through the API: mirror + AF_PACKET, then a SYN flood from VM1"
bin/secaas nad enable --tid 100 --vm VM3 --window 1s --history 10 --api $API --token-file $STATE/tenant.token
for _ in $(seq 1 24); do   # quiet, regular TCP/22 traffic: the profile
  ip netns exec ${PFX}vm1 sh -c 'echo | nc -w 1 192.168.1.26 22' >/dev/null 2>&1 || true; sleep 0.5; done
ip netns exec ${PFX}vm1 hping3 -q -S -p 22 -c 3000 -i u300 192.168.1.26 >/dev/null 2>&1 || true
sleep 2
bin/secaas events -o json --kind nad.alert --limit 1 --api $API --token-file $STATE/tenant.token | grep -B2 -A2 '"kind": "nad.alert"' | head -5 | cut -c1-200
bin/secaas nad disable --tid 100 --vm VM3 --api $API --token-file $STATE/tenant.token

echo "== 7. anomaly detection: 100 s of varied benign load (300 clients, HTTP/DNS/SMTP/POP3/SSH) on a mirrored server with real nmap and hping3 attacks"
bin/secaas lab traffic --seed 1 --duration 100s --warmup 35s --gap 6s --per-setting 1 --small 0 --span 1s \
  --prefix sd --out $STATE/traffic >/dev/null
grep -o '"tool": "[^"]*"' $STATE/traffic/labels.json | sed 's/"tool": /    /' 
bin/secaas nad eval --pcap $STATE/traffic/capture.pcap --labels $STATE/traffic/labels.json --window 1s --history 30
echo "-- LSTM in pure Go: a forecaster trained on the first 35 s (benign only), then every detector judged after them"
bin/secaas nad train --pcap $STATE/traffic/capture.pcap --kind forecaster --train-until 35s --window 1s --seq 5 --epochs 30 \
  --out $STATE/traffic/unsup.model 2>/dev/null
bin/secaas nad eval --pcap $STATE/traffic/capture.pcap --labels $STATE/traffic/labels.json --window 1s --history 30 \
  --detector stability,normalized,lstm-unsup --model $STATE/traffic/unsup.model --train-first 35s | grep "^Detector\|^Windows judged"

echo "== 8. memory monitoring: a test guest (Debian's own kernel under QEMU) watched from the host through its RAM:"
echo "   processes, modules, files, sockets, kernel integrity, and what rootkits hid"
bin/secaas lab guest up --name secaas-demo --mem 512 --rootkit
echo "-- the admin records the guest's RAM file as VM2's (port vm2) in the host inventory; the tenant only turns monitoring on"
bin/secaas inventory set vm2 --tenant demo --vm secaas-demo --memory /dev/shm/secaas-demo --api $API --token-file $STATE/admin.token >/dev/null
bin/secaas vmi enable --tid 100 --vm VM2 --interval 2s --api $API --token-file $STATE/tenant.token
sleep 6
bin/secaas vmi ps --tid 100 --vm VM2 --api $API --token-file $STATE/tenant.token | tail -4
echo "-- inside the guest: a DKOM rootkit (secaas_dkom.ko) hides a sleep process and itself"
bin/secaas lab guest run --name secaas-demo 'sleep 3600 </dev/null >/dev/null & insmod /secaas_dkom.ko pid=$! hide_module=1; echo "hid pid $!; the guest'"'"'s ps shows it $(ps | grep -c "[s]leep 3600") times"'
sleep 6
bin/secaas events -o json --kind vmi. --vm VM2 --limit 10 --api $API --token-file $STATE/tenant.token | grep -B2 -A2 '"kind": "vmi.hidden_' | cut -c1-200 | head -10
bin/secaas vmi ps --tid 100 --vm VM2 --api $API --token-file $STATE/tenant.token | grep HIDDEN || true
bin/secaas vmi modules --tid 100 --vm VM2 --api $API --token-file $STATE/tenant.token | grep HIDDEN || true
echo "-- what the guest's processes hold, from memory: a web server listening on 127.0.0.1:8081"
bin/secaas lab guest run --name secaas-demo 'ip link set lo up; httpd -p 127.0.0.1:8081' >/dev/null
sleep 5
bin/secaas vmi sockets --tid 100 --vm VM2 --api $API --token-file $STATE/tenant.token 2>/dev/null
echo "-- inside the guest: a rootkit (secaas_hook.ko) points a sys_call_table entry at itself, patches a jump over __x64_sys_kcmp,"
echo "   hooks tcp4_seq_show through ftrace to hide port 8081 from /proc/net/tcp, and hides itself from lsmod"
bin/secaas lab guest run --name secaas-demo 'a() { grep -w $1 /proc/kallsyms | cut -c1-16; }; insmod /secaas_hook.ko table=0x$(a sys_call_table) nr=312 jmp=0x$(a __x64_sys_kcmp) show=0x$(a tcp4_seq_show) port=8081 hide_module=1 && echo "the guest'"'"'s /proc/net/tcp shows port 8081 $(grep -c ":1F91 " /proc/net/tcp) times"'
sleep 6
bin/secaas vmi integrity --tid 100 --vm VM2 --api $API --token-file $STATE/tenant.token 2>/dev/null | cut -c1-170
bin/secaas events -o json --kind vmi.kernel_hook --vm VM2 --limit 3 --api $API --token-file $STATE/tenant.token | grep '"detail"' | cut -c1-200
bin/secaas vmi disable --tid 100 --vm VM2 --api $API --token-file $STATE/tenant.token

echo "== 8b. syscall monitoring: a monitor injected into the same guest's kernel through its gdbstub (no module, no agent)"
echo "-- the admin adds the guest's gdbstub socket to VM2's record; the tenant adds the paper's rule (cat, /etc/hosts)"
bin/secaas inventory set vm2 --tenant demo --vm secaas-demo --memory /dev/shm/secaas-demo --gdb "$PWD/.cache/lab/secaas-demo/gdb.sock" --api $API --token-file $STATE/admin.token >/dev/null
bin/secaas lab guest run --name secaas-demo '(while sleep 0.5; do :; done) </dev/null >/dev/null 2>&1 & mkdir -p /etc; echo "127.0.0.1 localhost demo" > /etc/hosts'
bin/secaas kmon policy add --tid 100 --vm VM2 --syscalls 2,257 --subject cat --object /etc/hosts --action record --api $API --token-file $STATE/tenant.token
for _ in $(seq 1 120); do bin/secaas kmon events --vm VM2 --limit 5 -o json --api $API --token-file $STATE/tenant.token | grep -q '"kind": "kmon.started"' && break; sleep 1; done
bin/secaas lab guest run --name secaas-demo 'cat /etc/hosts'
sleep 2
bin/secaas kmon events --vm VM2 --kind kmon.record --limit 1 -o wide --api $API --token-file $STATE/tenant.token 2>/dev/null || \
  bin/secaas kmon events --vm VM2 --limit 5 -o wide --api $API --token-file $STATE/tenant.token
echo "-- the same rule as block: cat fails inside the guest, head still reads"
bin/secaas kmon policy add --tid 100 --vm VM2 --syscalls 2,257 --subject cat --object /etc/hosts --action block --api $API --token-file $STATE/tenant.token
bin/secaas kmon policy rm --tid 100 --vm VM2 --rule 0 --api $API --token-file $STATE/tenant.token
bin/secaas kmon policy list --tid 100 --vm VM2 --api $API --token-file $STATE/tenant.token
sleep 3
bin/secaas lab guest run --name secaas-demo 'cat /etc/hosts; echo "cat: rc=$?"; head -1 /etc/hosts; lsmod | grep -c secaas || true'
bin/secaas kmon policy rm --tid 100 --vm VM2 --all --api $API --token-file $STATE/tenant.token
sleep 5
bin/secaas kmon events --vm VM2 --limit 6 -o wide --api $API --token-file $STATE/tenant.token
bin/secaas lab guest down --name secaas-demo

echo "== 9. HyperAV: a guest's disk scanned from the host; QEMU's dirty bitmap says what the guest wrote"
rm -rf $STATE/avroot && mkdir -p $STATE/avroot/etc && echo "welcome to the demo guest" >$STATE/avroot/etc/motd
mke2fs -q -F -t ext4 -E lazy_itable_init=0,lazy_journal_init=0 -d $STATE/avroot $STATE/av.raw 32M >/dev/null
qemu-img convert -O qcow2 $STATE/av.raw $STATE/images/av.qcow2 && rm $STATE/av.raw
bin/secaas lab guest up --name secaas-demo-av --mem 256 --data-disk $STATE/images/av.qcow2
bin/secaas inventory set vm3 --tenant demo --vm secaas-demo-av --disk "$PWD/$STATE/images/av.qcow2" --disk-mode bitmap \
  --qmp "$PWD/.cache/lab/secaas-demo-av/qmp.sock" --node disk0 --api $API --token-file $STATE/admin.token >/dev/null
bin/secaas av enable --tid 100 --vm VM3 --paths /etc/motd,/x --schedule 2s --api $API --token-file $STATE/tenant.token
# The EICAR test string, assembled here so that this script itself is not flagged.
E1='X5O!P%@AP[4\PZX54(P^)7CC)7}$'; E2='EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
bin/secaas lab guest run --name secaas-demo-av "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && printf '%s' '$E1$E2' >/mnt/x && sync && echo 'the guest wrote /x'"
sleep 7
bin/secaas av status --tid 100 --vm VM3 --api $API --token-file $STATE/tenant.token
bin/secaas events -o json --kind av.infected --limit 1 --api $API --token-file $STATE/tenant.token | grep -B2 -A2 '"kind": "av.infected"' | cut -c1-200 | head -5
bin/secaas av disable --tid 100 --vm VM3 --api $API --token-file $STATE/tenant.token
bin/secaas lab guest down --name secaas-demo-av

echo "== 10. HyperAV front mode over vhost-user: secaas serves a guest's disk from the guest's own RAM; an infected file is isolated"
rm -rf $STATE/avroot2 && mkdir -p $STATE/avroot2 && echo "nothing to see" >$STATE/avroot2/readme
mke2fs -q -F -t ext4 -E lazy_itable_init=0,lazy_journal_init=0 -d $STATE/avroot2 $STATE/images/front.raw 32M >/dev/null
bin/secaas inventory set vm1 --tenant demo --vm secaas-demo-front --disk "$PWD/$STATE/images/front.raw" --disk-mode front \
  --transport vhost-user --socket "$PWD/.cache/lab/front.sock" --api $API --token-file $STATE/admin.token >/dev/null
bin/secaas av enable --tid 100 --vm VM1 --paths /readme --schedule 2s --api $API --token-file $STATE/tenant.token
for _ in $(seq 100); do [ -S .cache/lab/front.sock ] && break; sleep 0.1; done
bin/secaas lab guest up --name secaas-demo-front --mem 256 --vhost-disk .cache/lab/front.sock
bin/secaas lab guest run --name secaas-demo-front "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && printf '%s' '$E1$E2' >/mnt/x && sync && echo 'the guest wrote /x'"
bin/secaas av scan --tid 100 --vm VM1 --path /x --api $API --token-file $STATE/tenant.token || true
bin/secaas av isolate --tid 100 --vm VM1 --path /x --api $API --token-file $STATE/tenant.token
bin/secaas lab guest run --name secaas-demo-front 'echo 3 >/proc/sys/vm/drop_caches; echo "the guest now reads /x as: $(od -An -c /mnt/x | head -1)"'
bin/secaas av status --tid 100 --vm VM1 --api $API --token-file $STATE/tenant.token
bin/secaas lab guest down --name secaas-demo-front
bin/secaas av disable --tid 100 --vm VM1 --api $API --token-file $STATE/tenant.token

echo
echo "secaasd keeps running (log: $STATE/secaasd.log). Try:"
echo "  export SECAAS_API=$API SECAAS_TOKEN_FILE=$STATE/tenant.token"
echo "  bin/secaas acr list --tid 100"
echo "  bin/secaas check --tid 100 --from VM1 --to VM3 --proto tcp --dport 22"
echo "  make demo-clean"
