//! Isolation properties checked from INSIDE real containers (and, where it
//! makes sense, against the host from outside): namespaces, filesystem
//! views, masked and read-only paths, capabilities, no_new_privs, seccomp,
//! users, rlimits, orphan reaping and rootless operation.
//!
//! Every probe is built so that it would give a different answer if the
//! property did not hold (e.g. the seccomp probes get extra capabilities, so
//! that an EPERM can only come from the filter).

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

// ---------------------------------------------------------------- helpers

/// Asserts that a container command exited 0 and returns its stdout.
fn expect_ok(what: &str, out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// `sh -c SCRIPT` in a busybox-rootfs container.
fn bb_sh(b: &Berth, extra: &[&str], script: &str) -> Output {
    b.launch_busybox(extra, &["sh", "-c", script])
}

/// `berth launch <extra> -- <cmd>` without --rootfs (host-root mode).
fn host_root(b: &Berth, extra: &[&str], cmd: &[&str]) -> Output {
    let mut args = vec!["launch"];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(cmd);
    b.run(&args)
}

/// The value of `Key:` in a /proc/PID/status text.
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("{key} not in status:\n{status}"))
        .trim()
}

/// A capability mask field (CapEff, CapBnd, ...) of a status text.
fn cap_mask(status: &str, key: &str) -> u64 {
    u64::from_str_radix(status_field(status, key), 16).unwrap()
}

const CAP_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Bit mask of capability names ("CAP_KILL" or "KILL").
fn mask_of<S: AsRef<str>>(names: &[S]) -> u64 {
    names.iter().fold(0, |m, n| {
        let n = n.as_ref().trim_start_matches("CAP_");
        let bit = CAP_NAMES
            .iter()
            .position(|c| *c == n)
            .unwrap_or_else(|| panic!("unknown cap {n}"));
        m | (1u64 << bit)
    })
}

/// runc's default set: AUDIT_WRITE | KILL | NET_BIND_SERVICE.
const DEFAULT_CAPS: u64 = (1 << 29) | (1 << 5) | (1 << 10);

/// The id of the only container under a Berth root.
fn only_id(b: &Berth) -> String {
    let ids = b.ids();
    assert_eq!(ids.len(), 1, "expected one container: {ids:?}");
    ids[0].clone()
}

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

/// Interface names in a /proc/net/dev text.
fn net_dev_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .collect()
}

/// Field 22 (start time) of /proc/PID/stat, to tell a pid from its reuse.
fn start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// (pid, state, ppid) of every process on the host.
fn host_processes() -> Vec<(i32, char, i32)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = s.rfind(')') else { continue };
        let mut f = s[close + 2..].split_whitespace();
        let state = f.next().and_then(|x| x.chars().next()).unwrap_or('?');
        let ppid = f.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        v.push((pid, state, ppid));
    }
    v
}

/// A python3 program (host-root mode) that calls each syscall named on its
/// command line with harmless arguments and prints `name ret errno` lines,
/// then the Seccomp fields of its status. Arguments are chosen so that
/// without a filter (and with the capabilities the test adds) every call
/// fails with something other than EPERM, or succeeds harmlessly inside the
/// container's own namespaces.
const SYSCALL_PROBE: &str = r#"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
L = ctypes.c_long
probes = {
    "getpid": lambda: libc.getpid(),
    "unshare": lambda: libc.unshare(0x04000000),  # CLONE_NEWUTS
    "mount": lambda: libc.mount(b"none", b"/nonexistent-berth-probe", b"tmpfs", L(0), None),
    "umount2": lambda: libc.umount2(b"/nonexistent-berth-probe", 0),
    "setns": lambda: libc.setns(-1, 0),
    "keyctl": lambda: libc.syscall(L(250), L(0), L(0), L(0)),  # KEYCTL_GET_KEYRING_ID(0)
    "add_key": lambda: libc.syscall(L(248), None, None, None, L(0), L(0)),  # NULL type: EFAULT
    "request_key": lambda: libc.syscall(L(249), None, None, None, L(0)),
    "ptrace": lambda: libc.ptrace(L(0), L(0), None, None),  # PTRACE_TRACEME
    "bpf": lambda: libc.syscall(L(321), L(0), None, L(0)),
    "perf_event_open": lambda: libc.syscall(L(298), None, L(0), L(-1), L(-1), L(0)),
    "clone3": lambda: libc.syscall(L(435), None, L(0)),
}
for name in sys.argv[1:]:
    ctypes.set_errno(0)
    r = probes[name]()
    print(name, r, ctypes.get_errno())
for line in open("/proc/self/status"):
    if line.startswith("Seccomp"):
        print(line.strip().replace(":\t", " "))
"#;

