//! Berth under a real engine: podman (Debian's 4.3) drives it through
//! runc's command line, with a busybox root filesystem imported as an
//! image. Each test has a podman of its own: storage, run root, libpod's
//! tmp dir, network config and locks all sit in a temp dir, so the tests
//! never see or change the machine's podman state.
//!
//! Host constraints every run works around (see /work/shared/PEERS.md):
//! - `--network none` on every container: podman's bridge network would
//!   add a bridge and firewall rules to the host.
//! - `--cgroups no-conmon`: with the cgroupfs manager podman otherwise
//!   moves conmon to /libpod_parent/conmon at the root of every hierarchy;
//!   this way conmon stays in the caller's cgroup and Berth nests the
//!   container's cgroups under it.
//! - `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024`: root here lacks
//!   CAP_SYS_RESOURCE, so podman's default rlimits (1048576) fail with
//!   EPERM under any runtime, runc included.

mod common;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{busybox_rootfs, output_within, stderr, stdout, wait_until};

const IMAGE: &str = "localhost/berth-busybox:latest";

/// The flags every container gets (see the module docs for why).
const RUN_FLAGS: [&str; 8] = [
    "--network",
    "none",
    "--cgroups",
    "no-conmon",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

struct Podman {
    dir: tempfile::TempDir,
}

macro_rules! require_podman {
    () => {{
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (CI runs the integration tests as root)");
            return;
        }
        match Podman::new() {
            Some(p) => p,
            None => {
                eprintln!("skipped: podman is not installed (apt-get install podman)");
                return;
            }
        }
    }};
}

impl Podman {
    /// A private podman with the busybox image imported; None without podman.
    fn new() -> Option<Podman> {
        Command::new("podman")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let dir = tempfile::Builder::new()
            .prefix("berth-podman-")
            .tempdir()
            .unwrap();
        let p = Podman { dir };
        std::fs::create_dir_all(p.path("tmp")).unwrap();
        // File locks live in libpod's tmp dir (the default shm lock is the
        // machine-wide /dev/shm/libpod_lock); the CNI backend needs no run
        // dir, where netavark creates /run/containers/networks even for
        // --network none.
        std::fs::write(
            p.path("containers.conf"),
            format!(
                "[engine]\nlock_type = \"file\"\nimage_copy_tmp_dir = \"{}\"\n\
                 [network]\nnetwork_backend = \"cni\"\n",
                p.path("tmp").display()
            ),
        )
        .unwrap();
        // podman 4.3 passes --runtime-flag to create/start/exec but not to
        // the cleanup it runs when a container exits (`podman container
        // cleanup` -> `runtime delete`), so a private --root has to be part
        // of the runtime itself: a one-line wrapper around the binary.
        let wrapper = p.path("berth-runtime");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec {} --root {} \"$@\"\n",
                common::berth_bin().display(),
                p.path("berth-state").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let tar = p.path("rootfs.tar");
        let o = Command::new("tar")
            .arg("-C")
            .arg(busybox_rootfs())
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .unwrap();
        assert!(o.status.success(), "tar: {}", stderr(&o));
        // `podman import` keeps a blob-info cache at the hard-wired
        // /var/lib/containers/cache when run as root: give it a private
        // mount namespace with an empty /var/lib, so the cache lands in a
        // tmpfs that disappears with the namespace.
        let mut import = Command::new("unshare");
        import
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs berth-podman-import /var/lib && exec \"$@\"")
            .arg("sh")
            .arg("podman")
            .args(p.global_flags())
            .arg("import")
            .arg(&tar)
            .arg(IMAGE)
            .envs(p.env());
        let o = output_within(import, 120);
        assert!(o.status.success(), "podman import: {}", stderr(&o));
        Some(p)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn env(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("CONTAINERS_CONF", self.path("containers.conf")),
            ("TMPDIR", self.path("tmp")),
        ]
    }

    fn global_flags(&self) -> Vec<String> {
        let p = |n: &str| self.path(n).to_string_lossy().into_owned();
        [
            "--root",
            &p("storage"),
            "--runroot",
            &p("runroot"),
            "--tmpdir",
            &p("libpod"),
            "--network-config-dir",
            &p("net"),
            "--volumepath",
            &p("volumes"),
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--storage-driver",
            "vfs",
            "--runtime",
            &p("berth-runtime"),
        ]
        .map(String::from)
        .to_vec()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.args(self.global_flags()).args(args).envs(self.env());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        output_within(self.cmd(args), 120)
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "podman {args:?}: {}\n{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// `podman run ARGS` with the host's required flags before ARGS.
    fn container(&self, args: &[&str]) -> Output {
        let mut all = vec!["run"];
        all.extend(RUN_FLAGS);
        all.extend(args);
        self.run(&all)
    }

    /// Containers Berth knows of in this podman's state root.
    fn berth_ids(&self) -> Vec<String> {
        std::fs::read_dir(self.path("berth-state"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "names")
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers first (their cgroups and state), then the storage.
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
    }
}

/// The cgroup file of a container's process in one v1 hierarchy, as the
/// host sees it.
fn v1_cgroup_file(pid: &str, controller: &str, file: &str) -> Option<PathBuf> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    cg.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls.split(',').any(|c| c == controller).then(|| {
            Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(path.trim_start_matches('/'))
                .join(file)
        })
    })
}

