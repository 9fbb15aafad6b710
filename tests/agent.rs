//! The agent in a real cluster: `berth master` and `berth agent` as
//! processes (tests/common/cluster.rs), tasks driven by a framework over the
//! Mesos v1 scheduler API (berth::mesos::SchedulerClient), real containers.
//!
//! Covered: registration, PING/PONG liveness (a stopped agent is marked
//! unreachable by the master and comes back with its id; an agent that
//! hears no PING registers again), re-registration with the same id after
//! a restart (SIGTERM, and SIGKILL with tasks running and an update
//! unacknowledged: containers keep running with the same pid, the update is
//! resent with its uuid, exits that happened meanwhile are reported); status
//! updates in order with one in flight, resent with the same uuid until
//! acknowledged; sandbox stdout/stderr and the Mesos environment;
//! checkpoint files; container removal after the terminal acknowledgement;
//! exit code and launch failure -> TASK_FAILED; kill with a grace period
//! (SIGTERM handled, or SIGKILL when it is over); the memory limit in the
//! container's cgroup and OOM; tasks the agent refuses (custom executor ->
//! TASK_ERROR, container image -> TASK_FAILED).
//!
//! Dropped with the scripted master these tests replaced: a KILL_TASK for a
//! task the master does not know (a real master answers such a KILL itself
//! by reconciliation and never forwards it), and the exact REGISTER
//! payload (protocol version, boot id), which only a fake master could
//! inspect; a real master admitting the agent and its re-registration
//! with tasks stands for them.
//!
//! Tests that run containers need root and print "skipped: ..." without.
//! Every container lives under the cluster's private state root
//! (`--launcher-root`) and is removed when the cluster is dropped.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::{container_id, Cluster, Daemon, Framework, WAIT};
use common::*;
use masterlink::scheduler::{
    Call, CallType, DurationInfo, Kill, KillPolicy, Offer, Reason, TaskID, TaskInfo, TaskState,
    TaskStatus,
};
use nix::sys::signal::Signal;
use serde_json::{json, Value as Json};

const RESOURCES: &str = "cpus:2;mem:1024;disk:1024";

