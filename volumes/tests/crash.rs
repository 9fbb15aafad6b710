//! A creator that dies mid-create (the BERTH_VOLUMES_CRASH_AT test hook) leaves nothing
//! usable after open(). The test binary re-executes itself running only
//! `crash_child_helper`, which performs the create with the hook set.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use volumes::{BackendChoice, CreateRequest, VolumeError, VolumeKey, VolumeState, VolumeStore};

const CHILD_ROOT: &str = "BERTH_VOLUMES_TEST_CHILD_ROOT";
const CHILD_BACKEND: &str = "BERTH_VOLUMES_TEST_CHILD_BACKEND";

/// Not a real test: does the create when run as a child by `crash_at`, else nothing.
#[test]
fn crash_child_helper() {
    let (Ok(root), Ok(backend)) = (std::env::var(CHILD_ROOT), std::env::var(CHILD_BACKEND)) else {
        return;
    };
    let store = VolumeStore::open(Path::new(&root)).unwrap();
    let req = CreateRequest {
        backend: backend.parse().unwrap(),
        ..CreateRequest::new(VolumeKey::Name("crashy".into()), 8 * MIB)
    };
    let r = store.create(&req);
    panic!("the crash hook did not fire: {r:?}");
}

fn crash_at(root: &Path, backend: BackendChoice, point: &str) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROOT, root)
        .env(CHILD_BACKEND, backend.to_string())
        .env(volumes::CRASH_AT_ENV, point)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(99), "child did not crash at {point}");
}

fn check_crash(root: &Path, backend: BackendChoice, point: &str) {
    let key = VolumeKey::Name("crashy".into());
    // A store opened before the crash does no recovery: the volume is visible only as
    // Creating and is never handed out as usable.
    let before = VolumeStore::open(root).unwrap();
    crash_at(root, backend, point);
    let e = before.get(&key).unwrap_err();
    assert!(matches!(e, VolumeError::Incomplete(_)), "{e}");
    assert_eq!(
        e.to_string(),
        "volume \"crashy\" is incomplete: it is still being created"
    );
    let listed = before.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, VolumeState::Creating);
    assert!(before.resize(&key, 16 * MIB).is_err());

    // Opening recovers: the creator is dead, so the volume is removed entirely.
    let store = VolumeStore::open(root).unwrap();
    assert!(
        store.recovery_warnings().is_empty(),
        "{:?}",
        store.recovery_warnings()
    );
    assert!(matches!(store.get(&key), Err(VolumeError::NotFound(_))));
    assert!(store.list().unwrap().is_empty());
    assert!(!root.join("volumes/n-crashy").exists());
    assert_eq!(std::fs::read_dir(root.join("staging")).unwrap().count(), 0);
    assert!(mounts_under(root).is_empty(), "{:?}", mounts_under(root));
    assert!(wait_no_loops_under(root).is_empty());

    // The key is free again.
    let req = CreateRequest {
        backend,
        ..CreateRequest::new(key.clone(), 8 * MIB)
    };
    store.create(&req).unwrap();
    store.destroy(&key).unwrap();
}

#[test]
fn dir_crash_after_claim() {
    let sb = Sandbox::new();
    check_crash(&sb.path().join("store"), BackendChoice::Dir, "after-claim");
}

#[test]
fn dir_crash_after_backend() {
    let sb = Sandbox::new();
    check_crash(
        &sb.path().join("store"),
        BackendChoice::Dir,
        "after-backend",
    );
}

#[test]
fn loop_crash_after_claim() {
    if !require(true, &["mkfs.ext4", "resize2fs"]) {
        return;
    }
    let sb = Sandbox::new();
    check_crash(&sb.path().join("store"), BackendChoice::Loop, "after-claim");
}

#[test]
fn loop_crash_after_backend() {
    if !require(true, &["mkfs.ext4", "resize2fs"]) {
        return;
    }
    let sb = Sandbox::new();
    // The child leaves the image mounted (mounts outlive processes); open() unmounts it.
    check_crash(
        &sb.path().join("store"),
        BackendChoice::Loop,
        "after-backend",
    );
}

#[test]
fn xfs_crash_after_backend() {
    if !require(true, &["mkfs.xfs", "mount", "losetup"]) {
        return;
    }
    let fs = match TestFs::xfs() {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("SKIPPED: cannot mount an xfs test filesystem with prjquota: {e}");
            return;
        }
    };
    check_crash(&fs.mnt.join("store"), BackendChoice::Xfs, "after-backend");
}

#[test]
fn staging_of_dead_creator_is_removed() {
    let sb = Sandbox::new();
    let root = sb.path().join("store");
    VolumeStore::open(&root).unwrap();
    // pid 0 with a start time never matches a live process.
    let stale = root.join("staging/0-1-0");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("volume.json"), "{}").unwrap();
    VolumeStore::open(&root).unwrap();
    assert!(!stale.exists());
}
