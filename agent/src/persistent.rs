//! Persistent volumes on the agent: the volume store, a worker thread that
//! makes the store match the checkpointed resources, and the mounts of a
//! task's volumes.
//!
//! Creating a volume can take a while (the loop-image backend runs
//! `mkfs.ext4`), so it never runs on the event loop: each
//! `CHECKPOINT_RESOURCES` becomes a job for one worker thread, which applies
//! the jobs in order (see [`crate::checkpointed`] for the files it keeps).
//! Jobs are numbered; a task launched after a job was queued waits, in its
//! own thread, until the worker has finished that job before it looks its
//! volumes up. The master sends `CHECKPOINT_RESOURCES` before the `RUN_TASK`
//! that uses a new volume on the same stream, so the volume is there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use launcher::spec::VolumeMount;
use masterlink::resources::{Resource, Resources};
use volumes::{CreateRequest, VolumeError, VolumeKey, VolumeStore};

use crate::checkpointed::{self, TaskVolume};
use crate::paths::WorkDir;

/// How long a launch waits for the volume changes queued before it.
pub const APPLY_WAIT: Duration = Duration::from_secs(300);

/// One pass of the worker: make the store hold `target`'s volumes.
#[derive(Debug, Clone)]
pub struct Job {
    pub gen: u64,
    pub target: Resources,
    /// Volumes of tasks that are launching or running: never destroyed.
    pub in_use: BTreeSet<VolumeKey>,
}

/// What a pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub gen: u64,
    /// Volumes to destroy that are kept because a task uses them (or the
    /// destroy failed): retried later.
    pub deferred: Vec<VolumeKey>,
}

#[derive(Debug, Default)]
struct Progress {
    requested: u64,
    done: u64,
}

/// The agent's volume store and its worker.
pub struct VolumeManager {
    store: VolumeStore,
    jobs: Mutex<mpsc::Sender<Job>>,
    progress: Arc<(Mutex<Progress>, Condvar)>,
}

impl std::fmt::Debug for VolumeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeManager")
            .field("root", &self.store.root())
            .finish()
    }
}

impl VolumeManager {
    /// Opens (and recovers) the store at `root` and starts the worker, which
    /// calls `report` after each pass. The worker ends when the manager is
    /// dropped.
    pub fn start(
        root: &Path,
        work: WorkDir,
        report: impl Fn(Applied) + Send + 'static,
    ) -> Result<VolumeManager, VolumeError> {
        let store = VolumeStore::open(root)?;
        for w in store.recovery_warnings() {
            crate::log!("volume store {}: {w}", store.root().display());
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let progress: Arc<(Mutex<Progress>, Condvar)> = Arc::default();
        let worker_store = store.clone();
        let worker_progress = progress.clone();
        std::thread::Builder::new()
            .name("volumes".into())
            .spawn(move || {
                for job in rx {
                    let gen = job.gen;
                    let applied = converge(&worker_store, &work, &job);
                    {
                        let (lock, cv) = &*worker_progress;
                        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
                        p.done = p.done.max(gen);
                        cv.notify_all();
                    }
                    report(applied);
                }
            })
            .map_err(|e| VolumeError::Io {
                op: "start the volume worker for",
                path: root.to_path_buf(),
                source: e,
            })?;
        Ok(VolumeManager {
            store,
            jobs: Mutex::new(tx),
            progress,
        })
    }

    /// The store's root (hidden from tasks).
    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// Queues a pass towards `target`; returns its number.
    pub fn submit(&self, target: Resources, in_use: BTreeSet<VolumeKey>) -> u64 {
        let gen = {
            let (lock, _) = &*self.progress;
            let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
            p.requested += 1;
            p.requested
        };
        let job = Job {
            gen,
            target,
            in_use,
        };
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job);
        if sent.is_err() {
            crate::log!("the volume worker is gone: volume changes are not applied");
        }
        gen
    }

    /// The number of the last pass queued.
    pub fn requested(&self) -> u64 {
        let (lock, _) = &*self.progress;
        lock.lock().unwrap_or_else(|e| e.into_inner()).requested
    }