/// `run --rm`: output, exit code, and nothing left behind.
#[test]
fn run_rm_returns_the_exit_code_and_leaves_nothing() {
    let p = require_podman!();
    let o = p.container(&["--rm", IMAGE, "sh", "-c", "echo hello from berth; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "hello from berth", "{}", stderr(&o));
    assert_eq!(p.ok(&["ps", "--all", "--quiet"]).trim(), "");
    // podman's cleanup ran `delete` through the wrapper: no state is left.
    assert!(
        wait_until(10, || p.berth_ids().is_empty()),
        "berth state left: {:?}",
        p.berth_ids()
    );
}

/// `run -d` + `exec` + `logs` + `stop` + `rm`: stop sends TERM (the
/// container's trap answers with 3) well before its timeout.
#[test]
fn detached_exec_logs_stop_rm() {
    let p = require_podman!();
    let o = p.container(&[
        "-d",
        IMAGE,
        "sh",
        "-c",
        "trap 'echo got-term; exit 3' TERM; echo started; while true; do sleep 0.1; done",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    assert!(wait_until(10, || p.ok(&["logs", &id]).contains("started")));

    let out = p.ok(&["exec", &id, "sh", "-c", "echo in-exec; cat /proc/1/cmdline"]);
    assert!(out.starts_with("in-exec\n"), "{out:?}");
    assert!(
        out.contains("got-term"),
        "exec sees the container's init: {out:?}"
    );
    let o = p.run(&["exec", &id, "sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let o = p.run(&["exec", &id, "no-such-program"]);
    assert!(!o.status.success(), "exec of a missing program fails");

    let t = std::time::Instant::now();
    p.ok(&["stop", "--time", "20", &id]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(15),
        "stop needed its KILL: TERM was not delivered ({:?})",
        t.elapsed()
    );
    let st = p.ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        &id,
    ]);
    assert_eq!(st.trim(), "exited 3");
    let logs = p.ok(&["logs", &id]);
    assert!(logs.contains("got-term"), "{logs:?}");
    p.ok(&["rm", &id]);
    assert_eq!(p.ok(&["ps", "--all", "--quiet"]).trim(), "");
    assert!(
        wait_until(10, || p.berth_ids().is_empty()),
        "{:?}",
        p.berth_ids()
    );
}

/// `run -it` on a real terminal: the container's stdio is a tty of the
/// size podman's terminal has, and the shell's exit code comes back.
#[test]
fn interactive_terminal() {
    let p = require_podman!();
    let size = nix::pty::Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let (master, slave): (OwnedFd, OwnedFd) = (pty.master, pty.slave);
    let mut cmd = p.cmd(&[]);
    cmd.arg("run")
        .args(RUN_FLAGS)
        .args(["-it", "--rm", IMAGE, "sh"]);
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls between fork and exec (setsid,
    // ioctl), on descriptors the child already holds.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            // podman gets a controlling terminal, as under a real shell.
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // closes our copies of the slave, so EOF/EIO ends the reads
    let mut seen = String::new();
    let mut read_until =
        |want: &str, secs: u64| common::read_pty_until(&master, &mut seen, want, secs);
    let got = read_until("/ # ", 60);
    assert!(got.contains("/ # "), "no prompt: {got:?}");
    let mut m = std::fs::File::from(master.try_clone().unwrap());
    m.write_all(b"test -t 0 && test -t 1 && echo IS-A-TTY; echo SIZE=$(stty size); exit 7\n")
        .unwrap();
    let got = read_until("SIZE=33 101", 30);
    assert!(got.contains("IS-A-TTY"), "{got:?}");
    assert!(got.contains("SIZE=33 101"), "{got:?}");
    assert!(
        wait_until(30, || child.try_wait().unwrap().is_some()),
        "podman did not exit: {got:?}"
    );
    assert_eq!(child.wait().unwrap().code(), Some(7), "{got:?}");
}

/// `--memory`, `--pids-limit` (read from the host's cgroup files),
/// `--cap-drop`, `--read-only` and `--network none` (seen from inside).
#[test]
fn limits_capabilities_read_only_and_no_network() {
    let p = require_podman!();
    let o = p.container(&[
        "-d",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cap-drop",
        "CHOWN",
        "--cap-drop",
        "NET_RAW",
        "--read-only",
        IMAGE,
        "sleep",
        "1000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let pid = p.ok(&["inspect", "--format", "{{.State.Pid}}", &id]);
    let pid = pid.trim();
    let read = |ctrl: &str, file: &str| {
        let path =
            v1_cgroup_file(pid, ctrl, file).unwrap_or_else(|| panic!("no {ctrl} cgroup for {pid}"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    };
    if !common::is_cgroup_v2() {
        assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(read("pids", "pids.max"), "50");
    }

    let out = p.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "grep CapEff /proc/self/status; \
         chown 1 /tmp && echo chown-ok; \
         touch /x 2>/dev/null && echo root-writable; \
         touch /tmp/y && echo tmp-writable; \
         tail -n +3 /proc/net/dev | cut -d: -f1",
    ]);
    // Capability bits: CHOWN 0, KILL 5, NET_RAW 13.
    let eff = out
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(eff & (1 << 0), 0, "CHOWN dropped: {out}");
    assert_eq!(eff & (1 << 13), 0, "NET_RAW dropped: {out}");
    assert_ne!(eff & (1 << 5), 0, "podman's default KILL kept: {out}");
    assert!(!out.contains("chown-ok"), "{out}");
    assert!(!out.contains("root-writable"), "--read-only: {out}");
    assert!(out.contains("tmp-writable"), "podman's /tmp tmpfs: {out}");
    let ifaces: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains("tmp-writable"))
        .skip(1)
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, ["lo"], "--network none: {out}");

    // /sys/fs/cgroup shows the container's own cgroups: on a v1 host runc's
    // tmpfs of read-only binds (memory/ with the --memory limit), on v2 a
    // cgroup2 whose root is the container's cgroup.
    let limit_file = if common::is_cgroup_v2() {
        "/sys/fs/cgroup/memory.max"
    } else {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    };
    let out = p.ok(&["exec", &id, "cat", limit_file]);
    assert_eq!(out.trim(), "67108864", "{limit_file}");
    let o = p.run(&["exec", &id, "sh", "-c", &format!("echo 1 > {limit_file}")]);
    assert!(!o.status.success(), "the cgroup mount is read-only");

    // The pids limit holds: of 60 more sleeps the ones past 50 cannot
    // start (busybox sh gives up at the first failed fork).
    let o = p.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "for i in $(seq 60); do sleep 30 & done",
    ]);
    assert!(!o.status.success(), "60 forks under pids.max 50");
    assert!(stderr(&o).contains("can't fork"), "{}", stderr(&o));
    if !common::is_cgroup_v2() {
        let current: u32 = read("pids", "pids.current").parse().unwrap();
        assert!(current <= 50, "pids.current {current}");
    }
    p.ok(&["rm", "--force", "--time", "0", &id]);
    assert!(
        wait_until(10, || p.berth_ids().is_empty()),
        "{:?}",
        p.berth_ids()
    );
}

/// podman's device rules ("deny all" plus its allow list) are enforced:
/// its default devices work, and a node made for a device outside the list
/// (c 42:0, a number no driver has: ENXIO if the open got past the cgroup)
/// cannot be opened, EPERM. mknod itself stays allowed, as under runc.
#[test]
fn default_device_rules_are_enforced() {
    let p = require_podman!();
    let o = p.container(&[
        "--rm",
        "--cap-add",
        "MKNOD",
        IMAGE,
        "sh",
        "-c",
        "head -c1 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; \
         mknod /dev/x42 c 42 0 && echo mknod-ok; head -c1 /dev/x42 2>&1; \
         [ -e /sys/fs/cgroup/devices/devices.list ] && cat /sys/fs/cgroup/devices/devices.list; true",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["1", "null-ok", "mknod-ok"], "{out}");
    assert!(lines[3].contains("Operation not permitted"), "{out}");
    // On a v1 host the container's devices cgroup is a whitelist.
    if lines.len() > 4 {
        assert!(!out.contains("a *:* rwm"), "{out}");
        assert!(out.contains("c 1:3 rwm"), "{out}");
    }
}
