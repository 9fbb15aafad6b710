//! The dir backend, unprivileged, in a temporary directory.

use std::io::Write;
use std::sync::{Arc, Barrier};
use volumes::{
    BackendChoice, CreateRequest, Enforcement, VolumeError, VolumeKey, VolumeState, VolumeStore,
};

const MIB: u64 = 1 << 20;

fn name(n: &str) -> VolumeKey {
    VolumeKey::Name(n.to_string())
}

fn dir_req(key: VolumeKey, size: u64) -> CreateRequest {
    CreateRequest {
        backend: BackendChoice::Dir,
        ..CreateRequest::new(key, size)
    }
}

fn write_file(path: &std::path::Path, bytes: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xabu8; MIB as usize];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(MIB);
        f.write_all(&chunk[..n as usize]).unwrap();
        left -= n;
    }
    f.sync_all().unwrap();
}

#[test]
fn dir_lifecycle() {
    let tmp = tempfile::tempdir().unwrap();
    let store = VolumeStore::open(&tmp.path().join("store")).unwrap();
    store.backend_available(BackendChoice::Dir).unwrap();

    let mut req = dir_req(name("db"), 4 * MIB);
    req.mode = 0o750;
    req.kill_over_size = true;
    let v = store.create(&req).unwrap();
    assert_eq!(v.enforcement, Enforcement::Unenforced);
    assert_eq!(v.state, VolumeState::Ready);
    assert!(v.kill_over_size);
    assert!(v.path.is_dir());
    assert!(
        v.path.ends_with("volumes/n-db/data"),
        "{}",
        v.path.display()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&v.path).unwrap().permissions().mode() & 0o7777,
        0o750
    );
    assert!(v.usage_bytes.unwrap() < MIB);

    let e = store.create(&req).unwrap_err();
    assert_eq!(e.to_string(), "volume \"db\" already exists");

    // Usage after writing files (nested, with a hard link counted once).
    std::fs::create_dir(v.path.join("sub")).unwrap();
    write_file(&v.path.join("sub/a"), 3 * MIB);
    std::fs::hard_link(v.path.join("sub/a"), v.path.join("a-link")).unwrap();
    let got = store.get(&name("db")).unwrap();
    let used = got.usage_bytes.unwrap();
    assert!((3 * MIB..4 * MIB).contains(&used), "usage {used}");
    assert!(!got.over_size());

    // Shrinking below usage is refused; to above usage works; growing works.
    let e = store.resize(&name("db"), MIB).unwrap_err();
    assert!(matches!(e, VolumeError::ShrinkBelowUsage { .. }));
    let msg = e.to_string();
    assert!(
        msg.starts_with("cannot shrink volume \"db\" to 1 MiB: 3") && msg.ends_with(" MiB in use"),
        "{msg}"
    );
    let r = store.resize(&name("db"), 16 * MIB).unwrap();
    assert_eq!(r.size_bytes, 16 * MIB);
    let r = store.resize(&name("db"), 8 * MIB).unwrap();
    assert_eq!(r.size_bytes, 8 * MIB);

    // Over size is reported for a watchdog.
    write_file(&v.path.join("big"), 6 * MIB);
    assert!(store.get(&name("db")).unwrap().over_size());

    // A persistent-volume key and list order.
    let pkey = VolumeKey::Persistent {
        role: "eng/backend".into(),
        persistence_id: "pv-1".into(),
    };
    let pv = store.create(&dir_req(pkey.clone(), 2 * MIB)).unwrap();
    assert!(pv.path.ends_with("volumes/p-eng+backend=pv-1/data"));
    store.create(&dir_req(name("a-first"), 2 * MIB)).unwrap();
    let keys: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|v| v.key.to_string())
        .collect();
    assert_eq!(keys, ["a-first", "db", "eng/backend/pv-1"]);
    assert!(store
        .list()
        .unwrap()
        .iter()
        .all(|v| v.usage_bytes.is_some()));

    // Reopening keeps the volumes and their data.
    drop(store);
    let store = VolumeStore::open(&tmp.path().join("store")).unwrap();
    assert!(
        store.recovery_warnings().is_empty(),
        "{:?}",
        store.recovery_warnings()
    );
    let again = store.get(&name("db")).unwrap();
    assert_eq!(again.size_bytes, 8 * MIB);
    assert_eq!(again.mode, 0o750);
    assert!(again.path.join("sub/a").exists());
    assert_eq!(store.list().unwrap().len(), 3);

    // Destroy, twice.
    store.destroy(&name("db")).unwrap();
    store.destroy(&name("db")).unwrap();
    assert!(!v.path.exists());
    assert!(!tmp.path().join("store/volumes/n-db").exists());
    let e = store.get(&name("db")).unwrap_err();
    assert_eq!(e.to_string(), "volume \"db\" not found");
    let e = store.resize(&name("db"), 8 * MIB).unwrap_err();
    assert!(matches!(e, VolumeError::NotFound(_)));
    store.destroy(&pkey).unwrap();
    store.destroy(&name("a-first")).unwrap();
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn bad_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let store = VolumeStore::open(tmp.path()).unwrap();
    let e = store.create(&dir_req(name("../x"), 4 * MIB)).unwrap_err();
    assert!(matches!(e, VolumeError::InvalidName { .. }), "{e}");
    let e = store.create(&dir_req(name("db"), 1000)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid size \"1000\": must be at least 1 MiB"
    );
    let e = store
        .create(&dir_req(
            VolumeKey::Persistent {
                role: "eng/../x".into(),
                persistence_id: "p".into(),
            },
            4 * MIB,
        ))
        .unwrap_err();
    assert!(
        e.to_string().starts_with("invalid role \"eng/../x\""),
        "{e}"
    );
    let mut req = CreateRequest::new(name("db"), 4 * MIB);
    req.kill_over_size = true;
    let e = store.create(&req).unwrap_err();
    assert!(
        e.to_string()
            .contains("kill_over_size applies only to the dir backend"),
        "{e}"
    );
    let mut req = dir_req(name("db"), 4 * MIB);
    req.mode = 0o17777;
    assert!(store.create(&req).is_err());
    assert!(store.list().unwrap().is_empty());
    // Nothing left in staging either.
    assert_eq!(
        std::fs::read_dir(tmp.path().join("staging"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn unavailable_backends_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let store = VolumeStore::open(tmp.path()).unwrap();
    // The temp dir is not on a prjquota mount here (the root tests mount their own).
    let e = store
        .backend_available(BackendChoice::Xfs)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("backend xfs is not available for the store at "),
        "{e}"
    );
    let e = store
        .backend_available(BackendChoice::Ext4)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ext4"), "{e}");
    let e = store
        .create(&CreateRequest {
            backend: BackendChoice::Xfs,
            ..CreateRequest::new(name("x"), 4 * MIB)
        })
        .unwrap_err();
    assert!(matches!(e, VolumeError::BackendUnavailable { .. }), "{e}");
    if !nix::unistd::geteuid().is_root() {
        let e = store
            .backend_available(BackendChoice::Loop)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs root"), "{e}");
        let e = store
            .backend_available(BackendChoice::Auto)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no enforcing backend"), "{e}");
    }
}

#[test]
fn concurrent_creates_have_one_winner() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(VolumeStore::open(tmp.path()).unwrap());
    for round in 0..5 {
        let n = 8;
        let barrier = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let store = store.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    store.create(&dir_req(name(&format!("race{round}")), 2 * MIB))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "{results:?}");
        for r in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(matches!(r, VolumeError::AlreadyExists(_)), "{r}");
        }
        store.get(&name(&format!("race{round}"))).unwrap();
    }
    assert_eq!(store.list().unwrap().len(), 5);
    assert_eq!(
        std::fs::read_dir(tmp.path().join("staging"))
            .unwrap()
            .count(),
        0
    );
}
