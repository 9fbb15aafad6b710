//! linux.resources as `berth run` applies them, read back from the
//! container's own cgroup files inside it (`/sys/fs/cgroup/<controller>/`
//! on a v1 or hybrid host, `/sys/fs/cgroup/` on v2, through the cgroup
//! namespace), and compared with runc 1.1 on the same bundle where runc
//! can run it. Every test branches on the cgroup version: the host tier
//! checks the v1 files, the VM tier (tests/vm/run.sh) the v2 ones. A limit
//! the host cannot apply must fail the create naming the field, as runc
//! fails on the missing file.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::oci::{berth, sh, Bundle, Ran, Runc};
use common::{is_cgroup_v2, Berth};
use serde_json::{json, Value};

/// Where a controller's files are inside the container.
fn cg_dir(controller: &str) -> String {
    if is_cgroup_v2() {
        "/sys/fs/cgroup".into()
    } else {
        format!("/sys/fs/cgroup/{controller}")
    }
}

/// A bundle whose process prints `name=<contents>` for each of `files`
/// (paths inside the container; newlines inside a file become '|'), with
/// `resources` as linux.resources and `edit` for the rest.
fn bundle(b: &Berth, resources: Value, files: &[String], edit: impl FnOnce(&mut Value)) -> Bundle {
    let script: String = files
        .iter()
        .map(|f| format!("echo \"{f}=$(cat {f} 2>&1 | tr '\\n' '|')\"; "))
        .collect();
    Bundle::new(b, |c| {
        c["linux"]["resources"] = resources;
        c["process"]["args"] = sh(&script);
        edit(c);
    })
}

/// The `name=contents` lines of a run, trailing '|' dropped.
fn values(r: &Ran) -> BTreeMap<String, String> {
    r.out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_end_matches('|').to_string()))
        .collect()
}

/// `berth run` of the bundle, which must succeed.
fn berth_values(b: &Berth, bundle: &Bundle, id: &str) -> BTreeMap<String, String> {
    let r = berth(b, &["run", "--bundle", bundle.path(), id]);
    assert_eq!(r.code, 0, "berth run {id}: {}{}", r.err, r.out);
    values(&r)
}

/// runc on the same bundle: its values when it runs the bundle, `None`
/// without runc.
fn runc_values(r: &Option<Runc>, bundle: &Bundle, id: &str) -> Option<BTreeMap<String, String>> {
    let r = r.as_ref()?;
    let ran = r.run(&["run", "--bundle", bundle.path(), id]);
    assert_eq!(ran.code, 0, "runc run {id}: {}{}", ran.err, ran.out);
    Some(values(&ran))
}

/// Asserts that `berth run` fails with exit 1 naming `field`, and that
/// runc (if present and `runc_fails`) fails on the same bundle too.
fn fails_naming(
    b: &Berth,
    r: &Option<Runc>,
    bundle: &Bundle,
    id: &str,
    field: &str,
    runc_fails: bool,
) {
    let ran = berth(b, &["run", "--bundle", bundle.path(), id]);
    assert_eq!(
        ran.code, 1,
        "berth run {id} should fail: {}{}",
        ran.err, ran.out
    );
    assert!(
        ran.err.contains(field),
        "error should name {field}: {}",
        ran.err
    );
    // Nothing is left behind: the id is free again.
    assert!(berth(b, &["state", id]).code != 0, "{id} left behind");
    if let (Some(r), true) = (r, runc_fails) {
        let ran = r.run(&["run", "--bundle", bundle.path(), id]);
        assert_ne!(ran.code, 0, "runc ran {id}: {}", ran.out);
    }
}

/// Files a fresh child of the test's own cgroup has for `controller`
/// (v1: in that hierarchy; v2: in the unified one, with the controller
/// enabled as Berth enables it), so a test knows what the kernel offers.
fn probe_files(controller: &str) -> Vec<String> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let (root, rel) = if is_cgroup_v2() {
        let rel = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        (PathBuf::from("/sys/fs/cgroup"), rel.to_string())
    } else {
        let Some(rel) = common::v1_cgroup_path(&own, controller) else {
            return Vec::new();
        };
        (PathBuf::from(format!("/sys/fs/cgroup/{controller}")), rel)
    };
    let parent = root.join(rel.trim_start_matches('/'));
    let probe = parent.join(format!("berth-probe-{}", std::process::id()));
    if std::fs::create_dir(&probe).is_err() {
        return Vec::new();
    }
    let mut files: Vec<String> = std::fs::read_dir(&probe)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    std::fs::remove_dir(&probe).unwrap();
    files
}

