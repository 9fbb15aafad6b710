//! Master high availability end to end: three `berth master --registry
//! etcd://...` processes on a real etcd (Debian's etcd-server, started by the
//! test on loopback ports), killed with SIGKILL.
//!
//! * `masters_elect_redirect_and_fail_over` (no root): one leader; the
//!   followers answer the scheduler, operator and agent APIs with Mesos' 307
//!   (`Location: //HOST:PORT/path`), `/master/redirect` points at the leader,
//!   `/state` names it; a framework subscribed through a follower
//!   re-subscribes with its id after the leader is SIGKILLed; when etcd dies
//!   the leader steps down and exits non-zero.
//! * `agent_and_framework_survive_leader_failover` (root: containers): one
//!   agent with `--master m1,m2,m3`, a long task and a dynamic reservation;
//!   after the leader's SIGKILL the agent re-registers with the new leader,
//!   the framework re-subscribes and reconciles: the task still runs, the
//!   reservation is still there. Prints the measured failover time.
//!
//! * `pymesos_scheduler_fails_over_then_its_framework_expires` (root,
//!   pymesos; no etcd): scheduler failover with tests/py/pymesos_failover.py
//!   -- a SIGKILLed pymesos scheduler's successor subscribes with its
//!   framework id, receives the pending TASK_RUNNING and reconciles; with
//!   no successor after the failover timeout the task is killed and its
//!   resources offered again.
//!
//! The first two print "skipped: ..." without etcd. Every wait is bounded.

mod common;
#[path = "../master/tests/etcd_harness/mod.rs"]
mod etcd_harness;

use std::path::Path;
use std::time::{Duration, Instant};

use berth::mesos::operator::OperatorClient;
use berth::mesos::scheduler::{reconcile_task, SchedulerClient, Subscription};
use berth::mesos::MasterAddr;
use common::cluster::{command_task, listening, Daemon, Framework};
use common::Berth;
use etcd_harness::Etcd;
use masterlink::scheduler::{FrameworkInfo, TaskState};
use serde_json::{json, Value as Json};

/// The election lease TTL the masters run with (etcd's minimum is 2 s).
const TTL: &str = "2s";
/// Bound on a leader election (TTL + etcd's expiry check + slack).
const ELECTION: Duration = Duration::from_secs(20);

const NAMES: [&str; 3] = ["master1", "master2", "master3"];

/// Three masters on `etcd`, each in its own work dir under `work`.
fn start_masters(etcd: &Etcd, work: &Path, extra: &[&str]) -> (Vec<Daemon>, Vec<String>) {
    let mut masters = Vec::new();
    let mut addrs = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let mut args: Vec<String> = vec![
            "master".into(),
            "--port=0".into(),
            format!("--work-dir={}", work.join(format!("m{i}")).display()),
            format!("--registry=etcd://{}/berth-failover/", etcd.endpoint()),
            format!("--election-ttl={TTL}"),
            "--allocation-interval=100ms".into(),
            "--hostname=127.0.0.1".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut m = Daemon::spawn(name, &args);
        addrs.push(listening(&m.line("listening on")));
        masters.push(m);
    }
    (masters, addrs)
}

