//! Applying OCI `linux.resources` to a [`Cgroup`].

use std::path::PathBuf;

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};
use serde::{Deserialize, Serialize};

use super::cgroup::Cgroup;
use super::error::CgroupError;
use super::fsutil;
use super::layout::CgroupMode;

/// A requested limit that `apply()` could not apply, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unapplied {
    /// The OCI resource, e.g. `memory.swap`, `cpu.shares`, `blockIO`.
    pub limit: String,
    pub reason: String,
}

impl std::fmt::Display for Unapplied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.limit, self.reason)
    }
}

/// runc's conversion of v1 `cpu.shares` (2..262144) to v2 `cpu.weight`
/// (1..10000): `1 + ((shares - 2) * 9999) / 262142`; 0 means "unset" and
/// maps to 0. Out-of-range shares are clamped first.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// runc's `ConvertMemorySwapToCgroupV2Value`: OCI `memory.swap` is the
/// memory+swap total (v1 semantics); v2 `memory.swap.max` is swap alone.
/// 0 = unset, -1 = unlimited.
fn swap_to_v2(swap: i64, memory: i64) -> Result<i64, CgroupError> {
    if memory == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if memory == 0 || memory == -1 {
        return Err(CgroupError::InvalidResources(
            "unable to set swap limit without memory limit".into(),
        ));
    }
    if memory < 0 {
        return Err(CgroupError::InvalidResources(format!(
            "invalid memory value: {memory}"
        )));
    }
    if swap < memory {
        return Err(CgroupError::InvalidResources(
            "memory+swap limit should be >= memory limit".into(),
        ));
    }
    Ok(swap - memory)
}

/// runc's `ConvertBlkIOToIOWeightValue`: the blkio weight range 10..1000
/// mapped onto io.weight's 1..10000.
pub fn blkio_weight_to_io(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (u64::from(weight.max(10)) - 10) * 9999 / 990
}

/// A blkio weight must be 0 (unset) or 10..1000, the runtime-spec's range
/// (below 10 runc's v2 conversion would wrap).
fn check_weight(field: &str, w: Option<u16>) -> Result<(), CgroupError> {
    match w {
        Some(w) if w != 0 && !(10..=1000).contains(&w) => Err(CgroupError::InvalidResources(
            format!("linux.resources.{field} {w} is not in 10..1000"),
        )),
        _ => Ok(()),
    }
}

/// The huge page sizes (`2MB`, `1GB`, ...) the hugetlb cgroup `dir` has
/// limit files for (`hugetlb.<size><suffix>`, reservation files left out):
/// one per size in /sys/kernel/mm/hugepages, named as the kernel names them.
fn hugetlb_sizes(dir: &std::path::Path, suffix: &str) -> Result<Vec<String>, CgroupError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CgroupError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut sizes: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    Ok(sizes)
}

fn v2_value(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

struct Applier<'a> {
    cg: &'a Cgroup,
    unapplied: Vec<Unapplied>,
    v2_controllers: Option<Option<String>>,
}

