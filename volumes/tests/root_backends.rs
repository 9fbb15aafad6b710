//! Enforcing backends, as root: XFS and ext4 project quotas on loop-mounted test
//! filesystems, and loop images on a plain temp dir. Skipped (with the reason printed)
//! when not root or a tool is missing. Every mount and loop device is made inside a
//! `Sandbox`, whose Drop unmounts and detaches them even when an assertion fails.

mod common;

use common::*;
use volumes::{BackendChoice, CreateRequest, Enforcement, VolumeError, VolumeKey, VolumeStore};

fn name(n: &str) -> VolumeKey {
    VolumeKey::Name(n.to_string())
}

/// Shared checks for a quota-backed store at `root`. Returns the errno name seen past
/// the size.
fn quota_backend_checks(root: &std::path::Path, xfs: bool) -> &'static str {
    let store = VolumeStore::open(root).unwrap();
    let choice = if xfs {
        BackendChoice::Xfs
    } else {
        BackendChoice::Ext4
    };
    store.backend_available(choice).unwrap();
    store.backend_available(BackendChoice::Auto).unwrap();
    let other = if xfs {
        BackendChoice::Ext4
    } else {
        BackendChoice::Xfs
    };
    assert!(store.backend_available(other).is_err());

    let mut req = CreateRequest::new(name("db"), 8 * MIB);
    req.owner = Some((1234, 5678));
    let v = store.create(&req).unwrap();
    let pid = match v.enforcement {
        Enforcement::XfsProjectQuota { project_id } if xfs => project_id,
        Enforcement::Ext4ProjectQuota { project_id } if !xfs => project_id,
        ref e => panic!("unexpected enforcement {e:?}"),
    };
    assert!(pid >= 1000);
    assert_eq!(volumes::project_id(&v.path).unwrap(), pid);
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&v.path).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 5678));

    // A second volume gets another project id.
    let v2 = store
        .create(&CreateRequest::new(name("other"), 4 * MIB))
        .unwrap();
    match v2.enforcement {
        Enforcement::XfsProjectQuota { project_id }
        | Enforcement::Ext4ProjectQuota { project_id } => {
            assert_ne!(project_id, pid)
        }
        ref e => panic!("unexpected enforcement {e:?}"),
    }

    // Past the size, written by an unprivileged dd child as the volume owner (quota
    // limits do not bind CAP_SYS_RESOURCE, which this root test has).
    let (written, which) = dd_as(1234, 5678, &v.path.join("big"), 32);
    let which = which.expect("writing 32 MiB into an 8 MiB volume must fail");
    assert!(written <= 8 * MIB, "wrote {written} bytes");
    let used = store.get(&name("db")).unwrap().usage_bytes.unwrap();
    assert!(
        used > 6 * MIB && used <= 8 * MIB + 64 * 1024,
        "usage {used}"
    );

    // Shrinking below usage is refused; growing raises the limit.
    let e = store.resize(&name("db"), 4 * MIB).unwrap_err();
    assert!(matches!(e, VolumeError::ShrinkBelowUsage { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("cannot shrink volume \"db\" to 4 MiB: "),
        "{e}"
    );
    store.resize(&name("db"), 24 * MIB).unwrap();
    let (written2, err2) = dd_as(1234, 5678, &v.path.join("more"), 8);
    assert!(err2.is_none(), "after growing: {err2:?}");
    assert_eq!(written2, 8 * MIB);
    let got = store.get(&name("db")).unwrap();
    assert_eq!(got.size_bytes, 24 * MIB);
    assert!(got.usage_bytes.unwrap() > 14 * MIB);

    // Reopen keeps everything; list is sorted with usage.
    drop(store);
    let store = VolumeStore::open(root).unwrap();
    assert!(
        store.recovery_warnings().is_empty(),
        "{:?}",
        store.recovery_warnings()
    );
    let list = store.list().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].key, name("db"));
    assert!(list.iter().all(|v| v.usage_bytes.is_some()));

    // Destroy removes the data (and the quota limit); twice is fine.
    store.destroy(&name("db")).unwrap();
    store.destroy(&name("db")).unwrap();
    assert!(!v.path.exists());
    store.destroy(&name("other")).unwrap();
    assert!(store.list().unwrap().is_empty());

    // A new volume does not reuse the ids.
    let v3 = store
        .create(&CreateRequest::new(name("db"), 4 * MIB))
        .unwrap();
    match v3.enforcement {
        Enforcement::XfsProjectQuota { project_id }
        | Enforcement::Ext4ProjectQuota { project_id } => {
            assert!(project_id > pid + 1)
        }
        ref e => panic!("unexpected enforcement {e:?}"),
    }
    store.destroy(&name("db")).unwrap();
    which
}

