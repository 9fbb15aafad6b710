//! Host resource detection, as Mesos' `Containerizer::resources` does it, and
//! the rule that explicit `--resources` override detected ones by name.

use std::path::Path;

use super::{parse_flag, Resource, Resources, ResourcesError};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// Ports offered when `ports` is not given: `[31000-32000]`.
pub const DEFAULT_PORTS: (u64, u64) = (31000, 32000);
const DEFAULT_CPUS: usize = 1;
const DEFAULT_MEM_MB: u64 = 1024;
const DEFAULT_DISK_MB: u64 = 10 * 1024;

/// Raw host facts; `None` where they could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostInfo {
    /// Number of CPUs usable by this process.
    pub cpus: Option<usize>,
    /// `MemTotal` of `/proc/meminfo`, in bytes.
    pub mem_total_bytes: Option<u64>,
    /// Size of the filesystem holding the work dir, in bytes.
    pub disk_total_bytes: Option<u64>,
}

/// Reads the host facts: CPUs from `available_parallelism`, memory from
/// `/proc/meminfo`, disk from `statvfs(work_dir)` (`f_blocks * f_frsize`).
pub fn host_info(work_dir: &Path) -> HostInfo {
    let cpus = std::thread::available_parallelism().ok().map(usize::from);
    let mem_total_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo_total(&t));
    let disk_total_bytes = nix::sys::statvfs::statvfs(work_dir)
        .ok()
        .and_then(|s| widen(s.blocks())?.checked_mul(widen(s.fragment_size())?));
    HostInfo {
        cpus,
        mem_total_bytes,
        disk_total_bytes,
    }
}

/// `fsblkcnt_t` / `c_ulong` as `u64`, whatever their width on this target.
fn widen<T: TryInto<u64>>(v: T) -> Option<u64> {
    v.try_into().ok()
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => n.checked_mul(1024),
        Some(_) => None,
    }
}

/// Memory to offer, in MB (truncated): total − 1 GiB if total ≥ 2 GiB, else half.
pub fn mem_mb_for_total(total_bytes: u64) -> u64 {
    let bytes = if total_bytes >= 2 * GIB {
        total_bytes - GIB
    } else {
        total_bytes / 2
    };
    bytes / MIB
}

/// Disk to offer, in MB (truncated): size − 5 GiB if size ≥ 10 GiB, else half.
pub fn disk_mb_for_total(total_bytes: u64) -> u64 {
    let bytes = if total_bytes >= 10 * GIB {
        total_bytes - 5 * GIB
    } else {
        total_bytes / 2
    };
    bytes / MIB
}

/// The resources Mesos would detect from `host`: `cpus`, `mem`, `disk` (MB) and
/// `ports` `[31000-32000]`, all unreserved; missing facts fall back to 1 cpu,
/// 1024 MB of memory and 10240 MB of disk.
pub fn detect_from(host: HostInfo) -> Resources {
    let cpus = host.cpus.filter(|&c| c > 0).unwrap_or(DEFAULT_CPUS);
    let mem = host
        .mem_total_bytes
        .map(mem_mb_for_total)
        .filter(|&m| m > 0)
        .unwrap_or(DEFAULT_MEM_MB);
    let disk = host
        .disk_total_bytes
        .map(disk_mb_for_total)
        .filter(|&d| d > 0)
        .unwrap_or(DEFAULT_DISK_MB);
    let scalar = |name: &str, v: u64| {
        // Host quantities (MB, CPU counts) are far below the fixed-point limit.
        Resource::scalar(name, v as f64).expect("host quantity fits a scalar")
    };
    [
        scalar("cpus", cpus as u64),
        scalar("mem", mem),
        scalar("disk", disk),
        Resource::ranges("ports", DEFAULT_PORTS.0, DEFAULT_PORTS.1).expect("begin <= end"),
    ]
    .into_iter()
    .collect()
}

/// Detects this host's resources; `work_dir` is the agent's `--work_dir`,
/// whose filesystem gives `disk`.
pub fn detect(work_dir: &Path) -> Resources {
    detect_from(host_info(work_dir))
}

/// `explicit` plus every detected resource whose name `explicit` does not use
/// at all (with any role): a given `cpus(ops):2` suppresses detected `cpus`.
pub fn merge_detected(explicit: &Resources, detected: &Resources) -> Resources {
    let given = explicit.names();
    let mut out = explicit.clone();
    out += &detected.filter(|r| !given.contains(r.name.as_str()));
    out
}

/// The agent's total: `--resources` (if any, see [`parse_flag`]) merged over
/// what is detected for `work_dir`.
pub fn agent_resources(flag: Option<&str>, work_dir: &Path) -> Result<Resources, ResourcesError> {
    let explicit = match flag {
        Some(f) => parse_flag(f)?,
        None => Resources::new(),
    };
    Ok(merge_detected(&explicit, &detect(work_dir)))
}
