//! Failover times on loopback (issue 9's measures; a benchmark: it prints
//! figures and asserts none of them).
//!
//! * Master failover: three real `berth master --registry etcd://...`
//!   processes on a real etcd (Debian's etcd-server, started here), with
//!   1, 100 and 1,000 *simulated agents*: tasks of this process speaking
//!   the real masterlink protocol over HTTP (`agent::link`: the REGISTER
//!   stream, PONG for every PING, a 307 followed at once to the leader in
//!   `Location`, a 503 or a lost stream retried at the next master of the
//!   list after a random delay within 1 s, as `berth agent` does), with no
//!   containers. The leader is SIGKILLed; measured: the new leader's
//!   "elected leader" and "leading" log lines, the first and the last
//!   simulated agent re-registered with it (same agent id).
//! * Agent recovery: a real `berth agent` (root: containers) with 100
//!   running `sleep` tasks is SIGKILLed and started again; measured: its
//!   "recovered agent" line (every container re-adopted), its
//!   "re-registered with master" line, and its `/state` showing all 100
//!   tasks running.
//!
//!     cargo bench -p berth --bench failover [-- AGENTS...]
//!
//! Without etcd the master part prints why and is skipped; without root
//! the agent part is.

#[path = "../../master/tests/etcd_harness/mod.rs"]
mod etcd_harness;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::link::{self, LinkError, StreamEvent};
use berth::mesos::scheduler::SchedulerClient;
use masterlink::protocol::{AgentCall, AgentInfo, MasterMessage, Pong, Register, PROTOCOL_VERSION};
use masterlink::resources::Resources;
use masterlink::scheduler::{AgentID, EventType, Filters, FrameworkInfo, Operation, TaskInfo};
use serde_json::{json, Value as Json};

/// The masters' election lease TTL (etcd's minimum): the failover time is
/// about this plus the re-registrations.
const TTL: &str = "2s";
/// `berth agent`'s first bound of the random re-registration delay.
const AGENT_BACKOFF: Duration = Duration::from_secs(1);
/// Redirects a simulated agent follows in a row before it backs off (as
/// `berth agent`).
const MAX_REDIRECTS: u32 = 3;
/// Bound on one registration round (all agents registered, or all
/// re-registered after the kill); what was reached is printed past it.
const ROUND: Duration = Duration::from_secs(180);

fn berth() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

/// A berth process whose stderr lines are kept with the time each was read.
struct Daemon {
    child: Child,
    spawned: Instant,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Daemon {
    fn spawn(args: &[String]) -> Daemon {
        let spawned = Instant::now();
        let mut child = Command::new(berth())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn berth");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = child.stderr.take().unwrap();
        // Drained all the time, so the daemon never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        Daemon {
            child,
            spawned,
            lines,
        }
    }

    /// When the first line containing `needle` read at or after `since`
    /// came, waiting up to `within` for it.
    fn line_after(&self, needle: &str, since: Instant, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|(t, l)| *t >= since && l.contains(needle))
                .map(|(t, _)| *t);
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn listening(&self) -> String {
        let line = self
            .lines
            .lock()
            .unwrap()
            .iter()
            .find(|(_, l)| l.contains("listening on"))
            .map(|(_, l)| l.clone())
            .unwrap_or_default();
        line.split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_default()
            .to_string()
    }

