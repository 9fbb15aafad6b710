//! Which config.json fields Berth honours. A bundle that asks for anything
//! else is refused with an error naming the field: a container must never
//! run with less isolation, or different behaviour, than its config says.
//! [`check`] looks at the parsed spec; [`check_raw`] at the JSON, for the
//! runtime-spec fields the OCI model (oci-spec 0.8) does not carry and
//! would drop silently: `mounts[].uidMappings`/`gidMappings` (idmapped
//! mounts) and `linux.intelRdt.schemata`/`enableCMT`/`enableMBM`.
//! Properties the runtime-spec does not define are ignored, as it requires.
//!
//! Honoured (see init.rs, supervisor.rs and the isolator): ociVersion 1.x,
//! root (path, readonly), mounts (bind/rbind and kernel types with their
//! flags and propagation), hostname, domainname, hooks, annotations,
//! process (terminal with a console socket, consoleSize, args, env, cwd,
//! user uid/gid/umask/additionalGids, capabilities, rlimits,
//! noNewPrivileges, oomScoreAdj), linux namespaces (new or joined by path),
//! uid/gid mappings, devices, resources (memory, cpu, pids, blockIO,
//! hugepageLimits, unified, and the device rules: the v1 devices
//! controller or an eBPF filter on cgroup v2; see the isolator's cgroup
//! layer for what each mode applies: a limit the host cannot apply fails
//! the create, naming it),
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
        }
    }
    Ok(())
}

