//! Persistent volumes from the command line: sizes enforced from inside
//! containers, data that outlives the container that wrote it, read-only
//! mounts, removal rules and bad input.

mod common;

use common::{stderr, stdout, Berth};

fn volumes_json(b: &Berth) -> serde_json::Value {
    serde_json::from_str(&b.ok(&["volume", "ls", "--json"])).unwrap()
}

/// Data written by one container is read by the next; the container's
/// inspect names the volume and its usage.
#[test]
fn data_outlives_the_container() {
    require_root!();
    let b = Berth::new();
    b.ok(&["volume", "create", "db", "--size", "16MiB"]);
    let out = b.launch_busybox(
        &["--rm", "--volume", "db:/data"],
        &["sh", "-c", "echo hello > /data/greeting && sync"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = b.detach_busybox(
        &["--volume", "db:/data:ro"],
        &["sh", "-c", "cat /data/greeting; sleep 30"],
    );
    assert!(common::wait_until(10, || b.ok(&["logs", &id]) == "hello\n"));
    let i = b.inspect(&id);
    let vol = &i["volumes"][0];
    assert_eq!(vol["name"], "db", "{i}");
    assert_eq!(vol["destination"], "/data");
    assert_eq!(vol["read_only"], true);
    // In use: removal is refused and names the container.
    let out = b.run(&["volume", "rm", "db"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("in use") && stderr(&out).contains(&id[..12]),
        "{}",
        stderr(&out)
    );
    let listed = volumes_json(&b);
    assert_eq!(
        listed[0]["used_by"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    b.ok(&["rm", "-f", &id]);
    b.ok(&["volume", "rm", "db"]);
    assert!(volumes_json(&b).as_array().unwrap().is_empty());
    // Removing again is not an error; the data is gone.
    b.ok(&["volume", "rm", "db"]);
    b.ok(&["volume", "create", "db", "--size", "16MiB"]);
    let out = b.launch_busybox(&["--rm", "--volume", "db:/data"], &["ls", "/data"]);
    assert!(!stdout(&out).contains("greeting"), "{}", stdout(&out));
}

/// Writing past the size from inside a container fails with ENOSPC (or
/// EDQUOT on an ext4 project quota) and the container sees it.
#[test]
fn writes_past_the_size_fail() {
    require_root!();
    let b = Berth::new();
    b.ok(&["volume", "create", "small", "--size", "8MiB"]);
    let v: serde_json::Value =
        serde_json::from_str(&b.ok(&["volume", "inspect", "--json", "small"])).unwrap();
    eprintln!("enforcement: {}", v["enforcement"]);
    let out = b.launch_busybox(
        &["--rm", "--volume", "small:/data"],
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/data/big bs=1M count=32 2>&1; echo rc=$?",
        ],
    );
    let text = stdout(&out);
    assert!(
        text.contains("No space left on device") || text.contains("Disk quota exceeded"),
        "{text}"
    );
    assert!(!text.contains("rc=0"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&b.ok(&["volume", "inspect", "--json", "small"])).unwrap();
    let used = v["usage_bytes"].as_u64().unwrap();
    assert!(used <= 8 << 20, "usage {used} above the size");
    assert!(
        used >= 4 << 20,
        "usage {used}: the write never reached the volume"
    );
    // Growing the volume makes room.
    b.ok(&["volume", "resize", "small", "--size", "64MiB"]);
    let out = b.launch_busybox(
        &["--rm", "--volume", "small:/data"],
        &[
            "sh",
            "-c",
            "rm -f /data/big; dd if=/dev/zero of=/data/big bs=1M count=32 2>/dev/null && echo ok",
        ],
    );
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
    // Shrinking below the usage is refused.
    let out = b.run(&["volume", "resize", "small", "--size", "8MiB"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("small"), "{}", stderr(&out));
}

/// A read-only mount refuses writes.
#[test]
fn read_only_mounts_refuse_writes() {
    require_root!();
    let b = Berth::new();
    b.ok(&["volume", "create", "ro", "--size", "8MiB"]);
    let out = b.launch_busybox(
        &["--rm", "--volume", "ro:/data:ro"],
        &["sh", "-c", "touch /data/x"],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
}

/// Bad sizes and names are usage errors that name the field and change
/// nothing.
#[test]
fn bad_volume_input_is_refused() {
    let b = Berth::new();
    for size in ["0", "-1", "lots", "12XB", "99999999999999999999GiB"] {
        let out = b.run(&["volume", "create", "v", "--size", size]);
        assert_eq!(out.status.code(), Some(2), "{size}: {}", stderr(&out));
        assert!(stderr(&out).contains(size), "{size}: {}", stderr(&out));
    }
    for name in ["../etc", "a/b", "", ".hidden", &"x".repeat(200)] {
        let out = b.run(&["volume", "create", name, "--size", "8MiB"]);
        assert_eq!(out.status.code(), Some(2), "{name:?}: {}", stderr(&out));
    }
    let out = b.run(&[
        "volume",
        "create",
        "v",
        "--size",
        "8MiB",
        "--backend",
        "zfs",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("zfs"), "{}", stderr(&out));
    let out = b.run(&["volume", "inspect", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    if nix::unistd::geteuid().is_root() {
        let out = b.launch_busybox(&["--volume", "nope:/data"], &["true"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
        assert!(b.ids().is_empty());
    }
    assert!(volumes_json(&b)
        .as_array()
        .map(|a| a.is_empty())
        .unwrap_or(true));
}

/// The plain directory backend only when asked for, with usage measured.
#[test]
fn dir_backend_reports_usage_without_enforcement() {
    require_root!();
    let b = Berth::new();
    b.ok(&[
        "volume",
        "create",
        "scratch",
        "--size",
        "4MiB",
        "--backend",
        "dir",
    ]);
    let out = b.launch_busybox(
        &["--rm", "--volume", "scratch:/data"],
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/data/f bs=1M count=6 2>/dev/null && echo wrote",
        ],
    );
    assert_eq!(stdout(&out), "wrote\n", "{}", stderr(&out));
    let v: serde_json::Value =
        serde_json::from_str(&b.ok(&["volume", "inspect", "--json", "scratch"])).unwrap();
    assert!(v["usage_bytes"].as_u64().unwrap() >= 6 << 20, "{v}");
    let text = b.ok(&["volume", "ls"]);
    assert!(
        text.contains("scratch") && text.contains("none (dir)"),
        "{text}"
    );
}
