//! Persistent volumes with an enforced size.
//!
//! A persistent volume is disk that outlives the task that wrote it (as Mesos
//! persistent volumes). Mesos did not enforce their size; Berth does, with the first
//! backend the filesystem holding the store offers (see [`BackendChoice::Auto`]):
//!
//! 1. XFS project quota (store root on XFS mounted with `prjquota`/`pquota`),
//! 2. ext4 project quota (store root on ext4 with the `project` feature, mounted `prjquota`),
//! 3. a loop-mounted ext4 image file per volume (needs root, `mkfs.ext4`, `resize2fs`),
//!
//! and, only when asked for explicitly, 4. a plain directory without enforcement
//! ([`BackendChoice::Dir`]) whose usage is measured by walking it.
//!
//! Past the size, writes fail with ENOSPC on loop images (verified) and on XFS project
//! quotas (XFS reports project-quota exhaustion as ENOSPC); ext4 project quotas go
//! through the generic quota code, which returns EDQUOT. Processes with
//! CAP_SYS_RESOURCE are not bound by ext4 (generic) quota limits, so containers using
//! quota-backed volumes must not keep that capability. Loop images grow online when
//! the caller has CAP_SYS_RESOURCE (which ext4 online resize needs), else offline
//! (unmount, `e2fsck -f -p`, `resize2fs`, mount) when nothing else holds the filesystem.
//!
//! # On-disk layout
//!
//! ```text
//! <root>/store.json              store metadata: next project id (durable, atomic writes)
//! <root>/store.lock              flock(2) lock serialising metadata updates and recovery
//! <root>/staging/<pid>-<start>-<n>/   a volume being claimed (renamed into volumes/)
//! <root>/volumes/<encoded key>/volume.json   the volume's durable record
//! <root>/volumes/<encoded key>/data          the directory to bind-mount (Volume::path)
//! <root>/volumes/<encoded key>/image.ext4    loop backend only: the image file
//! ```
//!
//! The key encoding ([`VolumeKey::dir_name`]) is `n-<name>` for named volumes and
//! `p-<role with '/' replaced by '+'>=<persistence id>` for Mesos-style persistent
//! volumes. Neither `+` nor `=` may appear in a valid name, role or id, so the encoding
//! is injective and needs no decoding (the record holds the key).
//!
//! # Crash safety
//!
//! `volume.json` is always replaced atomically (temp file, fsync, rename, fsync of the
//! directory). A create first builds `staging/<...>/volume.json` in state `Creating`,
//! recording the creator's pid and start time (field 22 of `/proc/PID/stat`), then claims
//! the key with `renameat2(RENAME_NOREPLACE)` of the staging directory onto
//! `volumes/<encoded key>`: that rename is the atomic claim (EEXIST means the key is
//! taken), and a claimed directory always holds a record. Only after the backend is set
//! up is the state set to `Ready`. [`VolumeStore::open`] removes `Creating` volumes (and
//! staging directories) whose creator is dead, finishes `Destroying` ones, and re-mounts
//! `Ready` loop volumes whose mount is gone (e.g. after a reboot).
//!
//! Test hook: when the environment variable `BERTH_VOLUMES_CRASH_AT` is `after-claim` or
//! `after-backend`, [`VolumeStore::create`] calls `std::process::exit(99)` at that point,
//! so tests can simulate a creator dying mid-create.

mod store;
mod sys;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use store::VolumeStore;

/// The smallest volume size accepted.
pub const MIN_SIZE: u64 = 1024 * 1024;
/// Environment variable of the crash test hook (see the crate documentation).
pub const CRASH_AT_ENV: &str = "BERTH_VOLUMES_CRASH_AT";

const SIZE_FORMS: &str =
    "expected a whole number of bytes or a whole number with a unit KiB, MiB, GiB, TiB (or K, M, G, T), e.g. 64MiB";

