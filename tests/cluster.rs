//! The cluster end to end: `berth master` and `berth agent` as real
//! processes on loopback ports, frameworks driving the Mesos v1 scheduler
//! API over real HTTP (berth's own client, and pymesos), tasks in real
//! containers.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth::mesos::scheduler::{EventStream, Subscription};
use common::cluster::{command_task, walk, Cluster, WAIT};
use common::*;
use masterlink::scheduler::{EventType, Offer, Operation, TaskState, TaskStatus};
use serde_json::{json, Value as Json};

/// The next OFFERS (other events but heartbeats are returned as errors).
async fn next_offers(events: &mut EventStream) -> Vec<Offer> {
    loop {
        let e = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("no event in time")
            .expect("event stream")
            .expect("stream open");
        match e.event_type {
            EventType::Offers => return e.offers.unwrap().offers,
            EventType::Heartbeat => continue,
            other => panic!("expected OFFERS, got {other}: {e:?}"),
        }
    }
}

/// The next UPDATE's status; OFFERS in between are declined with `refuse`.
async fn next_update(sub: &mut Subscription, refuse: f64) -> TaskStatus {
    loop {
        let e = tokio::time::timeout(WAIT, sub.events.next())
            .await
            .expect("no event in time")
            .expect("event stream")
            .expect("stream open");
        match e.event_type {
            EventType::Update => return e.update.unwrap().status,
            EventType::Offers => {
                let ids = e.offers.unwrap().offers.into_iter().map(|o| o.id).collect();
                sub.client.decline(ids, refuse).await.unwrap();
            }
            _ => {}
        }
    }
}

/// `amount` of `name` cut from one resource of the offer (keeping its
/// reservation and allocation info, as a framework must to use reserved
/// resources); `None` if no single resource has that much.
fn cut(offer: &Offer, name: &str, amount: f64) -> Option<Json> {
    offer
        .resources
        .iter()
        .find(|r| r.name == name && offer_scalar(r) >= amount)
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap();
            v["scalar"] = json!({"value": amount});
            v
        })
}

fn offer_scalar(r: &masterlink::Resource) -> f64 {
    match &r.value {
        masterlink::resources::ResourceValue::Scalar(s) => s.value(),
        _ => 0.0,
    }
}

