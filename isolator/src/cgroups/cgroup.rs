//! One container's cgroup across hierarchies: resolve, create, membership,
//! kill/freeze and destroy.

use std::io;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::error::CgroupError;
use super::fsutil;
use super::layout::{CgroupMode, Layout};

/// v1 controllers Berth puts containers into (cpuset only on request).
const V1_CONTROLLERS: &[&str] = &["memory", "cpu", "cpuacct", "pids", "freezer"];
/// v2 controllers enabled in `cgroup.subtree_control` when available.
const V2_CONTROLLERS: &[&str] = &["cpu", "memory", "pids", "io", "cpuset"];

/// How long [`Cgroup::kill_all`] and [`Cgroup::freeze`] wait for the kernel.
const WAIT: Duration = Duration::from_secs(2);
/// How long [`Cgroup::destroy`] retries `EBUSY` on a leaf.
const RMDIR_WAIT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(10);

/// Options for [`Cgroup::resolve_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolveOptions {
    /// Also join the v1 cpuset hierarchy (needed only when cpuset limits are
    /// requested; v1 cpuset needs `cpuset.cpus`/`mems` copied into every
    /// created level, which is why it is left out by default).
    pub cpuset: bool,
    /// Also join the v1 blkio hierarchy (only for block I/O weights and
    /// throttles).
    pub blkio: bool,
    /// Also join the v1 hugetlb hierarchy, or enable the v2 hugetlb
    /// controller (only for hugepage limits).
    pub hugetlb: bool,
    /// Also join the v1 devices hierarchy (only for device rules, which
    /// [`Cgroup::apply_devices`] writes there).
    pub devices: bool,
}

impl ResolveOptions {
    /// The options `res` needs (cpuset when `cpu.cpus` or `cpu.mems` is set,
    /// blkio for any block I/O weight or throttle, hugetlb for hugepage
    /// limits).
    pub fn for_resources(res: &oci_spec::runtime::LinuxResources) -> ResolveOptions {
        let cpuset = res.cpu().as_ref().is_some_and(|c| {
            c.cpus().as_deref().is_some_and(|s| !s.is_empty())
                || c.mems().as_deref().is_some_and(|s| !s.is_empty())
        });
        let blkio = res.block_io().as_ref().is_some_and(|b| {
            b.weight().is_some()
                || b.leaf_weight().is_some()
                || b.weight_device().as_ref().is_some_and(|w| !w.is_empty())
                || [
                    b.throttle_read_bps_device(),
                    b.throttle_write_bps_device(),
                    b.throttle_read_iops_device(),
                    b.throttle_write_iops_device(),
                ]
                .iter()
                .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
        });
        let devices = res.devices().as_ref().is_some_and(|d| !d.is_empty());
        let hugetlb = res
            .hugepage_limits()
            .as_ref()
            .is_some_and(|h| !h.is_empty());
        ResolveOptions {
            cpuset,
            blkio,
            hugetlb,
            devices,
        }
    }
}

/// The cgroup's directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HierarchyDir {
    /// v1 controllers of the hierarchy (empty for the unified one).
    pub controllers: Vec<String>,
    /// Directory the path was resolved under: the caller's own cgroup for a
    /// relative path, the mount point for an absolute one.
    pub base: PathBuf,
    /// The container's cgroup directory (the leaf).
    pub dir: PathBuf,
    /// Directories `create()` made, outermost first. `destroy()` removes
    /// exactly these.
    #[serde(default)]
    pub created: Vec<PathBuf>,
}

impl HierarchyDir {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// Directories from the first level below `base` down to `dir`.
    /// Empty if `dir` is not strictly below `base` (corrupt state).
    fn levels(&self) -> Vec<PathBuf> {
        if self.dir == self.base || !self.dir.starts_with(&self.base) {
            return Vec::new();
        }
        let mut v: Vec<PathBuf> = self
            .dir
            .ancestors()
            .take_while(|a| *a != self.base)
            .map(Path::to_path_buf)
            .collect();
        v.reverse();
        v
    }
}