/// Errors of the volume store. Messages are lower-case and name the volume, path or
/// field concerned.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid size {value:?}: {reason}")]
    InvalidSize { value: String, reason: String },
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidName {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid backend {value:?}: expected one of auto, xfs, ext4, loop, dir")]
    InvalidBackend { value: String },
    #[error("invalid request for volume \"{key}\": {reason}")]
    InvalidRequest { key: String, reason: String },
    #[error("volume \"{0}\" already exists")]
    AlreadyExists(String),
    #[error("volume \"{0}\" not found")]
    NotFound(String),
    #[error("volume \"{0}\" is incomplete: it is still being created")]
    Incomplete(String),
    #[error("cannot shrink volume \"{key}\" to {requested}: {used} in use")]
    ShrinkBelowUsage {
        key: String,
        requested: String,
        used: String,
    },
    #[error("backend {backend} is not available for the store at {}: {reason}", root.display())]
    BackendUnavailable {
        backend: BackendChoice,
        root: PathBuf,
        reason: String,
    },
    #[error("volume \"{key}\" is busy: {reason}")]
    Busy { key: String, reason: String },
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("command `{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("corrupt metadata {}: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
}

impl VolumeError {
    /// True for mistakes in the request (bad size, name, backend, or a
    /// request the store refuses as such): callers exit with 2 for these.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            VolumeError::InvalidSize { .. }
                | VolumeError::InvalidName { .. }
                | VolumeError::InvalidBackend { .. }
                | VolumeError::InvalidRequest { .. }
        )
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        VolumeError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Identifies a volume: a plain name, or a Mesos-style (role, persistence id) pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeKey {
    Name(String),
    Persistent {
        role: String,
        persistence_id: String,
    },
}

impl fmt::Display for VolumeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeKey::Name(n) => f.write_str(n),
            VolumeKey::Persistent {
                role,
                persistence_id,
            } => write!(f, "{role}/{persistence_id}"),
        }
    }
}

impl VolumeKey {
    /// Checks the name, or the role and persistence id.
    pub fn validate(&self) -> Result<(), VolumeError> {
        match self {
            VolumeKey::Name(n) => validate_name(n),
            VolumeKey::Persistent {
                role,
                persistence_id,
            } => {
                validate_role(role)?;
                validate_persistence_id(persistence_id)
            }
        }
    }

    /// The directory name of the volume under `<root>/volumes/` (see the crate docs).
    /// Only meaningful for a key that passed [`VolumeKey::validate`].
    pub fn dir_name(&self) -> String {
        match self {
            VolumeKey::Name(n) => format!("n-{n}"),
            VolumeKey::Persistent {
                role,
                persistence_id,
            } => format!("p-{}={persistence_id}", role.replace('/', "+")),
        }
    }
}

/// Which backend to use for a new volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// The first available of XFS quota, ext4 quota, loop image (never `Dir`).
    Auto,
    Xfs,
    Ext4,
    Loop,
    /// A plain directory: no enforcement.
    Dir,
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Xfs => "xfs",
            BackendChoice::Ext4 => "ext4",
            BackendChoice::Loop => "loop",
            BackendChoice::Dir => "dir",
        })
    }
}

impl FromStr for BackendChoice {
    type Err = VolumeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "xfs" => Ok(BackendChoice::Xfs),
            "ext4" => Ok(BackendChoice::Ext4),
            "loop" => Ok(BackendChoice::Loop),
            "dir" => Ok(BackendChoice::Dir),
            _ => Err(VolumeError::InvalidBackend {
                value: s.to_string(),
            }),
        }
    }
}

/// How a volume's size is enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Enforcement {
    XfsProjectQuota {
        project_id: u32,
    },
    Ext4ProjectQuota {
        project_id: u32,
    },
    LoopImage {
        image: PathBuf,
        fs: String,
        /// The loop device while mounted (filled from the live mount table by get/list).
        loop_device: Option<String>,
    },
    Unenforced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeState {
    Creating,
    Ready,
    Destroying,
}

impl fmt::Display for VolumeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VolumeState::Creating => "creating",
            VolumeState::Ready => "ready",
            VolumeState::Destroying => "destroying",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub key: VolumeKey,
    pub size_bytes: u64,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub enforcement: Enforcement,
    pub state: VolumeState,
    /// The directory to bind-mount into a container.
    pub path: PathBuf,
    /// Creation time, unix seconds.
    pub created: u64,
    /// Bytes in use, filled by get()/list() for ready volumes (None if unknown). For
    /// loop volumes this is the image filesystem's used blocks, metadata included; for
    /// dir volumes a walk bounded to 1,000,000 entries (a lower bound past that).
    #[serde(default)]
    pub usage_bytes: Option<u64>,
    /// Dir backend only: a watchdog should kill the users of a volume over its size.
    #[serde(default)]
    pub kill_over_size: bool,
}

