//! The state directory: one directory per container, a name index, and the
//! JSON documents that describe a container's lifecycle.
//!
//! Layout under the root (default /run/berth, or $XDG_RUNTIME_DIR/berth for
//! an unprivileged user):
//! ```text
//! <root>/<id>/state.json     what was asked and what was set up (written by
//!                            the CLI at create, then by the supervisor)
//! <root>/<id>/bundle/        the OCI bundle (config.json): the source of truth
//! <root>/<id>/exec.fifo      exists while the container is "created"
//! <root>/<id>/exit.json      written once, by the supervisor, when init exits
//! <root>/<id>/stdout.log     the container's output, size-capped
//! <root>/<id>/stderr.log
//! <root>/<id>/sandbox/       the writable sandbox of host-root containers
//! <root>/names/<name>        symlink to the id: atomic name reservation
//! ```
//! Every document is replaced atomically (write to a temporary file, then
//! rename), so a reader never sees half a document.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use isolator::cgroups::Cgroup;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Lifecycle status, as the runtime spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    /// runc's status for a frozen container (`pause`); only the runtime
    /// verbs report it, everything else sees such a container as running.
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// How the container's init ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Shell-style code: the exit status, or 128+N when killed by signal N.
    pub exit_code: i32,
    /// The signal that killed init, if any.
    pub signal: Option<i32>,
    /// The kernel's OOM killer ended it (SIGKILL and an oom_kill event in
    /// the container's memory cgroup).
    pub oom_killed: bool,
    /// Unix time in nanoseconds.
    pub finished_at: u64,
    /// Set when the status could not be observed (the supervisor died).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A pid together with its start time, so a reused pid is never mistaken
/// for the process we started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessRef {
    pub fn of(pid: i32) -> Option<Self> {
        isolator::procinfo::start_time(Path::new("/proc"), pid)
            .ok()
            .map(|start_time| ProcessRef { pid, start_time })
    }

    /// True while this very process (not a successor with the same pid) is
    /// alive and not a zombie.
    pub fn is_alive(&self) -> bool {
        isolator::procinfo::is_alive(Path::new("/proc"), self.pid)
            && isolator::procinfo::start_time(Path::new("/proc"), self.pid).ok()
                == Some(self.start_time)
    }
}

/// A limit that was asked for but could not be applied, shown by inspect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub what: String,
    pub reason: String,
}

/// The container's record. Written by the CLI when the container is being
/// created and by the supervisor afterwards; never by two at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Unix time in nanoseconds.
    pub created: u64,
    pub bundle: PathBuf,
    pub status: Status,
    /// The container's init (pid in the host's pid namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<ProcessRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<ProcessRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Cgroup>,
    /// Remove everything once the container exits (`launch --rm`).
    #[serde(default)]
    pub auto_remove: bool,
    /// Created by an unprivileged user inside a user namespace.
    #[serde(default)]
    pub rootless: bool,
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// Annotations from config.json, kept for `state`.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Log files chosen by the creator (the agent keeps them in the task's
    /// sandbox); none: `stdout.log`/`stderr.log` in the state directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_path: Option<PathBuf>,
    /// Set for containers created by the runc-compatible verbs
    /// (`berth create|run`): see [`RuntimeOptions`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeOptions>,
}

/// How a container created through runc's command line differs from a
/// `berth launch` one: it uses the caller's stdio (or a terminal) instead of
/// log files, has no supervisor once created (init is reparented to the
/// caller's subreaper, as with runc, so that engines such as conmon reap it
/// and see its exit), and runs the bundle's hooks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeOptions {
    /// process.terminal: the pty master is sent to this unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_socket: Option<PathBuf>,
    /// Pass the caller's descriptors 3..3+N to the container.
    #[serde(default)]
    pub preserve_fds: u32,
    /// Move the root with MS_MOVE + chroot instead of pivot_root (for
    /// roots on a ramfs, where pivot_root is not allowed).
    #[serde(default)]
    pub no_pivot: bool,
    /// Do not give the container its own session keyring.
    #[serde(default)]
    pub no_new_keyring: bool,
}

impl ContainerState {
    /// The file the container's stdout goes to.
    pub fn stdout_log(&self, dir: &ContainerDir) -> PathBuf {
        self.stdout_path.clone().unwrap_or_else(|| dir.stdout_log())
    }
    /// The file the container's stderr goes to.
    pub fn stderr_log(&self, dir: &ContainerDir) -> PathBuf {
        self.stderr_path.clone().unwrap_or_else(|| dir.stderr_log())
    }
}