/// Something `create()` could not do that the launcher should show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupWarning {
    /// The kernel refused to enable controllers with `EBUSY` because the
    /// cgroup has processes of its own (cgroup v2 no-internal-process rule).
    /// Berth does not move processes to work around it; limits needing these
    /// controllers are reported by `apply()` as unapplied.
    InternalProcesses {
        file: PathBuf,
        controllers: Vec<String>,
    },
    /// Enabling a controller failed for another reason.
    ControllerNotEnabled {
        file: PathBuf,
        controller: String,
        error: String,
    },
}

impl std::fmt::Display for CgroupWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CgroupWarning::InternalProcesses { file, controllers } => write!(
                f,
                "cannot enable {} in {}: the cgroup has processes of its own \
                 (cgroup v2 no-internal-process rule); run berth from a leaf cgroup",
                controllers.join(" "),
                file.display()
            ),
            CgroupWarning::ControllerNotEnabled {
                file,
                controller,
                error,
            } => write!(
                f,
                "cannot enable {controller} in {}: {error}",
                file.display()
            ),
        }
    }
}

/// One container's cgroup across hierarchies. Serializable so the launcher
/// can store it in the container's state and rebuild it later (inspect, rm)
/// in another process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    pub mode: CgroupMode,
    /// The path as given to `resolve`.
    pub path: String,
    /// v1 hierarchies used (empty in V2 mode). A comounted hierarchy
    /// (`cpu,cpuacct`) appears once.
    #[serde(default)]
    pub v1: Vec<HierarchyDir>,
    /// The unified directory: all controllers in V2 mode, membership/kill/
    /// freeze only in Hybrid mode, `None` in V1 mode.
    #[serde(default)]
    pub unified: Option<HierarchyDir>,
    /// Problems `create()` met that do not make it fail.
    #[serde(default)]
    pub warnings: Vec<CgroupWarning>,
    /// v2 controllers `create()` enables beyond the default ones because
    /// the resources ask for them (hugetlb): enabled for every container,
    /// they would charge each one's hugepage use for a limit few set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub v2_extra: Vec<String>,
}

impl Cgroup {
    /// Resolves `path` without touching the filesystem: relative (e.g.
    /// `berth/<id>`) => under the caller's own cgroup in each hierarchy (like
    /// runc's relative cgroupsPath); absolute (`/a/b`) => from the hierarchy
    /// root (only when a user asks for it explicitly). Rejects empty paths and
    /// `.`/`..` components.
    pub fn resolve(layout: &Layout, path: &str) -> Result<Cgroup, CgroupError> {
        Cgroup::resolve_with(layout, path, ResolveOptions::default())
    }

