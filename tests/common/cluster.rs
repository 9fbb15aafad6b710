//! A real cluster for end-to-end tests: `berth master` and `berth agent` as
//! child processes on loopback ports, the agent's containers under a
//! private [`Berth`] state root (removed on drop, even when a test fails),
//! and a framework driving the Mesos v1 scheduler API over real HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::mesos::scheduler::{SchedulerClient, Subscription};
use berth::mesos::MasterAddr;
use masterlink::scheduler::{EventType, FrameworkInfo, Offer, TaskInfo, TaskStatus};
use nix::sys::signal::Signal;
use serde_json::{json, Value as Json};

use super::{berth_bin, Berth};

/// Bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(60);

/// A berth daemon: its stderr lines are collected (and echoed for the test
/// log); SIGTERM then SIGKILL on drop.
pub struct Daemon {
    pub name: &'static str,
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    pub fn spawn(name: &'static str, args: &[String]) -> Daemon {
        Daemon::spawn_program(name, &berth_bin(), args)
    }

    /// A daemon run through another program that execs it (`nsenter
    /// --net=... berth agent ...`), so that the pid is still the daemon's.
    pub fn spawn_program(name: &'static str, program: &Path, args: &[String]) -> Daemon {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn berth");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{name}] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Daemon { name, child, lines }
    }

    /// The first stderr line containing `needle` (waits for it).
    pub fn line(&mut self, needle: &str) -> String {
        self.nth_line(needle, 1)
    }

