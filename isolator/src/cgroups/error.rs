//! The error type of the cgroup layer.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

/// Errors of the cgroup layer. Messages are lower-case and name the cgroupfs
/// file or directory and the errno text.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Reading a cgroupfs (or procfs) file failed.
    #[error("reading {}: {}", .path.display(), errtext(.source))]
    Read { path: PathBuf, source: io::Error },
    /// Writing `value` to a cgroupfs file failed.
    #[error("writing {value} to {}: {}", .path.display(), errtext(.source))]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    /// `mkdir` of a cgroup directory failed.
    #[error("creating cgroup {}: {}", .path.display(), errtext(.source))]
    Mkdir { path: PathBuf, source: io::Error },
    /// The leaf directory of a cgroup to be created already exists.
    #[error("cgroup {} already exists", .path.display())]
    AlreadyExists { path: PathBuf },
    /// `rmdir` of a cgroup directory failed (after retries for `EBUSY`).
    #[error("removing cgroup {}: {}", .path.display(), errtext(.source))]
    Rmdir { path: PathBuf, source: io::Error },
    /// The cgroup path given to [`super::Cgroup::resolve`] is unusable.
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// A cgroupfs file had unexpected contents.
    #[error("parsing {}: unexpected content {content:?}", .path.display())]
    Parse { path: PathBuf, content: String },
    /// mountinfo / `/proc/self/cgroup` do not describe a usable layout.
    #[error("cgroup layout: {0}")]
    Layout(String),
    /// The OCI resources are inconsistent (e.g. swap limit below memory limit).
    #[error("invalid resources: {0}")]
    InvalidResources(String),
    /// Sending a signal to a process of the cgroup failed.
    #[error("killing pid {pid} of cgroup {}: {}", .dir.display(), .source.desc())]
    Kill {
        pid: i32,
        dir: PathBuf,
        source: Errno,
    },
    /// The operation needs a facility the host does not offer (e.g. no freezer).
    #[error("{0}")]
    Unsupported(String),
    /// Waiting for the kernel (freezing, emptying a cgroup) took too long.
    #[error("timed out waiting for {what} in {}", .path.display())]
    Timeout { what: String, path: PathBuf },
    /// A `bpf(2)` step of the cgroup v2 device filter failed; `log` is the
    /// verifier's output when loading failed.
    #[error("{step} {}: {}{}", .path.display(), .source.desc(), if .log.is_empty() { String::new() } else { format!(" (verifier: {})", .log) })]
    Bpf {
        step: &'static str,
        path: PathBuf,
        source: Errno,
        log: String,
    },
    /// Applying `linux.resources.devices` failed.
    #[error("applying linux.resources.devices: {0}")]
    Devices(Box<CgroupError>),
    /// Several hierarchies failed; every error is kept.
    #[error("{}", join(.0))]
    Multiple(Vec<CgroupError>),
}

impl CgroupError {
    /// The errno behind this error, if there is one (first one for `Multiple`).
    pub fn errno(&self) -> Option<Errno> {
        match self {
            CgroupError::Read { source, .. }
            | CgroupError::Write { source, .. }
            | CgroupError::Mkdir { source, .. }
            | CgroupError::Rmdir { source, .. } => source.raw_os_error().map(Errno::from_raw),
            CgroupError::Kill { source, .. } | CgroupError::Bpf { source, .. } => Some(*source),
            CgroupError::Devices(e) => e.errno(),
            CgroupError::Multiple(v) => v.iter().find_map(|e| e.errno()),
            _ => None,
        }
    }
}

/// The errno description without Rust's " (os error N)" suffix.
pub(crate) fn errtext(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

fn join(v: &[CgroupError]) -> String {
    v.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}