    /// [`Cgroup::resolve`] with options (e.g. joining the v1 cpuset hierarchy).
    pub fn resolve_with(
        layout: &Layout,
        path: &str,
        opts: ResolveOptions,
    ) -> Result<Cgroup, CgroupError> {
        let invalid = |reason: &str| CgroupError::InvalidPath {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let absolute = path.starts_with('/');
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        if comps.is_empty() {
            return Err(invalid("empty path"));
        }
        for c in &comps {
            if *c == ".." || *c == "." {
                return Err(invalid("\".\" and \"..\" components are not allowed"));
            }
            if c.contains('\0') || c.contains('\n') {
                return Err(invalid("NUL and newline are not allowed"));
            }
        }

        let place = |h: &super::layout::Hierarchy| -> Result<HierarchyDir, CgroupError> {
            let (base, rel): (PathBuf, Vec<&str>) = if absolute {
                // From the hierarchy root: strip the mount root if the mount
                // shows only part of the hierarchy.
                let root: Vec<&str> = h.mount_root.split('/').filter(|c| !c.is_empty()).collect();
                if comps.len() <= root.len() || comps[..root.len()] != root[..] {
                    return Err(invalid(&format!(
                        "not below the root {} of the mount {}",
                        h.mount_root,
                        h.mount_point.display()
                    )));
                }
                (h.mount_point.clone(), comps[root.len()..].to_vec())
            } else {
                let base = h.own_dir.clone().ok_or_else(|| {
                    CgroupError::Layout(format!(
                        "own cgroup {} is not visible through the mount {} (root {})",
                        h.own_path,
                        h.mount_point.display(),
                        h.mount_root
                    ))
                })?;
                (base, comps.clone())
            };
            let mut dir = base.clone();
            dir.extend(rel);
            Ok(HierarchyDir {
                controllers: h.controllers.clone(),
                base,
                dir,
                created: Vec::new(),
            })
        };

        let mode = layout.mode();
        let mut v1 = Vec::new();
        if mode != CgroupMode::V2 {
            for h in layout.v1_hierarchies() {
                let wanted = V1_CONTROLLERS.iter().any(|c| h.has(c))
                    || (opts.cpuset && h.has("cpuset"))
                    || (opts.blkio && h.has("blkio"))
                    || (opts.hugetlb && h.has("hugetlb"))
                    || (opts.devices && h.has("devices"));
                if wanted {
                    v1.push(place(h)?);
                }
            }
        }
        let unified = match (mode, layout.unified()) {
            (CgroupMode::V1, _) | (_, None) => None,
            (_, Some(h)) => Some(place(h)?),
        };
        let v2_extra = if opts.hugetlb && mode == CgroupMode::V2 {
            vec!["hugetlb".to_string()]
        } else {
            Vec::new()
        };
        Ok(Cgroup {
            mode,
            path: path.to_string(),
            v1,
            unified,
            warnings: Vec::new(),
            v2_extra,
        })
    }

    fn all(&self) -> impl Iterator<Item = &HierarchyDir> {
        self.v1.iter().chain(self.unified.iter())
    }

    /// The leaf directories, v1 first, then the unified one.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.all().map(|h| h.dir.clone()).collect()
    }

    /// The main path to show users: the unified dir in V2 mode, the memory
    /// dir otherwise (the unified dir if there is no memory hierarchy).
    pub fn display_path(&self) -> String {
        let memory = self.v1.iter().find(|h| h.has("memory"));
        let chosen = match self.mode {
            CgroupMode::V2 => self.unified.as_ref(),
            _ => memory.or(self.unified.as_ref()).or(self.v1.first()),
        };
        chosen
            .map(|h| h.dir.display().to_string())
            .unwrap_or_default()
    }

