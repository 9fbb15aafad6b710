//! Kernel primitives for Berth containers.
//!
//! This crate knows nothing about tasks, bundles on disk, masters or HTTP: it
//! turns parts of an OCI runtime configuration into kernel state (namespaces,
//! cgroups, mounts, capabilities, seccomp filters) and reads kernel state back
//! for `berth inspect`. Every function that touches `/proc` or
//! `/sys/fs/cgroup` takes the root as a parameter so tests can point it at a
//! temporary directory.

pub mod capabilities;
pub mod cgroups;
pub mod idmap;
pub mod namespaces;
pub mod process;
pub mod procinfo;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
