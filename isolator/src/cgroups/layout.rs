//! Detecting which cgroup hierarchies are mounted and where the caller's own
//! cgroup is in each of them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::CgroupError;

/// How cgroups are mounted on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupMode {
    /// Only the unified (cgroup2) hierarchy carries controllers.
    V2,
    /// v1 controllers plus a cgroup2 mount (used for membership, kill, freeze).
    Hybrid,
    /// v1 controllers only.
    V1,
}

/// One mounted hierarchy and the caller's place in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    /// Controllers of a v1 hierarchy as listed in `/proc/self/cgroup`
    /// (sorted, e.g. `["cpu", "cpuacct"]` or `["name=systemd"]`); empty for
    /// the unified hierarchy.
    pub controllers: Vec<String>,
    /// Where the hierarchy is mounted (e.g. `/sys/fs/cgroup/memory`).
    pub mount_point: PathBuf,
    /// The mount's root inside the hierarchy (field 4 of mountinfo, usually `/`).
    pub mount_root: String,
    /// The caller's cgroup path in this hierarchy from `/proc/self/cgroup`.
    pub own_path: String,
    /// The caller's cgroup as a directory: `mount_point` + (`own_path`
    /// without the `mount_root` prefix). `None` if the own cgroup is not
    /// visible through the mount.
    pub own_dir: Option<PathBuf>,
}

impl Hierarchy {
    /// Whether this v1 hierarchy carries `controller`.
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// Maps a cgroup path of this hierarchy (as in `/proc/<pid>/cgroup`) to
    /// its directory, if it is visible through the mount.
    pub fn dir_of(&self, cgroup_path: &str) -> Option<PathBuf> {
        let rest = strip_root(&self.mount_root, cgroup_path)?;
        let mut dir = self.mount_point.clone();
        for c in rest.split('/').filter(|c| !c.is_empty()) {
            dir.push(c);
        }
        Some(dir)
    }
}

/// What is mounted: detected from mountinfo + `/proc/self/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    mode: CgroupMode,
    v1: Vec<Hierarchy>,
    unified: Option<Hierarchy>,
}

impl Layout {
    /// Detects the layout of the real host from `/proc/self/mountinfo` and
    /// `/proc/self/cgroup`.
    pub fn detect() -> Result<Layout, CgroupError> {
        let mi = super::fsutil::read(Path::new("/proc/self/mountinfo"))?;
        let cg = super::fsutil::read(Path::new("/proc/self/cgroup"))?;
        Layout::from_parts(&mi, &cg)
    }

    /// Builds a layout from the texts of a mountinfo file and of a
    /// `/proc/<pid>/cgroup` file. Mount points may point anywhere (tests use a
    /// tempdir). Does not touch the filesystem.
    pub fn from_parts(mountinfo: &str, self_cgroup: &str) -> Result<Layout, CgroupError> {
        // hierarchy id -> (controllers, path) from /proc/self/cgroup.
        let mut own_v1: Vec<(Vec<String>, String)> = Vec::new();
        let mut own_unified: Option<String> = None;
        for line in self_cgroup.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(CgroupError::Layout(format!(
                    "malformed /proc/self/cgroup line {line:?}"
                )));
            };
            if id == "0" && ctrls.is_empty() {
                own_unified = Some(path.to_string());
            } else if !ctrls.is_empty() {
                let mut c: Vec<String> = ctrls.split(',').map(str::to_string).collect();
                c.sort();
                own_v1.push((c, path.to_string()));
            }
        }

        let mut v1: Vec<Hierarchy> = Vec::new();
        let mut unified: Option<Hierarchy> = None;
        // The same parser inspect uses for /proc/PID/mountinfo.
        let mounts = crate::procinfo::parse_mountinfo(mountinfo)
            .map_err(|e| CgroupError::Layout(e.to_string()))?;
        for m in &mounts {
            match m.fs_type.as_str() {
                "cgroup2" => {
                    let Some(own) = &own_unified else { continue };
                    let h = hierarchy(Vec::new(), m, own);
                    if better(unified.as_ref(), &h) {
                        unified = Some(h);
                    }
                }
                "cgroup" => {
                    let opts = &m.super_options;
                    let Some((ctrls, own)) = own_v1
                        .iter()
                        .find(|(c, _)| c.iter().all(|x| opts.contains(x)))
                    else {
                        continue;
                    };
                    let h = hierarchy(ctrls.clone(), m, own);
                    match v1.iter_mut().find(|x| x.controllers == h.controllers) {
                        Some(existing) => {
                            if better(Some(existing), &h) {
                                *existing = h;
                            }
                        }
                        None => v1.push(h),
                    }
                }
                _ => {}
            }
        }

        let has_v1_controllers = v1
            .iter()
            .any(|h| h.controllers.iter().any(|c| !c.starts_with("name=")));
        let mode = match (has_v1_controllers, unified.is_some()) {
            (true, true) => CgroupMode::Hybrid,
            (true, false) => CgroupMode::V1,
            (false, true) => CgroupMode::V2,
            (false, false) => {
                return Err(CgroupError::Layout(
                    "no cgroup filesystem matching /proc/self/cgroup is mounted".into(),
                ))
            }
        };
        Ok(Layout { mode, v1, unified })
    }

    /// The detected mode.
    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// The v1 hierarchies (all mounted ones, including unused ones like
    /// `name=systemd`).
    pub fn v1_hierarchies(&self) -> &[Hierarchy] {
        &self.v1
    }

    /// The unified (cgroup2) hierarchy, if mounted.
    pub fn unified(&self) -> Option<&Hierarchy> {
        self.unified.as_ref()
    }

    /// The v1 hierarchy carrying `controller`.
    pub fn v1_hierarchy(&self, controller: &str) -> Option<&Hierarchy> {
        self.v1.iter().find(|h| h.has(controller))
    }
}

/// `path` relative to `root` if `path` is `root` or below it.
fn strip_root<'a>(root: &str, path: &'a str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return Some(path.trim_start_matches('/'));
    }
    let rest = path.strip_prefix(root)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

fn hierarchy(
    controllers: Vec<String>,
    m: &crate::procinfo::MountEntry,
    own_path: &str,
) -> Hierarchy {
    let mut h = Hierarchy {
        controllers,
        mount_point: PathBuf::from(&m.mount_point),
        mount_root: m.root.clone(),
        own_path: own_path.to_string(),
        own_dir: None,
    };
    h.own_dir = h.dir_of(own_path);
    h
}

/// Whether `new` is a better mount of the same hierarchy than `old`: one
/// through which the own cgroup is visible wins, then the first one found.
fn better(old: Option<&Hierarchy>, new: &Hierarchy) -> bool {
    match old {
        None => true,
        Some(o) => o.own_dir.is_none() && new.own_dir.is_some(),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn cgroups_unescape_and_strip() {
        let unescape = |field: &str| {
            let line = format!("30 1 0:1 {field} /m rw - cgroup cgroup rw,cpu\n");
            crate::procinfo::parse_mountinfo(&line).unwrap()[0]
                .root
                .clone()
        };
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"/a\0"), r"/a\0");
        assert_eq!(strip_root("/", "/x/y"), Some("x/y"));
        assert_eq!(strip_root("/x", "/x/y"), Some("y"));
        assert_eq!(strip_root("/x", "/x"), Some(""));
        assert_eq!(strip_root("/x", "/xy"), None);
    }
}