impl Applier<'_> {
    fn skip(&mut self, limit: &str, reason: impl Into<String>) {
        self.unapplied.push(Unapplied {
            limit: limit.into(),
            reason: reason.into(),
        });
    }

    fn v2(&self) -> bool {
        self.cg.mode == CgroupMode::V2
    }

    /// The directory holding `controller`'s files, or `None` after recording
    /// `limit` as unapplied.
    fn dir(&mut self, controller: &str, limit: &str) -> Result<Option<PathBuf>, CgroupError> {
        if !self.v2() {
            return Ok(match self.cg.v1_dir(controller) {
                Some(d) => Some(d.to_path_buf()),
                None => {
                    let hint = if controller == "cpuset" {
                        " (resolve with ResolveOptions { cpuset: true })"
                    } else {
                        ""
                    };
                    self.skip(
                        limit,
                        format!("cgroup v1 {controller} hierarchy not mounted or not joined{hint}"),
                    );
                    None
                }
            });
        }
        let Some(u) = &self.cg.unified else {
            self.skip(limit, "no unified cgroup directory");
            return Ok(None);
        };
        let dir = u.dir.clone();
        if self.v2_controllers.is_none() {
            self.v2_controllers = Some(fsutil::read_opt(&dir.join("cgroup.controllers"))?);
        }
        let listed = self
            .v2_controllers
            .as_ref()
            .and_then(|c| c.as_ref())
            .map(|c| c.split_whitespace().any(|x| x == controller));
        match listed {
            Some(true) => Ok(Some(dir)),
            Some(false) => {
                let mut reason = format!(
                    "{controller} controller not enabled for {} (not in cgroup.controllers)",
                    dir.display()
                );
                for w in &self.cg.warnings {
                    reason.push_str(&format!("; {w}"));
                }
                self.skip(limit, reason);
                Ok(None)
            }
            None => {
                self.skip(
                    limit,
                    format!(
                        "{} is missing (was create() called?)",
                        dir.join("cgroup.controllers").display()
                    ),
                );
                Ok(None)
            }
        }
    }

    /// Writes `value` to `dir/file` if the file exists; a missing file makes
    /// `limit` unapplied. Returns whether it was written.
    fn write(
        &mut self,
        limit: &str,
        dir: &std::path::Path,
        file: &str,
        value: &str,
    ) -> Result<bool, CgroupError> {
        let path = dir.join(file);
        if !fsutil::exists(&path) {
            self.skip(
                limit,
                format!(
                    "{} does not exist (not supported by this kernel)",
                    path.display()
                ),
            );
            return Ok(false);
        }
        fsutil::write(&path, value)?;
        Ok(true)
    }

    fn memory(&mut self, m: &LinuxMemory) -> Result<(), CgroupError> {
        let limit = m.limit().filter(|&l| l != 0);
        let mut swap = m.swap().filter(|&s| s != 0);
        for (name, v) in [("memory.limit", limit), ("memory.swap", swap)] {
            if let Some(v) = v.filter(|&v| v < -1) {
                return Err(CgroupError::InvalidResources(format!(
                    "{name} {v} is negative"
                )));
            }
        }
        let wanted = limit.is_some()
            || swap.is_some()
            || m.reservation().is_some_and(|r| r != 0)
            || m.swappiness().is_some()
            || m.disable_oom_killer() == Some(true);
        // 0 is "unset" as everywhere in runc's resources.
        if m.kernel().is_some_and(|k| k != 0) {
            self.skip(
                "memory.kernel",
                "kernel memory limits are deprecated and not supported",
            );
        }
        if m.kernel_tcp().is_some_and(|k| k != 0) {
            self.skip(
                "memory.kernelTCP",
                "kernel TCP memory limits are not supported",
            );
        }
        if m.use_hierarchy() == Some(false) {
            self.skip(
                "memory.useHierarchy",
                "hierarchical accounting is always on",
            );
        }
        if !wanted {
            return Ok(());
        }
        let Some(dir) = self.dir("memory", "memory")? else {
            return Ok(());
        };

        if self.v2() {
            if let Some(l) = limit {
                self.write("memory.limit", &dir, "memory.max", &v2_value(l))?;
            }
            let s = swap_to_v2(swap.unwrap_or(0), limit.unwrap_or(0))?;
            // An explicit swap limit is always written, 0 included: that is
            // "swap off" (memory+swap equal to memory), and the kernel's
            // default is "max". An implied "unlimited swap" (limit -1) is
            // dropped quietly on a host without swap accounting.
            let implied = swap.is_none();
            if !implied || (s != 0 && fsutil::exists(&dir.join("memory.swap.max"))) {
                self.write("memory.swap", &dir, "memory.swap.max", &v2_value(s))?;
            }
            if let Some(r) = m.reservation().filter(|&r| r != 0) {
                self.write("memory.reservation", &dir, "memory.low", &v2_value(r))?;
            }
            if m.swappiness().is_some() {
                self.skip(
                    "memory.swappiness",
                    "cgroup v2 has no per-cgroup swappiness",
                );
            }
            if m.disable_oom_killer() == Some(true) {
                self.skip(
                    "memory.disableOOMKiller",
                    "cgroup v2 cannot disable the OOM killer",
                );
            }
            return Ok(());
        }

        // v1 (runc's setMemoryAndSwap): memory.swap is the memory+swap total.
        if limit == Some(-1) && swap.is_none() {
            swap = Some(-1);
        }
        if let (Some(l), Some(s)) = (limit, swap) {
            if l > 0 && s > 0 && s < l {
                return Err(CgroupError::InvalidResources(
                    "memory+swap limit should be >= memory limit".into(),
                ));
            }
        }
        const LIMIT: &str = "memory.limit_in_bytes";
        const MEMSW: &str = "memory.memsw.limit_in_bytes";
        if swap.is_some() && !fsutil::exists(&dir.join(MEMSW)) {
            if m.swap().is_some_and(|s| s != 0) {
                self.skip(
                    "memory.swap",
                    format!(
                        "{} does not exist (swap accounting disabled)",
                        dir.join(MEMSW).display()
                    ),
                );
            }
            swap = None;
        }
        match (limit, swap) {
            (Some(l), Some(s)) => {
                // Order the writes so memory <= memory+swap holds throughout.
                let cur = fsutil::read_u64(&dir.join(LIMIT))?.unwrap_or(u64::MAX);
                if s == -1 || cur < s as u64 {
                    fsutil::write(&dir.join(MEMSW), &s.to_string())?;
                    fsutil::write(&dir.join(LIMIT), &l.to_string())?;
                } else {
                    fsutil::write(&dir.join(LIMIT), &l.to_string())?;
                    fsutil::write(&dir.join(MEMSW), &s.to_string())?;
                }
            }
            (Some(l), None) => {
                self.write("memory.limit", &dir, LIMIT, &l.to_string())?;
            }
            (None, Some(s)) => {
                fsutil::write(&dir.join(MEMSW), &s.to_string())?;
            }
            (None, None) => {}
        }
        if let Some(r) = m.reservation().filter(|&r| r != 0) {
            self.write(
                "memory.reservation",
                &dir,
                "memory.soft_limit_in_bytes",
                &r.to_string(),
            )?;
        }
        if let Some(s) = m.swappiness() {
            if s > 100 {
                return Err(CgroupError::InvalidResources(format!(
                    "memory.swappiness {s} is above 100"
                )));
            }
            self.write(
                "memory.swappiness",
                &dir,
                "memory.swappiness",
                &s.to_string(),
            )?;
        }
        if m.disable_oom_killer() == Some(true) {
            self.write("memory.disableOOMKiller", &dir, "memory.oom_control", "1")?;
        }
        Ok(())
    }

    fn cpu(&mut self, c: &LinuxCpu) -> Result<(), CgroupError> {
        let shares = c.shares().filter(|&s| s != 0);
        let quota = c.quota().filter(|&q| q != 0);
        let period = c.period().filter(|&p| p != 0);
        let wanted = shares.is_some()
            || quota.is_some()
            || period.is_some()
            || c.burst().is_some()
            || c.idle().is_some()
            || c.realtime_runtime().is_some()
            || c.realtime_period().is_some();
        if wanted {
            if let Some(dir) = self.dir("cpu", "cpu")? {
                self.cpu_limits(c, &dir, shares, quota, period)?;
            }
        }
        let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
        let mems = c.mems().as_deref().filter(|s| !s.is_empty());
        if cpus.is_some() || mems.is_some() {
            if let Some(dir) = self.dir("cpuset", "cpu.cpus/cpu.mems")? {
                if let Some(v) = cpus {
                    self.write("cpu.cpus", &dir, "cpuset.cpus", v)?;
                }
                if let Some(v) = mems {
                    self.write("cpu.mems", &dir, "cpuset.mems", v)?;
                }
            }
        }
        Ok(())
    }

    /// Block I/O throttles: v2 `io.max` (one line per device with every
    /// limit of that device), v1 `blkio.throttle.*_device`; weights: see
    /// [`Applier::block_io_weights`].
    fn block_io(&mut self, b: &oci_spec::runtime::LinuxBlockIo) -> Result<(), CgroupError> {
        let lists = [
            (
                "blockIO.throttleReadBpsDevice",
                b.throttle_read_bps_device(),
                "rbps",
                "blkio.throttle.read_bps_device",
            ),
            (
                "blockIO.throttleWriteBpsDevice",
                b.throttle_write_bps_device(),
                "wbps",
                "blkio.throttle.write_bps_device",
            ),
            (
                "blockIO.throttleReadIOPSDevice",
                b.throttle_read_iops_device(),
                "riops",
                "blkio.throttle.read_iops_device",
            ),
            (
                "blockIO.throttleWriteIOPSDevice",
                b.throttle_write_iops_device(),
                "wiops",
                "blkio.throttle.write_iops_device",
            ),
        ];
        let wanted = lists
            .iter()
            .any(|(_, l, _, _)| l.as_ref().is_some_and(|l| !l.is_empty()));
        if wanted {
            let controller = if self.v2() { "io" } else { "blkio" };
            if let Some(dir) = self.dir(controller, "blockIO")? {
                if self.v2() {
                    // io.max takes "MAJ:MIN key=value..." per write; keys not
                    // named keep their current value.
                    let mut per_device: std::collections::BTreeMap<(i64, i64), Vec<String>> =
                        Default::default();
                    for (_, list, key, _) in &lists {
                        for d in list.iter().flatten() {
                            per_device
                                .entry((d.major(), d.minor()))
                                .or_default()
                                .push(format!("{key}={}", d.rate()));
                        }
                    }
                    for ((major, minor), limits) in per_device {
                        let line = format!("{major}:{minor} {}", limits.join(" "));
                        self.write("blockIO", &dir, "io.max", &line)?;
                    }
                } else {
                    for (limit, list, _, file) in &lists {
                        for d in list.iter().flatten() {
                            let line = format!("{}:{} {}", d.major(), d.minor(), d.rate());
                            self.write(limit, &dir, file, &line)?;
                        }
                    }
                }
            }
        }
        self.block_io_weights(b)
    }

    /// Block I/O weights as runc 1.1 sets them (0 means unset). v1: the
    /// CFQ files `blkio.weight`/`blkio.weight_device` where they exist,
    /// else BFQ's `blkio.bfq.weight`/`blkio.bfq.weight_device`; leaf
    /// weights only in CFQ's `blkio.leaf_weight[_device]`. v2:
    /// `io.bfq.weight` where it exists, else `io.weight` with runc's
    /// conversion ([`blkio_weight_to_io`]); per-device weights only through
    /// a per-device `io.bfq.weight` (kernel 5.4), and no leaf weights.
    /// Where runc 1.1 drops a v2 weight silently, Berth reports it unapplied.
    fn block_io_weights(&mut self, b: &oci_spec::runtime::LinuxBlockIo) -> Result<(), CgroupError> {
        let weight = b.weight().filter(|&w| w != 0);
        let leaf = b.leaf_weight().filter(|&w| w != 0);
        let devices = b.weight_device().clone().unwrap_or_default();
        check_weight("blockIO.weight", weight)?;
        check_weight("blockIO.leafWeight", leaf)?;
        for (i, d) in devices.iter().enumerate() {
            check_weight(&format!("blockIO.weightDevice[{i}].weight"), d.weight())?;
            check_weight(
                &format!("blockIO.weightDevice[{i}].leafWeight"),
                d.leaf_weight(),
            )?;
        }
        let per_device = |d: &oci_spec::runtime::LinuxWeightDevice, w: Option<u16>| {
            w.filter(|&w| w != 0)
                .map(|w| format!("{}:{} {w}", d.major(), d.minor()))
        };
        let wanted = weight.is_some()
            || leaf.is_some()
            || devices.iter().any(|d| {
                d.weight().is_some_and(|w| w != 0) || d.leaf_weight().is_some_and(|w| w != 0)
            });
        if !wanted {
            return Ok(());
        }
        let controller = if self.v2() { "io" } else { "blkio" };
        let Some(dir) = self.dir(controller, "blockIO.weight")? else {
            return Ok(());
        };

        if !self.v2() {
            // runc's detectWeightFilenames: CFQ's names, else BFQ's.
            let (wfile, wdfile) = if fsutil::exists(&dir.join("blkio.weight")) {
                ("blkio.weight", "blkio.weight_device")
            } else {
                ("blkio.bfq.weight", "blkio.bfq.weight_device")
            };
            if let Some(w) = weight {
                self.write("blockIO.weight", &dir, wfile, &w.to_string())?;
            }
            if let Some(w) = leaf {
                self.write(
                    "blockIO.leafWeight",
                    &dir,
                    "blkio.leaf_weight",
                    &w.to_string(),
                )?;
            }
            for (i, d) in devices.iter().enumerate() {
                if let Some(line) = per_device(d, d.weight()) {
                    let limit = format!("blockIO.weightDevice[{i}].weight");
                    self.write(&limit, &dir, wdfile, &line)?;
                }
                if let Some(line) = per_device(d, d.leaf_weight()) {
                    let limit = format!("blockIO.weightDevice[{i}].leafWeight");
                    self.write(&limit, &dir, "blkio.leaf_weight_device", &line)?;
                }
            }
            return Ok(());
        }

        const BFQ: &str = "io.bfq.weight";
        let bfq = fsutil::read_opt(&dir.join(BFQ))?;
        if let Some(w) = weight {
            if bfq.is_some() {
                self.write("blockIO.weight", &dir, BFQ, &w.to_string())?;
            } else {
                let v = blkio_weight_to_io(w).to_string();
                self.write("blockIO.weight", &dir, "io.weight", &v)?;
            }
        }
        if leaf.is_some() {
            self.skip("blockIO.leafWeight", "cgroup v2 has no leaf weights");
        }
        // A kernel with per-device BFQ weights shows "default N" (and a
        // line per device) in io.bfq.weight; an older one a bare number.
        let bfq_per_device = bfq
            .as_deref()
            .is_some_and(|s| s.trim().parse::<u64>().is_err());
        for (i, d) in devices.iter().enumerate() {
            if let Some(line) = per_device(d, d.weight()) {
                let limit = format!("blockIO.weightDevice[{i}].weight");
                if bfq_per_device {
                    self.write(&limit, &dir, BFQ, &line)?;
                } else {
                    self.skip(
                        &limit,
                        format!(
                            "per-device weights need BFQ's per-device {} (kernel 5.4 or later with BFQ)",
                            dir.join(BFQ).display()
                        ),
                    );
                }
            }
            if d.leaf_weight().is_some_and(|w| w != 0) {
                self.skip(
                    &format!("blockIO.weightDevice[{i}].leafWeight"),
                    "cgroup v2 has no leaf weights",
                );
            }
        }
        Ok(())
    }

    /// Hugepage limits: v1 `hugetlb.<size>.limit_in_bytes`, v2
    /// `hugetlb.<size>.max` (runc 1.1 sets no `rsvd` limits; neither does
    /// Berth). The page size must be one the cgroup has files for, which
    /// are the sizes the kernel offers.
    fn hugetlb(
        &mut self,
        limits: &[oci_spec::runtime::LinuxHugepageLimit],
    ) -> Result<(), CgroupError> {
        for (i, l) in limits.iter().enumerate() {
            if l.limit() < 0 {
                return Err(CgroupError::InvalidResources(format!(
                    "linux.resources.hugepageLimits[{i}].limit {} is negative",
                    l.limit()
                )));
            }
        }
        let Some(dir) = self.dir("hugetlb", "hugepageLimits")? else {
            return Ok(());
        };
        let suffix = if self.v2() { ".max" } else { ".limit_in_bytes" };
        let sizes = hugetlb_sizes(&dir, suffix)?;
        for (i, l) in limits.iter().enumerate() {
            let size = l.page_size();
            if !sizes.iter().any(|s| s == size) {
                return Err(CgroupError::InvalidResources(format!(
                    "linux.resources.hugepageLimits[{i}].pageSize {size:?} is not a huge page size of this kernel (it offers: {})",
                    if sizes.is_empty() { "none".to_string() } else { sizes.join(", ") }
                )));
            }
            let file = format!("hugetlb.{size}{suffix}");
            let limit = format!("hugepageLimits[{i}]");
            self.write(&limit, &dir, &file, &l.limit().to_string())?;
        }
        Ok(())
    }

    fn cpu_limits(
        &mut self,
        c: &LinuxCpu,
        dir: &std::path::Path,
        shares: Option<u64>,
        quota: Option<i64>,
        period: Option<u64>,
    ) -> Result<(), CgroupError> {
        if self.v2() {
            if let Some(s) = shares {
                let w = shares_to_weight(s).to_string();
                self.write("cpu.shares", dir, "cpu.weight", &w)?;
            }
            if quota.is_some() || period.is_some() {
                let q = match quota {
                    Some(q) => v2_value(q),
                    // Keep the current quota when only the period changes.
                    None => fsutil::read_opt(&dir.join("cpu.max"))?
                        .and_then(|s| s.split_whitespace().next().map(str::to_string))
                        .unwrap_or_else(|| "max".into()),
                };
                let value = match period {
                    Some(p) => format!("{q} {p}"),
                    None => q,
                };
                self.write("cpu.quota/cpu.period", dir, "cpu.max", &value)?;
            }
            if let Some(b) = c.burst() {
                self.write("cpu.burst", dir, "cpu.max.burst", &b.to_string())?;
            }
            if let Some(i) = c.idle() {
                self.write("cpu.idle", dir, "cpu.idle", &i.to_string())?;
            }
            if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
                self.skip(
                    "cpu.realtimeRuntime/cpu.realtimePeriod",
                    "cgroup v2 has no realtime cpu limits",
                );
            }
            return Ok(());
        }

        if let Some(s) = shares {
            self.write("cpu.shares", dir, "cpu.shares", &s.to_string())?;
        }
        // runc: period first; if the kernel refuses it against the current
        // quota (EINVAL), write the quota and then retry the period.
        let mut retry_period = None;
        if let Some(p) = period {
            let path = dir.join("cpu.cfs_period_us");
            if !fsutil::exists(&path) {
                self.skip("cpu.period", format!("{} does not exist", path.display()));
            } else if let Err(e) = fsutil::write(&path, &p.to_string()) {
                if e.errno() != Some(nix::errno::Errno::EINVAL) || quota.is_none() {
                    return Err(e);
                }
                retry_period = Some(p);
            }
        }
        if let Some(q) = quota {
            let q = if q < 0 { -1 } else { q };
            self.write("cpu.quota", dir, "cpu.cfs_quota_us", &q.to_string())?;
            if let Some(p) = retry_period {
                fsutil::write(&dir.join("cpu.cfs_period_us"), &p.to_string())?;
            }
        }
        if let Some(b) = c.burst() {
            self.write("cpu.burst", dir, "cpu.cfs_burst_us", &b.to_string())?;
        }
        if let Some(i) = c.idle() {
            self.write("cpu.idle", dir, "cpu.idle", &i.to_string())?;
        }
        if let Some(p) = c.realtime_period() {
            self.write(
                "cpu.realtimePeriod",
                dir,
                "cpu.rt_period_us",
                &p.to_string(),
            )?;
        }
        if let Some(r) = c.realtime_runtime() {
            let path = dir.join("cpu.rt_runtime_us");
            if !fsutil::exists(&path) {
                self.skip(
                    "cpu.realtimeRuntime",
                    format!(
                        "{} does not exist (no CONFIG_RT_GROUP_SCHED)",
                        path.display()
                    ),
                );
            } else if let Err(e) = fsutil::write(&path, &r.to_string()) {
                if e.errno() != Some(nix::errno::Errno::EINVAL) {
                    return Err(e);
                }
                // The usual cause: the parent's budget is smaller (a new
                // cgroup starts with 0, so an intermediate level such as
                // "berth" has none; runc fails the same way below one).
                let parent = dir.parent().map(|p| p.join("cpu.rt_runtime_us"));
                let budget = parent
                    .as_ref()
                    .and_then(|p| fsutil::read_opt(p).ok().flatten())
                    .map(|v| v.trim().to_string())
                    .unwrap_or_else(|| "unknown".into());
                return Err(CgroupError::InvalidResources(format!(
                    "linux.resources.cpu.realtimeRuntime {r}: the kernel refused it in {} \
                     (a cgroup's realtime runtime must fit in its parent's: {} is {budget})",
                    path.display(),
                    parent.unwrap_or_default().display()
                )));
            }
        }
        Ok(())
    }
}

