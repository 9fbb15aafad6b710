//! Tests against the real cgroupfs. They run only as root, on a host with
//! the v1 memory controller (hybrid or v1) or on a pure cgroup v2 host (the
//! VM tier), and print "skipped: ..." otherwise.
//! Every cgroup is created below the test process's own cgroup in each
//! hierarchy; only a spawned `sleep` child is moved into it, and a Drop guard
//! kills the child and removes the cgroup even if an assertion fails.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
};

use super::*;

fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() || !Path::new("/sys/fs/cgroup/memory").is_dir() {
        println!("skipped: needs root and cgroup v1 memory controller");
        return false;
    }
    true
}

fn is_v2_host() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("t{}-{nanos}", std::process::id())
}

/// Kills the child and destroys the cgroup on drop (also on panic).
struct Guard {
    cg: Cgroup,
    child: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.cg.thaw();
        let _ = self.cg.kill_all();
        if let Err(e) = self.cg.destroy() {
            eprintln!("cleanup of {}: {e}", self.cg.display_path());
        }
    }
}

/// The test: create, limit, join, inspect, kill, destroy.
fn exercise(layout: &Layout, parent: &str) {
    let name = format!("{parent}/{}", unique());
    let mut cg = Cgroup::resolve(layout, &name).unwrap();
    cg.create().unwrap();
    let mut g = Guard {
        cg: cg.clone(),
        child: None,
    };
    for d in cg.dirs() {
        assert!(d.is_dir(), "{}", d.display());
    }
    // Created below the test process's own (memory) cgroup.
    let (own, dir) = match layout.v1_hierarchy("memory") {
        Some(h) => (
            h.own_dir.clone().unwrap(),
            cg.v1_dir("memory").unwrap().to_path_buf(),
        ),
        None => (
            layout.unified().unwrap().own_dir.clone().unwrap(),
            cg.unified_dir().unwrap().to_path_buf(),
        ),
    };
    assert_eq!(dir.parent().unwrap().parent().unwrap(), own);

    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(16i64).build().unwrap())
        .cpu(
            LinuxCpuBuilder::default()
                .quota(50000i64)
                .period(100000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let unapplied = cg.apply(&res).unwrap();
    assert!(unapplied.is_empty(), "{unapplied:?}");

    let child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id() as i32;
    g.child = Some(child);
    cg.add_pid(pid).unwrap();

    // /proc/PID/cgroup lists the created paths in every hierarchy used.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for h in cg.v1.iter().chain(cg.unified.iter()) {
        let key = h.controllers.join(",");
        let line = |text: &str| -> String {
            text.lines()
                .find(|l| l.split(':').nth(1) == Some(key.as_str()))
                .unwrap_or_else(|| panic!("no {key:?} line in {text}"))
                .splitn(3, ':')
                .nth(2)
                .unwrap()
                .to_string()
        };
        let expected = format!("{}/{name}", line(&own).trim_end_matches('/'));
        assert_eq!(line(&theirs), expected, "hierarchy {key:?}");
    }
    assert_eq!(cg.pids().unwrap(), [pid]);

    let s = cg.stats().unwrap();
    assert_eq!(s.memory_limit, Some(64 << 20), "{s:?}");
    assert_eq!(s.pids_current, Some(1), "{s:?}");
    assert_eq!(s.pids_limit, Some(16), "{s:?}");
    assert_eq!(s.cpu_quota_us, Some(50000), "{s:?}");
    assert_eq!(s.cpu_period_us, Some(100000), "{s:?}");
    assert!(s.memory_current.is_some(), "{s:?}");
    assert_eq!(cg.oom_kill_count(), 0);

    // freeze() returns only once the kernel reports the cgroup frozen.
    cg.freeze().unwrap();
    cg.thaw().unwrap();

    cg.kill_all().unwrap();
    let status = g.child.take().unwrap().wait().unwrap();
    assert!(!status.success(), "{status:?}");
    assert!(cg.pids().unwrap().is_empty());

    // Rebuilt from JSON, as the launcher does in `berth rm`.
    let stored: Cgroup = serde_json::from_str(&serde_json::to_string(&cg).unwrap()).unwrap();
    stored.destroy().unwrap();
    for h in cg.v1.iter().chain(cg.unified.iter()) {
        assert!(!h.dir.exists(), "{} still exists", h.dir.display());
        let parent = h.dir.parent().unwrap();
        if h.created.iter().any(|c| c == parent) {
            assert!(!parent.exists(), "{} still exists", parent.display());
        }
    }
    stored.destroy().unwrap();
}

