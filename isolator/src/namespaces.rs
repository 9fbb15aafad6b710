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
    /// Existing namespaces to join (type, path), user namespace first.
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
}

impl NamespacePlan {
    pub fn from_spec(namespaces: &[LinuxNamespace]) -> Result<Self, NamespaceError> {
        let mut plan = NamespacePlan {
            clone_flags: CloneFlags::empty(),
            new_cgroupns: false,
            join: Vec::new(),
        };
        let mut seen = Vec::new();
        for ns in namespaces {
            let t = ns.typ();
            if seen.contains(&t) {
                return Err(NamespaceError::Duplicate { kind: kind_name(t) });
            }
            seen.push(t);
            match ns.path() {
                Some(p) if !p.as_os_str().is_empty() => plan.join.push((t, p.clone())),
                _ if t == LinuxNamespaceType::Cgroup => plan.new_cgroupns = true,
                _ => plan.clone_flags |= clone_flag(t),
            }
        }
        // Joining a user namespace must come first: it decides what
        // privileges we have over the others.
        plan.join
            .sort_by_key(|(t, _)| if *t == LinuxNamespaceType::User { 0 } else { 1 });
        Ok(plan)
    }

    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        if t == LinuxNamespaceType::Cgroup {
            return self.new_cgroupns;
        }
        self.clone_flags.contains(clone_flag(t))
    }
}

/// Joins the namespace at `path` (e.g. /proc/PID/ns/net or a bind-mounted
/// namespace file).
pub fn join(t: LinuxNamespaceType, path: &Path) -> Result<(), NamespaceError> {
    let kind = kind_name(t);
    let f = std::fs::File::open(path).map_err(|source| NamespaceError::Open {
        kind,
        path: path.to_path_buf(),
        source,
    })?;
    setns(f.as_fd(), clone_flag(t)).map_err(|errno| NamespaceError::Join {
        kind,
        path: path.to_path_buf(),
        errno,
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
        assert_eq!(plan.join[0].0, LinuxNamespaceType::User);
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
