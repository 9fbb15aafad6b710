//! The container's filesystem: mount propagation, the root bind mount, the
//! OCI `mounts` list, /dev, pivot_root, masked and read-only paths.
//!
//! Everything here runs inside the container's new mount namespace, in the
//! single-threaded init process, before the user's command is executed. The
//! steps are separate functions so the init reads as the procedure it is:
//! `make_private` -> `bind_root` -> `mount_all` -> `create_devices` ->
//! `pivot` -> `mask_paths` / `readonly_paths` -> `readonly_root`.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, pivot_root};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};

/// A failed filesystem step; names the path and the step.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{step} {path}: {errno}")]
    Sys {
        step: &'static str,
        path: PathBuf,
        errno: Errno,
    },
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mount {destination}: {reason}")]
    InvalidMount {
        destination: PathBuf,
        reason: String,
    },
    #[error("rootfs {0} does not exist or is not a directory")]
    NoRootfs(PathBuf),
}

type Result<T> = std::result::Result<T, RootfsError>;

fn sys<T>(step: &'static str, path: &Path, r: nix::Result<T>) -> Result<T> {
    r.map_err(|errno| RootfsError::Sys {
        step,
        path: path.to_path_buf(),
        errno,
    })
}

fn io<T>(step: &'static str, path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|source| RootfsError::Io {
        step,
        path: path.to_path_buf(),
        source,
    })
}

/// Stops mounts made by the container from propagating back to the host
/// (and, with "rslave", lets host mounts still propagate in). `propagation`
/// is OCI's `linux.rootfsPropagation`; runc's default is rslave.
pub fn make_private(propagation: Option<&str>) -> Result<()> {
    let flags = match propagation.unwrap_or("rslave") {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        other => {
            return Err(RootfsError::InvalidMount {
                destination: "/".into(),
                reason: format!(
                    "unknown rootfsPropagation {other:?} (allowed: private, rprivate, slave, rslave, shared, rshared, unbindable, runbindable)"
                ),
            })
        }
    };
    sys(
        "setting propagation of",
        Path::new("/"),
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>),
    )
}

/// runc's rootfsParentMountPrivate: with a shared rootfsPropagation the
/// mount holding the rootfs is shared, and then the root's bind mount (and
/// every mount under it) would propagate to its peers (the host), and
/// pivot_root refuses a shared parent (EINVAL). That one mount is made
/// private; the others keep the propagation asked for.
pub fn make_root_parent_private(rootfs: &Path) -> Result<()> {
    let text = io(
        "reading",
        Path::new("/proc/self/mountinfo"),
        fs::read_to_string("/proc/self/mountinfo"),
    )?;
    let Some((mount_point, shared)) = mount_point_of(&text, rootfs) else {
        return Ok(());
    };
    if !shared {
        return Ok(());
    }
    sys(
        "making private the parent mount",
        &mount_point,
        mount(
            None::<&str>,
            &mount_point,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        ),
    )
}

/// The mount point in `mountinfo` that holds `path` (the longest mount
/// point that is a prefix of it; the last one listed wins, being on top),
/// and whether that mount is shared. Unparsable text holds nothing.
fn mount_point_of(mountinfo: &str, path: &Path) -> Option<(PathBuf, bool)> {
    let mounts = crate::procinfo::parse_mountinfo(mountinfo).ok()?;
    let mut best: Option<(PathBuf, bool)> = None;
    for m in &mounts {
        let mp = PathBuf::from(&m.mount_point);
        if !path.starts_with(&mp) {
            continue;
        }
        let longer = best
            .as_ref()
            .is_none_or(|(b, _)| mp.components().count() >= b.components().count());
        if longer {
            best = Some((mp, m.is_shared()));
        }
    }
    best
}