/// Runs SYSCALL_PROBE for `names` with the launch flags `extra`; returns
/// name -> (return value, errno) plus the status lines.
fn probe_syscalls(
    b: &Berth,
    extra: &[&str],
    names: &[&str],
) -> (std::collections::HashMap<String, (i64, i32)>, String) {
    let mut cmd = vec!["python3", "-c", SYSCALL_PROBE];
    cmd.extend_from_slice(names);
    let out = host_root(b, extra, &cmd);
    let text = expect_ok(&format!("syscall probe {extra:?}"), &out);
    let mut res = std::collections::HashMap::new();
    let mut status = String::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if l.starts_with("Seccomp") {
            status.push_str(&format!("{}:\t{}\n", f[0], f[1]));
        } else {
            res.insert(
                f[0].to_string(),
                (f[1].parse().unwrap(), f[2].parse().unwrap()),
            );
        }
    }
    (res, status)
}

// ------------------------------------------------------------------ tests

/// The container has its own pid namespace (its command is pid 1 and sees
/// only its own processes) and its own mnt, uts, ipc, net and cgroup
/// namespaces; `--net host` shares only the network namespace.
#[test]
fn namespaces_are_private() {
    require_root!();
    let b = Berth::new();
    let kinds = ["pid", "mnt", "uts", "ipc", "net", "cgroup"];
    let script = "echo $$; for n in pid mnt uts ipc net cgroup; do echo $n $(readlink /proc/self/ns/$n); done; \
                  ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '; echo; ps -o pid,comm; echo end";
    let text = expect_ok("ns probe", &bb_sh(&b, &[], script));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "1", "the command is not pid 1: {text}");
    for (i, kind) in kinds.iter().enumerate() {
        let (k, link) = lines[1 + i].split_once(' ').unwrap();
        assert_eq!(k, *kind);
        assert!(link.starts_with(&format!("{kind}:[")), "{link}");
        assert_ne!(link, host_ns(kind), "{kind} namespace is the host's");
    }
    // /proc lists only the container's processes: sh (1), and the pipeline.
    let pids: Vec<u32> = lines[7]
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(pids.contains(&1), "{text}");
    assert!(
        pids.len() <= 4,
        "more processes than the container's in /proc: {pids:?}"
    );
    // ps shows sh as pid 1 plus ps itself, nothing else.
    assert_eq!(lines.last(), Some(&"end"));
    let ps: Vec<(u32, &str)> = lines[9..lines.len() - 1]
        .iter()
        .map(|l| {
            let (p, c) = l.trim().split_once(' ').unwrap();
            (p.parse().unwrap(), c.trim())
        })
        .collect();
    assert_eq!(ps.len(), 2, "ps: {ps:?}");
    assert_eq!(ps[0], (1, "sh"));
    assert_eq!(ps[1].1, "ps");

    // --net host: same network namespace as the host, the rest still private.
    let text = expect_ok(
        "ns probe --net host",
        &bb_sh(
            &b,
            &["--net", "host"],
            "readlink /proc/self/ns/net; readlink /proc/self/ns/uts",
        ),
    );
    let l: Vec<&str> = text.lines().collect();
    assert_eq!(l[0], host_ns("net"));
    assert_ne!(l[1], host_ns("uts"));

    // The inodes inspect reports for a running container are the ones its
    // processes see.
    let id = b.detach_busybox(&[], &["sleep", "30"]);
    let i = b.inspect(&id);
    for n in i["namespaces"].as_array().unwrap() {
        let kind = n["type"].as_str().unwrap();
        let inside = b.ok(&[
            "exec",
            &id,
            "--",
            "readlink",
            &format!("/proc/self/ns/{kind}"),
        ]);
        assert_eq!(
            inside.trim(),
            format!("{kind}:[{}]", n["inode"]),
            "inspect namespaces: {n}"
        );
    }
}

/// The container has its own hostname ("berth" by default, --hostname
/// otherwise); the host's hostname is unchanged.
#[test]
fn uts_hostname() {
    require_root!();
    let b = Berth::new();
    let before = nix::unistd::gethostname().unwrap();
    let out = bb_sh(
        &b,
        &["--hostname", "h1"],
        "hostname; cat /proc/sys/kernel/hostname",
    );
    assert_eq!(expect_ok("--hostname h1", &out), "h1\nh1\n");
    let out = bb_sh(&b, &[], "hostname");
    assert_eq!(expect_ok("default hostname", &out), "berth\n");
    assert_eq!(
        nix::unistd::gethostname().unwrap(),
        before,
        "host hostname changed"
    );
    assert_ne!(before.to_string_lossy(), "h1");
}

