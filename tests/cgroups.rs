//! Resource control: where Berth puts a container's cgroup, which limits it
//! writes, and that the kernel enforces them (memory, pids, cpu).
//!
//! Written for both a hybrid host (v1 controllers plus a controller-less
//! cgroup2 mount at /sys/fs/cgroup/unified) and a pure cgroup v2 host.
//! These tests only ever *read* cgroup files; Berth writes them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{stderr, stdout, wait_until, Berth};

// ---------------------------------------------------------------------------
// helpers

/// The caller's own cgroup path in the unified hierarchy ("0::" line).
fn own_unified_path() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Directory of our own cgroup in the unified hierarchy (pure v2: the
/// /sys/fs/cgroup mount; hybrid: /sys/fs/cgroup/unified).
fn own_unified_dir() -> Option<PathBuf> {
    let base = if common::is_cgroup_v2() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        PathBuf::from("/sys/fs/cgroup/unified")
    };
    if !base.join("cgroup.procs").exists() {
        return None;
    }
    Some(base.join(own_unified_path()?.trim_start_matches('/')))
}

/// The directory of our own cgroup in the hierarchy that does memory
/// accounting: v1 memory on a hybrid host, the unified one on pure v2.
fn own_memory_dir() -> Option<PathBuf> {
    if common::is_cgroup_v2() {
        own_unified_dir()
    } else {
        common::own_v1_cgroup_dir("memory")
    }
    .filter(|d| d.is_dir())
}

/// Our own cgroup directory in the hierarchy mounted at
/// /sys/fs/cgroup/<mount_name> (v1 name such as "memory" or "cpu,cpuacct",
/// or "unified"); on pure v2 the only hierarchy.
fn own_dir_of_hierarchy(dir: &Path) -> Option<PathBuf> {
    if common::is_cgroup_v2() {
        return own_unified_dir();
    }
    let rel = dir.strip_prefix("/sys/fs/cgroup").ok()?;
    let mount = rel.components().next()?.as_os_str().to_str()?.to_string();
    if mount == "unified" {
        return own_unified_dir();
    }
    common::own_v1_cgroup_dir(&mount)
}

/// Skip rule shared by every test here: root, and either a v1 memory
/// hierarchy or a pure v2 mount.
macro_rules! require_cgroups {
    () => {
        require_root!();
        if own_memory_dir().is_none() {
            eprintln!("skipped: neither a cgroup v1 memory hierarchy nor cgroup v2 is available");
            return;
        }
    };
}

fn cgroup_dirs(inspection: &serde_json::Value) -> Vec<PathBuf> {
    inspection["cgroup"]["dirs"]
        .as_array()
        .unwrap_or_else(|| panic!("inspect has no cgroup.dirs: {inspection}"))
        .iter()
        .map(|d| PathBuf::from(d.as_str().unwrap()))
        .collect()
}

