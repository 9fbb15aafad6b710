//! Live process introspection from /proc for `berth inspect`.
//!
//! Everything here reads text files under a caller-supplied proc root (normally
//! `/proc`) so tests can point it at a temporary directory. The files are parsed
//! by hand rather than through the `procfs` crate: the formats involved are small
//! and stable, hand parsing lets a fake proc root contain only the files we
//! actually need, and it keeps full control over which files are optional.
//!
//! Processes can exit (and their pid be reused) while we read them, so
//! [`read_process`] samples the start time before and after reading and refuses
//! to return a mixture of two processes.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Namespaces reported by [`read_process`], in the order the kernel lists them.
/// `pid_for_children`/`time_for_children` are deliberately left out: they
/// describe future children, not the process itself.
const NAMESPACES: [&str; 8] = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// Errors from reading a process's state under a proc root.
#[derive(Debug, thiserror::Error)]
pub enum ProcInfoError {
    /// `/proc/PID` does not exist (or vanished while being read).
    #[error("process {pid} not found")]
    NotFound { pid: i32 },
    /// The process is a zombie: its namespaces and mounts have been torn down,
    /// so there is no isolation state left to report.
    #[error("process {pid} is a zombie")]
    Zombie { pid: i32 },
    /// The pid was reused (or the process exited) between the first and last
    /// file read, so the collected data could describe two different processes.
    #[error("process {pid} exited or was replaced while being read")]
    Changed { pid: i32 },
    /// A file could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file was read but its contents were not in the expected format.
    #[error("parsing {file}: {reason}")]
    Parse { file: String, reason: String },
    /// The caller asked for a namespace name that cannot be a file in `ns/`.
    #[error("invalid namespace name {0:?}")]
    InvalidNamespace(String),
}

impl ProcInfoError {
    fn parse(file: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        ProcInfoError::Parse {
            file: file.to_string(),
            reason: reason.into(),
        }
    }
}

/// Capability sets of a process, each as sorted `CAP_*` names.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CapSets {
    pub effective: Vec<String>,
    pub permitted: Vec<String>,
    pub inheritable: Vec<String>,
    pub bounding: Vec<String>,
    pub ambient: Vec<String>,
}

/// One line of `uid_map`/`gid_map`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// One line of `/proc/PID/mountinfo`, with escape sequences decoded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u32,
    pub parent_id: u32,
    pub root: String,
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
    /// Per-mount options (field 6), e.g. `rw`, `nosuid`, `relatime`.
    pub options: Vec<String>,
    /// The optional fields before the separator: propagation, e.g.
    /// `shared:1`, `master:2`, `unbindable`.
    #[serde(default)]
    pub optional: Vec<String>,
    /// Per-superblock options (last field), e.g. `size=65536k`.
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// Whether the mount is in a peer group (its mounts propagate).
    pub fn is_shared(&self) -> bool {
        self.optional.iter().any(|f| f.starts_with("shared:"))
    }
}

/// Isolation state of one live process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessIsolation {
    pub pid: i32,
    /// Namespace name -> inode. Namespaces the kernel does not have (e.g.
    /// `time` before 5.6) are absent.
    pub namespaces: BTreeMap<String, u64>,
    /// `"disabled"`, `"strict"` or `"filter"`; `"dead"` for a task being killed
    /// by seccomp, `"unknown(N)"` for modes newer than this code.
    pub seccomp_mode: String,
    /// Number of attached filters (`Seccomp_filters:`, kernel >= 5.9).
    pub seccomp_filters: Option<u32>,
    pub no_new_privs: bool,
    pub caps: CapSets,
    /// Real, effective, saved and filesystem uid.
    pub uid: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    pub gid: [u32; 4],
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
    pub mounts: Vec<MountEntry>,
    /// (`"hierarchy-id:controllers"`, path) from `/proc/PID/cgroup`, e.g.
    /// `("4:memory", "/x/y")` or `("0:", "/")` for cgroup v2.
    pub cgroups: Vec<(String, String)>,
}

