//! The volume store: metadata, the atomic claim, backends and recovery.

use crate::sys::{self, QuotaKind};
use crate::{
    format_size, BackendChoice, CreateRequest, Enforcement, Volume, VolumeError, VolumeKey,
    VolumeState, CRASH_AT_ENV, MIN_SIZE,
};
use nix::fcntl::{Flock, FlockArg, RenameFlags, AT_FDCWD};
use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RECORD: &str = "volume.json";
const DATA: &str = "data";
const IMAGE: &str = "image.ext4";
const STORE_META: &str = "store.json";
const STORE_LOCK: &str = "store.lock";
const FIRST_PROJECT_ID: u32 = 1000;
/// Most entries a usage walk of a dir volume visits.
const WALK_LIMIT: u64 = 1_000_000;
/// How long external tools (mkfs.ext4, resize2fs) may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(300);
/// How often an unmount is retried while the mount is busy (100 ms apart).
const UMOUNT_TRIES: u32 = 30;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// The durable record in `volume.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    version: u32,
    volume: Volume,
    /// The process creating the volume (while state is Creating).
    #[serde(default)]
    creator: Option<Creator>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Creator {
    pid: u32,
    /// Field 22 of /proc/PID/stat, to tell a reused pid from the creator.
    start_time: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreMeta {
    version: u32,
    next_project_id: u32,
}

/// The backend a create resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Xfs,
    Ext4,
    Loop,
    Dir,
}