/// Bind-mounts the root filesystem at `target` so that it is a mount point
/// pivot_root can use. When `rootfs` is the host's "/" (Berth's host-root
/// mode) the whole mount tree is bound and made read-only recursively, so
/// no host mount below it stays writable.
pub fn bind_root(rootfs: &Path, target: &Path) -> Result<()> {
    if !rootfs.is_dir() {
        return Err(RootfsError::NoRootfs(rootfs.to_path_buf()));
    }
    sys(
        "bind-mounting rootfs on",
        target,
        mount(
            Some(rootfs),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ),
    )?;
    if rootfs == Path::new("/") {
        set_recursive_readonly(target)?;
    }
    Ok(())
}

/// mount_setattr(2) with AT_RECURSIVE: the only way to make a whole mount
/// tree read-only at once (kernel >= 5.12). Neither nix nor libc wraps the
/// call, hence the raw syscall.
fn set_recursive_readonly(target: &Path) -> Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let path = cstring(target)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: path is a valid NUL-terminated string and attr a properly laid
    // out mount_attr that outlives the call; the kernel only reads both.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(RootfsError::Sys {
            step: "making read-only (recursive)",
            path: target.to_path_buf(),
            errno: Errno::last(),
        });
    }
    Ok(())
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| RootfsError::InvalidMount {
        destination: p.to_path_buf(),
        reason: "path contains a NUL byte".into(),
    })
}

/// Joins `dest` (an absolute path inside the container) to `root` without
/// letting symlinks inside the container escape it: each component that is a
/// symlink is resolved relative to `root`. Written by hand because no
/// maintained crate offers this for paths that do not exist yet (runc and
/// youki both carry their own securejoin).
pub fn secure_join(root: &Path, dest: &Path) -> Result<PathBuf> {
    let mut resolved = PathBuf::from("/");
    let mut pending: Vec<std::ffi::OsString> = dest
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let host = root.join(candidate.strip_prefix("/").unwrap_or(&candidate));
        match fs::symlink_metadata(&host) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(RootfsError::InvalidMount {
                        destination: dest.to_path_buf(),
                        reason: "too many levels of symbolic links".into(),
                    });
                }
                let target = io("reading link", &host, fs::read_link(&host))?;
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(s) => pending.push(s.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved.strip_prefix("/").unwrap_or(&resolved)))
}

/// Mount flags and filesystem data parsed from OCI mount options.
#[derive(Debug, PartialEq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Flags to clear (e.g. "rw" after "ro"); used for bind remounts.
    pub clear: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
    /// "tmpcopyup" (runc's and crun's extension, which podman sets on its
    /// tmpfs mounts): the new tmpfs starts with a copy of what the
    /// directory it covers held.
    pub tmpcopyup: bool,
}

/// Parses OCI/fstab-style mount options ("ro", "nosuid", "rbind",
/// "mode=755", ...). Unknown words are passed to the filesystem as data, as
/// runc does.
pub fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        clear: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: Vec::new(),
        bind: false,
        recursive: false,
        tmpcopyup: false,
    };
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "tmpcopyup" => {
                o.tmpcopyup = true;
                continue;
            }
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" | "unbindable"
            | "runbindable" => {
                let (base, rec) = match opt.strip_prefix('r') {
                    Some(b) if b != "unbindable" || opt == "runbindable" => (b, true),
                    _ => (opt.as_str(), false),
                };
                let f = match base {
                    "private" => MsFlags::MS_PRIVATE,
                    "slave" => MsFlags::MS_SLAVE,
                    "shared" => MsFlags::MS_SHARED,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                o.propagation |= if rec { f | MsFlags::MS_REC } else { f };
                continue;
            }
            _ => {
                o.data.push(opt.clone());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
        o.clear |= clear;
    }
    o
}

/// The context `mount_all` needs beyond the mount list.
#[derive(Debug, Clone, Copy)]
pub struct MountContext<'a> {
    /// Where the new root is mounted (the pivot_root target).
    pub root: &'a Path,
    /// Inside a user namespace: device nodes are bind-mounted instead of
    /// created, and remounts keep the flags the kernel has locked.
    pub in_userns: bool,
    /// The container has its own network namespace (sysfs can be mounted
    /// fresh); without one, /sys is bound from the host.
    pub own_netns: bool,
    /// The container has its own cgroup namespace.
    pub own_cgroupns: bool,
    /// What a mount of type "cgroup" shows.
    pub cgroups: &'a CgroupView,
}