    /// The `n`th (from 1) stderr line containing `needle` (waits for it).
    pub fn nth_line(&mut self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .nth(n - 1)
            {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before printing {needle:?} (#{n})",
                    self.name
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} never printed {needle:?} (#{n})",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many stderr lines so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits (bounded) for the daemon to exit by itself; its status, and
    /// its stderr lines once they are all read.
    pub fn exited(&mut self) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread sees EOF soon after the exit; give it a moment
        // to hand over the last lines.
        let mut last = usize::MAX;
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let n = self.lines.lock().unwrap().len();
            if n == last || Instant::now() > deadline {
                break;
            }
            last = n;
        }
        (status, self.lines.lock().unwrap().clone())
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Sends `sig` to the daemon (a process this test started).
    pub fn signal(&self, sig: Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("signal the daemon");
    }

    /// SIGKILL, and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stop(&mut self) {
        // A stopped daemon must be continued to handle SIGTERM.
        let _ = nix::sys::signal::kill(self.pid(), Signal::SIGCONT);
        let _ = nix::sys::signal::kill(self.pid(), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The address after "listening on " in a daemon's start line.
pub fn listening(line: &str) -> String {
    line.split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string()
}

/// A master and one agent. Field order matters for drop: the agent stops
/// before its containers are removed (`berth`), the master last.
pub struct Cluster {
    pub agent: Daemon,
    /// The agent's containers (`--launcher-root`); removed on drop.
    pub berth: Berth,
    pub master: Daemon,
    /// The master's `HOST:PORT`.
    pub addr: String,
    pub work: tempfile::TempDir,
    agent_args: Vec<String>,
    master_args: Vec<String>,
}

impl Cluster {
    pub fn start(agent_resources: &str, extra_master: &[&str], extra_agent: &[&str]) -> Cluster {
        let work = tempfile::Builder::new()
            .prefix("berth-cluster-")
            .tempdir()
            .unwrap();
        let mut margs: Vec<String> = vec![
            "master".into(),
            "--port=0".into(),
            format!("--work-dir={}", work.path().join("master").display()),
            "--allocation-interval=100ms".into(),
        ];
        margs.extend(extra_master.iter().map(|s| s.to_string()));
        let mut master = Daemon::spawn("master", &margs);
        let addr = listening(&master.line("listening on"));
        // A restarted master comes back on the same port, where the agent
        // looks for it.
        let port = addr.rsplit(':').next().unwrap().to_string();
        for a in margs.iter_mut().filter(|a| *a == "--port=0") {
            *a = format!("--port={port}");
        }
        let berth = Berth::new();
        let mut agent_args: Vec<String> = vec![
            "agent".into(),
            format!("--master={addr}"),
            "--port=0".into(),
            format!("--work-dir={}", work.path().join("agent").display()),
            format!("--launcher-root={}", berth.root.path().display()),
            format!("--resources={agent_resources}"),
            "--hostname=node1".into(),
        ];
        agent_args.extend(extra_agent.iter().map(|s| s.to_string()));
        let agent = Daemon::spawn("agent", &agent_args);
        let mut c = Cluster {
            agent,
            berth,
            master,
            addr,
            work,
            agent_args,
            master_args: margs,
        };
        c.agent.line("registered with master");
        c
    }

    /// Starts the agent again with the same flags (same work dir and
    /// launcher root) once the old process is gone (`kill9` or `stop` it
    /// first). Does not wait for its registration.
    pub fn restart_agent(&mut self) {
        assert!(
            matches!(self.agent.child.try_wait(), Ok(Some(_))),
            "the old agent still runs"
        );
        self.agent = Daemon::spawn("agent", &self.agent_args);
    }

    /// [`Cluster::restart_agent`] with some flags changed: each of
    /// `changes` (`--name=value`) replaces the flag of that name, or is
    /// added; the changes stay for later restarts.
    pub fn restart_agent_with(&mut self, changes: &[&str]) {
        for change in changes {
            let name = change.split('=').next().unwrap();
            let prefix = format!("{name}=");
            match self.agent_args.iter_mut().find(|a| a.starts_with(&prefix)) {
                Some(a) => *a = change.to_string(),
                None => self.agent_args.push(change.to_string()),
            }
        }
        self.restart_agent();
    }

    /// SIGKILLs the master and starts it again on the same work dir and
    /// port; waits until it listens.
    pub fn restart_master(&mut self) {
        self.master.kill9();
        self.master = Daemon::spawn("master", &self.master_args);
        self.master.line("listening on");
    }

    pub fn master_addr(&self) -> MasterAddr {
        self.addr.parse().unwrap()
    }

    pub fn agent_work(&self) -> PathBuf {
        self.work.path().join("agent")
    }

    /// `IP:PORT` of the agent's HTTP endpoints.
    pub fn agent_endpoint(&mut self) -> String {
        listening(&self.agent.line("berth agent: listening on"))
    }

    /// A GET on the agent's HTTP endpoints, as JSON.
    pub async fn agent_get(&mut self, path: &str) -> Json {
        let url = format!("http://{}{path}", self.agent_endpoint());
        reqwest::get(&url)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// SUBSCRIBEs a MULTI_ROLE framework of `role` with `capabilities`.
    pub async fn subscribe(&self, name: &str, role: &str, capabilities: &[&str]) -> Subscription {
        let mut caps: Vec<Json> = capabilities.iter().map(|c| json!({"type": c})).collect();
        caps.push(json!({"type": "MULTI_ROLE"}));
        self.subscribe_json(json!({
            "user": "root", "name": name, "roles": [role], "capabilities": caps,
        }))
        .await
    }

    /// SUBSCRIBEs a framework given as FrameworkInfo JSON.
    pub async fn subscribe_json(&self, info: Json) -> Subscription {
        let info: FrameworkInfo = serde_json::from_value(info).unwrap();
        SchedulerClient::subscribe(&self.master_addr(), info)
            .await
            .expect("SUBSCRIBE")
    }

    /// An operator API call's JSON answer.
    pub fn operator(&self, call_type: &str) -> Json {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                &json!({"type": call_type}).to_string(),
                &format!("http://{}/api/v1", self.addr),
            ])
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{call_type}: {e}: {}", String::from_utf8_lossy(&out.stdout))
        })
    }
}

impl Drop for Cluster {
    /// Undoes the agent's persistent volumes in its default store
    /// (`WORK_DIR/volumes`) once the agent has stopped: they are loop mounts
    /// under the work dir, and removing the work dir with them mounted would
    /// delete the files inside and leave the mounts (and loop devices)
    /// behind. A test that passes `--volume-root` cleans up its own store.
    fn drop(&mut self) {
        self.agent.stop();
        let root = self.agent_work().join("volumes");
        if !root.join("volumes").is_dir() {
            return;
        }
        let Ok(store) = volumes::VolumeStore::open(&root) else {
            return;
        };
        for v in store.list().unwrap_or_default() {
            if let Err(e) = store.destroy(&v.key) {
                eprintln!("cleanup: destroying volume {}: {e}", v.key);
            }
        }
    }
}

/// A command task of `cpus` and `mem` on the offer's agent.
pub fn command_task(id: &str, offer: &Offer, cpus: f64, mem: f64, cmd: &str) -> TaskInfo {
    serde_json::from_value(json!({
        "name": id, "task_id": {"value": id}, "agent_id": offer.agent_id,
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}],
        "command": {"value": cmd},
    }))
    .unwrap()
}