#[test]
fn cgroups_real_detected_layout() {
    if !can_run() {
        return;
    }
    let layout = Layout::detect().unwrap();
    assert_ne!(layout.mode(), CgroupMode::V2);
    exercise(&layout, "berth-test");
}

/// The v2 path on a pure cgroup v2 host (the VM tier): memory.max,
/// pids.max, cpu.max, cgroup.freeze and cgroup.kill.
#[test]
fn cgroups_real_v2() {
    if !nix::unistd::geteuid().is_root() || !is_v2_host() {
        println!("skipped: needs root on a pure cgroup v2 host (run tests/vm/run.sh)");
        return;
    }
    let layout = Layout::detect().unwrap();
    assert_eq!(layout.mode(), CgroupMode::V2);
    exercise(&layout, "berth-test-v2");
}

/// The same on a pure-v1 view of this host (the cgroup2 mount hidden), so
/// that `kill_all` uses the freezer + SIGKILL loop instead of cgroup.kill.
#[test]
fn cgroups_real_v1_only_view() {
    if !can_run() {
        return;
    }
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mi: String = mi
        .lines()
        .filter(|l| !l.contains(" - cgroup2 "))
        .map(|l| format!("{l}\n"))
        .collect();
    let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let layout = Layout::from_parts(&mi, &cg).unwrap();
    assert_eq!(layout.mode(), CgroupMode::V1);
    exercise(&layout, "berth-test-v1");
}

/// Reads one byte of /dev/zero from a child placed in `cg` (it waits on
/// stdin until it is in) and returns its shell's output: "1" when the
/// open worked, else head's error.
fn read_zero_in(cg: &Cgroup) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("sh")
        .args([
            "-c",
            "read go; head -c1 /dev/zero 2>&1 | wc -c; head -c1 /dev/zero 2>&1 >/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let added = cg.add_pid(child.id() as i32);
    if added.is_err() {
        let _ = child.kill();
    }
    let _ = child.stdin.take().unwrap().write_all(b"go\n");
    let out = child.wait_with_output().unwrap();
    added.unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn deny_zero() -> DevicePolicy {
    let rules: Vec<oci_spec::runtime::LinuxDeviceCgroup> =
        serde_json::from_value(serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "rwm"}
        ]))
        .unwrap();
    DevicePolicy::for_container(&rules, &[]).unwrap().unwrap()
}

/// Device rules from inside a cgroup: with `c 1:5` denied, /dev/zero cannot
/// be opened (EPERM), and /dev/null (a default device) still can. `layout`
/// decides the back end: the v1 devices controller when resolved with
/// `devices`, else the eBPF filter on the unified directory.
fn exercise_devices(layout: &Layout, parent: &str, opts: ResolveOptions) {
    let name = format!("{parent}/{}", unique());
    let mut cg = Cgroup::resolve_with(layout, &name, opts).unwrap();
    cg.create().unwrap();
    let g = Guard {
        cg: cg.clone(),
        child: None,
    };
    assert_eq!(read_zero_in(&cg), "1", "before any rule");
    g.cg.apply_devices(&deny_zero()).unwrap();
    let out = read_zero_in(&cg);
    assert!(out.contains("Operation not permitted"), "{out}");
    drop(g);
}

#[test]
fn devices_real_v1_controller() {
    if !can_run() {
        return;
    }
    if !Path::new("/sys/fs/cgroup/devices").is_dir() {
        println!("skipped: needs the v1 devices controller");
        return;
    }
    let layout = Layout::detect().unwrap();
    let opts = ResolveOptions {
        devices: true,
        ..Default::default()
    };
    let cg = Cgroup::resolve_with(&layout, "x/y", opts).unwrap();
    assert!(cg.v1_dir("devices").is_some());
    exercise_devices(&layout, "berth-test-dev", opts);
}

/// The eBPF device filter: on a pure v2 host (the VM tier), and on a hybrid
/// host through its controller-less cgroup2 (cgroup BPF needs none).
#[test]
fn devices_real_bpf_filter() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: needs root");
        return;
    }
    let layout = Layout::detect().unwrap();
    if layout.unified().is_none() {
        println!("skipped: no cgroup2 mount");
        return;
    }
    // Without `devices` a hybrid host has no v1 devices dir: BPF is used.
    exercise_devices(&layout, "berth-test-bpf", ResolveOptions::default());
}
