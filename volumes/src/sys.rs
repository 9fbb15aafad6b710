//! Thin, hand-written wrappers around the Linux interfaces the volume backends need:
//! `/proc/self/mountinfo`, project ids (`FS_IOC_FSGETXATTR`/`FS_IOC_FSSETXATTR`),
//! project quotas (`quotactl(2)` in both the XFS and the generic VFS dialect) and loop
//! devices (`LOOP_CTL_GET_FREE`, `LOOP_CONFIGURE`, `LOOP_SET_CAPACITY`).
//!
//! Why by hand:
//! * No maintained Rust crate wraps project quotas: `libc` exposes `quotactl` and the
//!   generic `dqblk`, but not the XFS `fs_disk_quota` structure, the `Q_X*` commands, or
//!   `struct fsxattr` with its ioctls; `nix` has none of them. The structures below are
//!   copied from the kernel UAPI headers (`linux/dqblk_xfs.h`, `linux/fs.h`) and their
//!   sizes are checked by unit tests.
//! * `loopdev-3`, the maintained loop-device crate, generates its bindings with `bindgen`
//!   at build time and therefore needs `libclang` on every build machine (Berth's build
//!   machines do not have it), and it attaches with `LOOP_SET_FD` + `LOOP_SET_STATUS64`,
//!   which leaves a window where the device is attached without `LO_FLAGS_AUTOCLEAR`.
//!   The four loop ioctls used here are small and stable, and `LOOP_CONFIGURE` sets the
//!   backing file and the autoclear flag in one step.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone)]
pub(crate) struct MountInfo {
    pub major: u32,
    pub minor: u32,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
    pub super_opts: String,
}

impl MountInfo {
    pub fn has_super_opt(&self, opt: &str) -> bool {
        self.super_opts.split(',').any(|o| o == opt)
    }
}

/// Undoes the octal escapes (`\040` for space etc.) the kernel uses in mountinfo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts listed in `text` (only what the volume store needs: device,
/// mount point, type, source, super options). Its own parser, as isolator's
/// procinfo has one, because procfs-core 0.17 leaves the `\ooo` escapes in
/// mount points, and volumes does not link the isolator.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    let mut res = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < sep + 4 || sep < 6 {
            continue;
        }
        let Some((maj, min)) = fields[2].split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) else {
            continue;
        };
        res.push(MountInfo {
            major,
            minor,
            mount_point: PathBuf::from(unescape(fields[4])),
            fstype: fields[sep + 1].to_string(),
            source: unescape(fields[sep + 2]),
            super_opts: fields[sep + 3].to_string(),
        });
    }
    res
}

pub(crate) fn mountinfo() -> io::Result<Vec<MountInfo>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// The mount that holds `path` (which must be canonical): the last-mounted entry whose
/// mount point is the longest prefix of `path`, preferring entries with the same device.
pub(crate) fn mount_for(path: &Path) -> io::Result<MountInfo> {
    let dev = std::fs::metadata(path)?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let all = mountinfo()?;
    let best = |same_dev: bool| {
        all.iter()
            .filter(|m| path.starts_with(&m.mount_point))
            .filter(|m| !same_dev || (m.major == major && m.minor == minor))
            .fold(None::<&MountInfo>, |acc, m| match acc {
                Some(a) if a.mount_point.as_os_str().len() > m.mount_point.as_os_str().len() => {
                    Some(a)
                }
                _ => Some(m),
            })
            .cloned()
    };
    best(true).or_else(|| best(false)).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no mount found for {}", path.display()),
        )
    })
}

/// The mount whose mount point is exactly `path` (the top-most one), if any.
pub(crate) fn mounted_at(path: &Path) -> io::Result<Option<MountInfo>> {
    Ok(mountinfo()?.into_iter().rfind(|m| m.mount_point == path))
}

