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

/// A loop-mounted test filesystem with project quota, unmounted on drop.
struct QuotaFs {
    mnt: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl QuotaFs {
    /// `kind` is "xfs" or "ext4". Err(reason) when this host cannot make one.
    fn make(kind: &str) -> Result<QuotaFs, String> {
        let dir = tempfile::Builder::new()
            .prefix("berth-qfs-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let image = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(300 << 20))
            .map_err(|e| e.to_string())?;
        let (mkfs, args): (&str, &[&str]) = match kind {
            "xfs" => ("mkfs.xfs", &["-q", "-f"]),
            _ => ("mkfs.ext4", &["-q", "-F", "-O", "quota,project"]),
        };
        let out = std::process::Command::new(mkfs)
            .args(args)
            .arg(&image)
            .output()
            .map_err(|e| format!("{mkfs}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{mkfs}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let out = std::process::Command::new("mount")
            .args(["-o", "loop,prjquota"])
            .arg(&image)
            .arg(&mnt)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "mount -o prjquota: {} (does the kernel have quota support? see dmesg)",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(QuotaFs { mnt, _dir: dir })
    }
}

impl Drop for QuotaFs {
    fn drop(&mut self) {
        // mount -o loop sets autoclear: the loop device goes with the mount.
        let _ = std::process::Command::new("umount").arg(&self.mnt).status();
    }
}

/// The project-quota backends, end to end: `auto` picks the quota of the
/// filesystem the store is on, and a container writing past the size gets
/// ENOSPC (XFS) or EDQUOT (ext4). This kernel may lack quota support; the
/// VM tier's kernel has it.
#[test]
fn project_quota_backends_enforce_the_size_in_containers() {
    require_root!();
    for (kind, enforcement, error) in [
        ("xfs", "xfs_project_quota", "No space left on device"),
        ("ext4", "ext4_project_quota", "Disk quota exceeded"),
    ] {
        let fs = match QuotaFs::make(kind) {
            Ok(fs) => fs,
            Err(why) => {
                eprintln!("skipped: {kind} with prjquota: {why}");
                continue;
            }
        };
        {
            let b = Berth::with_volume_root(fs.mnt.join("store"));
            b.ok(&["volume", "create", "q", "--size", "8MiB"]);
            let v: serde_json::Value =
                serde_json::from_str(&b.ok(&["volume", "inspect", "--json", "q"])).unwrap();
            assert!(
                v["enforcement"].to_string().contains(enforcement),
                "{kind}: {v}"
            );
            let out = b.launch_busybox(
                &["--rm", "--volume", "q:/data"],
                &[
                    "sh",
                    "-c",
                    "echo kept > /data/kept; dd if=/dev/zero of=/data/big bs=1M count=32 2>&1",
                ],
            );
            assert!(stdout(&out).contains(error), "{kind}: {}", stdout(&out));
            let out = b.launch_busybox(&["--rm", "--volume", "q:/data"], &["cat", "/data/kept"]);
            assert_eq!(stdout(&out), "kept\n", "{kind}: {}", stderr(&out));
            b.ok(&["volume", "resize", "q", "--size", "64MiB"]);
            let out = b.launch_busybox(
                &["--rm", "--volume", "q:/data"],
                &["sh", "-c", "rm /data/big; dd if=/dev/zero of=/data/big bs=1M count=32 2>/dev/null && echo ok"],
            );
            assert_eq!(
                stdout(&out),
                "ok\n",
                "{kind} after resize: {}",
                stderr(&out)
            );
            b.ok(&["volume", "rm", "q"]);
        }
    }
}

/// `--backend dir --kill-over-size`: nothing stops the writes, but the
/// supervisor measures the volume and kills the container once it is over
/// its size (Mesos' disk isolator), and says why.
#[test]
fn dir_backend_kills_containers_over_the_size_when_asked() {
    require_root!();
    let b = Berth::new();
    b.ok(&[
        "volume",
        "create",
        "capped",
        "--size",
        "4MiB",
        "--backend",
        "dir",
        "--kill-over-size",
    ]);
    let id = b.detach_busybox(
        &["--volume", "capped:/data"],
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/data/f bs=1M count=6 2>/dev/null; echo wrote; sleep 60",
        ],
    );
    let id = id.trim();
    let out = common::output_within(
        {
            let mut c = b.cmd();
            c.args(["wait", id]);
            c
        },
        20,
    );
    assert_eq!(stdout(&out).trim(), "137", "{}", stderr(&out));
    let i = b.inspect(id);
    let note = i["exit"]["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("/data") && note.contains("over its size"),
        "{i}"
    );
    assert_eq!(b.ok(&["logs", id]), "wrote\n");
}