    /// The v1 directory carrying `controller`.
    pub(crate) fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|h| h.has(controller))
            .map(|h| h.dir.as_path())
    }

    /// `mkdir -p` in every hierarchy used, remembering which directories were
    /// created (serialized, used by `destroy()`). Fails with `AlreadyExists`
    /// if a leaf exists; on any failure the directories made by this call are
    /// removed again. In V2 mode, enables the available ones of cpu, memory,
    /// pids, io, cpuset (and hugetlb when resolved with
    /// [`ResolveOptions::hugetlb`]) in `cgroup.subtree_control` of the caller's own cgroup
    /// and of every level above the leaf; an `EBUSY` refusal there
    /// (no-internal-process rule) is recorded in `warnings` (see
    /// [`CgroupWarning`]), not worked around. In v1 cpuset, copies the
    /// parent's `cpuset.cpus`/`cpuset.mems` into each created level.
    pub fn create(&mut self) -> Result<(), CgroupError> {
        for h in self.all() {
            if fsutil::exists(&h.dir) {
                return Err(CgroupError::AlreadyExists {
                    path: h.dir.clone(),
                });
            }
        }
        let res = self.mkdirs();
        if res.is_err() {
            for h in self.v1.iter_mut().chain(self.unified.iter_mut()) {
                for d in h.created.iter().rev() {
                    let _ = std::fs::remove_dir(d);
                }
                h.created.clear();
            }
            return res;
        }
        if self.mode == CgroupMode::V2 {
            if let Some(u) = &self.unified {
                let mut parents = vec![u.base.clone()];
                let levels = u.levels();
                parents.extend(levels[..levels.len().saturating_sub(1)].iter().cloned());
                self.warnings = enable_controllers(&parents, &self.v2_extra);
            }
        }
        Ok(())
    }

    fn mkdirs(&mut self) -> Result<(), CgroupError> {
        for h in self.v1.iter_mut().chain(self.unified.iter_mut()) {
            let cpuset = h.has("cpuset");
            // A concurrent `destroy()` of another container may remove a
            // shared parent the moment it is empty (between our mkdir of
            // the parent and of the leaf): start over when that happens.
            let mut attempts = 0;
            'levels: loop {
                attempts += 1;
                for level in h.levels() {
                    match std::fs::create_dir(&level) {
                        Ok(()) => {
                            if !h.created.contains(&level) {
                                h.created.push(level.clone());
                            }
                            if cpuset {
                                copy_cpuset_from_parent(&level)?;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            if level == h.dir {
                                return Err(CgroupError::AlreadyExists { path: level });
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 5 => {
                            continue 'levels;
                        }
                        Err(source) => {
                            return Err(CgroupError::Mkdir {
                                path: level,
                                source,
                            })
                        }
                    }
                }
                break;
            }
        }
        Ok(())
    }

    /// Puts process `pid` into this cgroup in every hierarchy (writes it to
    /// each `cgroup.procs`).
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        for h in self.all() {
            fsutil::write(&h.dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The cgroup v2 directory (pure v2, or the unified hierarchy of a
    /// hybrid host) a process can be created in directly with clone3's
    /// CLONE_INTO_CGROUP.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.unified.as_ref().map(|u| u.dir.as_path())
    }

    /// Moves the calling thread into every v1 hierarchy by writing "0" to
    /// `tasks`. For a single-threaded process that is the whole process,
    /// and unlike a write to `cgroup.procs` it does not take the kernel's
    /// global threadgroup lock (whose write side waits for an RCU grace
    /// period, 10-20 ms). The container's init calls this on itself.
    pub fn join_self_v1(&self) -> Result<(), CgroupError> {
        for h in &self.v1 {
            fsutil::write(&h.dir.join("tasks"), "0")?;
        }
        Ok(())
    }

    /// Moves `pid` into the unified (v2) directory only; the slow path for
    /// when it could not be created there.
    pub fn add_pid_unified(&self, pid: i32) -> Result<(), CgroupError> {
        if let Some(u) = &self.unified {
            fsutil::write(&u.dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The directory whose `cgroup.procs` is authoritative for membership.
    fn procs_dir(&self) -> Option<&Path> {
        if let Some(u) = &self.unified {
            return Some(&u.dir);
        }
        ["pids", "freezer", "memory"]
            .iter()
            .find_map(|c| self.v1_dir(c))
            .or(self.v1.first().map(|h| h.dir.as_path()))
    }

    /// Pids in the cgroup (from the unified dir in hybrid/v2, else the v1
    /// pids/freezer/memory dir). An already removed cgroup has no pids.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let Some(dir) = self.procs_dir() else {
            return Ok(Vec::new());
        };
        let file = dir.join("cgroup.procs");
        match fsutil::read_opt(&file)? {
            None => Ok(Vec::new()),
            Some(text) => fsutil::parse_pids(&file, &text),
        }
    }

    /// Kills every process in the cgroup and waits (~2 s at most) until it is
    /// empty. Uses `cgroup.kill` in the unified dir if it exists; otherwise
    /// (pure v1) freezes via the v1 freezer, SIGKILLs every pid in
    /// `cgroup.procs`, thaws, and repeats until empty. Ok for a removed cgroup.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + WAIT;
        if let Some(u) = &self.unified {
            let killf = u.dir.join("cgroup.kill");
            if fsutil::exists(&killf) {
                fsutil::write(&killf, "1")?;
                loop {
                    if self.pids()?.is_empty() {
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        return Err(CgroupError::Timeout {
                            what: "all processes to exit after cgroup.kill".into(),
                            path: u.dir.clone(),
                        });
                    }
                    sleep(POLL);
                }
            }
        }
        let Some(dir) = self.procs_dir().map(Path::to_path_buf) else {
            return Ok(());
        };
        let freezer = self.v1_dir("freezer").map(|d| d.join("freezer.state"));
        let freezer = freezer.filter(|f| fsutil::exists(f));
        loop {
            if let Some(f) = &freezer {
                // Best effort: stop forks while we collect pids; a partial
                // freeze is fine because we thaw right after killing.
                fsutil::write(f, "FROZEN")?;
                let until = Instant::now() + Duration::from_millis(200);
                while fsutil::read(f)?.trim() != "FROZEN" && Instant::now() < until {
                    sleep(Duration::from_millis(2));
                }
            }
            let pids = self.pids();
            let mut result = Ok(());
            if let Ok(pids) = &pids {
                for &pid in pids {
                    match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                        Ok(()) | Err(Errno::ESRCH) => {}
                        Err(source) => {
                            result = Err(CgroupError::Kill {
                                pid,
                                dir: dir.clone(),
                                source,
                            })
                        }
                    }
                }
            }
            if let Some(f) = &freezer {
                fsutil::write(f, "THAWED")?;
            }
            let pids = pids?;
            result?;
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CgroupError::Timeout {
                    what: format!("processes {pids:?} to exit"),
                    path: dir,
                });
            }
            sleep(POLL);
        }
    }

    /// Freezes the cgroup and waits (~2 s at most) until the kernel reports
    /// it frozen: unified dir `cgroup.freeze` = 1 and `frozen 1` in
    /// `cgroup.events` if available, else v1 `freezer.state` = FROZEN.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + WAIT;
        if let Some(u) = &self.unified {
            let f = u.dir.join("cgroup.freeze");
            if fsutil::exists(&f) {
                fsutil::write(&f, "1")?;
                let events = u.dir.join("cgroup.events");
                loop {
                    if fsutil::read_key(&events, "frozen")? == Some(1) {
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        let _ = fsutil::write(&f, "0");
                        return Err(CgroupError::Timeout {
                            what: "\"frozen 1\" in cgroup.events".into(),
                            path: u.dir.clone(),
                        });
                    }
                    sleep(POLL);
                }
            }
        }
        let Some(dir) = self.v1_dir("freezer") else {
            return Err(CgroupError::Unsupported(format!(
                "no freezer for cgroup {}: neither cgroup.freeze nor a v1 freezer hierarchy",
                self.display_path()
            )));
        };
        let f = dir.join("freezer.state");
        loop {
            // Re-writing FROZEN makes the kernel retry tasks that were busy.
            fsutil::write(&f, "FROZEN")?;
            if fsutil::read(&f)?.trim() == "FROZEN" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = fsutil::write(&f, "THAWED");
                return Err(CgroupError::Timeout {
                    what: "freezer.state FROZEN".into(),
                    path: dir.to_path_buf(),
                });
            }
            sleep(POLL);
        }
    }

    /// Whether the cgroup is frozen (or being frozen): the unified dir's
    /// `cgroup.freeze` is 1 where it exists (what `freeze` writes first),
    /// else the v1 `freezer.state` is not THAWED.
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        if let Some(u) = &self.unified {
            let f = u.dir.join("cgroup.freeze");
            if let Some(v) = fsutil::read_opt(&f)? {
                return Ok(v.trim() == "1");
            }
        }
        match self.v1_dir("freezer") {
            Some(dir) => {
                Ok(fsutil::read_opt(&dir.join("freezer.state"))?
                    .is_some_and(|s| s.trim() != "THAWED"))
            }
            None => Ok(false),
        }
    }

    /// Thaws the cgroup: `cgroup.freeze` = 0 in the unified dir and
    /// `freezer.state` = THAWED in the v1 freezer, whichever exist.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        let mut done = false;
        if let Some(u) = &self.unified {
            let f = u.dir.join("cgroup.freeze");
            if fsutil::exists(&f) {
                fsutil::write(&f, "0")?;
                done = true;
            }
        }
        if let Some(dir) = self.v1_dir("freezer") {
            fsutil::write(&dir.join("freezer.state"), "THAWED")?;
            done = true;
        }
        if done {
            Ok(())
        } else {
            Err(CgroupError::Unsupported(format!(
                "no freezer for cgroup {}",
                self.display_path()
            )))
        }
    }

    /// Enforces a device policy on the freshly created cgroup: in the v1
    /// devices hierarchy when it was joined (V1 and hybrid hosts, resolved
    /// with [`ResolveOptions::devices`]), else with an eBPF device filter
    /// attached to the unified directory (pure v2; also a hybrid host
    /// without a devices hierarchy, since cgroup BPF needs no controller).
    /// Any failure is an error: a container must not get devices its
    /// config denies.
    pub fn apply_devices(&self, policy: &super::DevicePolicy) -> Result<(), CgroupError> {
        let wrap = |e: CgroupError| CgroupError::Devices(Box::new(e));
        if self.mode != CgroupMode::V2 {
            if let Some(dir) = self.v1_dir("devices") {
                return policy.apply_v1(dir).map_err(wrap);
            }
        }
        match &self.unified {
            Some(u) => policy.attach_bpf(&u.dir).map_err(wrap),
            None => Err(wrap(CgroupError::Unsupported(format!(
                "no devices hierarchy joined and no cgroup2 directory for cgroup {}",
                self.path
            )))),
        }
    }

    /// Removes the directories this `Cgroup` created, leaf first, in every
    /// hierarchy. Idempotent (already removed is fine). `EBUSY` on a leaf
    /// (processes still exiting) is retried for ~1 s, then reported. A
    /// created intermediate directory (e.g. `berth`) is removed only if it is
    /// empty; one still holding other cgroups is left alone silently. Never
    /// removes a directory it did not create; refuses `created` entries that
    /// are not the leaf or its ancestors below `base` (corrupt state). Errors
    /// from all hierarchies are collected.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let mut errors = Vec::new();
        // Below the caller's own cgroup (a relative path) every level is
        // Berth's namespace, so an empty shared parent ("berth") goes with
        // the last container, whoever created it. Under an absolute path
        // only what this cgroup created is removed.
        let relative = !self.path.starts_with('/');
        for h in self.all() {
            if let Err(e) = destroy_one(h, relative) {
                errors.push(e);
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(CgroupError::Multiple(errors)),
        }
    }
}

