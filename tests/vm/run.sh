#!/usr/bin/env bash
# The VM tier: boots Debian's cloud kernel in qemu with a small initramfs
# that holds berth, the project's test binaries, busybox and python3, mounts
# a pure cgroup v2 hierarchy with every controller enabled, and runs the
# same integration tests as the host tier inside the guest (they exercise
# the cgroup v2 code path there, and the v2-only scenarios that skip on a
# hybrid host). Results come back on the serial console.
#
#   bash tests/vm/run.sh [--tcg] [--keep] [TEST_BINARY_FILTER...]
#
# The kernel is cached under target/vm/ so repeated runs only rebuild the
# initramfs. KVM is tried first; if the guest does not boot under it (nested
# KVM is unreliable here) the run falls back to TCG.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
started=$(date +%s)

force_tcg=0
keep=0
filters=()
for a in "$@"; do
    case "$a" in
        --tcg) force_tcg=1 ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) filters+=("$a") ;;
    esac
done

vm=$repo/target/vm
mkdir -p "$vm"
log=$vm/guest.log

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
[ -x /bin/busybox ] || need+=(busybox-static)
[ -x /usr/bin/python3.11 ] || need+=(python3.11)
command -v setpriv >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    echo "vm: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- kernel (cached) ---------------------------------------------------------
kernel=$vm/vmlinuz
modules=$vm/modules
guest_modules="virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk loop quota_tree quota_v2 crc32c-intel libcrc32c xfs"
if [ ! -s "$kernel" ] || [ ! -e "$modules/xfs.ko" ]; then
    echo "vm: fetching Debian's cloud kernel"
    [ -n "$(apt-cache policy linux-image-cloud-amd64 2>/dev/null | grep Candidate)" ] || apt-get update -qq
    pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
    [ -n "$pkg" ] || { echo "vm: cannot resolve linux-image-cloud-amd64" >&2; exit 1; }
    dl=$(mktemp -d)
    (cd "$dl" && apt-get download "$pkg" >/dev/null 2>&1)
    dpkg -x "$dl"/*.deb "$dl/x"
    cp "$dl"/x/boot/vmlinuz-* "$kernel"
    # Modules the scenarios need: virtio-blk (io.max on a real disk), loop,
    # XFS and the quota format (the volumes' project-quota backends).
    mkdir -p "$modules"
    for m in $guest_modules; do
        find "$dl/x/lib/modules" -name "$m.ko*" -exec cp {} "$modules/" \;
    done
    echo "$pkg" > "$vm/kernel-version"
    rm -rf "$dl"
fi
echo "vm: kernel $(cat "$vm/kernel-version" 2>/dev/null || echo '?')"

# --- binaries ------------------------------------------------------------------
echo "vm: building berth and the test binaries"
cargo build -q -p berth
mapfile -t tests < <(cargo test -q --no-run --workspace --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        # Several crates have a test target named "volumes": label each
        # binary by its file name (name-hash) instead.
        print(m["target"]["name"] + " " + m["executable"])
')
selected=()
for t in "${tests[@]}"; do
    name=${t%% *}
    # Unit tests of pure logic gain nothing from the guest; the isolator's
    # (real cgroups, seccomp in forked children) and every integration
    # test do.
    case "$name" in
        berth_isolator|isolator|launch|isolation|cgroups|supervision|compat|cgroups_v2|runtime|runtime_resources) ;;
        volumes|dir_backend|crash|root_backends) ;;
        *) continue ;;
    esac
    if [ ${#filters[@]} -gt 0 ]; then
        keepit=0
        for f in "${filters[@]}"; do [[ "$name" == *"$f"* ]] && keepit=1; done
        [ $keepit = 1 ] || continue
    fi
    selected+=("$t")
done
[ ${#selected[@]} -gt 0 ] || { echo "vm: no test binaries selected" >&2; exit 1; }

# --- initramfs -------------------------------------------------------------------
root=$vm/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,mnt,usr/bin,newroot}

copy_with_libs() {
    local f=$1 dest=${2:-$1}
    mkdir -p "$root$(dirname "$dest")"
    cp -L "$f" "$root$dest"
    ldd "$f" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
        if [ ! -e "$root$lib" ]; then
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        fi
    done || true
}

cp /bin/busybox "$root/bin/busybox"
copy_with_libs "$repo/target/debug/berth"
strip --strip-debug "$root$repo/target/debug/berth" 2>/dev/null || true
: > "$vm/tests.list"
for t in "${selected[@]}"; do
    exe=${t#* }
    copy_with_libs "$exe"
    # Debug info is most of a test binary's size and the guest never needs
    # it: a smaller initramfs boots faster under TCG.
    strip --strip-debug "$root$exe" 2>/dev/null || true
    echo "$(basename "$exe") $exe" >> "$vm/tests.list"
done
copy_with_libs "$(command -v setpriv)" /usr/bin/setpriv
# runc, so the compat test (runc runs a bundle berth wrote) runs on v2 too.
if command -v runc >/dev/null; then copy_with_libs "$(command -v runc)"; fi
# The volumes' backends and their tests: filesystems, loop devices, quota.
for tool in mkfs.xfs mkfs.ext4 mke2fs e2fsck resize2fs losetup mount umount; do
    p=$(command -v "$tool" || true)
    [ -n "$p" ] && copy_with_libs "$p"
done
# python3 for the tests' syscall probes (host-root mode containers see the
# guest's root); the standard library without what tests never import.
copy_with_libs /usr/bin/python3.11 /usr/bin/python3.11
ln -sf python3.11 "$root/usr/bin/python3"
mkdir -p "$root/usr/lib"
tar -C /usr/lib --exclude='python3.11/test' --exclude='python3.11/idlelib' \
    --exclude='python3.11/tkinter' --exclude='python3.11/ensurepip' \
    --exclude='python3.11/lib2to3' --exclude='python3.11/pydoc_data' \
    --exclude='python3.11/distutils' --exclude='python3.11/site-packages' \
    --exclude='python3.11/dist-packages' --exclude='python3.11/config-*' \
    -cf - python3.11 | tar -C "$root/usr/lib" -xf -
for so in "$root"/usr/lib/python3.11/lib-dynload/*.so; do
    ldd "$so" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
        if [ ! -e "$root$lib" ]; then
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        fi
    done || true
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
echo berth-vm > "$root/etc/hostname"
# Tests read a well-known host file in host-root mode.
cp /etc/debian_version "$root/etc/debian_version"

cat > "$root/init" <<'EOF'
#!/bin/busybox sh
# Stage 1: the initramfs root cannot be pivot_root'ed away from, so copy
# everything into a tmpfs and switch_root into it.
/bin/busybox mkdir -p /proc /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t tmpfs -o size=80% root /newroot
cd /
for d in *; do
    case "$d" in proc|sys|dev|newroot) /bin/busybox mkdir -p "/newroot/$d" ;;
    *) /bin/busybox cp -a "$d" /newroot/ ;; esac
done
/bin/busybox umount /proc
/bin/busybox umount /dev
exec /bin/busybox switch_root /newroot /stage2
EOF
cat > "$root/stage2" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# The root is already a tmpfs; /tmp may hold the checkout itself (the test
# binaries sit at their host paths), so it is not mounted over.
mkdir -p /run /tmp
chmod 1777 /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
hostname berth-vm
ip link set lo up 2>/dev/null || ifconfig lo up
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
done
# The virtio disk, for block I/O limits on a real device.
for pass in 1 2 3; do
    for ko in /modules/*.ko; do
        m=$(basename "$ko" .ko | tr - _)
        grep -q "^$m " /proc/modules || insmod "$ko" 2>/dev/null
    done
done
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.2; done
mkdir -p /mnt/disk
if mount -t ext4 /dev/vda /mnt/disk; then
    export BERTH_TEST_BLOCK_DIR=/mnt/disk
else
    echo "VMTEST-WARNING no virtio disk: block I/O tests will skip"
fi
echo "VMTEST-BOOTED kernel=$(uname -r) controllers=$(cat /sys/fs/cgroup/cgroup.subtree_control | tr ' ' ',')"
mkdir -p __TARGET__/tmp
fails=0
while read -r name exe; do
    echo "VMTEST-START $name"
    t0=$(date +%s)
    # Streamed with a prefix so a hang still shows what ran; one test
    # thread so a test's name is printed before it runs; bounded.
    # --nocapture: a test that skips says why, and that must be visible.
    { timeout 300 "$exe" --test-threads 1 --nocapture 2>&1; echo "rc=$?" > /tmp/rc; } | sed "s/^/[$name] /"
    rc=$(sed 's/rc=//' /tmp/rc)
    echo "VMTEST-END $name rc=$rc seconds=$(( $(date +%s) - t0 ))"
    [ $rc = 0 ] || fails=$((fails + 1))
done < /tests.list
echo "VMTEST-DONE failed_binaries=$fails"
sync
poweroff -f
EOF
sed -i "s#__TARGET__#$repo/target#" "$root/stage2"
chmod +x "$root/init" "$root/stage2"
cp "$vm/tests.list" "$root/tests.list"
mkdir -p "$root/modules"
cp "$modules"/* "$root/modules/"
# A fresh ext4 disk for the block I/O scenario (virtio-blk in the guest).
rm -f "$vm/disk.img"
truncate -s 64M "$vm/disk.img"
mkfs.ext4 -q -F "$vm/disk.img"

echo "vm: packing initramfs ($(du -sh "$root" | cut -f1))"
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) > "$vm/initramfs.cpio.gz"

# --- boot --------------------------------------------------------------------------
boot() { # accel total-limit boot-limit
    local accel=$1 limit=$2 boot_limit=$3 cpu=max pid waited=0
    [ "$accel" = kvm ] && cpu=host
    qemu-system-x86_64 \
        -accel "$accel" -cpu "$cpu" -m 2048 -smp 2 \
        -kernel "$kernel" -initrd "$vm/initramfs.cpio.gz" \
        -drive "file=$vm/disk.img,if=virtio,format=raw" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init" \
        -nographic -no-reboot -monitor none -serial stdio </dev/null > "$log" 2>&1 &
    pid=$!
    # Bounded twice: the guest must say it booted within boot_limit, and
    # finish within limit.
    while kill -0 "$pid" 2>/dev/null; do
        if [ $waited -ge "$boot_limit" ] && ! grep -q VMTEST-BOOTED "$log"; then break; fi
        if [ $waited -ge "$limit" ]; then break; fi
        sleep 1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        sleep 1
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

accel=tcg
if [ $force_tcg = 0 ] && [ -w /dev/kvm ]; then
    echo "vm: booting with KVM"
    boot kvm 600 30
    if grep -q VMTEST-DONE "$log"; then
        accel=kvm
    else
        echo "vm: the guest did not boot or finish under KVM; falling back to TCG"
    fi
fi
if [ $accel = tcg ]; then
    echo "vm: booting with TCG"
    boot "tcg,thread=multi" 900 120
fi

# --- results -------------------------------------------------------------------
elapsed=$(( $(date +%s) - started ))
if ! grep -q VMTEST-BOOTED "$log"; then
    echo "vm: the guest never booted; its console:" >&2
    tail -50 "$log" >&2
    exit 1
fi
grep -a VMTEST-BOOTED "$log" | tr -d '\r'
status=0
while read -r name exe; do
    end=$(grep -a "VMTEST-END $name " "$log" | tr -d '\r' || true)
    if [ -z "$end" ]; then
        echo "vm: $name did not finish (timeout or crash); its output:" >&2
        grep -a "^\[$name\] " "$log" | tail -40 >&2 || true
        status=1
        continue
    fi
    summary=$(grep -a "^\[$name\] test result:" "$log" | tr -d '\r' | sed "s/^\[$name\] //" | tail -1 || true)
    echo "vm: $name: ${summary:-no result line} (${end##*rc=})"
    if [[ "$end" != *"rc=0 "* ]]; then
        status=1
        echo "---- $name (guest output) ----" >&2
        grep -a "^\[$name\] " "$log" | grep -av -- '\.\.\. ok$' | tail -80 >&2 || true
    fi
done < "$vm/tests.list"
skips=$(grep -ai 'skipped: ' "$log" | tr -d '\r' | grep -a '^\[' |
    sed -E 's/^\[([^]]*)\] (test ([^ ]*) \.\.\. )?/\1 \3: /' | sort -u || true)
if [ -n "$skips" ]; then
    echo "vm: tests that skipped in the guest (with their reasons):"
    echo "$skips"
fi
# The host tier's closing line counts test binaries here, run in the guest.
passed=$(grep -ac 'VMTEST-END .* rc=0 ' "$log" || true)
total=$(wc -l < "$vm/tests.list")
echo "vm tier ($accel): $passed of $total test binaries passed in the guest"
echo "vm: took ${elapsed} s (log: $log)"
[ $keep = 1 ] || rm -rf "$root"
exit $status
