//! Which config.json fields Berth honours. A bundle that asks for anything
//! else is refused with an error naming the field: a container must never
//! run with less isolation, or different behaviour, than its config says.
//!
//! Honoured (see init.rs, supervisor.rs and the isolator): ociVersion 1.x,
//! root (path, readonly), mounts (bind/rbind and kernel types with their
//! flags and propagation), hostname, domainname, hooks, annotations,
//! process (terminal with a console socket, consoleSize, args, env, cwd,
//! user uid/gid/umask/additionalGids, capabilities, rlimits,
//! noNewPrivileges, oomScoreAdj), linux namespaces (new or joined by path),
//! uid/gid mappings, devices, resources (memory, cpu, pids, blockIO,
//! unified, and the device rules: the v1 devices controller or an eBPF
//! filter on cgroup v2; see the isolator's cgroup layer for what each mode
//! applies),
//! cgroupsPath, sysctl, seccomp, rootfsPropagation, maskedPaths,
//! readonlyPaths, personality (LINUX, LINUX32 without flags).

use oci_spec::runtime::Spec;

use crate::error::{Error, Result};

/// Checks that Berth can honour every field `spec` sets.
pub fn check(spec: &Spec) -> Result<()> {
    let unsupported = |field: &str, why: &str| Err(Error::invalid(field, why.to_string()));
    if !spec.version().starts_with("1.") {
        return unsupported(
            "ociVersion",
            &format!("{:?}: only runtime-spec 1.x is supported", spec.version()),
        );
    }
    if spec.root().is_none() {
        return unsupported("root", "a root filesystem is required");
    }
    if spec.solaris().is_some() || spec.windows().is_some() || spec.vm().is_some() {
        return unsupported("solaris/windows/vm", "only Linux containers are supported");
    }
    if spec.zos().is_some() {
        return unsupported("zos", "only Linux containers are supported");
    }
    let Some(process) = spec.process() else {
        return unsupported("process", "a process is required by create");
    };
    if process
        .apparmor_profile()
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return unsupported(
            "process.apparmorProfile",
            "AppArmor profiles are not supported by Berth",
        );
    }
    if process
        .selinux_label()
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return unsupported(
            "process.selinuxLabel",
            "SELinux labels are not supported by Berth",
        );
    }
    if process.io_priority().is_some() {
        return unsupported("process.ioPriority", "not supported yet");
    }
    if process.scheduler().is_some() {
        return unsupported("process.scheduler", "not supported yet");
    }
    if process.exec_cpu_affinity().is_some() {
        return unsupported("process.execCPUAffinity", "not supported yet");
    }
    if process.command_line().is_some() {
        return unsupported("process.commandLine", "a Windows field");
    }
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return unsupported("process.args", "at least the program is required");
    }
    for m in spec.mounts().clone().unwrap_or_default() {
        if !m.destination().is_absolute() {
            return unsupported(
                "mounts.destination",
                &format!("{}: must be absolute", m.destination().display()),
            );
        }
    }
    let Some(linux) = spec.linux() else {
        return unsupported("linux", "the linux section is required");
    };
    if linux.mount_label().as_ref().is_some_and(|s| !s.is_empty()) {
        return unsupported(
            "linux.mountLabel",
            "SELinux labels are not supported by Berth",
        );
    }
    if linux.intel_rdt().is_some() {
        return unsupported("linux.intelRdt", "not supported");
    }
    if linux.memory_policy().is_some() {
        return unsupported("linux.memoryPolicy", "not supported yet");
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) {
        return unsupported("linux.timeOffsets", "not supported yet");
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return unsupported("linux.netDevices", "not supported yet");
    }
    if let Some(s) = linux.seccomp() {
        if s.listener_path().is_some() {
            return unsupported("linux.seccomp.listenerPath", "not supported yet");
        }
    }
    if let Some(p) = linux.personality() {
        if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
            return unsupported("linux.personality.flags", "not supported yet");
        }
    }
    if let Some(p) = linux.cgroups_path() {
        let s = p.display().to_string();
        if !s.starts_with('/') && s.matches(':').count() == 2 {
            return unsupported(
                "linux.cgroupsPath",
                &format!("{s:?} is a systemd slice:prefix:name path; Berth manages cgroupfs only (no --systemd-cgroup)"),
            );
        }
    }
    if let Some(r) = linux.resources() {
        // A rule that cannot be enforced fails here, naming it, before
        // anything is created.
        isolator::cgroups::DevicePolicy::for_container(
            r.devices().as_deref().unwrap_or_default(),
            linux.devices().as_deref().unwrap_or_default(),
        )?;
        if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
            return unsupported("linux.resources.hugepageLimits", "not supported yet");
        }
        if r.network().is_some() {
            return unsupported("linux.resources.network", "not supported yet");
        }
        if r.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
            return unsupported("linux.resources.rdma", "not supported yet");
        }
        if let Some(m) = r.memory() {
            if m.kernel().is_some_and(|k| k != 0) || m.kernel_tcp().is_some_and(|k| k != 0) {
                return unsupported(
                    "linux.resources.memory.kernel",
                    "kernel memory limits are not supported (deprecated by the kernel)",
                );
            }
            if m.disable_oom_killer() == Some(true) {
                return unsupported("linux.resources.memory.disableOOMKiller", "not supported");
            }
        }
        if let Some(c) = r.cpu() {
            if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
                return unsupported("linux.resources.cpu.realtimeRuntime", "not supported");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut serde_json::Value)) -> Result<()> {
        let mut v = serde_json::to_value(Spec::default()).unwrap();
        v["ociVersion"] = "1.2.0".into();
        f(&mut v);
        check(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn the_default_spec_is_accepted() {
        with(|_| {}).unwrap();
    }

    #[test]
    fn unsupported_fields_are_named() {
        for (field, set) in [
            ("process.apparmorProfile", "/process/apparmorProfile"),
            ("process.selinuxLabel", "/process/selinuxLabel"),
            ("linux.mountLabel", "/linux/mountLabel"),
        ] {
            let e = with(|v| {
                *v.pointer_mut(set.rsplit_once('/').unwrap().0)
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .entry(set.rsplit_once('/').unwrap().1)
                    .or_insert(serde_json::Value::Null) = "x".into()
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains(field), "{e}");
        }
        let e = with(|v| v["ociVersion"] = "2.0.0".into()).unwrap_err();
        assert!(e.to_string().contains("ociVersion"));
        let e = with(|v| v["linux"]["cgroupsPath"] = "system.slice:berth:x".into()).unwrap_err();
        assert!(e.to_string().contains("systemd"));
    }
}
