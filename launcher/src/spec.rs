//! Building an OCI runtime configuration (config.json) from a launch
//! request. The result is written into the container's bundle and is the
//! only thing the supervisor and init read: whatever `berth launch` can do
//! is expressible as a bundle another runtime (runc) accepts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use isolator::capabilities;
use oci_spec::runtime::{
    Capability, LinuxBlockIoBuilder, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, LinuxSeccomp, LinuxThrottleDevice,
    LinuxThrottleDeviceBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};

use crate::error::{Error, Result};

/// The runtime-spec version Berth writes.
pub const OCI_VERSION: &str = "1.2.0";

/// Annotation prefix recording which named volume is mounted where:
/// `berth.volume:/data` = `db`.
pub const VOLUME_ANNOTATION: &str = "berth.volume:";

/// Annotation prefix asking the supervisor to kill the container when the
/// (unenforced) volume mounted at the destination grows past a size:
/// `berth.volume-limit:/data` = bytes.
pub const VOLUME_LIMIT_ANNOTATION: &str = "berth.volume-limit:";

/// Where a host-root container's sandbox appears.
pub const SANDBOX_PATH: &str = "/mnt/sandbox";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetMode {
    /// A new network namespace with only `lo`, up.
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    Default,
    Unconfined,
    File(PathBuf),
}

/// A bind mount of a host path into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
}

impl VolumeMount {
    /// Parses `/host/path:/ctr/path[:ro|rw]`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid(
                "--volume",
                format!("{s:?}: {why} (expected /host/path:/container/path[:ro|:rw])"),
            )
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [a, b] => (*a, *b, None),
            [a, b, m] => (*a, *b, Some(*m)),
            _ => return Err(bad("wrong number of ':'-separated fields")),
        };
        if !src.starts_with('/') {
            return Err(bad("the host path must be absolute"));
        }
        if !dst.starts_with('/') {
            return Err(bad("the container path must be absolute"));
        }
        if dst.split('/').any(|c| c == "..") {
            return Err(bad("the container path must not contain '..'"));
        }
        let read_only = match mode {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(m) => return Err(bad(&format!("unknown mode {m:?}"))),
        };
        if !Path::new(src).exists() {
            return Err(Error::invalid(
                "--volume",
                format!("host path {src} does not exist"),
            ));
        }
        Ok(VolumeMount {
            source: PathBuf::from(src),
            destination: PathBuf::from(dst),
            read_only,
        })
    }
}

/// Which block I/O limit an [`IoLimit`] sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    ReadBps,
    WriteBps,
    ReadIops,
    WriteIops,
}

impl IoKind {
    pub fn flag(self) -> &'static str {
        match self {
            IoKind::ReadBps => "--device-read-bps",
            IoKind::WriteBps => "--device-write-bps",
            IoKind::ReadIops => "--device-read-iops",
            IoKind::WriteIops => "--device-write-iops",
        }
    }
}

/// A block I/O throttle on one device (Docker's --device-read-bps and
/// friends): `DEVICE:RATE`, RATE in bytes per second with an optional
/// binary unit (k, m, g: KiB, MiB, GiB) or operations per second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoLimit {
    pub kind: IoKind,
    pub device: PathBuf,
    pub major: u64,
    pub minor: u64,
    pub rate: u64,
}

impl IoLimit {
    pub fn parse(kind: IoKind, s: &str) -> Result<Self> {
        let bad = |why: String| Error::invalid(kind.flag(), format!("{s:?}: {why}"));
        let (dev, rate) = s
            .rsplit_once(':')
            .ok_or_else(|| bad("expected DEVICE:RATE, e.g. /dev/vda:1m".into()))?;
        let rate = match kind {
            IoKind::ReadBps | IoKind::WriteBps => parse_bytes(rate),
            IoKind::ReadIops | IoKind::WriteIops => rate.parse().ok(),
        }
        .filter(|r| *r > 0)
        .ok_or_else(|| bad(format!("{rate:?} is not a positive rate")))?;
        let md = std::fs::metadata(dev).map_err(|e| bad(format!("{dev}: {e}")))?;
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if !md.file_type().is_block_device() {
            return Err(bad(format!("{dev} is not a block device")));
        }
        let rdev = md.rdev();
        Ok(IoLimit {
            kind,
            device: PathBuf::from(dev),
            major: nix::sys::stat::major(rdev),
            minor: nix::sys::stat::minor(rdev),
            rate,
        })
    }
}

