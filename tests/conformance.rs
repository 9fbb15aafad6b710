//! OCI runtime-spec conformance, part by part, through runc's command line
//! (`berth run`/`create`/`start` on a bundle): mounts and their flags and
//! propagation, namespaces joined by path, user namespaces with several
//! ranges, masked and read-only paths, personality, --no-pivot, hostname
//! and domainname, sysctl, rlimits, oomScoreAdj and devices. Each test
//! checks from inside the container what the spec promises and runs the
//! same bundle under runc (1.1) to compare where runc implements the part.
//!
//! Everything a test makes on the host (mounts, network namespaces,
//! containers of either runtime) is undone by a guard, also on failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::oci::{berth, sh, Bundle, Runc};
use common::{wait_until, Berth};
use serde_json::{json, Value};

/// Mounts made on the host by a test, detached in reverse order on drop.
#[derive(Default)]
struct HostMounts(Vec<PathBuf>);

impl HostMounts {
    fn bind_shared(&mut self, dir: &Path) {
        use nix::mount::{mount, MsFlags};
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).unwrap();
        self.0.push(dir.to_path_buf());
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
    }

    fn tmpfs(&mut self, dir: &Path) {
        use nix::mount::{mount, MsFlags};
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        self.0.push(dir.to_path_buf());
    }
}

impl Drop for HostMounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A network namespace made with `ip netns add`, deleted on drop.
struct NetNs(String);

