//! Unit tests against a fake cgroupfs in a tempdir (unprivileged).

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources,
    LinuxResourcesBuilder,
};

use super::*;

const OWN_MEM: &str = "/process_api/e9c9";

/// A fake hybrid host: v1 controllers + name=systemd + an empty cgroup2.
struct Fake {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Fake {
    fn new(dirs: &[&str]) -> Fake {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cgroup");
        for d in dirs {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        Fake { _tmp: tmp, root }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn mountinfo(&self, mounts: &[(&str, &str, &str)]) -> String {
        let mut s = String::from("22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n");
        s.push_str(&format!(
            "31 22 0:28 / {} rw,relatime - tmpfs tmpfs rw,mode=755\n",
            self.root.display()
        ));
        for (i, (dir, fstype, opts)) in mounts.iter().enumerate() {
            s.push_str(&format!(
                "{} 31 0:{} / {} rw,nosuid,nodev,noexec,relatime shared:{} - {} cgroup {}\n",
                40 + i,
                40 + i,
                self.p(dir).display(),
                10 + i,
                fstype,
                opts
            ));
        }
        s
    }
}

fn hybrid() -> (Fake, Layout) {
    let fake = Fake::new(&[
        "cpu",
        "cpuacct",
        "cpuset",
        "memory/process_api/e9c9",
        "pids",
        "freezer",
        "devices",
        "systemd",
        "unified",
    ]);
    let mi = fake.mountinfo(&[
        ("cpu", "cgroup", "rw,cpu"),
        ("cpuacct", "cgroup", "rw,cpuacct"),
        ("cpuset", "cgroup", "rw,cpuset"),
        ("memory", "cgroup", "rw,memory"),
        ("devices", "cgroup", "rw,devices"),
        ("freezer", "cgroup", "rw,freezer"),
        ("pids", "cgroup", "rw,pids"),
        ("systemd", "cgroup", "rw,xattr,name=systemd"),
        ("unified", "cgroup2", "rw,nsdelegate"),
    ]);
    let cg = format!(
        "9:name=systemd:/\n8:pids:/\n6:freezer:/\n5:devices:/\n4:memory:{OWN_MEM}\n\
         3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n"
    );
    let layout = Layout::from_parts(&mi, &cg).unwrap();
    (fake, layout)
}

fn v2(own: &str) -> (Fake, Layout) {
    let fake = Fake::new(&[&format!("unified{own}")]);
    let mi = fake.mountinfo(&[("unified", "cgroup2", "rw,nsdelegate,memory_recursiveprot")]);
    let layout = Layout::from_parts(&mi, &format!("0::{own}\n")).unwrap();
    (fake, layout)
}

fn put(path: &Path, content: &str) {
    fs::write(path, content).unwrap();
}

fn get(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

#[test]
fn cgroups_hybrid_layout_and_resolve() {
    let (fake, layout) = hybrid();
    assert_eq!(layout.mode(), CgroupMode::Hybrid);
    let mem = layout.v1_hierarchy("memory").unwrap();
    assert_eq!(
        mem.own_dir.as_deref(),
        Some(fake.p("memory/process_api/e9c9").as_path())
    );
    assert_eq!(
        layout.v1_hierarchy("name=systemd").unwrap().controllers,
        ["name=systemd"]
    );

    let cg = Cgroup::resolve(&layout, "berth/c1").unwrap();
    assert_eq!(cg.mode, CgroupMode::Hybrid);
    // memory under the own (non-root) memory cgroup ...
    assert_eq!(
        cg.v1_dir("memory").unwrap(),
        fake.p("memory/process_api/e9c9/berth/c1")
    );
    // ... cpu under the root only because the own cpu cgroup is "/".
    assert_eq!(cg.v1_dir("cpu").unwrap(), fake.p("cpu/berth/c1"));
    assert_eq!(cg.v1_dir("cpuacct").unwrap(), fake.p("cpuacct/berth/c1"));
    assert_eq!(cg.v1_dir("pids").unwrap(), fake.p("pids/berth/c1"));
    assert_eq!(cg.v1_dir("freezer").unwrap(), fake.p("freezer/berth/c1"));
    assert!(cg.v1_dir("cpuset").is_none());
    assert!(cg.v1_dir("devices").is_none());
    assert!(cg.v1_dir("name=systemd").is_none());
    assert_eq!(cg.v1.len(), 5);
    assert_eq!(cg.unified.as_ref().unwrap().dir, fake.p("unified/berth/c1"));
    assert_eq!(
        cg.display_path(),
        fake.p("memory/process_api/e9c9/berth/c1")
            .display()
            .to_string()
    );
    assert_eq!(cg.dirs().len(), 6);
    // Nothing was created.
    assert!(!fake.p("memory/process_api/e9c9/berth").exists());

    let cg = Cgroup::resolve_with(
        &layout,
        "berth/c1",
        ResolveOptions {
            cpuset: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(cg.v1_dir("cpuset").unwrap(), fake.p("cpuset/berth/c1"));

    // Absolute: from the hierarchy root.
    let cg = Cgroup::resolve(&layout, "/x/y").unwrap();
    assert_eq!(cg.v1_dir("memory").unwrap(), fake.p("memory/x/y"));
}

#[test]
fn cgroups_comounted_controllers_are_one_hierarchy() {
    let fake = Fake::new(&["cpu,cpuacct/own", "memory", "unified"]);
    let mi = fake.mountinfo(&[
        ("cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
        ("memory", "cgroup", "rw,memory"),
        ("unified", "cgroup2", "rw"),
    ]);
    let layout = Layout::from_parts(&mi, "3:memory:/\n2:cpu,cpuacct:/own\n0::/\n").unwrap();
    assert_eq!(layout.mode(), CgroupMode::Hybrid);
    let cg = Cgroup::resolve(&layout, "b/c").unwrap();
    assert_eq!(cg.v1.len(), 2);
    assert_eq!(cg.v1_dir("cpu"), cg.v1_dir("cpuacct"));
    assert_eq!(cg.v1_dir("cpu").unwrap(), fake.p("cpu,cpuacct/own/b/c"));
}

#[test]
fn cgroups_mode_detection() {
    let (_f, l) = v2("/user.slice/x.scope");
    assert_eq!(l.mode(), CgroupMode::V2);
    assert!(l.v1_hierarchies().is_empty());

    // A name=systemd-only v1 mount does not make a host hybrid.
    let fake = Fake::new(&["systemd", "unified"]);
    let mi = fake.mountinfo(&[
        ("systemd", "cgroup", "rw,name=systemd"),
        ("unified", "cgroup2", "rw"),
    ]);
    let l = Layout::from_parts(&mi, "1:name=systemd:/\n0::/\n").unwrap();
    assert_eq!(l.mode(), CgroupMode::V2);

    // v1 only.
    let fake = Fake::new(&["memory", "pids"]);
    let mi = fake.mountinfo(&[
        ("memory", "cgroup", "rw,memory"),
        ("pids", "cgroup", "rw,pids"),
    ]);
    let l = Layout::from_parts(&mi, "2:pids:/\n1:memory:/a\n").unwrap();
    assert_eq!(l.mode(), CgroupMode::V1);
    let cg = Cgroup::resolve(&l, "berth/x").unwrap();
    assert!(cg.unified.is_none());
    assert_eq!(
        cg.display_path(),
        fake.p("memory/a/berth/x").display().to_string()
    );

    // Nothing mounted.
    let err = Layout::from_parts("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n", "0::/\n").unwrap_err();
    assert!(matches!(err, CgroupError::Layout(_)), "{err}");
}

#[test]
fn cgroups_v2_resolve_under_own_cgroup() {
    let (fake, layout) = v2("/user.slice/x.scope");
    let cg = Cgroup::resolve(&layout, "berth/c1").unwrap();
    assert!(cg.v1.is_empty());
    let u = cg.unified.as_ref().unwrap();
    assert_eq!(u.base, fake.p("unified/user.slice/x.scope"));
    assert_eq!(u.dir, fake.p("unified/user.slice/x.scope/berth/c1"));
    assert_eq!(cg.display_path(), u.dir.display().to_string());
}

#[test]
fn cgroups_mount_root_is_stripped() {
    // A container-style mount showing only part of the hierarchy.
    let fake = Fake::new(&["unified"]);
    let mi = format!(
        "50 22 0:30 /kubepods/pod1 {} rw - cgroup2 cgroup2 rw\n",
        fake.p("unified").display()
    );
    let l = Layout::from_parts(&mi, "0::/kubepods/pod1/ctr\n").unwrap();
    let cg = Cgroup::resolve(&l, "berth/a").unwrap();
    assert_eq!(cg.unified.unwrap().dir, fake.p("unified/ctr/berth/a"));
    let cg = Cgroup::resolve(&l, "/kubepods/pod1/z").unwrap();
    assert_eq!(cg.unified.unwrap().dir, fake.p("unified/z"));
    assert!(Cgroup::resolve(&l, "/elsewhere/z").is_err());
}

#[test]
fn cgroups_bad_paths_rejected() {
    let (_f, layout) = hybrid();
    for p in ["", "/", "//", "berth/../x", "..", "./x", "a/./b"] {
        let err = Cgroup::resolve(&layout, p).unwrap_err();
        assert!(matches!(err, CgroupError::InvalidPath { .. }), "{p}: {err}");
        assert!(err.to_string().starts_with("invalid cgroup path"), "{err}");
    }
    let err = Cgroup::resolve(&layout, "a/../b").unwrap_err();
    assert!(err.to_string().contains(".."), "{err}");
}

#[test]
fn cgroups_create_and_destroy_track_created_dirs() {
    let (fake, layout) = hybrid();
    // Someone else's "berth" parent exists in the memory hierarchy.
    fs::create_dir(fake.p("memory/process_api/e9c9/berth")).unwrap();
    fs::create_dir(fake.p("memory/process_api/e9c9/berth/other")).unwrap();
    let mut cg = Cgroup::resolve(&layout, "berth/c1").unwrap();
    cg.create().unwrap();
    for d in cg.dirs() {
        assert!(d.is_dir(), "{}", d.display());
    }
    let mem = cg.v1.iter().find(|h| h.controllers == ["memory"]).unwrap();
    assert_eq!(mem.created, [fake.p("memory/process_api/e9c9/berth/c1")]);
    let cpu = cg.v1.iter().find(|h| h.controllers == ["cpu"]).unwrap();
    assert_eq!(cpu.created, [fake.p("cpu/berth"), fake.p("cpu/berth/c1")]);

    // Survives a JSON round trip (the launcher stores it).
    let json = serde_json::to_string(&cg).unwrap();
    let back: Cgroup = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cg);

    // Second create of the same leaf fails.
    let mut again = Cgroup::resolve(&layout, "berth/c1").unwrap();
    let err = again.create().unwrap_err();
    assert!(matches!(err, CgroupError::AlreadyExists { .. }), "{err}");
    assert!(err.to_string().ends_with("already exists"), "{err}");

    back.destroy().unwrap();
    for d in cg.dirs() {
        assert!(!d.exists(), "{}", d.display());
    }
    assert!(!fake.p("cpu/berth").exists());
    assert!(!fake.p("unified/berth").exists());
    // Not ours: left alone.
    assert!(fake.p("memory/process_api/e9c9/berth/other").is_dir());
    // Idempotent.
    back.destroy().unwrap();
}

#[test]
fn cgroups_destroy_keeps_shared_parent_and_refuses_foreign_dirs() {
    let (fake, layout) = v2("/svc");
    let mut a = Cgroup::resolve(&layout, "berth/a").unwrap();
    a.create().unwrap();
    let mut b = Cgroup::resolve(&layout, "berth/b").unwrap();
    b.create().unwrap();
    assert_eq!(b.unified.as_ref().unwrap().created.len(), 1);
    a.destroy().unwrap();
    assert!(fake.p("unified/svc/berth/b").is_dir());
    b.destroy().unwrap();
    // Created by a, but below the caller's own cgroup it is Berth's: the
    // last container takes the empty shared parent with it.
    assert!(!fake.p("unified/svc/berth").exists());
    assert!(fake.p("unified/svc").is_dir());

    // Under an absolute path only what a cgroup created itself is removed.
    std::fs::create_dir_all(fake.p("unified/admin")).unwrap();
    let mut abs = Cgroup::resolve(&layout, "/admin/c1").unwrap();
    abs.create().unwrap();
    abs.destroy().unwrap();
    assert!(!fake.p("unified/admin/c1").exists());
    assert!(fake.p("unified/admin").is_dir(), "not berth's to remove");

    let mut evil = Cgroup::resolve(&layout, "berth/c").unwrap();
    evil.unified.as_mut().unwrap().created = vec![fake.p("unified/svc")];
    assert!(evil.destroy().is_err());
    assert!(fake.p("unified/svc").is_dir());
}

#[test]
fn cgroups_v2_create_enables_controllers() {
    let (fake, layout) = v2("/svc");
    put(
        &fake.p("unified/svc/cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    );
    put(&fake.p("unified/svc/cgroup.subtree_control"), "cpu\n");
    let mut cg = Cgroup::resolve(&layout, "berth/c1").unwrap();
    cg.create().unwrap();
    assert!(cg.warnings.is_empty(), "{:?}", cg.warnings);
    assert_eq!(
        get(&fake.p("unified/svc/cgroup.subtree_control")),
        "+memory +pids +io +cpuset"
    );
}

#[test]
fn cgroups_v1_apply_writes_files() {
    let (fake, layout) = hybrid();
    let mut cg = Cgroup::resolve(&layout, "berth/c1").unwrap();
    cg.create().unwrap();
    let mem = fake.p("memory/process_api/e9c9/berth/c1");
    let cpu = fake.p("cpu/berth/c1");
    let pids = fake.p("pids/berth/c1");
    put(&mem.join("memory.limit_in_bytes"), "9223372036854771712\n");
    put(
        &mem.join("memory.memsw.limit_in_bytes"),
        "9223372036854771712\n",
    );
    put(&mem.join("memory.swappiness"), "60\n");
    put(&cpu.join("cpu.shares"), "1024\n");
    put(&cpu.join("cpu.cfs_quota_us"), "-1\n");
    put(&cpu.join("cpu.cfs_period_us"), "100000\n");
    put(&pids.join("pids.max"), "max\n");

    let res: LinuxResources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .swap(128i64 << 20)
                .swappiness(10u64)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50000i64)
                .period(80000u64)
                .cpus("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(16i64).build().unwrap())
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(100u16)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let un = cg.apply(&res).unwrap();
    assert_eq!(
        get(&mem.join("memory.limit_in_bytes")),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        get(&mem.join("memory.memsw.limit_in_bytes")),
        (128u64 << 20).to_string()
    );
    assert_eq!(get(&mem.join("memory.swappiness")), "10");
    assert_eq!(get(&cpu.join("cpu.shares")), "512");
    assert_eq!(get(&cpu.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(get(&cpu.join("cpu.cfs_period_us")), "80000");
    assert_eq!(get(&pids.join("pids.max")), "16");
    let limits: Vec<&str> = un.iter().map(|u| u.limit.as_str()).collect();
    assert_eq!(limits, ["cpu.cpus/cpu.mems", "blockIO.weight"], "{un:?}");
    assert!(un[0].reason.contains("cpuset"), "{un:?}");

    // pids <= 0 => max; swap below limit is invalid.
    let res = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(0i64).build().unwrap())
        .build()
        .unwrap();
    assert!(cg.apply(&res).unwrap().is_empty());
    assert_eq!(get(&pids.join("pids.max")), "max");
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(100i64)
                .swap(50i64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert!(matches!(
        cg.apply(&res),
        Err(CgroupError::InvalidResources(_))
    ));

    // A missing memsw file (no swap accounting) is reported, not an error.
    fs::remove_file(mem.join("memory.memsw.limit_in_bytes")).unwrap();
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(1i64 << 30)
                .swap(2i64 << 30)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let un = cg.apply(&res).unwrap();
    assert_eq!(un.len(), 1);
    assert_eq!(un[0].limit, "memory.swap");
    assert_eq!(
        get(&mem.join("memory.limit_in_bytes")),
        (1u64 << 30).to_string()
    );
}

#[test]
fn cgroups_v2_apply_writes_files() {
    let (fake, layout) = v2("/svc");
    let mut cg = Cgroup::resolve(&layout, "c1").unwrap();
    cg.create().unwrap();
    let d = fake.p("unified/svc/c1");
    put(&d.join("cgroup.controllers"), "cpu memory\n");
    for f in [
        "memory.max",
        "memory.swap.max",
        "cpu.weight",
        "cpu.max",
        "pids.max",
    ] {
        put(&d.join(f), "max\n");
    }
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .swap(96i64 << 20)
                .swappiness(10u64)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(1024u64)
                .quota(50000i64)
                .period(100000u64)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(16i64).build().unwrap())
        .build()
        .unwrap();
    let un = cg.apply(&res).unwrap();
    assert_eq!(get(&d.join("memory.max")), (64u64 << 20).to_string());
    assert_eq!(get(&d.join("memory.swap.max")), (32u64 << 20).to_string());
    assert_eq!(get(&d.join("cpu.weight")), "39");
    assert_eq!(get(&d.join("cpu.max")), "50000 100000");
    assert_eq!(
        get(&d.join("pids.max")),
        "max\n",
        "pids not enabled: untouched"
    );
    let limits: Vec<&str> = un.iter().map(|u| u.limit.as_str()).collect();
    assert_eq!(limits, ["memory.swappiness", "pids.limit"], "{un:?}");

    // Swap equal to the limit means "no swap": memory.swap.max must be
    // written as 0, not left at the kernel's "max".
    let off = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .swap(64i64 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    put(&d.join("memory.swap.max"), "max\n");
    cg.apply(&off).unwrap();
    assert_eq!(get(&d.join("memory.swap.max")), "0");
    assert!(
        un[1].reason.contains("pids controller not enabled"),
        "{un:?}"
    );

    // Unlimited quota; only period keeps the quota.
    let res = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
        .build()
        .unwrap();
    cg.apply(&res).unwrap();
    assert_eq!(get(&d.join("cpu.max")), "max");
    put(&d.join("cpu.max"), "20000 100000\n");
    let res = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().period(50000u64).build().unwrap())
        .build()
        .unwrap();
    cg.apply(&res).unwrap();
    assert_eq!(get(&d.join("cpu.max")), "20000 50000");

    // A failing write names the file and the errno.
    fs::remove_file(d.join("memory.max")).unwrap();
    fs::create_dir(d.join("memory.max")).unwrap();
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(1i64 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = cg.apply(&res).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "writing 1048576 to {}: Is a directory",
            d.join("memory.max").display()
        )
    );
}

#[test]
fn cgroups_shares_to_weight_matches_runc() {
    assert_eq!(shares_to_weight(0), 0);
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(512), 20);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(1), 1);
    assert_eq!(shares_to_weight(1 << 40), 10_000);
}

#[test]
fn cgroups_v1_stats_from_files() {
    let (fake, layout) = hybrid();
    let cg = Cgroup::resolve(&layout, "c").unwrap();
    for d in cg.dirs() {
        fs::create_dir_all(d).unwrap();
    }
    let mem = fake.p("memory/process_api/e9c9/c");
    put(&mem.join("memory.usage_in_bytes"), "1048576\n");
    put(&mem.join("memory.max_usage_in_bytes"), "2097152\n");
    put(&mem.join("memory.limit_in_bytes"), "67108864\n");
    put(
        &mem.join("memory.memsw.limit_in_bytes"),
        "9223372036854771712\n",
    );
    put(&mem.join("memory.failcnt"), "7\n");
    put(
        &mem.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    );
    put(&fake.p("cpuacct/c/cpuacct.usage"), "123456789\n");
    put(
        &fake.p("cpu/c/cpu.stat"),
        "nr_periods 10\nnr_throttled 4\nthrottled_time 5000\n",
    );
    put(&fake.p("cpu/c/cpu.cfs_quota_us"), "50000\n");
    put(&fake.p("cpu/c/cpu.cfs_period_us"), "100000\n");
    put(&fake.p("pids/c/pids.current"), "1\n");
    put(&fake.p("pids/c/pids.max"), "max\n");
    let s = cg.stats().unwrap();
    assert_eq!(
        s,
        Stats {
            memory_current: Some(1 << 20),
            memory_peak: Some(2 << 20),
            memory_limit: Some(64 << 20),
            memory_swap_limit: None,
            cpu_usage_ns: Some(123456789),
            cpu_quota_us: Some(50000),
            cpu_period_us: Some(100000),
            cpu_nr_throttled: Some(4),
            cpu_throttled_ns: Some(5000),
            pids_current: Some(1),
            pids_limit: None,
            oom_events: None,
            oom_kill: Some(3),
            memory_failcnt: Some(7),
            under_oom: Some(false),
        }
    );
    assert_eq!(cg.oom_kill_count(), 3);

    // Missing files => None, garbage => error naming the file.
    fs::remove_file(mem.join("memory.usage_in_bytes")).unwrap();
    assert_eq!(cg.stats().unwrap().memory_current, None);
    put(&fake.p("pids/c/pids.current"), "lots\n");
    let err = cg.stats().unwrap_err().to_string();
    assert!(
        err.contains("pids.current") && err.contains("lots"),
        "{err}"
    );
}

#[test]
fn cgroups_v2_stats_from_files() {
    let (fake, layout) = v2("/");
    let cg = Cgroup::resolve(&layout, "c").unwrap();
    let d = fake.p("unified/c");
    fs::create_dir_all(&d).unwrap();
    put(&d.join("memory.current"), "4096\n");
    put(&d.join("memory.peak"), "8192\n");
    put(&d.join("memory.max"), "max\n");
    put(&d.join("memory.swap.max"), "0\n");
    put(
        &d.join("memory.events"),
        "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
    );
    put(
        &d.join("cpu.stat"),
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 3\nnr_throttled 2\nthrottled_usec 40\n",
    );
    put(&d.join("cpu.max"), "max 100000\n");
    put(&d.join("pids.current"), "3\n");
    put(&d.join("pids.max"), "16\n");
    let s = cg.stats().unwrap();
    assert_eq!(s.memory_current, Some(4096));
    assert_eq!(s.memory_peak, Some(8192));
    assert_eq!(s.memory_limit, None);
    assert_eq!(s.memory_swap_limit, Some(0));
    assert_eq!(s.oom_events, Some(2));
    assert_eq!(s.oom_kill, Some(1));
    assert_eq!(s.memory_failcnt, Some(12));
    assert_eq!(s.cpu_usage_ns, Some(1_500_000));
    assert_eq!(s.cpu_nr_throttled, Some(2));
    assert_eq!(s.cpu_throttled_ns, Some(40_000));
    assert_eq!(s.cpu_quota_us, Some(-1));
    assert_eq!(s.cpu_period_us, Some(100000));
    assert_eq!(s.pids_current, Some(3));
    assert_eq!(s.pids_limit, Some(16));
    assert_eq!(cg.oom_kill_count(), 1);

    // pids() reads the unified cgroup.procs; a removed cgroup has none.
    put(&d.join("cgroup.procs"), "12\n34\n");
    assert_eq!(cg.pids().unwrap(), [12, 34]);
    fs::remove_dir_all(&d).unwrap();
    assert!(cg.pids().unwrap().is_empty());
    assert_eq!(cg.stats().unwrap(), Stats::default());
    assert_eq!(cg.oom_kill_count(), 0);
}

#[test]
fn cgroups_error_messages_name_file_and_errno() {
    let (fake, layout) = v2("/");
    let cg = Cgroup::resolve(&layout, "gone").unwrap();
    let err = cg.add_pid(1).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "writing 1 to {}: No such file or directory",
            fake.p("unified/gone/cgroup.procs").display()
        )
    );
    assert_eq!(err.errno(), Some(nix::errno::Errno::ENOENT));
}

#[test]
fn cgroups_v1_cpuset_copied_from_parent() {
    let (fake, _layout) = hybrid();
    let parent = fake.p("cpuset/berth");
    let child = parent.join("c1");
    fs::create_dir_all(&child).unwrap();
    put(&parent.join("cpuset.cpus"), "0-3\n");
    put(&parent.join("cpuset.mems"), "0\n");
    put(&child.join("cpuset.cpus"), "\n");
    put(&child.join("cpuset.mems"), "1\n");
    super::cgroup::copy_cpuset_from_parent(&child).unwrap();
    assert_eq!(get(&child.join("cpuset.cpus")), "0-3");
    assert_eq!(
        get(&child.join("cpuset.mems")),
        "1\n",
        "non-empty value kept"
    );
}

fn throttles() -> LinuxResources {
    use oci_spec::runtime::LinuxThrottleDeviceBuilder;
    let dev = |rate: u64| {
        LinuxThrottleDeviceBuilder::default()
            .major(254i64)
            .minor(0i64)
            .rate(rate)
            .build()
            .unwrap()
    };
    LinuxResourcesBuilder::default()
        .block_io(
            LinuxBlockIoBuilder::default()
                .throttle_read_bps_device(vec![dev(2 << 20)])
                .throttle_write_bps_device(vec![dev(1 << 20)])
                .throttle_write_iops_device(vec![dev(100)])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

#[test]
fn cgroups_v2_block_io_throttles_go_to_io_max() {
    let (fake, layout) = v2("/svc");
    let mut cg = Cgroup::resolve(&layout, "c1").unwrap();
    cg.create().unwrap();
    let d = fake.p("unified/svc/c1");
    put(&d.join("cgroup.controllers"), "io memory\n");
    put(&d.join("io.max"), "");
    let un = cg.apply(&throttles()).unwrap();
    assert!(un.is_empty(), "{un:?}");
    // One write per device with all of its limits.
    assert_eq!(
        get(&d.join("io.max")),
        "254:0 rbps=2097152 wbps=1048576 wiops=100"
    );
}

#[test]
fn cgroups_v1_block_io_throttles_need_the_blkio_hierarchy() {
    let fake = Fake::new(&["memory", "blkio"]);
    let mi = fake.mountinfo(&[
        ("memory", "cgroup", "rw,memory"),
        ("blkio", "cgroup", "rw,blkio"),
    ]);
    let layout = Layout::from_parts(&mi, "3:blkio:/\n2:memory:/\n").unwrap();
    let res = throttles();
    // Without the option the hierarchy is not joined and the limit says so.
    let mut plain = Cgroup::resolve(&layout, "berth/a").unwrap();
    plain.create().unwrap();
    let un = plain.apply(&res).unwrap();
    assert_eq!(un.len(), 1, "{un:?}");
    assert!(un[0].reason.contains("blkio"), "{un:?}");
    let mut cg =
        Cgroup::resolve_with(&layout, "berth/b", ResolveOptions::for_resources(&res)).unwrap();
    cg.create().unwrap();
    let d = fake.p("blkio/berth/b");
    for f in [
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_bps_device",
        "blkio.throttle.write_iops_device",
    ] {
        put(&d.join(f), "");
    }
    let un = cg.apply(&res).unwrap();
    assert!(un.is_empty(), "{un:?}");
    assert_eq!(
        get(&d.join("blkio.throttle.read_bps_device")),
        "254:0 2097152"
    );
    assert_eq!(
        get(&d.join("blkio.throttle.write_bps_device")),
        "254:0 1048576"
    );
    assert_eq!(
        get(&d.join("blkio.throttle.write_iops_device")),
        "254:0 100"
    );
}

#[test]
fn mount_view_binds_the_containers_dirs_per_hierarchy() {
    let fake = Fake::new(&["cpu,cpuacct/own", "memory", "systemd", "unified"]);
    let mi = fake.mountinfo(&[
        ("cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
        ("memory", "cgroup", "rw,memory"),
        ("systemd", "cgroup", "rw,xattr,name=systemd"),
        ("unified", "cgroup2", "rw"),
    ]);
    let layout = Layout::from_parts(
        &mi,
        "4:name=systemd:/sys\n3:memory:/\n2:cpu,cpuacct:/own\n0::/\n",
    )
    .unwrap();
    let cg = Cgroup::resolve(&layout, "b/c").unwrap();
    let view = mount_view(&layout, Some(&cg));
    assert_eq!(
        view.v1,
        [
            ("cpu,cpuacct".to_string(), fake.p("cpu,cpuacct/own/b/c")),
            ("memory".to_string(), fake.p("memory/b/c")),
            // Not joined: the caller's own cgroup, where init is born.
            ("systemd".to_string(), fake.p("systemd/sys")),
            ("unified".to_string(), fake.p("unified/b/c")),
        ]
    );
    assert_eq!(
        view.links,
        [
            ("cpu".to_string(), "cpu,cpuacct".to_string()),
            ("cpuacct".to_string(), "cpu,cpuacct".to_string()),
        ]
    );

    // Pure v2: no binds, the unified dir for the userns fallback.
    let (fake, layout) = v2("/user.slice");
    let cg = Cgroup::resolve(&layout, "b/c").unwrap();
    let view = mount_view(&layout, Some(&cg));
    assert!(view.v1.is_empty());
    assert_eq!(view.unified, Some(fake.p("unified/user.slice/b/c")));
}
