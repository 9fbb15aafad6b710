#!/usr/bin/env bash
# Builds berth and runs a sample container: the host's filesystem read-only
# with a private /tmp and a writable sandbox, own pid/net/uts/ipc/mount/cgroup
# namespaces, a 128 MiB memory limit, half a CPU, the default seccomp
# profile and runc's default capabilities. Then shows what `inspect` sees.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
berth=./target/release/berth
echo "== berth launch (foreground)"
$berth launch --rm --mem 128 --cpus 0.5 --hostname demo -- \
    sh -c 'echo "hello from $(hostname): pid $$, uid $(id -u), cwd $PWD"; grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status'
echo "== berth launch -d, inspect, exec, rm"
id=$($berth launch -d --name berth-demo --mem 64 --pids 32 -- sleep 30)
$berth ps
$berth inspect berth-demo | sed -n '1,40p'
$berth exec berth-demo -- sh -c 'echo "exec sees pid 1 as: $(cat /proc/1/comm)"'
$berth rm -f "$id"