/// Paths of one container's state directory.
#[derive(Debug, Clone)]
pub struct ContainerDir {
    pub dir: PathBuf,
}

impl ContainerDir {
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    pub fn config(&self) -> PathBuf {
        self.bundle().join("config.json")
    }
    pub fn exec_fifo(&self) -> PathBuf {
        self.dir.join("exec.fifo")
    }
    pub fn exit(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    pub fn stdout_log(&self) -> PathBuf {
        self.dir.join("stdout.log")
    }
    pub fn stderr_log(&self) -> PathBuf {
        self.dir.join("stderr.log")
    }
    pub fn sandbox(&self) -> PathBuf {
        self.dir.join("sandbox")
    }
    /// Mount point of the container's root in host-root mode.
    pub fn root_mount(&self) -> PathBuf {
        self.dir.join("rootmnt")
    }

    pub fn read_state(&self) -> Result<ContainerState> {
        read_json(&self.state())
    }
    pub fn write_state(&self, st: &ContainerState) -> Result<()> {
        write_json_atomic(&self.state(), st)
    }
    pub fn read_exit(&self) -> Option<ExitInfo> {
        read_json(&self.exit()).ok()
    }
    pub fn write_exit(&self, e: &ExitInfo) -> Result<()> {
        write_json_atomic(&self.exit(), e)
    }
}

/// The root of all containers' state.
#[derive(Debug, Clone)]
pub struct StateRoot {
    pub root: PathBuf,
}

impl StateRoot {
    /// /run/berth for root; $XDG_RUNTIME_DIR/berth, else /tmp/berth-UID,
    /// for everybody else.
    pub fn default_path() -> PathBuf {
        if nix::unistd::geteuid().is_root() {
            PathBuf::from("/run/berth")
        } else if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty()) {
            PathBuf::from(x).join("berth")
        } else {
            PathBuf::from(format!("/tmp/berth-{}", nix::unistd::geteuid()))
        }
    }

    pub fn open(root: PathBuf) -> Result<Self> {
        fs::create_dir_all(root.join("names"))
            .map_err(|e| Error::io("creating state root", &root, e))?;
        // Other users have no business reading bundles and logs.
        let _ = fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o711));
        Ok(StateRoot { root })
    }

    pub fn container(&self, id: &str) -> ContainerDir {
        ContainerDir {
            dir: self.root.join(id),
        }
    }

    fn name_link(&self, name: &str) -> PathBuf {
        self.root.join("names").join(name)
    }

    /// Creates the directory of a new container; fails if the id exists.
    pub fn create_container_dir(&self, id: &str) -> Result<ContainerDir> {
        let dir = self.container(id);
        match fs::create_dir(&dir.dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::AlreadyExists(id.to_string()))
            }
            Err(e) => Err(Error::io("creating container directory", &dir.dir, e)),
        }
    }

    /// Reserves `name` for `id`; atomic (symlink creation fails if taken).
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<()> {
        match std::os::unix::fs::symlink(id, self.name_link(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = fs::read_link(self.name_link(name))
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                // A name left by a container whose directory is gone (a
                // crash between the two removals) is free again.
                if !owner.is_empty() && !self.root.join(&owner).exists() {
                    let _ = fs::remove_file(self.name_link(name));
                    return self.reserve_name(name, id);
                }
                Err(Error::NameInUse {
                    name: name.to_string(),
                    id: owner,
                })
            }
            Err(e) => Err(Error::io("reserving name", &self.name_link(name), e)),
        }
    }

    pub fn release_name(&self, name: &str, id: &str) {
        if fs::read_link(self.name_link(name)).ok().as_deref() == Some(Path::new(id)) {
            let _ = fs::remove_file(self.name_link(name));
        }
    }

    /// Every container id, in no particular order.
    pub fn ids(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n != "names" && is_valid_id(n))
            .collect()
    }

    /// Finds a container by exact name, exact id, or unique id prefix.
    pub fn resolve(&self, key: &str) -> Result<String> {
        if key.is_empty() {
            return Err(Error::NotFound(key.to_string()));
        }
        if let Ok(target) = fs::read_link(self.name_link(key)) {
            let id = target.display().to_string();
            if self.root.join(&id).is_dir() {
                return Ok(id);
            }
        }
        if is_valid_id(key) && self.root.join(key).join("state.json").exists() {
            return Ok(key.to_string());
        }
        let matches: Vec<String> = self
            .ids()
            .into_iter()
            .filter(|id| id.starts_with(key))
            .collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().unwrap_or_default()),
            0 => Err(Error::NotFound(key.to_string())),
            _ => Err(Error::Ambiguous {
                key: key.to_string(),
                count: matches.len(),
            }),
        }
    }

    /// Removes a container's directory and name, tolerating partial state.
    pub fn remove(&self, id: &str, name: Option<&str>) -> Result<()> {
        if let Some(n) = name {
            self.release_name(n, id);
        }
        let dir = self.container(id);
        match fs::remove_dir_all(&dir.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing container directory", &dir.dir, e)),
        }
    }
}