/// The container's cgroups as a "cgroup" mount shows them, prepared by the
/// caller (`isolator::cgroups::mount_view`) before the container's init
/// exists, from the host's view of the hierarchies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupView {
    /// On a v1 or hybrid host, as runc does: a tmpfs with one bind mount per
    /// hierarchy, named as its mount point is (`memory`, `cpu,cpuacct`,
    /// `systemd`, `unified`), of the container's own cgroup directory there.
    /// Empty on a pure v2 host, where the mount is a cgroup2 filesystem.
    pub v1: Vec<(String, PathBuf)>,
    /// Symlinks next to those binds for comounted controllers, as on the
    /// host: (`cpu`, `cpu,cpuacct`).
    pub links: Vec<(String, String)>,
    /// The container's cgroup2 directory: bound instead when a fresh cgroup2
    /// cannot be mounted (EPERM in a user namespace without a cgroup
    /// namespace of its own, as runc falls back).
    pub unified: Option<PathBuf>,
}

/// Mounts every entry of the OCI `mounts` list under `ctx.root`, in order.
pub fn mount_all(mounts: &[Mount], ctx: &MountContext) -> Result<()> {
    for m in mounts {
        mount_one(m, ctx)?;
    }
    Ok(())
}

fn mount_one(m: &Mount, ctx: &MountContext) -> Result<()> {
    let dest_rel = m.destination();
    if !dest_rel.is_absolute() {
        return Err(RootfsError::InvalidMount {
            destination: dest_rel.clone(),
            reason: "destination must be an absolute path".into(),
        });
    }
    let options = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().clone().unwrap_or_default();
    let dest = secure_join(ctx.root, dest_rel)?;
    let is_bind = options.bind || typ == "bind";

    if is_bind {
        let source = m
            .source()
            .clone()
            .ok_or_else(|| RootfsError::InvalidMount {
                destination: dest_rel.clone(),
                reason: "bind mount without a source".into(),
            })?;
        let src_md = io("stat of bind source", &source, fs::metadata(&source))?;
        create_mount_point(&dest, src_md.is_dir())?;
        let mut flags = MsFlags::MS_BIND;
        if options.recursive {
            flags |= MsFlags::MS_REC;
        }
        sys(
            "bind-mounting",
            &dest,
            mount(Some(&source), &dest, None::<&str>, flags, None::<&str>),
        )?;
        // A bind mount ignores every flag but MS_BIND/MS_REC; the rest needs
        // a remount of the new mount.
        let extra = options.flags & !MsFlags::MS_REMOUNT;
        if !extra.is_empty() {
            remount_bind(&dest, extra, ctx.in_userns)?;
        }
    } else {
        let (fstype, source, flags, data) =
            match typ.as_str() {
                "sysfs" if !ctx.own_netns && ctx.in_userns => {
                    // In a user namespace a fresh sysfs needs a network
                    // namespace of our own; bind the host's instead
                    // (read-only), as runc does for rootless containers.
                    create_mount_point(&dest, true)?;
                    sys(
                        "bind-mounting /sys on",
                        &dest,
                        mount(
                            Some("/sys"),
                            &dest,
                            None::<&str>,
                            MsFlags::MS_BIND | MsFlags::MS_REC,
                            None::<&str>,
                        ),
                    )?;
                    return remount_bind(&dest, options.flags | MsFlags::MS_RDONLY, ctx.in_userns);
                }
                // OCI's "cgroup" type means "the container's view of its
                // cgroups": on a v1 host runc's tmpfs of per-hierarchy
                // binds; otherwise (and for an explicit "cgroup2") a cgroup2
                // mount, which with a cgroup namespace shows the container's
                // own cgroup as the root.
                "cgroup" if !ctx.cgroups.v1.is_empty() => {
                    return mount_cgroup_v1(&dest, options.flags, ctx);
                }
                "cgroup" | "cgroup2" => ("cgroup2", "cgroup2".to_string(), options.flags, None),
                "" => return Err(RootfsError::InvalidMount {
                    destination: dest_rel.clone(),
                    reason:
                        "mount without a type (use \"bind\" with the bind option for bind mounts)"
                            .into(),
                }),
                t => (
                    t,
                    m.source()
                        .as_ref()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| t.to_string()),
                    options.flags,
                    Some(options.data.join(",")).filter(|d| !d.is_empty()),
                ),
            };
        create_mount_point(&dest, true)?;
        if options.tmpcopyup && fstype != "tmpfs" {
            return Err(RootfsError::InvalidMount {
                destination: dest_rel.clone(),
                reason: format!("tmpcopyup is only valid on tmpfs mounts, not {fstype}"),
            });
        }
        // Held across the mount: it still reaches the covered directory,
        // whose contents tmpcopyup copies into the new tmpfs.
        let covered = if options.tmpcopyup {
            Some(io("opening", &dest, fs::File::open(&dest))?)
        } else {
            None
        };
        let mut r = mount(
            Some(source.as_str()),
            &dest,
            Some(fstype),
            flags,
            data.as_deref(),
        );
        if r == Err(Errno::EBUSY) && flags.contains(MsFlags::MS_RDONLY) {
            // A filesystem whose superblock is already mounted read-write
            // (cgroup2, sysfs) cannot be mounted read-only anew: mount it
            // read-write, then make this mount read-only.
            r = mount(
                Some(source.as_str()),
                &dest,
                Some(fstype),
                flags & !MsFlags::MS_RDONLY,
                data.as_deref(),
            )
            .and_then(|()| {
                mount(
                    None::<&str>,
                    &dest,
                    None::<&str>,
                    flags | MsFlags::MS_REMOUNT | MsFlags::MS_BIND,
                    None::<&str>,
                )
            });
        }
        match (fstype, r) {
            (_, Ok(())) => {}
            // In a user namespace without a cgroup namespace of its own the
            // kernel refuses a fresh cgroup2: bind the container's own
            // cgroup directory instead (runc's fallback).
            ("cgroup2", Err(Errno::EPERM | Errno::EBUSY)) if ctx.cgroups.unified.is_some() => {
                let src = ctx.cgroups.unified.as_deref().unwrap_or(Path::new("/"));
                sys(
                    "bind-mounting the container's cgroup on",
                    &dest,
                    mount(
                        Some(src),
                        &dest,
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    ),
                )?;
                remount_bind(&dest, flags | MsFlags::MS_RDONLY, ctx.in_userns)?;
            }
            (_, Err(errno)) => {
                return Err(RootfsError::Sys {
                    step: "mounting",
                    path: dest,
                    errno,
                })
            }
        }
        if let Some(covered) = covered {
            use std::os::fd::AsRawFd;
            // The fd's /proc link resolves to the directory under the
            // mount, not to the tmpfs now on top of it.
            let from = PathBuf::from(format!("/proc/self/fd/{}", covered.as_raw_fd()));
            copy_tree(&from, &dest)?;
        }
    }
    if !options.propagation.is_empty() {
        sys(
            "setting propagation of",
            &dest,
            mount(
                None::<&str>,
                &dest,
                None::<&str>,
                options.propagation,
                None::<&str>,
            ),
        )?;
    }
    Ok(())
}