/// A size as docker's RAMInBytes reads it (runc's `update` uses it too):
/// "1048576", "512k", "10m", "1.5g", "10MiB", "100 MB", "1p": binary
/// multiples, case-insensitive, an optional fraction. None for anything
/// else, negative sizes included.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let unit_start = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(unit_start);
    let unit = unit.trim_start();
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let total = num.parse::<f64>().ok()? * mult;
    (total.is_finite() && total < u64::MAX as f64).then_some(total as u64)
}

/// What `berth launch` asks for. Every field is validated by
/// [`LaunchRequest::validate`]; errors name the flag.
#[derive(Debug, Clone, Default)]
pub struct LaunchRequest {
    pub args: Vec<String>,
    /// None: the host's filesystem, read-only, with a writable sandbox.
    pub rootfs: Option<PathBuf>,
    /// Host directories a host-root container must not see (Berth's state
    /// root with other containers' bundles and logs, the volume store):
    /// hidden like OCI masked paths.
    pub hidden_paths: Vec<PathBuf>,
    pub cpus: Option<f64>,
    /// Memory limit in MiB (swap off).
    pub memory_mib: Option<u64>,
    pub pids: Option<i64>,
    /// Block I/O throttles.
    pub io: Vec<IoLimit>,
    pub net: NetMode,
    pub volumes: Vec<VolumeMount>,
    pub seccomp: Option<SeccompChoice>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub user: Option<(u32, u32)>,
    pub env: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub hostname: Option<String>,
    /// Build a rootless spec (user namespace, current ids mapped to 0).
    pub rootless: Option<RootlessIds>,
    /// Parent of the container's cgroup ("berth" by default); relative
    /// paths are placed under the caller's own cgroup, as runc does.
    pub cgroup_parent: String,
    /// Annotations for config.json (e.g. which named volume is where).
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Ids for a rootless container: the caller's, plus subordinate ranges.
#[derive(Debug, Clone, Default)]
pub struct RootlessIds {
    pub uid: u32,
    pub gid: u32,
    pub sub_uids: Option<(u32, u32)>,
    pub sub_gids: Option<(u32, u32)>,
}

impl LaunchRequest {
    pub fn validate(&self) -> Result<()> {
        if self.args.is_empty() || self.args[0].is_empty() {
            return Err(Error::invalid(
                "command",
                "no command given (berth launch [OPTIONS] -- CMD [ARGS...])",
            ));
        }
        if let Some(c) = self.cpus {
            if !(c.is_finite() && c >= 0.01) {
                return Err(Error::invalid(
                    "--cpus",
                    format!("{c} is not allowed: use a number of CPUs of at least 0.01, e.g. 0.5"),
                ));
            }
            let n = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            if c > n as f64 {
                return Err(Error::invalid(
                    "--cpus",
                    format!("{c} is more than the {n} CPUs of this machine"),
                ));
            }
        }
        if let Some(m) = self.memory_mib {
            if m < 4 {
                return Err(Error::invalid(
                    "--mem",
                    format!("{m} MiB is not allowed: use at least 4 (MiB)"),
                ));
            }
            if m > (1 << 40) {
                return Err(Error::invalid("--mem", format!("{m} MiB is too large")));
            }
        }
        if let Some(p) = self.pids {
            if p < 1 {
                return Err(Error::invalid(
                    "--pids",
                    format!("{p} is not allowed: use a positive number of processes"),
                ));
            }
        }
        if let Some(r) = &self.rootfs {
            if !r.is_dir() {
                return Err(Error::invalid(
                    "--rootfs",
                    format!("{} does not exist or is not a directory", r.display()),
                ));
            }
        }
        for e in &self.env {
            match e.split_once('=') {
                Some((k, _)) if !k.is_empty() && !k.contains('\0') => {}
                _ => return Err(Error::invalid("--env", format!("{e:?} is not KEY=VALUE"))),
            }
        }
        if let Some(w) = &self.workdir {
            if !w.is_absolute() {
                return Err(Error::invalid(
                    "--workdir",
                    format!("{} must be an absolute path", w.display()),
                ));
            }
        }
        if let Some(h) = &self.hostname {
            let ok = !h.is_empty()
                && h.len() <= 64
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                return Err(Error::invalid(
                    "--hostname",
                    format!("{h:?} is not a valid hostname (1-64 letters, digits, '-', '.')"),
                ));
            }
            if self.net == NetMode::Host {
                // With the host's network the container keeps its own UTS
                // namespace, so this is still allowed; nothing to check.
            }
        }
        let parent = self.cgroup_parent.trim_end_matches('/');
        if parent.split('/').any(|c| c == ".." || c == ".") || parent.contains('\0') {
            return Err(Error::invalid(
                "--cgroup-parent",
                format!(
                    "{:?} must not contain '.' or '..' components",
                    self.cgroup_parent
                ),
            ));
        }
        for c in self.cap_add.iter().chain(self.cap_drop.iter()) {
            if !c.eq_ignore_ascii_case("ALL") {
                capabilities::parse_capability(c).map_err(|e| {
                    Error::invalid(
                        if self.cap_add.contains(c) {
                            "--cap-add"
                        } else {
                            "--cap-drop"
                        },
                        e.to_string(),
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// The mounts every container gets (the runtime spec's defaults, as in
/// `runc spec`), with a cgroup view that is read-only.
///
/// Without its own network namespace a container cannot mount a new sysfs
/// (the kernel ties sysfs to the mounter's netns and answers EBUSY for a
/// read-only instance beside the host's read-write one), so, as runc does,
/// it gets the host's /sys bound read-only instead.
fn base_mounts(rootless: bool, own_netns: bool) -> Vec<Mount> {
    let m = |dst: &str, typ: &str, src: &str, opts: &[&str]| {
        MountBuilder::default()
            .destination(dst)
            .typ(typ)
            .source(src)
            .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .expect("static mount is valid")
    };
    let devpts: &[&str] = if rootless {
        // gid 5 (tty) is not mapped in a rootless user namespace.
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
        ]
    } else {
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]
    };
    vec![
        m("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        m(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        m("/dev/pts", "devpts", "devpts", devpts),
        m(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        m(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        if own_netns {
            m(
                "/sys",
                "sysfs",
                "sysfs",
                &["nosuid", "noexec", "nodev", "ro"],
            )
        } else {
            m(
                "/sys",
                "bind",
                "/sys",
                &["rbind", "nosuid", "noexec", "nodev", "ro"],
            )
        },
        m(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
}

/// The capability set of `runc spec` with `--cap-add`/`--cap-drop` applied
/// ("ALL" in --cap-drop empties the set first, as in Docker).
pub fn capability_set(cap_add: &[String], cap_drop: &[String]) -> Result<Vec<String>> {
    let mut set: Vec<String> = vec![
        "CAP_AUDIT_WRITE".into(),
        "CAP_KILL".into(),
        "CAP_NET_BIND_SERVICE".into(),
    ];
    for d in cap_drop {
        if d.eq_ignore_ascii_case("ALL") {
            set.clear();
        } else {
            let c = capabilities::parse_capability(d)
                .map_err(|e| Error::invalid("--cap-drop", e.to_string()))?;
            set.retain(|x| *x != c.to_string());
        }
    }
    for a in cap_add {
        if a.eq_ignore_ascii_case("ALL") {
            set = capabilities::names(&capabilities::all_known());
            continue;
        }
        let c = capabilities::parse_capability(a)
            .map_err(|e| Error::invalid("--cap-add", e.to_string()))?;
        if !set.contains(&c.to_string()) {
            set.push(c.to_string());
        }
    }
    Ok(set)
}

fn to_oci_caps(names: &[String]) -> Result<HashSet<Capability>> {
    names
        .iter()
        .map(|n| {
            serde_json::from_value::<Capability>(serde_json::Value::String(n.clone())).map_err(
                |_| {
                    Error::invalid(
                        "capabilities",
                        format!("{n} is not known to the OCI runtime spec"),
                    )
                },
            )
        })
        .collect()
}

/// Paths Berth needs to build a spec (the container's state directory).
pub struct SpecPaths<'a> {
    pub sandbox: &'a Path,
    /// The container's cgroupsPath.
    pub cgroup_path: &'a str,
}

/// Builds the config.json for a request that [`LaunchRequest::validate`]
/// accepted (the launcher validates before it creates anything).
pub fn build(req: &LaunchRequest, paths: &SpecPaths) -> Result<Spec> {
    let oci = |e: oci_spec::OciSpecError| Error::Spec(format!("building config.json: {e}"));
    let host_root = req.rootfs.is_none();

    // process
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        "HOME=/root".to_string(),
    ];
    if host_root {
        env.push(format!("MESOS_SANDBOX={SANDBOX_PATH}"));
    }
    for e in &req.env {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let cwd = req.workdir.clone().unwrap_or_else(|| {
        if host_root {
            PathBuf::from(SANDBOX_PATH)
        } else {
            PathBuf::from("/")
        }
    });
    let caps = to_oci_caps(&capability_set(&req.cap_add, &req.cap_drop)?)?;
    let (uid, gid) = req.user.unwrap_or((0, 0));
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(req.args.clone())
        .env(env)
        .cwd(cwd)
        .user(
            UserBuilder::default()
                .uid(uid)
                .gid(gid)
                .build()
                .map_err(oci)?,
        )
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps.clone())
                .inheritable(caps.clone())
                .ambient(caps)
                .build()
                .map_err(oci)?,
        )
        .rlimits(vec![oci_spec::runtime::PosixRlimitBuilder::default()
            .typ(oci_spec::runtime::PosixRlimitType::RlimitNofile)
            .hard(1024u64)
            .soft(1024u64)
            .build()
            .map_err(oci)?])
        .no_new_privileges(true)
        .build()
        .map_err(oci)?;

    // root and mounts
    let root = RootBuilder::default()
        .path(req.rootfs.clone().unwrap_or_else(|| PathBuf::from("/")))
        .readonly(host_root)
        .build()
        .map_err(oci)?;
    let mut mounts = base_mounts(req.rootless.is_some(), req.net != NetMode::Host);
    let mb = |dst: &str, typ: &str, src: &str, opts: Vec<String>| {
        MountBuilder::default()
            .destination(dst)
            .typ(typ)
            .source(src)
            .options(opts)
            .build()
            .map_err(oci)
    };
    if host_root {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        mounts.push(mb(
            "/tmp",
            "tmpfs",
            "tmpfs",
            s(&["nosuid", "nodev", "mode=1777"]),
        )?);
        // The host's / is read-only, so the sandbox needs a writable parent.
        mounts.push(mb(
            "/mnt",
            "tmpfs",
            "tmpfs",
            s(&["nosuid", "nodev", "mode=755", "size=64k"]),
        )?);
        mounts.push(mb(
            SANDBOX_PATH,
            "bind",
            &paths.sandbox.display().to_string(),
            s(&["rbind", "rw", "nosuid", "nodev"]),
        )?);
    }
    for v in &req.volumes {
        if host_root && !under_writable_mount(&v.destination) && !v.destination.exists() {
            return Err(Error::invalid(
                "--volume",
                format!(
                    "{} does not exist on the host, whose root the container sees read-only: mount it under {SANDBOX_PATH} or /tmp, or use --rootfs",
                    v.destination.display()
                ),
            ));
        }
        let mut opts = vec![
            "rbind".to_string(),
            "nosuid".to_string(),
            "nodev".to_string(),
        ];
        opts.push(if v.read_only {
            "ro".into()
        } else {
            "rw".into()
        });
        mounts.push(mb(
            &v.destination.display().to_string(),
            "bind",
            &v.source.display().to_string(),
            opts,
        )?);
    }

    // namespaces
    let ns = |t: LinuxNamespaceType| -> Result<LinuxNamespace> {
        LinuxNamespaceBuilder::default().typ(t).build().map_err(oci)
    };
    let mut namespaces = vec![
        ns(LinuxNamespaceType::Pid)?,
        ns(LinuxNamespaceType::Mount)?,
        ns(LinuxNamespaceType::Uts)?,
        ns(LinuxNamespaceType::Ipc)?,
        ns(LinuxNamespaceType::Cgroup)?,
    ];
    if req.net == NetMode::None {
        namespaces.push(ns(LinuxNamespaceType::Network)?);
    }

    // resources
    let mut resources = LinuxResourcesBuilder::default();
    if let Some(m) = req.memory_mib {
        let bytes = (m * 1024 * 1024) as i64;
        // memory+swap equal to memory: no swap, as the issue and Docker's
        // --memory-swap=--memory ask.
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(bytes)
                .swap(bytes)
                .build()
                .map_err(oci)?,
        );
    }
    if let Some(c) = req.cpus {
        let period: u64 = 100_000;
        let quota = (c * period as f64).round() as i64;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(period)
                .build()
                .map_err(oci)?,
        );
    }
    if let Some(p) = req.pids {
        resources = resources.pids(LinuxPidsBuilder::default().limit(p).build().map_err(oci)?);
    }
    if !req.io.is_empty() {
        let list = |kind: IoKind| -> Result<Vec<LinuxThrottleDevice>> {
            req.io
                .iter()
                .filter(|l| l.kind == kind)
                .map(|l| {
                    LinuxThrottleDeviceBuilder::default()
                        .major(l.major as i64)
                        .minor(l.minor as i64)
                        .rate(l.rate)
                        .build()
                        .map_err(oci)
                })
                .collect()
        };
        resources = resources.block_io(
            LinuxBlockIoBuilder::default()
                .throttle_read_bps_device(list(IoKind::ReadBps)?)
                .throttle_write_bps_device(list(IoKind::WriteBps)?)
                .throttle_read_iops_device(list(IoKind::ReadIops)?)
                .throttle_write_iops_device(list(IoKind::WriteIops)?)
                .build()
                .map_err(oci)?,
        );
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build().map_err(oci)?)
        .cgroups_path(PathBuf::from(paths.cgroup_path))
        .masked_paths({
            let mut masked = oci_spec::runtime::get_default_maskedpaths();
            if host_root {
                masked.extend(req.hidden_paths.iter().map(|p| p.display().to_string()));
            }
            masked
        })
        .readonly_paths(oci_spec::runtime::get_default_readonly_paths());
    if let Some(ids) = &req.rootless {
        let mut nss = linux_namespaces_with_user(req)?;
        nss.push(ns(LinuxNamespaceType::User)?);
        linux = linux.namespaces(nss);
        let map = |c: u32, h: u32, n: u32| {
            LinuxIdMappingBuilder::default()
                .container_id(c)
                .host_id(h)
                .size(n)
                .build()
                .map_err(oci)
        };
        let mut uids = vec![map(0, ids.uid, 1)?];
        if let Some((start, count)) = ids.sub_uids {
            uids.push(map(1, start, count)?);
        }
        let mut gids = vec![map(0, ids.gid, 1)?];
        if let Some((start, count)) = ids.sub_gids {
            gids.push(map(1, start, count)?);
        }
        linux = linux.uid_mappings(uids).gid_mappings(gids);
    }
    if let Some(profile) = seccomp_profile(req.seccomp.as_ref().unwrap_or(&SeccompChoice::Default))?
    {
        linux = linux.seccomp(profile);
    }

    SpecBuilder::default()
        .version(OCI_VERSION)
        .annotations(
            req.annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .root(root)
        .process(process)
        .hostname(req.hostname.clone().unwrap_or_else(|| "berth".to_string()))
        .mounts(mounts)
        .linux(linux.build().map_err(oci)?)
        .build()
        .map_err(oci)
}

/// Host-root containers get fresh tmpfs mounts at /tmp and /mnt, where
/// volume mount points can be created.
fn under_writable_mount(dest: &Path) -> bool {
    dest.starts_with("/tmp") || dest.starts_with("/mnt")
}

fn linux_namespaces_with_user(req: &LaunchRequest) -> Result<Vec<LinuxNamespace>> {
    let mut v = Vec::new();
    let mut types = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
    ];
    if req.net == NetMode::None {
        types.push(LinuxNamespaceType::Network);
    }
    for t in types {
        v.push(
            LinuxNamespaceBuilder::default()
                .typ(t)
                .build()
                .map_err(|e| Error::Spec(e.to_string()))?,
        );
    }
    Ok(v)
}

/// Resolves `--seccomp` to the profile that goes into config.json. The
/// profile is compiled once here so that a bad one fails the launch before
/// anything is created.
pub fn seccomp_profile(choice: &SeccompChoice) -> Result<Option<LinuxSeccomp>> {
    let profile = match choice {
        SeccompChoice::Unconfined => return Ok(None),
        SeccompChoice::Default => isolator::seccomp::default_profile(),
        SeccompChoice::File(p) => isolator::seccomp::load_profile_file(p)?,
    };
    isolator::seccomp::compile(&profile)?;
    Ok(Some(profile))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(args: &[&str]) -> LaunchRequest {
        LaunchRequest {
            args: args.iter().map(|s| s.to_string()).collect(),
            cgroup_parent: "berth".into(),
            ..Default::default()
        }
    }

    fn paths() -> SpecPaths<'static> {
        SpecPaths {
            sandbox: Path::new("/run/berth/x/sandbox"),
            cgroup_path: "berth/x",
        }
    }

    #[test]
    fn io_limits_parse_devices_and_rates() {
        assert_eq!(parse_bytes("1m"), Some(1 << 20));
        assert_eq!(parse_bytes("10MiB"), Some(10 << 20));
        assert_eq!(parse_bytes("512k"), Some(512 << 10));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("1q"), None);
        assert_eq!(parse_bytes("m"), None);
        // /dev/null is a character device, not a block device.
        let e = IoLimit::parse(IoKind::WriteBps, "/dev/null:1m")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--device-write-bps") && e.contains("not a block device"),
            "{e}"
        );
        let e = IoLimit::parse(IoKind::ReadIops, "/dev/sda")
            .unwrap_err()
            .to_string();
        assert!(e.contains("DEVICE:RATE"), "{e}");
        let e = IoLimit::parse(IoKind::ReadBps, "/no/such:1m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/no/such"), "{e}");
        let e = IoLimit::parse(IoKind::ReadBps, "/dev/null:0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("positive rate"), "{e}");
    }

    #[test]
    fn volume_syntax() {
        let v = VolumeMount::parse("/tmp:/data:ro").unwrap();
        assert!(v.read_only);
        assert_eq!(v.destination, PathBuf::from("/data"));
        assert!(VolumeMount::parse("/tmp:/data").is_ok());
        for bad in [
            "tmp:/data",
            "/tmp:data",
            "/tmp",
            "/tmp:/d:rx",
            "/tmp:/a/../b",
            "/no/such/dir:/d",
        ] {
            let e = VolumeMount::parse(bad).unwrap_err();
            assert!(e.to_string().contains("--volume"), "{bad}: {e}");
        }
    }

    #[test]
    fn invalid_values_name_the_flag() {
        let mut r = req(&["true"]);
        r.memory_mib = Some(0);
        assert!(r.validate().unwrap_err().to_string().contains("--mem"));
        let mut r = req(&["true"]);
        r.cpus = Some(-1.0);
        assert!(r.validate().unwrap_err().to_string().contains("--cpus"));
        let mut r = req(&["true"]);
        r.pids = Some(0);
        assert!(r.validate().unwrap_err().to_string().contains("--pids"));
        let mut r = req(&["true"]);
        r.cap_add = vec!["CAP_FLY".into()];
        assert!(r.validate().unwrap_err().to_string().contains("--cap-add"));
        let mut r = req(&["true"]);
        r.rootfs = Some("/no/such/rootfs".into());
        assert!(r.validate().unwrap_err().to_string().contains("--rootfs"));
        let mut r = req(&["true"]);
        r.env = vec!["NOVALUE".into()];
        assert!(r.validate().unwrap_err().to_string().contains("--env"));
        assert!(req(&[]).validate().is_err());
    }

    #[test]
    fn capabilities_add_and_drop() {
        let caps = capability_set(&["NET_ADMIN".into()], &["KILL".into()]).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        assert!(caps.contains(&"CAP_AUDIT_WRITE".to_string()));
        let none = capability_set(&[], &["ALL".into()]).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn host_root_spec_has_sandbox_and_readonly_root() {
        let spec = build(&req(&["sh", "-c", "true"]), &paths()).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().path(), Path::new("/"));
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        let mounts = spec.mounts().as_ref().unwrap();
        assert!(mounts
            .iter()
            .any(|m| m.destination() == Path::new(SANDBOX_PATH)));
        assert_eq!(
            spec.process().as_ref().unwrap().cwd(),
            Path::new(SANDBOX_PATH)
        );
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["ociVersion"], OCI_VERSION);
        assert!(json["linux"]["seccomp"]["syscalls"].is_array());
        let nss: Vec<String> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap().to_string())
            .collect();
        for t in ["pid", "mount", "uts", "ipc", "network", "cgroup"] {
            assert!(nss.contains(&t.to_string()), "{nss:?}");
        }
    }

