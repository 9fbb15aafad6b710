//! Namespaces: which ones a container gets, joining existing ones, and the
//! loopback interface of a new network namespace.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("joining {kind} namespace {path}: {source}")]
    Open {
        kind: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("joining {kind} namespace {path}: {errno}")]
    Join {
        kind: &'static str,
        path: PathBuf,
        errno: Errno,
    },
    #[error("bringing up the loopback interface: {0}")]
    Loopback(Errno),
    #[error("setting hostname {name:?}: {errno}")]
    Hostname { name: String, errno: Errno },
    #[error("namespace {kind} listed twice")]
    Duplicate { kind: &'static str },
    /// A `path` that is not a namespace of its entry's type; names the
    /// field, e.g. linux.namespaces[1].path.
    #[error("linux.namespaces[{index}].path {path}: {reason}")]
    BadPath {
        index: usize,
        path: PathBuf,
        reason: String,
    },
    /// A config field that needs a namespace the container does not have
    /// (runc's rules for hostname, domainname and sysctl).
    #[error("{field}: {reason}")]
    NeedsNamespace { field: String, reason: String },
    #[error("{0}")]
    Restore(String),
}

/// Short name of a namespace type, as in /proc/PID/ns.
pub fn kind_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The clone(2) flag of a namespace type.
pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME only exists for unshare(2); clone(2) rejects it.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(0x80),
    }
}

/// The namespaces of a spec split into those to create and those to join.
#[derive(Debug, Clone)]
pub struct NamespacePlan {
    /// Flags for clone(2) (without cgroup and time: those are unshared by
    /// the child once it is in its cgroup).
    pub clone_flags: CloneFlags,
    /// A new cgroup namespace, unshared after the cgroup is joined so that
    /// the container's own cgroup becomes its root.
    pub new_cgroupns: bool,
    /// Existing namespaces to join, user namespace first.
    pub join: Vec<Joined>,
}

/// A namespace joined by path, with its index in linux.namespaces for
/// error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub typ: LinuxNamespaceType,
    pub path: PathBuf,
    pub index: usize,
}

impl Joined {
    /// pid and time namespaces apply to the children of the process that
    /// joins them (setns sets pid_for_children/time_for_children), so the
    /// parent of init joins them before clone(2); init joins the others.
    pub fn for_children(&self) -> bool {
        matches!(self.typ, LinuxNamespaceType::Pid | LinuxNamespaceType::Time)
    }
}

/// NS_GET_NSTYPE (linux/nsfs.h, _IO(0xb7, 0x3)): the CLONE_NEW* type of a
/// namespace file. Neither nix nor libc define it.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

impl NamespacePlan {
    pub fn from_spec(namespaces: &[LinuxNamespace]) -> Result<Self, NamespaceError> {
        let mut plan = NamespacePlan {
            clone_flags: CloneFlags::empty(),
            new_cgroupns: false,
            join: Vec::new(),
        };
        let mut seen = Vec::new();
        for (index, ns) in namespaces.iter().enumerate() {
            let t = ns.typ();
            if seen.contains(&t) {
                return Err(NamespaceError::Duplicate { kind: kind_name(t) });
            }
            seen.push(t);
            match ns.path() {
                Some(p) if !p.as_os_str().is_empty() => plan.join.push(Joined {
                    typ: t,
                    path: p.clone(),
                    index,
                }),
                _ if t == LinuxNamespaceType::Cgroup => plan.new_cgroupns = true,
                _ => plan.clone_flags |= clone_flag(t),
            }
        }
        // Joining a user namespace must come first: it decides what
        // privileges we have over the others.
        plan.join.sort_by_key(|j| {
            if j.typ == LinuxNamespaceType::User {
                0
            } else {
                1
            }
        });
        Ok(plan)
    }

