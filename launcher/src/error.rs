//! The launcher's errors. Each says what failed and on what, so a user can
//! act on it; `is_usage` separates bad input (exit code 2) from failures.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field has a value that is not allowed.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("{key:?} matches {count} containers: use more of the id")]
    Ambiguous { key: String, count: usize },
    #[error("container {0} already exists")]
    AlreadyExists(String),
    #[error("name {name:?} is already in use by container {id}")]
    NameInUse { name: String, id: String },
    #[error("container {id} is {status}: {hint}")]
    WrongState {
        id: String,
        status: crate::state::Status,
        hint: String,
    },
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{step}: {errno}")]
    Sys {
        step: String,
        errno: nix::errno::Errno,
    },
    #[error("executable not found in container: {0}")]
    ExecutableNotFound(String),
    /// The container's init failed while setting the container up.
    #[error("container init failed: {0}")]
    Init(String),
    /// The supervisor reported a failure (its message is complete).
    #[error("{0}")]
    Reported(String),
    #[error("seccomp: {0}")]
    Seccomp(#[from] isolator::seccomp::SeccompError),
    #[error("cgroup: {0}")]
    Cgroup(#[from] isolator::cgroups::CgroupError),
    #[error("{0}")]
    Spec(String),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn io(step: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            step,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn sys(step: impl Into<String>, errno: nix::errno::Errno) -> Self {
        Error::Sys {
            step: step.into(),
            errno,
        }
    }

    /// True for mistakes in the request (bad flags, bad config): the CLI
    /// exits with 2 for these, as for any usage error.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::Invalid { .. } | Error::Seccomp(_) | Error::Spec(_)
        )
    }
}
