//! Shared helpers for Berth's integration tests: a busybox root filesystem,
//! a private state root per test, a guard that removes containers even when
//! a test fails, and the skip rule for tests that need root. [`cluster`]:
//! `berth master` and `berth agent` as processes, and a framework over the
//! scheduler API (tests/agent.rs, tests/cluster.rs).
//!
//! These tests drive the real `berth` binary (CARGO_BIN_EXE_berth) and check
//! kernel state from inside and outside real containers.
#![allow(dead_code)]

pub mod cluster;
pub mod oci;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Skips the calling test (with a printed reason) unless we are root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (CI runs the integration tests as root)");
            return;
        }
    };
}

pub fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

/// A busybox-static root filesystem, built once under target/tmp and shared
/// by every test process (nextest runs each test in its own process): it is
/// built in a private directory and renamed into place, so concurrent
/// builders never see half of it. Panics with an install hint when
/// busybox-static is missing.
pub fn busybox_rootfs() -> PathBuf {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS
        .get_or_init(|| {
            let busybox = ["/bin/busybox", "/usr/bin/busybox"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .expect("busybox not found: apt-get install busybox-static");
            let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            let root = tmp.join("rootfs-busybox");
            if root.join("bin/sh").exists() {
                return root;
            }
            let build = tmp.join(format!("rootfs-busybox.{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&build);
            for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root", "mnt"] {
                std::fs::create_dir_all(build.join(d)).unwrap();
            }
            std::fs::copy(&busybox, build.join("bin/busybox")).unwrap();
            let out = Command::new(build.join("bin/busybox"))
                .arg("--list")
                .output()
                .unwrap();
            for applet in String::from_utf8_lossy(&out.stdout).lines() {
                if applet != "busybox" {
                    let _ = std::os::unix::fs::symlink("busybox", build.join("bin").join(applet));
                }
            }
            std::fs::write(
                build.join("etc/passwd"),
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
            )
            .unwrap();
            std::fs::write(build.join("etc/group"), "root:x:0:\nnobody:x:65534:\n").unwrap();
            // /tmp must be world-writable like a real root's.
            std::fs::set_permissions(
                build.join("tmp"),
                std::os::unix::fs::PermissionsExt::from_mode(0o1777),
            )
            .unwrap();
            if std::fs::rename(&build, &root).is_err() {
                // Another test process won the race; use its copy.
                let _ = std::fs::remove_dir_all(&build);
            }
            root
        })
        .clone()
}

/// A private state root (so tests run in parallel without seeing each
/// other's containers) with helpers to run berth against it. Every
/// container it knows of is force-removed on drop.
pub struct Berth {
    pub root: tempfile::TempDir,
    /// A private volume store (BERTH_VOLUME_ROOT).
    pub volume_root: PathBuf,
    _volume_dir: tempfile::TempDir,
}

impl Berth {
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir()
            .unwrap();
        let dir = tempfile::Builder::new()
            .prefix("berth-volumes-")
            .tempdir()
            .unwrap();
        Berth {
            volume_root: dir.path().join("store"),
            root,
            _volume_dir: dir,
        }
    }

    /// The same, with the volume store at `path` (e.g. on a test XFS).
    pub fn with_volume_root(path: PathBuf) -> Self {
        let mut b = Berth::new();
        b.volume_root = path;
        b
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(berth_bin());
        c.arg("--root").arg(self.root.path());
        c.env("BERTH_VOLUME_ROOT", &self.volume_root);
        c.stdin(Stdio::null());
        c
    }

    /// Runs berth with `args`; returns the output (whatever the exit code).
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running berth")
    }

    /// Runs berth and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `berth launch --rootfs <busybox> <extra> -- <cmd>` in the foreground.
    pub fn launch_busybox(&self, extra: &[&str], cmd: &[&str]) -> Output {
        let rootfs = busybox_rootfs();
        let mut args: Vec<&str> = vec!["launch", "--rootfs", rootfs.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    /// Detached launch; returns the id.
    pub fn detach_busybox(&self, extra: &[&str], cmd: &[&str]) -> String {
        let mut e: Vec<&str> = vec!["-d"];
        e.extend_from_slice(extra);
        let out = self.launch_busybox(&e, cmd);
        assert!(
            out.status.success(),
            "launch failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn inspect(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["inspect", "--json", id])).expect("inspect --json is JSON")
    }

    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.path().join(id)
    }

    /// Ids of every container under this root.
    pub fn ids(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "names")
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        for id in self.ids() {
            let _ = self.run(&["rm", "-f", &id]);
        }
        // Volumes may hold loop mounts: remove them through berth.
        if self.volume_root.exists() {
            let out = self.run(&["volume", "ls", "--json"]);
            if let Ok(serde_json::Value::Array(vols)) = serde_json::from_slice(&out.stdout) {
                for v in vols {
                    if let Some(name) = v["name"].as_str() {
                        let _ = self.run(&["volume", "rm", name]);
                    }
                }
            }
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The cgroup path (`/a/b`) that a /proc/PID/cgroup text gives for the v1
/// `controller`.
pub fn v1_cgroup_path(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

/// The directory of process `pid`'s cgroup ("self": ours) in the v1
/// hierarchy mounted at /sys/fs/cgroup/`mount` (e.g. "memory" or a
/// comounted "cpu,cpuacct", whose first controller names the line of
/// /proc/PID/cgroup); `None` on a host without that hierarchy.
pub fn v1_cgroup_dir_of(pid: &str, mount: &str) -> Option<PathBuf> {
    let controller = mount.split(',').next()?;
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = v1_cgroup_path(&text, controller)?;
    let base = Path::new("/sys/fs/cgroup").join(mount);
    base.exists()
        .then(|| base.join(path.trim_start_matches('/')))
}

/// The directory of our own cgroup in a v1 hierarchy (hybrid hosts).
pub fn own_v1_cgroup_dir(mount: &str) -> Option<PathBuf> {
    v1_cgroup_dir_of("self", mount)
}

/// A container's (its init `pid`'s) directory in the v1 hierarchy at
/// /sys/fs/cgroup/`mount`; panics on a host without it.
pub fn v1_dir(pid: i64, mount: &str) -> PathBuf {
    v1_cgroup_dir_of(&pid.to_string(), mount)
        .unwrap_or_else(|| panic!("no v1 {mount} cgroup for pid {pid}"))
}

/// True when /sys/fs/cgroup is a pure cgroup v2 mount.
pub fn is_cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Waits up to `secs` for `f` to be true.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    f()
}

/// Runs `cmd` with a deadline; kills it (by pid: we started it) and fails
/// the test if it does not finish in time.
pub fn output_within(mut cmd: Command, secs: u64) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// The cgroup directories `berth inspect --json` reports for a container.
pub fn cgroup_dirs(inspect: &serde_json::Value) -> Vec<PathBuf> {
    inspect["cgroup"]["dirs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The pymesos venv made by tests/py/setup-pymesos.sh (CI runs it).
pub fn pymesos_python() -> Option<PathBuf> {
    let dir = std::env::var_os("BERTH_PYMESOS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/py"));
    let python = dir.join("bin/python3");
    let ok = Command::new(&python)
        .args(["-c", "import pymesos"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}

/// Reads what a pty `master` shows into `seen` until it contains `want` or
/// `secs` pass; returns all seen so far.
pub fn read_pty_until(
    master: &std::os::fd::OwnedFd,
    seen: &mut String,
    want: &str,
    secs: u64,
) -> String {
    use std::os::fd::AsFd;
    wait_until(secs, || {
        let mut fds = [nix::poll::PollFd::new(
            master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) > 0 {
            let mut buf = [0u8; 4096];
            if let Ok(n) = nix::unistd::read(master, &mut buf) {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        seen.contains(want)
    });
    seen.clone()
}