impl NetNs {
    fn new(tag: &str) -> NetNs {
        let name = format!("berth-conf-{tag}-{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("ip (iproute2) is needed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        NetNs(name)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn mounts(c: &mut Value) -> &mut Vec<Value> {
    c["mounts"].as_array_mut().unwrap()
}

/// A tmpfs at /mnt first: mount points for the test's own mounts are made
/// in it, never in the shared (read-only) busybox rootfs.
fn scratch_mnt(c: &mut Value) {
    mounts(c).push(json!({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs"}));
}

fn set_ns_path(c: &mut Value, typ: &str, path: &str) {
    let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != typ);
    ns.push(json!({"type": typ, "path": path}));
}

/// Runs the bundle in the foreground under Berth and (when installed)
/// runc, asserting success; returns both outputs.
fn run_both(b: &Berth, r: Option<&Runc>, bundle: &Bundle, id: &str) -> (String, Option<String>) {
    let ours = berth(b, &["run", "--bundle", bundle.path(), id]);
    assert_eq!(ours.code, 0, "berth: {}", ours.err);
    let theirs = r.map(|r| {
        let t = r.run(&["run", "--bundle", bundle.path(), id]);
        assert_eq!(t.code, 0, "runc: {}", t.err);
        t.out
    });
    (ours.out, theirs)
}

/// The mountinfo fields a user compares: mount point, per-mount options,
/// optional fields (propagation) with their peer-group numbers blanked,
/// filesystem type and super options. Lines for `prefix` only.
fn mountinfo(text: &str, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let (head, tail) = l.split_once(" - ")?;
            let f: Vec<&str> = head.split(' ').collect();
            let mp = *f.get(4)?;
            if !mp.starts_with(prefix) {
                return None;
            }
            let optional: Vec<String> = f[6..]
                .iter()
                .map(|o| o.split(':').next().unwrap_or(o).to_string())
                .collect();
            let super_fields: Vec<&str> = tail.split(' ').collect();
            Some(format!(
                "{mp} {} [{}] {} {}",
                f[5],
                optional.join(" "),
                super_fields[0],
                super_fields.get(2).unwrap_or(&"")
            ))
        })
        .collect();
    v.sort();
    v
}

/// Bind mounts with ro, nosuid, nodev and noexec: the flags in
/// /proc/self/mountinfo and their real effect (EROFS, a script on noexec
/// cannot run, a device node on nodev cannot be opened), as under runc.
#[test]
fn bind_mount_flags_take_effect_as_under_runc() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let src = tempfile::tempdir().unwrap();
    let script = src.path().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    nix::sys::stat::mknod(
        &src.path().join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let s = src.path().to_str().unwrap().to_string();
    let bundle = Bundle::new(&b, |c| {
        scratch_mnt(c);
        for (dst, opts) in [
            ("/mnt/plain", json!(["bind"])),
            ("/mnt/ro", json!(["rbind", "ro"])),
            ("/mnt/noexec", json!(["bind", "noexec"])),
            ("/mnt/nodev", json!(["rbind", "nodev"])),
            ("/mnt/nosuid", json!(["bind", "nosuid", "ro"])),
        ] {
            mounts(c)
                .push(json!({"destination": dst, "type": "bind", "source": s, "options": opts}));
        }
        c["process"]["args"] = sh("cd /mnt; \
             touch plain/w && echo plain-writable; touch ro/w 2>&1; \
             plain/run.sh; noexec/run.sh 2>&1; \
             head -c1 plain/null | wc -c; head -c1 nodev/null 2>&1; \
             grep ' /mnt/' /proc/self/mountinfo");
    });
    let (ours, theirs) = run_both(&b, r.as_ref(), &bundle, "bindflags");
    let lines: Vec<&str> = ours.lines().collect();
    assert_eq!(lines[0], "plain-writable", "{ours}");
    assert!(lines[1].contains("Read-only file system"), "{ours}");
    assert_eq!(lines[2], "ran", "{ours}");
    assert!(lines[3].contains("Permission denied"), "{ours}");
    assert_eq!(lines[4], "0", "{ours}");
    assert!(lines[5].contains("Permission denied"), "{ours}");
    let mi = mountinfo(&ours, "/mnt/");
    let opts = |mp: &str| {
        mi.iter()
            .find(|l| l.starts_with(&format!("{mp} ")))
            .unwrap_or_else(|| panic!("{mp} in {mi:?}"))
            .split(' ')
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert!(opts("/mnt/ro").starts_with("ro,"), "{mi:?}");
    assert!(opts("/mnt/noexec").contains("noexec"), "{mi:?}");
    assert!(opts("/mnt/nodev").contains("nodev"), "{mi:?}");
    assert!(opts("/mnt/nosuid").contains("nosuid") && opts("/mnt/nosuid").starts_with("ro"));
    assert!(!opts("/mnt/plain").contains("noexec"), "{mi:?}");
    if let Some(theirs) = theirs {
        let their_lines: Vec<&str> = theirs.lines().take(6).collect();
        assert_eq!(lines[..6], their_lines[..], "runc: {theirs}");
        assert_eq!(mi, mountinfo(&theirs, "/mnt/"), "runc: {theirs}");
    }
}

/// Propagation options on bind mounts of a shared host mount: rslave and
/// rshared mounts see a mount the host makes under the source after the
/// container started, rprivate and unbindable ones do not; mountinfo says
/// master:/shared:/unbindable accordingly. The same under runc.
#[test]
fn mount_propagation_options_as_under_runc() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let mut observed = Vec::new();
    let runtimes: Vec<&str> = if r.is_some() {
        vec!["berth", "runc"]
    } else {
        vec!["berth"]
    };
    for rt in runtimes {
        let mut host = HostMounts::default();
        let shared = tempfile::tempdir().unwrap();
        std::fs::create_dir(shared.path().join("sub")).unwrap();
        host.bind_shared(shared.path());
        let out = tempfile::tempdir().unwrap();
        let s = shared.path().to_str().unwrap().to_string();
        let o = out.path().to_str().unwrap().to_string();
        let bundle = Bundle::new(&b, |c| {
            scratch_mnt(c);
            for (dst, opts) in [
                ("/mnt/rslave", json!(["rbind", "rslave"])),
                ("/mnt/rshared", json!(["rbind", "rshared"])),
                ("/mnt/rprivate", json!(["rbind", "rprivate"])),
                ("/mnt/unbindable", json!(["bind", "unbindable"])),
            ] {
                mounts(c).push(
                    json!({"destination": dst, "type": "bind", "source": s, "options": opts}),
                );
            }
            mounts(c).push(json!({"destination": "/mnt/out", "type": "bind", "source": o, "options": ["bind"]}));
            c["process"]["args"] = sh("grep ' /mnt/' /proc/self/mountinfo > /mnt/out/mountinfo; \
                 touch /mnt/out/started; i=0; \
                 while [ ! -e /mnt/rslave/sub/ready ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; \
                 for d in rslave rshared rprivate unbindable; do \
                   [ -e /mnt/$d/sub/ready ] && echo \"$d sees\" || echo \"$d not\"; done > /mnt/out/result.tmp; \
                 mv /mnt/out/result.tmp /mnt/out/result");
        });
        let id = format!("prop-{rt}");
        let ran = if rt == "berth" {
            berth(&b, &["run", "-d", "--bundle", bundle.path(), &id])
        } else {
            r.as_ref()
                .unwrap()
                .run(&["run", "-d", "--bundle", bundle.path(), &id])
        };
        assert_eq!(ran.code, 0, "{rt}: {}", ran.err);
        assert!(
            wait_until(10, || out.path().join("started").exists()),
            "{rt}: the container did not start"
        );
        // A mount made on the host after the container started.
        host.tmpfs(&shared.path().join("sub"));
        std::fs::write(shared.path().join("sub/ready"), "").unwrap();
        assert!(
            wait_until(15, || out.path().join("result").exists()),
            "{rt}: no result"
        );
        let result = std::fs::read_to_string(out.path().join("result")).unwrap();
        assert_eq!(
            result, "rslave sees\nrshared sees\nrprivate not\nunbindable not\n",
            "{rt}"
        );
        let mi = mountinfo(
            &std::fs::read_to_string(out.path().join("mountinfo")).unwrap(),
            "/mnt/",
        );
        let fields = |mp: &str| {
            mi.iter()
                .find(|l| l.starts_with(&format!("{mp} ")))
                .unwrap_or_else(|| panic!("{rt}: {mp} in {mi:?}"))
                .clone()
        };
        assert!(fields("/mnt/rslave").contains("[master]"), "{rt}: {mi:?}");
        assert!(
            fields("/mnt/rshared").contains("[shared master]"),
            "{rt}: {mi:?}"
        );
        assert!(fields("/mnt/rprivate").contains("[]"), "{rt}: {mi:?}");
        assert!(
            fields("/mnt/unbindable").contains("[unbindable]"),
            "{rt}: {mi:?}"
        );
        observed.push(mi);
    }
    if observed.len() == 2 {
        assert_eq!(observed[0], observed[1], "berth vs runc");
    }
}

/// linux.rootfsPropagation: every value runc accepts works the same (a
/// shared one no longer makes pivot_root fail or leaks the container's
/// mounts to the host), and "unbindable" is refused by both.
#[test]
fn rootfs_propagation_values_as_under_runc() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let host_before = mountinfo(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
        "/",
    )
    .len();
    for (i, p) in [
        "shared", "rshared", "slave", "rslave", "private", "rprivate",
    ]
    .into_iter()
    .enumerate()
    {
        let bundle = Bundle::new(&b, |c| {
            c["linux"]["rootfsPropagation"] = json!(p);
            c["process"]["args"] = sh("grep -v /sys/fs/cgroup /proc/self/mountinfo");
        });
        let (ours, theirs) = run_both(&b, r.as_ref(), &bundle, &format!("rp{i}"));
        let mi = mountinfo(&ours, "/");
        assert!(mi.iter().any(|l| l.starts_with("/proc ")), "{p}: {ours}");
        if let Some(theirs) = theirs {
            assert_eq!(mi, mountinfo(&theirs, "/"), "{p}: runc: {theirs}");
        }
    }
    // Nothing of the containers' mounts reached the host.
    let host_after = mountinfo(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
        "/",
    )
    .len();
    assert!(host_after <= host_before, "{host_before} -> {host_after}");
    let bundle = Bundle::new(&b, |c| {
        c["linux"]["rootfsPropagation"] = json!("unbindable");
        c["process"]["args"] = json!(["true"]);
    });
    let ours = berth(&b, &["run", "--bundle", bundle.path(), "rpu"]);
    assert_eq!(ours.code, 1, "{}", ours.err);
    if let Some(r) = &r {
        assert_ne!(r.run(&["run", "--bundle", bundle.path(), "rpu"]).code, 0);
    }
}

/// tmpfs with size and mode, mqueue, devpts with its options: the same
/// mounts as under runc, and the tmpfs size and mode are real.
#[test]
fn tmpfs_mqueue_and_devpts_mounts_as_under_runc() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let bundle = Bundle::new(&b, |c| {
        mounts(c).push(
            json!({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs",
                              "options": ["nosuid", "nodev", "size=1m", "mode=1733"]}),
        );
        c["process"]["args"] = sh("stat -c %a /mnt; \
             dd if=/dev/zero of=/mnt/big bs=64k count=32 2>&1 | grep -o 'No space left on device'; \
             echo $(( $(stat -c %s /mnt/big) <= 1048576 )); \
             grep -E ' /(mnt|dev/pts|dev/mqueue|dev/shm) ' /proc/self/mountinfo");
    });
    let (ours, theirs) = run_both(&b, r.as_ref(), &bundle, "tmpfs");
    let lines: Vec<&str> = ours.lines().collect();
    assert_eq!(
        lines[..3],
        ["1733", "No space left on device", "1"],
        "{ours}"
    );
    let mi = mountinfo(&ours, "/");
    let line = |mp: &str| {
        mi.iter()
            .find(|l| l.starts_with(&format!("{mp} ")))
            .unwrap_or_else(|| panic!("{mp} in {mi:?}"))
            .clone()
    };
    assert!(line("/mnt").contains("tmpfs") && line("/mnt").contains("size=1024k,mode=1733"));
    assert!(line("/dev/mqueue").contains(" mqueue "), "{mi:?}");
    let pts = line("/dev/pts");
    assert!(
        pts.contains("devpts") && pts.contains("gid=5,mode=620,ptmxmode=666"),
        "{pts}"
    );
    // runc 1.1 chmods a tmpfs's mount point back to the mode the covered
    // directory had (755 here), overriding mode=; Berth keeps the mode the
    // options ask for. Everything else is compared.
    if let Some(theirs) = theirs {
        assert_eq!(
            lines[1..3],
            theirs.lines().collect::<Vec<_>>()[1..3],
            "{theirs}"
        );
        assert_eq!(mi, mountinfo(&theirs, "/"), "{theirs}");
    }
}

/// The "cgroup" mount's per-hierarchy binds on a v1/hybrid host follow the
/// mount's ro/rw as runc's do: with "rw" the container can write its own
/// pids.max, with "ro" it gets EROFS.
#[test]
fn cgroup_mount_honours_ro_and_rw_as_runc() {
    require_root!();
    if common::is_cgroup_v2() {
        eprintln!("skipped: a pure cgroup v2 host mounts cgroup2, no per-hierarchy binds");
        return;
    }
    let b = Berth::new();
    let r = Runc::new();
    for mode in ["rw", "ro"] {
        let bundle = Bundle::new(&b, |c| {
            for m in mounts(c).iter_mut() {
                if m["type"] == "cgroup" {
                    m["options"] = json!(["nosuid", "noexec", "nodev", "relatime", mode]);
                }
            }
            c["process"]["args"] = sh("sh -c 'echo 77 > /sys/fs/cgroup/pids/pids.max' 2>&1 && cat /sys/fs/cgroup/pids/pids.max; \
                 grep -E ' /sys/fs/cgroup/(memory|pids) ' /proc/self/mountinfo");
        });
        let (ours, theirs) = run_both(&b, r.as_ref(), &bundle, &format!("cg{mode}"));
        let first = ours.lines().next().unwrap_or_default();
        if mode == "rw" {
            assert_eq!(first, "77", "{ours}");
        } else {
            assert!(first.contains("Read-only file system"), "{ours}");
        }
        let mi = mountinfo(&ours, "/sys/fs/cgroup/");
        assert_eq!(mi.len(), 2, "{ours}");
        assert!(
            mi.iter()
                .all(|l| l.split(' ').nth(1).unwrap().starts_with(mode)),
            "{mi:?}"
        );
        if let Some(theirs) = theirs {
            assert_eq!(
                first,
                theirs.lines().next().unwrap_or_default(),
                "runc: {theirs}"
            );
            assert_eq!(mi, mountinfo(&theirs, "/sys/fs/cgroup/"), "runc: {theirs}");
        }
    }
}

/// A network namespace joined by path (made with `ip netns add`): the
/// container is in it (same inode) and a net.* sysctl lands in it, as
/// under runc; bad paths are errors naming the field.
#[test]
fn network_namespace_joined_by_path() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let netns = NetNs::new("net");
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(netns.path()).unwrap());
    let bundle = Bundle::new(&b, |c| {
        set_ns_path(c, "network", &netns.path());
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        c["process"]["args"] = sh("readlink /proc/self/ns/net; cat /proc/sys/net/ipv4/ip_forward");
    });
    let (ours, theirs) = run_both(&b, r.as_ref(), &bundle, "joinnet");
    assert_eq!(ours, format!("net:[{inode}]\n1\n"));
    if let Some(theirs) = theirs {
        assert_eq!(ours, theirs);
    }
    let host = Command::new("ip")
        .args([
            "netns",
            "exec",
            &netns.0,
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&host.stdout), "1\n");

    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|c| set_ns_path(c, "network", "/run/netns/berth-no-such-netns")),
            "].path /run/netns/berth-no-such-netns",
        ),
        (
            Box::new(|c| set_ns_path(c, "network", "/proc/self/ns/uts")),
            "is a uts namespace, not net",
        ),
        (
            Box::new(|c| set_ns_path(c, "ipc", "/etc/hostname")),
            "not a namespace file",
        ),
        // Without a network namespace of its own a net.* sysctl would
        // change the host's: refused (runc refuses it too).
        (
            Box::new(|c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|n| n["type"] != "network");
                c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
            }),
            "linux.sysctl.net.ipv4.ip_forward",
        ),
        (
            Box::new(|c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|n| n["type"] != "uts");
            }),
            "hostname: setting it needs a UTS namespace",
        ),
    ];
    for (i, (edit, want)) in cases.into_iter().enumerate() {
        let bundle = Bundle::new(&b, |c| {
            c["process"]["args"] = json!(["true"]);
            edit(c);
        });
        let ours = berth(&b, &["run", "--bundle", bundle.path(), &format!("bad{i}")]);
        assert_eq!(ours.code, 1, "{want}: {}", ours.err);
        assert!(ours.err.contains(want), "{want}: {}", ours.err);
        if let Some(r) = &r {
            let theirs = r.run(&["run", "--bundle", bundle.path(), &format!("bad{i}")]);
            assert_ne!(theirs.code, 0, "runc accepted case {want}");
        }
    }
    assert_eq!(berth(&b, &["list", "-q"]).out, "");
}