    /// Checks, before anything is created, that each joined path is a
    /// namespace file of its entry's type (runc only finds out in setns).
    pub fn check_paths(&self) -> Result<(), NamespaceError> {
        for j in &self.join {
            let bad = |reason: String| NamespaceError::BadPath {
                index: j.index,
                path: j.path.clone(),
                reason,
            };
            let f = std::fs::File::open(&j.path).map_err(|e| bad(e.to_string()))?;
            // SAFETY: NS_GET_NSTYPE takes no argument and only reads the
            // descriptor, which f keeps open for the call.
            let rc = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&f), NS_GET_NSTYPE) };
            if rc < 0 {
                return Err(bad(format!(
                    "not a namespace file ({}); use e.g. /proc/PID/ns/{} or a file made by `ip netns add`",
                    Errno::last(),
                    kind_name(j.typ)
                )));
            }
            let want = clone_flag(j.typ).bits();
            if rc != want {
                let found = ALL_TYPES
                    .iter()
                    .find(|t| clone_flag(**t).bits() == rc)
                    .map(|t| kind_name(*t))
                    .unwrap_or("unknown");
                return Err(bad(format!(
                    "is a {found} namespace, not {}",
                    kind_name(j.typ)
                )));
            }
        }
        Ok(())
    }

    /// The container has a new namespace of this type.
    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        if t == LinuxNamespaceType::Cgroup {
            return self.new_cgroupns;
        }
        self.clone_flags.contains(clone_flag(t))
    }

    /// The container has this namespace, new or joined.
    pub fn has_or_joins(&self, t: LinuxNamespaceType) -> bool {
        self.has(t) || self.join.iter().any(|j| j.typ == t)
    }

    /// runc's checks of fields that act on a namespace: hostname and
    /// domainname need a UTS namespace, and each sysctl must belong to a
    /// namespace of the container's own (net.* its network namespace,
    /// kernel.{msg,sem,shm}* and fs.mqueue.* its IPC namespace,
    /// kernel.domainname its UTS namespace); anything else would change
    /// the host. A joined namespace that is the runtime's own counts as
    /// the host's. `own_ns` is the runtime's /proc/self/ns directory.
    pub fn check_fields(
        &self,
        hostname: bool,
        domainname: bool,
        sysctl: &[&str],
        own_ns: &Path,
    ) -> Result<(), NamespaceError> {
        let need = |field: &str, reason: String| NamespaceError::NeedsNamespace {
            field: field.to_string(),
            reason,
        };
        let uts = self.has_or_joins(LinuxNamespaceType::Uts);
        if hostname && !uts {
            return Err(need(
                "hostname",
                "setting it needs a UTS namespace: add {\"type\": \"uts\"} to linux.namespaces"
                    .into(),
            ));
        }
        if domainname && !uts {
            return Err(need(
                "domainname",
                "setting it needs a UTS namespace: add {\"type\": \"uts\"} to linux.namespaces"
                    .into(),
            ));
        }
        for key in sysctl {
            let field = format!("linux.sysctl.{key}");
            let ipc_key = key.starts_with("fs.mqueue.")
                || matches!(
                    *key,
                    "kernel.msgmax"
                        | "kernel.msgmnb"
                        | "kernel.msgmni"
                        | "kernel.sem"
                        | "kernel.shmall"
                        | "kernel.shmmax"
                        | "kernel.shmmni"
                        | "kernel.shm_rmid_forced"
                );
            let t = if ipc_key {
                LinuxNamespaceType::Ipc
            } else if key.starts_with("net.") {
                LinuxNamespaceType::Network
            } else if *key == "kernel.domainname" && uts {
                continue;
            } else if *key == "kernel.hostname" {
                return Err(need(&field, "not allowed: use the hostname field".into()));
            } else {
                return Err(need(
                    &field,
                    "not in a namespace of the container's own (allowed: net.*, fs.mqueue.*, kernel.msg*/sem/shm*, kernel.domainname)".into(),
                ));
            };
            let kind = kind_name(t);
            if self.has(t) {
                continue;
            }
            let host = || {
                need(
                    &field,
                    format!(
                        "not allowed in the host's {kind} namespace: give the container its own"
                    ),
                )
            };
            let Some(j) = self.join.iter().find(|j| j.typ == t) else {
                return Err(host());
            };
            if same_file(&j.path, &own_ns.join(kind)) {
                return Err(host());
            }
        }
        Ok(())
    }

    /// Joins the pid and time namespaces named by path for the children of
    /// the calling process (see [`Joined::for_children`]); the returned
    /// guard puts the caller's own back with [`ForChildren::restore`]
    /// once init is cloned, so that nothing else the caller forks (hooks)
    /// lands in them.
    pub fn enter_for_children(&self) -> Result<ForChildren, NamespaceError> {
        let mut saved = Vec::new();
        for j in self.join.iter().filter(|j| j.for_children()) {
            let kind = kind_name(j.typ);
            let own = PathBuf::from(format!("/proc/self/ns/{kind}"));
            let f = std::fs::File::open(&own).map_err(|source| NamespaceError::Open {
                kind,
                path: own.clone(),
                source,
            })?;
            join(j)?;
            saved.push((j.typ, own, f));
        }
        Ok(ForChildren { saved })
    }
}

const ALL_TYPES: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::User,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Time,
];

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The caller's own pid/time namespaces for children, saved by
/// [`NamespacePlan::enter_for_children`].
#[derive(Debug)]
pub struct ForChildren {
    saved: Vec<(LinuxNamespaceType, PathBuf, std::fs::File)>,
}

