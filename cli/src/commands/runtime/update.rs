//! `berth update [flags] ID`: new resource limits for a running (or
//! created, or paused) container, as runc 1.1's: `-r FILE` (a runtime-spec
//! linux.resources document, `-` for stdin) or single flags; as with runc,
//! the flags are ignored when -r is given (with a warning naming them).
//! Fields left out keep their values. A limit the host cannot apply is an
//! error naming it. Device rules in the document are not changed (runc
//! ignores them too; a warning says so); kernel memory limits are ignored
//! with runc's warning; `memory.checkBeforeUpdate` refuses a memory limit
//! at or below the current usage.

use std::io::Read;
use std::path::PathBuf;

use launcher::Launcher;
use oci_spec::runtime::{LinuxPidsBuilder, LinuxResources};

use super::fail;
use crate::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A linux.resources JSON document ("-": standard input)
    #[arg(long, short = 'r', value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes (suffixes k, m, g; -1: unlimited)
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit in bytes (suffixes k, m, g; -1: unlimited)
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit in bytes (suffixes k, m, g; -1: unlimited)
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPU CFS quota in microseconds per period (-1: none)
    #[arg(long, value_name = "US", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds
    #[arg(long, value_name = "US")]
    pub cpu_period: Option<u64>,
    /// CPU shares (relative weight)
    #[arg(long, value_name = "N")]
    pub cpu_share: Option<u64>,
    /// CPU realtime period in microseconds
    #[arg(long, value_name = "US")]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds per period
    #[arg(long, value_name = "US", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// Block I/O weight (10..1000)
    #[arg(long, value_name = "N")]
    pub blkio_weight: Option<u16>,
    /// Obsolete (runc 1.1 ignores it with a warning)
    #[arg(long, value_name = "BYTES", hide = true, allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    /// Obsolete (runc 1.1 ignores it with a warning)
    #[arg(long, value_name = "BYTES", hide = true, allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    /// Intel RDT/CAT L3 cache schema (needs resctrl; not supported)
    #[arg(long, value_name = "SCHEMA")]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT/MBA memory bandwidth schema (needs resctrl; not supported)
    #[arg(long, value_name = "SCHEMA")]
    pub mem_bw_schema: Option<String>,
    /// CPUs the container may use (0-3, 0,1)
    #[arg(long, value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use
    #[arg(long, value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (0 or -1: unlimited)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// The container id
    pub id: String,
}

/// A size flag as runc reads it (docker's RAMInBytes,
/// [`launcher::spec::parse_bytes`]); "-1" stays -1 (unlimited where the
/// field allows it).
fn bytes(flag: &str, v: &str) -> Result<i64, Failure> {
    if v.trim() == "-1" {
        return Ok(-1);
    }
    launcher::spec::parse_bytes(v)
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(|| {
            fail(launcher::Error::invalid(
                flag,
                format!(
                    "{v:?} is not a size (a number with an optional k, m, g, t or p suffix, or -1)"
                ),
            ))
        })
}

fn load(path: &PathBuf) -> Result<LinuxResources, Failure> {
    let mut text = String::new();
    let r = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    r.map_err(|e| fail(anyhow::anyhow!("reading {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        fail(launcher::Error::invalid(
            "--resources",
            format!("{}: {e}", path.display()),
        ))
    })
}

/// The flags given besides -r (runc ignores them then).
fn flags_given(a: &Args) -> Vec<&'static str> {
    [
        ("--memory", a.memory.is_some()),
        ("--memory-reservation", a.memory_reservation.is_some()),
        ("--memory-swap", a.memory_swap.is_some()),
        ("--kernel-memory", a.kernel_memory.is_some()),
        ("--kernel-memory-tcp", a.kernel_memory_tcp.is_some()),
        ("--cpu-quota", a.cpu_quota.is_some()),
        ("--cpu-period", a.cpu_period.is_some()),
        ("--cpu-share", a.cpu_share.is_some()),
        ("--cpu-rt-period", a.cpu_rt_period.is_some()),
        ("--cpu-rt-runtime", a.cpu_rt_runtime.is_some()),
        ("--cpuset-cpus", a.cpuset_cpus.is_some()),
        ("--cpuset-mems", a.cpuset_mems.is_some()),
        ("--pids-limit", a.pids_limit.is_some()),
        ("--blkio-weight", a.blkio_weight.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, set)| set.then_some(f))
    .collect()
}

