//! cgroup v2 and v1 (hybrid host) management. See the module docs.
//!
//! Berth's launcher uses this module to put a container into a cgroup, apply
//! the OCI `linux.resources` limits, read usage back for `inspect`/`ps`, kill
//! or freeze everything in the container, and remove the cgroup afterwards.
//!
//! # Design
//!
//! * [`Layout`] describes what is mounted, detected at run time from
//!   `/proc/self/mountinfo` and `/proc/self/cgroup`. Both texts are
//!   parameters of [`Layout::from_parts`], and mount points in them may point
//!   anywhere (unit tests use a fake cgroupfs in a temporary directory).
//! * [`CgroupMode`] is one of `V2` (pure unified hierarchy), `Hybrid` (v1
//!   controllers plus a cgroup2 mount used only for membership, `cgroup.kill`
//!   and `cgroup.freeze`) and `V1` (no cgroup2 mount).
//! * [`Cgroup`] is one container's cgroup across all hierarchies it uses. It
//!   is serializable so that the launcher can store it in the container's
//!   state and rebuild it in a later process (`inspect`, `rm`). It remembers
//!   exactly which directories it created, so [`Cgroup::destroy`] removes
//!   those and nothing else.
//! * Relative cgroup paths (`berth/<id>`) are resolved under the caller's own
//!   cgroup **in each hierarchy separately** (like runc's relative
//!   `cgroupsPath`); absolute paths start at the hierarchy root and are meant
//!   only for an explicit user request.
//! * In v1/hybrid mode the controllers used are memory, cpu, cpuacct, pids
//!   and freezer (cpuset only on request, see [`ResolveOptions`]). A mount
//!   carrying several controllers (`cpu,cpuacct`) is one hierarchy and one
//!   directory. blkio and devices are joined when the resources need them
//!   (device rules: the v1 devices controller, or an eBPF device filter on
//!   cgroup v2; see `devices.rs`); `name=systemd`, net_cls… are never
//!   touched.
//!
//! # Why not cgroups-rs
//!
//! This is written by hand instead of using the `cgroups-rs` crate because
//! Berth needs (1) per-hierarchy parents taken from the caller's own cgroup
//! on hybrid hosts (the own memory cgroup can be deep while the own cpu
//! cgroup is `/`), (2) the unified hierarchy of a hybrid host used only for
//! membership and `cgroup.kill`, never for limits, and (3) every root
//! (`/sys/fs/cgroup`, `/proc/self/cgroup`, `/proc/self/mountinfo`) as a
//! parameter so that unit tests run unprivileged against a tempdir.
//!
//! # Errors
//!
//! Every [`CgroupError`] message is lower-case and names the cgroupfs file or
//! directory involved plus the errno text, e.g. `writing 50000 100000 to
//! /sys/fs/cgroup/x/cpu.max: Invalid argument`.

mod apply;
mod cgroup;
mod devices;
mod error;
mod fsutil;
mod layout;
mod stats;

#[cfg(test)]
mod real_tests;
#[cfg(test)]
mod tests;

pub use apply::{shares_to_weight, Unapplied};
pub use cgroup::{mount_view, Cgroup, CgroupWarning, HierarchyDir, ResolveOptions};
pub use devices::{DeviceKind, DeviceMatch, DevicePolicy, Insn};
pub use error::CgroupError;
pub use layout::{CgroupMode, Hierarchy, Layout};
pub use stats::Stats;