impl ForChildren {
    /// Children forked from now on are born in the caller's own
    /// namespaces again (setns back to one's own pid namespace is always
    /// allowed).
    pub fn restore(self) -> Result<(), NamespaceError> {
        for (t, path, f) in self.saved {
            setns(f.as_fd(), clone_flag(t)).map_err(|errno| {
                NamespaceError::Restore(format!(
                    "returning to {} ({}): {errno}",
                    path.display(),
                    kind_name(t)
                ))
            })?;
        }
        Ok(())
    }
}

/// Joins the namespace at `j.path` (e.g. /proc/PID/ns/net or a
/// bind-mounted namespace file).
pub fn join(j: &Joined) -> Result<(), NamespaceError> {
    let bad = |reason: String| NamespaceError::BadPath {
        index: j.index,
        path: j.path.clone(),
        reason,
    };
    let f = std::fs::File::open(&j.path).map_err(|e| bad(e.to_string()))?;
    setns(f.as_fd(), clone_flag(j.typ)).map_err(|errno| {
        bad(format!(
            "joining the {} namespace: {errno}",
            kind_name(j.typ)
        ))
    })
}

/// Brings up `lo` in the current network namespace (a new one starts with
/// it down). A two-ioctl job: no netlink crate needed for it.
pub fn loopback_up() -> Result<(), NamespaceError> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsRawFd;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(NamespaceError::Loopback)?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the interface named in req and writes its
    // flags into the union; req is a valid, exclusively borrowed ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(NamespaceError::Loopback(Errno::last()));
    }
    // SAFETY: after a successful SIOCGIFFLAGS the union holds ifru_flags.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS only reads req, which is valid for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(NamespaceError::Loopback(Errno::last()));
    }
    Ok(())
}

/// Sets the hostname in the container's UTS namespace.
pub fn set_hostname(name: &str) -> Result<(), NamespaceError> {
    nix::unistd::sethostname(name).map_err(|errno| NamespaceError::Hostname {
        name: name.to_string(),
        errno,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceBuilder;

    fn ns(t: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
        let b = LinuxNamespaceBuilder::default().typ(t);
        match path {
            Some(p) => b.path(p).build().unwrap(),
            None => b.build().unwrap(),
        }
    }

    #[test]
    fn plan_splits_new_and_joined() {
        let plan = NamespacePlan::from_spec(&[
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Network, Some("/proc/1/ns/net")),
            ns(LinuxNamespaceType::Cgroup, None),
            ns(LinuxNamespaceType::User, Some("/proc/1/ns/user")),
        ])
        .unwrap();
        assert!(plan.has(LinuxNamespaceType::Pid));
        assert!(!plan.has(LinuxNamespaceType::Network));
        assert!(plan.new_cgroupns);
        assert!(!plan.clone_flags.contains(CloneFlags::CLONE_NEWCGROUP));
        assert_eq!(plan.join[0].typ, LinuxNamespaceType::User);
        assert_eq!(plan.join[0].index, 3);
        assert!(plan.has_or_joins(LinuxNamespaceType::Network));
    }

    #[test]
    fn fields_acting_on_host_namespaces_are_refused() {
        let own = std::path::Path::new("/proc/self/ns");
        let plan = NamespacePlan::from_spec(&[
            ns(LinuxNamespaceType::Ipc, None),
            ns(LinuxNamespaceType::Network, Some("/proc/self/ns/net")),
        ])
        .unwrap();
        let err = |h, d, keys: &[&str]| {
            plan.check_fields(h, d, keys, own)
                .map(|()| String::new())
                .unwrap_or_else(|e| e.to_string())
        };
        assert!(err(true, false, &[]).starts_with("hostname:"));
        assert!(err(false, true, &[]).starts_with("domainname:"));
        assert_eq!(
            err(false, false, &["kernel.shmmax", "fs.mqueue.msg_max"]),
            ""
        );
        // The joined network namespace is the runtime's own: the host's.
        let e = err(false, false, &["net.ipv4.ip_forward"]);
        assert!(
            e.contains("linux.sysctl.net.ipv4.ip_forward") && e.contains("host"),
            "{e}"
        );
        let e = err(false, false, &["vm.swappiness"]);
        assert!(e.contains("linux.sysctl.vm.swappiness"), "{e}");
        let plan = NamespacePlan::from_spec(&[
            ns(LinuxNamespaceType::Uts, None),
            ns(LinuxNamespaceType::Network, None),
        ])
        .unwrap();
        assert!(plan
            .check_fields(
                true,
                true,
                &["net.ipv4.ip_forward", "kernel.domainname"],
                own
            )
            .is_ok());
        let e = plan
            .check_fields(false, false, &["kernel.shmmax"], own)
            .unwrap_err();
        assert!(e.to_string().contains("ipc"), "{e}");
    }

    #[test]
    fn duplicate_namespace_is_rejected() {
        let e = NamespacePlan::from_spec(&[
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Pid, None),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("pid"));
    }
}