/// The block device node of a mount, for `quotactl(2)`.
pub(crate) fn block_device(m: &MountInfo) -> io::Result<PathBuf> {
    let uevent = format!("/sys/dev/block/{}:{}/uevent", m.major, m.minor);
    if let Ok(text) = std::fs::read_to_string(&uevent) {
        if let Some(name) = text.lines().find_map(|l| l.strip_prefix("DEVNAME=")) {
            let p = PathBuf::from("/dev").join(name);
            if is_block_device(&p, m) {
                return Ok(p);
            }
        }
    }
    let p = PathBuf::from(&m.source);
    if is_block_device(&p, m) {
        return Ok(p);
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "no block device node for {}:{} (source {:?}) mounted at {}",
            m.major,
            m.minor,
            m.source,
            m.mount_point.display()
        ),
    ))
}

fn is_block_device(p: &Path, m: &MountInfo) -> bool {
    match std::fs::metadata(p) {
        Ok(md) => {
            md.file_type().is_block_device()
                && libc::major(md.rdev()) == m.major
                && libc::minor(md.rdev()) == m.minor
        }
        Err(_) => false,
    }
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

// ---------------------------------------------------------------------------------------
// Project ids: struct fsxattr (linux/fs.h).

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FsXattr {
    pub fsx_xflags: u32,
    pub fsx_extsize: u32,
    pub fsx_nextents: u32,
    pub fsx_projid: u32,
    pub fsx_cowextsize: u32,
    pub fsx_pad: [u8; 8],
}

/// `_IOR('X', 31, struct fsxattr)`
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
/// `_IOW('X', 32, struct fsxattr)`
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;
pub(crate) const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;

fn open_dir(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
}

pub(crate) fn get_fsxattr(dir: &Path) -> io::Result<FsXattr> {
    let f = open_dir(dir)?;
    let mut x = FsXattr::default();
    // SAFETY: `f` is an open descriptor for the whole call, and FS_IOC_FSGETXATTR writes
    // exactly one `struct fsxattr` (28 bytes, layout mirrored by `FsXattr`) to the pointer,
    // which points to a live, properly aligned `FsXattr`.
    let r = unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            FS_IOC_FSGETXATTR as _,
            &mut x as *mut FsXattr,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(x)
}

/// Gives `dir` the project id `id` and the inherit flag, so that everything created
/// below it is charged to that project.
pub(crate) fn set_project(dir: &Path, id: u32) -> io::Result<()> {
    let f = open_dir(dir)?;
    let mut x = get_fsxattr(dir)?;
    x.fsx_projid = id;
    x.fsx_xflags |= FS_XFLAG_PROJINHERIT;
    // SAFETY: valid fd; FS_IOC_FSSETXATTR only reads one `struct fsxattr` from the pointer,
    // which points to a live, initialised `FsXattr`.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FSSETXATTR as _, &x as *const FsXattr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Project quotas.

/// struct fs_disk_quota (linux/dqblk_xfs.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FsDiskQuota {
    pub d_version: i8,
    pub d_flags: i8,
    pub d_fieldmask: u16,
    pub d_id: u32,
    pub d_blk_hardlimit: u64,
    pub d_blk_softlimit: u64,
    pub d_ino_hardlimit: u64,
    pub d_ino_softlimit: u64,
    pub d_bcount: u64,
    pub d_icount: u64,
    pub d_itimer: i32,
    pub d_btimer: i32,
    pub d_iwarns: u16,
    pub d_bwarns: u16,
    pub d_itimer_hi: i8,
    pub d_btimer_hi: i8,
    pub d_rtbtimer_hi: i8,
    pub d_padding2: i8,
    pub d_rtb_hardlimit: u64,
    pub d_rtb_softlimit: u64,
    pub d_rtbcount: u64,
    pub d_rtbtimer: i32,
    pub d_rtbwarns: u16,
    pub d_padding3: i16,
    pub d_padding4: [u8; 8],
}

const FS_DQUOT_VERSION: i8 = 1;
const FS_PROJ_QUOTA: i8 = 2;
const FS_DQ_BHARD: u16 = 1 << 3;
const FS_DQ_BSOFT: u16 = 1 << 2;
/// `XQM_CMD(3)` / `XQM_CMD(4)`: ('X' << 8) + n.
const Q_XGETQUOTA: u32 = (('X' as u32) << 8) + 3;
const Q_XSETQLIM: u32 = (('X' as u32) << 8) + 4;
const XQM_PRJQUOTA: u32 = 2;
const PRJQUOTA: u32 = 2;
/// The generic interface counts limits in blocks of this size (QIF_DQBLKSIZE).
const QIF_DQBLKSIZE: u64 = 1024;

const fn qcmd(cmd: u32, ty: u32) -> libc::c_int {
    ((cmd << 8) | (ty & 0xff)) as libc::c_int
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuotaKind {
    Xfs,
    Ext4,
}

/// Usage and hard limit of a project, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProjectQuota {
    pub used: u64,
    pub hard_limit: u64,
}

fn quotactl(cmd: libc::c_int, dev: &Path, id: u32, data: *mut libc::c_char) -> io::Result<()> {
    let dev = cpath(dev)?;
    // SAFETY: `dev` is a NUL-terminated string alive for the call; `data` points to a live
    // structure of the type the command expects (callers pair `Q_X*` with `FsDiskQuota`
    // and `Q_GETQUOTA`/`Q_SETQUOTA` with `libc::dqblk`), which outlives the call.
    let r = unsafe { libc::quotactl(cmd, dev.as_ptr(), id as libc::c_int, data) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn get_project_quota(kind: QuotaKind, dev: &Path, id: u32) -> io::Result<ProjectQuota> {
    match kind {
        QuotaKind::Xfs => {
            let mut q = FsDiskQuota::default();
            match quotactl(
                qcmd(Q_XGETQUOTA, XQM_PRJQUOTA),
                dev,
                id,
                &mut q as *mut FsDiskQuota as *mut libc::c_char,
            ) {
                Ok(()) => Ok(ProjectQuota {
                    used: q.d_bcount.saturating_mul(512),
                    hard_limit: q.d_blk_hardlimit.saturating_mul(512),
                }),
                // No dquot for this id yet: nothing charged, no limit.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(ProjectQuota::default()),
                Err(e) => Err(e),
            }
        }
        QuotaKind::Ext4 => {
            // SAFETY: `dqblk` is a plain C struct of integers; all-zero is a valid value.
            let mut q: libc::dqblk = unsafe { std::mem::zeroed() };
            quotactl(
                qcmd(libc::Q_GETQUOTA as u32, PRJQUOTA),
                dev,
                id,
                &mut q as *mut libc::dqblk as *mut libc::c_char,
            )?;
            Ok(ProjectQuota {
                used: q.dqb_curspace,
                hard_limit: q.dqb_bhardlimit.saturating_mul(QIF_DQBLKSIZE),
            })
        }
    }
}

/// Sets the block hard limit of project `id` to `bytes` (rounded up to the interface's
/// block size); 0 removes the limit. The soft limit is cleared.
pub(crate) fn set_project_limit(
    kind: QuotaKind,
    dev: &Path,
    id: u32,
    bytes: u64,
) -> io::Result<()> {
    match kind {
        QuotaKind::Xfs => {
            let mut q = FsDiskQuota {
                d_version: FS_DQUOT_VERSION,
                d_flags: FS_PROJ_QUOTA,
                d_fieldmask: FS_DQ_BHARD | FS_DQ_BSOFT,
                d_id: id,
                d_blk_hardlimit: bytes.div_ceil(512),
                ..Default::default()
            };
            quotactl(
                qcmd(Q_XSETQLIM, XQM_PRJQUOTA),
                dev,
                id,
                &mut q as *mut FsDiskQuota as *mut libc::c_char,
            )
        }
        QuotaKind::Ext4 => {
            // SAFETY: `dqblk` is a plain C struct of integers; all-zero is a valid value.
            let mut q: libc::dqblk = unsafe { std::mem::zeroed() };
            q.dqb_bhardlimit = bytes.div_ceil(QIF_DQBLKSIZE);
            q.dqb_bsoftlimit = 0;
            q.dqb_valid = libc::QIF_BLIMITS;
            quotactl(
                qcmd(libc::Q_SETQUOTA as u32, PRJQUOTA),
                dev,
                id,
                &mut q as *mut libc::dqblk as *mut libc::c_char,
            )
        }
    }
}

// ---------------------------------------------------------------------------------------
// Loop devices (linux/loop.h).

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_SET_CAPACITY: libc::c_ulong = 0x4C07;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct LoopInfo64 {
    pub lo_device: u64,
    pub lo_inode: u64,
    pub lo_rdevice: u64,
    pub lo_offset: u64,
    pub lo_sizelimit: u64,
    pub lo_number: u32,
    pub lo_encrypt_type: u32,
    pub lo_encrypt_key_size: u32,
    pub lo_flags: u32,
    pub lo_file_name: [u8; LO_NAME_SIZE],
    pub lo_crypt_name: [u8; LO_NAME_SIZE],
    pub lo_encrypt_key: [u8; 32],
    pub lo_init: [u64; 2],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct LoopConfig {
    pub fd: u32,
    pub block_size: u32,
    pub info: LoopInfo64,
    pub reserved: [u64; 8],
}

/// A loop device this process attached with `LO_FLAGS_AUTOCLEAR`. The open descriptor
/// keeps it attached; once something else (a mount) holds it, dropping this lets the
/// kernel detach the device as soon as that last user goes away. If nothing else ever
/// opened it, dropping this detaches it at once.
#[derive(Debug)]
pub(crate) struct AttachedLoop {
    pub device: PathBuf,
    _file: File,
}

/// Attaches `image` read-write to a free loop device with autoclear.
pub(crate) fn attach_loop(image: &Path) -> io::Result<AttachedLoop> {
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/loop-control")?;
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(image)?;
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: LO_FLAGS_AUTOCLEAR,
        lo_file_name: [0; LO_NAME_SIZE],
        lo_crypt_name: [0; LO_NAME_SIZE],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    };
    let name = image.as_os_str().as_bytes();
    let n = name.len().min(LO_NAME_SIZE - 1);
    info.lo_file_name[..n].copy_from_slice(&name[..n]);

    // Another process may grab the device between GET_FREE and CONFIGURE (EBUSY): retry,
    // a bounded number of times.
    let mut last_err = None;
    for attempt in 0..32 {
        // SAFETY: `ctl` is an open /dev/loop-control descriptor; LOOP_CTL_GET_FREE takes
        // no argument and returns a device number or -1.
        let nr = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if nr < 0 {
            return Err(io::Error::last_os_error());
        }
        let device = PathBuf::from(format!("/dev/loop{nr}"));
        let dev = match open_loop_device(&device) {
            Ok(f) => f,
            Err(e) => {
                last_err = Some(e);
                std::thread::sleep(Duration::from_millis(10 * (attempt + 1)));
                continue;
            }
        };
        let cfg = LoopConfig {
            fd: backing.as_raw_fd() as u32,
            block_size: 0,
            info,
            reserved: [0; 8],
        };
        // SAFETY: `dev` is an open loop device, `cfg` is a live, initialised
        // `struct loop_config` that LOOP_CONFIGURE only reads; the backing fd in it is
        // open for the duration of the call (the kernel takes its own reference).
        let r = unsafe {
            libc::ioctl(
                dev.as_raw_fd(),
                LOOP_CONFIGURE as _,
                &cfg as *const LoopConfig,
            )
        };
        if r == 0 {
            return Ok(AttachedLoop { device, _file: dev });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EBUSY) => {
                last_err = Some(err);
                std::thread::sleep(Duration::from_millis(10 * (attempt + 1)));
                continue;
            }
            // Kernels before 5.8 lack LOOP_CONFIGURE.
            Some(libc::EINVAL) | Some(libc::ENOTTY) => match attach_legacy(&dev, &backing, &info) {
                Ok(()) => return Ok(AttachedLoop { device, _file: dev }),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    last_err = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            },
            _ => return Err(err),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no free loop device")))
}

fn open_loop_device(device: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(device)
}

fn attach_legacy(dev: &File, backing: &File, info: &LoopInfo64) -> io::Result<()> {
    // SAFETY: both descriptors are open; LOOP_SET_FD takes the backing fd as an integer.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_SET_FD as _,
            backing.as_raw_fd() as libc::c_ulong,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `info` is a live `struct loop_info64` that LOOP_SET_STATUS64 only reads.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_SET_STATUS64 as _,
            info as *const LoopInfo64,
        )
    };
    if r < 0 {
        let err = io::Error::last_os_error();
        // SAFETY: valid fd; LOOP_CLR_FD takes no argument. Undo our own attach.
        unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as _, 0) };
        return Err(err);
    }
    Ok(())
}