/// Container ids are what runc accepts: letters, digits, `_`, `+`, `-`, `.`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
}

/// Names are for humans: start with a letter or digit, at most 128 bytes.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "--name",
            format!("{name:?} is not a valid name: use 1-128 letters, digits, '_', '.', '-', starting with a letter or digit"),
        ))
    }
}

/// A new random id: 32 hex digits (128 bits from the kernel's CSPRNG).
pub fn new_id() -> String {
    let mut buf = [0u8; 16];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of buf,
        // which getrandom writes at most len bytes into.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    serde_json::from_slice(&text).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Parses a config.json already in memory (`path` names it in errors).
/// Used instead of `Spec::load` on the launch path: that hands serde_json a
/// BufReader, which it reads a byte at a time, markedly slower than a
/// slice; its errors also say only "serde failed", these say where.
pub fn parse_spec(path: &Path, bytes: &[u8]) -> Result<oci_spec::runtime::Spec> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Spec(format!("loading {}: {e}", path.display())))
}

/// Reads and parses a config.json (see [`parse_spec`]).
pub fn load_spec(path: &Path) -> Result<oci_spec::runtime::Spec> {
    let bytes =
        fs::read(path).map_err(|e| Error::Spec(format!("loading {}: {e}", path.display())))?;
    parse_spec(path, &bytes)
}

/// Writes `value` as JSON to `path` atomically (temporary file + rename).
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let body = serde_json::to_vec_pretty(value).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut f = fs::File::create(&tmp).map_err(|e| Error::io("writing", &tmp, e))?;
    f.write_all(&body)
        .map_err(|e| Error::io("writing", &tmp, e))?;
    // The state root is usually a tmpfs, where fsync costs nothing; on a
    // disk it makes the rename publish complete data after a crash.
    f.sync_data().map_err(|e| Error::io("syncing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("renaming", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_hex() {
        let a = new_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("web-1.a_b").is_ok());
        assert!(validate_name("../etc").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name(&"a".repeat(129)).is_err());
        assert!(validate_name("-x").is_err());
    }

    #[test]
    fn name_reservation_and_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let root = StateRoot::open(dir.path().to_path_buf()).unwrap();
        let d = root.create_container_dir("abc123").unwrap();
        fs::write(d.state(), "{}").unwrap();
        root.reserve_name("web", "abc123").unwrap();
        assert!(matches!(
            root.reserve_name("web", "zzz"),
            Err(Error::NameInUse { .. })
        ));
        assert_eq!(root.resolve("web").unwrap(), "abc123");
        assert_eq!(root.resolve("abc").unwrap(), "abc123");
        assert!(matches!(root.resolve("nope"), Err(Error::NotFound(_))));
        root.create_container_dir("abd").unwrap();
        assert!(matches!(root.resolve("ab"), Err(Error::Ambiguous { .. })));
        assert!(matches!(
            root.create_container_dir("abd"),
            Err(Error::AlreadyExists(_))
        ));
        root.remove("abc123", Some("web")).unwrap();
        root.remove("abc123", Some("web")).unwrap();
        root.reserve_name("web", "abd").unwrap();
    }

    #[test]
    fn stale_name_is_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let root = StateRoot::open(dir.path().to_path_buf()).unwrap();
        root.reserve_name("db", "gone").unwrap();
        root.reserve_name("db", "new").unwrap();
    }

    #[test]
    fn atomic_json_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        let e = ExitInfo {
            exit_code: 137,
            signal: Some(9),
            oom_killed: true,
            finished_at: 1,
            note: None,
        };
        write_json_atomic(&p, &e).unwrap();
        let back: ExitInfo = read_json(&p).unwrap();
        assert_eq!(back, e);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