/// `--net none` (the default) gives a network namespace with only `lo`,
/// and `lo` is up; `--net host` sees the host's interfaces.
#[test]
fn network_none_has_only_loopback_up() {
    require_root!();
    let b = Berth::new();
    let host = net_dev_names(&std::fs::read_to_string("/proc/net/dev").unwrap());
    let text = expect_ok(
        "net none",
        &bb_sh(&b, &[], "cat /proc/net/dev; echo ---; cat /sys/class/net/lo/flags; ls /sys/class/net; echo ---; ip link show lo"),
    );
    let parts: Vec<&str> = text.split("---\n").collect();
    assert_eq!(
        net_dev_names(parts[0]),
        BTreeSet::from(["lo".to_string()]),
        "{text}"
    );
    let mut rest = parts[1].lines();
    let flags = u32::from_str_radix(rest.next().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not IFF_UP: {flags:#x}");
    assert_eq!(
        rest.collect::<Vec<_>>(),
        vec!["lo"],
        "/sys/class/net: {text}"
    );
    assert!(parts[2].contains("UP"), "ip link show lo: {}", parts[2]);

    let text = expect_ok(
        "net host",
        &bb_sh(&b, &["--net", "host"], "cat /proc/net/dev"),
    );
    assert_eq!(
        net_dev_names(&text),
        host,
        "--net host does not see the host's interfaces"
    );
}

/// With --rootfs, `/` is the image (busybox, not the host's files), /proc
/// is a fresh proc of the container, /dev is a minimal tmpfs with the
/// standard devices and no host disks, and /sys is read-only.
#[test]
fn rootfs_filesystem_view() {
    require_root!();
    let b = Berth::new();
    let script = r#"
        [ -x /bin/busybox ] && echo busybox-ok
        [ -e /etc/debian_version ] && echo host-etc-visible
        head -c 5 /proc/1/cmdline | tr '\0' ' '; echo
        for d in null zero full random urandom tty ptmx pts/ptmx; do [ -c /dev/$d ] && echo "dev $d"; done
        for d in shm mqueue pts; do [ -d /dev/$d ] && echo "dir $d"; done
        for d in sda vda xvda nvme0n1 mem kmsg; do [ -e /dev/$d ] && echo "host-dev $d"; done
        stat -c 'null %t,%T' /dev/null
        echo data > /dev/null && echo null-writable
        [ "$(head -c 4 /dev/zero | od -An -tx1 | tr -d ' ')" = 00000000 ] && echo zero-ok
        grep -E ' /dev (tmpfs|devtmpfs)' /proc/mounts | cut -d' ' -f3
        touch /sys/berth-probe 2>&1
        true
    "#;
    let text = expect_ok("rootfs view", &bb_sh(&b, &[], script));
    let has = |s: &str| text.lines().any(|l| l.trim() == s);
    assert!(has("busybox-ok"), "{text}");
    assert!(
        !text.contains("host-etc-visible"),
        "host / visible inside: {text}"
    );
    assert!(
        has("sh -c"),
        "/proc/1/cmdline is not the container's command: {text}"
    );
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts/ptmx",
    ] {
        assert!(has(&format!("dev {d}")), "/dev/{d} missing: {text}");
    }
    for d in ["shm", "mqueue", "pts"] {
        assert!(has(&format!("dir {d}")), "/dev/{d} missing: {text}");
    }
    assert!(!text.contains("host-dev"), "host devices in /dev: {text}");
    assert!(has("null 1,3"), "/dev/null is not char 1:3: {text}");
    assert!(has("null-writable") && has("zero-ok"), "{text}");
    assert!(has("tmpfs"), "/dev is not a tmpfs: {text}");
    assert!(
        text.contains("touch: /sys/berth-probe: Read-only file system"),
        "/sys writable: {text}"
    );
}

/// Host-root mode: the host's files are visible but `/` and every host
/// mount under it are read-only; /tmp is private and writable; the cwd is
/// the writable sandbox, which is the container's state dir on the host.
#[test]
fn host_root_mode_is_read_only_with_private_tmp_and_sandbox() {
    require_root!();
    let b = Berth::new();
    let tag = format!("berth-iso-{}", std::process::id());
    let host_tmp_file = tempfile::Builder::new()
        .prefix(&tag)
        .tempfile_in("/tmp")
        .unwrap();
    let host_tmp_name = host_tmp_file
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let target_probe = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{tag}-probe"));
    let etc_probe = PathBuf::from(format!("/etc/{tag}-probe"));
    // Remove the probes on the host if berth lets the writes through.
    struct Cleanup(Vec<PathBuf>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let _cleanup = Cleanup(vec![
        target_probe.clone(),
        etc_probe.clone(),
        PathBuf::from(format!("/tmp/{tag}-inner")),
    ]);

    let script = format!(
        r#"
        pwd
        cat /etc/debian_version >/dev/null && echo host-etc-readable
        touch {etc} 2>/dev/null && echo etc-WRITABLE
        touch {target} 2>/dev/null && echo target-WRITABLE
        [ -e /tmp/{host_tmp} ] && echo host-tmp-VISIBLE
        echo inner > /tmp/{tag}-inner && echo tmp-writable
        echo payload > sandbox-file && echo sandbox-writable
        echo ---
        cat /proc/self/mountinfo
        "#,
        etc = etc_probe.display(),
        target = target_probe.display(),
        host_tmp = host_tmp_name,
    );
    let out = host_root(&b, &[], &["sh", "-c", &script]);
    let text = expect_ok("host-root probe", &out);
    let (probe, mountinfo) = text.split_once("---\n").unwrap();
    let has = |s: &str| probe.lines().any(|l| l.trim() == s);
    assert_eq!(probe.lines().next(), Some("/mnt/sandbox"), "cwd: {probe}");
    assert!(has("host-etc-readable"), "{probe}");
    assert!(
        !has("etc-WRITABLE") && !etc_probe.exists(),
        "/etc is writable: {probe}"
    );
    assert!(
        !has("target-WRITABLE") && !target_probe.exists(),
        "{} is writable: {probe}",
        target_probe.display()
    );
    assert!(
        !has("host-tmp-VISIBLE"),
        "host /tmp visible inside: {probe}"
    );
    assert!(
        has("tmp-writable"),
        "/tmp not writable: {probe}\n{}",
        stderr(&out)
    );
    assert!(
        !Path::new(&format!("/tmp/{tag}-inner")).exists(),
        "container /tmp is the host's"
    );
    assert!(
        has("sandbox-writable"),
        "sandbox not writable: {probe}\n{}",
        stderr(&out)
    );

    // Recursive read-only: every mount the host contributes (everything but
    // the container's own /proc, /dev, /tmp and /mnt trees) is mounted ro.
    let mut root_seen = false;
    for l in mountinfo.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let (mnt, opts) = (f[4], f[5]);
        let own = ["/proc", "/dev", "/tmp", "/mnt"]
            .iter()
            .any(|p| mnt == *p || mnt.starts_with(&format!("{p}/")));
        if own {
            continue;
        }
        root_seen |= mnt == "/";
        assert!(
            opts.split(',').any(|o| o == "ro"),
            "host mount {mnt} is not read-only: {l}"
        );
    }
    assert!(root_seen, "no / in mountinfo:\n{mountinfo}");

    // The sandbox file is on the host, in the container's state dir.
    let id = only_id(&b);
    let on_host = b.state_dir(&id).join("sandbox/sandbox-file");
    assert_eq!(
        std::fs::read_to_string(&on_host).unwrap(),
        "payload\n",
        "{}",
        on_host.display()
    );
    drop(host_tmp_file);
}

/// The OCI default masked paths read as empty (files) or empty
/// directories, and the read-only paths (/proc/sys, ...) cannot be written
/// even with CAP_SYS_ADMIN.
#[test]
fn masked_and_readonly_paths() {
    require_root!();
    let b = Berth::new();
    // Only paths that have content on this host prove anything.
    let has_content = |p: &str| {
        use std::io::Read;
        let mut buf = [0u8; 16];
        std::fs::File::open(p)
            .and_then(|mut f| f.read(&mut buf))
            .map(|n| n > 0)
            .unwrap_or(false)
    };
    let masked_files: Vec<&str> = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
    ]
    .into_iter()
    .filter(|p| has_content(p))
    .collect();
    let masked_dirs: Vec<&str> = ["/sys/firmware", "/proc/acpi", "/proc/scsi"]
        .into_iter()
        .filter(|p| {
            std::fs::read_dir(p)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
        })
        .collect();
    assert!(
        masked_files.contains(&"/proc/timer_list") || masked_files.contains(&"/proc/keys"),
        "nothing to check: {masked_files:?}"
    );
    let mut script = String::new();
    for f in &masked_files {
        script.push_str(&format!("echo \"file {f} $(head -c 64 {f} | wc -c)\"\n"));
    }
    for d in &masked_dirs {
        script.push_str(&format!("echo \"dir {d} $(ls -A {d} | wc -l)\"\n"));
    }
    script.push_str(
        "echo changed > /proc/sys/kernel/hostname 2>/dev/null && echo proc-sys-WRITABLE\n\
         echo \"hostname $(hostname)\"\n\
         cat /proc/self/mountinfo\n",
    );
    let out = bb_sh(&b, &["--cap-add", "SYS_ADMIN"], &script);
    let text = expect_ok("masked paths", &out);
    for f in &masked_files {
        assert!(
            text.lines().any(|l| l == format!("file {f} 0")),
            "{f} is not masked: {text}"
        );
    }
    for d in &masked_dirs {
        assert!(
            text.lines().any(|l| l == format!("dir {d} 0")),
            "{d} is not masked: {text}"
        );
    }
    assert!(
        !text.contains("proc-sys-WRITABLE"),
        "/proc/sys/kernel/hostname was written: {text}"
    );
    assert!(text.lines().any(|l| l == "hostname berth"), "{text}");
    for ro in [
        "/proc/sys",
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sysrq-trigger",
    ] {
        if !Path::new(ro).exists() {
            continue;
        }
        let line = text
            .lines()
            .rfind(|l| l.split(' ').nth(4) == Some(ro))
            .unwrap_or_else(|| panic!("{ro} is not a mount point: {text}"));
        assert!(
            line.split(' ')
                .nth(5)
                .unwrap()
                .split(',')
                .any(|o| o == "ro"),
            "{ro} not read-only: {line}"
        );
    }
}