/// Loop devices whose backing file is `image` (compared by path as the kernel shows it).
pub(crate) fn loops_backed_by(image: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if Path::new(b.trim_end_matches('\n')) == image {
                out.push(PathBuf::from("/dev").join(&name));
            }
        }
    }
    out.sort();
    out
}

/// Whether this process has CAP_SYS_RESOURCE (needed for online ext4 resize).
pub(crate) fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Makes the loop device re-read the size of its backing file.
pub(crate) fn loop_set_capacity(device: &Path) -> io::Result<()> {
    let f = open_loop_device(device)?;
    // SAFETY: valid loop device fd; LOOP_SET_CAPACITY takes no argument.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), LOOP_SET_CAPACITY as _, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Processes.

/// Field 22 (`starttime`) of `/proc/PID/stat`, and whether the process is a zombie.
pub(crate) fn proc_start_time(pid: u32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces or ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is at index 19.
    let state = fields.first()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, *state == "Z" || *state == "X"))
}

/// Whether the process `pid` that started at `start` is still running (not reused, not
/// a zombie).
pub(crate) fn process_alive(pid: u32, start: u64) -> bool {
    matches!(proc_start_time(pid), Some((s, false)) if s == start)
}

pub(crate) fn self_identity() -> (u32, u64) {
    let pid = std::process::id();
    let start = proc_start_time(pid).map(|(s, _)| s).unwrap_or(0);
    (pid, start)
}