/// A store of volumes under one root directory (see the crate docs for the layout).
#[derive(Debug, Clone)]
pub struct VolumeStore {
    root: PathBuf,
    warnings: Vec<String>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn crash_hook(point: &str) {
    if std::env::var(CRASH_AT_ENV).is_ok_and(|v| v == point) {
        // Test hook (see the crate docs): simulate the creator dying here.
        std::process::exit(99);
    }
}

fn fsync_dir(dir: &Path) -> Result<(), VolumeError> {
    let f = File::open(dir).map_err(|e| VolumeError::io("open directory", dir, e))?;
    f.sync_all()
        .map_err(|e| VolumeError::io("fsync directory", dir, e))
}

/// Replaces `dir/name` atomically and durably: temp file, fsync, rename, fsync dir.
fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<(), VolumeError> {
    let (pid, _) = sys::self_identity();
    let tmp = dir.join(format!(
        ".{name}.tmp-{pid}-{}",
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| VolumeError::io("create", &tmp, e))?;
        f.write_all(data)
            .map_err(|e| VolumeError::io("write", &tmp, e))?;
        f.sync_all()
            .map_err(|e| VolumeError::io("fsync", &tmp, e))?;
        let dst = dir.join(name);
        fs::rename(&tmp, &dst).map_err(|e| VolumeError::io("rename into place", &dst, e))?;
        fsync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, VolumeError> {
    let mut text = String::new();
    match File::open(path) {
        Ok(mut f) => f
            .read_to_string(&mut text)
            .map_err(|e| VolumeError::io("read", path, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(VolumeError::io("open", path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| VolumeError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
}

fn remove_tree(path: &Path) -> Result<(), VolumeError> {
    // Bounded: concurrent removers may race us; retry a few times and judge by the end.
    let mut last = None;
    for _ in 0..5 {
        match fs::remove_dir_all(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        if fs::symlink_metadata(path).is_err() {
            return Ok(());
        }
    }
    Err(VolumeError::io(
        "remove",
        path,
        last.unwrap_or_else(|| io::Error::other("unknown error")),
    ))
}

/// Runs an external tool with a time limit; its stderr goes into the error.
fn run_tool(tool: &str, args: &[&str]) -> Result<(), VolumeError> {
    run_tool_ok(tool, args, &[0])
}

/// Like `run_tool`, accepting the exit codes in `ok`.
fn run_tool_ok(tool: &str, args: &[&str], ok: &[i32]) -> Result<(), VolumeError> {
    let command = format!("{tool} {}", args.join(" "));
    let path = sys::find_tool(tool).ok_or_else(|| VolumeError::Command {
        command: command.clone(),
        detail: format!("{tool} not found"),
    })?;
    let mut child = Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| VolumeError::Command {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                // Our own child: end it by its pid.
                let _ = child.kill();
                let _ = child.wait();
                return Err(VolumeError::Command {
                    command,
                    detail: format!("timed out after {}s", TOOL_TIMEOUT.as_secs()),
                });
            }
            Err(e) => {
                return Err(VolumeError::Command {
                    command,
                    detail: e.to_string(),
                })
            }
        }
    };
    let mut stderr = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut stderr);
    }
    if !status.code().is_some_and(|c| ok.contains(&c)) {
        return Err(VolumeError::Command {
            command,
            detail: format!("{status}: {}", stderr.trim()),
        });
    }
    Ok(())
}

fn umount_bounded(key: &VolumeKey, target: &Path) -> Result<(), VolumeError> {
    for _ in 0..UMOUNT_TRIES {
        match sys::mounted_at(target) {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(e) => return Err(VolumeError::io("read mount table for", target, e)),
        }
        match nix::mount::umount2(target, MntFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) => std::thread::sleep(Duration::from_millis(100)),
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(VolumeError::io("unmount", target, e.into())),
        }
    }
    Err(VolumeError::Busy {
        key: key.to_string(),
        reason: format!(
            "{} is still in use (unmount kept failing with EBUSY)",
            target.display()
        ),
    })
}

/// Allocated bytes below `root`, not crossing mounts, hard links counted once, at most
/// WALK_LIMIT entries (a lower bound past that).
fn walk_usage(root: &Path) -> io::Result<u64> {
    let top = fs::symlink_metadata(root)?;
    let dev = top.dev();
    let mut total = top.blocks() * 512;
    let mut seen = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    let mut visited = 0u64;
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            visited += 1;
            if visited > WALK_LIMIT {
                return Ok(total);
            }
            let Ok(entry) = entry else { continue };
            let Ok(md) = entry.path().symlink_metadata() else {
                continue;
            };
            if md.dev() != dev {
                continue;
            }
            if md.is_dir() {
                total += md.blocks() * 512;
                stack.push(entry.path());
            } else if md.nlink() <= 1 || seen.insert((md.dev(), md.ino())) {
                total += md.blocks() * 512;
            }
        }
    }
    Ok(total)
}

impl VolumeStore {
    /// Opens (creates) the store at `root` and recovers it: volumes left in `Creating`
    /// by a dead creator are removed (an interrupted create never shows up as usable),
    /// `Destroying` ones are finished, and `Ready` loop volumes whose mount is gone
    /// (after a reboot) are re-attached and re-mounted. Problems with single volumes do
    /// not fail the open; they are listed by [`VolumeStore::recovery_warnings`].
    pub fn open(root: &Path) -> Result<VolumeStore, VolumeError> {
        fs::create_dir_all(root).map_err(|e| VolumeError::io("create store directory", root, e))?;
        let root = root
            .canonicalize()
            .map_err(|e| VolumeError::io("resolve store directory", root, e))?;
        for sub in ["volumes", "staging"] {
            let p = root.join(sub);
            match fs::create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(VolumeError::io("create directory", &p, e)),
            }
        }
        let mut store = VolumeStore {
            root,
            warnings: Vec::new(),
        };
        let _lock = store.lock()?;
        store.recover()?;
        Ok(store)
    }

    /// The store's root directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What [`VolumeStore::open`] could not recover, one line per volume.
    pub fn recovery_warnings(&self) -> &[String] {
        &self.warnings
    }

    fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    fn volume_dir(&self, key: &VolumeKey) -> PathBuf {
        self.volumes_dir().join(key.dir_name())
    }

    fn lock(&self) -> Result<Flock<File>, VolumeError> {
        let p = self.root.join(STORE_LOCK);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&p)
            .map_err(|e| VolumeError::io("open lock file", &p, e))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| VolumeError::io("lock", &p, e.into()))
    }

    /// Reads a record and re-derives the paths from where the store is now.
    fn read_record(&self, dir: &Path) -> Result<Option<Record>, VolumeError> {
        let Some(mut rec) = read_json::<Record>(&dir.join(RECORD))? else {
            return Ok(None);
        };
        rec.volume.path = dir.join(DATA);
        if let Enforcement::LoopImage { image, .. } = &mut rec.volume.enforcement {
            *image = dir.join(IMAGE);
        }
        rec.volume.usage_bytes = None;
        Ok(Some(rec))
    }

    fn write_record(&self, dir: &Path, rec: &Record) -> Result<(), VolumeError> {
        let mut rec = rec.clone();
        rec.volume.usage_bytes = None;
        let json = serde_json::to_vec_pretty(&rec).map_err(|e| VolumeError::Corrupt {
            path: dir.join(RECORD),
            detail: e.to_string(),
        })?;
        write_atomic(dir, RECORD, &json)
    }

    fn recover(&mut self) -> Result<(), VolumeError> {
        // Staging directories of dead creators (never claimed, no backend set up).
        let staging = self.root.join("staging");
        let entries = fs::read_dir(&staging).map_err(|e| VolumeError::io("read", &staging, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut parts = name.split('-');
            let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
            let start = parts.next().and_then(|p| p.parse::<u64>().ok());
            match (pid, start) {
                (Some(pid), Some(start)) if sys::process_alive(pid, start) => {}
                (Some(_), Some(_)) => {
                    if let Err(e) = remove_tree(&entry.path()) {
                        self.warnings.push(e.to_string());
                    }
                }
                _ => self.warnings.push(format!(
                    "unexpected entry {} in staging",
                    entry.path().display()
                )),
            }
        }

        let vols = self.volumes_dir();
        let entries = fs::read_dir(&vols).map_err(|e| VolumeError::io("read", &vols, e))?;
        for entry in entries.flatten() {
            let dir = entry.path();
            let rec = match self.read_record(&dir) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.warnings
                        .push(format!("{} has no {RECORD}; left alone", dir.display()));
                    continue;
                }
                Err(e) => {
                    self.warnings.push(e.to_string());
                    continue;
                }
            };
            let key = rec.volume.key.clone();
            let res = match rec.volume.state {
                VolumeState::Creating => {
                    let alive = rec
                        .creator
                        .is_some_and(|c| sys::process_alive(c.pid, c.start_time));
                    if alive {
                        Ok(())
                    } else {
                        self.teardown(&dir, &rec)
                    }
                }
                VolumeState::Destroying => self.teardown(&dir, &rec),
                VolumeState::Ready => match rec.volume.enforcement {
                    Enforcement::LoopImage { .. } => self.ensure_mounted(&dir, &rec).map(drop),
                    _ => Ok(()),
                },
            };
            if let Err(e) = res {
                self.warnings.push(format!("volume \"{key}\": {e}"));
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------
    // Backend availability.

    fn quota_device(&self, kind: QuotaKind) -> Result<PathBuf, String> {
        let (want, name) = match kind {
            QuotaKind::Xfs => ("xfs", "xfs"),
            QuotaKind::Ext4 => ("ext4", "ext4"),
        };
        let m = sys::mount_for(&self.root).map_err(|e| format!("cannot find its mount: {e}"))?;
        if m.fstype != want {
            return Err(format!(
                "the store root is on {} (mounted at {}), not {name}",
                m.fstype,
                m.mount_point.display()
            ));
        }
        let enforced = match kind {
            QuotaKind::Xfs => m.has_super_opt("prjquota") || m.has_super_opt("pquota"),
            QuotaKind::Ext4 => m.has_super_opt("prjquota"),
        };
        if !enforced {
            return Err(format!(
                "{} is not mounted with prjquota (super options: {})",
                m.mount_point.display(),
                m.super_opts
            ));
        }
        if !nix::unistd::geteuid().is_root() {
            return Err("setting project quota limits needs root (CAP_SYS_ADMIN)".into());
        }
        let dev = sys::block_device(&m).map_err(|e| e.to_string())?;
        sys::get_project_quota(kind, &dev, 0)
            .map_err(|e| format!("project quotas do not answer on {}: {e}", dev.display()))?;
        Ok(dev)
    }

    fn check(&self, b: Backend) -> Result<(), String> {
        match b {
            Backend::Xfs => self.quota_device(QuotaKind::Xfs).map(drop),
            Backend::Ext4 => self.quota_device(QuotaKind::Ext4).map(drop),
            Backend::Loop => {
                if !nix::unistd::geteuid().is_root() {
                    return Err("attaching and mounting loop devices needs root".into());
                }
                if !Path::new("/dev/loop-control").exists() {
                    return Err("/dev/loop-control does not exist".into());
                }
                for tool in ["mkfs.ext4", "resize2fs", "e2fsck"] {
                    if sys::find_tool(tool).is_none() {
                        return Err(format!("{tool} not found (install e2fsprogs)"));
                    }
                }
                Ok(())
            }
            Backend::Dir => Ok(()),
        }
    }

    fn resolve(&self, choice: BackendChoice) -> Result<Backend, VolumeError> {
        let unavailable = |reason: String| VolumeError::BackendUnavailable {
            backend: choice,
            root: self.root.clone(),
            reason,
        };
        let explicit = match choice {
            BackendChoice::Xfs => Backend::Xfs,
            BackendChoice::Ext4 => Backend::Ext4,
            BackendChoice::Loop => Backend::Loop,
            BackendChoice::Dir => Backend::Dir,
            BackendChoice::Auto => {
                let mut reasons = Vec::new();
                for (b, name) in [
                    (Backend::Xfs, "xfs"),
                    (Backend::Ext4, "ext4"),
                    (Backend::Loop, "loop"),
                ] {
                    match self.check(b) {
                        Ok(()) => return Ok(b),
                        Err(r) => reasons.push(format!("{name}: {r}")),
                    }
                }
                return Err(unavailable(format!(
                    "no enforcing backend can be used ({}); ask for backend dir explicitly for an unenforced volume",
                    reasons.join("; ")
                )));
            }
        };
        self.check(explicit).map_err(unavailable)?;
        Ok(explicit)
    }

    /// Ok if volumes can be created here with `b`, else an error saying why not. For
    /// `Auto`: Ok if any enforcing backend can be used.
    pub fn backend_available(&self, b: BackendChoice) -> Result<(), VolumeError> {
        self.resolve(b).map(drop)
    }

    // ------------------------------------------------------------------------------
    // Project ids.

    /// Allocates a project id unique in this store (a persisted counter from 1000, past
    /// every id recorded by a volume) that the filesystem shows no usage or limit for.
    fn allocate_project_id(&self, kind: QuotaKind, dev: &Path) -> Result<u32, VolumeError> {
        let _lock = self.lock()?;
        let meta_path = self.root.join(STORE_META);
        let meta: StoreMeta = read_json(&meta_path)?.unwrap_or_default();
        let mut id = meta.next_project_id.max(FIRST_PROJECT_ID);
        for dir in [self.volumes_dir(), self.root.join("staging")] {
            let entries = fs::read_dir(&dir).map_err(|e| VolumeError::io("read", &dir, e))?;
            for entry in entries.flatten() {
                if let Ok(Some(rec)) = self.read_record(&entry.path()) {
                    if let Enforcement::XfsProjectQuota { project_id }
                    | Enforcement::Ext4ProjectQuota { project_id } = rec.volume.enforcement
                    {
                        id = id.max(project_id.saturating_add(1));
                    }
                }
            }
        }
        let mut found = None;
        for _ in 0..100_000 {
            let q = sys::get_project_quota(kind, dev, id)
                .map_err(|e| VolumeError::io("read project quota on", dev, e))?;
            if q.used == 0 && q.hard_limit == 0 {
                found = Some(id);
                break;
            }
            id = id.checked_add(1).ok_or_else(|| VolumeError::Corrupt {
                path: meta_path.clone(),
                detail: "project ids exhausted".into(),
            })?;
        }
        let id = found.ok_or_else(|| VolumeError::Corrupt {
            path: meta_path.clone(),
            detail: "no free project id found in 100000 candidates".into(),
        })?;
        let meta = StoreMeta {
            version: 1,
            next_project_id: id + 1,
        };
        let json = serde_json::to_vec_pretty(&meta).expect("store metadata serialises");
        write_atomic(&self.root, STORE_META, &json)?;
        Ok(id)
    }

    // ------------------------------------------------------------------------------
    // Create.

    /// Creates a volume. Concurrent creates of the same key (threads or processes):
    /// exactly one wins, the others get [`VolumeError::AlreadyExists`].
    pub fn create(&self, req: &CreateRequest) -> Result<Volume, VolumeError> {
        req.key.validate()?;
        let key_s = req.key.to_string();
        let invalid = |reason: String| VolumeError::InvalidRequest {
            key: key_s.clone(),
            reason,
        };
        if req.size_bytes < MIN_SIZE {
            return Err(VolumeError::InvalidSize {
                value: req.size_bytes.to_string(),
                reason: "must be at least 1 MiB".into(),
            });
        }
        if req.mode > 0o7777 {
            return Err(invalid(format!(
                "mode {:o} has bits beyond 0o7777",
                req.mode
            )));
        }
        if req.kill_over_size && req.backend != BackendChoice::Dir {
            return Err(invalid(
                "kill_over_size applies only to the dir backend (the others enforce the size)"
                    .into(),
            ));
        }
        let dir = self.volume_dir(&req.key);
        if dir.exists() {
            return Err(VolumeError::AlreadyExists(key_s));
        }
        let backend = self.resolve(req.backend)?;
        let (uid, gid) = req.owner.unwrap_or_else(|| {
            (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            )
        });
        let enforcement = match backend {
            Backend::Xfs | Backend::Ext4 => {
                let kind = if backend == Backend::Xfs {
                    QuotaKind::Xfs
                } else {
                    QuotaKind::Ext4
                };
                let dev =
                    self.quota_device(kind)
                        .map_err(|reason| VolumeError::BackendUnavailable {
                            backend: req.backend,
                            root: self.root.clone(),
                            reason,
                        })?;
                let project_id = self.allocate_project_id(kind, &dev)?;
                if kind == QuotaKind::Xfs {
                    Enforcement::XfsProjectQuota { project_id }
                } else {
                    Enforcement::Ext4ProjectQuota { project_id }
                }
            }
            Backend::Loop => Enforcement::LoopImage {
                image: dir.join(IMAGE),
                fs: "ext4".into(),
                loop_device: None,
            },
            Backend::Dir => Enforcement::Unenforced,
        };
        let (pid, start_time) = sys::self_identity();
        let mut rec = Record {
            version: 1,
            volume: Volume {
                key: req.key.clone(),
                size_bytes: req.size_bytes,
                uid,
                gid,
                mode: req.mode,
                enforcement,
                state: VolumeState::Creating,
                path: dir.join(DATA),
                created: now_secs(),
                usage_bytes: None,
                kill_over_size: req.kill_over_size,
            },
            creator: Some(Creator { pid, start_time }),
        };

        // Build the claim in staging, then rename it into place without replacing.
        let staging = self.root.join("staging").join(format!(
            "{pid}-{start_time}-{}",
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&staging).map_err(|e| VolumeError::io("create directory", &staging, e))?;
        let claimed = self.write_record(&staging, &rec).and_then(|()| {
            nix::fcntl::renameat2(
                AT_FDCWD,
                &staging,
                AT_FDCWD,
                &dir,
                RenameFlags::RENAME_NOREPLACE,
            )
            .map_err(|e| match e {
                nix::errno::Errno::EEXIST | nix::errno::Errno::ENOTEMPTY => {
                    VolumeError::AlreadyExists(key_s.clone())
                }
                e => VolumeError::io("claim (rename into place)", &dir, e.into()),
            })
        });
        if let Err(e) = claimed {
            let _ = remove_tree(&staging);
            return Err(e);
        }
        fsync_dir(&self.volumes_dir())?;
        crash_hook("after-claim");

        if let Err(e) = self.setup_backend(&dir, &mut rec) {
            let _ = self.teardown(&dir, &rec);
            return Err(e);
        }
        crash_hook("after-backend");

        rec.volume.state = VolumeState::Ready;
        rec.creator = None;
        if let Err(e) = self.write_record(&dir, &rec) {
            let _ = self.teardown(&dir, &rec);
            return Err(e);
        }
        let mut vol = rec.volume;
        vol.usage_bytes = self.usage(&dir, &vol);
        Ok(vol)
    }

    fn prepare_data_dir(&self, data: &Path, v: &Volume) -> Result<(), VolumeError> {
        match fs::create_dir(data) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(VolumeError::io("create directory", data, e)),
        }
        self.set_owner_mode(data, v)
    }

    fn set_owner_mode(&self, data: &Path, v: &Volume) -> Result<(), VolumeError> {
        let md = fs::metadata(data).map_err(|e| VolumeError::io("stat", data, e))?;
        if md.uid() != v.uid || md.gid() != v.gid {
            nix::unistd::chown(
                data,
                Some(nix::unistd::Uid::from_raw(v.uid)),
                Some(nix::unistd::Gid::from_raw(v.gid)),
            )
            .map_err(|e| VolumeError::io("change owner of", data, e.into()))?;
        }
        fs::set_permissions(data, fs::Permissions::from_mode(v.mode))
            .map_err(|e| VolumeError::io("change mode of", data, e))
    }

    fn setup_backend(&self, dir: &Path, rec: &mut Record) -> Result<(), VolumeError> {
        let data = dir.join(DATA);
        let v = rec.volume.clone();
        match &v.enforcement {
            Enforcement::Unenforced => self.prepare_data_dir(&data, &v),
            Enforcement::XfsProjectQuota { project_id }
            | Enforcement::Ext4ProjectQuota { project_id } => {
                let kind = quota_kind(&v.enforcement);
                self.prepare_data_dir(&data, &v)?;
                sys::set_project(&data, *project_id)
                    .map_err(|e| VolumeError::io("set project id on", &data, e))?;
                let dev = self.quota_dev_for(&v)?;
                sys::set_project_limit(kind, &dev, *project_id, v.size_bytes)
                    .map_err(|e| VolumeError::io("set project quota limit on", &dev, e))
            }
            Enforcement::LoopImage { .. } => {
                let image = dir.join(IMAGE);
                let f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                    .open(&image)
                    .map_err(|e| VolumeError::io("create image", &image, e))?;
                f.set_len(v.size_bytes.div_ceil(4096) * 4096)
                    .map_err(|e| VolumeError::io("size image", &image, e))?;
                f.sync_all()
                    .map_err(|e| VolumeError::io("fsync", &image, e))?;
                drop(f);
                let owner = format!("root_owner={}:{}", v.uid, v.gid);
                let image_s = image.to_string_lossy().into_owned();
                run_tool(
                    "mkfs.ext4",
                    &["-q", "-F", "-m", "0", "-E", &owner, &image_s],
                )?;
                fs::create_dir(&data).map_err(|e| VolumeError::io("create directory", &data, e))?;
                let device = self.ensure_mounted(dir, rec)?;
                self.set_owner_mode(&data, &v)?;
                if let Enforcement::LoopImage { loop_device, .. } = &mut rec.volume.enforcement {
                    *loop_device = Some(device);
                }
                Ok(())
            }
        }
    }

    /// The block device for quotactl(2): the device of the mount holding the store.
    fn quota_dev_for(&self, _v: &Volume) -> Result<PathBuf, VolumeError> {
        let m = sys::mount_for(&self.root)
            .map_err(|e| VolumeError::io("find the mount of", &self.root, e))?;
        sys::block_device(&m)
            .map_err(|e| VolumeError::io("find the block device of", &m.mount_point, e))
    }

    /// Makes sure a loop volume's image is mounted at its data directory; returns the
    /// loop device.
    fn ensure_mounted(&self, dir: &Path, rec: &Record) -> Result<String, VolumeError> {
        let data = dir.join(DATA);
        if let Some(m) =
            sys::mounted_at(&data).map_err(|e| VolumeError::io("read mount table for", &data, e))?
        {
            return Ok(m.source);
        }
        let image = dir.join(IMAGE);
        // A device still attached to the image (the filesystem is still mounted in some
        // other mount namespace) must be reused: two devices on one image would corrupt it.
        if let Some(existing) = sys::loops_backed_by(&image).into_iter().next() {
            nix::mount::mount(
                Some(&existing),
                &data,
                Some(rec.volume_fs()),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                None::<&str>,
            )
            .map_err(|e| VolumeError::io("mount", &data, e.into()))?;
            return Ok(existing.to_string_lossy().into_owned());
        }
        let lo = sys::attach_loop(&image)
            .map_err(|e| VolumeError::io("attach a loop device to", &image, e))?;
        nix::mount::mount(
            Some(&lo.device),
            &data,
            Some(rec.volume_fs()),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        )
        .map_err(|e| VolumeError::io("mount", &data, e.into()))?;
        // The mount now holds the device; dropping `lo` lets autoclear detach it at unmount.
        Ok(lo.device.to_string_lossy().into_owned())
    }

    /// Grows a loop volume's filesystem (image already extended) while unmounted: for
    /// processes without CAP_SYS_RESOURCE, which online ext4 resize needs. Only done
    /// when nothing else uses the filesystem (its loop device went away on unmount);
    /// otherwise the volume is re-mounted and the grow refused as busy.
    fn grow_offline(&self, dir: &Path, rec: &Record) -> Result<(), VolumeError> {
        let key = &rec.volume.key;
        let image = dir.join(IMAGE);
        umount_bounded(key, &dir.join(DATA))?;
        let mut detached = false;
        for _ in 0..50 {
            if sys::loops_backed_by(&image).is_empty() {
                detached = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let res = if detached {
            let image_s = image.to_string_lossy().into_owned();
            // e2fsck exit 1: errors corrected; resize2fs wants a freshly checked fs.
            run_tool_ok("e2fsck", &["-f", "-p", &image_s], &[0, 1])
                .and_then(|()| run_tool("resize2fs", &[&image_s]))
        } else {
            Err(VolumeError::Busy {
                key: key.to_string(),
                reason: "its filesystem is still in use elsewhere and this process lacks \
                         CAP_SYS_RESOURCE for an online grow"
                    .into(),
            })
        };
        let mounted = self.ensure_mounted(dir, rec);
        res?;
        mounted.map(drop)
    }

    /// Shrinks a loop volume to `new_size` while unmounted (ext4 cannot
    /// shrink online): only when nothing else uses the filesystem; the
    /// volume is mounted again whatever happens.
    fn shrink_offline(&self, dir: &Path, rec: &Record, new_size: u64) -> Result<(), VolumeError> {
        let key = &rec.volume.key;
        let image = dir.join(IMAGE);
        umount_bounded(key, &dir.join(DATA))?;
        let mut detached = false;
        for _ in 0..50 {
            if sys::loops_backed_by(&image).is_empty() {
                detached = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let blocks = new_size / 4096 * 4096;
        let res = if detached {
            let image_s = image.to_string_lossy().into_owned();
            run_tool_ok("e2fsck", &["-f", "-p", &image_s], &[0, 1])
                .and_then(|()| run_tool("resize2fs", &[&image_s, &format!("{}K", blocks / 1024)]))
                .and_then(|()| {
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&image)
                        .map_err(|e| VolumeError::io("open image", &image, e))?;
                    f.set_len(blocks)
                        .map_err(|e| VolumeError::io("shrink image", &image, e))?;
                    f.sync_all()
                        .map_err(|e| VolumeError::io("fsync", &image, e))
                })
        } else {
            Err(VolumeError::Busy {
                key: key.to_string(),
                reason: "its filesystem is still in use elsewhere; it can only shrink unmounted"
                    .into(),
            })
        };
        let mounted = self.ensure_mounted(dir, rec);
        res?;
        mounted.map(drop)
    }

    /// Removes whatever the backend set up and the volume directory. Idempotent.
    fn teardown(&self, dir: &Path, rec: &Record) -> Result<(), VolumeError> {
        let data = dir.join(DATA);
        let key = &rec.volume.key;
        match &rec.volume.enforcement {
            Enforcement::Unenforced => {}
            Enforcement::XfsProjectQuota { project_id }
            | Enforcement::Ext4ProjectQuota { project_id } => {
                remove_tree(&data)?;
                let dev = self.quota_dev_for(&rec.volume)?;
                sys::set_project_limit(quota_kind(&rec.volume.enforcement), &dev, *project_id, 0)
                    .map_err(|e| VolumeError::io("remove project quota limit on", &dev, e))?;
            }
            Enforcement::LoopImage { .. } => umount_bounded(key, &data)?,
        }
        remove_tree(dir)?;
        fsync_dir(&self.volumes_dir())
    }

    // ------------------------------------------------------------------------------
    // Destroy, get, list, resize.

    /// Destroys a volume and its data. A volume that does not exist is Ok (so repeated
    /// destroys succeed); one still being created by a live process is Busy.
    pub fn destroy(&self, key: &VolumeKey) -> Result<(), VolumeError> {
        key.validate()?;
        let dir = self.volume_dir(key);
        let _lock = self.lock()?;
        let Some(mut rec) = self.read_record(&dir)? else {
            return Ok(());
        };
        if rec.volume.state == VolumeState::Creating
            && rec
                .creator
                .is_some_and(|c| sys::process_alive(c.pid, c.start_time))
        {
            return Err(VolumeError::Busy {
                key: key.to_string(),
                reason: "it is still being created".into(),
            });
        }
        if rec.volume.state != VolumeState::Destroying {
            rec.volume.state = VolumeState::Destroying;
            self.write_record(&dir, &rec)?;
        }
        self.teardown(&dir, &rec)
    }

    fn usage(&self, dir: &Path, v: &Volume) -> Option<u64> {
        let data = dir.join(DATA);
        match &v.enforcement {
            Enforcement::Unenforced => walk_usage(&data).ok(),
            Enforcement::XfsProjectQuota { project_id }
            | Enforcement::Ext4ProjectQuota { project_id } => {
                let dev = self.quota_dev_for(v).ok()?;
                sys::get_project_quota(quota_kind(&v.enforcement), &dev, *project_id)
                    .ok()
                    .map(|q| q.used)
            }
            Enforcement::LoopImage { .. } => {
                sys::mounted_at(&data).ok()??;
                let st = nix::sys::statvfs::statvfs(&data).ok()?;
                Some(
                    (st.blocks() as u64).saturating_sub(st.blocks_free() as u64)
                        * st.fragment_size() as u64,
                )
            }
        }
    }

    /// Fills usage and the live loop device of a record read from `dir`.
    fn live(&self, dir: &Path, rec: Record) -> Volume {
        let mut v = rec.volume;
        if v.state == VolumeState::Ready {
            v.usage_bytes = self.usage(dir, &v);
            if let Enforcement::LoopImage { loop_device, .. } = &mut v.enforcement {
                *loop_device = sys::mounted_at(&dir.join(DATA))
                    .ok()
                    .flatten()
                    .map(|m| m.source);
            }
        }
        v
    }

    /// A ready volume with its usage. A volume still being created gives
    /// [`VolumeError::Incomplete`]; one being destroyed, [`VolumeError::NotFound`].
    pub fn get(&self, key: &VolumeKey) -> Result<Volume, VolumeError> {
        key.validate()?;
        let dir = self.volume_dir(key);
        let rec = self
            .read_record(&dir)?
            .ok_or_else(|| VolumeError::NotFound(key.to_string()))?;
        match rec.volume.state {
            VolumeState::Ready => Ok(self.live(&dir, rec)),
            VolumeState::Creating => Err(VolumeError::Incomplete(key.to_string())),
            VolumeState::Destroying => Err(VolumeError::NotFound(key.to_string())),
        }
    }

    /// All volumes sorted by key, ready ones with usage; volumes being created or
    /// destroyed are listed with their state (and are not usable).
    pub fn list(&self) -> Result<Vec<Volume>, VolumeError> {
        let vols = self.volumes_dir();
        let entries = fs::read_dir(&vols).map_err(|e| VolumeError::io("read", &vols, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| VolumeError::io("read", &vols, e))?;
            let dir = entry.path();
            // A volume destroyed meanwhile, or an unreadable record, is skipped.
            if let Ok(Some(rec)) = self.read_record(&dir) {
                out.push(self.live(&dir, rec));
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Changes the size. Growing always works; shrinking only down to the usage
    /// (loop-image volumes shrink unmounted, so only when nothing uses them).
    pub fn resize(&self, key: &VolumeKey, new_size: u64) -> Result<Volume, VolumeError> {
        key.validate()?;
        if new_size < MIN_SIZE {
            return Err(VolumeError::InvalidSize {
                value: new_size.to_string(),
                reason: "must be at least 1 MiB".into(),
            });
        }
        let dir = self.volume_dir(key);
        let _lock = self.lock()?;
        let mut rec = self
            .read_record(&dir)?
            .ok_or_else(|| VolumeError::NotFound(key.to_string()))?;
        match rec.volume.state {
            VolumeState::Ready => {}
            VolumeState::Creating => return Err(VolumeError::Incomplete(key.to_string())),
            VolumeState::Destroying => return Err(VolumeError::NotFound(key.to_string())),
        }
        let v = rec.volume.clone();
        if new_size == v.size_bytes {
            return Ok(self.live(&dir, rec));
        }
        let check_usage = |used: Option<u64>| -> Result<(), VolumeError> {
            if new_size < v.size_bytes {
                let used = used.ok_or_else(|| VolumeError::Busy {
                    key: key.to_string(),
                    reason: "its usage cannot be measured, so it cannot shrink".into(),
                })?;
                if used > new_size {
                    return Err(VolumeError::ShrinkBelowUsage {
                        key: key.to_string(),
                        requested: format_size(new_size),
                        used: format_size(used),
                    });
                }
            }
            Ok(())
        };
        match &v.enforcement {
            Enforcement::Unenforced => check_usage(self.usage(&dir, &v))?,
            Enforcement::XfsProjectQuota { project_id }
            | Enforcement::Ext4ProjectQuota { project_id } => {
                check_usage(self.usage(&dir, &v))?;
                let dev = self.quota_dev_for(&v)?;
                sys::set_project_limit(quota_kind(&v.enforcement), &dev, *project_id, new_size)
                    .map_err(|e| VolumeError::io("set project quota limit on", &dev, e))?;
            }
            Enforcement::LoopImage { .. } => {
                if new_size < v.size_bytes {
                    check_usage(self.usage(&dir, &v))?;
                    // ext4 shrinks only offline: unmount, check, shrink the
                    // filesystem, then the image. The volume's usage was
                    // checked against the new size above.
                    self.shrink_offline(&dir, &rec, new_size)?;
                    rec.volume.size_bytes = new_size;
                    self.write_record(&dir, &rec)?;
                    return Ok(self.live(&dir, rec));
                }
                let device = self.ensure_mounted(&dir, &rec)?;
                let image = dir.join(IMAGE);
                let f = OpenOptions::new()
                    .write(true)
                    .open(&image)
                    .map_err(|e| VolumeError::io("open image", &image, e))?;
                f.set_len(new_size.div_ceil(4096) * 4096)
                    .map_err(|e| VolumeError::io("grow image", &image, e))?;
                f.sync_all()
                    .map_err(|e| VolumeError::io("fsync", &image, e))?;
                if sys::has_cap_sys_resource() {
                    sys::loop_set_capacity(Path::new(&device))
                        .map_err(|e| VolumeError::io("update the capacity of", &device, e))?;
                    run_tool("resize2fs", &[&device])?;
                } else {
                    self.grow_offline(&dir, &rec)?;
                }
            }
        }
        rec.volume.size_bytes = new_size;
        self.write_record(&dir, &rec)?;
        Ok(self.live(&dir, rec))
    }
}

impl Record {
    fn volume_fs(&self) -> &str {
        match &self.volume.enforcement {
            Enforcement::LoopImage { fs, .. } => fs,
            _ => "ext4",
        }
    }
}

fn quota_kind(e: &Enforcement) -> QuotaKind {
    match e {
        Enforcement::XfsProjectQuota { .. } => QuotaKind::Xfs,
        _ => QuotaKind::Ext4,
    }
}
