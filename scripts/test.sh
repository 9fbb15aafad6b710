#!/usr/bin/env bash
# Installs what the tests need (busybox-static, runc, uidmap, xfsprogs,
# qemu) and runs all of them: formatting, lints,
# unit tests (unprivileged) and integration tests (real namespaces and
# cgroups; they need root and are skipped with a printed reason without it).
# The VM tier (tests/vm/run.sh) runs them again in a qemu guest with a pure
# cgroup v2 hierarchy. This is the README's test command and what CI runs
# (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v busybox >/dev/null || [ -x /bin/busybox ] || need+=(busybox-static)
command -v runc >/dev/null || need+=(runc)
command -v newuidmap >/dev/null || need+=(uidmap)
command -v setpriv >/dev/null || need+=(util-linux)
command -v python3 >/dev/null || need+=(python3)
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing: ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "missing packages (install as root): ${need[*]}" >&2
    fi
fi

start=$(date +%s)
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The VM tier: the same integration tests in a guest with a pure cgroup v2
# hierarchy (qemu; about a minute). BERTH_SKIP_VM=1 leaves it out.
if [ "${BERTH_SKIP_VM:-0}" = 1 ]; then
    echo "vm tier: skipped (BERTH_SKIP_VM=1)"
elif [ "$(id -u)" != 0 ]; then
    echo "vm tier: skipped (needs root to install qemu and the kernel package)"
else
    bash tests/vm/run.sh
fi
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
echo "tests finished in $(( $(date +%s) - start )) s"
