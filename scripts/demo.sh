#!/usr/bin/env bash
# The main job on a fresh machine: build berth, start `berth up` (a master
# and one agent on loopback with embedded defaults), run a sample task
# through the Mesos v1 scheduler API and show the cluster's view of it;
# then the node side on its own: one container launched, inspected and
# exec'd into.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
berth=$PWD/target/release/berth

work=$(mktemp -d /tmp/berth-up.XXXXXX)
log=$work/up.log
up_pid=
stop_up() {
    if [ -n "$up_pid" ] && kill -0 "$up_pid" 2>/dev/null; then
        kill -TERM "$up_pid"
        wait "$up_pid" || true
    fi
    rm -rf "$work"
}
trap stop_up EXIT

echo "== berth up (master 127.0.0.1:5050, agent 127.0.0.1:5051)"
"$berth" up --work-dir "$work/up" >"$log" 2>&1 &
up_pid=$!
for _ in $(seq 300); do
    grep -q "berth up: master" "$log" && break
    kill -0 "$up_pid" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
done
grep -q "berth up: master" "$log" || { cat "$log"; echo "berth up did not start" >&2; exit 1; }
grep -v "^berth \(master\|agent\):" "$log" || true

echo "== berth cluster run -- a sample task"
"$berth" cluster run --cpus 0.5 --mem 64 -- 'echo "hello from task $MESOS_TASK_ID in $(pwd)"; uname -r'
echo "== berth cluster agents / tasks"
"$berth" cluster agents
"$berth" cluster tasks -a
sandbox=$(find "$work/up/agent/slaves" -name stdout -path '*berth-run-*' | head -1)
echo "== the task's stdout, from its sandbox ($sandbox)"
cat "$sandbox"

echo "== berth launch (foreground, one node, no cluster)"
"$berth" launch --rm --mem 128 --cpus 0.5 --hostname demo -- \
    sh -c 'echo "hello from $(hostname): pid $$, uid $(id -u), cwd $PWD"; grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status'
echo "== berth launch -d, inspect, exec, rm"
id=$("$berth" launch -d --name berth-demo --mem 64 --pids 32 -- sleep 30)
"$berth" ps
"$berth" inspect berth-demo | sed -n '1,40p'
"$berth" exec berth-demo -- sh -c 'echo "exec sees pid 1 as: $(cat /proc/1/comm)"'
"$berth" rm -f "$id"