#[test]
fn xfs_project_quota() {
    if !require(true, &["mkfs.xfs", "mount", "losetup"]) {
        return;
    }
    let fs = match TestFs::xfs() {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!(
                "SKIPPED: cannot mount an xfs test filesystem with prjquota \
                 (does the kernel have quota support? see dmesg): {e}"
            );
            return;
        }
    };
    let which = quota_backend_checks(&fs.mnt.join("store"), true);
    eprintln!("xfs project quota: a write past the size fails with {which}");
    assert_eq!(which, "ENOSPC");
    let image = fs.image.clone();
    let dir = fs.sandbox.path().to_path_buf();
    drop(fs);
    assert!(mounts_under(&dir).is_empty());
    assert!(wait_no_loops_under(&dir).is_empty(), "{}", image.display());
}

#[test]
fn ext4_project_quota() {
    if !require(true, &["mkfs.ext4", "mount", "losetup"]) {
        return;
    }
    let fs = match TestFs::ext4() {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!(
                "SKIPPED: cannot mount an ext4 test filesystem with prjquota \
                 (does the kernel have CONFIG_QUOTA? see dmesg): {e}"
            );
            return;
        }
    };
    let which = quota_backend_checks(&fs.mnt.join("store"), false);
    eprintln!("ext4 project quota: a write past the size fails with {which}");
    let dir = fs.sandbox.path().to_path_buf();
    drop(fs);
    assert!(mounts_under(&dir).is_empty());
    assert!(wait_no_loops_under(&dir).is_empty());
}