/// The first of `dirs` holding `file` (e.g. the v1 cpu dir for
/// cpu.cfs_quota_us, or the unified dir for cpu.max on v2).
fn dir_with(dirs: &[PathBuf], file: &str) -> Option<PathBuf> {
    dirs.iter().find(|d| d.join(file).exists()).cloned()
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// `key value` line of a flat-keyed cgroup file.
fn read_key(p: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn launch_cmd(b: &Berth, extra: &[&str], cmd: &[&str]) -> Command {
    let rootfs = common::busybox_rootfs();
    let mut c = b.cmd();
    c.arg("launch")
        .arg("--rootfs")
        .arg(rootfs)
        .args(extra)
        .arg("--")
        .args(cmd);
    c
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{tag}-{}-{nanos:x}", std::process::id())
}

// ---------------------------------------------------------------------------
// tests

#[test]
fn cgroup_is_placed_under_own_cgroup_and_removed_with_container() {
    require_cgroups!();
    let b = Berth::new();
    let id = b.detach_busybox(&[], &["sleep", "30"]);
    let i = b.inspect(&id);
    let dirs = cgroup_dirs(&i);
    assert!(!dirs.is_empty(), "no cgroup dirs: {i}");
    let suffix = Path::new("berth").join(&id);

    // The memory-accounting dir is <own memory cgroup>/berth/<id>.
    let own_mem = own_memory_dir().unwrap();
    let mem_dir = own_mem.join(&suffix);
    assert!(
        dirs.contains(&mem_dir),
        "{} not among {dirs:?}",
        mem_dir.display()
    );

    // Every dir exists and sits under *our own* cgroup in its hierarchy,
    // never directly below a hierarchy root unless our own cgroup is it.
    for d in &dirs {
        assert!(d.is_dir(), "{} does not exist", d.display());
        let own =
            own_dir_of_hierarchy(d).unwrap_or_else(|| panic!("no own cgroup for {}", d.display()));
        assert_eq!(
            d,
            &own.join(&suffix),
            "{} is not <own cgroup>/berth/<id>",
            d.display()
        );
    }
    // On this kind of host the own memory cgroup is deep: make sure the
    // container did not land at the hierarchy root.
    if !common::is_cgroup_v2() {
        assert_ne!(mem_dir, Path::new("/sys/fs/cgroup/memory").join(&suffix));
    }
    let mode = if common::is_cgroup_v2() {
        "v2"
    } else if own_unified_dir().is_some() {
        "hybrid"
    } else {
        "v1"
    };
    assert_eq!(i["cgroup"]["mode"], mode, "{}", i["cgroup"]);

    // The init process really is in those cgroups.
    let pid = i["pid"].as_i64().expect("running container has a pid");
    let pcg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let want_suffix = format!("/berth/{id}");
    let mut checked = Vec::new();
    for line in pcg.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let used = ctrls.is_empty()
            || ctrls
                .split(',')
                .any(|c| ["memory", "cpu", "cpuacct", "pids", "freezer"].contains(&c));
        if used {
            assert!(
                path.ends_with(&want_suffix),
                "/proc/{pid}/cgroup line {line:?} is not in berth/{id}:\n{pcg}"
            );
            checked.push(ctrls.to_string());
        }
    }
    if common::is_cgroup_v2() {
        let own = own_unified_path().unwrap();
        let want = format!("0::{}{want_suffix}", own.trim_end_matches('/'));
        assert!(pcg.lines().any(|l| l == want), "{want:?} not in\n{pcg}");
    } else {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let own_mem_path = common::v1_cgroup_path(&own, "memory").unwrap();
        let want = format!("{}{want_suffix}", own_mem_path.trim_end_matches('/'));
        assert!(
            pcg.lines().any(|l| l
                .split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "memory"))
                && l.ends_with(&format!(":{want}"))),
            "memory path {want:?} not in\n{pcg}"
        );
        assert!(
            checked.iter().any(|c| c.split(',').any(|c| c == "memory")),
            "{pcg}"
        );
    }

    b.ok(&["rm", "-f", &id]);
    for d in &dirs {
        assert!(!d.exists(), "{} left behind after rm -f", d.display());
    }
    assert!(!b.state_dir(&id).exists());
}