/// uts, ipc and pid namespaces of another running container, joined by
/// /proc/PID/ns/*: the process is in them (same inodes; it sees the other
/// container's process and is not pid 1), and the hostname is set in the
/// joined UTS namespace, as runc does.
#[test]
fn uts_ipc_and_pid_namespaces_of_another_container() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let mut results = Vec::new();
    let runtimes: Vec<&str> = if r.is_some() {
        vec!["berth", "runc"]
    } else {
        vec!["berth"]
    };
    for rt in runtimes {
        let go = |args: &[&str]| {
            if rt == "berth" {
                berth(&b, args)
            } else {
                r.as_ref().unwrap().run(args)
            }
        };
        let first = Bundle::new(&b, |c| c["process"]["args"] = json!(["sleep", "30"]));
        let ran = go(&["run", "-d", "--bundle", first.path(), "first"]);
        assert_eq!(ran.code, 0, "{rt}: {}", ran.err);
        let st: Value = serde_json::from_str(&go(&["state", "first"]).out).unwrap();
        let pid = st["pid"].as_i64().unwrap();
        let ns = |t: &str| std::fs::read_link(format!("/proc/{pid}/ns/{t}")).unwrap();
        let want = format!(
            "{}\n{}\n{}\n",
            ns("pid").display(),
            ns("uts").display(),
            ns("ipc").display()
        );
        let second = Bundle::new(&b, |c| {
            for t in ["pid", "uts", "ipc"] {
                set_ns_path(c, t, &format!("/proc/{pid}/ns/{t}"));
            }
            c["hostname"] = json!("joined");
            c["process"]["args"] = sh("for t in pid uts ipc; do readlink /proc/self/ns/$t; done; \
                 echo $$; ps -o comm | grep -c sleep");
        });
        let ran = go(&["run", "--bundle", second.path(), "second"]);
        assert_eq!(ran.code, 0, "{rt}: {}", ran.err);
        assert!(ran.out.starts_with(&want), "{rt}: {} vs {want}", ran.out);
        let rest: Vec<&str> = ran.out[want.len()..].lines().collect();
        assert_ne!(
            rest[0], "1",
            "{rt}: the process is not the pid namespace's init"
        );
        assert_eq!(rest[1], "1", "{rt}: it sees the first container's sleep");
        // The joined UTS namespace got the hostname.
        let host = Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-u", "hostname"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&host.stdout), "joined\n", "{rt}");
        let _ = go(&["kill", "first", "KILL"]);
        assert!(wait_until(5, || {
            let s = go(&["state", "first"]);
            s.out.contains("stopped")
        }));
        assert_eq!(go(&["delete", "first"]).code, 0);
        results.push(rest[1].to_string());
    }
    if results.len() == 2 {
        assert_eq!(results[0], results[1]);
    }
}