/// Capability sets: runc's default set in every set; --cap-add/--cap-drop
/// change them; inspect of a running container reports the live sets.
#[test]
fn capabilities_from_inside() {
    require_root!();
    let b = Berth::new();
    let cases: &[(&[&str], u64)] = &[
        (&[], DEFAULT_CAPS),
        (&["--cap-add", "NET_ADMIN"], DEFAULT_CAPS | 1 << 12),
        (&["--cap-drop", "ALL"], 0),
        (&["--cap-drop", "KILL"], DEFAULT_CAPS & !(1 << 5)),
        (&["--cap-drop", "ALL", "--cap-add", "CHOWN"], 1),
    ];
    for (flags, want) in cases {
        let status = expect_ok(
            &format!("{flags:?}"),
            &b.launch_busybox(flags, &["cat", "/proc/self/status"]),
        );
        for set in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
            assert_eq!(cap_mask(&status, set), *want, "{flags:?} {set}: {status}");
        }
    }
    assert_eq!(
        mask_of(&["CAP_AUDIT_WRITE", "KILL", "NET_BIND_SERVICE"]),
        DEFAULT_CAPS
    );
    // Without CAP_CHOWN, root cannot give a file away.
    // (/dev/shm is the container's own tmpfs: the shared image stays clean.)
    let out = bb_sh(
        &b,
        &[],
        "touch /dev/shm/f && chown 65534 /dev/shm/f 2>&1; echo rc=$?",
    );
    assert!(
        stdout(&out).contains("rc=1"),
        "chown worked without CAP_CHOWN: {}",
        stdout(&out)
    );

    let id = b.detach_busybox(&["--cap-add", "NET_ADMIN"], &["sleep", "30"]);
    let i = b.inspect(&id);
    let names = |set: &str| -> BTreeSet<String> {
        i["capabilities"][set]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let want: BTreeSet<String> = [
        "CAP_AUDIT_WRITE",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_ADMIN",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for set in ["effective", "permitted", "bounding"] {
        assert_eq!(names(set), want, "inspect capabilities.{set}: {i}");
    }
    // And they are what the kernel says about the init, seen from the host.
    let pid = i["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(
        cap_mask(&status, "CapEff"),
        mask_of(&names("effective").into_iter().collect::<Vec<_>>())
    );
}

