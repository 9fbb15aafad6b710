//! OCI compatibility: the bundle Berth writes is one runc accepts and runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{stderr, stdout, Berth};

fn runc() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/sbin"),
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/local/sbin"),
        ])
        .map(|d| d.join("runc"))
        .find(|p| p.is_file())
}

/// Removes the runc container (if runc still lists it) on drop.
struct RuncGuard {
    runc: PathBuf,
    root: PathBuf,
    id: String,
}

impl Drop for RuncGuard {
    fn drop(&mut self) {
        let listed = Command::new(&self.runc)
            .arg("--root")
            .arg(&self.root)
            .args(["list", "-q"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == self.id)
            })
            .unwrap_or(false);
        if listed {
            let _ = Command::new(&self.runc)
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "-f", &self.id])
                .output();
        }
    }
}

fn check_bundle_fields(config: &serde_json::Value, rootfs: &Path) {
    let v = config["ociVersion"]
        .as_str()
        .expect("ociVersion is a string");
    assert!(v.starts_with("1."), "ociVersion {v:?}");
    let root = config["root"]["path"].as_str().expect("root.path");
    assert!(Path::new(root).is_absolute(), "root.path {root:?}");
    assert_eq!(
        std::fs::canonicalize(root).unwrap(),
        std::fs::canonicalize(rootfs).unwrap(),
        "root.path is not the busybox rootfs"
    );
    let p = &config["process"];
    assert!(
        p["args"].as_array().is_some_and(|a| !a.is_empty()),
        "process.args: {p}"
    );
    assert!(
        p["cwd"].as_str().is_some_and(|c| c.starts_with('/')),
        "process.cwd: {p}"
    );
    assert!(
        p["user"]["uid"].is_u64() && p["user"]["gid"].is_u64(),
        "process.user: {p}"
    );
    assert!(p["env"].as_array().is_some(), "process.env: {p}");
    let mounts = config["mounts"].as_array().expect("mounts");
    for m in mounts {
        assert!(
            m["destination"]
                .as_str()
                .is_some_and(|d| d.starts_with('/')),
            "mount {m}"
        );
    }
    assert!(
        mounts
            .iter()
            .any(|m| m["destination"] == "/proc" && m["type"] == "proc"),
        "no /proc mount"
    );
    let linux = &config["linux"];
    let ns: Vec<&str> = linux["namespaces"]
        .as_array()
        .expect("linux.namespaces")
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    for t in ["pid", "mount", "uts", "ipc", "network"] {
        assert!(ns.contains(&t), "namespace {t} missing: {ns:?}");
    }
    for n in linux["namespaces"].as_array().unwrap() {
        assert!(
            ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"]
                .contains(&n["type"].as_str().unwrap()),
            "unknown namespace type {n}"
        );
    }
    if let Some(caps) = p["capabilities"].as_object() {
        for (set, list) in caps {
            for c in list.as_array().unwrap() {
                assert!(
                    c.as_str().is_some_and(|c| c.starts_with("CAP_")),
                    "{set}: {c}"
                );
            }
        }
    }
    if !linux["seccomp"].is_null() {
        assert!(linux["seccomp"]["defaultAction"]
            .as_str()
            .is_some_and(|a| a.starts_with("SCMP_ACT_")));
    }
}

#[test]
fn runc_runs_a_bundle_berth_wrote() {
    require_root!();
    let Some(runc) = runc() else {
        eprintln!("skipped: runc is not installed");
        return;
    };
    let b = Berth::new();
    let id = b.detach_busybox(&[], &["sleep", "30"]);
    let config_path = b.state_dir(&id).join("bundle/config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap())
            .expect("config.json is JSON");
    check_bundle_fields(&config, &common::busybox_rootfs());
    assert_eq!(config["hostname"], "berth");

    // The copy: our command, and no cgroupsPath (runc 1.x on v1 resolves a
    // relative one against PID 1's cgroup, outside ours; without it runc
    // nests the container under the caller's own cgroup).
    config["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "echo from-runc; hostname"]);
    config["process"]["terminal"] = serde_json::json!(false);
    if let Some(l) = config["linux"].as_object_mut() {
        l.remove("cgroupsPath");
    }
    let tmp = tempfile::Builder::new()
        .prefix("berth-compat-")
        .tempdir()
        .unwrap();
    let bundle = tmp.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    let runc_root = tmp.path().join("runc-root");
    let rid = format!("berth-compat-{}", std::process::id());
    let _guard = RuncGuard {
        runc: runc.clone(),
        root: runc_root.clone(),
        id: rid.clone(),
    };

    let mut cmd = Command::new(&runc);
    cmd.arg("--root")
        .arg(&runc_root)
        .arg("run")
        .arg("--bundle")
        .arg(&bundle)
        .arg(&rid);
    let out = common::output_within(cmd, 20);
    assert_eq!(
        out.status.code(),
        Some(0),
        "runc rejected berth's bundle\nstdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(lines.contains(&"from-runc"), "{text:?}");
    assert!(lines.contains(&"berth"), "hostname not berth: {text:?}");

    // Berth's own container was not disturbed.
    assert_eq!(b.inspect(&id)["status"], "running");
}
