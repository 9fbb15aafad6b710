//! `inspect`: one document that says everything about a container, read
//! from the live system where it can be (/proc of its init, its cgroup)
//! and from its bundle and state files otherwise. The JSON form is stable:
//! fields are only ever added.

use std::path::{Path, PathBuf};

use isolator::cgroups::Stats;
use isolator::procinfo::{self, CapSets, IdMap, MountEntry};
use oci_spec::runtime::Spec;
use serde::Serialize;

use crate::container::Launcher;
use crate::error::{Error, Result};
use crate::state::{ExitInfo, Status, Warning};

#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub id: String,
    pub name: Option<String>,
    pub status: Status,
    /// RFC 3339, UTC.
    pub created: String,
    pub pid: Option<i32>,
    pub command: Vec<String>,
    pub exit: Option<ExitInfo>,
    pub bundle: PathBuf,
    pub config: PathBuf,
    pub rootfs: PathBuf,
    pub state_dir: PathBuf,
    pub logs: Logs,
    pub supervisor: Option<SupervisorInfo>,
    pub rootless: bool,
    pub namespaces: Vec<NamespaceInfo>,
    pub cgroup: Option<CgroupInfo>,
    pub seccomp: SeccompInfo,
    pub capabilities: Option<CapSets>,
    pub no_new_privs: Option<bool>,
    pub user: UserInfo,
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
    pub volumes: Vec<VolumeInfo>,
    /// Block I/O throttles from config.json.
    pub io_limits: Vec<IoLimitInfo>,
    pub mounts: Vec<MountEntry>,
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Logs {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct SupervisorInfo {
    pub pid: i32,
    pub alive: bool,
    /// Resident set size in KiB (VmRSS), while alive.
    pub rss_kib: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamespaceInfo {
    #[serde(rename = "type")]
    pub typ: String,
    /// Inode of the live namespace (as in /proc/PID/ns), while running.
    pub inode: Option<u64>,
    /// A namespace joined by path rather than created.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CgroupInfo {
    pub path: String,
    pub mode: String,
    pub dirs: Vec<PathBuf>,
    pub usage: Stats,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeccompInfo {
    /// From the live process: disabled, strict or filter.
    pub mode: Option<String>,
    pub filters: Option<u32>,
    /// Whether config.json asks for a filter, and its default action.
    pub configured: bool,
    pub default_action: Option<String>,
    pub rules: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct IoLimitInfo {
    /// "MAJOR:MINOR"
    pub device: String,
    /// read_bps, write_bps, read_iops or write_iops
    pub kind: &'static str,
    pub rate: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VolumeInfo {
    /// The named volume mounted here, if it is one.
    pub name: Option<String>,
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
    /// Bytes used under the source, when it can be measured cheaply.
    pub usage_bytes: Option<u64>,
}

impl Launcher {
    pub fn inspect(&self, key: &str) -> Result<Inspection> {
        let (dir, st, status) = self.load(key)?;
        let spec = Spec::load(dir.config())
            .map_err(|e| Error::Spec(format!("loading {}: {e}", dir.config().display())))?;
        let process = spec.process().clone().unwrap_or_default();
        let linux = spec.linux().clone().unwrap_or_default();
        let running = matches!(status, Status::Running | Status::Created);
        let live = if running {
            st.init
                .and_then(|p| procinfo::read_process(Path::new("/proc"), p.pid).ok())
        } else {
            None
        };

        let namespaces = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|n| {
                let short = isolator::namespaces::kind_name(n.typ()).to_string();
                NamespaceInfo {
                    inode: live
                        .as_ref()
                        .and_then(|l| l.namespaces.get(&short).copied()),
                    typ: short,
                    path: n.path().clone(),
                }
            })
            .collect();
        let cgroup = st.cgroup.as_ref().map(|c| CgroupInfo {
            path: c.display_path(),
            mode: format!("{:?}", c.mode).to_lowercase(),
            dirs: c.dirs(),
            usage: c.stats().unwrap_or_default(),
        });
        let seccomp_cfg = linux.seccomp().as_ref();
        let seccomp = SeccompInfo {
            mode: live.as_ref().map(|l| l.seccomp_mode.clone()),
            filters: live.as_ref().and_then(|l| l.seccomp_filters),
            configured: seccomp_cfg.is_some(),
            default_action: seccomp_cfg.map(|s| {
                serde_json::to_value(s.default_action())
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            }),
            rules: seccomp_cfg
                .and_then(|s| s.syscalls().as_ref().map(|v| v.len()))
                .unwrap_or(0),
        };
        let volumes = spec
            .mounts()
            .clone()
            .unwrap_or_default()
            .iter()
            .filter(|m| {
                m.typ().as_deref() == Some("bind")
                    && m.destination() != Path::new(crate::spec::SANDBOX_PATH)
            })
            .map(|m| {
                let source = m.source().clone().unwrap_or_default();
                let name = spec.annotations().as_ref().and_then(|a| {
                    a.get(&format!(
                        "{}{}",
                        crate::spec::VOLUME_ANNOTATION,
                        m.destination().display()
                    ))
                    .cloned()
                });
                VolumeInfo {
                    name,
                    usage_bytes: dir_usage(&source, 100_000),
                    read_only: m
                        .options()
                        .as_ref()
                        .is_some_and(|o| o.iter().any(|x| x == "ro")),
                    destination: m.destination().clone(),
                    source,
                }
            })
            .collect();
        let mut io_limits = Vec::new();
        if let Some(b) = linux
            .resources()
            .as_ref()
            .and_then(|r| r.block_io().as_ref())
        {
            for (kind, list) in [
                ("read_bps", b.throttle_read_bps_device()),
                ("write_bps", b.throttle_write_bps_device()),
                ("read_iops", b.throttle_read_iops_device()),
                ("write_iops", b.throttle_write_iops_device()),
            ] {
                for d in list.iter().flatten() {
                    io_limits.push(IoLimitInfo {
                        device: format!("{}:{}", d.major(), d.minor()),
                        kind,
                        rate: d.rate(),
                    });
                }
            }
        }
        let supervisor = st.supervisor.map(|s| {
            let alive = s.is_alive();
            SupervisorInfo {
                pid: s.pid,
                alive,
                rss_kib: if alive { rss_kib(s.pid) } else { None },
            }
        });
        let root_path = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_default();
        Ok(Inspection {
            id: st.id.clone(),
            name: st.name.clone(),
            status,
            created: rfc3339(st.created),
            pid: if running {
                st.init.map(|p| p.pid)
            } else {
                None
            },
            command: process.args().clone().unwrap_or_default(),
            exit: dir.read_exit(),
            bundle: dir.bundle(),
            config: dir.config(),
            rootfs: crate::container::rootfs_of(&dir.bundle(), &root_path),
            state_dir: dir.dir.clone(),
            logs: Logs {
                stdout: st.stdout_log(&dir),
                stderr: st.stderr_log(&dir),
            },
            supervisor,
            rootless: st.rootless,
            namespaces,
            cgroup,
            seccomp,
            capabilities: live.as_ref().map(|l| l.caps.clone()),
            no_new_privs: live.as_ref().map(|l| l.no_new_privs),
            user: UserInfo {
                uid: process.user().uid(),
                gid: process.user().gid(),
            },
            uid_map: live.as_ref().map(|l| l.uid_map.clone()).unwrap_or_default(),
            gid_map: live.as_ref().map(|l| l.gid_map.clone()).unwrap_or_default(),
            volumes,
            io_limits,
            mounts: live.map(|l| l.mounts).unwrap_or_default(),
            warnings: st.warnings.clone(),
        })
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Bytes used by regular files under `path`, giving up after `max_entries`
/// (inspect must stay fast on a huge volume).
pub fn dir_usage(path: &Path, max_entries: usize) -> Option<u64> {
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut stack = vec![path.to_path_buf()];
    let root_dev = std::os::unix::fs::MetadataExt::dev(&std::fs::symlink_metadata(path).ok()?);
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).ok()?;
        seen += 1;
        if seen > max_entries {
            return None;
        }
        if std::os::unix::fs::MetadataExt::dev(&md) != root_dev {
            continue;
        }
        if md.is_dir() {
            for e in std::fs::read_dir(&p).ok()?.flatten() {
                stack.push(e.path());
            }
        } else if md.is_file() {
            total += std::os::unix::fs::MetadataExt::blocks(&md) * 512;
        }
    }
    Some(total)
}

/// Formats Unix nanoseconds as RFC 3339 UTC (civil-from-days, Howard
/// Hinnant's algorithm; no date crate needed for this one format).
pub fn rfc3339(nanos: u64) -> String {
    let secs = (nanos / 1_000_000_000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 * 1_000_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339(1_795_000_000 * 1_000_000_000),
            "2026-11-18T11:06:40Z"
        );
    }

    #[test]
    fn usage_counts_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![1u8; 8192]).unwrap();
        assert!(dir_usage(d.path(), 100).unwrap() >= 8192);
    }
}
