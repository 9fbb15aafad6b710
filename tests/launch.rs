//! `berth launch` and the lifecycle verbs as a user drives them: exit
//! codes, output, detach, names, removal, and bad input.

mod common;

use common::{stderr, stdout, Berth};

#[test]
fn foreground_streams_output_and_returns_exit_code() {
    require_root!();
    let b = Berth::new();
    let out = b.launch_busybox(
        &[],
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
    );
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "to-stdout\n");
    assert!(stderr(&out).contains("to-stderr"));
}

#[test]
fn missing_executable_is_127_with_message_and_leaves_nothing() {
    require_root!();
    let b = Berth::new();
    let out = b.launch_busybox(&["--name", "ghost"], &["no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("executable not found in container: no-such-command"),
        "{}",
        stderr(&out)
    );
    assert!(b.ids().is_empty(), "state left behind: {:?}", b.ids());
    // The name is free again.
    let out = b.launch_busybox(&["--name", "ghost"], &["true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn killed_by_signal_is_128_plus_n() {
    require_root!();
    let b = Berth::new();
    let id = b.detach_busybox(&[], &["sleep", "30"]);
    b.ok(&["kill", "-s", "TERM", &id]);
    // sleep as pid 1 ignores SIGTERM (no handler): still running.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(b.inspect(&id)["status"], "running");
    b.ok(&["kill", "-s", "KILL", &id]);
    assert_eq!(b.ok(&["wait", &id]).trim(), "137");
    let i = b.inspect(&id);
    assert_eq!(i["status"], "stopped");
    assert_eq!(i["exit"]["signal"], 9);
    assert_eq!(i["exit"]["oom_killed"], false);
}

#[test]
fn detach_prints_id_and_container_keeps_running() {
    require_root!();
    let b = Berth::new();
    let id = b.detach_busybox(&["--name", "bg"], &["sh", "-c", "echo ready; sleep 30"]);
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|c| c.is_ascii_hexdigit()));
    let ps = b.ok(&["ps"]);
    assert!(
        ps.contains(&id[..12]) && ps.contains("bg") && ps.contains("running"),
        "{ps}"
    );
    assert!(common::wait_until(5, || b
        .ok(&["logs", "bg"])
        .contains("ready")));
    // Lookup by name, id and unique prefix.
    for key in ["bg", &id[..], &id[..6]] {
        assert_eq!(b.inspect(key)["id"], id.as_str());
    }
}

#[test]
fn rm_refuses_running_container_without_force() {
    require_root!();
    let b = Berth::new();
    let id = b.detach_busybox(&[], &["sleep", "30"]);
    let out = b.run(&["rm", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("running"), "{}", stderr(&out));
    assert_eq!(b.inspect(&id)["status"], "running");
    b.ok(&["rm", "-f", &id]);
    assert!(b.ids().is_empty());
    let out = b.run(&["inspect", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such container"));
}

#[test]
fn auto_remove_leaves_nothing_behind() {
    require_root!();
    let b = Berth::new();
    let out = b.launch_busybox(&["--rm", "--mem", "64"], &["true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(b.ids().is_empty(), "{:?}", b.ids());
    if let Some(mem) = common::own_v1_cgroup_dir("memory") {
        let parent = mem.join("berth");
        let left: Vec<_> = std::fs::read_dir(&parent)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name())
                    .collect()
            })
            .unwrap_or_default();
        // Other tests may be running containers at the same time, so only
        // check that no cgroup of a container of *this* root is left.
        for name in left {
            assert!(!b.state_dir(&name.to_string_lossy()).exists());
        }
    }
}

#[test]
fn name_in_use_is_refused() {
    require_root!();
    let b = Berth::new();
    let _id = b.detach_busybox(&["--name", "dup"], &["sleep", "30"]);
    let out = b.launch_busybox(&["--name", "dup"], &["true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));
    assert_eq!(b.ids().len(), 1);
}

#[test]
fn bad_input_is_a_usage_error_naming_the_field() {
    require_root!();
    let b = Berth::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--mem", "0"], "--mem"),
        (&["--cpus", "0"], "--cpus"),
        (&["--pids", "0"], "--pids"),
        (&["--cap-add", "CAP_FLY"], "--cap-add"),
        (&["--cap-drop", "NOPE"], "--cap-drop"),
        (&["--volume", "relative:/x"], "--volume"),
        (&["--volume", "/tmp"], "--volume"),
        (&["--user", "bob"], "--user"),
        (&["--env", "NOEQUALS"], "--env"),
        (&["--seccomp", "/no/such/profile.json"], "--seccomp"),
        (&["--hostname", "bad name"], "--hostname"),
        (&["--name", "../evil"], "--name"),
        (&["--workdir", "relative"], "--workdir"),
    ];
    for (flags, field) in cases {
        let out = b.launch_busybox(flags, &["true"]);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(field), "{flags:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).trim().lines().count(),
            1,
            "{flags:?}: one line: {}",
            stderr(&out)
        );
    }
    let out = b.run(&["launch", "--rootfs", "/no/such/rootfs", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--rootfs"));
    // --mem with garbage is rejected by the parser (also exit 2).
    let out = b.launch_busybox(&["--mem", "lots"], &["true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(b.ids().is_empty(), "bad input left state: {:?}", b.ids());
}

#[test]
fn unknown_container_is_an_error() {
    let b = Berth::new();
    for verb in [
        &["inspect", "nope"][..],
        &["logs", "nope"],
        &["kill", "nope"],
        &["wait", "nope"],
        &["rm", "nope"],
    ] {
        let out = b.run(verb);
        assert_eq!(out.status.code(), Some(1), "{verb:?}");
        assert!(
            stderr(&out).contains("no such container: nope"),
            "{verb:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn logs_keep_both_streams() {
    require_root!();
    let b = Berth::new();
    let id = b.detach_busybox(&[], &["sh", "-c", "echo out1; echo err1 >&2; echo out2"]);
    b.ok(&["wait", &id]);
    let out = b.run(&["logs", &id]);
    assert_eq!(stdout(&out), "out1\nout2\n");
    assert_eq!(stderr(&out), "err1\n");
    // -f on a stopped container prints and returns.
    let out = b.run(&["logs", "-f", &id]);
    assert_eq!(stdout(&out), "out1\nout2\n");
}

#[test]
fn exec_runs_inside_the_container() {
    require_root!();
    let b = Berth::new();
    let id = b.detach_busybox(
        &["--hostname", "inner", "--env", "FOO=bar"],
        &["sleep", "30"],
    );
    let out = b.run(&[
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "hostname; echo $FOO; cat /proc/1/cmdline | tr '\\0' ' '; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "inner");
    assert_eq!(lines[1], "bar");
    assert!(lines[2].starts_with("sleep 30"), "{text}");
    // Same pid namespace as the container's init.
    let i = b.inspect(&id);
    let pidns = i["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "pid")
        .unwrap()["inode"]
        .clone();
    let out = b.run(&["exec", &id, "--", "readlink", "/proc/self/ns/pid"]);
    assert_eq!(stdout(&out).trim(), format!("pid:[{}]", pidns));
    let out = b.run(&["exec", &id, "--", "no-such-thing"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).contains("executable not found in container"));
}

#[test]
fn ps_json_and_all() {
    require_root!();
    let b = Berth::new();
    let running = b.detach_busybox(&["--name", "r"], &["sleep", "30"]);
    let done = b.detach_busybox(&["--name", "d"], &["true"]);
    b.ok(&["wait", &done]);
    let rows: serde_json::Value = serde_json::from_str(&b.ok(&["ps", "--json"])).unwrap();
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![running.as_str()]);
    let rows: serde_json::Value = serde_json::from_str(&b.ok(&["ps", "-a", "--json"])).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    let table = b.ok(&["ps", "-a"]);
    let header = table.lines().next().unwrap();
    for col in [
        "ID", "NAME", "PID", "STATUS", "CREATED", "COMMAND", "CPU", "MEM",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(table.contains("exited (0)"), "{table}");
}

#[test]
fn foreground_forwards_sigterm_and_returns_the_handlers_exit_code() {
    require_root!();
    let b = Berth::new();
    let rootfs = common::busybox_rootfs();
    let child = b
        .cmd()
        .args([
            "launch",
            "--name",
            "fg",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "--",
        ])
        .args([
            "sh",
            "-c",
            "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(common::wait_until(10, || b
        .run(&["logs", "fg"])
        .stdout
        .starts_with(b"ready")));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ready\ngot-term\n");
}
