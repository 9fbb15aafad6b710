//! The agent against a scripted master: registration and re-registration,
//! status updates (order, one in flight, resends, acknowledgements), and
//! real command tasks in containers (sandbox output, exit mapping, kill
//! with a grace period, memory limit and OOM, agent restart).
//!
//! The agent runs in this process (its supervisors are the real berth
//! binary); the master is a small axum server speaking masterlink v1.
//! Tests that run containers need root and print "skipped: ..." without.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use masterlink::protocol::{AgentCall, MasterMessage, Register};
use masterlink::scheduler::{
    AgentID, CommandInfo, DurationInfo, ExecutorID, ExecutorInfo, FrameworkCapability,
    FrameworkCapabilityType, FrameworkID, FrameworkInfo, KillPolicy, MasterInfo, Reason, TaskID,
    TaskInfo, TaskState, TaskStatus,
};
use tokio::sync::mpsc;

const AGENT_ID: &str = "M-S0";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! need_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root (containers with cgroups)");
            return;
        }
    };
}

/// What the scripted master has seen, and its stream to the agent.
#[derive(Default)]
struct Seen {
    registers: Vec<Register>,
    calls: Vec<AgentCall>,
    stream: Option<mpsc::UnboundedSender<Bytes>>,
    ping_interval: f64,
}

#[derive(Clone)]
struct FakeMaster {
    seen: Arc<Mutex<Seen>>,
    addr: String,
}

async fn agent_api(State(m): State<FakeMaster>, body: Bytes) -> Response {
    let call = AgentCall::parse(&body).expect("the agent sends valid calls");
    let mut seen = m.seen.lock().unwrap();
    if let AgentCall::Register(r) = call {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let registered = MasterMessage::Registered {
            agent_id: AgentID::new(AGENT_ID),
            stream_id: format!("stream-{}", seen.registers.len()),
            master_info: MasterInfo {
                id: "master".into(),
                ip: 16777343,
                port: 5050,
                pid: Some(format!("master@{}", m.addr)),
                hostname: None,
                version: None,
                address: None,
                domain: None,
                capabilities: Vec::new(),
            },
            ping_interval_secs: seen.ping_interval,
        };
        tx.send(Bytes::from(registered.to_record())).unwrap();
        seen.registers.push(r);
        seen.stream = Some(tx);
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(body))
            .unwrap();
    }
    seen.calls.push(call);
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .body(Body::empty())
        .unwrap()
}

impl FakeMaster {
    async fn start(ping_interval: f64) -> FakeMaster {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let m = FakeMaster {
            seen: Arc::new(Mutex::new(Seen {
                ping_interval,
                ..Default::default()
            })),
            addr,
        };
        let app = axum::Router::new()
            .route(
                masterlink::protocol::AGENT_API_PATH,
                axum::routing::post(agent_api),
            )
            .with_state(m.clone());
        tokio::spawn(async move { axum::serve(l, app).await });
        m
    }

    fn send(&self, msg: MasterMessage) {
        let seen = self.seen.lock().unwrap();
        let tx = seen.stream.as_ref().expect("the agent is registered");
        tx.send(Bytes::from(msg.to_record())).unwrap();
    }

    fn registers(&self) -> Vec<Register> {
        self.seen.lock().unwrap().registers.clone()
    }

    /// Every status update received for `task`, resends included.
    fn updates(&self, task: &str) -> Vec<TaskStatus> {
        self.seen
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter_map(|c| match c {
                AgentCall::StatusUpdate(u) if u.status.task_id.value == task => {
                    Some(u.status.clone())
                }
                _ => None,
            })
            .collect()
    }