/// Every property of runtime-spec 1.2's config.json (and the Linux parts
/// of 1.3 the model knows), as paths with `[]` for array elements and `*`
/// for the keys of a map. [`check_raw`] uses it to tell a known field that
/// the OCI model (oci-spec) drops on parsing, which Berth therefore cannot
/// honour, from an unknown property, which the spec says to ignore.
const SPEC_FIELDS: &[&str] = &[
    "ociVersion",
    "hostname",
    "domainname",
    "annotations",
    "annotations.*",
    "root",
    "root.path",
    "root.readonly",
    "mounts",
    "mounts[].destination",
    "mounts[].source",
    "mounts[].options",
    "mounts[].type",
    "mounts[].uidMappings",
    "mounts[].gidMappings",
    "mounts[].uidMappings[].containerID",
    "mounts[].uidMappings[].hostID",
    "mounts[].uidMappings[].size",
    "mounts[].gidMappings[].containerID",
    "mounts[].gidMappings[].hostID",
    "mounts[].gidMappings[].size",
    "process",
    "process.terminal",
    "process.consoleSize",
    "process.consoleSize.height",
    "process.consoleSize.width",
    "process.cwd",
    "process.env",
    "process.args",
    "process.commandLine",
    "process.rlimits",
    "process.rlimits[].type",
    "process.rlimits[].soft",
    "process.rlimits[].hard",
    "process.apparmorProfile",
    "process.capabilities",
    "process.capabilities.effective",
    "process.capabilities.bounding",
    "process.capabilities.inheritable",
    "process.capabilities.permitted",
    "process.capabilities.ambient",
    "process.noNewPrivileges",
    "process.oomScoreAdj",
    "process.scheduler",
    "process.scheduler.policy",
    "process.scheduler.nice",
    "process.scheduler.priority",
    "process.scheduler.flags",
    "process.scheduler.runtime",
    "process.scheduler.deadline",
    "process.scheduler.period",
    "process.selinuxLabel",
    "process.ioPriority",
    "process.ioPriority.class",
    "process.ioPriority.priority",
    "process.execCPUAffinity",
    "process.execCPUAffinity.initial",
    "process.execCPUAffinity.final",
    "process.user",
    "process.user.uid",
    "process.user.gid",
    "process.user.umask",
    "process.user.additionalGids",
    "process.user.username",
    "hooks",
    "hooks.prestart",
    "hooks.createRuntime",
    "hooks.createContainer",
    "hooks.startContainer",
    "hooks.poststart",
    "hooks.poststop",
    "hooks.*[].path",
    "hooks.*[].args",
    "hooks.*[].env",
    "hooks.*[].timeout",
    "linux",
    "linux.namespaces",
    "linux.namespaces[].type",
    "linux.namespaces[].path",
    "linux.uidMappings",
    "linux.uidMappings[].containerID",
    "linux.uidMappings[].hostID",
    "linux.uidMappings[].size",
    "linux.gidMappings",
    "linux.gidMappings[].containerID",
    "linux.gidMappings[].hostID",
    "linux.gidMappings[].size",
    "linux.timeOffsets",
    "linux.timeOffsets.*",
    "linux.timeOffsets.*.secs",
    "linux.timeOffsets.*.nanosecs",
    "linux.devices",
    "linux.devices[].type",
    "linux.devices[].path",
    "linux.devices[].major",
    "linux.devices[].minor",
    "linux.devices[].fileMode",
    "linux.devices[].uid",
    "linux.devices[].gid",
    "linux.netDevices",
    "linux.netDevices.*",
    "linux.netDevices.*.name",
    "linux.cgroupsPath",
    "linux.rootfsPropagation",
    "linux.resources",
    "linux.resources.devices",
    "linux.resources.devices[].allow",
    "linux.resources.devices[].type",
    "linux.resources.devices[].major",
    "linux.resources.devices[].minor",
    "linux.resources.devices[].access",
    "linux.resources.memory",
    "linux.resources.memory.limit",
    "linux.resources.memory.reservation",
    "linux.resources.memory.swap",
    "linux.resources.memory.kernel",
    "linux.resources.memory.kernelTCP",
    "linux.resources.memory.swappiness",
    "linux.resources.memory.disableOOMKiller",
    "linux.resources.memory.useHierarchy",
    "linux.resources.memory.checkBeforeUpdate",
    "linux.resources.cpu",
    "linux.resources.cpu.shares",
    "linux.resources.cpu.quota",
    "linux.resources.cpu.burst",
    "linux.resources.cpu.period",
    "linux.resources.cpu.realtimeRuntime",
    "linux.resources.cpu.realtimePeriod",
    "linux.resources.cpu.cpus",
    "linux.resources.cpu.mems",
    "linux.resources.cpu.idle",
    "linux.resources.blockIO",
    "linux.resources.blockIO.weight",
    "linux.resources.blockIO.leafWeight",
    "linux.resources.blockIO.weightDevice",
    "linux.resources.blockIO.weightDevice[].major",
    "linux.resources.blockIO.weightDevice[].minor",
    "linux.resources.blockIO.weightDevice[].weight",
    "linux.resources.blockIO.weightDevice[].leafWeight",
    "linux.resources.blockIO.throttleReadBpsDevice",
    "linux.resources.blockIO.throttleWriteBpsDevice",
    "linux.resources.blockIO.throttleReadIOPSDevice",
    "linux.resources.blockIO.throttleWriteIOPSDevice",
    "linux.resources.blockIO.*[].major",
    "linux.resources.blockIO.*[].minor",
    "linux.resources.blockIO.*[].rate",
    "linux.resources.hugepageLimits",
    "linux.resources.hugepageLimits[].pageSize",
    "linux.resources.hugepageLimits[].limit",
    "linux.resources.network",
    "linux.resources.network.classID",
    "linux.resources.network.priorities",
    "linux.resources.network.priorities[].name",
    "linux.resources.network.priorities[].priority",
    "linux.resources.pids",
    "linux.resources.pids.limit",
    "linux.resources.rdma",
    "linux.resources.rdma.*",
    "linux.resources.rdma.*.hcaHandles",
    "linux.resources.rdma.*.hcaObjects",
    "linux.resources.unified",
    "linux.resources.unified.*",
    "linux.intelRdt",
    "linux.intelRdt.closID",
    "linux.intelRdt.l3CacheSchema",
    "linux.intelRdt.memBwSchema",
    "linux.intelRdt.schemata",
    "linux.intelRdt.enableCMT",
    "linux.intelRdt.enableMBM",
    "linux.memoryPolicy",
    "linux.memoryPolicy.mode",
    "linux.memoryPolicy.nodes",
    "linux.memoryPolicy.flags",
    "linux.personality",
    "linux.personality.domain",
    "linux.personality.flags",
    "linux.seccomp",
    "linux.seccomp.defaultAction",
    "linux.seccomp.defaultErrnoRet",
    "linux.seccomp.architectures",
    "linux.seccomp.flags",
    "linux.seccomp.listenerPath",
    "linux.seccomp.listenerMetadata",
    "linux.seccomp.syscalls",
    "linux.seccomp.syscalls[].names",
    "linux.seccomp.syscalls[].action",
    "linux.seccomp.syscalls[].errnoRet",
    "linux.seccomp.syscalls[].args",
    "linux.seccomp.syscalls[].args[].index",
    "linux.seccomp.syscalls[].args[].value",
    "linux.seccomp.syscalls[].args[].valueTwo",
    "linux.seccomp.syscalls[].args[].op",
    "linux.sysctl",
    "linux.sysctl.*",
    "linux.maskedPaths",
    "linux.readonlyPaths",
    "linux.mountLabel",
    "solaris",
    "windows",
    "vm",
    "zos",
];