/// Read everything `berth inspect` shows about `pid` from `proc_root`.
///
/// Optional files (a namespace the kernel lacks, `uid_map`/`gid_map`, `cgroup`)
/// are skipped when absent; `status`, `stat` and `mountinfo` are required.
pub fn read_process(proc_root: &Path, pid: i32) -> Result<ProcessIsolation, ProcInfoError> {
    let before = read_stat(proc_root, pid)?;
    if before.is_dead() {
        return Err(ProcInfoError::Zombie { pid });
    }

    let status_path = pid_file(proc_root, pid, "status");
    let status_text = read_required(proc_root, pid, "status")?;
    let status = parse_status(&status_text)
        .map_err(|reason| ProcInfoError::parse(status_path.display(), reason))?;

    let mut namespaces = BTreeMap::new();
    for ns in NAMESPACES {
        match namespace_inode_opt(proc_root, pid, ns)? {
            Some(inode) => {
                namespaces.insert(ns.to_string(), inode);
            }
            None => continue,
        }
    }

    let uid_map = read_id_map(proc_root, pid, "uid_map")?;
    let gid_map = read_id_map(proc_root, pid, "gid_map")?;

    let mountinfo_path = pid_file(proc_root, pid, "mountinfo");
    let mountinfo = read_required(proc_root, pid, "mountinfo")?;
    let mounts = parse_mountinfo(&mountinfo).map_err(|e| match e {
        ProcInfoError::Parse { reason, .. } => {
            ProcInfoError::parse(mountinfo_path.display(), reason)
        }
        other => other,
    })?;

    let cgroups = match read_optional(proc_root, pid, "cgroup")? {
        Some(text) => parse_cgroup(&text).map_err(|reason| {
            ProcInfoError::parse(pid_file(proc_root, pid, "cgroup").display(), reason)
        })?,
        None => Vec::new(),
    };

    // If the pid now names a different process (or none), the files above may
    // have come from two processes; refuse rather than report a chimera.
    match read_stat(proc_root, pid) {
        Ok(after) if after.start_time == before.start_time => {}
        Ok(_) | Err(ProcInfoError::NotFound { .. }) => return Err(ProcInfoError::Changed { pid }),
        Err(e) => return Err(e),
    }

    Ok(ProcessIsolation {
        pid,
        namespaces,
        seccomp_mode: status.seccomp_mode,
        seccomp_filters: status.seccomp_filters,
        no_new_privs: status.no_new_privs,
        caps: status.caps,
        uid: status.uid,
        gid: status.gid,
        uid_map,
        gid_map,
        mounts,
        cgroups,
    })
}

/// Decode a `CapEff`-style bitmask into capability names sorted by number.
///
/// Bits the `caps` crate does not know (capabilities newer than it) are
/// reported as `CAP_<n>` rather than dropped, so nothing granted is hidden.
pub fn decode_caps(mask: u64) -> Vec<String> {
    let known = caps::all();
    (0..64u8)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| match known.iter().find(|c| c.index() == bit) {
            Some(cap) => cap.to_string(),
            None => format!("CAP_{bit}"),
        })
        .collect()
}

/// Inode of namespace `ns` (e.g. `"net"`, `"pid_for_children"`) of `pid`,
/// from the `/proc/PID/ns/NAME` link text `"net:[4026531840]"`.
///
/// Two processes share a namespace exactly when these inodes are equal.
pub fn namespace_inode(proc_root: &Path, pid: i32, ns: &str) -> Result<u64, ProcInfoError> {
    match namespace_inode_opt(proc_root, pid, ns)? {
        Some(inode) => Ok(inode),
        None => Err(ProcInfoError::Io {
            path: pid_file(proc_root, pid, "ns").join(ns),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        }),
    }
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), used to detect pid reuse.
pub fn start_time(proc_root: &Path, pid: i32) -> Result<u64, ProcInfoError> {
    read_stat(proc_root, pid).map(|s| s.start_time)
}

/// True if /proc/PID exists and is not a zombie (state field of /proc/PID/stat != 'Z' and != 'X').
pub fn is_alive(proc_root: &Path, pid: i32) -> bool {
    matches!(read_stat(proc_root, pid), Ok(stat) if !stat.is_dead())
}

/// Parse the whole of mountinfo text (escape sequences like \040 decoded).
///
/// Format (proc(5)): `id parent major:minor root mount_point options
/// [optional fields...] - fs_type source super_options`. Fields are split on
/// single spaces, not runs of whitespace, because the kernel prints an empty
/// source as an empty field. Not procfs's parser: procfs-core 0.17 keeps the
/// `\ooo` escapes in mount points and roots, so a path with a space would
/// never match.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountEntry>, ProcInfoError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(idx, line)| {
            parse_mountinfo_line(line).map_err(|reason| {
                ProcInfoError::parse("mountinfo", format!("line {}: {reason}", idx + 1))
            })
        })
        .collect()
}

