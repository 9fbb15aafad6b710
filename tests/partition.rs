//! A network partition between the master and an agent on another "host":
//! the agent runs in a network namespace this test creates, joined to the
//! root namespace by a veth pair; the master listens on the root side's
//! address only. Cutting the link (the agent side's veth down) makes the
//! master mark the agent unreachable after its pings go unanswered; healing
//! it lets the agent re-register with its id.
//!
//! Checked, as Mesos does it: while cut, the PARTITION_AWARE framework gets
//! TASK_UNREACHABLE (with `unreachable_time`) and the other TASK_LOST, and
//! an explicit RECONCILE answers TASK_UNREACHABLE; once healed, the
//! partition-aware task is announced again with its current state
//! (TASK_RUNNING, REASON_AGENT_REREGISTERED) and still runs in the same
//! container, while the other framework is shut down on the agent (its
//! task killed: the framework already replaced it after TASK_LOST).
//!
//! The agent is started with `nsenter --net=/var/run/netns/NS`, not `ip
//! netns exec`: the latter also enters a new mount namespace with a fresh
//! /sys, which hides the cgroup hierarchies under /sys/fs/cgroup that the
//! agent's containers need. A separate host differs in its network only
//! for what this test checks.
//!
//! Needs root (namespaces, containers) and iproute2's `ip`, and prints
//! "skipped: ..." without them. The namespace and the veth pair are removed
//! by a guard even when the test fails; only loopback and the veth pair's
//! addresses are used.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth::mesos::scheduler::reconcile_task;
use common::cluster::{command_task, listening, Daemon, Framework, WAIT};
use common::Berth;
use masterlink::scheduler::{AgentID, Reason, TaskID, TaskState};
use serde_json::json;

/// Runs `ip ARGS`; panics with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with a veth pair to the root namespace: `root_ip`
/// on the root side, `ns_ip` inside. Dropping it removes both (deleting
/// one end of a veth pair deletes the other).
struct Link {
    ns: String,
    root_dev: String,
    ns_dev: String,
    root_ip: String,
    ns_ip: String,
}

