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
//! * `launch_storm_survives_repeated_leader_kills` (root: containers): a
//!   framework launches 200 short tasks as fast as offers allow while the
//!   leader is SIGKILLed three times (and restarted); it re-subscribes and
//!   reconciles after each failover, and in the end knows a terminal state
//!   for every task (every task the agent ran FINISHED); the final leader
//!   still has the agent, its reservation and the framework.
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

/// Master `i` on `etcd` in its own work dir under `work`, on `port` (0: any).
fn spawn_master(etcd: &Etcd, work: &Path, i: usize, port: u16, extra: &[&str]) -> Daemon {
    let mut args: Vec<String> = vec![
        "master".into(),
        format!("--port={port}"),
        format!("--work-dir={}", work.join(format!("m{i}")).display()),
        format!("--registry=etcd://{}/berth-failover/", etcd.endpoint()),
        format!("--election-ttl={TTL}"),
        "--allocation-interval=100ms".into(),
        "--hostname=127.0.0.1".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Daemon::spawn(NAMES[i], &args)
}

/// Three masters on `etcd`, each in its own work dir under `work`.
fn start_masters(etcd: &Etcd, work: &Path, extra: &[&str]) -> (Vec<Daemon>, Vec<String>) {
    let mut masters = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..NAMES.len() {
        let mut m = spawn_master(etcd, work, i, 0, extra);
        addrs.push(listening(&m.line("listening on")));
        masters.push(m);
    }
    (masters, addrs)
}

/// SIGKILLs master `i` and starts it again on its port and work dir (a
/// supervisor's restart), so that the agent's `--master` list stays valid
/// and three masters stay up; waits until it listens.
fn restart_master(
    masters: &mut [Daemon],
    addrs: &[String],
    i: usize,
    etcd: &Etcd,
    work: &Path,
    extra: &[&str],
) {
    masters[i].kill9();
    let port = addrs[i].rsplit(':').next().unwrap().parse().unwrap();
    masters[i] = spawn_master(etcd, work, i, port, extra);
    masters[i].line("listening on");
}

/// `berth agent` as node1 with the list of all masters, its containers in
/// `berth`'s root; waits until it has registered.
fn spawn_agent(
    addrs: &[String],
    work: &Path,
    berth: &Berth,
    resources: &str,
    extra: &[&str],
) -> Daemon {
    let mut args: Vec<String> = vec![
        "agent".into(),
        format!("--master={}", addrs.join(",")),
        "--port=0".into(),
        format!("--work-dir={}", work.join("agent").display()),
        format!("--launcher-root={}", berth.root.path().display()),
        format!("--resources={resources}"),
        "--hostname=node1".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut agent = Daemon::spawn("agent", &args);
    agent.line("registered with master");
    agent
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
    let mut agent = spawn_agent(&addrs, work.path(), &berth, "cpus:2;mem:512", &[]);

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

/// Tasks in the launch storm.
const STORM_TASKS: usize = 200;
/// Tasks launched per offer: a framework that takes the whole offer at once
/// would launch all 200 in one ACCEPT, and the kills would find no launch in
/// flight. Ten per offer (one offer per 100 ms allocation) keeps launches
/// going for the whole storm.
const STORM_BATCH: usize = 10;
/// The leader is SIGKILLed when this many tasks have been launched, so each
/// kill lands on a different leader, with launches in flight.
const STORM_KILLS: [usize; 3] = [30, 90, 150];
/// Bound on the storm (launches, kills, failovers, every task terminal).
const STORM_WAIT: Duration = Duration::from_secs(100);

/// The launch storm's framework: what it launched and the last state it
/// knows of each task.
#[derive(Default)]
struct Storm {
    /// Task id -> agent id of every task named in an ACCEPT (sent, whether
    /// or not the master answered: a dying leader may have taken it).
    launched: std::collections::BTreeMap<String, String>,
    /// Task id -> its first terminal state, else its latest state.
    state: std::collections::BTreeMap<String, TaskState>,
    /// Tasks the agent (not the master) reported RUNNING.
    ran: std::collections::BTreeSet<String>,
    /// Tasks whose ACCEPT failed (the leader died under it, or a follower
    /// answered): what became of them is learned by reconciliation.
    unaccepted: std::collections::BTreeSet<String>,
    /// Every update received: task id, state, source, reason.
    log: Vec<String>,
}

impl Storm {
    fn is_done(&self, task: &str) -> bool {
        self.state.get(task).is_some_and(|s| s.is_terminal())
    }

    fn all_done(&self) -> bool {
        self.launched.len() == STORM_TASKS && self.launched.keys().all(|t| self.is_done(t))
    }

    /// The launched tasks whose fate the framework does not know yet.
    fn open(&self) -> Vec<masterlink::scheduler::ReconcileTask> {
        self.launched
            .iter()
            .filter(|(t, _)| !self.is_done(t))
            .map(|(t, a)| {
                reconcile_task(
                    masterlink::scheduler::TaskID::new(t.as_str()),
                    Some(masterlink::scheduler::AgentID::new(a.as_str())),
                )
            })
            .collect()
    }

    fn record(&mut self, s: &masterlink::scheduler::TaskStatus) {
        let id = s.task_id.value.clone();
        let from_master = matches!(s.source, Some(masterlink::scheduler::TaskSource::Master));
        self.log
            .push(format!("{id} {} {:?} {:?}", s.state, s.source, s.reason));
        if s.state == TaskState::Running && !from_master {
            self.ran.insert(id.clone());
        }
        // A terminal state is final for a framework (Mesos); a later answer
        // (a duplicate, or reconciliation of a completed task: GONE) does
        // not change what it learned.
        if !self.is_done(&id) {
            self.state.insert(id, s.state);
        }
    }

    fn summary(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for t in self.launched.keys() {
            let s = self
                .state
                .get(t)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "NO_UPDATE".into());
            *out.entry(s).or_default() += 1;
        }
        out
    }
}

/// SUBSCRIBEs again with `fid` through the live masters in turn (a follower
/// redirects to the leader; during an election they answer 503) until one
/// accepts or `deadline` passes.
async fn resubscribe(addrs: &[String], fid: &str, deadline: Instant) -> Subscription {
    let mut i = 0;
    loop {
        let master: MasterAddr = addrs[i % addrs.len()].parse().unwrap();
        match tokio::time::timeout(
            Duration::from_secs(5),
            SchedulerClient::subscribe(&master, framework_info(Some(fid))),
        )
        .await
        {
            Ok(Ok(sub)) => return sub,
            Ok(Err(e)) => eprintln!("storm: re-SUBSCRIBE at {master}: {e}"),
            Err(_) => eprintln!("storm: re-SUBSCRIBE at {master}: no answer in 5 s"),
        }
        assert!(
            Instant::now() < deadline,
            "the framework could not re-subscribe in time"
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Three masters on etcd, one agent listing them all, and a framework that
/// launches 200 short tasks as fast as offers allow while the leader is
/// SIGKILLed three times (each time restarted, so three masters stay up).
/// After each failover the framework re-subscribes (following the
/// redirect) and reconciles the tasks it does not know the fate of; in the
/// end every task is terminal for it, from an update or reconciliation,
/// and every task the agent ran finished. The registry lost nothing: the
/// final leader still has the agent (same id, registered, its reservation)
/// and the framework.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_storm_survives_repeated_leader_kills() {
    require_root!();
    let Some(etcd) = Etcd::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    // The agent is never away longer than a failover: a long re-register
    // timeout keeps a slow election from marking it unreachable.
    let extra = ["--agent-reregister-timeout=60s"];
    let (mut masters, addrs) = start_masters(&etcd, work.path(), &extra);
    let l = wait_leader(&addrs, &[]).await;

    // Room for all 200 at once (2 cpus, 1600 MB) beside the reservation.
    let berth = Berth::new();
    let mut agent = spawn_agent(
        &addrs,
        work.path(),
        &berth,
        "cpus:4;mem:3072",
        &["--status-update-retry-interval=1s"],
    );
    let agent_pid = agent.pid();

    // Registry state made before the storm: the agent's admission, a
    // reservation (for a role the framework does not use, so its offers
    // never carry it) and the framework.
    let op = OperatorClient::new(&addrs[l].parse().unwrap());
    let agents = op.get("GET_AGENTS").await.unwrap().json.unwrap();
    let agent_id = agents["get_agents"]["agents"][0]["agent_info"]["id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    op.call(&json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
        "agent_id": {"value": agent_id},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5},
            "reservations": [{"type": "DYNAMIC", "role": "other", "principal": "ops"}]}]}}))
        .await
        .expect("RESERVE_RESOURCES");
    let mut sub = subscribe(&addrs[(l + 1) % 3], None).await;
    let fid = sub.client.framework_id().value.clone();

    let started = Instant::now();
    let deadline = started + STORM_WAIT;
    let mut storm = Storm::default();
    let mut kills = Vec::new();
    let mut last_reconcile = Instant::now();
    while !storm.all_done() {
        assert!(
            Instant::now() < deadline,
            "storm not over in {STORM_WAIT:?}: {:?}, open: {:?}",
            storm.summary(),
            storm
                .open()
                .iter()
                .map(|t| &t.task_id.value)
                .collect::<Vec<_>>()
        );
        if kills.len() < STORM_KILLS.len() && storm.launched.len() >= STORM_KILLS[kills.len()] {
            let l = wait_leader(&addrs, &[]).await;
            restart_master(&mut masters, &addrs, l, &etcd, work.path(), &extra);
            eprintln!(
                "storm: SIGKILLed the leader {} after {} launches ({:?} in)",
                addrs[l],
                storm.launched.len(),
                started.elapsed()
            );
            kills.push(l);
        }
        // Mesos' advice: reconcile what is still open until every answer is
        // final (an agent that has not re-registered yet answers UNKNOWN).
        if last_reconcile.elapsed() > Duration::from_secs(2) {
            let open = storm.open();
            if !open.is_empty() {
                let _ = sub.client.reconcile(open).await;
            }
            last_reconcile = Instant::now();
        }
        let event = match tokio::time::timeout(Duration::from_millis(500), sub.events.next()).await
        {
            Err(_) => continue,
            Ok(Ok(Some(e))) => e,
            Ok(end) => {
                // The leader died under the stream: subscribe again with the
                // framework id and ask about every open task.
                eprintln!("storm: the stream ended ({end:?}); re-subscribing");
                sub = resubscribe(&addrs, &fid, deadline).await;
                assert_eq!(sub.client.framework_id().value, fid);
                let open = storm.open();
                if !open.is_empty() {
                    let _ = sub.client.reconcile(open).await;
                }
                last_reconcile = Instant::now();
                continue;
            }
        };
        match event.event_type {
            masterlink::scheduler::EventType::Offers => {
                for offer in event.offers.unwrap().offers {
                    let fit = |name: &str, each: f64| {
                        ((offer.resources.scalar(name).value() + 1e-9) / each) as usize
                    };
                    let n = STORM_BATCH
                        .min(fit("cpus", 0.01))
                        .min(fit("mem", 8.0))
                        .min(STORM_TASKS - storm.launched.len());
                    if n == 0 {
                        let refuse = if storm.launched.len() == STORM_TASKS {
                            60.0
                        } else {
                            0.0
                        };
                        let _ = sub.client.decline(vec![offer.id.clone()], refuse).await;
                        continue;
                    }
                    let tasks: Vec<_> = (0..n)
                        .map(|k| {
                            let id = format!("storm-{:03}", storm.launched.len() + k);
                            command_task(&id, &offer, 0.01, 8.0, "sleep 1")
                        })
                        .collect();
                    let ids: Vec<String> = tasks.iter().map(|t| t.task_id.value.clone()).collect();
                    for t in &ids {
                        storm
                            .launched
                            .insert(t.clone(), offer.agent_id.value.clone());
                    }
                    let r = sub
                        .client
                        .accept(
                            vec![offer.id.clone()],
                            vec![masterlink::scheduler::Operation::launch(tasks)],
                            Some(masterlink::scheduler::Filters {
                                refuse_seconds: 0.0,
                            }),
                        )
                        .await;
                    if let Err(e) = r {
                        // Reconciliation will tell what became of them.
                        eprintln!("storm: ACCEPT: {e}");
                        storm.unaccepted.extend(ids);
                    }
                }
            }
            masterlink::scheduler::EventType::Update => {
                let s = event.update.unwrap().status;
                storm.record(&s);
                // A lost acknowledgement is resent by the agent (same uuid)
                // after it re-registers.
                let _ = sub.client.acknowledge(&s).await;
            }
            _ => {}
        }
    }
    let took = started.elapsed();
    let summary = storm.summary();
    eprintln!(
        "storm: {STORM_TASKS} tasks, {} leader kills, all terminal in {took:?}: {summary:?}",
        kills.len()
    );
    let not_finished: Vec<_> = storm
        .state
        .iter()
        .filter(|(_, s)| **s != TaskState::Finished)
        .map(|(t, s)| format!("{t} {s}"))
        .collect();
    eprintln!(
        "storm: not finished: {not_finished:?}; ACCEPT failed for {:?}",
        storm.unaccepted
    );
    assert_eq!(kills.len(), STORM_KILLS.len(), "{summary:?}");
    // Every task the agent ran is accounted for by its real end; the others
    // died with a leader before reaching the agent and were answered
    // terminal by the master (GONE/DROPPED).
    for t in &storm.ran {
        assert_eq!(
            storm.state[t],
            TaskState::Finished,
            "{t} ran but ended {}; its updates: {:?}",
            storm.state[t],
            storm
                .log
                .iter()
                .filter(|l| l.starts_with(t.as_str()))
                .collect::<Vec<_>>()
        );
    }
    assert!(
        storm.ran.len() >= STORM_TASKS / 2,
        "only {} of {STORM_TASKS} tasks ran: {summary:?}",
        storm.ran.len()
    );

    // The registry lost nothing: the final leader has the same agent
    // (registered, not merely recovered), its reservation and the
    // framework; the agent never restarted.
    let n = wait_leader(&addrs, &[]).await;
    let op = OperatorClient::new(&addrs[n].parse().unwrap());
    let agents = op.get("GET_AGENTS").await.unwrap().json.unwrap();
    let ids: Vec<&str> = agents["get_agents"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["agent_info"]["id"]["value"].as_str())
        .collect();
    assert_eq!(ids, [agent_id.as_str()], "{agents}");
    assert!(
        agents["get_agents"]["recovered_agents"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{agents}"
    );
    let frameworks = op.get("GET_FRAMEWORKS").await.unwrap().json.unwrap();
    let fids: Vec<&str> = frameworks["get_frameworks"]["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["framework_info"]["id"]["value"].as_str())
        .collect();
    assert_eq!(fids, [fid.as_str()], "{frameworks}");
    let s = state(&addrs[n]).await.unwrap();
    let slave = s["slaves"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == json!(agent_id)))
        .unwrap_or_else(|| panic!("no agent {agent_id} in {s}"));
    assert_eq!(
        slave["reserved_resources"]["other"]["cpus"],
        json!(0.5),
        "{slave}"
    );
    assert_eq!(agent.pid(), agent_pid);
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent died");
    assert!(agent.count("re-registered with master") >= STORM_KILLS.len());

    // Done: the framework leaves; the agent stops before `berth` removes
    // whatever container is left.
    let _ = sub.client.teardown().await;
    drop(agent);
    drop(berth);
}