/// A user namespace with several uid and gid ranges: the maps inside are
/// those of the config, the process is root there, a file the host made
/// with a mapped uid/gid shows the container ids; a map the kernel refuses
/// is an error naming the field.
#[test]
fn user_namespace_with_several_ranges() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let f = dir.path().join("owned");
    std::fs::write(&f, "x").unwrap();
    std::os::unix::fs::chown(&f, Some(200_005), Some(300_007)).unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let maps = json!([{"containerID": 0, "hostID": 100000, "size": 1000},
                      {"containerID": 1000, "hostID": 200000, "size": 1000}]);
    let gmaps = json!([{"containerID": 0, "hostID": 100000, "size": 1000},
                       {"containerID": 1000, "hostID": 300000, "size": 100}]);
    let bundle = Bundle::new(&b, |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = maps.clone();
        c["linux"]["gidMappings"] = gmaps.clone();
        scratch_mnt(c);
        mounts(c).push(
            json!({"destination": "/mnt/host", "type": "bind", "source": d, "options": ["bind"]}),
        );
        c["process"]["args"] = sh(
            "cat /proc/self/uid_map /proc/self/gid_map | tr -s ' ' | sed 's/^ //'; \
             id -u; id -g; stat -c '%u %g' /mnt/host/owned; stat -c '%u' /bin/busybox",
        );
    });
    let (ours, theirs) = run_both(&b, r.as_ref(), &bundle, "userns");
    assert_eq!(
        ours,
        "0 100000 1000\n1000 200000 1000\n0 100000 1000\n1000 300000 100\n\
         0\n0\n1005 1007\n65534\n",
    );
    if let Some(theirs) = theirs {
        assert_eq!(ours, theirs);
    }

    // Overlapping ranges: the kernel refuses the map.
    let bundle = Bundle::new(&b, |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 10},
                                           {"containerID": 5, "hostID": 400000, "size": 10}]);
        c["linux"]["gidMappings"] = gmaps.clone();
        c["process"]["args"] = json!(["true"]);
    });
    let ours = berth(&b, &["run", "--bundle", bundle.path(), "badmap"]);
    assert_eq!(ours.code, 1, "{}", ours.err);
    assert!(ours.err.contains("linux.uidMappings"), "{}", ours.err);
    assert_eq!(berth(&b, &["list", "-q"]).out, "");
}

