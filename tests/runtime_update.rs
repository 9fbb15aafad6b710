//! runc 1.1's `update`: memory.checkBeforeUpdate against the real usage of
//! a container holding memory, device rules in -r ignored with a warning
//! (as runc), the flags runc has (realtime cpu, obsolete kernel memory,
//! Intel RDT schemata, pids 0), and -r winning over flags.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::oci::{berth, runc, runtime, sh, Bundle, Ran};
use common::{v1_dir, wait_until, Berth};
use serde_json::{json, Value};

fn stats(b: &Berth, id: &str) -> Value {
    let r = berth(b, &["events", "--stats", id]);
    assert_eq!(r.code, 0, "{}", r.err);
    serde_json::from_str::<Value>(&r.out).unwrap()["data"].clone()
}

/// `update -r -` with `doc` on standard input.
fn update_stdin(bin: &Path, root: &Path, id: &str, doc: &Value) -> Ran {
    let mut child = Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(["update", "-r", "-", id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// checkBeforeUpdate: the container writes 48 MiB to a tmpfs (charged to
/// its memory cgroup); a 16 MiB limit is refused naming the field and the
/// numbers, and nothing changes; 128 MiB is accepted.
#[test]
fn check_before_update_refuses_a_limit_below_usage() {
    require_root!();
    let b = Berth::new();
    let bundle = Bundle::new(&b, |c| {
        c["linux"]["resources"] = json!({"memory": {"limit": 268435456}});
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/hold", "type": "tmpfs", "source": "tmpfs", "options": ["size=64m"]}));
        c["process"]["args"] = sh(
            "dd if=/dev/zero of=/hold/f bs=1M count=48 2>/dev/null; touch /hold/done; sleep 600",
        );
    });
    assert_eq!(
        berth(&b, &["run", "-d", "--bundle", bundle.path(), "cbu"]).code,
        0
    );
    let st: Value = serde_json::from_str(&berth(&b, &["state", "cbu"]).out).unwrap();
    let pid = st["pid"].as_i64().unwrap();
    assert!(
        wait_until(10, || Path::new(&format!("/proc/{pid}/root/hold/done"))
            .exists()),
        "the container did not fill its tmpfs"
    );
    let usage = stats(&b, "cbu")["memory"]["usage"]["usage"]
        .as_u64()
        .unwrap();
    assert!(usage >= 48 << 20, "usage {usage}");

    let low = json!({"memory": {"limit": 16 << 20, "checkBeforeUpdate": true}});
    let r = update_stdin(&common::berth_bin(), b.root.path(), "cbu", &low);
    assert_eq!(r.code, 1, "{}", r.err);
    assert!(r.err.contains("memory.checkBeforeUpdate"), "{}", r.err);
    assert!(
        r.err
            .contains(&format!("rejecting memory limit {} <= usage", 16 << 20)),
        "{}",
        r.err
    );
    let s = stats(&b, "cbu");
    assert_eq!(s["memory"]["usage"]["limit"], 268435456, "limit unchanged");
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "still running");

    let ok = json!({"memory": {"limit": 128 << 20, "checkBeforeUpdate": true}});
    let r = update_stdin(&common::berth_bin(), b.root.path(), "cbu", &ok);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(stats(&b, "cbu")["memory"]["usage"]["limit"], 128 << 20);

    // Without the check the same low limit is applied by the kernel's
    // rules (reclaim, then failure), not refused up front by the runtime.
    let r = berth(&b, &["update", "--memory", "16m", "cbu"]);
    assert!(!r.err.contains("checkBeforeUpdate"), "{}", r.err);
}

/// Device rules in `update -r` are ignored with a warning, as runc ignores
/// them; the other fields of the document apply.
#[test]
fn device_rules_in_update_are_ignored_as_runc() {
    require_root!();
    let b = Berth::new();
    let bundle = Bundle::new(&b, |c| {
        c["linux"]["resources"]["pids"] = json!({"limit": 100});
        c["process"]["args"] = json!(["sleep", "600"]);
    });
    let doc = json!({"devices": [{"allow": false, "access": "rwm"}], "pids": {"limit": 50}});
    let mut roots = vec![(common::berth_bin(), b.root.path().to_path_buf(), None)];
    if let Some(r) = runc() {
        let dir = tempfile::tempdir().unwrap();
        roots.push((r, dir.path().to_path_buf(), Some(dir)));
    }
    for (bin, root, _keep) in &roots {
        let id = "upd-dev";
        let r = runtime(bin, root, &["run", "-d", "--bundle", bundle.path(), id]);
        assert_eq!(r.code, 0, "{}", r.err);
        let st: Value = serde_json::from_str(&runtime(bin, root, &["state", id]).out).unwrap();
        let pid = st["pid"].as_i64().unwrap();
        let r = update_stdin(bin, root, id, &doc);
        let pids_max = std::fs::read_to_string(v1_dir(pid, "pids").join("pids.max")).unwrap();
        // /dev/null is still usable: the deny-all rule was not applied.
        let dev_null = runtime(
            bin,
            root,
            &["exec", id, "sh", "-c", "echo x > /dev/null && echo ok"],
        );
        let _ = runtime(bin, root, &["delete", "-f", id]);
        assert_eq!(r.code, 0, "{bin:?}: {}", r.err);
        assert_eq!(pids_max.trim(), "50", "{bin:?}");
        assert_eq!(dev_null.out, "ok\n", "{bin:?}: {}", dev_null.err);
        if bin == &common::berth_bin() {
            assert!(
                r.err.contains("devices"),
                "a warning names the field: {}",
                r.err
            );
        }
    }
}

/// runc 1.1's other update flags.
#[test]
fn update_flags_as_runc() {
    require_root!();
    let b = Berth::new();
    let bundle = Bundle::new(&b, |c| {
        c["linux"]["resources"] = json!({"pids": {"limit": 100}, "memory": {"limit": 268435456}});
        c["process"]["args"] = json!(["sleep", "600"]);
    });
    assert_eq!(
        berth(&b, &["run", "-d", "--bundle", bundle.path(), "fl"]).code,
        0
    );
    let st: Value = serde_json::from_str(&berth(&b, &["state", "fl"]).out).unwrap();
    let pid = st["pid"].as_i64().unwrap();
    let cpu = v1_dir(pid, "cpu");
    let read = |f: &Path| std::fs::read_to_string(f).unwrap().trim().to_string();

    let r = berth(
        &b,
        &["update", "--cpu-share", "512", "--memory", "1.5g", "fl"],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(read(&cpu.join("cpu.shares")), "512");
    assert_eq!(stats(&b, "fl")["memory"]["usage"]["limit"], 3u64 << 29);

    if cpu.join("cpu.rt_period_us").exists() {
        let r = berth(&b, &["update", "--cpu-rt-period", "500000", "fl"]);
        assert_eq!(r.code, 0, "{}", r.err);
        assert_eq!(read(&cpu.join("cpu.rt_period_us")), "500000");
        // A realtime runtime needs one given to the parents too (the
        // kernel's rule): here it fails naming the file, as with runc.
        let r = berth(&b, &["update", "--cpu-rt-runtime", "1000", "fl"]);
        if r.code != 0 {
            assert!(r.err.contains("cpu.rt_runtime_us"), "{}", r.err);
        }
    }

    // Obsolete kernel memory: ignored with runc's warning.
    let r = berth(&b, &["update", "--kernel-memory", "10m", "fl"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.err.contains("Kernel memory settings are ignored"),
        "{}",
        r.err
    );

    // Intel RDT: this host has no resctrl.
    for flag in ["--l3-cache-schema", "--mem-bw-schema"] {
        let r = berth(&b, &["update", flag, "L3:0=f", "fl"]);
        assert_eq!(r.code, 1, "{flag}: {}", r.err);
        assert!(
            r.err.contains(flag) && r.err.contains("resctrl"),
            "{}",
            r.err
        );
    }

    // --pids-limit 0 leaves the limit; -1 is unlimited.
    let pids = v1_dir(pid, "pids").join("pids.max");
    assert_eq!(berth(&b, &["update", "--pids-limit", "0", "fl"]).code, 0);
    assert_eq!(read(&pids), "100");
    assert_eq!(berth(&b, &["update", "--pids-limit", "-1", "fl"]).code, 0);
    assert_eq!(read(&pids), "max");

    // With -r the flags are ignored (runc), and a warning names them.
    let file = bundle.dir.path().join("res.json");
    std::fs::write(&file, r#"{"pids": {"limit": 30}}"#).unwrap();
    let r = berth(
        &b,
        &[
            "update",
            "-r",
            file.to_str().unwrap(),
            "--pids-limit",
            "7",
            "fl",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(read(&pids), "30");
    assert!(r.err.contains("--pids-limit ignored"), "{}", r.err);

    let r = berth(&b, &["update", "--memory", "12q", "fl"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("--memory"), "{}", r.err);
}