impl Volume {
    /// Whether the known usage exceeds the size (for a watchdog of unenforced volumes).
    pub fn over_size(&self) -> bool {
        self.usage_bytes.is_some_and(|u| u > self.size_bytes)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRequest {
    pub key: VolumeKey,
    pub size_bytes: u64,
    pub backend: BackendChoice,
    /// (uid, gid) owning the volume root; None = the calling process's euid/egid.
    pub owner: Option<(u32, u32)>,
    /// Permission bits of the volume root (default 0o755).
    pub mode: u32,
    /// Dir backend only: recorded for a watchdog that kills users over the size.
    pub kill_over_size: bool,
}

impl CreateRequest {
    /// A request with the defaults: backend Auto, owner None, mode 0o755, no kill.
    pub fn new(key: VolumeKey, size_bytes: u64) -> CreateRequest {
        CreateRequest {
            key,
            size_bytes,
            backend: BackendChoice::Auto,
            owner: None,
            mode: 0o755,
            kill_over_size: false,
        }
    }
}

/// The project id of a file or directory (as set by the XFS/ext4 quota backends);
/// for inspection and tests.
pub fn project_id(path: &std::path::Path) -> Result<u32, VolumeError> {
    sys::get_fsxattr(path)
        .map(|x| x.fsx_projid)
        .map_err(|e| VolumeError::io("read the project id of", path, e))
}

/// Formats a byte count for messages: "64 MiB", "1 GiB", "1.5 MiB", "3.01 MiB", "512 bytes"
/// (two decimals at most, trailing zeros dropped).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, unit) in UNITS {
        if bytes >= unit {
            if bytes & (unit - 1) == 0 {
                return format!("{} {name}", bytes / unit);
            }
            let s = format!("{:.2}", bytes as f64 / unit as f64);
            let s = s.trim_end_matches('0').trim_end_matches('.');
            return format!("{s} {name}");
        }
    }
    format!("{bytes} bytes")
}

/// Parses a size: plain bytes ("1048576") or a whole number with a binary unit
/// ("512KiB", "64MiB", "1GiB", "2TiB", or "64M", "1G", ...; case-insensitive, optional
/// space). Rejects 0, negative, fractional, garbage, overflow and sizes below 1 MiB.
pub fn parse_size(s: &str) -> Result<u64, VolumeError> {
    let err = |reason: &str| VolumeError::InvalidSize {
        value: s.to_string(),
        reason: reason.to_string(),
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(err(&format!("empty; {SIZE_FORMS}")));
    }
    if t.starts_with('-') {
        return Err(err(&format!(
            "negative sizes are not allowed; {SIZE_FORMS}"
        )));
    }
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(err(SIZE_FORMS));
    }
    let mult: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return Err(err(SIZE_FORMS)),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| err("too large: does not fit in 64 bits"))?;
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| err("too large: does not fit in 64 bits"))?;
    if bytes < MIN_SIZE {
        return Err(err("must be at least 1 MiB"));
    }
    Ok(bytes)
}