/// maskedPaths and readonlyPaths on files and directories: a masked file
/// reads empty, a masked directory is an empty read-only tmpfs, read-only
/// paths refuse writes, missing paths are skipped; mountinfo as runc's.
#[test]
fn masked_and_readonly_paths_as_under_runc() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let dir = tempfile::tempdir().unwrap();
    for sub in ["hidden", "rodir"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    std::fs::write(dir.path().join("hidden/inside"), "secret").unwrap();
    std::fs::write(dir.path().join("secret"), "secret").unwrap();
    std::fs::write(dir.path().join("rofile"), "ro").unwrap();
    std::fs::write(dir.path().join("rodir/f"), "ro").unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let bundle = Bundle::new(&b, |c| {
        mounts(c).push(
            json!({"destination": "/mnt", "type": "bind", "source": d, "options": ["rbind"]}),
        );
        c["linux"]["maskedPaths"] = json!(["/mnt/secret", "/mnt/hidden", "/mnt/no-such-path"]);
        c["linux"]["readonlyPaths"] = json!(["/mnt/rofile", "/mnt/rodir", "/mnt/no-such-dir"]);
        c["process"]["args"] = sh("cd /mnt; wc -c < secret; ls -A hidden | wc -l; \
             touch hidden/x 2>&1; sh -c 'echo x > rofile' 2>&1; touch rodir/x 2>&1; \
             echo x > writable && echo still-writable; ls no-such-path 2>&1 | grep -c 'No such'; \
             grep ' /mnt' /proc/self/mountinfo");
    });
    let (ours, theirs) = run_both(&b, r.as_ref(), &bundle, "masked");
    let lines: Vec<&str> = ours.lines().collect();
    assert_eq!(lines[0], "0", "{ours}");
    assert_eq!(lines[1], "0", "{ours}");
    for l in &lines[2..5] {
        assert!(l.contains("Read-only file system"), "{ours}");
    }
    assert_eq!(lines[5], "still-writable", "{ours}");
    assert_eq!(lines[6], "1", "{ours}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("secret")).unwrap(),
        "secret"
    );
    let mi = mountinfo(&ours, "/mnt");
    assert!(
        mi.iter()
            .any(|l| l.starts_with("/mnt/hidden ro") && l.contains("tmpfs")),
        "{mi:?}"
    );
    assert!(mi.iter().any(|l| l.starts_with("/mnt/rodir ro")), "{mi:?}");
    assert!(mi.iter().any(|l| l.starts_with("/mnt/rofile ro")), "{mi:?}");
    if let Some(theirs) = theirs {
        assert_eq!(
            lines[..7],
            theirs.lines().collect::<Vec<_>>()[..7],
            "{theirs}"
        );
        assert_eq!(mi, mountinfo(&theirs, "/mnt"), "{theirs}");
    }
}

