//! `berth features`: the runtime-spec features document (features.md),
//! listing only what Berth really implements.

use serde_json::json;

use crate::CmdResult;

/// The document. Each list mirrors the code that implements it: hooks
/// (launcher::hooks), mount options (isolator::rootfs::parse_options),
/// namespaces (isolator::namespaces), capabilities (the caps crate's list),
/// seccomp (isolator::seccomp: every action including NOTIFY with a
/// listener, the flags oci-spec can parse, probed on this kernel).
pub fn document() -> serde_json::Value {
    let caps: Vec<String> = isolator::capabilities::names(&isolator::capabilities::all_known());
    // TSYNC is accepted and needs nothing (init is single-threaded when it
    // installs); the others are passed to seccomp(2) if the kernel knows them.
    let known_flags = [
        ("SECCOMP_FILTER_FLAG_TSYNC", libc::SECCOMP_FILTER_FLAG_TSYNC),
        ("SECCOMP_FILTER_FLAG_LOG", libc::SECCOMP_FILTER_FLAG_LOG),
        (
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        ),
    ];
    let supported_flags: Vec<&str> = known_flags
        .iter()
        .filter(|(_, bit)| isolator::seccomp::kernel_supports_flag(*bit))
        .map(|(name, _)| *name)
        .collect();
    let known_flags: Vec<&str> = known_flags.iter().map(|(name, _)| *name).collect();
    let arch = match std::env::consts::ARCH {
        "x86_64" => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" => vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "riscv64" => vec!["SCMP_ARCH_RISCV64"],
        _ => vec![],
    };
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": launcher::runtime::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync",
                         "exec", "mand", "noatime", "nodev", "nodiratime", "noexec",
                         "nomand", "norelatime", "nostrictatime", "nosuid", "private",
                         "rbind", "relatime", "remount", "ro", "rprivate", "rshared",
                         "rslave", "runbindable", "rw", "shared", "slave", "strictatime",
                         "suid", "sync", "unbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps,
            "cgroup": {
                "v1": true,
                "v2": true,
                "systemd": false,
                "systemdUser": false,
                "rdma": false
            },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                            "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                              "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": arch,
                "knownFlags": known_flags,
                "supportedFlags": supported_flags
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } }
        },
        "annotations": {
            "io.github.berth.version": env!("CARGO_PKG_VERSION")
        }
    })
}

pub fn run() -> CmdResult {
    println!(
        "{}",
        serde_json::to_string_pretty(&document()).unwrap_or_default()
    );
    Ok(0)
}