impl Cgroup {
    /// Applies OCI resources. v1: memory.limit_in_bytes /
    /// memory.memsw.limit_in_bytes (OCI `memory.swap` is memory+swap, written
    /// in runc's order), swappiness, cpu.shares, cpu.cfs_period_us/quota_us,
    /// pids.max, cpuset (if joined). v2: memory.max, memory.swap.max
    /// (= swap - limit), cpu.weight (converted with [`shares_to_weight`]),
    /// cpu.max, pids.max, cpuset.*, and the `unified` map verbatim. Both:
    /// block I/O throttles and weights, hugepage limits (with the blkio and
    /// hugetlb hierarchies joined on v1, see [`super::ResolveOptions`]).
    /// A pids limit <= 0 means "max"; memory/cpu values of 0 mean "unset"
    /// (as in runc).
    ///
    /// Returns the requested limits it could not apply (controller not
    /// available, file missing, no v1/v2 equivalent, unsupported resource
    /// class such as network or rdma; device rules, which
    /// [`Cgroup::apply_devices`] sets), each with a reason. A write that
    /// fails is an error naming the file.
    pub fn apply(&self, res: &LinuxResources) -> Result<Vec<Unapplied>, CgroupError> {
        let mut a = Applier {
            cg: self,
            unapplied: Vec::new(),
            v2_controllers: None,
        };
        if let Some(m) = res.memory() {
            a.memory(m)?;
        }
        if let Some(c) = res.cpu() {
            a.cpu(c)?;
        }
        if let Some(p) = res.pids() {
            if let Some(dir) = a.dir("pids", "pids.limit")? {
                let v = if p.limit() <= 0 {
                    "max".to_string()
                } else {
                    p.limit().to_string()
                };
                a.write("pids.limit", &dir, "pids.max", &v)?;
            }
        }
        if res.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            // They need the container's linux.devices too and are set once,
            // on the new cgroup: see Cgroup::apply_devices.
            a.skip(
                "devices",
                "device rules are applied when the cgroup is created, not by a later update",
            );
        }
        if let Some(b) = res.block_io() {
            a.block_io(b)?;
        }
        if let Some(h) = res.hugepage_limits().as_ref().filter(|h| !h.is_empty()) {
            a.hugetlb(h)?;
        }
        if res.network().is_some() {
            a.skip("network", "network class/priority limits are not supported");
        }
        if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
            a.skip("rdma", "rdma limits are not supported");
        }
        if let Some(map) = res.unified().as_ref().filter(|m| !m.is_empty()) {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for k in keys {
                let name = format!("unified.{k}");
                if !a.v2() {
                    a.skip(&name, "unified resources need cgroup v2 mode");
                    continue;
                }
                if k.contains('/') || k.starts_with('.') || k.starts_with("cgroup.") {
                    return Err(CgroupError::InvalidResources(format!(
                        "unified key {k:?} is not a controller file"
                    )));
                }
                if let Some(u) = &self.unified {
                    let dir = u.dir.clone();
                    a.write(&name, &dir, k, &map[k])?;
                }
            }
        }
        Ok(a.unapplied)
    }
}

#[cfg(test)]
mod weight_tests {
    use super::*;

    #[test]
    fn blkio_weight_converts_as_runc() {
        // runc's ConvertBlkIOToIOWeightValue at the ends and in between.
        assert_eq!(blkio_weight_to_io(0), 0);
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(300), 2930);
        assert_eq!(blkio_weight_to_io(500), 4950);
        assert_eq!(blkio_weight_to_io(1000), 10000);
        assert!(check_weight("blockIO.weight", Some(9)).is_err());
        assert!(check_weight("blockIO.weight", Some(0)).is_ok());
        assert!(check_weight("blockIO.weight", Some(1000)).is_ok());
    }
}
