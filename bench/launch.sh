#!/usr/bin/env bash
# bench/launch.sh — container launch latency benchmark (not a test).
#
# Compares, in one run and on the same busybox rootfs running /bin/true:
#   berth        berth launch --rm --rootfs ROOTFS -- /bin/true
#   berth-split  berth launch -d ... ; berth wait ID ; berth rm ID
#   berth-run    berth run --bundle BUNDLE ID (runc's command line, runc's bundle)
#   runc         runc run --bundle BUNDLE ID (+ runc delete -f if left behind)
#   crun         crun run --bundle BUNDLE ID, without cgroups (--cgroup-manager=disabled);
#                optional, only if it works on this host (skipped with a reason).
#                On a hybrid host crun refuses to run ("cgroups in hybrid mode
#                not supported"); it then runs inside a private mount namespace
#                with an empty tmpfs over /sys/fs/cgroup/unified (../shared/
#                PEERS.md), held by one helper process for the whole run and
#                entered with nsenter, so the row includes one nsenter exec
#                (the nsenter row times that wrapper alone)
#   bwrap        bwrap --unshare-all --bind ROOTFS / --proc /proc --dev /dev /bin/true
#   unshare      unshare -p -f -m -n -u -i --root=ROOTFS /bin/true   (the floor)
# then berth's supervisor RSS. Prints a table and PASS/FAIL goal lines
# (informational: the exit status is 0 unless a launch fails).
#
# Usage: bench/launch.sh [--runs N | --quick] [--warmup W]
#   --runs N    measured launches per tool (default 50)
#   --quick     same as --runs 10
#   --warmup W  unmeasured warm-up launches per tool (default 2)
#   --no-split  skip the berth-split row (launch -d + wait + rm)
#   --raw       also print every sample (sorted, ms)
# A launch that exits non-zero aborts the run with the tool's stderr, except
# in the optional rows (berth-split, crun, nsenter): those are dropped from that point,
# the error is printed, and the script exits 1 after printing the table.
# Env: BERTH=/path/to/berth (default: target/release/berth, built if missing)
#
# Where the time of one launch goes: BERTH_TRACE=FILE berth run ... appends
# a timestamped line per step from the CLI, the supervisor and init
# (launcher/src/trace.rs); `sort -n FILE` is the launch in order.
#
# Last measured (2 cores, Debian 12, hybrid cgroups, load average ~1.7 from
# other builds, so +-1 ms between runs; ratios are within one run), with
# `bash bench/launch.sh --runs 50 --no-split`, before and after the forked
# supervisor of runc's verbs (BERTH=/path/to/old/berth for the former):
#   tool        median ms (before -> after)   vs runc (before -> after)
#   berth         12.25 -> 11.75              0.42x -> 0.41x   launch --rm
#   berth-run     12.45 -> 10.53              0.42x -> 0.36x   run --bundle
#   runc          29.39 -> 28.93              1.00x
#   crun           9.29 ->  8.79              0.32x -> 0.30x   no cgroup, incl. nsenter (2.1 ms)
#   bwrap          4.68 ->  4.55
#   unshare        2.62 ->  2.56              (the floor)
# A second pair of runs: berth-run 12.00 -> 10.50 ms (0.41x -> 0.37x).
#
# Needs root. Everything it creates lives in one mktemp -d directory that is
# removed on exit. No config.json handed to runc has linux.cgroupsPath, so
# runc's cgroups sit under the caller's own cgroup.
set -euo pipefail

RUNS=50
WARMUP=2
SPLIT_ARGS=()
RAW_ARGS=()
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) [ $# -ge 2 ] || { echo "--runs needs a value" >&2; exit 2; }; RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#--runs=}; shift ;;
        --quick) RUNS=10; shift ;;
        --warmup) [ $# -ge 2 ] || { echo "--warmup needs a value" >&2; exit 2; }; WARMUP=$2; shift 2 ;;
        --warmup=*) WARMUP=${1#--warmup=}; shift ;;
        --no-split) SPLIT_ARGS=(--no-split); shift ;;
        --raw) RAW_ARGS=(--raw); shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done