/// --no-pivot: the bundle's root is "/", the host's root is out of reach,
/// and the mounts are those runc --no-pivot makes.
#[test]
fn no_pivot_keeps_the_host_root_out_of_reach_as_runc() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let bundle = Bundle::new(&b, |c| {
        c["process"]["args"] = sh("ls /; ls /work /usr 2>&1 | grep -c 'No such'; \
             grep -v /sys/fs/cgroup /proc/self/mountinfo");
    });
    let ran = berth(&b, &["run", "--no-pivot", "--bundle", bundle.path(), "np"]);
    assert_eq!(ran.code, 0, "{}", ran.err);
    let ours = ran.out;
    let top: Vec<&str> = ours.lines().take_while(|l| !l.contains(' ')).collect();
    let mut want: Vec<String> = std::fs::read_dir(common::busybox_rootfs())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    want.sort();
    // ls prints the root's entries, then the count of missing host paths.
    assert_eq!(top[..top.len() - 1], want[..], "{ours}");
    assert_eq!(top[top.len() - 1], "2", "{ours}");
    let mi = mountinfo(&ours, "/");
    assert!(
        ours.lines()
            .any(|l| l.split(' ').nth(4) == Some("/") && l.contains("rootfs-busybox")),
        "{ours}"
    );
    if let Some(r) = &r {
        let theirs = r.run(&["run", "--no-pivot", "--bundle", bundle.path(), "np"]);
        assert_eq!(theirs.code, 0, "{}", theirs.err);
        assert_eq!(mi, mountinfo(&theirs.out, "/"), "runc: {}", theirs.out);
    }
}