/// A task on the offer's agent: `cpus`, `mem`, and the fields of `extra`
/// (a command, an executor, a kill policy...).
fn task(id: &str, offer: &Offer, cpus: f64, mem: f64, extra: Json) -> TaskInfo {
    let mut v = json!({
        "name": id, "task_id": {"value": id}, "agent_id": offer.agent_id,
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}],
    });
    for (k, x) in extra.as_object().expect("an object") {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn shell(cmd: &str) -> Json {
    json!({"command": {"value": cmd}})
}

/// A framework that checkpoints (as Mesos requires for agent recovery).
async fn framework(c: &Cluster, capabilities: &[&str]) -> Framework {
    let mut caps: Vec<Json> = capabilities.iter().map(|c| json!({"type": c})).collect();
    caps.push(json!({"type": "MULTI_ROLE"}));
    Framework::new(
        c.subscribe_json(json!({
            "user": "root", "name": "agent-test", "roles": ["dev"],
            "checkpoint": true, "capabilities": caps,
        }))
        .await,
    )
}

/// The agent id at the end of the agent's n-th "registered with master"
/// line (re-registrations included).
fn registered_as(c: &mut Cluster, n: usize) -> String {
    let line = c.agent.nth_line("registered with master", n);
    line.rsplit(' ').next().unwrap().to_string()
}

/// The ids of the agents the master lists (reachable ones), with whether
/// each is active.
fn master_agents(c: &Cluster) -> Vec<(String, bool)> {
    let v = c.operator("GET_AGENTS");
    v["get_agents"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agent_info"]["id"]["value"].as_str().unwrap().to_string(),
                a["active"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The task's sandbox on the host.
fn sandbox(c: &Cluster, fid: &str, s: &TaskStatus) -> PathBuf {
    let aid = &s.agent_id.as_ref().expect("an agent id").value;
    c.agent_work().canonicalize().unwrap().join(format!(
        "slaves/{aid}/frameworks/{fid}/executors/{}/runs/{}",
        s.task_id.value,
        container_id(s)
    ))
}

/// Distinct updates (by uuid) in the order first seen.
fn distinct(updates: &[TaskStatus]) -> Vec<TaskStatus> {
    let mut seen = BTreeSet::new();
    updates
        .iter()
        .filter(|s| seen.insert(s.uuid.clone()))
        .cloned()
        .collect()
}

fn states(updates: &[TaskStatus]) -> Vec<TaskState> {
    updates.iter().map(|s| s.state).collect()
}

/// Acknowledges each new update of `task` (a resend of one already
/// acknowledged is skipped) until one is in `last`; returns the distinct
/// updates.
async fn ack_until(fw: &mut Framework, task: &str, last: TaskState) -> Vec<TaskStatus> {
    let mut acked: Vec<TaskStatus> = Vec::new();
    loop {
        let s = fw.next_of(task).await;
        if acked.iter().any(|a| a.uuid == s.uuid) {
            continue;
        }
        fw.ack(&s).await;
        acked.push(s.clone());
        if s.state == last {
            return acked;
        }
        assert!(!s.state.is_terminal(), "{task} ended in {s:?}");
    }
}

/// KILL with a grace period (`None`: the task's own, else the default).
async fn kill(fw: &Framework, task: &str, grace: Option<Duration>) {
    fw.sub
        .client
        .call(Call {
            kill: Some(Kill {
                task_id: TaskID::new(task),
                agent_id: None,
                kill_policy: grace.map(|g| KillPolicy {
                    grace_period: Some(DurationInfo {
                        nanoseconds: g.as_nanos() as i64,
                    }),
                }),
            }),
            ..Call::new(CallType::Kill)
        })
        .await
        .unwrap();
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    assert!(wait_until(WAIT.as_secs(), &mut f), "timed out: {what}");
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The container's init pid and status, as `berth inspect` reports them.
fn inspect_pid(c: &Cluster, cid: &str) -> (i64, String) {
    let v = c.berth.inspect(cid);
    (
        v["pid"].as_i64().unwrap_or(0),
        v["status"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_answers_pings_and_reregisters_with_its_id() {
    // Pings every 250 ms; 4 missed make the agent unreachable.
    let mut c = Cluster::start(
        RESOURCES,
        &["--agent-ping-timeout=250ms", "--max-agent-ping-timeouts=4"],
        &[],
    );
    let aid = registered_as(&mut c, 1);
    assert_eq!(master_agents(&c), [(aid.clone(), true)]);
    let latest = std::fs::read_link(c.agent_work().join("meta/slaves/latest")).unwrap();
    assert_eq!(latest, Path::new(&aid));
    let state = c.agent_get("/state").await;
    assert_eq!(state["id"], aid.as_str());
    assert_eq!(state["resources"]["mem"], 1024.0);
    let metrics = c.agent_get("/metrics/snapshot").await;
    assert_eq!(metrics["slave/cpus_total"], 2.0);
    assert_eq!(metrics["slave/registered"], 1, "{metrics}");

    // The agent answers every PING: after many intervals the master still
    // has it, and it never had to register again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.master.count("unreachable"), 0);
    assert_eq!(c.agent.count("registered with master"), 1);
    assert_eq!(master_agents(&c), [(aid.clone(), true)]);
    assert!(c.agent_get("/metrics/snapshot").await["slave/uptime_secs"]
        .as_f64()
        .is_some_and(|u| u > 0.0));

    // A silent (stopped) agent is marked unreachable; once it runs again it
    // finds its stream closed and registers again with its id.
    c.agent.signal(Signal::SIGSTOP);
    c.master.line(&format!("agent {aid} is unreachable"));
    assert!(master_agents(&c).is_empty());
    c.agent.signal(Signal::SIGCONT);
    assert_eq!(registered_as(&mut c, 2), aid);
    assert!(c
        .agent
        .nth_line("registered with master", 2)
        .contains("re-registered"));
    wait_for("the agent active again", || {
        master_agents(&c) == [(aid.clone(), true)]
    });

    // A master that sends no PING (stopped): the agent gives up the stream
    // after three intervals and registers again once the master answers.
    let silences = c.agent.count("no PING for");
    c.master.signal(Signal::SIGSTOP);
    c.agent.nth_line("no PING for", silences + 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.master.signal(Signal::SIGCONT);
    assert_eq!(registered_as(&mut c, 3), aid);
    wait_for("the agent active again", || {
        master_agents(&c) == [(aid.clone(), true)]
    });

    // A restarted agent (SIGTERM, same work dir) keeps its id.
    c.agent.stop();
    c.restart_agent();
    assert_eq!(registered_as(&mut c, 1), aid);
    assert!(c
        .agent
        .line("registered with master")
        .contains("re-registered"));
    wait_for("one agent, active", || {
        master_agents(&c) == [(aid.clone(), true)]
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_tasks_are_refused_with_an_update() {
    let c = Cluster::start(RESOURCES, &[], &[]);
    let mut fw = framework(&c, &[]).await;
    fw.launch(|o| {
        vec![
            task(
                "exec",
                o,
                0.1,
                32.0,
                json!({"executor": {
                    "executor_id": {"value": "e"},
                    "command": {"value": "my-executor"},
                }}),
            ),
            task(
                "image",
                o,
                0.1,
                32.0,
                json!({
                    "command": {"value": "true"},
                    "container": {"type": "DOCKER", "docker": {"image": "busybox"}},
                }),
            ),
        ]
    })
    .await;
    let s = fw.next_of("exec").await;
    assert_eq!(s.state, TaskState::Error, "{s:?}");
    assert_eq!(
        s.message.as_deref(),
        Some("custom executors are not supported yet")
    );
    assert!(s.uuid.is_some() && s.agent_id.is_some(), "{s:?}");
    fw.ack(&s).await;
    let s = fw.next_of("image").await;
    assert_eq!(s.state, TaskState::Failed, "{s:?}");
    assert_eq!(s.reason, Some(Reason::ContainerLaunchFailed), "{s:?}");
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .contains("container images are not supported yet"),
        "{s:?}"
    );
    fw.ack(&s).await;
    // Acknowledged terminal updates: the master moves both to completed.
    wait_for("completed tasks", || {
        let t = c.operator("GET_TASKS");
        t["get_tasks"]["completed_tasks"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_with_updates_in_order_one_in_flight() {
    require_root!();
    let mut c = Cluster::start(RESOURCES, &[], &["--status-update-retry-interval=300ms"]);
    let mut fw = framework(&c, &[]).await;
    let fid = fw.id();
    fw.launch(|o| {
        vec![task(
            "echo",
            o,
            0.5,
            64.0,
            json!({"command": {
                "value": "echo \"hello from $MESOS_TASK_ID in $PWD\"; echo \"X=$X\"; \
                          echo oops >&2; echo $MESOS_SANDBOX > where",
                "environment": {"variables": [{"name": "X", "value": "y"}]},
            }}),
        )]
    })
    .await;
    let starting = fw.next_of("echo").await;
    assert_eq!(starting.state, TaskState::Starting, "{starting:?}");
    // Nothing else until STARTING is acknowledged, but STARTING is resent
    // (same uuid) after the retry interval.
    fw.idle(Duration::from_millis(1500)).await;
    let so_far = fw.updates("echo");
    assert!(so_far.len() >= 2, "no resend: {so_far:?}");
    assert!(so_far.iter().all(|s| s.uuid == starting.uuid), "{so_far:?}");
    let acked = ack_until(&mut fw, "echo", TaskState::Finished).await;
    assert_eq!(
        states(&acked),
        [TaskState::Starting, TaskState::Running, TaskState::Finished]
    );
    assert_eq!(states(&distinct(&fw.updates("echo"))), states(&acked));
    let running = &acked[1];
    assert!(running
        .container_status
        .as_ref()
        .unwrap()
        .executor_pid
        .is_some());
    let finished = &acked[2];
    assert_eq!(
        finished.message.as_deref(),
        Some("Command exited with status 0")
    );
    assert_eq!(finished.executor_id.as_ref().unwrap().value, "echo");
    let aid = finished.agent_id.clone().unwrap().value;

    // The sandbox: the command's output and the Mesos environment.
    let sandbox = sandbox(&c, &fid, finished);
    assert_eq!(
        read(&sandbox.join("stdout")),
        format!("hello from echo in {}\nX=y\n", sandbox.display())
    );
    assert_eq!(read(&sandbox.join("stderr")), "oops\n");
    assert_eq!(
        read(&sandbox.join("where")).trim(),
        sandbox.display().to_string()
    );

    // Checkpoints: task.info, and every update and acknowledgement.
    let cid = container_id(finished);
    let meta = c.agent_work().canonicalize().unwrap().join(format!(
        "meta/slaves/{aid}/frameworks/{fid}/executors/echo/runs/{cid}/tasks/echo"
    ));
    assert!(meta.join("task.info").is_file());
    wait_for("6 lines in task.updates", || {
        std::fs::read_to_string(meta.join("task.updates")).is_ok_and(|l| l.lines().count() == 6)
    });

    // Once the terminal update is acknowledged the container's state goes;
    // the sandbox stays.
    let state_dir = c.berth.state_dir(&cid);
    wait_for("container removal", || !state_dir.exists());
    assert!(sandbox.join("stdout").exists());
    let metrics = c.agent_get("/metrics/snapshot").await;
    assert_eq!(metrics["slave/tasks_finished"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_launch_failures_map_to_states() {
    require_root!();
    let c = Cluster::start(RESOURCES, &[], &[]);
    let mut fw = framework(&c, &[]).await;
    fw.launch(|o| {
        vec![
            task("three", o, 0.1, 32.0, shell("exit 3")),
            task(
                "missing",
                o,
                0.1,
                32.0,
                json!({"command": {
                    "shell": false, "value": "/no/such/binary",
                    "arguments": ["/no/such/binary"],
                }}),
            ),
        ]
    })
    .await;
    let three = ack_until(&mut fw, "three", TaskState::Failed).await;
    assert_eq!(
        three.last().unwrap().message.as_deref(),
        Some("Command exited with status 3")
    );
    let missing = ack_until(&mut fw, "missing", TaskState::Failed).await;
    let last = missing.last().unwrap();
    assert_eq!(last.reason, Some(Reason::ContainerLaunchFailed), "{last:?}");
    assert!(
        last.message.as_deref().unwrap().contains("/no/such/binary"),
        "{last:?}"
    );
    // (Death by signal is in the kill test: init, pid 1 of its namespace,
    // cannot be killed from inside it.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_sends_sigterm_then_sigkill_after_the_grace_period() {
    require_root!();
    let c = Cluster::start(RESOURCES, &[], &[]);
    let mut fw = framework(&c, &["TASK_KILLING_STATE"]).await;
    let fid = fw.id();
    fw.launch(|o| {
        vec![
            // Handles SIGTERM: ends at once.
            task(
                "polite",
                o,
                0.1,
                32.0,
                shell("trap 'echo got TERM; exit 0' TERM; echo up; while true; do sleep 0.1; done"),
            ),
            // Ignores SIGTERM (children inherit that): SIGKILL after its
            // own 1 s grace period.
            task(
                "stubborn",
                o,
                0.1,
                32.0,
                json!({
                    "command": {"value": "trap '' TERM; echo up; while true; do sleep 0.1; done"},
                    "kill_policy": {"grace_period": {"nanoseconds": 1_000_000_000}},
                }),
            ),
        ]
    })
    .await;
    let mut sandboxes = Vec::new();
    for t in ["polite", "stubborn"] {
        let r = ack_until(&mut fw, t, TaskState::Running).await;
        let sandbox = sandbox(&c, &fid, r.last().unwrap());
        let out = sandbox.join("stdout");
        wait_for("output", || {
            std::fs::read_to_string(&out).is_ok_and(|s| s.contains("up"))
        });
        sandboxes.push(sandbox);
    }
    let t0 = Instant::now();
    // The polite one gets 10 s (it needs none); the stubborn one its own.
    kill(&fw, "polite", Some(Duration::from_secs(10))).await;
    kill(&fw, "stubborn", None).await;
    let polite = ack_until(&mut fw, "polite", TaskState::Killed).await;
    let polite_time = t0.elapsed();
    assert_eq!(
        states(&polite),
        [TaskState::Killing, TaskState::Killed],
        "{polite:?}"
    );
    assert!(polite_time < Duration::from_secs(5), "{polite_time:?}");
    let out = read(&sandboxes[0].join("stdout"));
    assert!(out.contains("got TERM"), "{out}");
    let stubborn = ack_until(&mut fw, "stubborn", TaskState::Killed).await;
    let stubborn_time = t0.elapsed();
    assert!(stubborn_time >= Duration::from_secs(1), "{stubborn_time:?}");
    assert_eq!(
        stubborn.last().unwrap().message.as_deref(),
        Some("Command terminated with signal SIGKILL")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_is_set_and_oom_is_reported() {
    require_root!();
    let c = Cluster::start(RESOURCES, &[], &[]);
    let mut fw = framework(&c, &[]).await;
    fw.launch(|o| vec![task("limited", o, 0.5, 48.0, shell("sleep 30"))])
        .await;
    let r = ack_until(&mut fw, "limited", TaskState::Running).await;
    let cid = container_id(r.last().unwrap());
    let dirs = cgroup_dirs(&c.berth.inspect(&cid));
    assert!(!dirs.is_empty(), "the container has a cgroup");
    let limit = dirs
        .iter()
        .find_map(|d| {
            std::fs::read_to_string(d.join("memory.limit_in_bytes"))
                .or_else(|_| std::fs::read_to_string(d.join("memory.max")))
                .ok()
        })
        .expect("a memory limit file");
    assert_eq!(limit.trim(), (48u64 << 20).to_string());
    let quota = dirs.iter().find_map(|d| {
        std::fs::read_to_string(d.join("cpu.cfs_quota_us"))
            .or_else(|_| std::fs::read_to_string(d.join("cpu.max")))
            .ok()
    });
    if let Some(q) = quota {
        assert!(q.starts_with("50000"), "{q}");
    }
    kill(&fw, "limited", Some(Duration::ZERO)).await;
    ack_until(&mut fw, "limited", TaskState::Killed).await;

    // dd's 200 MiB buffer does not fit in 32 MiB: the OOM killer ends it.
    fw.launch(|o| {
        vec![task(
            "hog",
            o,
            0.5,
            32.0,
            shell("exec dd if=/dev/zero of=/dev/null bs=200M count=1"),
        )]
    })
    .await;
    let hog = ack_until(&mut fw, "hog", TaskState::Failed).await;
    assert_eq!(
        hog.last().unwrap().reason,
        Some(Reason::ContainerLimitationMemory),
        "{:?}",
        hog.last()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_restarts_readopts_its_containers_and_resends_updates() {
    require_root!();
    let mut c = Cluster::start(RESOURCES, &[], &["--status-update-retry-interval=300ms"]);
    let aid = registered_as(&mut c, 1);
    let mut fw = framework(&c, &[]).await;
    let fid = fw.id();
    fw.launch(|o| {
        vec![
            // Runs through the restart.
            task(
                "steady",
                o,
                0.1,
                32.0,
                shell("while true; do sleep 0.1; done"),
            ),
            // Ends while the agent is down.
            task("ender", o, 0.1, 32.0, shell("sleep 4; echo done")),
            // Its updates are not acknowledged before the restart.
            task("unacked", o, 0.1, 32.0, shell("echo quick")),
        ]
    })
    .await;
    let steady = ack_until(&mut fw, "steady", TaskState::Running).await;
    let steady_cid = container_id(&steady[1]);
    let ender = ack_until(&mut fw, "ender", TaskState::Running).await;
    let ender_cid = container_id(&ender[1]);
    let starting = fw.next_of("unacked").await;
    assert_eq!(starting.state, TaskState::Starting, "{starting:?}");
    let (steady_pid, status) = inspect_pid(&c, &steady_cid);
    assert_eq!(status, "running");
    assert_eq!(
        steady[1].container_status.as_ref().unwrap().executor_pid,
        Some(steady_pid as u32)
    );

    // SIGKILL: no chance to clean up. The containers run on.
    c.agent.kill9();
    let ender_exit = c.berth.state_dir(&ender_cid).join("exit.json");
    assert!(
        !ender_exit.exists(),
        "ender ended before the agent was killed"
    );
    wait_for("ender's exit while the agent is down", || {
        ender_exit.exists()
    });
    // Whatever the old agent sent is read; later updates are the new one's.
    fw.idle(Duration::from_millis(500)).await;
    let mark = fw.log.len();
    assert_eq!(inspect_pid(&c, &steady_cid), (steady_pid, "running".into()));

    c.restart_agent();
    assert_eq!(registered_as(&mut c, 1), aid);
    assert!(c
        .agent
        .line("registered with master")
        .contains("re-registered"));
    c.agent.line("recovered agent");

    // The unacknowledged STARTING comes again with its uuid, then the rest
    // of the task's updates in order.
    let unacked = ack_until(&mut fw, "unacked", TaskState::Finished).await;
    let after: Vec<&TaskStatus> = fw.log[mark..]
        .iter()
        .filter(|s| s.task_id.value == "unacked")
        .collect();
    assert_eq!(after[0].uuid, starting.uuid, "{after:?}");
    assert_eq!(
        states(&unacked),
        [TaskState::Starting, TaskState::Running, TaskState::Finished]
    );

    // The exit that happened while the agent was down is reported.
    let ender = ack_until(&mut fw, "ender", TaskState::Finished).await;
    let ended = ender.last().unwrap();
    assert_eq!(
        ended.message.as_deref(),
        Some("Command exited with status 0")
    );
    assert_eq!(read(&sandbox(&c, &fid, ended).join("stdout")), "done\n");

    // The master learnt the running task back from the re-registration.
    fw.sub
        .client
        .reconcile(vec![berth::mesos::scheduler::reconcile_task(
            TaskID::new("steady"),
            None,
        )])
        .await
        .unwrap();
    let r = fw.next_of("steady").await;
    assert_eq!(
        (r.state, r.reason.clone()),
        (TaskState::Running, Some(Reason::Reconciliation)),
        "{r:?}"
    );

    // The steady task's container was re-adopted, same pid: it can be
    // killed, and its exit is seen.
    assert_eq!(inspect_pid(&c, &steady_cid), (steady_pid, "running".into()));
    let state = c.agent_get("/state").await;
    assert_eq!(state["id"], aid.as_str());
    kill(&fw, "steady", Some(Duration::from_millis(500))).await;
    ack_until(&mut fw, "steady", TaskState::Killed).await;
    for cid in [&steady_cid, &ender_cid] {
        let dir = c.berth.state_dir(cid);
        wait_for("container removal", || !dir.exists());
    }
    assert_eq!(master_agents(&c), [(aid, true)]);
}

/// A reboot of the agent's host, simulated honestly: the agent is stopped,
/// its containers are killed (a reboot takes them), and the boot id changes
/// (`--boot-id-file`, a test-only flag naming the file read instead of the
/// kernel's /proc/sys/kernel/random/boot_id). The agent registers as a new
/// agent naming the old one; the master reports the old agent's tasks as
/// TASK_GONE to a PARTITION_AWARE framework and TASK_LOST to the other,
/// both with REASON_AGENT_RESTARTED, and forgets the old agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reboot_the_old_tasks_are_gone_and_the_agent_is_new() {
    require_root!();
    let boot = tempfile::tempdir().unwrap();
    let boot_file = boot.path().join("boot_id");
    std::fs::write(&boot_file, "boot-1\n").unwrap();
    let mut c = Cluster::start(
        RESOURCES,
        &[],
        &[&format!("--boot-id-file={}", boot_file.display())],
    );
    let old = registered_as(&mut c, 1);
    let mut aware = framework(&c, &["PARTITION_AWARE"]).await;
    aware
        .launch(|o| vec![task("a1", o, 0.5, 32.0, shell("sleep 1000"))])
        .await;
    let a1 = ack_until(&mut aware, "a1", TaskState::Running).await;
    // The rest is refused by this framework for a while, so that the
    // other one is offered it.
    aware.idle(Duration::from_millis(500)).await;
    let mut plain = framework(&c, &[]).await;
    plain
        .launch(|o| vec![task("p1", o, 0.5, 32.0, shell("sleep 1000"))])
        .await;
    let p1 = ack_until(&mut plain, "p1", TaskState::Running).await;
    let cids = [container_id(&a1[1]), container_id(&p1[1])];

    // The "reboot": agent down, containers dead, a new boot id.
    c.agent.stop();
    for cid in &cids {
        c.berth.ok(&["kill", "-s", "KILL", cid]);
        let exit = c.berth.state_dir(cid).join("exit.json");
        wait_for("the container's death", || exit.exists());
    }
    std::fs::write(&boot_file, "boot-2\n").unwrap();
    c.restart_agent();
    c.agent.line("the host rebooted since agent");
    let new = registered_as(&mut c, 1);
    assert_ne!(new, old);

    let s = aware.next_of("a1").await;
    assert_eq!(s.state, TaskState::Gone, "{s:?}");
    assert_eq!(s.reason, Some(Reason::AgentRestarted), "{s:?}");
    assert_eq!(
        s.agent_id.as_ref().map(|a| a.value.as_str()),
        Some(old.as_str())
    );
    let s = plain.next_of("p1").await;
    assert_eq!(s.state, TaskState::Lost, "{s:?}");
    assert_eq!(s.reason, Some(Reason::AgentRestarted), "{s:?}");

    // Only the new agent is left; the stale containers are gone from the
    // launcher; reconciliation of the old task knows nothing more of it.
    wait_for("only the new agent", || {
        master_agents(&c) == [(new.clone(), true)]
    });
    for cid in &cids {
        assert!(!c.berth.state_dir(cid).exists(), "{cid} left behind");
    }
    aware
        .sub
        .client
        .reconcile(vec![berth::mesos::scheduler::reconcile_task(
            TaskID::new("a1"),
            None,
        )])
        .await
        .unwrap();
    let s = aware.next_of("a1").await;
    assert_eq!(s.state, TaskState::Unknown, "{s:?}");

    // The new agent runs tasks (the other framework leaves first: it would
    // hold the offers it is not reading).
    plain.sub.client.teardown().await.unwrap();
    let offer = aware
        .launch(|o| vec![task("a2", o, 0.5, 32.0, shell("sleep 1000"))])
        .await;
    assert_eq!(offer.agent_id.value, new);
    ack_until(&mut aware, "a2", TaskState::Running).await;
}

/// The agent's flags before and after a change, and the exit a refused one
/// must give: code 2, a line naming the change and the policy flag.
fn refused(c: &mut Cluster, needles: &[&str]) -> String {
    let (status, lines) = c.agent.exited();
    assert_eq!(status.code(), Some(2), "{lines:#?}");
    let line = lines
        .iter()
        .find(|l| l.contains("does not allow it"))
        .unwrap_or_else(|| panic!("no refusal in {lines:#?}"))
        .clone();
    for n in needles {
        assert!(line.contains(n), "{n:?} not in {line}");
    }
    line
}

/// `--reconfiguration-policy`: a restart on the same boot with other
/// resources or attributes. `equal` (the default) refuses any change,
/// `additive` refuses fewer cpus; a refused agent exits 2 naming the change
/// and its task keeps running. `additive` with more cpus and a new
/// attribute re-registers with the same id: the master offers the new
/// total, lists the attribute, and slave.info records the change (so that
/// a later restart with `equal` and the same flags passes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_agent_is_taken_back_only_as_its_policy_allows() {
    require_root!();
    let mut c = Cluster::start(RESOURCES, &[], &["--attributes=rack:r1"]);
    let aid = registered_as(&mut c, 1);
    let mut fw = framework(&c, &[]).await;
    fw.launch(|o| vec![task("steady", o, 0.5, 32.0, shell("sleep 1000"))])
        .await;
    let steady = ack_until(&mut fw, "steady", TaskState::Running).await;
    let cid = container_id(&steady[1]);
    let (pid, _) = inspect_pid(&c, &cid);

    c.agent.stop();
    // equal: more cpus, or an added attribute, are refused.
    c.restart_agent_with(&["--resources=cpus:3;mem:1024;disk:1024"]);
    refused(
        &mut c,
        &[
            &format!("registered as agent {aid}"),
            "--reconfiguration-policy=equal does not allow it",
            "resources 'cpus': cpus:2 -> cpus:3",
            "--reconfiguration-policy=additive",
        ],
    );
    c.restart_agent_with(&[
        &format!("--resources={RESOURCES}"),
        "--attributes=rack:r1;zone:a",
    ]);
    refused(&mut c, &["attribute zone:a added"]);
    // additive: fewer cpus, or a changed attribute, are refused.
    c.restart_agent_with(&[
        "--resources=cpus:1;mem:1024;disk:1024",
        "--attributes=rack:r1",
        "--reconfiguration-policy=additive",
    ]);
    let line = refused(
        &mut c,
        &[
            "--reconfiguration-policy=additive does not allow it",
            "resources 'cpus': cpus:2 -> cpus:1",
        ],
    );
    assert!(!line.contains("=additive to accept"), "{line}");
    c.restart_agent_with(&[
        "--resources=cpus:2;mem:1024;disk:1024",
        "--attributes=rack:r2",
    ]);
    refused(&mut c, &["attribute 'rack': r1 -> r2"]);
    // The task never noticed.
    assert_eq!(inspect_pid(&c, &cid), (pid, "running".into()));

    // additive: more cpus and a new attribute are fine.
    c.restart_agent_with(&[
        "--resources=cpus:4;mem:1024;disk:1024",
        "--attributes=rack:r1;zone:a",
    ]);
    c.agent
        .line("the master accepted the changed resources/attributes");
    assert_eq!(registered_as(&mut c, 1), aid);
    assert!(c
        .agent
        .line("registered with master")
        .contains("re-registered"));
    let deadline = Instant::now() + WAIT;
    loop {
        let offer = fw.offer().await;
        if offer.resources.scalar("cpus").value() == 3.5 {
            assert_eq!(offer.agent_id.value, aid);
            break;
        }
        assert!(Instant::now() < deadline, "no offer of the new total");
    }
    let agents = c.operator("GET_AGENTS");
    let a = &agents["get_agents"]["agents"][0];
    let total_cpus: f64 = a["total_resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == "cpus")
        .map(|r| r["scalar"]["value"].as_f64().unwrap())
        .sum();
    assert_eq!(total_cpus, 4.0, "{a}");
    assert!(
        a["agent_info"]["attributes"].to_string().contains("zone"),
        "{a}"
    );
    assert_eq!(inspect_pid(&c, &cid), (pid, "running".into()));

    // The accepted change is the new reference: equal with the same flags.
    c.agent.stop();
    c.restart_agent_with(&["--reconfiguration-policy=equal"]);
    c.agent.line("re-registered with master");
    assert_eq!(registered_as(&mut c, 1), aid);
    kill(&fw, "steady", Some(Duration::from_millis(500))).await;
    ack_until(&mut fw, "steady", TaskState::Killed).await;
}

/// The issue's test: SIGKILL the agent while 20 tasks run and while half
/// of them have updates unacknowledged (STARTING delivered, not acked;
/// RUNNING queued behind it). After the restart every container is the
/// same process, every update arrives at least once and in order per task
/// (a repeat always carries the uuid of the same update), the framework
/// acknowledges everything, and the 20 tasks finish when their sandbox
/// gets a `done` file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_tasks_survive_an_agent_sigkill_with_updates_unacknowledged() {
    require_root!();
    const N: usize = 20;
    let mut c = Cluster::start(
        "cpus:2;mem:2048;disk:1024",
        &[],
        &["--status-update-retry-interval=300ms"],
    );
    let aid = registered_as(&mut c, 1);
    let mut fw = framework(&c, &[]).await;
    let fid = fw.id();
    let names: Vec<String> = (0..N).map(|i| format!("t{i:02}")).collect();
    // Waits for `done` in its sandbox (its cwd), at most ~120 s, so that a
    // failing test leaves nothing running for long.
    let cmd = "i=0; while [ ! -e done ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done; \
               [ -e done ] && echo finished";
    fw.launch(|o| {
        names
            .iter()
            .map(|n| task(n, o, 0.05, 32.0, shell(cmd)))
            .collect()
    })
    .await;
    // The first half is acknowledged up to RUNNING; the second half's
    // STARTING is left unacknowledged.
    let (acked, unacked) = names.split_at(N / 2);
    let mut starting = std::collections::BTreeMap::new();
    for n in acked {
        ack_until(&mut fw, n, TaskState::Running).await;
    }
    for n in unacked {
        let s = fw.next_of(n).await;
        assert_eq!(s.state, TaskState::Starting, "{s:?}");
        starting.insert(n.clone(), s);
    }
    let cids: Vec<String> = names
        .iter()
        .map(|n| container_id(&fw.updates(n)[0]))
        .collect();
    let mut pids = Vec::new();
    for cid in &cids {
        wait_for("the container running", || {
            inspect_pid(&c, cid).1 == "running"
        });
        pids.push(inspect_pid(&c, cid).0);
    }

    c.agent.kill9();
    fw.idle(Duration::from_millis(500)).await;
    for (cid, pid) in cids.iter().zip(&pids) {
        assert_eq!(inspect_pid(&c, cid), (*pid, "running".into()));
    }
    c.restart_agent();
    assert_eq!(registered_as(&mut c, 1), aid);
    assert!(c
        .agent
        .line("registered with master")
        .contains("re-registered"));
    c.agent.line(&format!("recovered agent {aid}: {N} task(s)"));

    // The unacknowledged STARTING comes again (same uuid), then RUNNING.
    for n in unacked {
        let again = fw.next_of(n).await;
        assert_eq!(again.uuid, starting[n].uuid, "{again:?}");
        fw.ack(&again).await;
        let running = ack_until(&mut fw, n, TaskState::Running).await;
        assert_eq!(running.last().unwrap().state, TaskState::Running);
    }
    // Same processes, as the RUNNING updates said.
    for ((n, cid), pid) in names.iter().zip(&cids).zip(&pids) {
        assert_eq!(inspect_pid(&c, cid), (*pid, "running".into()), "{n}");
        let running = fw
            .updates(n)
            .into_iter()
            .find(|s| s.state == TaskState::Running)
            .unwrap();
        assert_eq!(
            running.container_status.as_ref().unwrap().executor_pid,
            Some(*pid as u32),
            "{n}"
        );
    }

    // Told to finish: every task ends, every terminal update is acked.
    for n in &names {
        let dir = sandbox(&c, &fid, &fw.updates(n)[0]);
        std::fs::write(dir.join("done"), "").unwrap();
    }
    for n in &names {
        ack_until(&mut fw, n, TaskState::Finished).await;
    }
    for cid in &cids {
        let dir = c.berth.state_dir(cid);
        wait_for("container removal after the last ack", || !dir.exists());
    }
    // Nothing more is resent: everything was acknowledged.
    fw.idle(Duration::from_secs(1)).await;

    for n in &names {
        let all = fw.updates(n);
        let d = distinct(&all);
        assert_eq!(
            states(&d),
            [TaskState::Starting, TaskState::Running, TaskState::Finished],
            "{n}: {all:?}"
        );
        // A repeat is the same update: one uuid per state.
        for s in &all {
            let first = d.iter().find(|x| x.uuid == s.uuid).unwrap();
            assert_eq!(first.state, s.state, "{n}: {all:?}");
        }
        let last = d.last().unwrap();
        assert_eq!(read(&sandbox(&c, &fid, last).join("stdout")), "finished\n");
    }
    // The agent holds nothing more of them: all completed.
    let state = c.agent_get("/state").await;
    let executors: usize = state["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["executors"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(executors, 0, "{state}");
    assert_eq!(state["completed_tasks"].as_array().unwrap().len(), N);
}

/// A master with `--authenticate-agents` and a register_agents ACL: an
/// agent with its `--credential` registers; without one, with a wrong
/// secret, or as a principal the ACL refuses, the agent stops (exit 1)
/// naming the master's answer, as a Mesos agent whose authentication is
/// refused, instead of retrying forever. The master refuses the flag
/// without --credentials.
#[test]
fn agents_authenticate_to_a_master_that_requires_it() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let creds = file("credentials", "node n0de\nops s3cret\n");
    let acls = file(
        "acls",
        r#"{"register_agents": [
              {"principals": {"values": ["node"]}, "agents": {"type": "ANY"}},
              {"principals": {"type": "ANY"}, "agents": {"type": "NONE"}}]}"#,
    );
    let good = file("node.json", r#"{"principal": "node", "secret": "n0de"}"#);
    let wrong = file("wrong", "node guess\n");
    let ops = file("ops", "ops s3cret\n");

    let mut c = Cluster::start(
        RESOURCES,
        &[
            &format!("--credentials={creds}"),
            &format!("--acls={acls}"),
            "--authenticate-agents",
        ],
        &[&format!("--credential={good}")],
    );
    // Cluster::start waited for its registration.
    let agent_id = c.agent.line("registered with master");

    let refused = |c: &mut Cluster, credential: Option<&str>, expect: &[&str]| {
        c.agent.stop();
        match credential {
            Some(f) => c.restart_agent_with(&[&format!("--credential={f}")]),
            None => {
                let work = dir.path().join("anonymous");
                c.agent = Daemon::spawn(
                    "agent",
                    &[
                        "agent".into(),
                        format!("--master={}", c.addr),
                        "--port=0".into(),
                        format!("--work-dir={}", work.display()),
                        format!("--launcher-root={}", work.join("containers").display()),
                        "--resources=cpus:1;mem:64".into(),
                    ],
                );
            }
        }
        let (status, lines) = c.agent.exited();
        let text = lines.join("\n");
        assert_eq!(status.code(), Some(1), "{credential:?}: {text}");
        for e in expect {
            assert!(text.contains(e), "{credential:?}: no {e:?} in {text}");
        }
    };
    refused(
        &mut c,
        Some(&wrong),
        &["401", "authentication failed for principal 'node'"],
    );
    refused(
        &mut c,
        Some(&ops),
        &["403", "'ops' is not authorized to register agents"],
    );
    refused(&mut c, None, &["401", "requires authentication"]);

    // Back with its credential, the agent is the same agent again.
    c.agent.stop();
    c.restart_agent_with(&[&format!("--credential={good}")]);
    let again = c.agent.line("registered with master");
    let id = |l: &str| {
        l.split_whitespace()
            .find(|w| w.contains("-S"))
            .map(str::to_string)
    };
    assert!(id(&agent_id).is_some(), "{agent_id}");
    assert_eq!(id(&again), id(&agent_id), "{again}");

    let out = std::process::Command::new(berth_bin())
        .args(["master", "--port=0", "--authenticate-agents"])
        .arg(format!("--work-dir={}", dir.path().join("m2").display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--authenticate-agents"),
        "{}",
        stderr(&out)
    );
}