/// runc's "cgroup" mount on a v1 host: a tmpfs at `dest`, one bind of the
/// container's cgroup per hierarchy in it (read-only when the mount is), symlinks for
/// comounted controllers, and the tmpfs made read-only too when the mount
/// asks for "ro". Every failure is an error: a container must not see the
/// host's cgroups where it expects its own, nor nothing at all.
fn mount_cgroup_v1(dest: &Path, flags: MsFlags, ctx: &MountContext) -> Result<()> {
    create_mount_point(dest, true)?;
    let tmpfs_flags = flags & !MsFlags::MS_RDONLY;
    sys(
        "mounting the cgroup tmpfs on",
        dest,
        mount(
            Some("tmpfs"),
            dest,
            Some("tmpfs"),
            tmpfs_flags,
            Some("mode=755"),
        ),
    )?;
    // The binds take the mount's own flags, as runc's do: read-only when
    // it says "ro" (engines' default), writable when it says "rw" (a
    // container trusted to manage its own cgroups, e.g. systemd inside).
    let bind_flags = flags;
    for (name, source) in &ctx.cgroups.v1 {
        let target = dest.join(name);
        io("creating", &target, fs::create_dir(&target))?;
        sys(
            "bind-mounting the container's cgroup on",
            &target,
            mount(
                Some(source.as_path()),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            ),
        )?;
        remount_bind(&target, bind_flags, ctx.in_userns)?;
    }
    for (link, target) in &ctx.cgroups.links {
        let path = dest.join(link);
        io(
            "creating the symlink",
            &path,
            std::os::unix::fs::symlink(target, &path),
        )?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        sys(
            "making the cgroup tmpfs read-only:",
            dest,
            mount(
                None::<&str>,
                dest,
                None::<&str>,
                flags | MsFlags::MS_REMOUNT,
                None::<&str>,
            ),
        )?;
    }
    Ok(())
}