fn build(a: &Args) -> Result<LinuxResources, Failure> {
    if let Some(p) = &a.resources {
        let ignored = flags_given(a);
        if !ignored.is_empty() {
            super::log::warn(&format!(
                "{} ignored: with --resources the file is the whole update (as with runc)",
                ignored.join(", ")
            ));
        }
        return load(p);
    }
    let mut res = LinuxResources::default();
    for (flag, v) in [
        ("--kernel-memory", &a.kernel_memory),
        ("--kernel-memory-tcp", &a.kernel_memory_tcp),
    ] {
        if let Some(v) = v {
            if bytes(flag, v)? != 0 {
                super::log::warn("Kernel memory settings are ignored and will be removed");
            }
        }
    }
    if a.blkio_weight.is_some_and(|w| w != 0) {
        let mut b = res.block_io().clone().unwrap_or_default();
        b.set_weight(a.blkio_weight);
        res.set_block_io(Some(b));
    }
    let spec_err = |e: oci_spec::OciSpecError| fail(anyhow::anyhow!("{e}"));
    if a.memory.is_some() || a.memory_reservation.is_some() || a.memory_swap.is_some() {
        let mut m = res.memory().unwrap_or_default();
        if let Some(v) = &a.memory {
            m.set_limit(Some(bytes("--memory", v)?));
        }
        if let Some(v) = &a.memory_reservation {
            m.set_reservation(Some(bytes("--memory-reservation", v)?));
        }
        if let Some(v) = &a.memory_swap {
            m.set_swap(Some(bytes("--memory-swap", v)?));
        }
        res.set_memory(Some(m));
    }
    let cpu_flags = a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpu_share.is_some()
        || a.cpu_rt_period.is_some()
        || a.cpu_rt_runtime.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some();
    if cpu_flags {
        let mut c = res.cpu().clone().unwrap_or_default();
        if let Some(v) = a.cpu_quota {
            c.set_quota(Some(v));
        }
        if let Some(v) = a.cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = a.cpu_share {
            c.set_shares(Some(v));
        }
        if let Some(v) = a.cpu_rt_period {
            c.set_realtime_period(Some(v));
        }
        if let Some(v) = a.cpu_rt_runtime {
            c.set_realtime_runtime(Some(v));
        }
        if let Some(v) = &a.cpuset_cpus {
            c.set_cpus(Some(v.clone()));
        }
        if let Some(v) = &a.cpuset_mems {
            c.set_mems(Some(v.clone()));
        }
        res.set_cpu(Some(c));
    }
    // runc: 0 leaves the limit as it is, a negative one means unlimited.
    if let Some(v) = a.pids_limit.filter(|&v| v != 0) {
        res.set_pids(Some(
            LinuxPidsBuilder::default()
                .limit(if v < 0 { -1 } else { v })
                .build()
                .map_err(spec_err)?,
        ));
    }
    Ok(res)
}

/// runc's answers for Intel RDT: Berth has no resctrl support.
fn refuse_rdt(a: &Args) -> Result<(), Failure> {
    for (flag, v, what) in [
        (
            "--l3-cache-schema",
            &a.l3_cache_schema,
            "Intel RDT/CAT (L3 cache)",
        ),
        (
            "--mem-bw-schema",
            &a.mem_bw_schema,
            "Intel RDT/MBA (memory bandwidth)",
        ),
    ] {
        if v.as_deref().is_some_and(|v| !v.is_empty()) {
            let why = if std::path::Path::new("/sys/fs/resctrl/info").exists() {
                format!("{what} schemata are not supported by Berth")
            } else {
                format!("{what} is not enabled: this host has no resctrl filesystem")
            };
            return Err(fail(launcher::Error::invalid(flag, why)));
        }
    }
    Ok(())
}

/// What runc leaves alone on update, said instead of failing: device
/// rules (only set when the cgroup is made) and kernel memory limits.
fn drop_ignored(res: &mut LinuxResources) {
    if res.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        super::log::warn(
            "linux.resources.devices ignored: device rules are not changed by update (as with runc)",
        );
    }
    res.set_devices(None);
    if let Some(mut m) = res
        .memory()
        .filter(|m| m.kernel().is_some_and(|k| k != 0) || m.kernel_tcp().is_some_and(|k| k != 0))
    {
        super::log::warn("Kernel memory settings are ignored and will be removed");
        m.set_kernel(None);
        m.set_kernel_tcp(None);
        res.set_memory(Some(m));
    }
}

/// runtime-spec 1.2's memory.checkBeforeUpdate: a new limit (or
/// memory+swap limit) at or below the current usage is refused before
/// anything changes (v1 memory.usage_in_bytes, v2 memory.current).
fn check_before_update(l: &Launcher, id: &str, res: &LinuxResources) -> Result<(), Failure> {
    let Some(m) = res
        .memory()
        .filter(|m| m.check_before_update() == Some(true))
    else {
        return Ok(());
    };
    let (_, stats) = l.stats_runtime(id).map_err(fail)?;
    let Some(usage) = stats.memory_current else {
        return Ok(());
    };
    for (what, v) in [("memory+swap limit", m.swap()), ("memory limit", m.limit())] {
        if let Some(v) = v.filter(|&v| v > 0) {
            if v as u64 <= usage {
                return Err(fail(launcher::Error::invalid(
                    "memory.checkBeforeUpdate",
                    format!("rejecting {what} {v} <= usage {usage}"),
                )));
            }
        }
    }
    Ok(())
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    refuse_rdt(&a)?;
    let mut res = build(&a)?;
    drop_ignored(&mut res);
    check_before_update(l, &a.id, &res)?;
    l.update_runtime(&a.id, &res).map_err(fail)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_take_runcs_suffixes() {
        assert_eq!(super::bytes("m", "64m").ok(), Some(64 << 20));
        assert_eq!(super::bytes("m", "1G").ok(), Some(1 << 30));
        assert_eq!(super::bytes("m", "512kb").ok(), Some(512 << 10));
        assert_eq!(super::bytes("m", "100").ok(), Some(100));
        assert_eq!(super::bytes("m", "-1").ok(), Some(-1));
        assert_eq!(super::bytes("m", "1.5g").ok(), Some(3 << 29));
        assert_eq!(super::bytes("m", "64MiB").ok(), Some(64 << 20));
        assert_eq!(super::bytes("m", "100 MB").ok(), Some(100 << 20));
        assert_eq!(super::bytes("m", "1p").ok(), Some(1 << 50));
        assert!(super::bytes("m", "5x").is_err());
        assert!(super::bytes("m", ".5").is_err());
        assert!(super::bytes("m", "-2").is_err());
        assert!(super::bytes("m", "lots").is_err());
    }
}