fn parse_mountinfo_line(line: &str) -> Result<MountEntry, String> {
    let fields: Vec<&str> = line.trim_end_matches('\r').split(' ').collect();
    if fields.len() < 9 {
        return Err(format!("expected at least 9 fields, got {}", fields.len()));
    }
    let sep = fields
        .iter()
        .skip(6)
        .position(|f| *f == "-")
        .map(|p| p + 6)
        .ok_or_else(|| "missing \"-\" separator".to_string())?;
    let tail = &fields[sep + 1..];
    if tail.len() < 2 {
        return Err("missing filesystem type or source after \"-\"".to_string());
    }
    let num = |s: &str, what: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("invalid {what} {s:?}"))
    };
    Ok(MountEntry {
        mount_id: num(fields[0], "mount id")?,
        parent_id: num(fields[1], "parent id")?,
        root: unescape(fields[3]),
        mount_point: unescape(fields[4]),
        fs_type: unescape(tail[0]),
        source: unescape(tail[1]),
        options: split_options(fields[5]),
        optional: fields[6..sep].iter().map(|f| f.to_string()).collect(),
        // Super options never contain raw spaces; join defensively anyway.
        super_options: split_options(&tail[2..].join(" ")),
    })
}

/// Split a comma-separated option list, decoding each option afterwards
/// because commas inside option values are escaped as `\054`.
fn split_options(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|o| !o.is_empty())
        .map(unescape)
        .collect()
}

/// Decode the kernel's `\ooo` octal escapes (used for space, tab, newline,
/// backslash and, in options, comma and `=`). Anything else is kept verbatim.
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The fields of `/proc/PID/stat` this module needs.
struct Stat {
    state: char,
    start_time: u64,
}

impl Stat {
    /// Zombie, or dead (`X`; `x` on kernels before 4.14's renaming).
    fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

fn read_stat(proc_root: &Path, pid: i32) -> Result<Stat, ProcInfoError> {
    let text = read_required(proc_root, pid, "stat")?;
    parse_stat(&text)
        .map_err(|reason| ProcInfoError::parse(pid_file(proc_root, pid, "stat").display(), reason))
}

/// Parse `/proc/PID/stat`. `comm` (field 2) is the task name in parentheses
/// and may itself contain spaces and `)`, so fields are counted from the last
/// `)` in the line.
fn parse_stat(text: &str) -> Result<Stat, String> {
    let close = text
        .rfind(')')
        .ok_or_else(|| "missing \")\" after comm".to_string())?;
    // Field 3 (state) is the first after the comm; field 22 (starttime) is
    // therefore the 20th.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let state = rest
        .first()
        .and_then(|s| s.chars().next())
        .ok_or_else(|| "missing state field".to_string())?;
    let start = rest
        .get(19)
        .ok_or_else(|| format!("expected at least 22 fields, got {}", rest.len() + 2))?;
    let start_time = start
        .parse::<u64>()
        .map_err(|_| format!("invalid starttime {start:?}"))?;
    Ok(Stat { state, start_time })
}

/// The fields of `/proc/PID/status` this module needs.
struct Status {
    seccomp_mode: String,
    seccomp_filters: Option<u32>,
    no_new_privs: bool,
    caps: CapSets,
    uid: [u32; 4],
    gid: [u32; 4],
}

/// Parse `/proc/PID/status`. `Uid`, `Gid`, `CapInh`, `CapPrm`, `CapEff` and
/// `CapBnd` are required (present on every supported kernel); `CapAmb` (4.3),
/// `NoNewPrivs` (4.10), `Seccomp` (needs CONFIG_SECCOMP) and `Seccomp_filters`
/// (5.9) default to empty / false / "disabled" / None.
fn parse_status(text: &str) -> Result<Status, String> {
    let fields: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let required = |key: &str| {
        fields
            .get(key)
            .copied()
            .ok_or_else(|| format!("missing {key}: line"))
    };
    let cap = |key: &str| -> Result<Vec<String>, String> {
        let hex = required(key)?;
        u64::from_str_radix(hex, 16)
            .map(decode_caps)
            .map_err(|_| format!("invalid {key}: value {hex:?}"))
    };
    let ids = |key: &str| -> Result<[u32; 4], String> {
        let line = required(key)?;
        let parsed: Vec<u32> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| format!("invalid {key}: value {line:?}"))?;
        <[u32; 4]>::try_from(parsed)
            .map_err(|_| format!("expected 4 ids in {key}: line, got {line:?}"))
    };
    let number = |key: &str, value: &str| {
        value
            .parse::<u32>()
            .map_err(|_| format!("invalid {key}: value {value:?}"))
    };