fn scalar(offer: &Offer, name: &str) -> f64 {
    offer.resources.scalar(name).value()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_tasks_finish_with_output_in_their_sandboxes() {
    require_root!();
    let c = Cluster::start("cpus:4;mem:2048;disk:1024", &[], &[]);
    let mut sub = c.subscribe("twenty", "dev", &[]).await;
    let mut launched = 0;
    let mut finished = std::collections::BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while finished.len() < 20 {
        assert!(
            Instant::now() < deadline,
            "only {} of 20 finished",
            finished.len()
        );
        let e = tokio::time::timeout(WAIT, sub.events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match e.event_type {
            EventType::Offers => {
                for offer in e.offers.unwrap().offers {
                    let mut tasks = Vec::new();
                    let (mut cpus, mut mem) = (scalar(&offer, "cpus"), scalar(&offer, "mem"));
                    while launched < 20 && cpus >= 0.1 && mem >= 32.0 {
                        let id = format!("t{launched}");
                        tasks.push(command_task(
                            &id,
                            &offer,
                            0.1,
                            32.0,
                            &format!("echo out-{id}; echo err-{id} >&2"),
                        ));
                        launched += 1;
                        cpus -= 0.1;
                        mem -= 32.0;
                    }
                    let ops = if tasks.is_empty() {
                        vec![]
                    } else {
                        vec![Operation::launch(tasks)]
                    };
                    sub.client
                        .accept(
                            vec![offer.id],
                            ops,
                            Some(masterlink::scheduler::Filters {
                                refuse_seconds: 0.0,
                            }),
                        )
                        .await
                        .unwrap();
                }
            }
            EventType::Update => {
                let s = e.update.unwrap().status;
                assert!(s.uuid.is_some(), "agent updates carry a uuid: {s:?}");
                sub.client.acknowledge(&s).await.unwrap();
                assert!(
                    matches!(
                        s.state,
                        TaskState::Starting | TaskState::Running | TaskState::Finished
                    ),
                    "{s:?}"
                );
                if s.state == TaskState::Finished {
                    assert_eq!(s.message.as_deref(), Some("Command exited with status 0"));
                    finished.insert(s.task_id.value.clone());
                }
            }
            _ => {}
        }
    }
    // Each task's stdout and stderr are files in its Mesos-style sandbox.
    let fid = sub.client.framework_id().value.clone();
    for i in 0..20 {
        let pattern = format!("frameworks/{fid}/executors/t{i}/runs");
        let runs: Vec<PathBuf> = walk(&c.agent_work())
            .into_iter()
            .filter(|p| p.ends_with("stdout") && p.to_string_lossy().contains(&pattern))
            .collect();
        assert_eq!(runs.len(), 1, "sandbox of t{i}: {runs:?}");
        let out = std::fs::read_to_string(&runs[0]).unwrap();
        assert_eq!(out.trim(), format!("out-t{i}"));
        let err = std::fs::read_to_string(runs[0].with_file_name("stderr")).unwrap();
        assert!(err.contains(&format!("err-t{i}")), "{err}");
    }
    // The operator API agrees.
    let tasks = c.operator("GET_TASKS");
    let completed = tasks["get_tasks"]["completed_tasks"].as_array().unwrap();
    assert_eq!(completed.len(), 20, "{tasks}");
    let agents = c.operator("GET_AGENTS");
    assert_eq!(
        agents["get_agents"]["agents"][0]["agent_info"]["hostname"],
        "node1"
    );
    sub.client.teardown().await.unwrap();
}

/// Launches one task on the first offer and returns its id.
async fn launch_one(sub: &mut Subscription, id: &str, cmd: &str, mem: f64) -> Offer {
    let offer = next_offers(&mut sub.events).await.remove(0);
    let task = command_task(id, &offer, 0.5, mem, cmd);
    sub.client
        .accept(
            vec![offer.id.clone()],
            vec![Operation::launch(vec![task])],
            None,
        )
        .await
        .unwrap();
    offer
}

/// Follows `task` to a terminal state, acknowledging everything; returns the
/// terminal status and the states seen.
async fn follow(sub: &mut Subscription, task: &str) -> (TaskStatus, Vec<TaskState>) {
    let mut seen = Vec::new();
    loop {
        let s = next_update(sub, 1.0).await;
        sub.client.acknowledge(&s).await.unwrap();
        if s.task_id.value != task {
            continue;
        }
        seen.push(s.state);
        if s.state.is_terminal() {
            return (s, seen);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_task_reports_its_exit_code_and_kill_is_graceful() {
    require_root!();
    let c = Cluster::start("cpus:2;mem:1024;disk:1024", &[], &[]);
    let mut sub = c.subscribe("fail", "dev", &["TASK_KILLING_STATE"]).await;

    launch_one(&mut sub, "bad", "echo about to fail; exit 3", 32.0).await;
    let (s, seen) = follow(&mut sub, "bad").await;
    assert_eq!(s.state, TaskState::Failed, "{s:?}");
    assert_eq!(
        s.message.as_deref(),
        Some("Command exited with status 3"),
        "{s:?}"
    );
    assert!(seen.contains(&TaskState::Running), "{seen:?}");

    // A task that traps SIGTERM and exits cleanly: KILL → TASK_KILLING →
    // TASK_KILLED, and the trap ran (the grace period was honoured).
    launch_one(
        &mut sub,
        "sleeper",
        "trap 'echo got-term; exit 0' TERM; while true; do sleep 0.1; done",
        32.0,
    )
    .await;
    loop {
        let s = next_update(&mut sub, 1.0).await;
        sub.client.acknowledge(&s).await.unwrap();
        if s.state == TaskState::Running {
            break;
        }
    }
    sub.client
        .kill(masterlink::scheduler::TaskID::new("sleeper"), None)
        .await
        .unwrap();
    let (s, seen) = follow(&mut sub, "sleeper").await;
    assert_eq!(s.state, TaskState::Killed, "{s:?}");
    assert!(seen.contains(&TaskState::Killing), "{seen:?}");
    let stdout = walk(&c.agent_work())
        .into_iter()
        .find(|p| p.ends_with("stdout") && p.to_string_lossy().contains("executors/sleeper/"))
        .unwrap();
    assert!(std::fs::read_to_string(stdout)
        .unwrap()
        .contains("got-term"));

    // A task over its memory limit is killed by the kernel: TASK_FAILED with
    // the memory limitation reason.
    launch_one(
        &mut sub,
        "hog",
        "dd if=/dev/zero of=/dev/null bs=256M count=1",
        32.0,
    )
    .await;
    let (s, _) = follow(&mut sub, "hog").await;
    assert_eq!(s.state, TaskState::Failed, "{s:?}");
    assert_eq!(
        s.reason.as_ref().map(|r| r.to_string()).as_deref(),
        Some("REASON_CONTAINER_LIMITATION_MEMORY"),
        "{s:?}"
    );
    sub.client.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_and_unacknowledged_updates_are_retried() {
    require_root!();
    let c = Cluster::start(
        "cpus:2;mem:1024;disk:1024",
        &[],
        &["--status-update-retry-interval=300ms"],
    );
    let mut sub = c.subscribe("retry", "dev", &[]).await;
    launch_one(&mut sub, "r1", "sleep 30", 32.0).await;

    // TASK_STARTING is not acknowledged: the agent sends it again, with the
    // same uuid, and nothing later (one update in flight per task).
    let first = next_update(&mut sub, 60.0).await;
    assert_eq!(first.state, TaskState::Starting, "{first:?}");
    let again = next_update(&mut sub, 60.0).await;
    assert_eq!(again.state, TaskState::Starting, "{again:?}");
    assert_eq!(again.uuid, first.uuid);
    sub.client.acknowledge(&again).await.unwrap();
    let running = next_update(&mut sub, 60.0).await;
    assert_eq!(running.state, TaskState::Running, "{running:?}");
    sub.client.acknowledge(&running).await.unwrap();

    // Implicit reconciliation: the latest state, no uuid, from the master.
    sub.client.reconcile(vec![]).await.unwrap();
    let r = next_update(&mut sub, 60.0).await;
    assert_eq!(r.task_id.value, "r1");
    assert_eq!(r.state, TaskState::Running);
    assert_eq!(
        r.reason.as_ref().map(|r| r.to_string()).as_deref(),
        Some("REASON_RECONCILIATION")
    );
    assert!(r.uuid.is_none());
    // Explicit, for a task nobody knows.
    sub.client
        .reconcile(vec![berth::mesos::scheduler::reconcile_task(
            masterlink::scheduler::TaskID::new("nobody"),
            None,
        )])
        .await
        .unwrap();
    let r = next_update(&mut sub, 60.0).await;
    assert_eq!(r.task_id.value, "nobody");
    assert_eq!(r.state, TaskState::Lost);

    sub.client
        .kill(masterlink::scheduler::TaskID::new("r1"), None)
        .await
        .unwrap();
    let (s, _) = follow(&mut sub, "r1").await;
    assert_eq!(s.state, TaskState::Killed);
    sub.client.teardown().await.unwrap();
}

/// A framework that launches one 0.5-cpu sleeping task per offer and gives
/// the rest back at once, so the allocator decides who gets what.
async fn greedy(sub: &mut Subscription, prefix: &str, until: Instant) -> usize {
    let mut running = 0;
    let mut n = 0;
    while Instant::now() < until {
        let Ok(e) = tokio::time::timeout(Duration::from_millis(200), sub.events.next()).await
        else {
            continue;
        };
        let e = e.unwrap().unwrap();
        match e.event_type {
            EventType::Offers => {
                for offer in e.offers.unwrap().offers {
                    let ops = match (cut(&offer, "cpus", 0.5), cut(&offer, "mem", 32.0)) {
                        (Some(cpus), Some(mem)) => {
                            n += 1;
                            let mut task = command_task(
                                &format!("{prefix}{n}"),
                                &offer,
                                0.5,
                                32.0,
                                "sleep 60",
                            );
                            task.resources = serde_json::from_value(json!([cpus, mem])).unwrap();
                            vec![Operation::launch(vec![task])]
                        }
                        _ => vec![],
                    };
                    sub.client
                        .accept(
                            vec![offer.id],
                            ops,
                            Some(masterlink::scheduler::Filters {
                                refuse_seconds: 0.0,
                            }),
                        )
                        .await
                        .unwrap();
                }
            }
            EventType::Update => {
                let s = e.update.unwrap().status;
                sub.client.acknowledge(&s).await.unwrap();
                if s.state == TaskState::Running {
                    running += 1;
                }
            }
            _ => {}
        }
    }
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_roles_get_drf_fair_shares_and_reservations_stay_with_their_role() {
    require_root!();
    // 4 unreserved cpus shared by two roles; 1 cpu reserved for "ops".
    let c = Cluster::start("cpus:4;mem:2048;cpus(ops):1;mem(ops):256", &[], &[]);
    let mut a = c.subscribe("a", "dev", &[]).await;
    let mut b = c.subscribe("b", "ops", &[]).await;
    let until = Instant::now() + Duration::from_secs(6);
    let (ra, rb) = tokio::join!(greedy(&mut a, "a", until), greedy(&mut b, "b", until));
    // 10 half-cpu slots exist and all get used. Reserved cpus count toward
    // ops' share (as in Mesos), so weighted DRF ends with equal dominant
    // shares: 2.5 cpus each, give or take the last half-cpu slot.
    assert_eq!(ra + rb, 10, "dev {ra}, ops {rb}");
    assert!((4..=6).contains(&ra), "dev {ra}, ops {rb}");
    let roles = c.operator("GET_ROLES");
    let roles = roles["get_roles"]["roles"].as_array().unwrap().clone();
    let cpus = |role: &str| -> f64 {
        roles
            .iter()
            .find(|r| r["name"] == role)
            .map(|r| {
                r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|x| x["name"] == "cpus")
                    .map(|x| x["scalar"]["value"].as_f64().unwrap())
                    .sum()
            })
            .unwrap_or(0.0)
    };
    assert_eq!(cpus("dev") + cpus("ops"), 5.0, "{roles:?}");
    assert!((cpus("dev") - cpus("ops")).abs() <= 1.0, "{roles:?}");
    // The reservation stayed with ops: no dev task uses reserved resources.
    let tasks = c.operator("GET_TASKS");
    for t in tasks["get_tasks"]["tasks"].as_array().unwrap() {
        let reserved = t["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reservations"].is_array());
        let role = t["resources"][0]["allocation_info"]["role"]
            .as_str()
            .unwrap_or("");
        assert!(
            !(reserved && role == "dev"),
            "dev task on reserved resources: {t}"
        );
        // A task may mix reserved and unreserved resources (e.g. unreserved
        // cpus with reserved mem): every reserved one is ops'.
        for r in t["resources"].as_array().unwrap() {
            if let Some(stack) = r["reservations"].as_array() {
                assert_eq!(stack[0]["role"], "ops", "{t}");
            }
        }
    }
    let ops_reserved = tasks["get_tasks"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["resources"][0]["reservations"].is_array())
        .count();
    assert_eq!(
        ops_reserved, 2,
        "ops should run 2 tasks on its reserved cpu: {tasks}"
    );
    a.client.teardown().await.unwrap();
    b.client.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscribe_names_the_problem() {
    // `roles` without MULTI_ROLE: Mesos answers 200 with one ERROR event.
    let c = Cluster::start("cpus:1;mem:256", &[], &[]);
    let info =
        serde_json::from_value(json!({"user": "root", "name": "x", "roles": ["dev"]})).unwrap();
    match berth::mesos::scheduler::SchedulerClient::subscribe(&c.master_addr(), info).await {
        Err(berth::mesos::ClientError::Refused(m)) => assert!(m.contains("MULTI_ROLE"), "{m}"),
        Err(e) => panic!("not a refusal: {e:?}"),
        Ok(_) => panic!("subscribed"),
    }
}

#[test]
fn bad_flags_are_usage_errors_naming_the_flag() {
    for (args, flag) in [
        (
            vec![
                "agent",
                "--master=127.0.0.1:1",
                "--work-dir=/tmp/x",
                "--resources=cpus:lots",
            ],
            "--resources",
        ),
        (
            vec![
                "agent",
                "--master=127.0.0.1:1",
                "--work-dir=/tmp/x",
                "--attributes=:",
            ],
            "--attributes",
        ),
        (
            vec!["master", "--work-dir=/tmp/x", "--weights=dev"],
            "--weights",
        ),
        (
            vec!["master", "--work-dir=/tmp/x", "--allocation-interval=soon"],
            "--allocation-interval",
        ),
        (vec!["cluster", "run", "--cpus=-1", "--", "true"], "--cpus"),
    ] {
        let out = Command::new(berth_bin()).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(flag), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn pymesos_scheduler_runs_tasks_and_reconciles() {
    require_root!();
    let Some(python) = pymesos_python() else {
        eprintln!("skipped: pymesos is not installed (bash tests/py/setup-pymesos.sh; CI runs it)");
        return;
    };
    let c = Cluster::start("cpus:2;mem:1024;disk:1024", &[], &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/py/pymesos_scheduler.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .arg("--master")
        .arg(&c.addr)
        .args(["3", "--reconcile"]);
    let out = output_within(cmd, 120);
    let stdout = stdout(&out);
    assert!(
        out.status.success(),
        "pymesos scheduler failed: {stdout}\n{}",
        stderr(&out)
    );
    let updates: Vec<Json> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // From the agent (with a uuid), once per task; reconciliation answers
    // repeat the state without one.
    let finished: std::collections::BTreeSet<&str> = updates
        .iter()
        .filter(|u| u["state"] == "TASK_FINISHED" && u["uuid"].is_string())
        .map(|u| u["task_id"]["value"].as_str().unwrap())
        .collect();
    assert_eq!(finished.len(), 3, "{stdout}");
    assert!(
        updates
            .iter()
            .any(|u| u["reason"] == "REASON_RECONCILIATION"),
        "{stdout}"
    );
}

/// `berth cluster reserve | volume-create | volume-destroy | unreserve`
/// against a real master and agent: the agent really creates and destroys
/// the volume, the master's view follows, errors are usage or 409.
#[test]
fn cluster_cli_reserves_and_manages_volumes() {
    require_root!();
    let mut c = Cluster::start("cpus:2;mem:1024;disk:2000", &[], &[]);
    let agents = c.operator("GET_AGENTS");
    let aid = agents["get_agents"]["agents"][0]["agent_info"]["id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let cli = |args: &[&str]| {
        let out = Command::new(berth_bin())
            .args(["cluster"])
            .args(args)
            .env("BERTH_MASTER", &c.addr)
            .output()
            .unwrap();
        (out.status.code(), stdout(&out), stderr(&out))
    };
    let (code, _, err) = cli(&[
        "reserve",
        "--agent",
        &aid,
        "--role",
        "dev",
        "--principal",
        "ops",
        "disk:500;cpus:1",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = cli(&[
        "volume-create",
        "--agent",
        &aid,
        "--role",
        "dev",
        "--principal",
        "ops",
        "--id",
        "v1",
        "--size",
        "64",
    ]);
    assert_eq!(code, Some(0), "{err}");
    c.agent.line("persistent volume dev/v1 created");
    let total = &c.operator("GET_AGENTS")["get_agents"]["agents"][0]["total_resources"];
    let vol = total
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["disk"]["persistence"]["id"] == "v1")
        .expect("the volume is in the agent's total");
    assert_eq!(vol["scalar"]["value"], 64.0);

    // Bad input: usage errors naming the flag; too much: the master's 409.
    let (code, _, err) = cli(&["reserve", "--agent", &aid, "--role", "*", "cpus:1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--role"), "{err}");
    let (code, _, err) = cli(&["reserve", "--agent", &aid, "--role", "dev", "disk:99999"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("409"), "{err}");
    let (code, _, err) = cli(&["volume-destroy", "--agent", &aid, "--id", "nope"]);
    assert_eq!(code, Some(2), "{err}");

    let (code, _, err) = cli(&["volume-destroy", "--agent", &aid, "--id", "v1"]);
    assert_eq!(code, Some(0), "{err}");
    c.agent.line("persistent volume dev/v1 destroyed");
    let (code, _, err) = cli(&[
        "unreserve",
        "--agent",
        &aid,
        "--role",
        "dev",
        "--principal",
        "ops",
        "disk:500;cpus:1",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let total = &c.operator("GET_AGENTS")["get_agents"]["agents"][0]["total_resources"];
    assert!(
        total
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["reservations"].is_null()),
        "everything is back to *: {total}"
    );
}

/// A master started with --credentials: `berth cluster` without them gets
/// the master's 401; with --principal/--secret (or BERTH_PRINCIPAL and
/// BERTH_SECRET) it lists, reserves and runs a task as that principal.
#[test]
fn cluster_cli_authenticates_to_a_master_with_credentials() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::write(&creds, "ops s3cret\n").unwrap();
    let c = Cluster::start(
        "cpus:2;mem:1024;disk:1000",
        &[&format!("--credentials={}", creds.display())],
        &[],
    );
    let cli = |args: &[&str], auth: bool| {
        let mut cmd = Command::new(berth_bin());
        cmd.arg("cluster").args(args).env("BERTH_MASTER", &c.addr);
        if auth {
            cmd.env("BERTH_PRINCIPAL", "ops")
                .env("BERTH_SECRET", "s3cret");
        }
        let out = cmd.output().unwrap();
        (out.status.code(), stdout(&out), stderr(&out))
    };
    let (code, _, err) = cli(&["agents"], false);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("401"), "{err}");
    let (code, out, err) = cli(&["agents"], true);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("node1"), "{out}");
    let aid = out
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let (code, _, err) = cli(
        &[
            "reserve",
            "--agent",
            &aid,
            "--role",
            "dev",
            "--principal",
            "ops",
            "cpus:1",
        ],
        true,
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = cli(
        &["run", "--role", "dev", "--", "echo", "authenticated"],
        true,
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("TASK_FINISHED"), "{out}");
}