    fn wait_listening(&self) -> String {
        self.line_after("listening on", self.spawned, ROUND)
            .expect("the daemon did not listen");
        self.listening()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let counts: Vec<usize> = {
        let given: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        if given.is_empty() {
            vec![1, 100, 1000]
        } else {
            given
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    if etcd_harness::etcd_binary().is_some() {
        for &n in &counts {
            rows.push(runtime.block_on(master_failover(n)));
        }
    }
    let recovery = if nix::unistd::geteuid().is_root() {
        Some(runtime.block_on(agent_recovery(100)))
    } else {
        println!("agent recovery skipped: needs root (the agent runs containers)");
        None
    };

    println!();
    println!(
        "Master failover: 3 masters on one etcd (election TTL {TTL}), leader SIGKILLed; \
         simulated agents re-register after a random delay within {} ms (berth agent's \
         backoff). Times in ms from the SIGKILL unless said.",
        AGENT_BACKOFF.as_millis()
    );
    println!();
    println!(
        "| agents | initial registration (from the agents' start) | new leader elected | leading (registry recovered) | \
         first agent re-registered | all agents re-registered | note |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    if let Some(r) = recovery {
        println!();
        println!(
            "Agent recovery: `berth agent` SIGKILLed with 100 running `sleep` containers, \
             started again. Times in ms from the new process's start."
        );
        println!();
        println!("| containers | recovered (all re-adopted) | re-registered | /state: all running | note |");
        println!("|---|---|---|---|---|");
        println!("{r}");
    }
}

/// Where each simulated agent stands: registered with which master since
/// when, under which id.
#[derive(Clone, Default)]
struct Reg {
    master: Option<String>,
    at: Option<Instant>,
    id: Option<String>,
}

type Regs = Arc<Mutex<Vec<Reg>>>;

/// Three masters on a fresh etcd, `n` simulated agents; SIGKILLs the
/// leader once all have registered. One table row.
async fn master_failover(n: usize) -> String {
    let etcd = etcd_harness::Etcd::start().expect("etcd");
    let work = tempfile::Builder::new()
        .prefix("berth-bench-failover-")
        .tempdir()
        .unwrap();
    let mut masters: Vec<Daemon> = (0..3)
        .map(|i| {
            Daemon::spawn(&[
                "master".into(),
                "--port=0".into(),
                format!("--work-dir={}", work.path().join(format!("m{i}")).display()),
                format!("--registry=etcd://{}/bench/", etcd.endpoint()),
                format!("--election-ttl={TTL}"),
                "--hostname=127.0.0.1".into(),
                // Agents are away only for the failover; none may be marked
                // unreachable while the new leader works through them.
                "--agent-reregister-timeout=10mins".into(),
            ])
        })
        .collect();
    let addrs: Vec<String> = masters.iter().map(|m| m.wait_listening()).collect();
    let old = wait_leader(&masters, masters[0].spawned).await;
    let leader = addrs[old].clone();

    let regs: Regs = Arc::new(Mutex::new(vec![Reg::default(); n]));
    let client = link::client(None);
    let list = Arc::new(addrs.clone());
    let started = Instant::now();
    let agents: Vec<_> = (0..n)
        .map(|i| tokio::spawn(sim_agent(i, list.clone(), client.clone(), regs.clone())))
        .collect();
    let (reached, _) =
        wait_registered(&regs, n, |r| r.master.as_deref() == Some(&leader), started).await;
    let initial = started.elapsed();
    if reached < n {
        for a in agents {
            a.abort();
        }
        return format!(
            "| {n} | only {reached} of {n} in {} | - | - | - | - | the leader did not admit them all within {ROUND:?} |",
            ms(initial)
        );
    }
    let ids: Vec<Option<String>> = regs.lock().unwrap().iter().map(|r| r.id.clone()).collect();

    let killed = Instant::now();
    masters[old].kill9();
    let (reached, first) = wait_registered(
        &regs,
        n,
        |r| r.master.as_deref().is_some_and(|m| m != leader) && r.at.is_some_and(|t| t > killed),
        killed,
    )
    .await;
    let all = killed.elapsed();
    // Read the leader's lines only now: they were printed meanwhile.
    let new = (0..3).filter(|i| *i != old).find(|i| {
        masters[*i]
            .line_after("leading (term", killed, Duration::ZERO)
            .is_some()
    });
    let elected = new.and_then(|i| masters[i].line_after("elected leader", killed, Duration::ZERO));
    let leading = new.and_then(|i| masters[i].line_after("leading (term", killed, Duration::ZERO));
    let same_ids = regs
        .lock()
        .unwrap()
        .iter()
        .zip(&ids)
        .filter(|(r, id)| r.id == **id)
        .count();
    for a in agents {
        a.abort();
    }
    let since = |t: Option<Instant>| t.map(|t| ms(t - killed)).unwrap_or_else(|| "-".into());
    let mut note = Vec::new();
    if same_ids < n {
        note.push(format!("only {same_ids} kept their agent id"));
    }
    let all_cell = if reached == n {
        ms(all)
    } else {
        note.push(format!(
            "only {reached} of {n} re-registered within {ROUND:?}"
        ));
        format!("{reached} of {n} after {}", ms(all))
    };
    drop(masters);
    drop(etcd);
    format!(
        "| {n} | {} | {} | {} | {} | {all_cell} | {} |",
        ms(initial),
        since(elected),
        since(leading),
        since(first),
        note.join("; ")
    )
}

/// The master that logged "leading" (after `since`), waiting up to 30 s.
async fn wait_leader(masters: &[Daemon], since: Instant) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(i) = masters.iter().position(|m| {
            m.line_after("leading (term", since, Duration::ZERO)
                .is_some()
        }) {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded by [`ROUND`]) until all `n` agents satisfy `done`;
/// returns how many did and when the first one got there.
async fn wait_registered(
    regs: &Regs,
    n: usize,
    done: impl Fn(&Reg) -> bool,
    since: Instant,
) -> (usize, Option<Instant>) {
    let deadline = since + ROUND;
    loop {
        let (count, first) = {
            let r = regs.lock().unwrap();
            let ok: Vec<&Reg> = r.iter().filter(|r| done(r)).collect();
            (ok.len(), ok.iter().filter_map(|r| r.at).min())
        };
        if count == n || Instant::now() >= deadline {
            return (count, first);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A random delay within `bound`, as `berth agent` spreads re-registrations.
fn jitter(bound: Duration) -> Duration {
    let mut b = [0u8; 8];
    // getrandom(2) never fails for 8 bytes; zeroes would just mean no delay.
    // SAFETY: writes at most 8 bytes into `b`.
    let _ = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    let ms = bound.as_millis().max(1) as u64;
    Duration::from_millis(u64::from_le_bytes(b) % ms)
}

/// Simulated agent `i`: registers (first with master `i % 3`), answers
/// PINGs, and re-registers with its id whenever its stream ends.
async fn sim_agent(i: usize, masters: Arc<Vec<String>>, client: reqwest::Client, regs: Regs) {
    let mut listed = i % masters.len();
    let mut target = masters[listed].clone();
    let mut id: Option<AgentID> = None;
    let mut redirects = 0;
    let resources: Resources = masterlink::resources::parse("cpus:4;mem:8192").unwrap();
    loop {
        let register = AgentCall::Register(Register {
            protocol_version: PROTOCOL_VERSION,
            version: "bench".into(),
            agent_info: AgentInfo {
                hostname: format!("sim{i}"),
                port: 20000 + (i % 40000) as u16,
                ip: "127.0.0.1".into(),
                resources: resources.clone(),
                attributes: Vec::new(),
                id: id.clone(),
            },
            boot_id: "bench-boot".into(),
            tasks: Vec::new(),
            frameworks: Vec::new(),
            checkpointed_resources: Resources::new(),
            previous_agent_id: None,
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let url = link::url(&target);
        let stream = tokio::spawn(link::open_stream(
            client.clone(),
            url.clone(),
            register,
            move |e| {
                let _ = tx.send(e);
            },
        ));
        let mut stream_id = String::new();
        let end = loop {
            match rx.recv().await {
                Some(StreamEvent::Message(m)) => match *m {
                    MasterMessage::Registered {
                        agent_id,
                        stream_id: s,
                        ..
                    } => {
                        redirects = 0;
                        stream_id = s;
                        id = Some(agent_id.clone());
                        regs.lock().unwrap()[i] = Reg {
                            master: Some(target.clone()),
                            at: Some(Instant::now()),
                            id: Some(agent_id.value),
                        };
                    }
                    MasterMessage::Ping { id: ping } => {
                        let call = AgentCall::Pong(Pong {
                            agent_id: id.clone().unwrap_or_else(|| AgentID::new("")),
                            ping,
                        });
                        let (client, url, sid) = (client.clone(), url.clone(), stream_id.clone());
                        tokio::spawn(async move {
                            let _ = link::post(&client, &url, &sid, &call).await;
                        });
                    }
                    _ => {}
                },
                Some(StreamEvent::Ended(e)) => break e,
                None => break LinkError::Closed,
            }
        };
        stream.abort();
        {
            let mut r = regs.lock().unwrap();
            r[i].master = None;
            r[i].at = None;
        }
        match end {
            // Followed at once, as the agent does, a few times in a row.
            LinkError::Redirected { leader, .. } if redirects < MAX_REDIRECTS => {
                redirects += 1;
                target = leader;
                continue;
            }
            _ => {
                redirects = 0;
                listed = (listed + 1) % masters.len();
                target = masters[listed].clone();
                tokio::time::sleep(jitter(AGENT_BACKOFF)).await;
            }
        }
    }
}

/// A real agent with `n` running `sleep` containers, SIGKILLed and started
/// again. One table row.
async fn agent_recovery(n: usize) -> String {
    let work = tempfile::Builder::new()
        .prefix("berth-bench-recovery-")
        .tempdir()
        .unwrap();
    let launcher_root = work.path().join("containers");
    let master = Daemon::spawn(&[
        "master".into(),
        "--port=0".into(),
        format!("--work-dir={}", work.path().join("master").display()),
        "--allocation-interval=100ms".into(),
    ]);
    let addr = master.wait_listening();
    let agent_args: Vec<String> = vec![
        "agent".into(),
        format!("--master={addr}"),
        "--port=0".into(),
        format!("--work-dir={}", work.path().join("agent").display()),
        format!("--launcher-root={}", launcher_root.display()),
        "--resources=cpus:4;mem:4096".into(),
    ];
    let mut agent = Daemon::spawn(&agent_args);
    agent.wait_listening();
    let row = run_recovery(n, &addr, &mut agent, &agent_args).await;
    drop(agent);
    // The tasks were killed with their framework; remove what is left.
    remove_containers(&launcher_root);
    drop(master);
    row
}

async fn run_recovery(n: usize, addr: &str, agent: &mut Daemon, args: &[String]) -> String {
    let info: FrameworkInfo = serde_json::from_value(json!({
        "user": "root", "name": "bench-recovery", "roles": ["bench"],
        "failover_timeout": 3600.0, "checkpoint": true,
        "capabilities": [{"type": "MULTI_ROLE"}],
    }))
    .unwrap();
    let mut sub = SchedulerClient::subscribe(&addr.parse().unwrap(), info)
        .await
        .expect("subscribe");
    let mut launched = 0;
    let mut running = std::collections::BTreeSet::new();
    let deadline = Instant::now() + ROUND;
    while running.len() < n {
        if Instant::now() > deadline {
            let _ = sub.client.teardown().await;
            return format!(
                "| {n} | - | - | - | only {} of {n} ran within {ROUND:?} |",
                running.len()
            );
        }
        let Ok(e) = tokio::time::timeout(Duration::from_secs(1), sub.events.next()).await else {
            continue;
        };
        let e = e.expect("event stream").expect("stream open");
        match e.event_type {
            EventType::Offers => {
                for offer in e.offers.unwrap().offers {
                    let k = (n - launched).min(20);
                    if k == 0 {
                        sub.client.decline(vec![offer.id], 60.0).await.unwrap();
                        continue;
                    }
                    let tasks: Vec<TaskInfo> = (launched..launched + k)
                        .map(|t| {
                            serde_json::from_value(json!({
                                "name": format!("sleep-{t}"), "task_id": {"value": format!("sleep-{t}")},
                                "agent_id": offer.agent_id,
                                "resources": [
                                    {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.01}},
                                    {"name": "mem", "type": "SCALAR", "scalar": {"value": 8}}],
                                "command": {"value": "sleep 600"},
                            }))
                            .unwrap()
                        })
                        .collect();
                    launched += k;
                    sub.client
                        .accept(
                            vec![offer.id],
                            vec![Operation::launch(tasks)],
                            Some(Filters {
                                refuse_seconds: 0.0,
                            }),
                        )
                        .await
                        .unwrap();
                }
            }
            EventType::Update => {
                let s = e.update.unwrap().status;
                if s.state == masterlink::scheduler::TaskState::Running {
                    running.insert(s.task_id.value.clone());
                }
                let _ = sub.client.acknowledge(&s).await;
            }
            _ => {}
        }
    }

    agent.kill9();
    let started = Instant::now();
    *agent = Daemon::spawn(args);
    let recovered = agent.line_after("recovered agent", started, ROUND);
    let reregistered = agent.line_after("re-registered with master", started, ROUND);
    let endpoint = agent.wait_listening();
    let mut all_running = None;
    let until = Instant::now() + ROUND;
    while Instant::now() < until {
        let state: Option<Json> = match reqwest::get(format!("http://{endpoint}/state")).await {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        let count = state
            .as_ref()
            .and_then(|s| s["frameworks"].as_array())
            .map(|fs| {
                fs.iter()
                    .flat_map(|f| f["executors"].as_array().cloned().unwrap_or_default())
                    .flat_map(|e| e["tasks"].as_array().cloned().unwrap_or_default())
                    .filter(|t| t["state"] == "TASK_RUNNING")
                    .count()
            })
            .unwrap_or(0);
        if count == n {
            all_running = Some(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = sub.client.teardown().await;
    // The agent's own count, so the row shows what "recovered" covered.
    let said = agent
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| *t >= started)
        .find_map(|(_, l)| {
            l.split("berth agent: ")
                .nth(1)
                .filter(|l| l.starts_with("recovered agent"))
        })
        .map(str::to_string)
        .unwrap_or_default();
    let since = |t: Option<Instant>| t.map(|t| ms(t - started)).unwrap_or_else(|| "-".into());
    format!(
        "| {n} | {} | {} | {} | \"{said}\" |",
        since(recovered),
        since(reregistered),
        since(all_running)
    )
}

/// `berth rm -f` of every container under `root` (the agent is stopped).
fn remove_containers(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "names" || !e.path().is_dir() {
            continue;
        }
        let _ = Command::new(berth())
            .arg("--root")
            .arg(root)
            .args(["rm", "-f", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