/// Copies a directory's contents (files, directories, symlinks, device
/// nodes and fifos, with their modes and owners) into `to`, which exists.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::{lchown, FileTypeExt, MetadataExt};
    for entry in io("reading", from, fs::read_dir(from))? {
        let entry = io("reading", from, entry)?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let md = io("stat of", &src, fs::symlink_metadata(&src))?;
        let ft = md.file_type();
        if ft.is_dir() {
            io("creating", &dst, fs::create_dir(&dst))?;
            copy_tree(&src, &dst)?;
        } else if ft.is_symlink() {
            let target = io("reading link", &src, fs::read_link(&src))?;
            io("creating symlink", &dst, symlink(target, &dst))?;
        } else if ft.is_file() {
            io("copying to", &dst, fs::copy(&src, &dst))?;
        } else if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket() {
            let kind = SFlag::from_bits_truncate(md.mode() & libc::S_IFMT);
            let perm = Mode::from_bits_truncate(md.mode() & 0o7777);
            sys("creating node", &dst, mknod(&dst, kind, perm, md.rdev()))?;
        }
        io(
            "chown of",
            &dst,
            lchown(&dst, Some(md.uid()), Some(md.gid())),
        )?;
        if !ft.is_symlink() {
            // After chown, which clears setuid/setgid bits.
            io(
                "chmod of",
                &dst,
                fs::set_permissions(&dst, fs::Permissions::from_mode(md.mode() & 0o7777)),
            )?;
        }
    }
    Ok(())
}

/// Remounts a bind mount with `flags`, keeping the flags the kernel locks
/// in a user namespace (nosuid, nodev, noexec, atime) so the remount is
/// not refused with EPERM.
fn remount_bind(dest: &Path, flags: MsFlags, in_userns: bool) -> Result<()> {
    let mut flags = flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    if in_userns {
        let st = sys("statvfs", dest, statvfs(dest))?;
        let f = st.flags();
        for (ff, mf) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(ff) {
                flags |= mf;
            }
        }
    }
    sys(
        "remounting",
        dest,
        mount(None::<&str>, dest, None::<&str>, flags, None::<&str>),
    )
}

/// Creates the directory (or, for a file bind mount, the empty file) that a
/// mount needs as its mount point.
fn create_mount_point(dest: &Path, dir: bool) -> Result<()> {
    if dir {
        if !dest.is_dir() {
            io("creating mount point", dest, fs::create_dir_all(dest))?;
        }
    } else if !dest.exists() {
        if let Some(parent) = dest.parent() {
            io("creating mount point", parent, fs::create_dir_all(parent))?;
        }
        io(
            "creating mount point",
            dest,
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dest),
        )?;
    }
    Ok(())
}