case "$RUNS" in ''|*[!0-9]*) echo "--runs must be a positive integer" >&2; exit 2 ;; esac
case "$WARMUP" in ''|*[!0-9]*) echo "--warmup must be a non-negative integer" >&2; exit 2 ;; esac
[ "$RUNS" -ge 1 ] && [ "$RUNS" -le 10000 ] || { echo "--runs must be in 1..10000" >&2; exit 2; }
[ "$WARMUP" -le 20 ] || { echo "--warmup must be <= 20" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || { echo "bench/launch.sh must run as root" >&2; exit 1; }

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
cd "$REPO"

log() { echo "[bench] $*" >&2; }

# ---- tools -----------------------------------------------------------------
find_busybox() {
    local b
    for b in /bin/busybox /usr/bin/busybox; do
        # Must be static: it is copied alone into the rootfs.
        if [ -x "$b" ] && { LC_ALL=C ldd "$b" 2>&1 || true; } | grep -q 'not a dynamic executable'; then
            echo "$b"; return 0
        fi
    done
    return 1
}
missing=()
find_busybox >/dev/null || missing+=(busybox-static)
command -v runc >/dev/null || missing+=(runc)
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing missing packages: ${missing[*]}"
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${missing[@]}" >&2
fi
BUSYBOX=$(find_busybox) || { echo "no static busybox found (install busybox-static)" >&2; exit 1; }

if [ -z "${BERTH:-}" ]; then
    BERTH=$REPO/target/release/berth
    if [ ! -x "$BERTH" ]; then
        log "building berth (cargo build --release -p berth)"
        cargo build --release -p berth >&2
    fi
fi
[ -x "$BERTH" ] || { echo "berth binary not found or not executable: $BERTH" >&2; exit 1; }
BERTH=$(cd "$(dirname "$BERTH")" && pwd)/$(basename "$BERTH")

# ---- scratch dir + cleanup -------------------------------------------------
TMP=$(mktemp -d /tmp/berth-bench.XXXXXX)
CRUN_HELPER=""
CRUN_WRAP=()
cleanup() {
    local rc=$? id n=0
    trap - EXIT INT TERM
    set +e
    # berth containers left behind (state dirs are named by container id).
    if [ -d "$TMP/berth-root" ]; then
        for d in "$TMP"/berth-root/*/; do
            [ -d "$d" ] || continue
            id=$(basename "$d")
            [[ $id =~ ^[0-9a-f]{32}$ ]] || continue
            n=$((n + 1)); [ $n -le 1000 ] || break
            timeout 20 "$BERTH" --root "$TMP/berth-root" rm -f "$id" >/dev/null 2>&1 \
                || log "cleanup: berth rm -f $id failed"
        done
    fi
    # runc / crun containers left behind.
    if [ -d "$TMP/runc-root" ]; then
        for id in $(timeout 20 runc --root "$TMP/runc-root" list -q 2>/dev/null | head -n 1000); do
            timeout 20 runc --root "$TMP/runc-root" delete -f "$id" >/dev/null 2>&1 \
                || log "cleanup: runc delete -f $id failed"
        done
    fi
    if [ -d "$TMP/crun-root" ] && command -v crun >/dev/null; then
        for id in $(timeout 20 "${CRUN_WRAP[@]}" crun --root "$TMP/crun-root" list -q 2>/dev/null | head -n 1000); do
            timeout 20 "${CRUN_WRAP[@]}" crun --cgroup-manager=disabled --root "$TMP/crun-root" \
                delete -f "$id" >/dev/null 2>&1 || log "cleanup: crun delete -f $id failed"
        done
    fi
    # The helper holding crun's mount namespace (ours: killed by its pid);
    # the namespace and its tmpfs go with it.
    if [ -n "$CRUN_HELPER" ]; then
        kill "$CRUN_HELPER" 2>/dev/null
        wait "$CRUN_HELPER" 2>/dev/null
    fi
    rm -rf --one-file-system "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- rootfs + OCI bundle ---------------------------------------------------
BUNDLE=$TMP/bundle
ROOTFS=$BUNDLE/rootfs
mkdir -p "$ROOTFS"/{bin,proc,sys,dev,tmp,etc} "$TMP/berth-root" "$TMP/runc-root" "$TMP/crun-root"
cp "$BUSYBOX" "$ROOTFS/bin/busybox"
for a in sh true sleep; do ln -s busybox "$ROOTFS/bin/$a"; done
chmod 1777 "$ROOTFS/tmp"

(cd "$BUNDLE" && runc spec)
python3 - "$BUNDLE/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
c["root"] = {"path": "rootfs", "readonly": True}
# Never hand runc a cgroupsPath: without one, runc nests its cgroup under the
# caller's own cgroup (a relative path would resolve against PID 1's on v1).
c.get("linux", {}).pop("cgroupsPath", None)
json.dump(c, open(p, "w"), indent=2)
EOF

# ---- optional crun probe ---------------------------------------------------
# crun runs with --cgroup-manager=disabled so that it never creates a cgroup
# outside ours (its default path for a config without cgroupsPath is not
# guaranteed to nest under the caller's cgroup). Its numbers therefore exclude
# cgroup setup.
CRUN_ARGS=()
crun_probe() {
    timeout 20 "${CRUN_WRAP[@]}" crun --cgroup-manager=disabled --root "$TMP/crun-root" run \
        --bundle "$BUNDLE" cbench-probe </dev/null 2>&1 >/dev/null
    local rc=$?
    timeout 20 "${CRUN_WRAP[@]}" crun --cgroup-manager=disabled --root "$TMP/crun-root" \
        delete -f cbench-probe >/dev/null 2>&1 || true
    return $rc
}
# A hybrid host: cgroup v1 controllers plus a cgroup2 mount at .../unified.
is_hybrid() { [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; }
if command -v crun >/dev/null; then
    if err=$(crun_probe); then
        CRUN_ARGS=(--crun)
    elif is_hybrid; then
        # PEERS.md's recipe, once for the whole run: a process in a private
        # mount namespace where /sys/fs/cgroup/unified is an empty tmpfs
        # (crun then sees a v1 host). Nothing of it propagates to the host.
        unshare -m --propagation private sh -c \
            'mount -t tmpfs none /sys/fs/cgroup/unified && exec sleep 86400' \
            </dev/null >/dev/null 2>&1 &
        CRUN_HELPER=$!
        # unshare and sh exec in place: $! becomes sleep once the tmpfs is up.
        for _ in $(seq 100); do
            [ "$(cat "/proc/$CRUN_HELPER/comm" 2>/dev/null)" = sleep ] && break
            kill -0 "$CRUN_HELPER" 2>/dev/null || break
            sleep 0.05
        done
        CRUN_WRAP=(nsenter "--mount=/proc/$CRUN_HELPER/ns/mnt")
        if [ "$(cat "/proc/$CRUN_HELPER/comm" 2>/dev/null)" = sleep ] && err=$(crun_probe); then
            CRUN_ARGS=(--crun --crun-mntns "/proc/$CRUN_HELPER/ns/mnt")
            echo "crun: in a private mount namespace with /sys/fs/cgroup/unified hidden (hybrid host)"
        else
            echo "crun: skipped ($(crun --version 2>/dev/null | head -n1), hybrid host, even in a private mount namespace: $(echo "$err" | tr '\n' ' '))"
            kill "$CRUN_HELPER" 2>/dev/null; wait "$CRUN_HELPER" 2>/dev/null
            CRUN_HELPER=""; CRUN_WRAP=()
        fi
    else
        echo "crun: skipped ($(crun --version 2>/dev/null | head -n1): $(echo "$err" | tr '\n' ' '))"
    fi
else
    echo "crun: skipped (not installed)"
fi

UNSHARE_ARGS=()
if unshare --help 2>&1 | grep -q -- '--root'; then UNSHARE_ARGS=(--unshare-root); fi

echo "berth:   $BERTH ($("$BERTH" --version 2>/dev/null || echo '?'), built $(date -r "$BERTH" '+%F %T'), sha256 $(sha256sum "$BERTH" | cut -c1-12))"
echo "runc:    $(runc --version | head -n1)"
[ ${#CRUN_ARGS[@]} -eq 0 ] || echo "crun:    $(crun --version | head -n1)"
echo "bwrap:   $(bwrap --version)"
echo "unshare: $(unshare --version)"
echo "kernel:  $(uname -r), $(nproc) CPUs"

python3 "$SCRIPT_DIR/stats.py" --runs "$RUNS" --warmup "$WARMUP" --tmp "$TMP" \
    --rootfs "$ROOTFS" --bundle "$BUNDLE" --berth "$BERTH" \
    "${CRUN_ARGS[@]}" "${UNSHARE_ARGS[@]}" "${SPLIT_ARGS[@]}" "${RAW_ARGS[@]}"
