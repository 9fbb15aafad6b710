//! runc's `exec` flags, each run side by side with runc 1.1 on the same
//! bundle where the two can be compared: --cap, --no-new-privs, --user,
//! --cwd, --env, --additional-gids, --preserve-fds, --cgroup, --process FILE
//! (the whole process: env not merged, capabilities, rlimits, user),
//! --ignore-paused, and the errors for --apparmor/--process-label on a host
//! without AppArmor or SELinux.

mod common;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::oci::{berth, runc, runtime, state, Bundle, Ran};
use common::{berth_bin, v1_dir, wait_until, Berth};
use serde_json::{json, Value};

/// A runtime (berth or runc) with its state root, and the containers and
/// sub-cgroups a test made there: all removed on drop, even on failure.
struct Rt {
    bin: PathBuf,
    root: PathBuf,
    ids: Vec<String>,
    sub_cgroups: Vec<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

impl Rt {
    fn berth(b: &Berth) -> Rt {
        Rt {
            bin: berth_bin(),
            root: b.root.path().to_path_buf(),
            ids: Vec::new(),
            sub_cgroups: Vec::new(),
            _dir: None,
        }
    }

    fn runc(bin: PathBuf) -> Rt {
        let dir = tempfile::tempdir().unwrap();
        Rt {
            bin,
            root: dir.path().to_path_buf(),
            ids: Vec::new(),
            sub_cgroups: Vec::new(),
            _dir: Some(dir),
        }
    }

    fn name(&self) -> String {
        self.bin.file_name().unwrap().to_string_lossy().into_owned()
    }

    fn run(&self, args: &[&str]) -> Ran {
        runtime(&self.bin, &self.root, args)
    }

    /// `run -d` of `bundle` as `id`; the init's host pid.
    fn start(&mut self, bundle: &Bundle, id: &str) -> i64 {
        let r = self.run(&["run", "-d", "--bundle", bundle.path(), id]);
        assert_eq!(r.code, 0, "{} run: {}", self.name(), r.err);
        self.ids.push(id.to_string());
        let r = self.run(&["state", id]);
        let s: Value = serde_json::from_str(&r.out).unwrap();
        s["pid"].as_i64().unwrap()
    }