    /// Waits until pass `gen` is done; false on timeout.
    pub fn wait_applied(&self, gen: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.progress;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        while p.done < gen {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            p = cv
                .wait_timeout(p, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// The bind mounts of a task's volumes: each volume's data directory at
    /// `<sandbox>/<container_path>` (created on the host side, in the
    /// sandbox). Waits for pass `gen` first.
    pub fn mounts(
        &self,
        gen: u64,
        sandbox: &Path,
        task_volumes: &[TaskVolume],
    ) -> Result<Vec<VolumeMount>, String> {
        if task_volumes.is_empty() {
            return Ok(Vec::new());
        }
        if !self.wait_applied(gen, APPLY_WAIT) {
            return Err(format!(
                "the agent's volume changes did not finish within {}s",
                APPLY_WAIT.as_secs()
            ));
        }
        let mut out = Vec::new();
        for tv in task_volumes {
            let vol = self
                .store
                .get(&tv.key)
                .map_err(|e| format!("persistent volume {} is not available: {e}", tv.key))?;
            let destination = sandbox.join(&tv.container_path);
            std::fs::create_dir_all(&destination).map_err(|e| {
                format!(
                    "persistent volume {}: cannot create its mount point {}: {e}",
                    tv.key,
                    destination.display()
                )
            })?;
            out.push(VolumeMount {
                source: vol.path,
                destination,
                read_only: tv.read_only,
            });
        }
        Ok(out)
    }

    /// The store (for tests and inspection).
    pub fn store(&self) -> &VolumeStore {
        &self.store
    }
}

/// One pass: record the target, create missing and resize changed volumes,
/// destroy the ones the target dropped (unless in use), then record what is
/// on disk. Failures are logged; a task that needs a missing volume fails
/// with the reason at launch.
pub fn converge(store: &VolumeStore, work: &WorkDir, job: &Job) -> Applied {
    let applied = |deferred| Applied {
        gen: job.gen,
        deferred,
    };
    let before = match checkpointed::load(work) {
        Ok(c) => c,
        Err(e) => {
            crate::log!("checkpointed resources: {e}; volume changes not applied");
            return applied(Vec::new());
        }
    };
    // Everything this agent may have made: what was applied and what an
    // unfinished pass was making.
    let mut known: BTreeMap<VolumeKey, Resource> = BTreeMap::new();
    for r in before.info.iter().chain(before.target.iter().flatten()) {
        if let Some(Ok(spec)) = checkpointed::volume_spec(r) {
            known.entry(spec.key).or_insert_with(|| r.clone());
        }
    }
    if let Err(e) = checkpointed::write_target(work, &job.target) {
        crate::log!("checkpointing the resources to apply: {e}");
    }
    let wanted = match checkpointed::volumes_of(&job.target) {
        Ok(w) => w,
        Err(e) => {
            crate::log!("checkpointed resources: {e}; volume changes not applied");
            return applied(Vec::new());
        }
    };
    for spec in wanted.values() {
        match store.get(&spec.key) {
            Ok(v) if v.size_bytes == spec.size_bytes => {}
            Ok(v) => match store.resize(&spec.key, spec.size_bytes) {
                Ok(_) => crate::log!(
                    "persistent volume {} resized from {} to {}",
                    spec.key,
                    volumes::format_size(v.size_bytes),
                    volumes::format_size(spec.size_bytes)
                ),
                Err(e) => crate::log!("persistent volume {}: cannot resize: {e}", spec.key),
            },
            Err(VolumeError::NotFound(_)) => {
                let req = CreateRequest::new(spec.key.clone(), spec.size_bytes);
                match store.create(&req) {
                    Ok(v) => crate::log!(
                        "persistent volume {} created ({}, {})",
                        spec.key,
                        volumes::format_size(v.size_bytes),
                        enforcement_name(&v.enforcement)
                    ),
                    Err(e) => crate::log!("persistent volume {}: cannot create: {e}", spec.key),
                }
            }
            Err(e) => crate::log!("persistent volume {}: {e}", spec.key),
        }
    }
    let mut deferred = Vec::new();
    let mut info = job.target.clone();
    for (key, resource) in known.iter().filter(|(k, _)| !wanted.contains_key(*k)) {
        let keep = if job.in_use.contains(key) {
            crate::log!(
                "persistent volume {key} is in use by a running task: \
                 kept until the task ends"
            );
            true
        } else {
            match store.destroy(key) {
                Ok(()) => {
                    crate::log!("persistent volume {key} destroyed");
                    false
                }
                Err(e) => {
                    crate::log!("persistent volume {key}: cannot destroy: {e}");
                    true
                }
            }
        };
        if keep {
            deferred.push(key.clone());
            info.push(resource.clone());
        }
    }
    if let Err(e) = checkpointed::write_info(work, &info, deferred.is_empty()) {
        crate::log!("checkpointing the applied resources: {e}");
    }
    applied(deferred)
}

fn enforcement_name(e: &volumes::Enforcement) -> &'static str {
    match e {
        volumes::Enforcement::XfsProjectQuota { .. } => "XFS project quota",
        volumes::Enforcement::Ext4ProjectQuota { .. } => "ext4 project quota",
        volumes::Enforcement::LoopImage { .. } => "loop-mounted ext4 image",
        volumes::Enforcement::Unenforced => "unenforced",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    /// Skips (printing why) unless volumes with an enforced size can be made.
    fn can_make_volumes() -> bool {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (loop-mounted volume images)");
            return false;
        }
        if !["/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"]
            .iter()
            .any(|p| Path::new(p).exists())
        {
            eprintln!("skipped: mkfs.ext4 not installed");
            return false;
        }
        true
    }

    /// A volume root and work dir of the test's own; every volume in it is
    /// destroyed (its loop mount undone) on drop, even when the test fails.
    struct Fixture {
        dir: tempfile::TempDir,
        store: VolumeStore,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let store = VolumeStore::open(&dir.path().join("volumes")).unwrap();
            Fixture { dir, store }
        }

        fn work(&self) -> WorkDir {
            WorkDir::new(self.dir.path().join("work"))
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            for v in self.store.list().unwrap_or_default() {
                if let Err(e) = self.store.destroy(&v.key) {
                    eprintln!("cleanup: destroying {}: {e}", v.key);
                }
            }
        }
    }

    fn volume(mb: f64, id: &str) -> serde_json::Value {
        json!({"name": "disk", "type": "SCALAR", "scalar": {"value": mb},
               "reservations": [{"type": "DYNAMIC", "role": "eng", "principal": "p"}],
               "disk": {"persistence": {"id": id},
                        "volume": {"container_path": "data", "mode": "RW"}}})
    }

    fn set(v: serde_json::Value) -> Resources {
        serde_json::from_value(v).unwrap()
    }

    fn key(id: &str) -> VolumeKey {
        VolumeKey::Persistent {
            role: "eng".into(),
            persistence_id: id.into(),
        }
    }

    fn job(gen: u64, target: &Resources, in_use: &[&str]) -> Job {
        Job {
            gen,
            target: target.clone(),
            in_use: in_use.iter().map(|id| key(id)).collect(),
        }
    }

    #[test]
    fn the_store_follows_the_checkpointed_set() {
        if !can_make_volumes() {
            return;
        }
        let f = Fixture::new();
        let w = f.work();
        let a = set(json!([volume(8.0, "a"), volume(4.0, "b")]));
        assert_eq!(converge(&f.store, &w, &job(1, &a, &[])).deferred, vec![]);
        let va = f.store.get(&key("a")).unwrap();
        assert_eq!(va.size_bytes, 8 << 20);
        assert!(matches!(
            va.enforcement,
            volumes::Enforcement::LoopImage { .. }
        ));
        let c = checkpointed::load(&w).unwrap();
        assert_eq!((c.info.clone(), c.target), (a.clone(), None));

        // The size is enforced: writing past it fails with ENOSPC.
        std::fs::write(va.path.join("keep"), b"data").unwrap();
        let mut big = std::fs::File::create(va.path.join("big")).unwrap();
        let chunk = vec![0u8; 1 << 20];
        let err = (0..16)
            .find_map(|_| big.write_all(&chunk).and_then(|()| big.sync_all()).err())
            .expect("writes past the size fail");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        drop(big);
        std::fs::remove_file(va.path.join("big")).unwrap();

        // Grown, and b dropped while a task uses it: kept, the target stays.
        let b2 = set(json!([volume(16.0, "a")]));
        let applied = converge(&f.store, &w, &job(2, &b2, &["b"]));
        assert_eq!(applied.deferred, vec![key("b")]);
        assert_eq!(f.store.get(&key("a")).unwrap().size_bytes, 16 << 20);
        assert!(f.store.get(&key("b")).is_ok());
        let c = checkpointed::load(&w).unwrap();
        assert_eq!(c.target.as_ref(), Some(&b2));
        assert_eq!(volumes_of_keys(&c.info), vec![key("a"), key("b")]);
        // The task ended: the retry destroys it and the apply is complete.
        assert_eq!(converge(&f.store, &w, &job(3, &b2, &[])).deferred, vec![]);
        assert!(matches!(
            f.store.get(&key("b")),
            Err(VolumeError::NotFound(_))
        ));
        let c = checkpointed::load(&w).unwrap();
        assert_eq!((c.info, c.target), (b2.clone(), None));
        // The data of a survived every pass.
        let va = f.store.get(&key("a")).unwrap();
        assert_eq!(std::fs::read(va.path.join("keep")).unwrap(), b"data");

        // An apply cut short (the target written, nothing done): the next
        // pass, as at an agent start, finishes it.
        let c3 = set(json!([volume(4.0, "c")]));
        checkpointed::write_target(&w, &c3).unwrap();
        assert_eq!(converge(&f.store, &w, &job(4, &c3, &[])).deferred, vec![]);
        assert!(matches!(
            f.store.get(&key("a")),
            Err(VolumeError::NotFound(_))
        ));
        assert_eq!(f.store.get(&key("c")).unwrap().size_bytes, 4 << 20);
    }

    fn volumes_of_keys(r: &Resources) -> Vec<VolumeKey> {
        checkpointed::volumes_of(r).unwrap().into_keys().collect()
    }

    #[test]
    fn tasks_get_their_volumes_mounted_in_the_sandbox_after_the_pending_pass() {
        if !can_make_volumes() {
            return;
        }
        let f = Fixture::new();
        let (tx, rx) = mpsc::channel();
        let m = VolumeManager::start(f.store.root(), f.work(), move |a| {
            let _ = tx.send(a);
        })
        .unwrap();
        let target = set(json!([volume(4.0, "a")]));
        let gen = m.submit(target.clone(), BTreeSet::new());
        assert_eq!(gen, m.requested());
        let sandbox = f.dir.path().join("sandbox");
        let mut ro = volume(4.0, "a");
        ro["disk"]["volume"] = json!({"container_path": "state/a", "mode": "RO"});
        let tvs = checkpointed::task_volumes(&set(json!([ro]))).unwrap();
        // Right after the submit: the lookup waits for the pass.
        let mounts = m.mounts(gen, &sandbox, &tvs).unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].destination, sandbox.join("state/a"));
        assert!(mounts[0].destination.is_dir());
        assert!(mounts[0].read_only);
        assert_eq!(mounts[0].source, f.store.get(&key("a")).unwrap().path);
        let a = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(
            a,
            Applied {
                gen,
                deferred: vec![]
            }
        );
        // A volume the store does not have is an error naming it.
        let other = checkpointed::task_volumes(&set(json!([volume(4.0, "zz")]))).unwrap();
        let e = m.mounts(gen, &sandbox, &other).unwrap_err();
        assert!(e.contains("eng/zz"), "{e}");
        drop(m);
    }
}