#[test]
fn loop_image_backend() {
    if !require(true, &["mkfs.ext4", "resize2fs", "losetup"]) {
        return;
    }
    let sb = Sandbox::new();
    let root = sb.path().join("store");
    let store = VolumeStore::open(&root).unwrap();
    if let Err(e) = store.backend_available(BackendChoice::Loop) {
        eprintln!("SKIPPED: {e}");
        return;
    }
    // The sandbox is on a filesystem without prjquota here, so Auto picks the loop image
    // (if /tmp ever offers project quotas, ask for loop explicitly).
    let backend = if store.backend_available(BackendChoice::Xfs).is_err()
        && store.backend_available(BackendChoice::Ext4).is_err()
    {
        BackendChoice::Auto
    } else {
        BackendChoice::Loop
    };
    let req = CreateRequest {
        backend,
        owner: Some((1000, 1000)),
        mode: 0o700,
        ..CreateRequest::new(name("img"), 16 * MIB)
    };
    let v = store.create(&req).unwrap();
    let dev = match &v.enforcement {
        Enforcement::LoopImage {
            image,
            fs,
            loop_device,
        } => {
            assert_eq!(fs, "ext4");
            assert!(image.exists());
            loop_device.clone().expect("mounted")
        }
        e => panic!("unexpected enforcement {e:?}"),
    };
    assert!(dev.starts_with("/dev/loop"), "{dev}");
    assert_eq!(mounts_under(&v.path), vec![v.path.clone()]);
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let md = std::fs::metadata(&v.path).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    assert_eq!(md.permissions().mode() & 0o7777, 0o700);

    // Past the size.
    let (written, err) = fill(&v.path.join("big"), 32 * MIB);
    let err = err.expect("writing 32 MiB into a 16 MiB image must fail");
    eprintln!(
        "loop image: a write past the size fails with {} after {} MiB",
        errno_name(&err),
        written / MIB
    );
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    let used = store.get(&name("img")).unwrap().usage_bytes.unwrap();
    assert!(used > 12 * MIB && used <= 16 * MIB, "usage {used}");

    // Not below the usage.
    let e = store.resize(&name("img"), 8 * MIB).unwrap_err();
    assert!(matches!(e, VolumeError::ShrinkBelowUsage { .. }), "{e}");
    let grown = store.resize(&name("img"), 48 * MIB).unwrap();
    assert_eq!(grown.size_bytes, 48 * MIB);
    let st = nix::sys::statvfs::statvfs(&v.path).unwrap();
    let total = st.blocks() as u64 * st.fragment_size() as u64;
    assert!(total > 40 * MIB, "filesystem size after grow: {total}");
    let (w2, err2) = fill(&v.path.join("more"), 16 * MIB);
    assert!(err2.is_none(), "after growing: {err2:?}");
    assert_eq!(w2, 16 * MIB);

    // A "reboot": the mount is gone; open() re-attaches and re-mounts.
    drop(store);
    nix::mount::umount2(&v.path, nix::mount::MntFlags::empty()).unwrap();
    assert!(mounts_under(&v.path).is_empty());
    let store = VolumeStore::open(&root).unwrap();
    assert!(
        store.recovery_warnings().is_empty(),
        "{:?}",
        store.recovery_warnings()
    );
    assert_eq!(mounts_under(&v.path), vec![v.path.clone()]);
    assert!(v.path.join("more").exists());
    assert_eq!(store.get(&name("img")).unwrap().size_bytes, 48 * MIB);

    // Shrinking (offline: unmounted, checked, resized, mounted again) keeps
    // the data and enforces the smaller size. Below what the filesystem
    // itself needs, resize2fs refuses and the volume stays as it was.
    std::fs::remove_file(v.path.join("more")).unwrap();
    let e = store.resize(&name("img"), 17 * MIB).unwrap_err();
    assert!(e.to_string().contains("minimum"), "{e}");
    assert_eq!(mounts_under(&v.path), vec![v.path.clone()]);
    assert_eq!(store.get(&name("img")).unwrap().size_bytes, 48 * MIB);
    let shrunk = store.resize(&name("img"), 32 * MIB).unwrap();
    assert_eq!(shrunk.size_bytes, 32 * MIB);
    assert_eq!(mounts_under(&v.path), vec![v.path.clone()]);
    let st = nix::sys::statvfs::statvfs(&v.path).unwrap();
    let total = st.blocks() as u64 * st.fragment_size() as u64;
    assert!(
        total <= 32 * MIB && total > 24 * MIB,
        "filesystem size after shrink: {total}"
    );
    let image = std::fs::metadata(root.join("volumes/n-img/image.ext4"))
        .unwrap()
        .len();
    assert_eq!(image, 32 * MIB);
    let (_, err3) = fill(&v.path.join("again"), 24 * MIB);
    assert_eq!(err3.map(|e| e.raw_os_error()), Some(Some(libc::ENOSPC)));
    std::fs::remove_file(v.path.join("again")).unwrap();

    // Destroy: unmounted, loop device gone (autoclear), files removed.
    store.destroy(&name("img")).unwrap();
    store.destroy(&name("img")).unwrap();
    assert!(mounts_under(sb.path()).is_empty());
    assert!(wait_no_loops_under(sb.path()).is_empty());
    assert!(!root.join("volumes/n-img").exists());
}

#[test]
fn explicit_quota_backends_unavailable_on_plain_ext4() {
    if !require(true, &[]) {
        return;
    }
    let sb = Sandbox::new();
    let store = VolumeStore::open(sb.path()).unwrap();
    if let Err(e) = store.backend_available(BackendChoice::Ext4) {
        let s = e.to_string();
        assert!(s.contains("prjquota") || s.contains("not ext4"), "{s}");
    }
    let e = store
        .backend_available(BackendChoice::Xfs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not xfs"), "{e}");
}

#[test]
fn xfs_without_prjquota_is_detected() {
    if !require(true, &["mkfs.xfs", "mount", "losetup"]) {
        return;
    }
    let fs = match TestFs::xfs_noquota() {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("SKIPPED: cannot mount an xfs test filesystem: {e}");
            return;
        }
    };
    let store = VolumeStore::open(&fs.mnt.join("store")).unwrap();
    let e = store
        .backend_available(BackendChoice::Xfs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not mounted with prjquota"), "{e}");
    let e = store
        .backend_available(BackendChoice::Ext4)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is on xfs"), "{e}");
    // Auto falls through to the loop image on this filesystem.
    if store.backend_available(BackendChoice::Loop).is_ok() {
        let v = store
            .create(&CreateRequest::new(name("fallback"), 4 * MIB))
            .unwrap();
        assert!(matches!(v.enforcement, Enforcement::LoopImage { .. }));
        store.destroy(&name("fallback")).unwrap();
    }
    drop(store);
    let dir = fs.sandbox.path().to_path_buf();
    drop(fs);
    assert!(mounts_under(&dir).is_empty());
    assert!(wait_no_loops_under(&dir).is_empty());
}