/// Checks the raw config.json for runtime-spec fields that the OCI model
/// drops while parsing (they would be silently ignored otherwise): each
/// property present in `raw` with a value that means something (not null,
/// false, 0, "" or empty) but gone after a round trip through [`Spec`] is
/// an error naming it if it is a runtime-spec field, and ignored (as the
/// spec requires of unknown properties) otherwise.
pub fn check_raw(raw: &serde_json::Value) -> Result<()> {
    let spec: Spec = serde_json::from_value(raw.clone())
        .map_err(|e| Error::Spec(format!("parsing config.json: {e}")))?;
    check_raw_parsed(raw, &spec)
}

/// [`check_raw`] for a caller that has already parsed the same JSON into
/// `spec` (create does, to check it): the model is not built a second time
/// from a clone of `raw`, which was a third parse of config.json on every
/// `berth create|run`.
pub fn check_raw_parsed(raw: &serde_json::Value, spec: &Spec) -> Result<()> {
    let back = serde_json::to_value(spec)
        .map_err(|e| Error::Spec(format!("re-encoding config.json: {e}")))?;
    let mut dropped = Vec::new();
    dropped_fields(raw, &back, "", &mut dropped);
    match dropped.into_iter().find(|(pattern, _)| SPEC_FIELDS.contains(&pattern.as_str())) {
        Some((_, path)) => Err(Error::invalid(
            path,
            "a runtime-spec field that Berth's OCI model (oci-spec) does not carry, so Berth cannot honour it",
        )),
        None => Ok(()),
    }
}

/// Collects (pattern, path) of the properties of `raw` missing from `back`.
/// The pattern uses `[]` for array elements and `*` for map keys (a key of
/// a known map, e.g. "linux.sysctl.*"), the path real indexes and keys.
fn dropped_fields(
    raw: &serde_json::Value,
    back: &serde_json::Value,
    pattern: &str,
    out: &mut Vec<(String, String)>,
) {
    dropped_at(raw, back, pattern, pattern, out)
}

