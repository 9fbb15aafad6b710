//! Live usage and limits of a [`Cgroup`] for `inspect`/`ps`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::cgroup::Cgroup;
use super::error::CgroupError;
use super::fsutil::{self, read_key, read_u64, read_u64_or_max};
use super::layout::CgroupMode;

/// v1 reports "no limit" as a huge page-aligned number (e.g.
/// 9223372036854771712); anything at or above 2^62 counts as unlimited.
const V1_UNLIMITED: u64 = 1 << 62;

/// Usage and limits. A missing file gives `None`; for limits `None` also
/// means unlimited (as noted per field).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Bytes (v1 memory.usage_in_bytes, v2 memory.current).
    pub memory_current: Option<u64>,
    /// Bytes (v1 memory.max_usage_in_bytes, v2 memory.peak).
    pub memory_peak: Option<u64>,
    /// Bytes; `None` = unlimited or unknown.
    pub memory_limit: Option<u64>,
    /// Bytes; v1: memory+swap (memsw), v2: swap alone. `None` = unlimited.
    pub memory_swap_limit: Option<u64>,
    /// Cumulative CPU time in ns (v1 cpuacct.usage, v2 cpu.stat usage_usec).
    pub cpu_usage_ns: Option<u64>,
    /// CFS quota in µs; `Some(-1)` = no quota.
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: Option<u64>,
    pub cpu_nr_throttled: Option<u64>,
    pub cpu_throttled_ns: Option<u64>,
    pub pids_current: Option<u64>,
    /// `None` = max (or unknown).
    pub pids_limit: Option<u64>,
    /// v2 memory.events `oom` (times the OOM killer was invoked); `None` on v1
    /// (v1 exposes no counter).
    pub oom_events: Option<u64>,
    /// OOM kills (v1 memory.oom_control `oom_kill`, v2 memory.events `oom_kill`).
    pub oom_kill: Option<u64>,
    /// Times usage hit the limit (v1 memory.failcnt, v2 memory.events `max`).
    #[serde(default)]
    pub memory_failcnt: Option<u64>,
    /// v1 memory.oom_control `under_oom` (1 while the cgroup is in OOM).
    #[serde(default)]
    pub under_oom: Option<bool>,
}

fn v1_limit(path: &Path) -> Result<Option<u64>, CgroupError> {
    Ok(read_u64(path)?.filter(|&v| v < V1_UNLIMITED))
}

impl Cgroup {
    /// Live usage and limits. Missing files (controller not used, cgroup
    /// removed) give `None`; unreadable or malformed files are errors.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        let mut s = Stats::default();
        if self.mode == CgroupMode::V2 {
            let Some(u) = &self.unified else {
                return Ok(s);
            };
            let d = &u.dir;
            s.memory_current = read_u64(&d.join("memory.current"))?;
            s.memory_peak = read_u64(&d.join("memory.peak"))?;
            s.memory_limit = read_u64_or_max(&d.join("memory.max"))?.flatten();
            s.memory_swap_limit = read_u64_or_max(&d.join("memory.swap.max"))?.flatten();
            let events = d.join("memory.events");
            s.oom_events = read_key(&events, "oom")?;
            s.oom_kill = read_key(&events, "oom_kill")?;
            s.memory_failcnt = read_key(&events, "max")?;
            let stat = d.join("cpu.stat");
            s.cpu_usage_ns = read_key(&stat, "usage_usec")?.map(|v| v.saturating_mul(1000));
            s.cpu_nr_throttled = read_key(&stat, "nr_throttled")?;
            s.cpu_throttled_ns = read_key(&stat, "throttled_usec")?.map(|v| v.saturating_mul(1000));
            let max = d.join("cpu.max");
            if let Some(text) = fsutil::read_opt(&max)? {
                let mut it = text.split_whitespace();
                s.cpu_quota_us = match it.next() {
                    Some("max") => Some(-1),
                    Some(q) => Some(q.parse().map_err(|_| fsutil::parse_err(&max, &text))?),
                    None => None,
                };
                s.cpu_period_us = match it.next() {
                    Some(p) => Some(p.parse().map_err(|_| fsutil::parse_err(&max, &text))?),
                    None => None,
                };
            }
            s.pids_current = read_u64(&d.join("pids.current"))?;
            s.pids_limit = read_u64_or_max(&d.join("pids.max"))?.flatten();
            return Ok(s);
        }

        if let Some(d) = self.v1_dir("memory") {
            s.memory_current = read_u64(&d.join("memory.usage_in_bytes"))?;
            s.memory_peak = read_u64(&d.join("memory.max_usage_in_bytes"))?;
            s.memory_limit = v1_limit(&d.join("memory.limit_in_bytes"))?;
            s.memory_swap_limit = v1_limit(&d.join("memory.memsw.limit_in_bytes"))?;
            s.memory_failcnt = read_u64(&d.join("memory.failcnt"))?;
            let oc = d.join("memory.oom_control");
            s.oom_kill = read_key(&oc, "oom_kill")?;
            s.under_oom = read_key(&oc, "under_oom")?.map(|v| v != 0);
        }
        if let Some(d) = self.v1_dir("cpuacct") {
            s.cpu_usage_ns = read_u64(&d.join("cpuacct.usage"))?;
        }
        if let Some(d) = self.v1_dir("cpu") {
            let stat = d.join("cpu.stat");
            s.cpu_nr_throttled = read_key(&stat, "nr_throttled")?;
            s.cpu_throttled_ns = read_key(&stat, "throttled_time")?;
            let qf = d.join("cpu.cfs_quota_us");
            if let Some(text) = fsutil::read_opt(&qf)? {
                let q: i64 = text
                    .trim()
                    .parse()
                    .map_err(|_| fsutil::parse_err(&qf, &text))?;
                s.cpu_quota_us = Some(if q < 0 { -1 } else { q });
            }
            s.cpu_period_us = read_u64(&d.join("cpu.cfs_period_us"))?;
        }
        if let Some(d) = self.v1_dir("pids") {
            s.pids_current = read_u64(&d.join("pids.current"))?;
            s.pids_limit = read_u64_or_max(&d.join("pids.max"))?.flatten();
        }
        Ok(s)
    }

    /// OOM kills recorded by the kernel for this cgroup (v1: `oom_kill N` in
    /// memory.oom_control; v2: `oom_kill` in memory.events). 0 if unknown.
    pub fn oom_kill_count(&self) -> u64 {
        let file = if self.mode == CgroupMode::V2 {
            self.unified.as_ref().map(|u| u.dir.join("memory.events"))
        } else {
            self.v1_dir("memory").map(|d| d.join("memory.oom_control"))
        };
        file.and_then(|f| read_key(&f, "oom_kill").ok().flatten())
            .unwrap_or(0)
    }
}