/// Every file under `dir` (symlinks not followed).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A subscribed framework that keeps every update it receives, so that a
/// test can wait for one task's updates while another's queue up.
pub struct Framework {
    pub sub: Subscription,
    /// Every UPDATE received, in order (resends included).
    pub log: Vec<TaskStatus>,
    /// Updates received but not yet returned by [`Framework::next_of`].
    inbox: Vec<TaskStatus>,
    offers: Vec<Offer>,
}

impl Framework {
    pub fn new(sub: Subscription) -> Framework {
        Framework {
            sub,
            log: Vec::new(),
            inbox: Vec::new(),
            offers: Vec::new(),
        }
    }

    pub fn id(&self) -> String {
        self.sub.client.framework_id().value.clone()
    }

    /// Reads one event (bounded by `within`); false if none came.
    async fn pump(&mut self, within: Duration) -> bool {
        let Ok(e) = tokio::time::timeout(within, self.sub.events.next()).await else {
            return false;
        };
        let e = e.expect("event stream").expect("stream open");
        match e.event_type {
            EventType::Update => {
                let s = e.update.unwrap().status;
                self.log.push(s.clone());
                self.inbox.push(s);
            }
            EventType::Offers => self.offers.extend(e.offers.unwrap().offers),
            EventType::Rescind => {
                let id = e.rescind.unwrap().offer_id;
                self.offers.retain(|o| o.id != id);
            }
            _ => {}
        }
        true
    }

    /// Declines every offer held (refusing them for `refuse` seconds).
    async fn decline_all(&mut self, refuse: f64) {
        let ids: Vec<_> = self.offers.drain(..).map(|o| o.id).collect();
        if !ids.is_empty() {
            self.sub.client.decline(ids, refuse).await.unwrap();
        }
    }

    /// The next offer (the others are declined).
    pub async fn offer(&mut self) -> Offer {
        let deadline = Instant::now() + WAIT;
        while self.offers.is_empty() {
            assert!(Instant::now() < deadline, "no offer in time");
            self.pump(WAIT).await;
        }
        let offer = self.offers.remove(0);
        self.decline_all(0.0).await;
        offer
    }

    /// Launches `tasks` on the next offer; the rest of it is not refused.
    pub async fn launch(&mut self, make: impl FnOnce(&Offer) -> Vec<TaskInfo>) -> Offer {
        let offer = self.offer().await;
        let tasks = make(&offer);
        self.sub
            .client
            .accept(
                vec![offer.id.clone()],
                vec![masterlink::scheduler::Operation::launch(tasks)],
                Some(masterlink::scheduler::Filters {
                    refuse_seconds: 0.0,
                }),
            )
            .await
            .unwrap();
        offer
    }

    /// The next update of `task` not returned yet (offers that come
    /// meanwhile are declined for a second). Not acknowledged.
    pub async fn next_of(&mut self, task: &str) -> TaskStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.inbox.iter().position(|s| s.task_id.value == task) {
                return self.inbox.remove(i);
            }
            assert!(
                Instant::now() < deadline,
                "no update of {task} in time; seen: {:?}",
                self.log
                    .iter()
                    .map(|s| format!("{} {}", s.task_id.value, s.state))
                    .collect::<Vec<_>>()
            );
            self.pump(WAIT).await;
            self.decline_all(1.0).await;
        }
    }

    /// Reads events for `d` (declining offers), recording updates.
    pub async fn idle(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            self.pump(left).await;
            self.decline_all(1.0).await;
        }
    }

    pub async fn ack(&self, s: &TaskStatus) {
        self.sub.client.acknowledge(s).await.unwrap();
    }

    /// Takes the updates of `task`, acknowledging each, until one is in a
    /// state `last` accepts; returns them all.
    pub async fn ack_until(
        &mut self,
        task: &str,
        last: impl Fn(masterlink::scheduler::TaskState) -> bool,
    ) -> Vec<TaskStatus> {
        let mut out = Vec::new();
        loop {
            let s = self.next_of(task).await;
            self.ack(&s).await;
            let done = last(s.state);
            out.push(s);
            if done {
                return out;
            }
        }
    }

    /// Every update of `task` received so far.
    pub fn updates(&self, task: &str) -> Vec<TaskStatus> {
        self.log
            .iter()
            .filter(|s| s.task_id.value == task)
            .cloned()
            .collect()
    }
}

/// The container id an agent's update carries.
pub fn container_id(s: &TaskStatus) -> String {
    s.container_status
        .as_ref()
        .and_then(|c| c.container_id.as_ref())
        .map(|c| c.value.clone())
        .unwrap_or_else(|| panic!("the update carries no container id: {s:?}"))
}