#[test]
fn limits_are_written_to_cgroup_files() {
    require_cgroups!();
    let b = Berth::new();
    let id = b.detach_busybox(
        &["--mem", "64", "--cpus", "0.5", "--pids", "20"],
        &["sleep", "30"],
    );
    let i = b.inspect(&id);
    let dirs = cgroup_dirs(&i);
    let v2 = common::is_cgroup_v2();

    let mem_file = if v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    let Some(mem) = dir_with(&dirs, mem_file) else {
        if v2 {
            eprintln!(
                "skipped: the memory controller is not enabled for the container's cgroup \
                 (not delegated to our cgroup?); warnings: {}",
                i["warnings"]
            );
            return;
        }
        panic!("no dir with {mem_file} among {dirs:?}");
    };
    assert_eq!(read_trim(&mem.join(mem_file)), "67108864");
    // Swap off: v1 memory+swap equals the memory limit, v2 swap.max is 0.
    if v2 {
        if mem.join("memory.swap.max").exists() {
            assert_eq!(read_trim(&mem.join("memory.swap.max")), "0");
        }
    } else if mem.join("memory.memsw.limit_in_bytes").exists() {
        assert_eq!(
            read_trim(&mem.join("memory.memsw.limit_in_bytes")),
            "67108864"
        );
    }

    if v2 {
        let cpu = dir_with(&dirs, "cpu.max").expect("cpu.max");
        assert_eq!(read_trim(&cpu.join("cpu.max")), "50000 100000");
    } else {
        let cpu = dir_with(&dirs, "cpu.cfs_quota_us").expect("cpu.cfs_quota_us");
        assert_eq!(read_trim(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read_trim(&cpu.join("cpu.cfs_period_us")), "100000");
    }

    let pids = dir_with(&dirs, "pids.max").expect("pids.max");
    assert_eq!(read_trim(&pids.join("pids.max")), "20");

    let u = &i["cgroup"]["usage"];
    assert_eq!(u["memory_limit"], 67_108_864u64, "{u}");
    assert_eq!(u["pids_limit"], 20, "{u}");
    assert_eq!(u["cpu_quota_us"], 50_000, "{u}");
    assert_eq!(u["cpu_period_us"], 100_000, "{u}");
    assert!(u["pids_current"].as_u64().is_some_and(|n| n >= 1), "{u}");
}

#[test]
fn memory_limit_is_enforced_by_the_oom_killer() {
    require_cgroups!();
    let b = Berth::new();
    // init itself doubles a string: 32 MiB is exceeded at 2^25 bytes. The
    // loop stops at 2^26 (64 MiB) so a missing limit cannot eat the host.
    let hog = "i=0; x=a; while [ $i -lt 26 ]; do x=$x$x; i=$((i+1)); done; echo survived";
    let out = common::output_within(launch_cmd(&b, &["--mem", "32"], &["sh", "-c", hog]), 60);
    assert!(
        !stdout(&out).contains("survived"),
        "the hog finished under a 32 MiB limit: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(137), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("OOM killed"),
        "stderr: {}",
        stderr(&out)
    );

    let ids = b.ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = &ids[0];
    let i = b.inspect(id);
    assert_eq!(i["status"], "stopped");
    assert_eq!(i["exit"]["exit_code"], 137, "{}", i["exit"]);
    assert_eq!(i["exit"]["signal"], 9, "{}", i["exit"]);
    assert_eq!(i["exit"]["oom_killed"], true, "{}", i["exit"]);
    let u = &i["cgroup"]["usage"];
    assert!(
        u["oom_kill"].as_u64().is_some_and(|n| n > 0),
        "usage.oom_kill: {u}"
    );
    assert_eq!(u["memory_limit"], 33_554_432u64, "{u}");

    let exit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.state_dir(id).join("exit.json")).unwrap())
            .unwrap();
    assert_eq!(exit["oom_killed"], true, "{exit}");

    let ps = b.ok(&["ps", "-a"]);
    let row = ps
        .lines()
        .find(|l| l.starts_with(&id[..12]))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(row.contains("OOM killed") && row.contains("137"), "{ps}");
    let rows: serde_json::Value = serde_json::from_str(&b.ok(&["ps", "-a", "--json"])).unwrap();
    assert_eq!(rows[0]["oom_killed"], true, "{rows}");
}