/// no_new_privs is set for the container's processes and inspect says so.
#[test]
fn no_new_privs_is_set() {
    require_root!();
    let b = Berth::new();
    let status = expect_ok(
        "status",
        &b.launch_busybox(&[], &["cat", "/proc/self/status"]),
    );
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    let id = b.detach_busybox(&[], &["sleep", "30"]);
    let i = b.inspect(&id);
    assert_eq!(i["no_new_privs"], true, "{i}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", i["pid"])).unwrap();
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
}

/// The default seccomp profile makes the dangerous syscalls fail with EPERM
/// (even with CAP_SYS_ADMIN/SYS_PTRACE, so the EPERM can only come from the
/// filter) and clone3 with ENOSYS; `--seccomp unconfined` loads no filter.
#[test]
fn seccomp_default_denies_and_unconfined_does_not() {
    require_root!();
    let b = Berth::new();
    let caps = ["--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE"];
    let denied = [
        "unshare",
        "mount",
        "umount2",
        "setns",
        "keyctl",
        "add_key",
        "request_key",
        "ptrace",
        "bpf",
        "perf_event_open",
    ];
    let mut names = vec!["getpid", "clone3"];
    names.extend_from_slice(&denied);
    let (res, status) = probe_syscalls(&b, &caps, &names);
    assert_eq!(res["getpid"], (1, 0), "getpid: {res:?}");
    for n in denied {
        assert_eq!(
            res[n],
            (-1, libc::EPERM),
            "{n} under the default profile: {res:?}"
        );
    }
    assert_eq!(res["clone3"], (-1, libc::ENOSYS), "clone3: {res:?}");
    assert_eq!(status_field(&status, "Seccomp"), "2", "{status}");
    assert!(
        status_field(&status, "Seccomp_filters")
            .parse::<u32>()
            .unwrap()
            >= 1,
        "{status}"
    );

    // Unconfined: the same calls (ptrace left out: it would really attach)
    // now reach the kernel and fail for other reasons or succeed.
    let undenied = [
        "unshare",
        "mount",
        "setns",
        "keyctl",
        "add_key",
        "perf_event_open",
    ];
    let mut names = vec!["clone3"];
    names.extend_from_slice(&undenied);
    let mut flags = caps.to_vec();
    flags.extend_from_slice(&["--seccomp", "unconfined"]);
    let (res, status) = probe_syscalls(&b, &flags, &names);
    for n in undenied {
        assert_ne!(
            res[n].1,
            libc::EPERM,
            "{n} is still EPERM when unconfined: {res:?}"
        );
    }
    assert_eq!(res["unshare"], (0, 0), "{res:?}");
    assert_eq!(res["mount"], (-1, libc::ENOENT), "{res:?}");
    assert_ne!(res["clone3"].1, libc::ENOSYS, "{res:?}");
    assert_eq!(status_field(&status, "Seccomp"), "0", "{status}");
}

