//! The per-container supervisor: the container outlives the CLI that
//! launched it, the supervisor records how init ended, it runs detached
//! in its own session, and a dead supervisor leaves a container that can
//! still be waited for and removed.

mod common;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, stdout, wait_until, Berth};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Fields of /proc/PID/stat after the command name: (state, ppid, pgrp, session).
fn stat_fields(pid: i64) -> Option<(char, i64, i64, i64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f[0].chars().next()?,
        f[1].parse().ok()?,
        f[2].parse().ok()?,
        f[3].parse().ok()?,
    ))
}

/// Alive and not a zombie.
fn alive(pid: i64) -> bool {
    stat_fields(pid).is_some_and(|(state, ..)| state != 'Z' && state != 'X')
}

fn cgroup_dirs(inspection: &serde_json::Value) -> Vec<PathBuf> {
    inspection["cgroup"]["dirs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| PathBuf::from(d.as_str().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits up to `secs` for `child` to exit; kills it (we started it) and
/// returns None otherwise.
fn wait_child(child: &mut Child, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_all(r: Option<impl std::io::Read>) -> String {
    let mut s = String::new();
    if let Some(mut r) = r {
        let _ = r.read_to_string(&mut s);
    }
    s
}

fn running_ids(b: &Berth) -> Vec<String> {
    let rows: serde_json::Value = serde_json::from_str(&b.ok(&["ps", "--json"])).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "running")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn killing_the_cli_never_kills_the_container() {
    require_root!();
    let b = Berth::new();
    let rootfs = common::busybox_rootfs();
    let mut cli = b
        .cmd()
        .arg("launch")
        .arg("--rootfs")
        .arg(&rootfs)
        .args(["--", "sh", "-c", "sleep 30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(10, || running_ids(&b).len() == 1),
        "the foreground container never showed as running"
    );
    let id = running_ids(&b).remove(0);
    let before = b.inspect(&id);
    let init = before["pid"].as_i64().unwrap();
    let sup = before["supervisor"]["pid"].as_i64().unwrap();

    kill(Pid::from_raw(cli.id() as i32), Signal::SIGKILL).unwrap();
    let status = cli.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    std::thread::sleep(Duration::from_millis(300));
    let i = b.inspect(&id);
    assert_eq!(i["status"], "running", "{}", i["status"]);
    assert_eq!(i["pid"].as_i64(), Some(init));
    assert!(alive(init), "init {init} died with the CLI");
    assert!(alive(sup), "supervisor {sup} died with the CLI");
    assert_eq!(i["supervisor"]["alive"], true);
    assert!(i["exit"].is_null(), "{}", i["exit"]);
    // It still does work: exec reaches it.
    let out = b.run(&["exec", &id, "--", "echo", "still-here"]);
    assert_eq!(stdout(&out).trim(), "still-here", "{}", stderr(&out));

    b.ok(&["rm", "-f", &id]);
    assert!(wait_until(5, || !alive(init)), "init {init} survived rm -f");
    assert!(b.ids().is_empty());
}

#[test]
fn supervisor_records_the_exit() {
    require_root!();
    let b = Berth::new();
    let id = b.detach_busybox(&[], &["sh", "-c", "exit 7"]);
    assert_eq!(b.ok(&["wait", &id]).trim(), "7");
    let exit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.state_dir(&id).join("exit.json")).unwrap())
            .unwrap();
    assert_eq!(exit["exit_code"], 7, "{exit}");
    assert!(exit["signal"].is_null(), "{exit}");
    assert_eq!(exit["oom_killed"], false, "{exit}");
    assert!(
        exit["finished_at"].as_u64().is_some_and(|n| n > 0),
        "{exit}"
    );
    assert!(wait_until(5, || b.inspect(&id)["supervisor"]["alive"] == false));
    let i = b.inspect(&id);
    assert_eq!(i["status"], "stopped");
    assert_eq!(i["exit"]["exit_code"], 7);
    assert!(i["pid"].is_null());
    let sup = i["supervisor"]["pid"].as_i64().unwrap();
    assert!(
        !alive(sup),
        "supervisor {sup} still alive after the container exited"
    );
    // wait on a stopped container returns at once with the same code.
    assert_eq!(b.ok(&["wait", &id]).trim(), "7");
}

#[test]
fn supervisor_is_detached_in_its_own_session() {
    require_root!();
    let b = Berth::new();
    let id = b.detach_busybox(&[], &["sleep", "30"]);
    let i = b.inspect(&id);
    let sup = i["supervisor"]["pid"].as_i64().unwrap();
    let (state, ppid, pgrp, sid) = stat_fields(sup).expect("supervisor alive");
    assert!(state != 'Z', "supervisor is a zombie");
    let me = std::process::id() as i64;
    let my_sid = nix::unistd::getsid(None).unwrap().as_raw() as i64;
    assert_eq!(
        sid, sup,
        "supervisor {sup} is not a session leader (sid {sid})"
    );
    assert_eq!(
        pgrp, sup,
        "supervisor {sup} is not a process group leader (pgrp {pgrp})"
    );
    assert_ne!(sid, my_sid, "supervisor shares the test's session");
    assert_ne!(ppid, me, "supervisor is the test's child");
    // The container's init is the supervisor's child, not the CLI's.
    let init = i["pid"].as_i64().unwrap();
    let (_, init_ppid, _, _) = stat_fields(init).unwrap();
    assert_eq!(
        init_ppid, sup,
        "init's parent is {init_ppid}, not the supervisor {sup}"
    );
    // No terminal: tty_nr (field 7) is 0.
    let stat = std::fs::read_to_string(format!("/proc/{sup}/stat")).unwrap();
    let tty: i64 = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(4)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(tty, 0, "supervisor has a controlling terminal");
    let rss = &i["supervisor"]["rss_kib"];
    eprintln!("supervisor pid {sup} (parent {ppid}) RSS: {rss} KiB");
    assert!(rss.as_u64().is_some_and(|n| n > 0), "{rss}");
}

/// Launches `sleep 30` detached and SIGKILLs its supervisor. Returns
/// (id, init pid, supervisor pid, cgroup dirs).
fn orphaned_container(b: &Berth) -> (String, i64, i64, Vec<PathBuf>) {
    let id = b.detach_busybox(&[], &["sleep", "30"]);
    let i = b.inspect(&id);
    let init = i["pid"].as_i64().unwrap();
    let sup = i["supervisor"]["pid"].as_i64().unwrap();
    let dirs = cgroup_dirs(&i);
    kill(Pid::from_raw(sup as i32), Signal::SIGKILL).unwrap();
    assert!(
        wait_until(5, || !alive(sup)),
        "supervisor {sup} survived SIGKILL"
    );
    assert!(wait_until(5, || b.inspect(&id)["supervisor"]["alive"] == false));
    (id, init, sup, dirs)
}

#[test]
fn container_survives_a_killed_supervisor_and_rm_f_cleans_up() {
    require_root!();
    let b = Berth::new();
    let (id, init, _sup, dirs) = orphaned_container(&b);
    std::thread::sleep(Duration::from_millis(200));
    let i = b.inspect(&id);
    assert_eq!(i["status"], "running", "{}", i["status"]);
    assert!(alive(init), "init {init} died with its supervisor");
    for d in &dirs {
        assert!(d.is_dir(), "{} gone while the container runs", d.display());
    }
    // The init is still in its cgroup.
    let pcg = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    assert!(pcg.contains(&format!("berth/{id}")), "{pcg}");

    let t = Instant::now();
    b.ok(&["rm", "-f", &id]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "rm -f took {:?}",
        t.elapsed()
    );
    assert!(wait_until(5, || !alive(init)), "init {init} survived rm -f");
    for d in &dirs {
        assert!(!d.exists(), "{} left after rm -f", d.display());
    }
    assert!(!b.state_dir(&id).exists());
    assert!(b.ids().is_empty());
}

#[test]
fn wait_on_a_container_without_supervisor_returns() {
    require_root!();
    let b = Berth::new();
    let (id, init, _sup, _dirs) = orphaned_container(&b);
    let mut waiter = b
        .cmd()
        .args(["wait", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The container still runs, so wait must still be waiting.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "wait returned while the container runs"
    );
    b.ok(&["kill", "-s", "KILL", &id]);
    let status = wait_child(&mut waiter, 10);
    let out = read_all(waiter.stdout.take());
    let err = read_all(waiter.stderr.take());
    let status = status
        .unwrap_or_else(|| panic!("berth wait hung after init {init} died (killed after 10 s)"));
    assert!(status.success(), "wait: {status:?} {err}");
    assert!(out.trim().parse::<i32>().is_ok(), "wait printed {out:?}");
    assert!(
        err.contains("exit status unknown"),
        "no note about the unknown status: {err:?}"
    );
    assert!(!alive(init));
    assert_eq!(b.inspect(&id)["status"], "stopped");
    b.ok(&["rm", "-f", &id]);
    assert!(b.ids().is_empty());
}

#[test]
fn launch_detached_is_started_not_just_created() {
    require_root!();
    let b = Berth::new();
    // There is no separate create/start verb: launch does both. After it
    // returns, init must be past the exec fifo and running the command.
    let id = b.detach_busybox(&[], &["sh", "-c", "echo started > /dev/shm/x; sleep 30"]);
    assert!(
        !b.state_dir(&id).join("exec.fifo").exists(),
        "exec.fifo still there after launch -d"
    );
    let i = b.inspect(&id);
    assert_eq!(i["status"], "running");
    let init = i["pid"].as_i64().unwrap();
    let cmdline = std::fs::read(format!("/proc/{init}/cmdline")).unwrap();
    // Init has exec'd the command (busybox sh may already have exec'd the
    // final `sleep`); before start it would still be the berth binary.
    assert!(
        cmdline.starts_with(b"sh\0-c\0") || cmdline == b"sleep\x0030\0",
        "init is not running the command: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    assert!(
        wait_until(5, || stdout(&b.run(&[
            "exec",
            &id,
            "--",
            "cat",
            "/dev/shm/x"
        ]))
        .trim()
            == "started"),
        "the command never ran"
    );
    let help = b.run(&["--help"]);
    let verbs = stdout(&help);
    if !verbs
        .lines()
        .any(|l| l.trim_start().starts_with("create ") || l.trim_start().starts_with("start "))
    {
        eprintln!("note: no create/start verbs; only the launch path was checked");
    }
}