/// Finds an executable in PATH or the usual sbin directories.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_kernel_abi() {
        assert_eq!(std::mem::size_of::<FsXattr>(), 28);
        assert_eq!(std::mem::size_of::<FsDiskQuota>(), 112);
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
        assert_eq!(std::mem::size_of::<libc::dqblk>(), 72);
    }

    #[test]
    fn mountinfo_parsing() {
        let text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n\
                    90 27 7:3 / /tmp/a\\040b rw,relatime shared:5 - xfs /dev/loop3 rw,attr2,prjquota\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].mount_point, PathBuf::from("/tmp/a b"));
        assert_eq!(m[1].fstype, "xfs");
        assert_eq!(m[1].source, "/dev/loop3");
        assert!(m[1].has_super_opt("prjquota"));
        assert!(!m[0].has_super_opt("prjquota"));
        assert_eq!((m[1].major, m[1].minor), (7, 3));
    }

    #[test]
    fn own_process_is_alive() {
        let (pid, start) = self_identity();
        assert!(start > 0);
        assert!(process_alive(pid, start));
        assert!(!process_alive(pid, start + 1));
    }

    #[test]
    fn fsxattr_ioctls() {
        // Validates the ioctl numbers and struct layout on any filesystem that supports
        // FS_IOC_FS[GS]ETXATTR (ext4, xfs): keep project id 0, set the inherit flag.
        let tmp = tempfile::tempdir().unwrap();
        let x = match get_fsxattr(tmp.path()) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("SKIPPED: FS_IOC_FSGETXATTR unsupported here: {e}");
                return;
            }
        };
        assert_eq!(x.fsx_projid, 0);
        match set_project(tmp.path(), 0) {
            Ok(()) => {
                let x = get_fsxattr(tmp.path()).unwrap();
                assert_ne!(x.fsx_xflags & FS_XFLAG_PROJINHERIT, 0);
            }
            Err(e) => eprintln!("SKIPPED: FS_IOC_FSSETXATTR unsupported here: {e}"),
        }
    }

    #[test]
    fn qcmd_encoding() {
        assert_eq!(qcmd(Q_XSETQLIM, XQM_PRJQUOTA) as u32, 0x0058_0402);
        assert_eq!(qcmd(libc::Q_SETQUOTA as u32, PRJQUOTA) as u32, 0x8000_0802);
    }
}