/// personality LINUX32, hostname and domainname. runc 1.1 implements
/// neither personality (added in runc 1.2) nor domainname (its output
/// stays "(none)"): those are checked against the spec alone; the hostname
/// is compared.
#[test]
fn personality_hostname_and_domainname() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let bundle = Bundle::new(&b, |c| {
        c["linux"]["personality"] = json!({"domain": "LINUX32"});
        c["hostname"] = json!("conf-host");
        c["domainname"] = json!("conf.example");
        c["process"]["args"] = sh("uname -m; hostname; cat /proc/sys/kernel/domainname");
    });
    let ours = berth(&b, &["run", "--bundle", bundle.path(), "pers"]);
    assert_eq!(ours.code, 0, "{}", ours.err);
    assert_eq!(ours.out, "i686\nconf-host\nconf.example\n");
    // LINUX (the default domain) is the native one.
    let bundle64 = Bundle::new(&b, |c| {
        c["linux"]["personality"] = json!({"domain": "LINUX"});
        c["process"]["args"] = sh("uname -m; linux32 uname -m");
    });
    let ours64 = berth(&b, &["run", "--bundle", bundle64.path(), "pers64"]);
    assert_eq!(ours64.code, 0, "{}", ours64.err);
    let native = std::str::from_utf8(&Command::new("uname").arg("-m").output().unwrap().stdout)
        .unwrap()
        .to_string();
    assert_eq!(ours64.out, format!("{native}i686\n"));
    if let Some(r) = &r {
        let theirs = r.run(&["run", "--bundle", bundle.path(), "pers"]);
        assert_eq!(theirs.code, 0, "{}", theirs.err);
        assert_eq!(theirs.out.lines().nth(1), Some("conf-host"));
    }
}