    async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; calls: {:#?}",
                self.seen.lock().unwrap().calls
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for an update of `task` in `state` and returns it.
    async fn update_in(&self, task: &str, state: TaskState, timeout: Duration) -> TaskStatus {
        self.wait_for(&format!("{task} {state}"), timeout, |m| {
            m.updates(task).into_iter().find(|s| s.state == state)
        })
        .await
    }

    async fn registered(&self, n: usize) -> Register {
        self.wait_for(&format!("REGISTER #{n}"), Duration::from_secs(10), |m| {
            m.registers().get(n - 1).cloned()
        })
        .await
    }

    fn ack(&self, status: &TaskStatus) {
        self.send(MasterMessage::Acknowledge {
            framework_id: FrameworkID::new("F-0000"),
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone().unwrap(),
        });
    }

    /// Acknowledges every update of `task` as it comes, until `state`.
    async fn ack_until(&self, task: &str, state: TaskState, timeout: Duration) -> Vec<TaskStatus> {
        let deadline = Instant::now() + timeout;
        let mut acked: Vec<TaskStatus> = Vec::new();
        loop {
            let next = self
                .updates(task)
                .into_iter()
                .find(|s| !acked.iter().any(|a| a.uuid == s.uuid));
            if let Some(s) = next {
                self.ack(&s);
                acked.push(s.clone());
                if s.state == state {
                    return acked;
                }
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {task} {state}; acked {:?}",
                acked.iter().map(|s| s.state).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct TestAgent {
    work: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
    endpoint: String,
}

impl TestAgent {
    async fn start(master: &FakeMaster) -> TestAgent {
        let work = tempfile::Builder::new()
            .prefix("agent-test")
            .tempdir_in(target_tmp())
            .unwrap();
        Self::start_in(master, work).await
    }

    async fn start_in(master: &FakeMaster, work: tempfile::TempDir) -> TestAgent {
        let flags = agent::Flags {
            master: master.addr.clone(),
            ip: "127.0.0.1".into(),
            port: 0,
            work_dir: work.path().to_path_buf(),
            resources: Some("cpus:2;mem:1024;disk:1024".into()),
            status_update_retry_interval: Some("300ms".into()),
            ..Default::default()
        };
        let mut cfg = flags.into_config().unwrap();
        cfg.supervisor_exe = Some(PathBuf::from(env!("CARGO_BIN_EXE_berth")));
        let a = agent::Agent::start(cfg).await.unwrap();
        let endpoint = a.local_addr().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            a.run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestAgent {
            work,
            stop: Some(stop),
            done: Some(done),
            endpoint,
        }
    }

    /// Stops the agent (its containers keep running) and hands back its
    /// work directory.
    async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.done.take().unwrap().await.unwrap();
        let dir = tempfile::Builder::new().tempdir().unwrap();
        std::mem::replace(&mut self.work, dir)
    }

    fn launcher(&self) -> launcher::Launcher {
        launcher::Launcher::open(self.work.path().join("containers")).unwrap()
    }

    fn sandbox(&self, status: &TaskStatus) -> PathBuf {
        let cid = container_id(status);
        let t = &status.task_id.value;
        self.work.path().canonicalize().unwrap().join(format!(
            "slaves/{AGENT_ID}/frameworks/F-0000/executors/{t}/runs/{cid}"
        ))
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        let url = format!("http://{}{path}", self.endpoint);
        let body = tokio::task::spawn_blocking(move || http_get(&url))
            .await
            .unwrap();
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        // Containers left by a failed test: remove them with their cgroups.
        if let Ok(l) = launcher::Launcher::open(self.work.path().join("containers")) {
            for (_, st, _) in l.list() {
                let _ = l.remove(&st.id, true);
            }
        }
    }
}

/// A tiny blocking HTTP GET (the agent's endpoints are plain HTTP/1.1).
fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    if out
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // Join the chunks.
        let mut joined = String::new();
        let mut rest = body;
        while let Some(i) = rest.find("\r\n") {
            let n = usize::from_str_radix(rest[..i].trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            joined.push_str(&rest[i + 2..i + 2 + n]);
            rest = &rest[i + 2 + n + 2..];
        }
        return joined;
    }
    body.to_string()
}

fn target_tmp() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn container_id(s: &TaskStatus) -> String {
    s.container_status
        .as_ref()
        .and_then(|c| c.container_id.as_ref())
        .map(|c| c.value.clone())
        .expect("updates carry the container id")
}

fn framework(capabilities: &[FrameworkCapabilityType]) -> FrameworkInfo {
    let mut f = FrameworkInfo::new("root", "test");
    f.id = Some(FrameworkID::new("F-0000"));
    f.checkpoint = true;
    f.capabilities = capabilities
        .iter()
        .map(|c| FrameworkCapability {
            capability_type: c.clone(),
        })
        .collect();
    f
}

fn task(id: &str, cmd: CommandInfo, resources: &str) -> TaskInfo {
    TaskInfo {
        name: id.into(),
        task_id: TaskID::new(id),
        agent_id: AgentID::new(AGENT_ID),
        resources: masterlink::resources::parse(resources).unwrap(),
        executor: None,
        command: Some(cmd),
        container: None,
        health_check: None,
        check: None,
        kill_policy: None,
        data: None,
        labels: None,
        discovery: None,
        max_completion_time: None,
        limits: Default::default(),
    }
}

fn run(master: &FakeMaster, f: FrameworkInfo, t: TaskInfo) {
    master.send(MasterMessage::RunTask {
        framework_info: f,
        task: t,
    });
}

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_answers_pings_and_reregisters_with_its_id() {
    // Pings every 0.2 s are expected; the master sends only one: after three
    // silent intervals the agent registers again, with the id it was given.
    let m = FakeMaster::start(0.2).await;
    let a = TestAgent::start(&m).await;
    let first = m.registered(1).await;
    assert_eq!(first.agent_info.id, None);
    assert_eq!(
        first.protocol_version,
        masterlink::protocol::PROTOCOL_VERSION
    );
    assert_eq!(first.agent_info.resources.scalar("cpus").value(), 2.0);
    assert!(!first.boot_id.is_empty());
    m.send(MasterMessage::Ping { id: 41 });
    m.wait_for("PONG", T, |m| {
        m.seen.lock().unwrap().calls.iter().find_map(|c| match c {
            AgentCall::Pong(p) if p.ping == 41 && p.agent_id.value == AGENT_ID => Some(()),
            _ => None,
        })
    })
    .await;
    let again = m.registered(2).await;
    assert_eq!(again.agent_info.id, Some(AgentID::new(AGENT_ID)));
    let metrics = a.get("/metrics/snapshot").await;
    assert!(metrics["slave/uptime_secs"].as_f64().unwrap() > 0.0);
    assert_eq!(metrics["slave/cpus_total"], 2.0);
    let state = a.get("/state").await;
    assert_eq!(state["id"], AGENT_ID);
    assert_eq!(state["resources"]["mem"], 1024.0);
    // Checkpointed: meta/slaves/latest -> the id.
    let latest = std::fs::read_link(a.work.path().join("meta/slaves/latest")).unwrap();
    assert_eq!(latest, Path::new(AGENT_ID));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_tasks_and_unknown_kills_are_answered() {
    let m = FakeMaster::start(60.0).await;
    let _a = TestAgent::start(&m).await;
    m.registered(1).await;
    let mut t = task("exec", CommandInfo::shell("true"), "cpus:0.1;mem:32");
    t.executor = Some(ExecutorInfo {
        executor_type: None,
        executor_id: ExecutorID::new("e"),
        framework_id: None,
        command: Some(CommandInfo::shell("my-executor")),
        container: None,
        resources: Default::default(),
        name: None,
        source: None,
        data: None,
        discovery: None,
        shutdown_grace_period: None,
        labels: None,
    });
    t.command = None;
    run(&m, framework(&[]), t);
    let s = m.update_in("exec", TaskState::Error, T).await;
    assert_eq!(
        s.message.as_deref(),
        Some("custom executors are not supported yet")
    );
    assert_eq!(s.agent_id, Some(AgentID::new(AGENT_ID)));
    assert!(s.uuid.is_some());
    m.send(MasterMessage::KillTask {
        framework_id: FrameworkID::new("F-0000"),
        task_id: TaskID::new("nope"),
        kill_policy: None,
    });
    let s = m.update_in("nope", TaskState::Lost, T).await;
    assert_eq!(s.reason, Some(Reason::TaskUnknown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_with_updates_in_order_one_in_flight() {
    need_root!();
    let m = FakeMaster::start(60.0).await;
    let a = TestAgent::start(&m).await;
    m.registered(1).await;
    let mut cmd = CommandInfo::shell(
        "echo \"hello from $MESOS_TASK_ID in $PWD\"; echo oops >&2; echo $MESOS_SANDBOX > where",
    );
    cmd.environment = Some(masterlink::scheduler::Environment {
        variables: vec![masterlink::scheduler::EnvironmentVariable::new("X", "y")],
    });
    run(&m, framework(&[]), task("echo", cmd, "cpus:0.5;mem:64"));
    let starting = m.update_in("echo", TaskState::Starting, T).await;
    // Nothing else until STARTING is acknowledged, but STARTING is resent
    // (same uuid) after the retry interval.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let so_far = m.updates("echo");
    assert!(so_far.len() >= 2, "no resend: {so_far:?}");
    assert!(so_far.iter().all(|s| s.uuid == starting.uuid), "{so_far:?}");
    let acked = m.ack_until("echo", TaskState::Finished, T).await;
    let states: Vec<TaskState> = acked.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [TaskState::Starting, TaskState::Running, TaskState::Finished]
    );
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
    assert_eq!(finished.executor_id, Some(ExecutorID::new("echo")));
    let sandbox = a.sandbox(finished);
    let out = std::fs::read_to_string(sandbox.join("stdout")).unwrap();
    assert_eq!(out, format!("hello from echo in {}\n", sandbox.display()));
    assert_eq!(
        std::fs::read_to_string(sandbox.join("stderr")).unwrap(),
        "oops\n"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.join("where"))
            .unwrap()
            .trim(),
        sandbox.display().to_string()
    );
    // Checkpoints: task.info and every update and ack.
    let meta = a.work.path().canonicalize().unwrap().join(format!(
        "meta/slaves/{AGENT_ID}/frameworks/F-0000/executors/echo/runs/{}/tasks/echo",
        container_id(finished)
    ));
    assert!(meta.join("task.info").is_file());
    let log = std::fs::read_to_string(meta.join("task.updates")).unwrap();
    assert_eq!(log.lines().count(), 6, "{log}");
    // Once the terminal update is acknowledged the container's state goes;
    // the sandbox stays.
    let cid = container_id(finished);
    m.wait_for("container removal", T, |_| {
        a.launcher().load(&cid).is_err().then_some(())
    })
    .await;
    assert!(sandbox.join("stdout").exists());
    let metrics = a.get("/metrics/snapshot").await;
    assert_eq!(metrics["slave/tasks_finished"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_launch_failures_map_to_states() {
    need_root!();
    let m = FakeMaster::start(60.0).await;
    let _a = TestAgent::start(&m).await;
    m.registered(1).await;
    run(
        &m,
        framework(&[]),
        task("three", CommandInfo::shell("exit 3"), "cpus:0.1;mem:32"),
    );
    let mut exec = CommandInfo::shell("/no/such/binary");
    exec.shell = false;
    exec.arguments = vec!["/no/such/binary".into()];
    run(&m, framework(&[]), task("missing", exec, "cpus:0.1;mem:32"));
    let failed = m.ack_until("three", TaskState::Failed, T).await;
    assert_eq!(
        failed.last().unwrap().message.as_deref(),
        Some("Command exited with status 3")
    );
    let missing = m.ack_until("missing", TaskState::Failed, T).await;
    let last = missing.last().unwrap();
    assert_eq!(last.reason, Some(Reason::ContainerLaunchFailed));
    assert!(
        last.message.as_deref().unwrap().contains("/no/such/binary"),
        "{last:?}"
    );
    // (Death by signal is in the kill test: init, pid 1 of its namespace,
    // cannot be killed from inside it.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_sends_sigterm_then_sigkill_after_the_grace_period() {
    need_root!();
    let m = FakeMaster::start(60.0).await;
    let a = TestAgent::start(&m).await;
    m.registered(1).await;
    let fw = framework(&[FrameworkCapabilityType::TaskKillingState]);
    // Handles SIGTERM: ends at once.
    run(
        &m,
        fw.clone(),
        task(
            "polite",
            CommandInfo::shell(
                "trap 'echo got TERM; exit 0' TERM; echo up; while true; do sleep 0.1; done",
            ),
            "cpus:0.1;mem:32",
        ),
    );
    // Ignores SIGTERM (children inherit it): needs SIGKILL after 1 s.
    let mut stubborn = task(
        "stubborn",
        CommandInfo::shell("trap '' TERM; echo up; while true; do sleep 0.1; done"),
        "cpus:0.1;mem:32",
    );
    stubborn.kill_policy = Some(KillPolicy {
        grace_period: Some(DurationInfo {
            nanoseconds: 1_000_000_000,
        }),
    });
    run(&m, fw.clone(), stubborn);
    for t in ["polite", "stubborn"] {
        let r = m.ack_until(t, TaskState::Running, T).await;
        let sandbox = a.sandbox(r.last().unwrap());
        m.wait_for("output", T, |_| {
            std::fs::read_to_string(sandbox.join("stdout"))
                .ok()
                .filter(|s| s.contains("up"))
        })
        .await;
    }
    let t0 = Instant::now();
    for t in ["polite", "stubborn"] {
        m.send(MasterMessage::KillTask {
            framework_id: FrameworkID::new("F-0000"),
            task_id: TaskID::new(t),
            // The stubborn task's own policy applies; the polite one gets 10 s.
            kill_policy: (t == "polite").then_some(KillPolicy {
                grace_period: Some(DurationInfo {
                    nanoseconds: 10_000_000_000,
                }),
            }),
        });
    }
    let polite = m.ack_until("polite", TaskState::Killed, T).await;
    let polite_time = t0.elapsed();
    let states: Vec<TaskState> = polite.iter().map(|s| s.state).collect();
    assert_eq!(
        &states[2..],
        [TaskState::Killing, TaskState::Killed],
        "{states:?}"
    );
    assert!(polite_time < Duration::from_secs(5), "{polite_time:?}");
    let out = std::fs::read_to_string(a.sandbox(&polite[3]).join("stdout")).unwrap();
    assert!(out.contains("got TERM"), "{out}");
    let stubborn = m.ack_until("stubborn", TaskState::Killed, T).await;
    let stubborn_time = t0.elapsed();
    assert!(stubborn_time >= Duration::from_secs(1), "{stubborn_time:?}");
    assert_eq!(
        stubborn.last().unwrap().message.as_deref(),
        Some("Command terminated with signal SIGKILL")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_is_set_and_oom_is_reported() {
    need_root!();
    let m = FakeMaster::start(60.0).await;
    let a = TestAgent::start(&m).await;
    m.registered(1).await;
    run(
        &m,
        framework(&[]),
        task("limited", CommandInfo::shell("sleep 30"), "cpus:0.5;mem:48"),
    );
    let r = m.ack_until("limited", TaskState::Running, T).await;
    let cid = container_id(r.last().unwrap());
    let (_, st, _) = a.launcher().load(&cid).unwrap();
    let cg = st.cgroup.expect("the container has a cgroup");
    let limit = cg
        .dirs()
        .iter()
        .find_map(|d| {
            std::fs::read_to_string(d.join("memory.limit_in_bytes"))
                .or_else(|_| std::fs::read_to_string(d.join("memory.max")))
                .ok()
        })
        .expect("a memory limit file");
    assert_eq!(limit.trim(), (48u64 << 20).to_string());
    let quota = cg.dirs().iter().find_map(|d| {
        std::fs::read_to_string(d.join("cpu.cfs_quota_us"))
            .or_else(|_| std::fs::read_to_string(d.join("cpu.max")))
            .ok()
    });
    if let Some(q) = quota {
        assert!(q.starts_with("50000"), "{q}");
    }
    m.send(MasterMessage::KillTask {
        framework_id: FrameworkID::new("F-0000"),
        task_id: TaskID::new("limited"),
        kill_policy: Some(KillPolicy {
            grace_period: Some(DurationInfo { nanoseconds: 0 }),
        }),
    });
    m.ack_until("limited", TaskState::Killed, T).await;

    // dd's 200 MiB buffer does not fit in 32 MiB: the OOM killer ends it.
    run(
        &m,
        framework(&[]),
        task(
            "hog",
            CommandInfo::shell("exec dd if=/dev/zero of=/dev/null bs=200M count=1"),
            "cpus:0.5;mem:32",
        ),
    );
    let hog = m.ack_until("hog", TaskState::Failed, T).await;
    assert_eq!(
        hog.last().unwrap().reason,
        Some(Reason::ContainerLimitationMemory),
        "{:?}",
        hog.last()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_readopts_its_containers_and_resends_updates() {
    need_root!();
    let m = FakeMaster::start(60.0).await;
    let a = TestAgent::start(&m).await;
    m.registered(1).await;
    run(
        &m,
        framework(&[]),
        task(
            "long",
            CommandInfo::shell("sleep 2; echo done"),
            "cpus:0.1;mem:32",
        ),
    );
    run(
        &m,
        framework(&[]),
        task("short", CommandInfo::shell("exit 0"), "cpus:0.1;mem:32"),
    );
    m.ack_until("long", TaskState::Running, T).await;
    // The short task's updates stay unacknowledged across the restart.
    m.update_in("short", TaskState::Starting, T).await;
    let work = a.stop().await;
    let before = m.updates("short").len();

    let b = TestAgent::start_in(&m, work).await;
    let again = m.registered(2).await;
    assert_eq!(again.agent_info.id, Some(AgentID::new(AGENT_ID)));
    let mut tasks: Vec<String> = again
        .tasks
        .iter()
        .map(|t| t.task.task_id.value.clone())
        .collect();
    tasks.sort();
    assert_eq!(tasks, ["long", "short"]);
    assert_eq!(again.frameworks.len(), 1);
    // The unacknowledged STARTING of the short task is sent again, then the
    // rest of its updates in order, including its exit while the agent ran.
    let short = m.ack_until("short", TaskState::Finished, T).await;
    assert!(m.updates("short").len() > before);
    let states: Vec<TaskState> = short.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [TaskState::Starting, TaskState::Running, TaskState::Finished]
    );
    // The long task's container was re-adopted: its exit is seen.
    let long = m.ack_until("long", TaskState::Finished, T).await;
    let out = std::fs::read_to_string(b.sandbox(long.last().unwrap()).join("stdout")).unwrap();
    assert_eq!(out, "done\n");
}