fn destroy_one(h: &HierarchyDir, relative: bool) -> Result<(), CgroupError> {
    let levels = h.levels();
    for c in &h.created {
        if !levels.contains(c) {
            return Err(CgroupError::InvalidPath {
                path: c.display().to_string(),
                reason: format!(
                    "recorded as created but not between {} and {}; refusing to remove it",
                    h.base.display(),
                    h.dir.display()
                ),
            });
        }
    }
    let mut created = h.created.clone();
    created.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for d in created {
        let leaf = d == h.dir;
        let deadline = Instant::now() + RMDIR_WAIT;
        loop {
            match std::fs::remove_dir(&d) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e)
                    if !leaf
                        && matches!(
                            Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                            Errno::EBUSY | Errno::ENOTEMPTY | Errno::EEXIST
                        ) =>
                {
                    // Shared parent still holding other cgroups: leave it.
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    sleep(Duration::from_millis(20));
                }
                Err(source) => return Err(CgroupError::Rmdir { path: d, source }),
            }
        }
    }
    if relative {
        let levels = h.levels();
        for parent in levels.iter().rev().skip(1) {
            // Not empty (other containers), already gone, or busy: stop.
            if std::fs::remove_dir(parent).is_err() {
                break;
            }
        }
    }
    Ok(())
}