    #[test]
    fn host_root_volume_needs_an_existing_or_writable_destination() {
        let mut r = req(&["true"]);
        r.volumes = vec![VolumeMount::parse("/tmp:/no/such/place").unwrap()];
        let e = build(&r, &paths()).unwrap_err().to_string();
        assert!(
            e.contains("--volume") && e.contains("/no/such/place"),
            "{e}"
        );
        r.volumes = vec![VolumeMount::parse("/tmp:/mnt/sandbox/data").unwrap()];
        assert!(build(&r, &paths()).is_ok());
        r.rootfs = Some(std::env::temp_dir());
        r.volumes = vec![VolumeMount::parse("/tmp:/no/such/place").unwrap()];
        assert!(build(&r, &paths()).is_ok());
    }

    #[test]
    fn host_root_hides_berths_own_directories() {
        let mut r = req(&["true"]);
        r.hidden_paths = vec![PathBuf::from("/run/berth")];
        let json = serde_json::to_value(build(&r, &paths()).unwrap()).unwrap();
        let masked: Vec<&str> = json["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(masked.contains(&"/run/berth"), "{masked:?}");
        // With its own root filesystem there is nothing of the host to hide.
        r.rootfs = Some(std::env::temp_dir());
        let json = serde_json::to_value(build(&r, &paths()).unwrap()).unwrap();
        assert!(!json["linux"]["maskedPaths"]
            .to_string()
            .contains("/run/berth"));
    }

    #[test]
    fn limits_become_resources() {
        let mut r = req(&["true"]);
        r.memory_mib = Some(256);
        r.cpus = Some(0.5);
        r.pids = Some(64);
        r.net = NetMode::Host;
        r.seccomp = Some(SeccompChoice::Unconfined);
        let json = serde_json::to_value(build(&r, &paths()).unwrap()).unwrap();
        let res = &json["linux"]["resources"];
        assert_eq!(res["memory"]["limit"], 256 * 1024 * 1024);
        assert_eq!(res["memory"]["swap"], 256 * 1024 * 1024);
        assert_eq!(res["cpu"]["quota"], 50000);
        assert_eq!(res["cpu"]["period"], 100000);
        assert_eq!(res["pids"]["limit"], 64);
        assert!(json["linux"]["seccomp"].is_null());
        assert!(!json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        // Host network: /sys is the host's, bound read-only.
        let sys = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap()
            .clone();
        assert_eq!(sys["type"], "bind", "{sys}");
        assert!(sys["options"].as_array().unwrap().contains(&"ro".into()));
    }

    #[test]
    fn rootless_spec_maps_ids() {
        let mut r = req(&["true"]);
        r.rootless = Some(RootlessIds {
            uid: 1000,
            gid: 1000,
            sub_uids: Some((100000, 65536)),
            sub_gids: None,
        });
        let json = serde_json::to_value(build(&r, &paths()).unwrap()).unwrap();
        assert_eq!(json["linux"]["uidMappings"][0]["hostID"], 1000);
        assert_eq!(json["linux"]["uidMappings"][1]["containerID"], 1);
        assert_eq!(json["linux"]["gidMappings"].as_array().unwrap().len(), 1);
        assert!(json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "user"));
    }
}