/// sysctl in the container's own namespaces (net.*, fs.mqueue.*,
/// kernel.shm*), rlimits, a positive oomScoreAdj and a lower one that
/// needs CAP_SYS_RESOURCE (an error naming the field), devices with their
/// type, major/minor, mode and owner: as under runc.
#[test]
fn sysctl_rlimits_oom_score_adj_and_devices_as_under_runc() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let bundle = Bundle::new(&b, |c| {
        c["linux"]["sysctl"] = json!({
            "net.ipv4.ip_forward": "1",
            "fs.mqueue.msg_max": "17",
            "kernel.shmmni": "2048"
        });
        c["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
            {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400}
        ]);
        c["process"]["oomScoreAdj"] = json!(321);
        c["linux"]["devices"] = json!([
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
             "fileMode": 0o640, "uid": 1000, "gid": 1001},
            {"path": "/dev/sub/blk", "type": "b", "major": 7, "minor": 200,
             "fileMode": 0o600, "uid": 0, "gid": 6},
            {"path": "/dev/pipe0", "type": "p", "fileMode": 0o620}
        ]);
        c["process"]["args"] = sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/fs/mqueue/msg_max \
               /proc/sys/kernel/shmmni /proc/self/oom_score_adj; \
             ulimit -n; ulimit -Hn; \
             grep -E '^Max (open files|core file size|processes)' /proc/self/limits | tr -s ' ' | sed 's/ $//'; \
             for d in /dev/fuse /dev/sub/blk /dev/pipe0; do stat -c '%n %F %t:%T %a %u:%g' $d; done");
    });
    let (ours, theirs) = run_both(&b, r.as_ref(), &bundle, "misc");
    assert_eq!(
        ours,
        "1\n17\n2048\n321\n512\n1000\n\
         Max core file size 0 4096 bytes\n\
         Max processes 300 400 processes\n\
         Max open files 512 1000 files\n\
         /dev/fuse character special file a:e5 640 1000:1001\n\
         /dev/sub/blk block special file 7:c8 600 0:6\n\
         /dev/pipe0 fifo 0:0 620 0:0\n"
    );
    if let Some(theirs) = theirs {
        assert_eq!(ours, theirs);
    }
    // The host's values are untouched (the sysctls went to the
    // container's namespaces).
    assert_ne!(
        std::fs::read_to_string("/proc/sys/fs/mqueue/msg_max").unwrap(),
        "17\n"
    );

    // Lowering oomScoreAdj needs CAP_SYS_RESOURCE, which root lacks on
    // these hosts; where it has it the case is skipped.
    let caps = std::fs::read_to_string("/proc/self/status").unwrap();
    let has_sys_resource = caps
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|m| m & (1 << 24) != 0);
    if !has_sys_resource {
        let bundle = Bundle::new(&b, |c| {
            c["process"]["oomScoreAdj"] = json!(-500);
            c["process"]["args"] = json!(["true"]);
        });
        let ours = berth(&b, &["run", "--bundle", bundle.path(), "oom"]);
        assert_eq!(ours.code, 1, "{}", ours.err);
        assert!(
            ours.err.contains("process.oomScoreAdj") && ours.err.contains("CAP_SYS_RESOURCE"),
            "{}",
            ours.err
        );
    }
}

/// process: the five capability sets each set apart, user with uid, gid,
/// umask and additionalGids, env, cwd, args and noNewPrivileges, read from
/// /proc/self/status inside; the same under runc. For a non-root user the
/// kernel keeps across execve only the ambient set in permitted and
/// effective (no file capabilities), while inheritable and bounding stay as
/// given: what the spec asks is applied before the exec, the rest is
/// execve's rules.
#[test]
fn process_capabilities_user_env_and_cwd_as_under_runc() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let bundle = Bundle::new(&b, |c| {
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID"],
            "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        });
        c["process"]["user"] = json!({"uid": 1000, "gid": 1001, "umask": 18,
                                      "additionalGids": [1002, 1003]});
        c["process"]["env"] = json!(["PATH=/bin", "ONE=1", "TWO=two words"]);
        c["process"]["cwd"] = json!("/etc");
        c["process"]["noNewPrivileges"] = json!(true);
        c["process"]["args"] = sh(
            "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status; \
             id -u; id -g; id -G; umask; pwd; echo \"$ONE|$TWO\"; env | sort | tr '\\n' ' '",
        );
    });
    let (ours, theirs) = run_both(&b, r.as_ref(), &bundle, "proc");
    let want = |name: &str, caps: &[u32]| {
        let mask: u64 = caps.iter().map(|c| 1u64 << c).sum();
        format!("{name}:\t{mask:016x}")
    };
    // CAP_CHOWN 0, CAP_KILL 5, CAP_SETGID 6, CAP_SETUID 7, CAP_NET_BIND_SERVICE 10.
    let lines: Vec<&str> = ours.lines().collect();
    assert_eq!(
        lines[..6],
        [
            want("CapInh", &[5, 10]),
            want("CapPrm", &[10]),
            want("CapEff", &[10]),
            want("CapBnd", &[0, 5, 6, 7, 10]),
            want("CapAmb", &[10]),
            "NoNewPrivs:\t1".to_string(),
        ],
        "{ours}"
    );
    assert_eq!(
        lines[6..12],
        [
            "1000",
            "1001",
            "1001 1002 1003",
            "0022",
            "/etc",
            "1|two words"
        ]
    );
    if let Some(theirs) = theirs {
        assert_eq!(ours, theirs, "berth / runc");
    }

    // Without HOME in env, HOME is the user's home in the container's
    // /etc/passwd (root: /root), as runc sets it; "/" for an unknown uid
    // (above).
    let bundle = Bundle::new(&b, |c| {
        c["process"]["env"] = json!(["PATH=/bin"]);
        c["process"]["args"] = sh("echo $HOME");
    });
    let (ours, theirs) = run_both(&b, r.as_ref(), &bundle, "home");
    assert_eq!(ours, "/root\n");
    if let Some(theirs) = theirs {
        assert_eq!(ours, theirs);
    }
}