impl Link {
    fn create() -> Link {
        let id = std::process::id();
        // A /30 of 10.251.0.0/16 chosen by pid, so that concurrent runs of
        // this test do not collide.
        let net = (id % 16384) * 4;
        let (b, c) = (net / 256, net % 256);
        let link = Link {
            ns: format!("berth-part-{id}"),
            root_dev: format!("bpr{id}"),
            ns_dev: format!("bpn{id}"),
            root_ip: format!("10.251.{b}.{}", c + 1),
            ns_ip: format!("10.251.{b}.{}", c + 2),
        };
        // The guard exists before anything is created, so a failure half
        // way still cleans up.
        ip(&["netns", "add", &link.ns]);
        ip(&[
            "link",
            "add",
            &link.root_dev,
            "type",
            "veth",
            "peer",
            "name",
            &link.ns_dev,
        ]);
        ip(&["link", "set", &link.ns_dev, "netns", &link.ns]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", link.root_ip),
            "dev",
            &link.root_dev,
        ]);
        ip(&["link", "set", &link.root_dev, "up"]);
        ip(&[
            "-n",
            &link.ns,
            "addr",
            "add",
            &format!("{}/30", link.ns_ip),
            "dev",
            &link.ns_dev,
        ]);
        ip(&["-n", &link.ns, "link", "set", "lo", "up"]);
        link.set_up(true);
        link
    }

    /// Brings the namespace's end up or down: the cable is plugged or cut
    /// (the root side keeps its address, so the master keeps listening).
    fn set_up(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.ns, "link", "set", &self.ns_dev, state]);
    }

    fn netns_path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.ns)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for args in [
            vec!["link", "del", self.root_dev.as_str()],
            vec!["netns", "del", self.ns.as_str()],
        ] {
            match Command::new("ip").args(&args).output() {
                Ok(o) if o.status.success() => {}
                Ok(o) => eprintln!(
                    "cleanup: ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(e) => eprintln!("cleanup: ip {}: {e}", args.join(" ")),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_marks_unreachable_and_heals() {
    require_root!();
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("skipped: needs iproute2's ip");
        return;
    }
    if Command::new("nsenter").arg("-V").output().is_err() {
        eprintln!("skipped: needs util-linux's nsenter");
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("berth-partition-")
        .tempdir()
        .unwrap();
    // Drop order (fields of the locals, last declared first): the agent,
    // its containers, the master, then the namespace.
    let link = Link::create();
    let mut master = Daemon::spawn(
        "master",
        &[
            "master".into(),
            format!("--ip={}", link.root_ip),
            "--port=0".into(),
            format!("--work-dir={}", work.path().join("master").display()),
            "--allocation-interval=100ms".into(),
            // Unreachable after ~2 s of silence.
            "--agent-ping-timeout=500ms".into(),
            "--max-agent-ping-timeouts=4".into(),
        ],
    );
    let addr = listening(&master.line("listening on"));
    assert!(addr.starts_with(&link.root_ip), "{addr}");
    let berth = Berth::new();
    let mut agent = Daemon::spawn_program(
        "agent",
        Path::new("nsenter"),
        &[
            format!("--net={}", link.netns_path().display()),
            "--".into(),
            common::berth_bin().display().to_string(),
            "agent".into(),
            format!("--ip={}", link.ns_ip),
            format!("--master={addr}"),
            "--port=0".into(),
            format!("--work-dir={}", work.path().join("agent").display()),
            format!("--launcher-root={}", berth.root.path().display()),
            "--resources=cpus:2;mem:1024;disk:1024".into(),
            "--hostname=node-ns".into(),
        ],
    );
    let registered = agent.line("registered with master");
    let aid = registered.rsplit(' ').next().unwrap().to_string();

    let subscribe = |name: &str, caps: &[&str]| {
        let mut caps: Vec<_> = caps.iter().map(|c| json!({"type": c})).collect();
        caps.push(json!({"type": "MULTI_ROLE"}));
        let info = json!({"user": "root", "name": name, "roles": ["dev"],
                          "checkpoint": true, "capabilities": caps});
        let addr = addr.clone();
        async move {
            let info = serde_json::from_value(info).unwrap();
            Framework::new(
                berth::mesos::scheduler::SchedulerClient::subscribe(&addr.parse().unwrap(), info)
                    .await
                    .expect("SUBSCRIBE"),
            )
        }
    };
    let mut aware = subscribe("aware", &["PARTITION_AWARE"]).await;
    aware
        .launch(|o| vec![command_task("t1", o, 0.5, 64.0, "sleep 1000")])
        .await;
    // What is left goes to the other framework: declined (refused for a
    // second) while it subscribes, then offered to it first (lower share).
    aware.idle(Duration::from_millis(500)).await;
    let mut plain = subscribe("plain", &[]).await;
    plain
        .launch(|o| vec![command_task("t2", o, 0.5, 64.0, "sleep 1000")])
        .await;
    let running = aware
        .ack_until("t1", |s| s == TaskState::Running)
        .await
        .pop()
        .unwrap();
    let t1_container = common::cluster::container_id(&running);
    plain.ack_until("t2", |s| s == TaskState::Running).await;
    let t2_container = common::cluster::container_id(&plain.updates("t2").pop().unwrap());

    // Cut: the master hears no PONG and marks the agent unreachable.
    link.set_up(false);
    master.line(&format!("agent {aid} is unreachable"));
    let s = aware.next_of("t1").await;
    assert_eq!(s.state, TaskState::Unreachable, "{s:?}");
    assert_eq!(s.reason, Some(Reason::AgentRemoved), "{s:?}");
    assert!(
        s.unreachable_time
            .as_ref()
            .is_some_and(|t| t.nanoseconds > 0),
        "{s:?}"
    );
    let s = plain.next_of("t2").await;
    assert_eq!(s.state, TaskState::Lost, "{s:?}");

    // The partition-aware framework asks explicitly: still unreachable.
    aware
        .sub
        .client
        .reconcile(vec![reconcile_task(
            TaskID::new("t1"),
            Some(AgentID::new(&aid)),
        )])
        .await
        .unwrap();
    let s = aware.next_of("t1").await;
    assert_eq!(s.state, TaskState::Unreachable, "{s:?}");
    assert_eq!(s.reason, Some(Reason::Reconciliation), "{s:?}");
    assert!(s.unreachable_time.is_some(), "{s:?}");
    // The tasks ran on through the partition.
    assert_eq!(berth.inspect(&t1_container)["status"], "running");
    assert_eq!(berth.inspect(&t2_container)["status"], "running");

    // Heal: the agent re-registers with its id.
    let before = agent.count("registered with master");
    link.set_up(true);
    let again = agent.nth_line("registered with master", before + 1);
    assert!(again.ends_with(&aid), "{again}");
    let s = aware.next_of("t1").await;
    assert_eq!(s.state, TaskState::Running, "{s:?}");
    assert_eq!(s.reason, Some(Reason::AgentReregistered), "{s:?}");
    assert_eq!(common::cluster::container_id(&s), t1_container);
    // The other framework's task is killed on the agent.
    agent.line(&format!("shutting down framework {}", plain.id()));
    let s = plain.next_of("t2").await;
    assert_eq!(s.state, TaskState::Killed, "{s:?}");
    plain.ack(&s).await;
    assert!(
        // Removed once its TASK_KILLED is acknowledged.
        common::wait_until(WAIT.as_secs(), || !berth.ids().contains(&t2_container)),
        "t2's container still runs"
    );
    // t1 is untouched and the master knows it running again.
    assert_eq!(berth.inspect(&t1_container)["status"], "running");
    aware.sub.client.reconcile(Vec::new()).await.unwrap();
    let s = aware.next_of("t1").await;
    assert_eq!(s.state, TaskState::Running, "{s:?}");
    aware.idle(Duration::from_millis(200)).await;

    agent.stop();
    drop(berth);
    master.stop();
    drop(link);
}