/// A loop device over a file in a temp dir, detached on drop.
struct Loop {
    dev: String,
    _file: tempfile::TempDir,
}

impl Loop {
    fn new() -> Option<Loop> {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&img)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("losetup failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        Some(Loop {
            dev: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            _file: dir,
        })
    }

    fn major_minor(&self) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let rdev = std::fs::metadata(&self.dev).unwrap().rdev();
        (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
    }

    /// Switches the device to BFQ if the kernel offers it there.
    fn use_bfq(&self) -> bool {
        let name = Path::new(&self.dev).file_name().unwrap().to_str().unwrap();
        let sched = format!("/sys/block/{name}/queue/scheduler");
        let offered = std::fs::read_to_string(&sched).unwrap_or_default();
        offered
            .split_whitespace()
            .any(|s| s.trim_matches(['[', ']']) == "bfq")
            && std::fs::write(&sched, "bfq").is_ok()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// memory: limit, reservation, swap, and on v1 swappiness and the OOM
/// killer switch; v2 has no equivalent of those two, which must fail
/// naming the field.
#[test]
fn memory_limits_as_under_runc() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let mem = cg_dir("memory");
    let v2 = is_cgroup_v2();
    let mut res = json!({"memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 96 << 20}});
    let files: Vec<String> = if v2 {
        ["memory.max", "memory.low", "memory.swap.max"]
            .iter()
            .map(|f| format!("{mem}/{f}"))
            .collect()
    } else {
        res["memory"]["swappiness"] = json!(10);
        res["memory"]["disableOOMKiller"] = json!(true);
        [
            "memory.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.swappiness",
            "memory.oom_control",
        ]
        .iter()
        .map(|f| format!("{mem}/{f}"))
        .collect()
    };
    let bd = bundle(&b, res, &files, |_| {});
    let got = berth_values(&b, &bd, "mem1");
    if v2 {
        assert_eq!(got[&files[0]], (64u64 << 20).to_string());
        assert_eq!(got[&files[1]], (32u64 << 20).to_string());
        // OCI swap is memory+swap; v2's swap.max is swap alone.
        assert_eq!(got[&files[2]], (32u64 << 20).to_string());
    } else {
        assert_eq!(got[&files[0]], (64u64 << 20).to_string());
        assert_eq!(got[&files[1]], (32u64 << 20).to_string());
        assert_eq!(got[&files[2]], (96u64 << 20).to_string());
        assert_eq!(got[&files[3]], "10");
        assert!(got[&files[4]].contains("oom_kill_disable 1"), "{got:?}");
    }
    if let Some(theirs) = runc_values(&r, &bd, "mem1") {
        assert_eq!(got, theirs, "berth vs runc");
    }

    if v2 {
        for (res, field) in [
            (json!({"memory": {"swappiness": 10}}), "memory.swappiness"),
            (
                json!({"memory": {"disableOOMKiller": true}}),
                "memory.disableOOMKiller",
            ),
        ] {
            let bd = bundle(&b, res, &[], |_| {});
            fails_naming(&b, &r, &bd, "mem2", field, false);
        }
    }
}

/// cpu: shares (v2: runc's weight conversion), quota/period, cpus/mems
/// (v1 cpuset joined only for them), and realtime where the kernel has
/// it: v1 with CONFIG_RT_GROUP_SCHED, under a cgroup with a budget.
#[test]
fn cpu_limits_as_under_runc() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let v2 = is_cgroup_v2();
    let (cpu, cpuset) = (cg_dir("cpu"), cg_dir("cpuset"));
    let res =
        json!({"cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}});
    let files: Vec<String> = if v2 {
        vec![
            format!("{cpu}/cpu.weight"),
            format!("{cpu}/cpu.max"),
            format!("{cpuset}/cpuset.cpus"),
            format!("{cpuset}/cpuset.mems"),
        ]
    } else {
        vec![
            format!("{cpu}/cpu.shares"),
            format!("{cpu}/cpu.cfs_quota_us"),
            format!("{cpu}/cpu.cfs_period_us"),
            format!("{cpuset}/cpuset.cpus"),
            format!("{cpuset}/cpuset.mems"),
        ]
    };
    let bd = bundle(&b, res, &files, |_| {});
    let got = berth_values(&b, &bd, "cpu1");
    let want: Vec<&str> = if v2 {
        // 1 + (512 - 2) * 9999 / 262142
        vec!["20", "50000 100000", "0", "0"]
    } else {
        vec!["512", "50000", "100000", "0", "0"]
    };
    for (f, w) in files.iter().zip(want) {
        assert_eq!(got[f], w, "{f}: {got:?}");
    }
    if let Some(theirs) = runc_values(&r, &bd, "cpu1") {
        assert_eq!(got, theirs, "berth vs runc");
    }

    // Realtime bandwidth.
    let rt = json!({"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 10000}});
    if v2 {
        let bd = bundle(&b, rt, &[], |_| {});
        fails_naming(&b, &r, &bd, "rt1", "cpu.realtimeRuntime", false);
        return;
    }
    if !probe_files("cpu").iter().any(|f| f == "cpu.rt_runtime_us") {
        eprintln!(
            "skipped: realtime part: no cpu.rt_runtime_us (kernel without CONFIG_RT_GROUP_SCHED)"
        );
        return;
    }
    // A cgroup directly below the caller's own has the parent's budget to
    // draw on, as runc's default /<id> does; below "berth/" (a fresh level
    // with no budget) the kernel refuses, and the error names the field.
    let name = format!("berth-rt-{}", std::process::id());
    let files = vec![
        format!("{cpu}/cpu.rt_period_us"),
        format!("{cpu}/cpu.rt_runtime_us"),
    ];
    let bd = bundle(&b, rt.clone(), &files, |c| {
        c["linux"]["cgroupsPath"] = json!(name)
    });
    let got = berth_values(&b, &bd, "rt1");
    assert_eq!(got[&files[0]], "1000000");
    assert_eq!(got[&files[1]], "10000");
    if let Some(theirs) = runc_values(&r, &bd, "rt1") {
        assert_eq!(got, theirs, "berth vs runc");
    }
    let bd = bundle(&b, rt, &[], |_| {});
    fails_naming(&b, &None, &bd, "rt2", "cpu.realtimeRuntime", false);
}

/// pids.max set, and enforced: sh, a subshell and three sleeps fill the
/// five, the fourth sleep cannot be forked (busybox's subshell dies there).
#[test]
fn pids_limit_as_under_runc() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let d = cg_dir("pids");
    let bd = Bundle::new(&b, |c| {
        c["linux"]["resources"] = json!({"pids": {"limit": 5}});
        // Builtins and redirections only once the sleeps run: anything
        // forked then would fail too.
        c["process"]["args"] = sh(&format!(
            "read m < {d}/pids.max; echo pids.max=$m; \
             (for i in 1 2 3 4 5 6; do sleep 5 & echo started=$i; done) 2>/dev/null; \
             read n < {d}/pids.current; echo current=$n"
        ));
    });
    let got = berth_values(&b, &bd, "pids1");
    assert_eq!(got["pids.max"], "5");
    assert_eq!(got["started"], "3", "{got:?}");
    // The subshell is gone: sh and the three sleeps.
    assert_eq!(got["current"], "4", "{got:?}");
    if let Some(theirs) = runc_values(&r, &bd, "pids1") {
        assert_eq!(got, theirs, "berth vs runc");
    }
}

/// blockIO throttles on a loop device the test makes (v1
/// blkio.throttle.*, v2 one io.max line) and weights: v1 BFQ's or CFQ's
/// files, whichever the kernel has; v2 io.bfq.weight or io.weight with
/// runc's conversion. Leaf weights fail naming the field where the kernel
/// has no leaf_weight file (and on v2), as runc fails on the missing file.
#[test]
fn block_io_as_under_runc() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let Some(dev) = Loop::new() else {
        eprintln!("skipped: no loop device");
        return;
    };
    let (major, minor) = dev.major_minor();
    let bfq = dev.use_bfq();
    let v2 = is_cgroup_v2();
    let dir = cg_dir("blkio");
    let dir = if v2 { cg_dir("io") } else { dir };
    let throttle = |rate: u64| json!([{"major": major, "minor": minor, "rate": rate}]);
    let res = json!({"blockIO": {
        "throttleReadBpsDevice": throttle(1 << 20),
        "throttleWriteBpsDevice": throttle(2 << 20),
        "throttleReadIOPSDevice": throttle(100),
        "throttleWriteIOPSDevice": throttle(200),
    }});
    let files: Vec<String> = if v2 {
        vec![format!("{dir}/io.max")]
    } else {
        [
            "read_bps_device",
            "write_bps_device",
            "read_iops_device",
            "write_iops_device",
        ]
        .iter()
        .map(|f| format!("{dir}/blkio.throttle.{f}"))
        .collect()
    };
    let bd = bundle(&b, res, &files, |_| {});
    let got = berth_values(&b, &bd, "io1");
    let dev_id = format!("{major}:{minor}");
    if v2 {
        assert_eq!(
            got[&files[0]],
            format!("{dev_id} rbps=1048576 wbps=2097152 riops=100 wiops=200")
        );
    } else {
        for (f, v) in files.iter().zip(["1048576", "2097152", "100", "200"]) {
            assert_eq!(got[f], format!("{dev_id} {v}"), "{f}");
        }
    }
    if let Some(theirs) = runc_values(&r, &bd, "io1") {
        // runc 1.1 writes io.max once per limit; the kernel merges them
        // into the same line.
        assert_eq!(got, theirs, "berth vs runc");
    }

    // Weights.
    let offered = probe_files(if v2 { "io" } else { "blkio" });
    let has = |f: &str| offered.iter().any(|o| o == f);
    let (wfile, expect) = if v2 {
        if has("io.bfq.weight") {
            ("io.bfq.weight", "default 300".to_string())
        } else {
            // runc's conversion: 1 + (300 - 10) * 9999 / 990
            ("io.weight", "default 2930".to_string())
        }
    } else if has("blkio.weight") {
        ("blkio.weight", "300".to_string())
    } else {
        ("blkio.bfq.weight", "300".to_string())
    };
    let weight = json!({"blockIO": {"weight": 300}});
    if has(wfile) {
        let files = vec![format!("{dir}/{wfile}")];
        let bd = bundle(&b, weight, &files, |_| {});
        let got = berth_values(&b, &bd, "w1");
        assert_eq!(got[&files[0]].split('|').next().unwrap(), expect, "{got:?}");
        if let Some(theirs) = runc_values(&r, &bd, "w1") {
            assert_eq!(got, theirs, "berth vs runc");
        }
    } else {
        eprintln!("no weight file ({offered:?}): the weight must fail naming the field");
        let bd = bundle(&b, weight, &[], |_| {});
        fails_naming(&b, &r, &bd, "w1", "blockIO.weight", !v2);
    }

    // A per-device weight needs BFQ on that device.
    let wd =
        json!({"blockIO": {"weightDevice": [{"major": major, "minor": minor, "weight": 200}]}});
    let wdfile = if v2 {
        "io.bfq.weight"
    } else {
        "blkio.bfq.weight_device"
    };
    if bfq && has(wdfile) {
        let files = vec![format!("{dir}/{wdfile}")];
        let bd = bundle(&b, wd, &files, |_| {});
        let got = berth_values(&b, &bd, "wd1");
        assert!(
            got[&files[0]]
                .split('|')
                .any(|l| l == format!("{dev_id} 200")),
            "{got:?}"
        );
        if let Some(theirs) = runc_values(&r, &bd, "wd1") {
            assert_eq!(got, theirs, "berth vs runc");
        }
    } else {
        eprintln!(
            "no BFQ for {}: the device weight must fail naming the field",
            dev.dev
        );
        let bd = bundle(&b, wd, &[], |_| {});
        // runc 1.1 drops it silently on v2.
        fails_naming(&b, &r, &bd, "wd1", "blockIO.weightDevice[0].weight", !v2);
    }

    // A weight out of the runtime-spec's 10..1000.
    let bd = bundle(&b, json!({"blockIO": {"weight": 5000}}), &[], |_| {});
    fails_naming(&b, &None, &bd, "w2", "blockIO.weight", false);

    // Leaf weights: CFQ's v1 file only.
    let leaf = json!({"blockIO": {"leafWeight": 300}});
    if !v2 && has("blkio.leaf_weight") {
        let files = vec![format!("{dir}/blkio.leaf_weight")];
        let bd = bundle(&b, leaf, &files, |_| {});
        assert_eq!(berth_values(&b, &bd, "lw1")[&files[0]], "300");
    } else {
        let bd = bundle(&b, leaf, &[], |_| {});
        fails_naming(&b, &r, &bd, "lw1", "blockIO.leafWeight", !v2);
    }
}

/// hugepageLimits: v1 hugetlb.<size>.limit_in_bytes, v2
/// hugetlb.<size>.max (the controller enabled for this container only);
/// without a hugetlb hierarchy (this hybrid host) the create fails naming
/// the field, as runc's does; a size the kernel lacks fails naming
/// pageSize.
#[test]
fn hugepage_limits_as_under_runc() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let v2 = is_cgroup_v2();
    let offered = probe_files("hugetlb");
    let suffix = if v2 { "max" } else { "limit_in_bytes" };
    let limit = json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]});
    let file = format!("hugetlb.2MB.{suffix}");
    if !offered.contains(&file) {
        eprintln!("no {file} on this host (no hugetlb hierarchy or no 2MB pages): the limit must fail naming the field");
        let bd = bundle(&b, limit, &[], |_| {});
        fails_naming(&b, &r, &bd, "huge1", "hugepageLimits", true);
        return;
    }
    let files = vec![format!("{}/{file}", cg_dir("hugetlb"))];
    let bd = bundle(&b, limit, &files, |_| {});
    let got = berth_values(&b, &bd, "huge1");
    assert_eq!(got[&files[0]], (4u64 << 20).to_string());
    if let Some(theirs) = runc_values(&r, &bd, "huge1") {
        assert_eq!(got, theirs, "berth vs runc");
    }
    let bd = bundle(
        &b,
        json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}, {"pageSize": "3MB", "limit": 1}]}),
        &[],
        |_| {},
    );
    fails_naming(&b, &r, &bd, "huge2", "hugepageLimits[1].pageSize", true);
}

