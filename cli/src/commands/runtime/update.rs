//! `berth update [flags] ID`: new resource limits for a running (or
//! created, or paused) container, as runc's: `-r FILE` (a runtime-spec
//! linux.resources document, `-` for stdin) and/or single flags, which win
//! over the file. Fields left out keep their values. A limit the host
//! cannot apply is an error naming it.

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
    /// Memory limit in bytes (suffixes k, m, g)
    #[arg(long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// Memory soft limit in bytes (suffixes k, m, g)
    #[arg(long, value_name = "BYTES")]
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

/// "64m" -> 67108864; "-1" stays -1 (unlimited where the field allows it).
fn bytes(flag: &str, v: &str) -> Result<i64, Failure> {
    let bad = || {
        fail(launcher::Error::invalid(
            flag,
            format!("{v:?} is not a size"),
        ))
    };
    let lower = v.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    if n == -1 && mult == 1 {
        return Ok(-1);
    }
    if n < 0 {
        return Err(bad());
    }
    n.checked_mul(mult).ok_or_else(bad)
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

fn build(a: &Args) -> Result<LinuxResources, Failure> {
    let mut res = match &a.resources {
        Some(p) => load(p)?,
        None => LinuxResources::default(),
    };
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
        if let Some(v) = &a.cpuset_cpus {
            c.set_cpus(Some(v.clone()));
        }
        if let Some(v) = &a.cpuset_mems {
            c.set_mems(Some(v.clone()));
        }
        res.set_cpu(Some(c));
    }
    if let Some(v) = a.pids_limit {
        res.set_pids(Some(
            LinuxPidsBuilder::default()
                .limit(if v <= 0 { -1 } else { v })
                .build()
                .map_err(spec_err)?,
        ));
    }
    Ok(res)
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    let res = build(&a)?;
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
        assert!(super::bytes("m", "-2").is_err());
        assert!(super::bytes("m", "lots").is_err());
    }
}