/// pymesos pointed at a follower follows its 307 to the leader (it takes
/// the Location's host and port, MESOS-API.md §8) and runs its tasks there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymesos_follows_a_followers_redirect_to_the_leader() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (CI runs the integration tests as root)");
        return;
    }
    let Some(python) = common::pymesos_python() else {
        eprintln!("skipped: pymesos is not installed (bash tests/py/setup-pymesos.sh; CI runs it)");
        return;
    };
    let Some(etcd) = Etcd::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (_masters, addrs) = start_masters(&etcd, work.path(), &[]);
    let l = wait_leader(&addrs, &[]).await;
    let follower = addrs[(l + 1) % addrs.len()].clone();
    // Dropped in reverse: the agent stops before its containers go.
    let berth = Berth::new();
    let _agent = spawn_agent(&addrs, work.path(), &berth, "cpus:2;mem:512", &[]);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/py/pymesos_scheduler.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(&script).args(["--master", &follower, "3"]);
    let out = tokio::task::spawn_blocking(move || common::output_within(cmd, 120))
        .await
        .unwrap();
    let stdout = common::stdout(&out);
    assert!(
        out.status.success(),
        "pymesos through follower {follower}: {stdout}\n{}",
        common::stderr(&out)
    );
    let finished: std::collections::BTreeSet<String> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter(|u| u["state"] == "TASK_FINISHED")
        .map(|u| u["task_id"]["value"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(finished.len(), 3, "{stdout}");
}

/// Masters that authenticate, the clients pointed at a follower: the
/// credentials go along to the leader the 307 names (another port), for
/// operator calls, SUBSCRIBE and the calls after it, and `berth cluster`;
/// a wrong secret is still the leader's 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_follow_a_followers_redirect_to_the_leader() {
    let Some(etcd) = Etcd::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let creds = work.path().join("credentials");
    std::fs::write(&creds, "ops s3cret\n").unwrap();
    let flag = format!("--credentials={}", creds.display());
    let (_masters, addrs) = start_masters(&etcd, work.path(), &[&flag]);
    let l = wait_leader(&addrs, &[]).await;
    let follower = addrs[(l + 1) % addrs.len()].clone();
    let creds_for = |secret: &str| {
        Some(berth::mesos::Credentials {
            principal: "ops".into(),
            secret: secret.into(),
        })
    };
    let at_follower = |secret: &str| {
        follower
            .parse::<MasterAddr>()
            .unwrap()
            .with_credentials(creds_for(secret))
    };

    let answer = OperatorClient::new(&at_follower("s3cret"))
        .call(&json!({"type": "GET_FRAMEWORKS"}))
        .await
        .expect("GET_FRAMEWORKS through the follower with credentials");
    assert_eq!(answer.status, 200);
    let refused = OperatorClient::new(&at_follower("wrong"))
        .call(&json!({"type": "GET_FRAMEWORKS"}))
        .await
        .expect_err("a wrong secret is refused");
    assert!(refused.to_string().contains("401"), "{refused}");

    let sub = tokio::time::timeout(
        Duration::from_secs(30),
        SchedulerClient::subscribe(&at_follower("s3cret"), framework_info(None)),
    )
    .await
    .expect("SUBSCRIBE in time")
    .expect("SUBSCRIBE through the follower with credentials");
    assert_eq!(sub.client.master(), addrs[l], "it talks to the leader");
    sub.client
        .reconcile(Vec::new())
        .await
        .expect("a call after SUBSCRIBE carries the credentials");

    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::berth_bin())
            .args(["cluster", "frameworks", "--master", &follower])
            .args(["--principal", "ops", "--secret", "s3cret"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "berth cluster through the follower: {}",
        common::stderr(&out)
    );
    assert!(
        common::stdout(&out).contains("failover"),
        "{}",
        common::stdout(&out)
    );
}