/// unified keys: written verbatim on v2; on v1 they fail naming the key,
/// as runc refuses unified resources on a v1 host.
#[test]
fn unified_keys_as_under_runc() {
    require_root!();
    let b = Berth::new();
    let r = Runc::new();
    let res = json!({"unified": {"pids.max": "17", "memory.high": "50000000"}});
    if !is_cgroup_v2() {
        let bd = bundle(&b, res, &[], |_| {});
        fails_naming(&b, &r, &bd, "uni1", "unified.memory.high", true);
        return;
    }
    let files = vec![
        "/sys/fs/cgroup/pids.max".to_string(),
        "/sys/fs/cgroup/memory.high".to_string(),
    ];
    let bd = bundle(&b, res, &files, |_| {});
    let got = berth_values(&b, &bd, "uni1");
    assert_eq!(got[&files[0]], "17");
    assert_eq!(
        got[&files[1]], "49999872",
        "memory.high is rounded down to pages"
    );
    if let Some(theirs) = runc_values(&r, &bd, "uni1") {
        assert_eq!(got, theirs, "berth vs runc");
    }
}

/// `berth features` claims no rdma and no systemd cgroups, and both are
/// refused naming the field.
#[test]
fn features_cgroup_part_is_truthful() {
    require_root!();
    let b = Berth::new();
    let r = berth(&b, &["features"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let f: Value = serde_json::from_str(&r.out).unwrap();
    let cg = &f["linux"]["cgroup"];
    assert_eq!(cg["rdma"], false);
    assert_eq!(cg["systemd"], false);
    assert_eq!(cg["v1"], true);
    assert_eq!(cg["v2"], true);
    let bd = bundle(
        &b,
        json!({"rdma": {"mlx5_0": {"hcaHandles": 3}}}),
        &[],
        |_| {},
    );
    fails_naming(&b, &None, &bd, "rdma1", "linux.resources.rdma", false);
}