#[test]
fn pids_limit_makes_forks_fail_and_is_never_exceeded() {
    require_cgroups!();
    let b = Berth::new();
    // init (outer sh) survives the inner shell, which dies at its first
    // failed fork; then init exits normally.
    let script = r#"sh -c "i=0; while [ \$i -lt 20 ]; do sleep 2 & i=\$((i+1)); done; echo all-forked; wait"; echo inner-exit=$?; sleep 2; echo done"#;
    let id = b.detach_busybox(&["--pids", "10"], &["sh", "-c", script]);
    let stderr_log = b.state_dir(&id).join("stderr.log");
    let stdout_log = b.state_dir(&id).join("stdout.log");
    let mut max_seen = 0u64;
    let mut samples = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let i = b.inspect(&id);
        if let Some(n) = i["cgroup"]["usage"]["pids_current"].as_u64() {
            max_seen = max_seen.max(n);
            samples += 1;
        }
        if let Some(d) = dir_with(&cgroup_dirs(&i), "pids.current") {
            if let Ok(s) = std::fs::read_to_string(d.join("pids.current")) {
                max_seen = max_seen.max(s.trim().parse().unwrap_or(0));
            }
        }
        if i["status"] == "stopped" {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(samples > 0, "inspect never reported pids_current");
    assert!(
        max_seen <= 10,
        "pids.current reached {max_seen} under --pids 10"
    );
    assert!(
        max_seen >= 2,
        "the container never forked (max pids {max_seen})"
    );

    let code = b.ok(&["wait", &id]);
    assert_eq!(code.trim(), "0", "init must end normally");
    let err = std::fs::read_to_string(&stderr_log).unwrap();
    assert!(
        err.contains("can't fork") || err.contains("Resource temporarily unavailable"),
        "no fork failure in stderr: {err:?}"
    );
    let out = std::fs::read_to_string(&stdout_log).unwrap();
    assert!(
        !out.contains("all-forked"),
        "all 20 forks succeeded under --pids 10: {out:?}"
    );
    assert!(
        out.contains("inner-exit=") && out.contains("done"),
        "{out:?}"
    );
    let i = b.inspect(&id);
    assert_eq!(i["exit"]["exit_code"], 0);
    assert_eq!(i["exit"]["oom_killed"], false);
}

#[test]
fn cpu_quota_throttles_a_busy_loop() {
    require_cgroups!();
    let b = Berth::new();
    // timeout bounds the loop even if this test dies before rm -f.
    let id = b.detach_busybox(
        &["--cpus", "0.2"],
        &["timeout", "10", "sh", "-c", "while :; do :; done"],
    );
    let dirs = cgroup_dirs(&b.inspect(&id));

    let usage = |b: &Berth| b.inspect(&id)["cgroup"]["usage"]["cpu_usage_ns"].as_u64();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let u0 = usage(&b).expect("cpu_usage_ns");
    std::thread::sleep(Duration::from_millis(1500));
    let u1 = usage(&b).expect("cpu_usage_ns");
    let wall = t0.elapsed().as_nanos() as f64;
    let share = (u1 - u0) as f64 / wall;
    eprintln!("cpu share under --cpus 0.2: {share:.3}");

    let i = b.inspect(&id);
    assert_eq!(i["status"], "running", "the loop should still run");
    let u = &i["cgroup"]["usage"];
    assert!(
        u["cpu_nr_throttled"].as_u64().is_some_and(|n| n > 0),
        "not throttled: {u}"
    );
    assert!(u["cpu_throttled_ns"].as_u64().is_some_and(|n| n > 0), "{u}");
    assert_eq!(u["cpu_quota_us"], 20_000, "{u}");
    // The file itself (v1 cpu.stat in the cpu dir; v2 cpu.stat in the
    // unified dir) agrees.
    let stat = dirs
        .iter()
        .map(|d| d.join("cpu.stat"))
        .find(|f| read_key(f, "nr_throttled").is_some())
        .expect("a cpu.stat with nr_throttled");
    assert!(
        read_key(&stat, "nr_throttled").unwrap() > 0,
        "{}",
        stat.display()
    );
    // 0.2 CPU over 1.5 s is 0.3 s; allow generous slack, but a missing
    // quota would give ~1.0.
    assert!(
        share < 0.45,
        "busy loop used {share:.2} CPUs under --cpus 0.2"
    );
    b.ok(&["rm", "-f", &id]);
}

#[test]
fn failed_launch_removes_its_cgroup() {
    require_cgroups!();
    let b = Berth::new();
    let parent = unique("berth-failtest");
    // Our own cgroup in each hierarchy Berth may use.
    let mut owns: Vec<PathBuf> = Vec::new();
    if common::is_cgroup_v2() {
        owns.extend(own_unified_dir());
    } else {
        for c in ["memory", "cpu", "cpuacct", "pids", "freezer"] {
            owns.extend(common::own_v1_cgroup_dir(c).filter(|d| d.is_dir()));
        }
        owns.extend(own_unified_dir().filter(|d| d.is_dir()));
    }
    owns.sort();
    owns.dedup();
    for o in &owns {
        assert!(!o.join(&parent).exists());
    }

    let out = b.launch_busybox(
        &["--cgroup-parent", &parent, "--mem", "32", "--pids", "10"],
        &["no-such-command"],
    );
    assert_eq!(out.status.code(), Some(127), "stderr: {}", stderr(&out));
    assert!(b.ids().is_empty(), "state left: {:?}", b.ids());

    let mut leftovers = Vec::new();
    for o in &owns {
        let p = o.join(&parent);
        if !p.exists() {
            continue;
        }
        let children: Vec<_> = std::fs::read_dir(&p)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        leftovers.push((p, children));
    }
    // Best-effort cleanup of what the failed launch left (empty dirs only;
    // rmdir of a cgroup that still has tasks fails and is left alone).
    for (p, children) in &leftovers {
        for c in children {
            let _ = std::fs::remove_dir(c);
        }
        let _ = std::fs::remove_dir(p);
    }
    let with_children: Vec<_> = leftovers.iter().filter(|(_, c)| !c.is_empty()).collect();
    assert!(
        with_children.is_empty(),
        "container cgroups left after a failed launch: {with_children:?}"
    );
    assert!(
        leftovers.is_empty(),
        "empty parent cgroup dirs created by the failed launch were left: {:?}",
        leftovers.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
}

#[test]
fn successful_launch_with_own_parent_cleans_parent_on_rm() {
    require_cgroups!();
    let b = Berth::new();
    let parent = unique("berth-parenttest");
    let own_mem = own_memory_dir().unwrap();
    let id = b.detach_busybox(&["--cgroup-parent", &parent], &["sleep", "30"]);
    let dirs = cgroup_dirs(&b.inspect(&id));
    assert!(dirs.contains(&own_mem.join(&parent).join(&id)), "{dirs:?}");
    b.ok(&["rm", "-f", &id]);
    for d in &dirs {
        assert!(!d.exists(), "{} left", d.display());
        // The parent was created for this container alone: it goes too.
        let p = d.parent().unwrap();
        assert!(!p.exists(), "parent {} left behind", p.display());
    }
    assert!(wait_until(1, || b.ids().is_empty()));
}

/// The block device a directory lives on (the whole disk, not a partition),
/// as a /dev path, from /sys/dev/block.
fn block_device_of(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let mut sys = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    if sys.join("partition").exists() {
        sys = sys.parent()?.to_path_buf();
    }
    let uevent = std::fs::read_to_string(sys.join("uevent")).ok()?;
    let name = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
    let node = PathBuf::from("/dev").join(name);
    node.exists().then_some(node)
}

/// `--device-write-bps DEV:1m`: direct writes to a file on that device go
/// at about 1 MiB/s (v1 blkio.throttle on a hybrid host, io.max on v2).
#[test]
fn block_io_writes_are_throttled() {
    require_root!();
    // The VM tier points this at a virtio disk; elsewhere target/tmp.
    let base = std::env::var_os("BERTH_TEST_BLOCK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    let Some(device) = block_device_of(&base) else {
        eprintln!(
            "skipped: {} is not on a block device (set BERTH_TEST_BLOCK_DIR to a directory on one)",
            base.display()
        );
        return;
    };
    let data = tempfile::tempdir_in(&base).unwrap();
    let b = Berth::new();
    let limit = format!("{}:1m", device.display());
    let volume = format!("{}:/mnt/sandbox/data", data.path().display());
    let id = b.ok(&[
        "launch",
        "-d",
        "--device-write-bps",
        &limit,
        "-v",
        &volume,
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/mnt/sandbox/data/f bs=64k count=32 oflag=direct",
    ]);
    let id = id.trim();
    let started = std::time::Instant::now();
    assert_eq!(
        b.ok(&["wait", id]).trim(),
        "0",
        "{}",
        stderr(&b.run(&["logs", id]))
    );
    let took = started.elapsed();
    let i = b.inspect(id);
    let dirs: Vec<PathBuf> = common::cgroup_dirs(&i);
    let (file, expect) = if common::is_cgroup_v2() {
        ("io.max", "wbps=1048576")
    } else {
        ("blkio.throttle.write_bps_device", " 1048576")
    };
    let dir = dirs
        .iter()
        .find(|d| d.join(file).exists())
        .unwrap_or_else(|| panic!("no {file} in {dirs:?}"));
    let written = std::fs::read_to_string(dir.join(file)).unwrap();
    assert!(written.contains(expect), "{file}: {written}");
    assert_eq!(
        std::fs::metadata(data.path().join("f")).unwrap().len(),
        2 << 20
    );
    // 2 MiB at 1 MiB/s cannot take much less than 2 s (the throttle lets a
    // small burst through); without the limit it takes milliseconds.
    assert!(
        took.as_secs_f64() >= 1.5,
        "2 MiB of direct writes took only {took:?}"
    );
}
