//! Limits that only a pure cgroup v2 host can prove enforced: the OOM kill
//! recorded as a memory limitation, a fork bomb stopped by pids.max, CPU
//! throttled to the quota, and a rootless user with a delegated subtree.
//! On other hosts these tests skip with a printed reason; the VM tier
//! (tests/vm/run.sh) runs them in a guest with every v2 controller.

mod common;

use std::path::{Path, PathBuf};

use common::{stderr, stdout, Berth};

macro_rules! require_v2 {
    () => {
        require_root!();
        if !common::is_cgroup_v2() {
            eprintln!("skipped: needs a pure cgroup v2 host (run tests/vm/run.sh)");
            return;
        }
    };
}

fn cgroup_dir(i: &serde_json::Value) -> PathBuf {
    PathBuf::from(
        i["cgroup"]["dirs"][0]
            .as_str()
            .expect("container has a cgroup"),
    )
}

fn read_kv(path: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `--mem 64` and a 256 MiB allocation: the kernel's OOM killer ends the
/// container, and berth says so everywhere a user looks.
#[test]
fn oom_kill_is_recorded_as_such() {
    require_v2!();
    let b = Berth::new();
    let out = b.launch_busybox(
        &["--name", "hog", "--mem", "64"],
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
    );
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(stderr(&out).contains("OOM killed"), "{}", stderr(&out));
    let i = b.inspect("hog");
    assert_eq!(i["exit"]["signal"], 9);
    assert_eq!(i["exit"]["oom_killed"], true);
    let dir = cgroup_dir(&i);
    assert!(read_kv(&dir.join("memory.events"), "oom_kill").unwrap() > 0);
    assert_eq!(
        std::fs::read_to_string(dir.join("memory.max"))
            .unwrap()
            .trim(),
        "67108864"
    );
    let text = b.ok(&["inspect", "hog"]);
    assert!(
        text.contains("OOM killed") && text.contains("SIGKILL"),
        "{text}"
    );
    let ps = b.ok(&["ps", "-a"]);
    assert!(ps.contains("exited (137, OOM killed)"), "{ps}");
    b.ok(&["rm", "hog"]);
    assert!(!dir.exists(), "cgroup left after rm: {}", dir.display());
    assert!(b.ids().is_empty());
}

/// `--pids 32` stops a fork bomb: forks past the limit fail with EAGAIN,
/// the container survives, and it can still be killed.
#[test]
fn fork_bomb_is_stopped_by_pids_max() {
    require_v2!();
    let b = Berth::new();
    // Every child sleeps, so the population only grows until pids.max.
    let bomb = "import os, time, errno\n\
                n = 0\n\
                for _ in range(200):\n\
                \x20   try:\n\
                \x20       if os.fork() == 0:\n\
                \x20           time.sleep(60); os._exit(0)\n\
                \x20       n += 1\n\
                \x20   except OSError as e:\n\
                \x20       print('fork failed', errno.errorcode[e.errno], 'after', n, flush=True); break\n\
                time.sleep(60)\n";
    let id = b.ok(&["launch", "-d", "--pids", "32", "--", "python3", "-c", bomb]);
    let id = id.trim();
    assert!(common::wait_until(30, || stdout(&b.run(&["logs", id])).contains("fork failed")));
    let log = stdout(&b.run(&["logs", id]));
    assert!(log.contains("fork failed EAGAIN after 31"), "{log}");
    let i = b.inspect(id);
    assert_eq!(i["status"], "running");
    let dir = cgroup_dir(&i);
    assert_eq!(
        std::fs::read_to_string(dir.join("pids.current"))
            .unwrap()
            .trim(),
        "32"
    );
    assert!(read_kv(&dir.join("pids.events"), "max").unwrap() > 0);
    b.ok(&["kill", "-s", "KILL", id]);
    assert_eq!(b.ok(&["wait", id]).trim(), "137");
    b.ok(&["rm", id]);
    assert!(!dir.exists());
}

/// `--cpus 0.5` on a busy loop for about 3 s: cpu.stat shows throttling
/// and usage close to half a CPU (within 20%).
#[test]
fn cpu_quota_throttles_to_half_a_cpu() {
    require_v2!();
    let b = Berth::new();
    // Not as pid 1: a signal from inside the namespace cannot end its init.
    let id = b.detach_busybox(
        &["--cpus", "0.5"],
        &["sh", "-c", "timeout 3 sh -c 'while :; do :; done'; exit 0"],
    );
    b.ok(&["wait", &id]);
    // The loop ran for the 3 s that timeout allowed it.
    let wall_us = 3e6;
    let dir = cgroup_dir(&b.inspect(&id));
    assert_eq!(
        std::fs::read_to_string(dir.join("cpu.max")).unwrap().trim(),
        "50000 100000"
    );
    let stat = dir.join("cpu.stat");
    let usage = read_kv(&stat, "usage_usec").unwrap() as f64;
    let throttled = read_kv(&stat, "nr_throttled").unwrap();
    let share = usage / wall_us;
    eprintln!(
        "cpu share {share:.2} over {:.1} s, throttled {throttled} times",
        wall_us / 1e6
    );
    assert!(throttled > 0, "no throttling recorded");
    assert!(
        (0.4..=0.6).contains(&share),
        "usage {share:.2} of a CPU, expected 0.5 +- 20%"
    );
}

/// Rootless with a delegated cgroup: an unprivileged user who owns a
/// subtree gets its memory and pids limits applied.
#[test]
fn rootless_with_a_delegated_cgroup_gets_limits() {
    require_v2!();
    let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return;
    };
    // The delegated subtree: owned by nobody, controllers enabled for its
    // children, as systemd's Delegate=yes would leave it.
    let deleg = PathBuf::from(format!("/sys/fs/cgroup/berth-deleg-{}", std::process::id()));
    std::fs::create_dir(&deleg).unwrap();
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            // Leaf first; the user's session and berth's parent live inside.
            for sub in ["berth", "session"] {
                if let Ok(rd) = std::fs::read_dir(self.0.join(sub)) {
                    for e in rd.flatten().filter(|e| e.path().is_dir()) {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
                let _ = std::fs::remove_dir(self.0.join(sub));
            }
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _cleanup = Cleanup(deleg.clone());
    std::fs::write(deleg.join("cgroup.subtree_control"), "+memory +pids").unwrap();
    std::fs::create_dir(deleg.join("session")).unwrap();
    for p in [
        deleg.clone(),
        deleg.join("cgroup.procs"),
        deleg.join("cgroup.subtree_control"),
        deleg.join("session"),
        deleg.join("session/cgroup.procs"),
    ] {
        nix::unistd::chown(&p, Some(65534.into()), Some(65534.into())).unwrap();
    }
    let xdg = tempfile::tempdir().unwrap();
    nix::unistd::chown(xdg.path(), Some(65534.into()), Some(65534.into())).unwrap();
    let rootfs = common::busybox_rootfs();
    // The user's shell lives in deleg/session; berth puts its containers in
    // deleg/berth (a cgroup with processes cannot have controllers for its
    // children, so the parent is given as an absolute path).
    let script = format!(
        "echo $$ > {session}/cgroup.procs && exec {setpriv} --reuid=65534 --regid=65534 --clear-groups -- \
         env XDG_RUNTIME_DIR={xdg} HOME={xdg} {berth} launch --rm --mem 64 --pids 16 \
         --cgroup-parent /{name}/berth --rootfs {rootfs} -- \
         sh -c 'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; id -u'",
        session = deleg.join("session").display(),
        xdg = xdg.path().display(),
        berth = common::berth_bin().display(),
        name = deleg.file_name().unwrap().to_string_lossy(),
        rootfs = rootfs.display(),
    );
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        stdout(&out),
        "67108864\n16\n0\n",
        "stderr: {}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("not applied"), "{}", stderr(&out));
}