    let seccomp_mode = match fields.get("Seccomp") {
        None => "disabled".to_string(),
        Some(v) => match number("Seccomp", v)? {
            0 => "disabled".to_string(),
            1 => "strict".to_string(),
            2 => "filter".to_string(),
            // SECCOMP_MODE_DEAD: the task is being killed by a filter.
            3 => "dead".to_string(),
            n => format!("unknown({n})"),
        },
    };
    let seccomp_filters = fields
        .get("Seccomp_filters")
        .map(|v| number("Seccomp_filters", v))
        .transpose()?;
    let no_new_privs = match fields.get("NoNewPrivs") {
        None => false,
        Some(v) => number("NoNewPrivs", v)? != 0,
    };
    let caps = CapSets {
        effective: cap("CapEff")?,
        permitted: cap("CapPrm")?,
        inheritable: cap("CapInh")?,
        bounding: cap("CapBnd")?,
        ambient: if fields.contains_key("CapAmb") {
            cap("CapAmb")?
        } else {
            Vec::new()
        },
    };
    Ok(Status {
        seccomp_mode,
        seccomp_filters,
        no_new_privs,
        caps,
        uid: ids("Uid")?,
        gid: ids("Gid")?,
    })
}

/// Parse `uid_map`/`gid_map`; an empty file (map not written yet) is an empty
/// list.
fn parse_id_map(text: &str) -> Result<Vec<IdMap>, String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let nums: Vec<u32> = line
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| format!("invalid line {line:?}"))?;
            match nums[..] {
                [inside, outside, count] => Ok(IdMap {
                    inside,
                    outside,
                    count,
                }),
                _ => Err(format!("expected 3 numbers, got {line:?}")),
            }
        })
        .collect()
}

fn read_id_map(proc_root: &Path, pid: i32, name: &str) -> Result<Vec<IdMap>, ProcInfoError> {
    match read_optional(proc_root, pid, name)? {
        Some(text) => parse_id_map(&text).map_err(|reason| {
            ProcInfoError::parse(pid_file(proc_root, pid, name).display(), reason)
        }),
        None => Ok(Vec::new()),
    }
}

/// Parse `/proc/PID/cgroup` lines `id:controllers:path`. The path may itself
/// contain `:`, so only the first two colons split.
fn parse_cgroup(text: &str) -> Result<Vec<(String, String)>, String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut parts = line.splitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(id), Some(controllers), Some(path)) => {
                    Ok((format!("{id}:{controllers}"), path.to_string()))
                }
                _ => Err(format!("expected id:controllers:path, got {line:?}")),
            }
        })
        .collect()
}

/// Like [`namespace_inode`] but `Ok(None)` when the kernel lacks the namespace
/// (or the process has none left).
fn namespace_inode_opt(proc_root: &Path, pid: i32, ns: &str) -> Result<Option<u64>, ProcInfoError> {
    if ns.is_empty() || !ns.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ProcInfoError::InvalidNamespace(ns.to_string()));
    }
    check_pid(pid)?;
    let path = pid_file(proc_root, pid, "ns").join(ns);
    let target = match std::fs::read_link(&path) {
        Ok(target) => target,
        Err(e) => return missing_or_error(proc_root, pid, path, e).map(|()| None),
    };
    let text = target.to_string_lossy();
    parse_ns_link(&text)
        .map(Some)
        .ok_or_else(|| ProcInfoError::parse(path.display(), format!("unexpected link {text:?}")))
}

/// `"net:[4026531840]"` -> 4026531840.
fn parse_ns_link(text: &str) -> Option<u64> {
    let (_, rest) = text.split_once(":[")?;
    rest.strip_suffix(']')?.parse().ok()
}

/// Pids are positive; anything else cannot name a `/proc` entry (and `0`/-1
/// must not silently resolve to something else).
fn check_pid(pid: i32) -> Result<(), ProcInfoError> {
    if pid <= 0 {
        Err(ProcInfoError::NotFound { pid })
    } else {
        Ok(())
    }
}