/// The devices every container gets, per the runtime spec.
pub fn default_devices() -> Vec<(&'static str, u64, u64)> {
    vec![
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
}

/// Creates the default devices, the spec's extra `devices`, and the
/// standard /dev symlinks under `root`. In a user namespace mknod is not
/// allowed, so the host's device nodes are bind-mounted instead.
pub fn create_devices(root: &Path, extra: &[LinuxDevice], in_userns: bool) -> Result<()> {
    let dev = root.join("dev");
    for (path, major, minor) in default_devices() {
        let dest = secure_join(root, Path::new(path))?;
        make_device(
            &dest,
            Path::new(path),
            SFlag::S_IFCHR,
            major,
            minor,
            0o666,
            None,
            in_userns,
        )?;
    }
    for d in extra {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(RootfsError::InvalidMount {
                    destination: d.path().clone(),
                    reason: "device type \"a\" is only valid in cgroup rules".into(),
                })
            }
        };
        let dest = secure_join(root, d.path())?;
        let owner = d.uid().map(|u| (u, d.gid().unwrap_or(0)));
        make_device(
            &dest,
            d.path(),
            kind,
            d.major() as u64,
            d.minor() as u64,
            d.file_mode().unwrap_or(0o666),
            owner,
            in_userns,
        )?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let p = dev.join(link);
        if fs::symlink_metadata(&p).is_err() {
            io("creating symlink", &p, symlink(target, &p))?;
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = symlink("/proc/kcore", dev.join("core"));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn make_device(
    dest: &Path,
    host_path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    owner: Option<(u32, u32)>,
    in_userns: bool,
) -> Result<()> {
    if let Some(parent) = dest.parent() {
        io("creating directory", parent, fs::create_dir_all(parent))?;
    }
    if in_userns {
        create_mount_point(dest, false)?;
        return sys(
            "bind-mounting device",
            dest,
            mount(
                Some(host_path),
                dest,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            ),
        );
    }
    let _ = fs::remove_file(dest);
    sys(
        "creating device",
        dest,
        mknod(
            dest,
            kind,
            Mode::from_bits_truncate(mode),
            makedev(major, minor),
        ),
    )?;
    // mknod is subject to the umask; the spec's mode is what must stick.
    io(
        "setting mode of",
        dest,
        fs::set_permissions(dest, fs::Permissions::from_mode(mode & 0o7777)),
    )?;
    if let Some((uid, gid)) = owner {
        sys(
            "changing owner of",
            dest,
            nix::unistd::chown(dest, Some(uid.into()), Some(gid.into())),
        )?;
    }
    Ok(())
}

/// Makes `root` the process's root directory and detaches the old root, so
/// nothing of the host's tree stays reachable (the pivot_root(".", ".")
/// idiom from runc: no temporary directory for the old root is needed).
pub fn pivot(root: &Path) -> Result<()> {
    let old_root = io("opening", Path::new("/"), fs::File::open("/"))?;
    sys("changing directory to", root, chdir(root))?;
    sys("pivot_root to", root, pivot_root(".", "."))?;
    // The old root is now mounted on top of the new one. "." must name
    // the old root, not the new one under it: a recursive MS_SLAVE on the
    // new root would strip the propagation the spec's mounts asked for
    // ("shared" on a bind), so go there through the old root's descriptor
    // (as runc does), make sure its unmount does not propagate anywhere,
    // then lazily detach it.
    sys(
        "changing directory to the old root",
        Path::new("/"),
        nix::unistd::fchdir(&old_root),
    )?;
    drop(old_root);
    sys(
        "setting propagation of old root",
        root,
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        ),
    )?;
    sys(
        "detaching old root",
        root,
        umount2(".", MntFlags::MNT_DETACH),
    )?;
    sys("changing directory to", Path::new("/"), chdir("/"))
}

/// The old way of entering the root, for roots where pivot_root is not
/// allowed (a ramfs root): move the root mount onto "/" and chroot into
/// it (runc's --no-pivot). The old root stays reachable for a process
/// that escapes the chroot, which is why pivot_root is the default.
pub fn move_root(root: &Path) -> Result<()> {
    sys("changing directory to", root, chdir(root))?;
    sys(
        "moving the root mount of",
        root,
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>),
    )?;
    sys("chroot to", root, nix::unistd::chroot("."))?;
    sys("changing directory to", Path::new("/"), chdir("/"))
}