fn dropped_at(
    raw: &serde_json::Value,
    back: &serde_json::Value,
    pattern: &str,
    path: &str,
    out: &mut Vec<(String, String)>,
) {
    use serde_json::Value;
    let meaningful = |v: &Value| match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    };
    let join = |base: &str, key: &str| {
        if base.is_empty() {
            key.to_string()
        } else {
            format!("{base}.{key}")
        }
    };
    match (raw, back) {
        (Value::Object(r), Value::Object(b)) => {
            for (key, value) in r {
                // A map's keys are data: follow them as "*".
                let named = join(pattern, key);
                let p = if SPEC_FIELDS.iter().any(|f| {
                    *f == named
                        || f.starts_with(&format!("{named}."))
                        || f.starts_with(&format!("{named}["))
                }) {
                    named
                } else {
                    join(pattern, "*")
                };
                match b.get(key) {
                    Some(bv) => dropped_at(value, bv, &p, &join(path, key), out),
                    None if meaningful(value) => out.push((p, join(path, key))),
                    None => {}
                }
            }
        }
        (Value::Array(r), Value::Array(b)) => {
            for (i, (rv, bv)) in r.iter().zip(b).enumerate() {
                dropped_at(
                    rv,
                    bv,
                    &format!("{pattern}[]"),
                    &format!("{path}[{i}]"),
                    out,
                );
            }
        }
        _ => {}
    }
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

    /// A config with every runtime-spec field the OCI model might lack:
    /// prints those it drops (the list for the docs) and checks that each
    /// is refused by name while unknown properties are ignored.
    #[test]
    fn known_fields_the_model_drops_are_errors() {
        let mut v = serde_json::to_value(Spec::default()).unwrap();
        v["ociVersion"] = "1.2.0".into();
        check_raw(&v).unwrap();
        let probes: Vec<(&str, serde_json::Value)> = vec![
            (
                "/mounts/0/uidMappings",
                serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]),
            ),
            ("/process/user/username", "x".into()),
            (
                "/process/scheduler",
                serde_json::json!({"policy": "SCHED_OTHER", "nice": 1}),
            ),
            (
                "/process/execCPUAffinity",
                serde_json::json!({"initial": "0"}),
            ),
            (
                "/process/ioPriority",
                serde_json::json!({"class": "IOPRIO_CLASS_IDLE", "priority": 1}),
            ),
            (
                "/linux/resources/memory",
                serde_json::json!({"checkBeforeUpdate": true}),
            ),
            (
                "/linux/resources/cpu",
                serde_json::json!({"burst": 10, "idle": 1}),
            ),
            (
                "/linux/intelRdt",
                serde_json::json!({"closID": "x", "schemata": ["L3:0=f"], "enableCMT": true, "enableMBM": true}),
            ),
            (
                "/linux/seccomp",
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m", "defaultErrnoRet": 1}),
            ),
            (
                "/linux/timeOffsets",
                serde_json::json!({"monotonic": {"secs": 1, "nanosecs": 2}}),
            ),
            (
                "/linux/memoryPolicy",
                serde_json::json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}),
            ),
            (
                "/linux/netDevices",
                serde_json::json!({"eth1": {"name": "x"}}),
            ),
            (
                "/linux/resources/rdma",
                serde_json::json!({"mlx": {"hcaHandles": 1, "hcaObjects": 2}}),
            ),
        ];
        let mut dropped_known = Vec::new();
        for (at, value) in probes {
            let mut c = v.clone();
            let (parent, key) = at.rsplit_once('/').unwrap();
            c.pointer_mut(parent)
                .unwrap_or_else(|| panic!("{parent}"))
                .as_object_mut()
                .unwrap()
                .insert(key.to_string(), value);
            let back =
                serde_json::to_value(serde_json::from_value::<Spec>(c.clone()).unwrap()).unwrap();
            let mut d = Vec::new();
            dropped_fields(&c, &back, "", &mut d);
            if let Some((_, first)) = d.first() {
                let e = check_raw(&c).unwrap_err().to_string();
                assert!(e.contains(first.as_str()), "{e}");
            }
            for (pattern, path) in d {
                assert!(
                    SPEC_FIELDS.contains(&pattern.as_str()),
                    "{pattern} is not listed"
                );
                dropped_known.push(path);
            }
        }
        println!("runtime-spec fields oci-spec drops: {dropped_known:?}");
        // Unknown properties anywhere are ignored.
        let mut c = v.clone();
        c["org.example.extension"] = "x".into();
        c["linux"]["org.example.field"] = serde_json::json!({"a": 1});
        c["process"]["user"]["org.example"] = 1.into();
        check_raw(&c).unwrap();
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