/// A custom OCI profile file is applied (getcwd -> EACCES), and a profile
/// naming an unknown syscall is a usage error that leaves nothing behind.
#[test]
fn seccomp_custom_profile() {
    require_root!();
    let b = Berth::new();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .unwrap();
    let probe = "import os\ntry:\n    print('cwd', os.getcwd())\nexcept OSError as e:\n    print('errno', e.errno)";
    let out = host_root(
        &b,
        &["--seccomp", profile.to_str().unwrap()],
        &["python3", "-c", probe],
    );
    assert_eq!(expect_ok("custom profile", &out).trim(), "errno 13");
    // Same program without that profile: getcwd works.
    let out = host_root(&b, &[], &["python3", "-c", probe]);
    assert_eq!(
        expect_ok("default profile", &out).trim(),
        "cwd /mnt/sandbox"
    );
    // In a busybox container too.
    let out = bb_sh(
        &b,
        &["--seccomp", profile.to_str().unwrap()],
        "cd /tmp; /bin/busybox pwd -P",
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["no_such_syscall"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let c = Berth::new();
    let out = c.launch_busybox(&["--seccomp", bad.to_str().unwrap()], &["true"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no_such_syscall"), "{}", stderr(&out));
    assert!(c.ids().is_empty(), "bad profile left state: {:?}", c.ids());
}

/// --user switches uid, gid and groups; the non-root process keeps exactly
/// the spec's ambient capabilities (berth sets ambient = the default set)
/// and nothing more, so root-only file operations fail.
#[test]
fn user_switch_and_its_capabilities() {
    require_root!();
    let b = Berth::new();
    let probe = format!("root/berth-iso-{}", std::process::id());
    let out = bb_sh(
        &b,
        &["--user", "65534:65534"],
        &format!("id -u; id -g; id -G; touch /{probe} 2>/dev/null && echo root-dir-WRITABLE; cat /proc/self/status"),
    );
    if busybox_rootfs().join(&probe).exists() {
        let _ = std::fs::remove_file(busybox_rootfs().join(&probe));
        panic!("uid 65534 created /{probe} in the image");
    }
    let text = expect_ok("--user", &out);
    let l: Vec<&str> = text.lines().collect();
    assert_eq!(&l[..3], &["65534", "65534", "65534"], "{text}");
    assert!(!text.contains("root-dir-WRITABLE"), "{text}");
    assert_eq!(status_field(&text, "Uid"), "65534\t65534\t65534\t65534");
    let id = only_id(&b);
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(b.inspect(&id)["config"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let spec_set = |s: &str| -> Vec<String> {
        cfg["process"]["capabilities"][s]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let ambient = mask_of(&spec_set("ambient"));
    assert_eq!(ambient, DEFAULT_CAPS, "spec ambient: {cfg}");
    assert_eq!(cap_mask(&text, "CapAmb"), ambient, "{text}");
    assert_eq!(cap_mask(&text, "CapEff"), ambient, "{text}");
    assert_eq!(cap_mask(&text, "CapPrm"), ambient, "{text}");
    assert_eq!(
        cap_mask(&text, "CapBnd"),
        mask_of(&spec_set("bounding")),
        "{text}"
    );

    // Without capabilities a non-root user has none at all.
    let out = bb_sh(
        &b,
        &["--user", "65534:65534", "--cap-drop", "ALL"],
        "cat /proc/self/status",
    );
    let text = expect_ok("--user --cap-drop ALL", &out);
    for set in ["CapEff", "CapPrm", "CapAmb", "CapBnd"] {
        assert_eq!(cap_mask(&text, set), 0, "{set}: {text}");
    }
}

/// RLIMIT_NOFILE is 1024/1024 inside.
#[test]
fn rlimit_nofile() {
    require_root!();
    let b = Berth::new();
    let out = bb_sh(
        &b,
        &[],
        "ulimit -n; ulimit -Hn; grep 'Max open files' /proc/self/limits",
    );
    let text = expect_ok("ulimit", &out);
    let l: Vec<&str> = text.lines().collect();
    assert_eq!(&l[..2], &["1024", "1024"], "{text}");
    let f: Vec<&str> = l[2].split_whitespace().collect();
    assert_eq!(&f[3..5], &["1024", "1024"], "{text}");
}

/// An orphan inside the container is reparented to its pid 1; when init
/// exits every process of the container is gone (cgroups empty), and no
/// zombie is left under the supervisor on the host.
#[test]
fn orphans_are_reaped_with_the_container() {
    require_root!();
    let b = Berth::new();
    let script = "(sleep 1000 &); until pidof sleep >/dev/null; do :; done; ps -o pid,ppid,args; echo ps-done; \
                  while [ ! -e /dev/shm/go ]; do sleep 0.05; done; exit 7";
    let id = b.detach_busybox(&[], &["sh", "-c", script]);
    assert!(
        wait_until(10, || b.ok(&["logs", &id]).contains("ps-done")),
        "{}",
        b.ok(&["logs", &id])
    );
    let logs = b.ok(&["logs", &id]);
    let sleep = logs
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        // By args, not comm: busybox may run the applet by re-executing
        // /proc/self/exe, so for a moment its comm is "exe".
        .find(|f| f.get(2) == Some(&"sleep") && f.get(3) == Some(&"1000"))
        .unwrap_or_else(|| panic!("no orphan in ps: {logs}"));
    assert_eq!(sleep[1], "1", "orphan not reparented to pid 1: {logs}");

    let i = b.inspect(&id);
    let supervisor = i["supervisor"]["pid"].as_i64().unwrap() as i32;
    let dirs: Vec<PathBuf> = common::cgroup_dirs(&i);
    assert!(!dirs.is_empty(), "{i}");
    let procs = |d: &Path| -> Vec<i32> {
        std::fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .map(|p| p.parse().unwrap())
            .collect()
    };
    let members: BTreeSet<i32> = dirs.iter().flat_map(|d| procs(d)).collect();
    let orphan = *members
        .iter()
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default() == b"sleep\x001000\x00"
        })
        .unwrap_or_else(|| {
            let files: Vec<_> = dirs
                .iter()
                .map(|d| (d.clone(), std::fs::read_to_string(d.join("cgroup.procs"))))
                .collect();
            panic!("orphan not in the container's cgroup: {members:?} {files:?}\n{i}")
        });
    let orphan_start = start_time(orphan).unwrap();

    b.ok(&["exec", &id, "--", "touch", "/dev/shm/go"]);
    assert_eq!(b.ok(&["wait", &id]).trim(), "7");
    assert!(
        wait_until(5, || start_time(orphan) != Some(orphan_start)),
        "orphan {orphan} outlived the container"
    );
    for d in &dirs {
        assert!(
            procs(d).is_empty(),
            "{} still has processes: {:?}",
            d.display(),
            procs(d)
        );
    }
    let zombies: Vec<_> = host_processes()
        .into_iter()
        .filter(|(_, s, pp)| *pp == supervisor && *s == 'Z')
        .collect();
    assert!(
        zombies.is_empty(),
        "zombies under the supervisor {supervisor}: {zombies:?}"
    );
}

// ------------------------------------------------------------- rootless

const NOBODY: u32 = 65534;

/// Why `path` cannot be reached (and read, if `read`) by uid 65534.
fn not_accessible_by_nobody(path: &Path, read: bool) -> Option<String> {
    let mut p = Some(path);
    let mut first = true;
    while let Some(cur) = p {
        let md = std::fs::metadata(cur).ok()?;
        let mode = md.permissions().mode();
        let bits = if md.uid() == NOBODY { mode >> 6 } else { mode };
        let need = if first && read { 0o5 } else { 0o1 };
        if md.is_dir() && bits & need != need {
            return Some(format!(
                "{} (mode {:o}) is not accessible by uid {NOBODY}",
                cur.display(),
                mode & 0o7777
            ));
        }
        first = false;
        p = cur.parent();
    }
    None
}

/// Runs berth as nobody with its own XDG_RUNTIME_DIR; removes every
/// container it made (as nobody) on drop.
struct Rootless {
    runtime: tempfile::TempDir,
}

impl Rootless {
    fn new() -> Self {
        let runtime = tempfile::Builder::new()
            .prefix("berth-rootless-")
            .tempdir()
            .unwrap();
        nix::unistd::chown(runtime.path(), Some(NOBODY.into()), Some(NOBODY.into())).unwrap();
        Rootless { runtime }
    }
    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_of(&berth_bin(), args)
    }
    /// `program` with `args`, as nobody.
    fn cmd_of(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .args(["--clear-groups", "--"])
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("XDG_RUNTIME_DIR", self.runtime.path())
            .env("HOME", self.runtime.path())
            .current_dir(self.runtime.path())
            .stdin(Stdio::null());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running berth as nobody")
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        let state = self.runtime.path().join("berth");
        for e in std::fs::read_dir(&state).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name != "names" && e.path().is_dir() {
                let _ = self.run(&["rm", "-f", &name]);
            }
        }
    }
}

/// Run as an unprivileged user, berth makes a user namespace in which the
/// caller is root (mapped to its own uid only), the container works, and a
/// memory limit it cannot apply is reported as a warning, not silently
/// dropped.
#[test]
fn rootless_as_nobody() {
    require_root!();
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return;
    }
    let probe = Command::new("setpriv")
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .args(["--clear-groups", "--", "unshare", "-U", "true"])
        .current_dir("/")
        .output()
        .unwrap();
    if !probe.status.success() {
        eprintln!(
            "skipped: unprivileged user namespaces are not permitted here: {}",
            stderr(&probe).trim()
        );
        return;
    }
    let rootfs = busybox_rootfs();
    for (p, read) in [
        (rootfs.as_path(), true),
        (berth_bin().parent().unwrap(), false),
    ] {
        if let Some(why) = not_accessible_by_nobody(p, read) {
            eprintln!("skipped: {why}");
            return;
        }
    }
    let r = Rootless::new();
    let rootfs = rootfs.to_str().unwrap();
    let probe = format!("root/berth-iso-{}", std::process::id());
    let script = format!("id -u; id -g; cat /proc/self/uid_map; echo ---; readlink /proc/self/ns/user; touch /{probe} 2>&1; true");
    let out = r.run(&["launch", "--rootfs", rootfs, "--", "sh", "-c", &script]);
    let created = Path::new(rootfs).join(&probe).exists();
    let _ = std::fs::remove_file(Path::new(rootfs).join(&probe));
    let text = expect_ok("rootless launch", &out);
    assert!(
        !stderr(&out).contains("warning"),
        "unexpected warning: {}",
        stderr(&out)
    );
    let (head, tail) = text.split_once("---\n").unwrap();
    let l: Vec<&str> = head.lines().collect();
    assert_eq!(&l[..2], &["0", "0"], "{text}");
    let maps: Vec<Vec<u64>> = l[2..]
        .iter()
        .map(|m| m.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(maps[0], vec![0, u64::from(NOBODY), 1], "uid_map: {text}");
    for m in &maps {
        assert!(m[1] > 0, "host root is mapped into the container: {text}");
    }
    let mut t = tail.lines();
    assert_ne!(t.next().unwrap(), host_ns("user"), "no user namespace");
    // Root in the container is nobody on the host: it cannot write the
    // host root's files.
    assert_eq!(
        t.next(),
        Some(format!("touch: /{probe}: Permission denied").as_str()),
        "{text}"
    );
    assert!(!created, "container root wrote into host root's /root");

    let out = r.run(&["launch", "--mem", "64", "--rootfs", rootfs, "--", "true"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "rootless --mem: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("warning") && err.contains("memory limit") && err.contains("not applied"),
        "no warning that the memory limit was not applied: {err}"
    );
}

/// runc's global `--rootless`, through runc's verbs run as nobody on a
/// bundle from `berth spec --rootless`: `auto` (the default) sees a
/// non-root caller and runs the container without the cgroups it may not
/// create; `false` makes that a failure naming the cgroup; runc does the
/// same with the same bundle.
#[test]
fn runc_verbs_follow_the_rootless_flag() {
    require_root!();
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return;
    }
    let rootfs = busybox_rootfs();
    if let Some(why) = not_accessible_by_nobody(&rootfs, true)
        .or_else(|| not_accessible_by_nobody(berth_bin().parent().unwrap(), false))
    {
        eprintln!("skipped: {why}");
        return;
    }
    let r = Rootless::new();
    let bundle = r.runtime.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    nix::unistd::chown(&bundle, Some(NOBODY.into()), Some(NOBODY.into())).unwrap();
    let b = bundle.to_str().unwrap();
    let out = r.run(&["spec", "--rootless", "--bundle", b]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = bundle.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    c["process"]["terminal"] = false.into();
    c["process"]["args"] = serde_json::json!(["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
    let state = r.runtime.path().join("state");
    let state = state.to_str().unwrap();

    let out = r.run(&["--root", state, "run", "--bundle", b, "auto"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines, [vec!["0"], vec!["0", "65534", "1"]], "{text}");

    let out = r.run(&[
        "--root",
        state,
        "--rootless",
        "false",
        "run",
        "--bundle",
        b,
        "strict",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cgroup") && err.contains("Permission denied"),
        "{err}"
    );
    let listed = r.run(&["--root", state, "list", "-q"]);
    assert_eq!(stdout(&listed), "", "a failed create leaves nothing");

    let out = r.run(&["--root", state, "--rootless", "maybe", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--rootless"), "{}", stderr(&out));

    // runc, same bundle, same user: the same two outcomes.
    let Some(runc) = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        return;
    };
    let runc_as_nobody = |args: &[&str]| r.cmd_of(Path::new(runc), args).output().unwrap();
    let rstate = r.runtime.path().join("runc");
    let rstate = rstate.to_str().unwrap();
    let theirs = runc_as_nobody(&["--root", rstate, "run", "--bundle", b, "auto"]);
    assert_eq!(theirs.status.code(), Some(0), "{}", stderr(&theirs));
    assert_eq!(stdout(&theirs), text);
    let theirs = runc_as_nobody(&[
        "--root",
        rstate,
        "--rootless",
        "false",
        "run",
        "--bundle",
        b,
        "strict",
    ]);
    assert_eq!(theirs.status.code(), Some(1));
}