/// Bind-mounts the terminal `console` (the pty slave) onto the root's
/// /dev/console, creating the mount point if needed (runc does the same).
pub fn bind_console(root: &Path, console: &Path) -> Result<()> {
    let target = secure_join(root, Path::new("/dev/console"))?;
    if !target.exists() {
        std::fs::File::create(&target).map_err(|e| RootfsError::Io {
            step: "creating",
            path: target.clone(),
            source: e,
        })?;
    }
    sys(
        "bind-mounting the terminal on",
        &target,
        mount(
            Some(console),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ),
    )
}

/// Hides `paths` (OCI maskedPaths): /dev/null over files, an empty
/// read-only tmpfs over directories (no size or mode: runc's mount).
/// Paths that do not exist are skipped, as runc does.
pub fn mask_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let path = Path::new(p);
        let md = match fs::metadata(path) {
            Ok(md) => md,
            Err(_) => continue,
        };
        let r = if md.is_dir() {
            mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
        } else {
            mount(
                Some("/dev/null"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        sys("masking", path, r)?;
    }
    Ok(())
}

/// Makes `paths` read-only (OCI readonlyPaths) with a bind mount onto
/// itself and a read-only remount that keeps the mount's other flags, as
/// runc's does (adding noexec would make e.g. a read-only /bin unusable).
/// Paths that do not exist are skipped.
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let path = Path::new(p);
        if fs::symlink_metadata(path).is_err() {
            continue;
        }
        sys(
            "bind-mounting read-only path",
            path,
            mount(
                Some(path),
                path,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            ),
        )?;
        // Always keeping the flags the mount has is also what a user
        // namespace requires (it locks them).
        remount_bind(path, MsFlags::MS_RDONLY, true)?;
    }
    Ok(())
}

/// Remounts the container's "/" read-only (OCI root.readonly).
pub fn readonly_root(in_userns: bool) -> Result<()> {
    remount_bind(Path::new("/"), MsFlags::MS_RDONLY, in_userns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_flags_and_data() {
        let o = parse_options(&[
            "nosuid".into(),
            "ro".into(),
            "mode=755".into(),
            "size=65536k".into(),
        ]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_RDONLY);
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        assert!(!o.bind);
        let o = parse_options(&["tmpcopyup".into(), "nodev".into()]);
        assert!(o.tmpcopyup && o.data.is_empty());
    }

    #[test]
    fn options_rbind_and_propagation() {
        let o = parse_options(&["rbind".into(), "rprivate".into(), "rw".into()]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.clear.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn secure_join_keeps_symlinks_inside_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("real")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        symlink("../../../../etc", root.join("escape")).unwrap();
        assert_eq!(
            secure_join(root, Path::new("/abs/x")).unwrap(),
            root.join("real/x")
        );
        assert_eq!(
            secure_join(root, Path::new("/escape/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            secure_join(root, Path::new("/../../tmp")).unwrap(),
            root.join("tmp")
        );
    }

    #[test]
    fn the_mount_holding_a_path_and_its_sharing() {
        let info = "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    42 27 254:0 /x /run/netns rw,relatime shared:2 - ext4 /dev/vda rw\n\
                    43 27 0:50 / /srv/a\\040b rw,relatime - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_point_of(info, Path::new("/srv/a b/rootfs")),
            Some((PathBuf::from("/srv/a b"), false))
        );
        assert_eq!(
            mount_point_of(info, Path::new("/srv/ab")),
            Some((PathBuf::from("/"), true))
        );
        assert_eq!(
            mount_point_of(info, Path::new("/run/netns/x")),
            Some((PathBuf::from("/run/netns"), true))
        );
    }

    #[test]
    fn secure_join_detects_loops() {
        let dir = tempfile::tempdir().unwrap();
        symlink("/b", dir.path().join("a")).unwrap();
        symlink("/a", dir.path().join("b")).unwrap();
        assert!(secure_join(dir.path(), Path::new("/a/x")).is_err());
    }
}