/// A client that shows redirects instead of following them.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn state(addr: &str) -> Option<Json> {
    http()
        .get(format!("http://{addr}/master/state"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// The index (in `addrs`, skipping `dead`) of the master whose `/state`
/// says it is elected, once the others agree it leads.
async fn wait_leader(addrs: &[String], dead: &[usize]) -> usize {
    let deadline = Instant::now() + ELECTION;
    loop {
        let mut elected = Vec::new();
        let mut leaders = Vec::new();
        for (i, a) in addrs.iter().enumerate() {
            if dead.contains(&i) {
                continue;
            }
            if let Some(s) = state(a).await {
                if s.get("elected_time").is_some() {
                    elected.push(i);
                }
                leaders.push(s["leader"].as_str().unwrap_or("").to_string());
            }
        }
        if let [i] = elected[..] {
            let pid = format!("master@{}", addrs[i]);
            if leaders.iter().all(|l| *l == pid) {
                return i;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no single agreed leader within {ELECTION:?}: elected {elected:?}, leaders {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(addr: &str, path: &str, body: Json) -> reqwest::Response {
    http()
        .post(format!("http://{addr}{path}"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {addr}{path}: {e}"))
}

fn location(r: &reqwest::Response) -> String {
    assert_eq!(r.status().as_u16(), 307, "{r:?}");
    r.headers()["location"].to_str().unwrap().to_string()
}

fn framework_info(id: Option<&str>) -> FrameworkInfo {
    let mut info = json!({
        "user": "root", "name": "failover", "roles": ["dev"], "principal": "ops",
        "failover_timeout": 3600.0, "checkpoint": true,
        "capabilities": [{"type": "MULTI_ROLE"}, {"type": "PARTITION_AWARE"}],
    });
    if let Some(id) = id {
        info["id"] = json!({"value": id});
    }
    serde_json::from_value(info).unwrap()
}

async fn subscribe(addr: &str, id: Option<&str>) -> Subscription {
    let master: MasterAddr = addr.parse().unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        SchedulerClient::subscribe(&master, framework_info(id)),
    )
    .await
    .expect("SUBSCRIBE in time")
    .expect("SUBSCRIBE")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_elect_redirect_and_fail_over() {
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (mut masters, addrs) = start_masters(&etcd, work.path(), &[]);
    let l = wait_leader(&addrs, &[]).await;
    let leader = addrs[l].clone();
    let f = (l + 1) % 3;
    let follower = addrs[f].clone();

    // The followers send every API to the leader, Mesos' way.
    let subscribe_call = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
        "user": "root", "name": "x"}}});
    let r = post(&follower, "/api/v1/scheduler", subscribe_call.clone()).await;
    assert_eq!(location(&r), format!("//{leader}/api/v1/scheduler"));
    let r = post(&follower, "/master/api/v1/scheduler", subscribe_call).await;
    assert_eq!(location(&r), format!("//{leader}/master/api/v1/scheduler"));
    let r = post(&follower, "/api/v1", json!({"type": "GET_HEALTH"})).await;
    assert_eq!(location(&r), format!("//{leader}/api/v1"));
    let r = post(
        &follower,
        "/masterlink/v1/agent",
        json!({"type": "REGISTER"}),
    )
    .await;
    assert_eq!(location(&r), format!("//{leader}/masterlink/v1/agent"));
    for path in ["/master/redirect", "/redirect"] {
        let r = http()
            .get(format!("http://{follower}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(location(&r), format!("//{leader}"));
        let r = http()
            .get(format!("http://{leader}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            location(&r),
            format!("//{leader}"),
            "the leader points at itself"
        );
    }
    // A follower answers /state itself: who leads, but not elected.
    let s = state(&follower).await.unwrap();
    assert_eq!(s["leader"], format!("master@{leader}"));
    assert_eq!(
        s["leader_info"]["port"],
        json!(leader.rsplit(':').next().unwrap().parse::<u32>().unwrap())
    );
    assert!(s.get("elected_time").is_none(), "{s}");
    let metrics: Json = http()
        .get(format!("http://{follower}/metrics/snapshot"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metrics["master/elected"], json!(0.0));

    // A framework subscribed through a follower lands on the leader.
    let mut sub = subscribe(&follower, None).await;
    assert_eq!(sub.client.master(), leader);
    let fid = sub.client.framework_id().value.clone();

    // SIGKILL the leader: another one is elected within seconds.
    let killed = Instant::now();
    masters[l].kill9();
    let n = wait_leader(&addrs, &[l]).await;
    let elected_in = killed.elapsed();
    eprintln!(
        "failover: new leader {} elected {elected_in:?} after the SIGKILL",
        addrs[n]
    );
    assert!(elected_in < ELECTION);
    // The framework's stream from the dead leader has ended.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match sub.events.next().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the dead leader's stream did not end");

    // It re-subscribes with its id through any live master.
    let other = (0..3).find(|i| *i != l && *i != n).unwrap();
    let sub = subscribe(&addrs[other], Some(&fid)).await;
    assert_eq!(sub.client.framework_id().value, fid);
    assert_eq!(sub.client.master(), addrs[n]);
    let s = state(&addrs[n]).await.unwrap();
    let ids: Vec<&str> = s["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert_eq!(ids, [fid.as_str()]);
    let r = http()
        .get(format!("http://{}/master/redirect", addrs[other]))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), format!("//{}", addrs[n]));

    // Without etcd the leader cannot renew its lease: it steps down and
    // exits (non-zero) rather than serve from an ended term.
    drop(sub);
    etcd.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = masters[n].child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the leader did not exit without etcd"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(masters[n].count("lost leadership") >= 1);
    // A follower that never led keeps campaigning.
    assert!(masters[other].child.try_wait().unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_framework_survive_leader_failover() {
    require_root!();
    let Some(etcd) = Etcd::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (mut masters, addrs) =
        start_masters(&etcd, work.path(), &["--agent-reregister-timeout=60s"]);
    let l = wait_leader(&addrs, &[]).await;
    let leader = addrs[l].clone();

    // Dropped in reverse: the agent stops before its containers go.
    let berth = Berth::new();
    let mut agent = Daemon::spawn(
        "agent",
        &[
            "agent".into(),
            format!("--master={}", addrs.join(",")),
            "--port=0".into(),
            format!("--work-dir={}", work.path().join("agent").display()),
            format!("--launcher-root={}", berth.root.path().display()),
            "--resources=cpus:2;mem:512".into(),
            "--hostname=node1".into(),
        ],
    );
    agent.line("registered with master");

    // A reservation by the operator, on the leader.
    let op = OperatorClient::new(&leader.parse().unwrap());
    let agents = op.get("GET_AGENTS").await.unwrap().json.unwrap();
    let agent_id = agents["get_agents"]["agents"][0]["agent_info"]["id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    op.call(&json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
        "agent_id": {"value": agent_id},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5},
            "reservations": [{"type": "DYNAMIC", "role": "dev", "principal": "ops"}]}]}}))
        .await
        .expect("RESERVE_RESOURCES");

    // A framework (through the last master, a follower or not) runs a
    // long task.
    let mut fw = Framework::new(subscribe(&addrs[2], None).await);
    let fid = fw.id();
    fw.launch(|o| vec![command_task("long", o, 0.1, 32.0, "sleep 600")])
        .await;
    fw.ack_until("long", |s| s == TaskState::Running).await;

    // SIGKILL the leader.
    let killed = Instant::now();
    masters[l].kill9();
    let n = wait_leader(&addrs, &[l]).await;
    let elected_in = killed.elapsed();
    let new_leader = addrs[n].clone();
    // Serving with the agent re-registered.
    let deadline = Instant::now() + Duration::from_secs(30);
    let slave = loop {
        let s = state(&new_leader).await.unwrap_or_default();
        if let Some(a) = s["slaves"].as_array().and_then(|a| {
            a.iter()
                .find(|a| a["id"] == json!(agent_id) && a["active"] == json!(true))
        }) {
            break a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not re-register with {new_leader}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ready_in = killed.elapsed();
    eprintln!(
        "failover: leader SIGKILL -> new leader {new_leader} elected in {elected_in:?}, \
         serving with the agent re-registered in {ready_in:?}"
    );
    agent.line("re-registered with master");
    // The reservation made before the failover is still there.
    assert_eq!(
        slave["reserved_resources"]["dev"]["cpus"],
        json!(0.5),
        "{slave}"
    );

    // The framework re-subscribes with its id and reconciles: still running.
    let other = (0..3).find(|i| *i != l && *i != n).unwrap();
    let mut fw = Framework::new(subscribe(&addrs[other], Some(&fid)).await);
    assert_eq!(fw.id(), fid);
    fw.sub
        .client
        .reconcile(vec![reconcile_task(
            masterlink::scheduler::TaskID::new("long"),
            None,
        )])
        .await
        .unwrap();
    let s = fw.next_of("long").await;
    assert_eq!(s.state, TaskState::Running, "{s:?}");

    // /master/redirect on a follower points at the new leader.
    let r = http()
        .get(format!("http://{}/master/redirect", addrs[other]))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), format!("//{new_leader}"));

    // Done: the framework leaves (its task is killed); the agent stops
    // before `berth` removes whatever container is left.
    fw.sub.client.teardown().await.unwrap();
    drop(agent);
    drop(berth);
}

/// Scheduler failover with pymesos (tests/py/pymesos_failover.py): a first
/// scheduler subscribes with a failover timeout, launches a long task and
/// leaves its TASK_RUNNING unacknowledged, then is SIGKILLed; a second
/// process subscribes with the same framework id, receives the pending
/// update (the agent resends it, same uuid), acknowledges it and reconciles
/// the running task; it leaves in failover mode with a 2 s timeout, after
/// which the master removes the framework: the task is killed on the agent,
/// its container removed and its resources offered again. Needs root
/// (containers) and pymesos; no etcd.
#[test]
fn pymesos_scheduler_fails_over_then_its_framework_expires() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (CI runs the integration tests as root)");
        return;
    }
    let Some(python) = common::pymesos_python() else {
        eprintln!("skipped: pymesos is not installed (bash tests/py/setup-pymesos.sh; CI runs it)");
        return;
    };
    use std::io::BufRead;
    let mut c = common::cluster::Cluster::start(
        "cpus:2;mem:1024;disk:1024",
        &[],
        &["--status-update-retry-interval=500ms"],
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/py/pymesos_failover.py");
    let task = "pyfo-1";

    let mut first = std::process::Command::new(&python)
        .arg(&script)
        .args(["first", "--master", &c.addr, "--task-id", task])
        .args(["--failover-timeout", "60", "--timeout", "120"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the first scheduler");
    let (tx, rx) = std::sync::mpsc::channel::<Json>();
    let out = first.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            eprintln!("[first] {line}");
            if let Ok(v) = serde_json::from_str::<Json>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let deadline = Instant::now() + common::cluster::WAIT;
    let mut fid = None;
    let unacked = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = rx
            .recv_timeout(left)
            .expect("the first scheduler's task running in time");
        match v["event"].as_str() {
            Some("registered") => fid = v["framework_id"].as_str().map(str::to_string),
            Some("running_unacked") => break v["uuid"].as_str().unwrap().to_string(),
            _ => {}
        }
    };
    let fid = fid.expect("the first scheduler registered");
    // SIGKILL: no TEARDOWN; the framework waits for a successor.
    first.kill().unwrap();
    first.wait().unwrap();
    let containers = c.berth.ids();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(c.berth.inspect(&containers[0])["status"], "running");

    let mut successor = std::process::Command::new(&python);
    successor
        .arg(&script)
        .args(["successor", "--master", &c.addr, "--task-id", task])
        .args([
            "--framework-id",
            &fid,
            "--failover-timeout",
            "2",
            "--timeout",
            "60",
        ]);
    let out = common::output_within(successor, 90);
    let stdout = common::stdout(&out);
    assert!(
        out.status.success(),
        "successor failed: {stdout}\n{}",
        common::stderr(&out)
    );
    let events: Vec<Json> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "reregistered" && e["framework_id"] == fid.as_str()),
        "{stdout}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "pending_update" && e["uuid"] == unacked.as_str()),
        "the pending TASK_RUNNING did not reach the successor: {stdout}"
    );
    assert!(
        events.iter().any(|e| e["event"] == "reconciled"),
        "{stdout}"
    );

    // No successor within the (new) 2 s: the framework is removed, its
    // task killed and its resources recovered.
    c.master.line(&format!(
        "framework {fid} did not come back within its failover timeout"
    ));
    c.agent.line(&format!("shutting down framework {fid}"));
    assert!(
        common::wait_until(60, || c.berth.ids().is_empty()),
        "the task's container is still there: {:?}",
        c.berth.ids()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut fw = Framework::new(c.subscribe("after", "dev", &[]).await);
        let deadline = Instant::now() + common::cluster::WAIT;
        loop {
            let offer = fw.offer().await;
            let cpus = offer.resources.scalar("cpus").value();
            if (cpus - 2.0).abs() < 1e-9 {
                break;
            }
            assert!(Instant::now() < deadline, "only {cpus} cpus offered");
        }
    });
}