/// Copies `cpuset.cpus` and `cpuset.mems` from the parent of the freshly
/// created v1 cpuset directory `dir` if they are empty there (the kernel
/// refuses tasks in a cpuset without cpus/mems). Missing files are skipped.
pub(crate) fn copy_cpuset_from_parent(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let Some(cur) = fsutil::read_opt(&dir.join(f))? else {
            continue;
        };
        if !cur.trim().is_empty() {
            continue;
        }
        if let Some(v) = fsutil::read_opt(&parent.join(f))? {
            let v = v.trim();
            if !v.is_empty() {
                fsutil::write(&dir.join(f), v)?;
            }
        }
    }
    Ok(())
}

/// Enables the available [`V2_CONTROLLERS`] and `extra` in
/// `cgroup.subtree_control` of each of `parents` (outermost first). Returns
/// the warnings; stops at the first `EBUSY` since deeper levels cannot get
/// the controllers either.
fn enable_controllers(parents: &[PathBuf], extra: &[String]) -> Vec<CgroupWarning> {
    let mut warnings = Vec::new();
    for p in parents {
        let available = match fsutil::read_opt(&p.join("cgroup.controllers")) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                warnings.push(CgroupWarning::ControllerNotEnabled {
                    file: p.join("cgroup.controllers"),
                    controller: "*".into(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        let file = p.join("cgroup.subtree_control");
        let enabled = fsutil::read_opt(&file).ok().flatten().unwrap_or_default();
        let todo: Vec<&str> = V2_CONTROLLERS
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
            .filter(|c| available.split_whitespace().any(|a| a == *c))
            .filter(|c| !enabled.split_whitespace().any(|a| a == *c))
            .collect();
        if todo.is_empty() {
            continue;
        }
        let value = todo
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        match fsutil::write(&file, &value) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(Errno::EBUSY) => {
                warnings.push(CgroupWarning::InternalProcesses {
                    file,
                    controllers: todo.iter().map(|c| c.to_string()).collect(),
                });
                break;
            }
            Err(_) => {
                // One controller may be refused (e.g. cpu with RT tasks):
                // enable the others one by one.
                for c in todo {
                    if let Err(e) = fsutil::write(&file, &format!("+{c}")) {
                        warnings.push(CgroupWarning::ControllerNotEnabled {
                            file: file.clone(),
                            controller: c.to_string(),
                            error: e.to_string(),
                        });
                    }
                }
            }
        }
    }
    warnings
}

/// What a "cgroup" mount inside the container shows (see
/// [`crate::rootfs::CgroupView`]): on a v1 or hybrid host, for every
/// mounted v1 hierarchy, the container's directory when `cg` joined it,
/// else the caller's own cgroup there (the container's init is born in
/// it); the unified hierarchy as `unified` on a hybrid host. A hierarchy
/// whose own cgroup the mount does not show is left out.
pub fn mount_view(layout: &Layout, cg: Option<&Cgroup>) -> crate::rootfs::CgroupView {
    let mut view = crate::rootfs::CgroupView {
        unified: cg
            .and_then(|c| c.unified_dir().map(Path::to_path_buf))
            .or_else(|| layout.unified().and_then(|u| u.own_dir.clone())),
        ..Default::default()
    };
    if layout.mode() == CgroupMode::V2 {
        return view;
    }
    for h in layout.v1_hierarchies() {
        let Some(name) = h.mount_point.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let joined = cg
            .and_then(|c| c.v1.iter().find(|d| d.controllers == h.controllers))
            .map(|d| d.dir.clone());
        let Some(source) = joined.or_else(|| h.own_dir.clone()) else {
            continue;
        };
        if view.v1.iter().any(|(n, _)| n == name) {
            continue;
        }
        view.v1.push((name.to_string(), source));
        if h.controllers.len() > 1 {
            for c in &h.controllers {
                if c != name && !c.starts_with("name=") {
                    view.links.push((c.clone(), name.to_string()));
                }
            }
        }
    }
    if let (CgroupMode::Hybrid, Some(u)) = (layout.mode(), &view.unified) {
        if !view.v1.iter().any(|(n, _)| n == "unified") {
            view.v1.push(("unified".to_string(), u.clone()));
        }
    }
    view
}