fn pid_file(proc_root: &Path, pid: i32, name: &str) -> PathBuf {
    proc_root.join(pid.to_string()).join(name)
}

fn read_required(proc_root: &Path, pid: i32, name: &str) -> Result<String, ProcInfoError> {
    check_pid(pid)?;
    let path = pid_file(proc_root, pid, name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) => {
            // A missing required file means the process is gone (NotFound) or
            // the file really is missing (Io); either way it is an error.
            if e.kind() == io::ErrorKind::NotFound && proc_root.join(pid.to_string()).exists() {
                return Err(ProcInfoError::Io { path, source: e });
            }
            missing_or_error(proc_root, pid, path.clone(), e)?;
            Err(ProcInfoError::NotFound { pid })
        }
    }
}

fn read_optional(proc_root: &Path, pid: i32, name: &str) -> Result<Option<String>, ProcInfoError> {
    check_pid(pid)?;
    let path = pid_file(proc_root, pid, name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) => missing_or_error(proc_root, pid, path, e).map(|()| None),
    }
}

/// Classify a failed read: `Ok(())` if the file is simply absent while the
/// process still exists; `NotFound` if the process itself is gone (ENOENT on
/// a vanished `/proc/PID`, or ESRCH from a task that exited after open); any
/// other error as `Io` naming the file.
fn missing_or_error(
    proc_root: &Path,
    pid: i32,
    path: PathBuf,
    err: io::Error,
) -> Result<(), ProcInfoError> {
    let pid_gone = || !proc_root.join(pid.to_string()).exists();
    if err.raw_os_error() == Some(libc::ESRCH) {
        return Err(ProcInfoError::NotFound { pid });
    }
    if err.kind() == io::ErrorKind::NotFound {
        return if pid_gone() {
            Err(ProcInfoError::NotFound { pid })
        } else {
            Ok(())
        };
    }
    Err(ProcInfoError::Io { path, source: err })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn own_pid() -> i32 {
        i32::try_from(std::process::id()).expect("pid fits in i32")
    }

    #[test]
    fn procinfo_reads_own_process() {
        let info = read_process(Path::new("/proc"), own_pid()).expect("read own process");
        assert_eq!(info.pid, own_pid());
        for ns in ["mnt", "pid"] {
            let inode = *info
                .namespaces
                .get(ns)
                .unwrap_or_else(|| panic!("{ns} missing"));
            assert_ne!(inode, 0, "{ns} inode");
        }
        assert_eq!(
            info.namespaces["mnt"],
            namespace_inode(Path::new("/proc"), own_pid(), "mnt").unwrap()
        );
        assert!(!info.uid_map.is_empty(), "uid_map empty");
        assert!(!info.gid_map.is_empty(), "gid_map empty");
        assert!(
            info.mounts.iter().any(|m| m.mount_point == "/"),
            "no / mount in {:?}",
            info.mounts
        );
        assert!(["disabled", "strict", "filter"].contains(&info.seccomp_mode.as_str()));
        assert!(!info.caps.bounding.is_empty(), "bounding set empty");
        assert_eq!(info.uid[0], nix::unistd::getuid().as_raw());
        assert_eq!(info.uid[1], nix::unistd::geteuid().as_raw());
        assert_eq!(info.gid[0], nix::unistd::getgid().as_raw());
        assert!(!info.cgroups.is_empty(), "cgroups empty");
        // Round-trips through serde for `berth inspect --json`.
        let json = serde_json::to_string(&info).unwrap();
        let back: ProcessIsolation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn procinfo_decode_caps() {
        assert!(decode_caps(0).is_empty());
        assert_eq!(decode_caps(1 << 5 | 1 << 21), ["CAP_KILL", "CAP_SYS_ADMIN"]);
        assert_eq!(decode_caps(1), ["CAP_CHOWN"]);
        // Unknown future capability bits are named by number, sorted last.
        assert_eq!(decode_caps(1 << 63 | 1), ["CAP_CHOWN", "CAP_63"]);
        assert_eq!(decode_caps(u64::MAX).len(), 64);
    }

    #[test]
    fn procinfo_parse_mountinfo_sample() {
        let text = "\
22 1 8:1 / / rw,relatime shared:1 master:2 - ext4 /dev/sda1 rw,errors=remount-ro
36 22 0:30 /my\\040dir /mnt/with\\040space\\011tab rw,nosuid - tmpfs my\\134src rw,size=1024k,x=a\\054b
40 22 0:31 / /empty rw - tmpfs  rw

";
        let mounts = parse_mountinfo(text).unwrap();
        assert_eq!(mounts.len(), 3);
        assert_eq!(
            mounts[0],
            MountEntry {
                mount_id: 22,
                parent_id: 1,
                root: "/".into(),
                mount_point: "/".into(),
                fs_type: "ext4".into(),
                source: "/dev/sda1".into(),
                options: vec!["rw".into(), "relatime".into()],
                optional: vec!["shared:1".into(), "master:2".into()],
                super_options: vec!["rw".into(), "errors=remount-ro".into()],
            }
        );
        assert_eq!(mounts[1].root, "/my dir");
        assert_eq!(mounts[1].mount_point, "/mnt/with space\ttab");
        assert_eq!(mounts[1].source, "my\\src");
        assert_eq!(mounts[1].options, ["rw", "nosuid"]);
        assert_eq!(mounts[1].super_options, ["rw", "size=1024k", "x=a,b"]);
        assert_eq!(mounts[2].source, "");
        assert_eq!(mounts[2].fs_type, "tmpfs");

        let err = parse_mountinfo("1 2 3:4 / / rw shared:1 tmpfs x rw\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(parse_mountinfo("x 2 3:4 / / rw - tmpfs x rw").is_err());
        assert!(parse_mountinfo("").unwrap().is_empty());
    }

    #[test]
    fn procinfo_unescape_edge_cases() {
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert_eq!(unescape("\\"), "\\");
        assert_eq!(unescape("\\999"), "\\999");
        assert_eq!(unescape("\\777"), "\\777");
    }

    /// Build a fake proc root holding pid 42 with a hostile comm.
    fn fake_proc() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("42");
        fs::create_dir_all(p.join("ns")).unwrap();
        fs::write(
            p.join("status"),
            "Name:\tweird\nState:\tS (sleeping)\nUid:\t1000\t1001\t1002\t1003\n\
             Gid:\t2000\t2001\t2002\t2003\nCapInh:\t0000000000000000\n\
             CapPrm:\t0000000000200020\nCapEff:\t0000000000200020\n\
             CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000020\n\
             NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t3\n",
        )
        .unwrap();
        // A naive parser splitting at the first ')' would read state 'Z'.
        let mut stat = String::from("42 (a) Z (my) proc) S 1 42 42 0 -1 4194560");
        // Fields 10..=21 then starttime (22) and a few more.
        for _ in 10..=21 {
            stat.push_str(" 0");
        }
        stat.push_str(" 123456 1000 200 18446744073709551615\n");
        fs::write(p.join("stat"), stat).unwrap();
        fs::write(p.join("uid_map"), "         0     100000      65536\n").unwrap();
        fs::write(p.join("gid_map"), "").unwrap();
        fs::write(
            p.join("mountinfo"),
            "100 90 0:50 / / ro,nosuid shared:7 - overlay overlay rw,lowerdir=/a\n\
             101 100 0:51 / /proc rw - proc proc rw\n",
        )
        .unwrap();
        fs::write(p.join("cgroup"), "4:memory:/x/y\n0::/a:b\n").unwrap();
        std::os::unix::fs::symlink("mnt:[4026532000]", p.join("ns/mnt")).unwrap();
        std::os::unix::fs::symlink("pid:[4026532001]", p.join("ns/pid")).unwrap();
        std::os::unix::fs::symlink("net:[4026531840]", p.join("ns/net")).unwrap();
        dir
    }

    #[test]
    fn procinfo_fake_proc_root() {
        let dir = fake_proc();
        let root = dir.path();
        let info = read_process(root, 42).unwrap();
        assert_eq!(info.pid, 42);
        assert_eq!(
            info.namespaces,
            BTreeMap::from([
                ("mnt".to_string(), 4026532000),
                ("net".to_string(), 4026531840),
                ("pid".to_string(), 4026532001),
            ])
        );
        assert_eq!(info.seccomp_mode, "filter");
        assert_eq!(info.seccomp_filters, Some(3));
        assert!(info.no_new_privs);
        assert_eq!(info.caps.effective, ["CAP_KILL", "CAP_SYS_ADMIN"]);
        assert_eq!(info.caps.permitted, ["CAP_KILL", "CAP_SYS_ADMIN"]);
        assert!(info.caps.inheritable.is_empty());
        assert_eq!(info.caps.ambient, ["CAP_KILL"]);
        assert_eq!(info.caps.bounding.len(), 41);
        assert_eq!(info.caps.bounding.last().unwrap(), "CAP_CHECKPOINT_RESTORE");
        assert_eq!(info.uid, [1000, 1001, 1002, 1003]);
        assert_eq!(info.gid, [2000, 2001, 2002, 2003]);
        assert_eq!(
            info.uid_map,
            [IdMap {
                inside: 0,
                outside: 100000,
                count: 65536
            }]
        );
        assert!(info.gid_map.is_empty());
        assert_eq!(info.mounts.len(), 2);
        assert_eq!(info.mounts[0].mount_point, "/");
        assert_eq!(info.mounts[0].options, ["ro", "nosuid"]);
        assert_eq!(info.mounts[0].fs_type, "overlay");
        assert_eq!(
            info.cgroups,
            [
                ("4:memory".to_string(), "/x/y".to_string()),
                ("0:".to_string(), "/a:b".to_string()),
            ]
        );
        assert_eq!(start_time(root, 42).unwrap(), 123456);
        assert!(is_alive(root, 42));
        assert_eq!(namespace_inode(root, 42, "net").unwrap(), 4026531840);
        assert!(matches!(
            namespace_inode(root, 42, "time"),
            Err(ProcInfoError::Io { .. })
        ));
        assert!(matches!(
            namespace_inode(root, 42, "../x"),
            Err(ProcInfoError::InvalidNamespace(_))
        ));
    }

    #[test]
    fn procinfo_fake_optional_files_missing() {
        let dir = fake_proc();
        let p = dir.path().join("42");
        fs::remove_dir_all(p.join("ns")).unwrap();
        fs::remove_file(p.join("uid_map")).unwrap();
        fs::remove_file(p.join("gid_map")).unwrap();
        fs::remove_file(p.join("cgroup")).unwrap();
        // An old kernel: no CapAmb, NoNewPrivs or Seccomp_filters.
        fs::write(
            p.join("status"),
            "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nCapInh:\t0\nCapPrm:\t0\nCapEff:\t0\n\
             CapBnd:\t3fffffffff\nSeccomp:\t1\n",
        )
        .unwrap();
        let info = read_process(dir.path(), 42).unwrap();
        assert!(info.namespaces.is_empty());
        assert!(info.uid_map.is_empty() && info.gid_map.is_empty());
        assert!(info.cgroups.is_empty());
        assert_eq!(info.seccomp_mode, "strict");
        assert_eq!(info.seccomp_filters, None);
        assert!(!info.no_new_privs);
        assert!(info.caps.ambient.is_empty());

        // Required file missing: an error naming the file.
        fs::remove_file(p.join("mountinfo")).unwrap();
        let err = read_process(dir.path(), 42).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("reading {}", p.join("mountinfo").display())),
            "{err}"
        );
    }

    #[test]
    fn procinfo_fake_zombie_and_missing() {
        let dir = fake_proc();
        let p = dir.path().join("42");
        let stat = fs::read_to_string(p.join("stat")).unwrap();
        fs::write(p.join("stat"), stat.replace(") S 1 ", ") Z 1 ")).unwrap();
        assert!(!is_alive(dir.path(), 42));
        assert!(matches!(
            read_process(dir.path(), 42),
            Err(ProcInfoError::Zombie { pid: 42 })
        ));
        assert_eq!(start_time(dir.path(), 42).unwrap(), 123456);

        let err = read_process(dir.path(), 43).unwrap_err();
        assert!(matches!(err, ProcInfoError::NotFound { pid: 43 }));
        assert_eq!(err.to_string(), "process 43 not found");
        assert!(matches!(
            read_process(dir.path(), 0),
            Err(ProcInfoError::NotFound { pid: 0 })
        ));
    }

    #[test]
    fn procinfo_start_time_and_liveness_of_self() {
        assert!(start_time(Path::new("/proc"), own_pid()).unwrap() > 0);
        assert!(is_alive(Path::new("/proc"), own_pid()));
        assert!(!is_alive(Path::new("/proc"), 4_000_000));
        assert!(!is_alive(Path::new("/proc"), -1));
        assert!(matches!(
            start_time(Path::new("/proc"), 4_000_000),
            Err(ProcInfoError::NotFound { pid: 4_000_000 })
        ));
    }
}