fn validate_component(field: &'static str, s: &str, whole: &str) -> Result<(), VolumeError> {
    let err = |reason: &str| VolumeError::InvalidName {
        field,
        value: whole.to_string(),
        reason: reason.to_string(),
    };
    if s.is_empty() {
        return Err(err("must not be empty"));
    }
    if s.len() > 64 {
        return Err(err("must be at most 64 characters"));
    }
    if s.contains("..") {
        return Err(err("must not contain \"..\""));
    }
    if s.starts_with('.') || s.starts_with('-') {
        return Err(err("must not start with '.' or '-'"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(err(&format!(
            "character {c:?} not allowed: use 1-64 of A-Z a-z 0-9 _ . -"
        )));
    }
    Ok(())
}

/// A volume name: 1-64 characters of `[A-Za-z0-9_.-]`, not starting with '.' or '-',
/// without "..", so it can never escape the store directory.
pub fn validate_name(s: &str) -> Result<(), VolumeError> {
    validate_component("name", s, s)
}

/// A persistence id: the same rules as [`validate_name`].
pub fn validate_persistence_id(s: &str) -> Result<(), VolumeError> {
    validate_component("persistence id", s, s)
}

/// A role: one or more segments following the [`validate_name`] rules, separated by
/// '/' (hierarchical roles like "eng/backend"); no empty, "." or ".." segments, at most
/// 128 characters in all.
pub fn validate_role(s: &str) -> Result<(), VolumeError> {
    if s.len() > 128 {
        return Err(VolumeError::InvalidName {
            field: "role",
            value: s.to_string(),
            reason: "must be at most 128 characters".to_string(),
        });
    }
    for seg in s.split('/') {
        validate_component("role", seg, s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accepted() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1024KiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("2 gib").unwrap(), 2 << 30);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("3145728B").unwrap(), 3 << 20);
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
    }

    #[test]
    fn sizes_rejected_with_texts() {
        let e = parse_size("0").unwrap_err().to_string();
        assert_eq!(e, "invalid size \"0\": must be at least 1 MiB");
        let e = parse_size("512KiB").unwrap_err().to_string();
        assert_eq!(e, "invalid size \"512KiB\": must be at least 1 MiB");
        let e = parse_size("-5M").unwrap_err().to_string();
        assert!(
            e.starts_with("invalid size \"-5M\": negative sizes are not allowed"),
            "{e}"
        );
        let e = parse_size("abc").unwrap_err().to_string();
        assert!(
            e.starts_with("invalid size \"abc\": expected a whole number"),
            "{e}"
        );
        assert!(e.contains("KiB, MiB, GiB, TiB"), "{e}");
        for bad in ["", " ", "1.5G", "12XB", "M", "64MiBs", "0x10"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        let e = parse_size("99999999999999999999").unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
        let e = parse_size("17179869184G").unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn names() {
        for ok in ["db", "a", "A_b-c.d", "x1", &"a".repeat(64)] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-x",
            "a/b",
            "a..b",
            "a b",
            "é",
            "a\0",
            &"a".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            validate_name("a/b").unwrap_err().to_string(),
            "invalid name \"a/b\": character '/' not allowed: use 1-64 of A-Z a-z 0-9 _ . -"
        );
        assert_eq!(
            validate_name("..").unwrap_err().to_string(),
            "invalid name \"..\": must not contain \"..\""
        );
        assert_eq!(
            validate_persistence_id("").unwrap_err().to_string(),
            "invalid persistence id \"\": must not be empty"
        );
    }

    #[test]
    fn roles() {
        validate_role("eng").unwrap();
        validate_role("eng/backend").unwrap();
        validate_role("a/b/c-d.e").unwrap();
        for bad in [
            "", "/eng", "eng/", "eng//x", "eng/./x", "eng/../x", "..", "a b",
        ] {
            assert!(validate_role(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            validate_role("eng//x").unwrap_err().to_string(),
            "invalid role \"eng//x\": must not be empty"
        );
    }

    #[test]
    fn keys_display_and_encoding() {
        let n = VolumeKey::Name("db".into());
        let p = VolumeKey::Persistent {
            role: "eng/backend".into(),
            persistence_id: "pid-1".into(),
        };
        assert_eq!(n.to_string(), "db");
        assert_eq!(p.to_string(), "eng/backend/pid-1");
        assert_eq!(n.dir_name(), "n-db");
        assert_eq!(p.dir_name(), "p-eng+backend=pid-1");
        let q = VolumeKey::Persistent {
            role: "eng+backend".into(),
            persistence_id: "x".into(),
        };
        assert!(q.validate().is_err());
    }

    #[test]
    fn backend_choice_parsing() {
        assert_eq!(
            "auto".parse::<BackendChoice>().unwrap(),
            BackendChoice::Auto
        );
        assert_eq!("xfs".parse::<BackendChoice>().unwrap(), BackendChoice::Xfs);
        assert_eq!(
            "ext4".parse::<BackendChoice>().unwrap(),
            BackendChoice::Ext4
        );
        assert_eq!(
            "loop".parse::<BackendChoice>().unwrap(),
            BackendChoice::Loop
        );
        assert_eq!("dir".parse::<BackendChoice>().unwrap(), BackendChoice::Dir);
        let e = "btrfs".parse::<BackendChoice>().unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid backend \"btrfs\": expected one of auto, xfs, ext4, loop, dir"
        );
        assert!("XFS".parse::<BackendChoice>().is_err());
    }

    #[test]
    fn size_formatting() {
        assert_eq!(format_size(1 << 20), "1 MiB");
        assert_eq!(format_size(3 << 20), "3 MiB");
        assert_eq!(format_size(3 << 19), "1.5 MiB");
        assert_eq!(format_size(100), "100 bytes");
        assert_eq!(format_size((3 << 20) + 12 * 1024), "3.01 MiB");
        assert_eq!(format_size(1 << 30), "1 GiB");
    }

    #[test]
    fn serde_round_trip() {
        let v = Volume {
            key: VolumeKey::Name("db".into()),
            size_bytes: 1 << 20,
            uid: 1,
            gid: 2,
            mode: 0o755,
            enforcement: Enforcement::XfsProjectQuota { project_id: 1000 },
            state: VolumeState::Ready,
            path: "/x".into(),
            created: 5,
            usage_bytes: None,
            kill_over_size: false,
        };
        let s = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<Volume>(&s).unwrap(), v);
    }
}