    /// `exec` with the caller's `files` as descriptors 3, 4, ...
    fn exec_with_fds(&self, args: &[&str], files: &[&std::fs::File]) -> Ran {
        let dir = tempfile::tempdir().unwrap();
        let (o, e) = (dir.path().join("out"), dir.path().join("err"));
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("exec")
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap());
        let raw: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
        // SAFETY: between fork and exec only fcntl and dup2 run (both
        // async-signal-safe) on the child's own descriptors: copies above
        // 20 first so no source is overwritten, then dup2 onto 3, 4, ...
        // (dup2's copies are not close-on-exec).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                let mut high = [0i32; 8];
                for (i, fd) in raw.iter().enumerate() {
                    high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 20);
                    if high[i] < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (i, fd) in high.iter().take(raw.len()).enumerate() {
                    if libc::dup2(*fd, 3 + i as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let status = cmd.status().unwrap();
        Ran {
            code: status.code().unwrap_or(-1),
            out: std::fs::read_to_string(o).unwrap_or_default(),
            err: std::fs::read_to_string(e).unwrap_or_default(),
        }
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        for _ in 0..2 {
            for id in &self.ids {
                let _ = self.run(&["delete", "-f", id]);
            }
            for d in self.sub_cgroups.iter().rev() {
                let _ = wait_until(2, || std::fs::remove_dir(d).is_ok() || !d.exists());
            }
        }
    }
}

fn sleeper(b: &Berth) -> Bundle {
    Bundle::new(b, |c| c["process"]["args"] = json!(["sleep", "600"]))
}

fn hybrid() -> bool {
    Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists()
}

/// The flags that change the process taken from config.json give the same
/// process under runc and Berth, as seen from inside.
#[test]
fn exec_flags_give_the_same_process_as_runc() {
    require_root!();
    let Some(runc_bin) = runc() else {
        eprintln!("skipped: runc is not installed");
        return;
    };
    let b = Berth::new();
    let bundle = sleeper(&b);
    let status = "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status";
    let cases: Vec<Vec<&str>> = vec![
        vec!["sh", "-c", status],
        vec![
            "--cap",
            "CAP_SYS_ADMIN",
            "--cap",
            "CAP_NET_RAW",
            "sh",
            "-c",
            status,
        ],
        vec!["--no-new-privs", "sh", "-c", status],
        vec!["--user", "65534", "id"],
        vec!["--user", "65534:65534", "--additional-gids", "7", "id"],
        vec!["--cwd", "/tmp", "pwd"],
        vec!["-e", "A=1", "-e", "HOME=/x", "sh", "-c", "echo $A $HOME"],
        vec!["sh", "-c", "ulimit -n; ulimit -Hn"],
    ];
    let mut outs = Vec::new();
    for mut rt in [Rt::berth(&b), Rt::runc(runc_bin)] {
        rt.start(&bundle, "exec-flags");
        let mut got = Vec::new();
        for case in &cases {
            let args = fix_id_position(case);
            let r = rt.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(r.code, 0, "{} exec {args:?}: {}", rt.name(), r.err);
            got.push(r.out);
        }
        outs.push(got);
    }
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(outs[0][i], outs[1][i], "berth vs runc for exec {case:?}");
    }
    // And the flags did something.
    assert!(outs[0][1] != outs[0][0], "--cap changed nothing");
    assert!(outs[0][2].contains("NoNewPrivs:\t1"), "{}", outs[0][2]);
    assert!(
        outs[0][3].starts_with("uid=65534(nobody) gid=0(root)"),
        "{}",
        outs[0][3]
    );
}

/// `exec FLAGS... ID CMD...` with the id after the last flag and its value.
fn fix_id_position(case: &[&str]) -> Vec<String> {
    let with_value = ["--cap", "-c", "--user", "--additional-gids", "--cwd", "-e"];
    let mut i = 0;
    while i < case.len() && case[i].starts_with('-') {
        i += if with_value.contains(&case[i]) { 2 } else { 1 };
    }
    let mut v: Vec<String> = vec!["exec".into()];
    v.extend(case[..i].iter().map(|s| s.to_string()));
    v.push("exec-flags".into());
    v.extend(case[i..].iter().map(|s| s.to_string()));
    v
}

/// --process FILE is the whole process: its env replaces the container's,
/// its capabilities, rlimits, user and noNewPrivileges apply; the same as
/// runc. Bad files are errors naming the field.
#[test]
fn exec_process_file_is_the_whole_process() {
    require_root!();
    let Some(runc_bin) = runc() else {
        eprintln!("skipped: runc is not installed");
        return;
    };
    let b = Berth::new();
    let bundle = Bundle::new(&b, |c| {
        c["process"]["args"] = json!(["sleep", "600"]);
        c["process"]["env"] = json!(["PATH=/bin", "FROM_CONFIG=1"]);
    });
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, p: Value| -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, p.to_string()).unwrap();
        path.to_str().unwrap().to_string()
    };
    let script = "env | sort | tr '\\n' ' '; echo; id; ulimit -n; ulimit -Hn; \
                  grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status";
    let whole = file(
        "whole.json",
        json!({
            "args": ["/bin/sh", "-c", script],
            "cwd": "/tmp",
            "env": ["PATH=/bin", "ONLY=process"],
            "user": {"uid": 65534, "gid": 65534, "additionalGids": [3]},
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"],
                "effective": ["CAP_KILL", "CAP_CHOWN"],
                "permitted": ["CAP_KILL", "CAP_CHOWN"],
                "inheritable": ["CAP_KILL"],
                "ambient": ["CAP_KILL"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}],
            "noNewPrivileges": true
        }),
    );
    let minimal = file(
        "minimal.json",
        json!({"args": ["/bin/sh", "-c", script], "cwd": "/"}),
    );
    let mut outs = Vec::new();
    let mut rts = [Rt::berth(&b), Rt::runc(runc_bin)];
    for rt in rts.iter_mut() {
        rt.start(&bundle, "exec-proc");
        let mut got = Vec::new();
        for f in [&whole, &minimal] {
            let r = rt.run(&["exec", "--process", f, "exec-proc"]);
            assert_eq!(r.code, 0, "{} exec --process {f}: {}", rt.name(), r.err);
            got.push(r.out);
        }
        outs.push(got);
    }
    // runc 1.1.5 shows the soft RLIMIT_NOFILE raised to the hard one: its
    // Go 1.19 init raises it at start-up and restores its own view on exec
    // (a runc bug, fixed in later 1.1 releases); the spec's soft value is
    // what Berth sets, so that one line is compared with the file instead.
    let without_soft = |s: &str| -> Vec<String> {
        let mut l: Vec<String> = s.lines().map(str::to_string).collect();
        l.remove(2);
        l
    };
    assert_eq!(
        without_soft(&outs[0][0]),
        without_soft(&outs[1][0]),
        "berth vs runc"
    );
    assert_eq!(outs[0][1], outs[1][1], "berth vs runc");
    let whole_out = &outs[0][0];
    assert!(
        whole_out.starts_with("HOME=/ ONLY=process PATH=/bin PWD=/tmp"),
        "{whole_out}"
    );
    assert!(!whole_out.contains("FROM_CONFIG"), "{whole_out}");
    assert!(whole_out.contains("uid=65534(nobody) gid=65534(nobody) groups=3"));
    assert!(whole_out.contains("\n100\n200\n"), "{whole_out}");
    assert!(
        whole_out.contains("CapAmb:\t0000000000000020"),
        "{whole_out}"
    );
    assert!(
        whole_out.contains("CapBnd:\t0000000000002021"),
        "{whole_out}"
    );
    assert!(whole_out.contains("NoNewPrivs:\t1"), "{whole_out}");
    // Without capabilities the container's apply (runc's fallback), without
    // rlimits the caller's stay (not config.json's 1024, as with runc);
    // noNewPrivileges left out is false.
    assert!(!outs[0][1].contains("\n1024\n1024\n"), "{}", outs[0][1]);
    assert!(
        outs[0][1].contains("CapBnd:\t0000000020000420"),
        "{}",
        outs[0][1]
    );
    assert!(outs[0][1].contains("NoNewPrivs:\t0"), "{}", outs[0][1]);

    // umask from the file (runc leaves the caller's; the spec's field is
    // honoured here).
    let umask = file(
        "umask.json",
        json!({"args": ["/bin/sh", "-c", "umask"], "cwd": "/", "user": {"uid": 0, "gid": 0, "umask": 63}}),
    );
    let r = berth(&b, &["exec", "--process", &umask, "exec-proc"]);
    assert_eq!((r.code, r.out.as_str()), (0, "0077\n"), "{}", r.err);

    // Mistakes name the field; runc's exit code for a failed exec is 255.
    let bad = [
        (json!({"args": [], "cwd": "/"}), "--process args"),
        (json!({"args": ["sh"], "cwd": "tmp"}), "--process cwd"),
        (json!({"args": ["sh"]}), "--process cwd"),
        (
            json!({"args": ["sh"], "cwd": "/", "capabilities": {"bounding": ["CAP_NOPE"]}}),
            "--process capabilities.bounding",
        ),
        (
            json!({"args": ["sh"], "cwd": "/", "rlimits": [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]}),
            "--process rlimits[0].type",
        ),
        (
            json!({"args": ["sh"], "cwd": "/", "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 9, "hard": 1}]}),
            "--process rlimits[0]",
        ),
        (
            json!({"args": ["sh"], "cwd": "/", "apparmorProfile": "docker-default"}),
            "--process apparmorProfile",
        ),
        (
            json!({"args": ["sh"], "cwd": "/", "selinuxLabel": "system_u:system_r:container_t:s0"}),
            "--process selinuxLabel",
        ),
    ];
    for (i, (p, field)) in bad.into_iter().enumerate() {
        let f = file(&format!("bad{i}.json"), p.clone());
        let r = berth(&b, &["exec", "--process", &f, "exec-proc"]);
        assert_eq!(r.code, 255, "{p}: {}", r.err);
        assert!(r.err.contains(field), "{p}: {}", r.err);
    }
}

/// --apparmor and --process-label on a host without AppArmor or SELinux:
/// an error naming the flag, never ignored.
#[test]
fn security_label_flags_are_errors_on_this_host() {
    require_root!();
    let b = Berth::new();
    let bundle = sleeper(&b);
    let mut rt = Rt::berth(&b);
    rt.start(&bundle, "l");
    for (flag, value, host) in [
        ("--apparmor", "docker-default", "AppArmor"),
        (
            "--process-label",
            "system_u:system_r:container_t:s0",
            "SELinux",
        ),
    ] {
        let r = rt.run(&["exec", flag, value, "l", "true"]);
        assert_eq!(r.code, 255, "{flag}: {}", r.err);
        assert!(r.err.contains(flag), "{}", r.err);
        assert!(r.err.contains(host), "{}", r.err);
    }
}

/// --preserve-fds N: exactly the caller's descriptors 3..3+N reach the
/// process, as with runc; without it none do.
#[test]
fn exec_preserve_fds_as_runc() {
    require_root!();
    let Some(runc_bin) = runc() else {
        eprintln!("skipped: runc is not installed");
        return;
    };
    let b = Berth::new();
    let bundle = sleeper(&b);
    let dir = tempfile::tempdir().unwrap();
    let (p3, p4) = (dir.path().join("three"), dir.path().join("four"));
    std::fs::write(&p3, "preserved\n").unwrap();
    std::fs::write(&p4, "not preserved\n").unwrap();
    let script = "cat <&3; ls /proc/self/fd | tr '\\n' ' '";
    for mut rt in [Rt::berth(&b), Rt::runc(runc_bin)] {
        rt.start(&bundle, "exec-fds");
        let (f3, f4) = (
            std::fs::File::open(&p3).unwrap(),
            std::fs::File::open(&p4).unwrap(),
        );
        let r = rt.exec_with_fds(
            &["--preserve-fds", "1", "exec-fds", "sh", "-c", script],
            &[&f3, &f4],
        );
        assert_eq!(r.code, 0, "{}: {}", rt.name(), r.err);
        // ls's own directory descriptor takes the lowest free number.
        assert_eq!(r.out, "preserved\n0 1 2 3 4 ", "{}: {}", rt.name(), r.err);
        let r = rt.exec_with_fds(&["exec-fds", "ls", "/proc/self/fd"], &[&f3, &f4]);
        assert_eq!(
            r.out.split_whitespace().collect::<Vec<_>>(),
            ["0", "1", "2", "3"],
            "{}: nothing passes without --preserve-fds: {}",
            rt.name(),
            r.err
        );
    }
}

/// --cgroup CONTROLLER:PATH runs the process in an existing sub-cgroup of
/// the container's (that hierarchy only), as runc; `--cgroup PATH` moves it
/// in every hierarchy; a missing or escaping sub-cgroup is an error naming
/// the flag.
#[test]
fn exec_into_a_sub_cgroup() {
    require_root!();
    if !hybrid() {
        eprintln!("skipped: needs the v1 memory hierarchy (hybrid host)");
        return;
    }
    let Some(runc_bin) = runc() else {
        eprintln!("skipped: runc is not installed");
        return;
    };
    let b = Berth::new();
    let bundle = sleeper(&b);
    for mut rt in [Rt::berth(&b), Rt::runc(runc_bin)] {
        let pid = rt.start(&bundle, "exec-cg");
        let sub = v1_dir(pid, "memory").join("sub");
        std::fs::create_dir(&sub).unwrap();
        rt.sub_cgroups.push(sub.clone());
        // The bundle has a cgroup namespace: paths are seen from the
        // container's cgroup, the same under both runtimes.
        let plain = rt.run(&["exec", "exec-cg", "cat", "/proc/self/cgroup"]);
        let r = rt.run(&[
            "exec",
            "--cgroup",
            "memory:sub",
            "exec-cg",
            "cat",
            "/proc/self/cgroup",
        ]);
        assert_eq!(r.code, 0, "{}: {}", rt.name(), r.err);
        let want: Vec<String> = plain
            .out
            .lines()
            .map(|l| {
                if l.contains(":memory:") {
                    format!("{}sub", l)
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert_eq!(r.out.lines().collect::<Vec<_>>(), want, "{}", rt.name());
        let r = rt.run(&["exec", "--cgroup", "memory:nosuch", "exec-cg", "true"]);
        assert_ne!(r.code, 0, "{}: a missing sub-cgroup", rt.name());
    }

    // Berth's messages, and the unified hierarchy with a plain PATH.
    let mut rt = Rt::berth(&b);
    let pid = rt.start(&bundle, "h");
    for (flag, says) in [
        ("memory:nosuch", "does not exist"),
        ("memory:../..", "escapes"),
        ("net_cls:x", "no \"net_cls\" hierarchy"),
    ] {
        let r = rt.run(&["exec", "--cgroup", flag, "h", "true"]);
        assert_eq!(r.code, 255, "{flag}: {}", r.err);
        assert!(
            r.err.contains("--cgroup") && r.err.contains(says),
            "{flag}: {}",
            r.err
        );
    }
    let init_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in init_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        if ctrls.starts_with("name=") {
            continue;
        }
        let mount = if ctrls.is_empty() { "unified" } else { ctrls };
        let dir = Path::new("/sys/fs/cgroup")
            .join(mount)
            .join(path.trim_start_matches('/'));
        if path != "/" {
            let sub = dir.join("all");
            std::fs::create_dir(&sub).unwrap();
            rt.sub_cgroups.push(sub);
        }
    }
    let r = rt.run(&["exec", "--cgroup", "all", "h", "cat", "/proc/self/cgroup"]);
    assert_eq!(r.code, 0, "{}", r.err);
    // Hierarchies the container has a cgroup of its own in show /all
    // (below its cgroup namespace's root), the others stay at /.
    for (ours, init) in r.out.lines().zip(init_cgroup.lines()) {
        let prefix = &init[..init.rfind(':').unwrap() + 1];
        if init.ends_with(":/") || init.contains(":name=") {
            assert_eq!(ours, format!("{prefix}/"));
        } else {
            assert_eq!(ours, format!("{prefix}/all"));
        }
    }
}

/// exec into a paused container is refused (as runc) unless
/// --ignore-paused; then, as with runc, exec waits until `resume` lets the
/// process run.
#[test]
fn exec_into_a_paused_container() {
    require_root!();
    let b = Berth::new();
    let bundle = sleeper(&b);
    let mut rt = Rt::berth(&b);
    rt.start(&bundle, "z");
    assert_eq!(rt.run(&["pause", "z"]).code, 0);
    let r = rt.run(&["exec", "z", "true"]);
    assert_ne!(r.code, 0);
    assert!(
        r.err
            .contains("cannot exec in a paused container (use --ignore-paused to override)"),
        "{}",
        r.err
    );
    let (bin, root) = (rt.bin.clone(), rt.root.clone());
    let t = std::thread::spawn(move || {
        runtime(&bin, &root, &["exec", "--ignore-paused", "z", "echo", "ok"])
    });
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(!t.is_finished(), "exec finished in a paused container");
    assert_eq!(rt.run(&["resume", "z"]).code, 0);
    assert!(
        wait_until(10, || t.is_finished()),
        "exec still blocked after resume"
    );
    let r = t.join().unwrap();
    assert_eq!((r.code, r.out.as_str()), (0, "ok\n"), "{}", r.err);
    assert_eq!(state(&b, "z")["status"], "running");
}

/// `exec -d` reports the pid only once the program runs: a program that
/// is not there fails the exec itself (255, "exec failed", no pid file),
/// as with runc, rather than a detached process that exits 127; a program
/// that exits at once still succeeds with its pid.
#[test]
fn detached_exec_fails_when_the_program_cannot_start() {
    require_root!();
    let b = Berth::new();
    let bundle = sleeper(&b);
    let mut rts = vec![Rt::berth(&b)];
    if let Some(bin) = runc() {
        rts.push(Rt::runc(bin));
    }
    for rt in &mut rts {
        rt.start(&bundle, "dx");
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let p = pid_file.to_str().unwrap();
        let r = rt.run(&["exec", "-d", "--pid-file", p, "dx", "no-such-program"]);
        assert_eq!(r.code, 255, "{}: {}", rt.name(), r.err);
        assert!(r.err.contains("exec failed"), "{}: {}", rt.name(), r.err);
        assert!(
            !pid_file.exists(),
            "{}: a pid file for a failed exec",
            rt.name()
        );
        let r = rt.run(&["exec", "-d", "--pid-file", p, "dx", "true"]);
        assert_eq!(r.code, 0, "{}: {}", rt.name(), r.err);
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
        assert!(pid > 1, "{}", rt.name());
    }
}
