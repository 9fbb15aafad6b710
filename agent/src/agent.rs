//! The agent: one event loop that owns the agent's state (frameworks, tasks,
//! update streams, the link to the master) and reacts to the master's
//! messages, to containers being launched and exiting, and to timers.
//!
//! Blocking work never runs on the loop: containers are created by a thread
//! per task that then waits for the container's exit (a read on the
//! supervisor's report pipe, or exit.json and a pidfd for a re-adopted
//! container) and reports it back as an event. The HTTP endpoints read the
//! same state under its lock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use launcher::state::{ExitInfo, Status};
use launcher::{CreateOptions, Launcher};
use masterlink::protocol::{
    AgentCall, AgentInfo, AgentTask, MasterMessage, Pong, Register, StatusUpdate, PROTOCOL_VERSION,
};
use masterlink::resources::Resources;
use masterlink::scheduler::{
    encode_base64, AgentID, ContainerID, ContainerStatus, ExecutorID, FrameworkCapabilityType,
    FrameworkID, FrameworkInfo, KillPolicy, MasterInfo, Reason, TaskID, TaskInfo, TaskSource,
    TaskState, TaskStatus,
};
use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use volumes::VolumeKey;

use crate::checkpoint;
use crate::checkpointed::{self, TaskVolume};
use crate::config::AgentConfig;
use crate::link::{self, StreamEvent};
use crate::paths::{self, RunIds, WorkDir};
use crate::persistent::{Applied, VolumeManager};
use crate::reconfig::{self, ReconfigurationError};
use crate::task::{self, TaskContext};
use crate::updates::{AckOutcome, Outgoing, UpdateManager};

/// Mesos' default kill grace period for command tasks.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);
/// First bound of the random registration delay (Mesos' registration
/// backoff factor); it doubles per failure up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The agent re-registers after this many ping intervals without a ping.
pub const MISSED_PINGS: u32 = 3;
/// Redirects followed in a row before the agent backs off: masters whose
/// views of the leader differ briefly (a failover in progress) must not
/// make it spin.
const MAX_REDIRECTS: u32 = 3;
/// A REGISTER that got no REGISTERED within this long is retried.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);
/// Terminal tasks kept for /state.
const COMPLETED_KEPT: usize = 1000;

/// Why the agent could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("launcher state root: {0}")]
    Launcher(#[from] launcher::Error),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("volume store: {0}")]
    Volumes(#[from] volumes::VolumeError),
    #[error("checkpointed resources: {0}")]
    Resources(#[from] checkpointed::ResourcesError),
    /// The flags changed in a way `--reconfiguration-policy` refuses; a
    /// configuration error (`berth agent` exits 2), the tasks untouched.
    #[error(transparent)]
    Reconfiguration(#[from] ReconfigurationError),
    /// The master refused the agent in a way retrying cannot change (its
    /// credential, an ACL, its resources or protocol): the agent stops, as
    /// a Mesos agent does, and its containers keep running for the next
    /// start with a fixed configuration.
    #[error("{0}")]
    Refused(String),
}

/// Something the loop reacts to.
#[derive(Debug)]
pub(crate) enum Event {
    /// From the stream task of link generation `gen`.
    Link { gen: u64, event: StreamEvent },
    /// A container was created and started (init's pid), or not.
    Launched {
        fid: FrameworkID,
        tid: TaskID,
        result: Result<i32, String>,
    },
    Exited {
        fid: FrameworkID,
        tid: TaskID,
        exit: ExitInfo,
    },
    /// The grace period of a kill is over.
    KillDeadline { fid: FrameworkID, tid: TaskID },
    /// The volume worker finished a pass.
    VolumesApplied(Applied),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Launching,
    Running,
    Exited,
}

/// A task on this agent.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub info: TaskInfo,
    pub ids: RunIds,
    pub sandbox: PathBuf,
    /// The latest state the agent reported.
    pub state: TaskState,
    pub statuses: Vec<TaskStatus>,
    pub pid: Option<i32>,
    pub phase: Phase,
    /// Set once a kill was asked for: the grace period.
    pub kill: Option<Duration>,
    /// The persistent volumes it mounts.
    pub volumes: Vec<TaskVolume>,
}

#[derive(Debug, Clone)]
pub(crate) struct Framework {
    pub info: FrameworkInfo,
    pub tasks: BTreeMap<TaskID, Task>,
    pub shutting_down: bool,
}

#[derive(Debug)]
pub(crate) enum LinkPhase {
    Idle {
        retry_at: Instant,
    },
    Connecting {
        since: Instant,
    },
    Registered {
        stream_id: String,
        ping_interval: Duration,
        last_heard: Instant,
    },
}

#[derive(Debug)]
pub(crate) struct Link {
    pub gen: u64,
    pub phase: LinkPhase,
    pub backoff: Duration,
    pub task: Option<tokio::task::JoinHandle<()>>,
    pub master: Option<MasterInfo>,
    /// `host:port` of the master the link is (being) opened with: one of
    /// `--master`, or the leader a non-leader redirected to.
    pub target: String,
    /// Index in `--master` of the last master tried from the list.
    pub listed: usize,
    /// Attempts that failed since the last registration (one backoff step
    /// per round through the list).
    pub failures: u32,
    /// Redirects followed in a row.
    pub redirects: u32,
}

/// Everything the loop owns.
#[derive(Debug)]
pub(crate) struct State {
    pub agent_id: Option<AgentID>,
    pub boot_id: String,
    /// The id this agent had before its host rebooted (it registers anew;
    /// REGISTER names the old one so that the master reports its tasks).
    pub previous_agent_id: Option<AgentID>,
    pub frameworks: BTreeMap<FrameworkID, Framework>,
    pub completed: VecDeque<(FrameworkID, Task)>,
    pub updates: UpdateManager,
    pub link: Link,
    /// Terminal updates made, by state (for metrics).
    pub terminal_counts: BTreeMap<TaskState, u64>,
    /// The dynamic reservations and persistent volumes on this agent: the
    /// last CHECKPOINT_RESOURCES (or what was checkpointed before a
    /// restart). Reported in REGISTER.
    pub checkpointed: Resources,
    /// The static resources with `checkpointed` applied (for /state).
    pub total: Resources,
    /// Volumes whose destroy waits for a task to end.
    pub volumes_deferred: Vec<VolumeKey>,
    /// Set when the master refused the agent for good: the loop stops.
    pub refused: Option<String>,
}

/// What the loop and the HTTP handlers share.
pub(crate) struct Shared {
    pub cfg: AgentConfig,
    pub work: WorkDir,
    pub launcher: Arc<Launcher>,
    pub volumes: VolumeManager,
    pub state: Mutex<State>,
    pub tx: mpsc::UnboundedSender<Event>,
    pub client: reqwest::Client,
    pub started: Instant,
    pub start_time: f64,
    /// `ip:port` the HTTP endpoints listen on.
    pub endpoint: String,
}

/// A started agent; [`Agent::run`] drives it.
pub struct Agent {
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Event>,
    listener: Option<tokio::net::TcpListener>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// 16 random bytes (from the kernel's CSPRNG, via the launcher's ids).
fn random_uuid() -> [u8; 16] {
    let hex = launcher::state::new_id();
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    out
}

/// A random delay in `[0, bound]`, as Mesos spreads registrations.
fn random_delay(bound: Duration) -> Duration {
    let r = u64::from_le_bytes(random_uuid()[..8].try_into().unwrap_or([0; 8]));
    let ms = bound.as_millis().max(1) as u64;
    Duration::from_millis(r % (ms + 1))
}

impl Agent {
    /// Binds the HTTP listener, opens the launcher's state root and recovers
    /// the checkpointed state. Prints `berth agent: listening on IP:PORT`.
    pub async fn start(cfg: AgentConfig) -> Result<Agent, AgentError> {
        let addr = SocketAddr::new(cfg.ip, cfg.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AgentError::Listen { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| AgentError::Listen { addr, source })?;
        log!("listening on {local}");
        let launcher = Arc::new(Launcher::open(cfg.launcher_root.clone())?);
        let work = WorkDir::new(cfg.work_dir.clone());
        checkpoint::ensure_dir(&work.meta_slaves())?;
        let (tx, rx) = mpsc::unbounded_channel();
        let volumes = {
            let tx = tx.clone();
            VolumeManager::start(&cfg.volume_root, work.clone(), move |a| {
                let _ = tx.send(Event::VolumesApplied(a));
            })?
        };
        let state = State {
            agent_id: None,
            boot_id: paths::current_boot_id(&cfg.boot_id_file),
            previous_agent_id: None,
            frameworks: BTreeMap::new(),
            completed: VecDeque::new(),
            updates: UpdateManager::new(cfg.status_update_retry_min, cfg.status_update_retry_max),
            link: Link {
                gen: 0,
                phase: LinkPhase::Idle {
                    retry_at: Instant::now(),
                },
                backoff: INITIAL_BACKOFF,
                task: None,
                master: None,
                target: cfg.masters.first().cloned().unwrap_or_default(),
                listed: 0,
                failures: 0,
                redirects: 0,
            },
            terminal_counts: BTreeMap::new(),
            total: cfg.resources.clone(),
            checkpointed: Resources::new(),
            volumes_deferred: Vec::new(),
            refused: None,
        };
        let client = link::client(cfg.credential.as_ref());
        let shared = Arc::new(Shared {
            endpoint: local.to_string(),
            cfg,
            work,
            launcher,
            volumes,
            state: Mutex::new(state),
            tx,
            client,
            started: Instant::now(),
            start_time: now_secs(),
        });
        // Before anything is recovered or changed: a refused change must
        // leave the work dir (and the tasks) as they were.
        shared.check_reconfiguration()?;
        shared.recover_resources()?;
        shared.recover()?;
        {
            // Whatever a previous run left unfinished (or a reboot unmounted)
            // is brought in line with the checkpoint before tasks use it.
            let mut st = shared.lock();
            shared.converge_volumes(&mut st);
        }
        Ok(Agent {
            shared,
            rx,
            listener: Some(listener),
        })
    }

    /// The address the HTTP endpoints listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared
            .endpoint
            .parse()
            .unwrap_or_else(|_| SocketAddr::new(self.shared.cfg.ip, self.shared.cfg.port))
    }

    /// Runs until `shutdown` completes. Containers keep running after it
    /// returns: a restarted agent re-adopts them (agent restart semantics).
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), AgentError> {
        let listener = self.listener.take();
        let server = listener.map(|l| {
            let router = crate::http::router(self.shared.clone());
            // Small answers and event streams: no Nagle delay.
            let l = axum::serve::ListenerExt::tap_io(l, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            tokio::spawn(async move { axum::serve(l, router).await })
        });
        tokio::pin!(shutdown);
        let mut refused = None;
        loop {
            let deadline = {
                let mut st = self.shared.lock();
                self.shared.maybe_connect(&mut st, Instant::now());
                self.shared.next_deadline(&st)
            };
            tokio::select! {
                ev = self.rx.recv() => {
                    let Some(ev) = ev else { break };
                    let mut st = self.shared.lock();
                    self.shared.handle(&mut st, ev);
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let mut st = self.shared.lock();
                    self.shared.on_timer(&mut st, Instant::now());
                }
                _ = &mut shutdown => break,
            }
            if let Some(why) = self.shared.lock().refused.take() {
                refused = Some(why);
                break;
            }
        }
        if let Some(t) = self.shared.lock().link.task.take() {
            t.abort();
        }
        if let Some(s) = server {
            s.abort();
        }
        log!("stopped; containers keep running and are re-adopted at the next start");
        match refused {
            Some(why) => Err(AgentError::Refused(why)),
            None => Ok(()),
        }
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough state for
        // the read-only endpoints; keep serving rather than poisoning all.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_deadline(&self, st: &State) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let link = match &st.link.phase {
            LinkPhase::Idle { retry_at } => *retry_at,
            LinkPhase::Connecting { since } => *since + REGISTER_TIMEOUT,
            LinkPhase::Registered {
                ping_interval,
                last_heard,
                ..
            } => *last_heard + *ping_interval * MISSED_PINGS,
        };
        [Some(link), st.updates.next_deadline()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far)
    }

    // ---------------------------------------------------------------------
    // The link

    /// Opens a REGISTER stream when it is time to.
    fn maybe_connect(self: &Arc<Self>, st: &mut State, now: Instant) {
        let LinkPhase::Idle { retry_at } = st.link.phase else {
            return;
        };
        if retry_at > now {
            return;
        }
        st.link.gen += 1;
        let gen = st.link.gen;
        let call = AgentCall::Register(self.register_call(st));
        let tx = self.tx.clone();
        let url = link::url(&st.link.target);
        let fut = link::open_stream(self.client.clone(), url, call, move |event| {
            let _ = tx.send(Event::Link { gen, event });
        });
        st.link.task = Some(tokio::spawn(fut));
        st.link.phase = LinkPhase::Connecting { since: now };
    }

    fn agent_info(&self, st: &State) -> AgentInfo {
        AgentInfo {
            hostname: self.cfg.hostname.clone(),
            port: self.local_port(),
            ip: self.cfg.ip.to_string(),
            resources: self.cfg.resources.clone(),
            attributes: self.cfg.attributes.clone(),
            id: st.agent_id.clone(),
        }
    }

    fn local_port(&self) -> u16 {
        self.endpoint
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(self.cfg.port)
    }

    /// REGISTER with what the agent has: its id and tasks when it had
    /// registered before (re-registration).
    fn register_call(&self, st: &State) -> Register {
        let mut tasks = Vec::new();
        let mut frameworks = Vec::new();
        for (fid, fw) in &st.frameworks {
            if fw.tasks.is_empty() {
                continue;
            }
            frameworks.push(fw.info.clone());
            for t in fw.tasks.values() {
                tasks.push(AgentTask {
                    framework_id: fid.clone(),
                    task: t.info.clone(),
                    state: t.state,
                    latest_status: t.statuses.last().cloned(),
                });
            }
        }
        Register {
            protocol_version: PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_string(),
            agent_info: self.agent_info(st),
            boot_id: st.boot_id.clone(),
            tasks,
            frameworks,
            checkpointed_resources: st.checkpointed.clone(),
            // Only until the master gave this agent an id.
            previous_agent_id: st
                .agent_id
                .is_none()
                .then(|| st.previous_agent_id.clone())
                .flatten(),
        }
    }

    /// The stream is gone (ended, failed, or timed out): try again with the
    /// next master of `--master` (the leader may have died; a live
    /// non-leader redirects to the new one) after a random delay within the
    /// backoff, which doubles per round through the list up to a minute.
    /// `waiting` (a master that answered 503: no leader elected yet, or it
    /// is recovering) keeps the backoff: the election ends within seconds.
    fn link_lost(&self, st: &mut State, why: &str, now: Instant, waiting: bool) {
        if let Some(t) = st.link.task.take() {
            t.abort();
        }
        // What the abandoned stream already queued (its end, typically) is
        // stale from now on: it must not count as a second loss.
        st.link.gen += 1;
        st.link.redirects = 0;
        let lost = std::mem::take(&mut st.link.target);
        let n = self.cfg.masters.len().max(1);
        st.link.listed = (st.link.listed + 1) % n;
        st.link.target = self
            .cfg
            .masters
            .get(st.link.listed)
            .cloned()
            .unwrap_or_else(|| lost.clone());
        let delay = random_delay(st.link.backoff);
        log!(
            "link to master {lost} lost ({why}); registering with {} in {:.1}s",
            st.link.target,
            delay.as_secs_f64()
        );
        st.link.failures += 1;
        if !waiting && st.link.failures >= n as u32 {
            st.link.failures = 0;
            st.link.backoff = (st.link.backoff * 2).min(MAX_BACKOFF);
        }
        st.link.phase = LinkPhase::Idle {
            retry_at: now + delay,
        };
    }

    /// A master that does not lead named the leader: register there now.
    fn redirected(&self, st: &mut State, from: &str, leader: String, now: Instant) {
        st.link.task = None;
        st.link.gen += 1;
        st.link.redirects += 1;
        log!("master {from} does not lead; registering with the leader {leader}");
        st.link.target = leader;
        st.link.phase = LinkPhase::Idle { retry_at: now };
    }

    /// Posts a call on the link if registered (else drops it: updates are
    /// resent after the next registration).
    fn post(&self, st: &State, call: AgentCall) {
        let LinkPhase::Registered { stream_id, .. } = &st.link.phase else {
            return;
        };
        let client = self.client.clone();
        // The master that registered this agent (calls go with its stream).
        let url = link::url(&st.link.target);
        let stream_id = stream_id.clone();
        tokio::spawn(async move {
            if let Err(e) = link::post(&client, &url, &stream_id, &call).await {
                log!("{} not delivered: {e}", call.type_name());
            }
        });
    }

    fn post_update(&self, st: &State, out: Outgoing) {
        let Some(agent_id) = st.agent_id.clone() else {
            return;
        };
        self.post(
            st,
            AgentCall::StatusUpdate(StatusUpdate {
                agent_id,
                framework_id: out.framework_id,
                status: out.status,
            }),
        );
    }

    fn on_timer(&self, st: &mut State, now: Instant) {
        match &st.link.phase {
            LinkPhase::Connecting { since } if now >= *since + REGISTER_TIMEOUT => {
                self.link_lost(st, "no REGISTERED from the master", now, false);
            }
            LinkPhase::Registered {
                ping_interval,
                last_heard,
                ..
            } if now >= *last_heard + *ping_interval * MISSED_PINGS => {
                let silent = now - *last_heard;
                self.link_lost(
                    st,
                    &format!("no PING for {:.1}s", silent.as_secs_f64()),
                    now,
                    false,
                );
            }
            _ => {}
        }
        for out in st.updates.due(now) {
            self.post_update(st, out);
        }
    }

    fn handle(self: &Arc<Self>, st: &mut State, ev: Event) {
        match ev {
            Event::Link { gen, event } if gen == st.link.gen => match event {
                StreamEvent::Message(msg) => self.on_message(st, *msg),
                StreamEvent::Ended(link::LinkError::Redirected { url, leader })
                    if st.link.redirects < MAX_REDIRECTS =>
                {
                    self.redirected(st, &url, leader, Instant::now());
                }
                StreamEvent::Ended(
                    e @ link::LinkError::Refused {
                        status: 401 | 403, ..
                    },
                ) => {
                    st.link.task = None;
                    st.refused = Some(format!(
                        "{e}; stopping (fix --credential or the master's ACLs)"
                    ));
                }
                StreamEvent::Ended(e) => {
                    st.link.task = None;
                    let waiting = matches!(e, link::LinkError::Refused { status: 503, .. });
                    self.link_lost(st, &e.to_string(), Instant::now(), waiting);
                }
            },
            // From a stream already replaced.
            Event::Link { .. } => {}
            Event::Launched { fid, tid, result } => self.on_launched(st, &fid, &tid, result),
            Event::Exited { fid, tid, exit } => self.on_exited(st, &fid, &tid, exit),
            Event::KillDeadline { fid, tid } => self.on_kill_deadline(st, &fid, &tid),
            Event::VolumesApplied(a) => {
                if a.gen == self.volumes.requested() {
                    st.volumes_deferred = a.deferred;
                }
            }
        }
        // A volume kept for a task that has ended since can go now.
        if !st.volumes_deferred.is_empty() {
            let in_use = volumes_in_use(st);
            if st.volumes_deferred.iter().any(|k| !in_use.contains(k)) {
                self.converge_volumes(st);
            }
        }
    }

    fn on_message(self: &Arc<Self>, st: &mut State, msg: MasterMessage) {
        let now = Instant::now();
        if let LinkPhase::Registered { last_heard, .. } = &mut st.link.phase {
            *last_heard = now;
        }
        match msg {
            MasterMessage::Registered {
                agent_id,
                stream_id,
                master_info,
                ping_interval_secs,
            } => self.on_registered(st, agent_id, stream_id, master_info, ping_interval_secs),
            MasterMessage::Ping { id } => {
                if let Some(agent_id) = st.agent_id.clone() {
                    self.post(st, AgentCall::Pong(Pong { agent_id, ping: id }));
                }
            }
            MasterMessage::RunTask {
                framework_info,
                task,
            } => self.run_task(st, framework_info, task),
            MasterMessage::KillTask {
                framework_id,
                task_id,
                kill_policy,
            } => self.kill_task(st, &framework_id, &task_id, kill_policy),
            MasterMessage::Acknowledge {
                framework_id,
                task_id,
                uuid,
            } => self.acknowledge(st, &framework_id, &task_id, &uuid),
            MasterMessage::CheckpointResources { resources } => {
                self.checkpoint_resources(st, resources)
            }
            MasterMessage::ShutdownFramework { framework_id } => {
                self.shutdown_framework(st, &framework_id)
            }
            MasterMessage::Error { message } => {
                st.refused = Some(format!(
                    "the master at {} refused the agent: {message}",
                    st.link.target
                ));
            }
        }
    }

    fn on_registered(
        &self,
        st: &mut State,
        agent_id: AgentID,
        stream_id: String,
        master_info: MasterInfo,
        ping_interval_secs: f64,
    ) {
        let now = Instant::now();
        let again = st.agent_id.as_ref() == Some(&agent_id);
        if !again {
            if let Some(old) = &st.agent_id {
                log!("the master gave a new agent id {agent_id} (was {old})");
            }
            st.agent_id = Some(agent_id.clone());
            if let Err(e) = self.checkpoint_agent(st) {
                log!("checkpointing the agent id: {e}");
            }
        } else if self.info_changed(st) {
            // A change the policy allowed, now accepted by the master: the
            // next restart compares against it. (Not written before the
            // master accepted it: a refused change must not become the
            // reference.)
            match checkpoint::write_json(
                &self.work.agent_info(&agent_id.value),
                &self.agent_info(st),
            ) {
                Ok(()) => log!("the master accepted the changed resources/attributes"),
                Err(e) => log!("checkpointing the changed agent info: {e}"),
            }
        }
        let master = master_info
            .pid
            .clone()
            .unwrap_or_else(|| format!("master@{}:{}", master_info.ip_addr(), master_info.port));
        log!(
            "{} with master {master} as agent {agent_id}",
            if again { "re-registered" } else { "registered" }
        );
        let interval = if ping_interval_secs.is_finite() && ping_interval_secs > 0.0 {
            Duration::from_secs_f64(ping_interval_secs)
        } else {
            Duration::from_secs(15)
        };
        st.link.phase = LinkPhase::Registered {
            stream_id,
            ping_interval: interval,
            last_heard: now,
        };
        st.link.master = Some(master_info);
        st.link.backoff = INITIAL_BACKOFF;
        st.link.failures = 0;
        st.link.redirects = 0;
        for out in st.updates.resend_all(now) {
            self.post_update(st, out);
        }
    }

    /// The resources, attributes or host name differ from slave.info.
    fn info_changed(&self, st: &State) -> bool {
        let Some(id) = &st.agent_id else {
            return false;
        };
        match checkpoint::read_json::<AgentInfo>(&self.work.agent_info(&id.value)) {
            Ok(old) => !reconfig::changes(
                reconfig::ReconfigurationPolicy::Equal,
                &old,
                &self.agent_info(st),
                &Resources::new(),
            )
            .is_empty(),
            Err(_) => true,
        }
    }

    /// A restart on the same boot keeps the agent id: its flags may only
    /// have changed as `--reconfiguration-policy` allows (see
    /// [`reconfig`]). After a reboot, or without a previous registration,
    /// there is nothing to compare: the agent registers anew.
    fn check_reconfiguration(&self) -> Result<(), AgentError> {
        let st = self.lock();
        let old_boot = std::fs::read_to_string(self.work.boot_id())
            .map(|s| s.trim().to_string())
            .ok();
        let Some(aid) = std::fs::read_link(self.work.latest())
            .ok()
            .and_then(|p| p.to_str().map(str::to_string))
        else {
            return Ok(());
        };
        if old_boot.as_deref() != Some(st.boot_id.as_str()) {
            return Ok(());
        }
        let old: AgentInfo = match checkpoint::read_json(&self.work.agent_info(&aid)) {
            Ok(i) => i,
            Err(e) => {
                // Registered by an agent that never wrote it (or it was
                // lost): the master's view is all there is to go by.
                log!("no agent info to compare the flags with ({e}); not checking them");
                return Ok(());
            }
        };
        let checkpointed = checkpointed::load(&self.work)?.wanted().clone();
        let policy = self.cfg.reconfiguration_policy;
        reconfig::check(&aid, policy, &old, &self.agent_info(&st), &checkpointed)?;
        if !reconfig::changes(
            reconfig::ReconfigurationPolicy::Equal,
            &old,
            &self.agent_info(&st),
            &checkpointed,
        )
        .is_empty()
        {
            log!(
                "resources/attributes changed since agent {aid} registered ({} -> {}); \
                 {}={policy} allows it: re-registering with them",
                old.resources,
                self.cfg.resources,
                reconfig::FLAG
            );
        }
        Ok(())
    }

    fn checkpoint_agent(&self, st: &State) -> Result<(), checkpoint::CheckpointError> {
        let Some(id) = &st.agent_id else {
            return Ok(());
        };
        checkpoint::write_json(&self.work.agent_info(&id.value), &self.agent_info(st))?;
        // latest -> <AID>, replaced atomically (symlink, then rename).
        let latest = self.work.latest();
        let tmp = latest.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&id.value, &tmp).map_err(|source| {
            checkpoint::CheckpointError::Io {
                step: "linking",
                path: tmp.clone(),
                source,
            }
        })?;
        std::fs::rename(&tmp, &latest).map_err(|source| checkpoint::CheckpointError::Io {
            step: "renaming",
            path: latest.clone(),
            source,
        })?;
        checkpoint::write_atomic(&self.work.boot_id(), st.boot_id.as_bytes())
    }

    // ---------------------------------------------------------------------
    // Dynamic reservations and persistent volumes

    /// CHECKPOINT_RESOURCES: the master's complete set of dynamic
    /// reservations and volumes here. A set that does not fit the agent's
    /// resources is refused whole (logged): the master and the agent
    /// disagree about the agent, and a re-registration settles it.
    fn checkpoint_resources(&self, st: &mut State, resources: Resources) {
        let total = match checkpointed::validate(&self.cfg.resources, &resources) {
            Ok(t) => t,
            Err(e) => {
                log!("refusing CHECKPOINT_RESOURCES: {e}");
                return;
            }
        };
        match checkpointed::diff(&st.checkpointed, &resources) {
            Ok(d) if !d.is_empty() => log!(
                "checkpointing {} resources: volumes to create {:?}, resize {:?}, destroy {:?}",
                resources.len(),
                d.created
                    .iter()
                    .map(|v| v.key.to_string())
                    .collect::<Vec<_>>(),
                d.resized
                    .iter()
                    .map(|(v, _)| v.key.to_string())
                    .collect::<Vec<_>>(),
                d.destroyed
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>(),
            ),
            Ok(_) => log!(
                "checkpointing {} resources (no volume changes)",
                resources.len()
            ),
            Err(e) => log!("checkpointing resources: {e}"),
        }
        st.checkpointed = resources;
        st.total = total;
        self.converge_volumes(st);
    }

    /// Queues a pass of the volume worker towards `st.checkpointed`.
    fn converge_volumes(&self, st: &mut State) {
        st.volumes_deferred.clear();
        let in_use = volumes_in_use(st);
        self.volumes.submit(st.checkpointed.clone(), in_use);
    }

    /// Reads the checkpointed resources (before the tasks: they outlive
    /// agent ids, so a rebooted agent that registers anew still has them).
    fn recover_resources(&self) -> Result<(), AgentError> {
        let c = checkpointed::load(&self.work)?;
        let wanted = c.wanted().clone();
        if wanted.is_empty() {
            return Ok(());
        }
        let total = checkpointed::apply_checkpointed(&self.cfg.resources, &wanted)?;
        log!(
            "recovered {} checkpointed resources{}",
            wanted.len(),
            if c.target.is_some() {
                " (their last apply did not finish: applying again)"
            } else {
                ""
            }
        );
        let mut st = self.lock();
        st.checkpointed = wanted;
        st.total = total;
        Ok(())
    }

    // ---------------------------------------------------------------------
    // Status updates

    /// Makes, checkpoints and (when its turn comes) sends an update of a
    /// task the agent has.
    fn update(
        &self,
        st: &mut State,
        fid: &FrameworkID,
        tid: &TaskID,
        state: TaskState,
        reason: Option<Reason>,
        message: Option<String>,
    ) {
        let Some(t) = st
            .frameworks
            .get_mut(fid)
            .and_then(|f| f.tasks.get_mut(tid))
        else {
            return;
        };
        let mut status = TaskStatus::new(tid.clone(), state);
        status.message = message;
        status.reason = reason;
        status.source = Some(TaskSource::Agent);
        status.agent_id = Some(AgentID::new(&t.ids.agent_id));
        status.executor_id = Some(ExecutorID::new(&t.ids.executor_id));
        status.timestamp = Some(now_secs());
        status.uuid = Some(encode_base64(&random_uuid()));
        status.container_status = Some(ContainerStatus {
            container_id: Some(ContainerID {
                value: t.ids.container_id.clone(),
                parent: None,
            }),
            executor_pid: t.pid.map(|p| p as u32),
            ..Default::default()
        });
        t.state = state;
        t.statuses.push(status.clone());
        let log = self.work.task_updates(&t.ids);
        if state.is_terminal() {
            *st.terminal_counts.entry(state).or_default() += 1;
        }
        match st.updates.update(fid, status, Some(&log), Instant::now()) {
            Ok(Some(out)) => self.post_update(st, out),
            Ok(None) => {}
            Err(e) => log!("status update of task {tid} ({state}): {e}"),
        }
    }

    fn acknowledge(self: &Arc<Self>, st: &mut State, fid: &FrameworkID, tid: &TaskID, uuid: &str) {
        match st.updates.acknowledge(fid, tid, uuid, Instant::now()) {
            Ok(AckOutcome::Acked(acked)) => {
                if let Some(out) = acked.next {
                    self.post_update(st, out);
                }
                if acked.status.state.is_terminal() {
                    self.complete_task(st, fid, tid);
                }
            }
            Ok(AckOutcome::Ignored | AckOutcome::UnknownTask) => {}
            Err(e) => log!("acknowledgement for task {tid}: {e}"),
        }
    }

    /// The task's terminal update is acknowledged (or its framework is
    /// gone): forget it and remove its container's state; the sandbox stays.
    fn complete_task(&self, st: &mut State, fid: &FrameworkID, tid: &TaskID) {
        let Some(fw) = st.frameworks.get_mut(fid) else {
            return;
        };
        let Some(t) = fw.tasks.remove(tid) else {
            return;
        };
        let remove_fw = fw.tasks.is_empty() && fw.shutting_down;
        if remove_fw {
            st.frameworks.remove(fid);
        }
        let launcher = self.launcher.clone();
        let cid = t.ids.container_id.clone();
        tokio::task::spawn_blocking(move || match launcher.remove(&cid, true) {
            Ok(()) | Err(launcher::Error::NotFound(_)) => {}
            Err(e) => log!("removing container {cid}: {e}"),
        });
        st.completed.push_back((fid.clone(), t));
        while st.completed.len() > COMPLETED_KEPT {
            st.completed.pop_front();
        }
    }

    // ---------------------------------------------------------------------
    // Tasks

    fn run_task(self: &Arc<Self>, st: &mut State, framework_info: FrameworkInfo, task: TaskInfo) {
        let tid = task.task_id.clone();
        let Some(fid) = framework_info.id.clone() else {
            log!("RUN_TASK {tid} without a framework id: ignored");
            return;
        };
        let Some(agent_id) = st.agent_id.clone() else {
            log!("RUN_TASK {tid} before registration: ignored");
            return;
        };
        if st
            .frameworks
            .get(&fid)
            .is_some_and(|f| f.tasks.contains_key(&tid))
        {
            log!("RUN_TASK {tid} of framework {fid}: the task exists already; ignored");
            return;
        }
        let fw = st
            .frameworks
            .entry(fid.clone())
            .or_insert_with(|| Framework {
                info: framework_info.clone(),
                tasks: BTreeMap::new(),
                shutting_down: false,
            });
        fw.info = framework_info.clone();
        fw.shutting_down = false;
        let ids = RunIds {
            agent_id: agent_id.value.clone(),
            framework_id: fid.value.clone(),
            executor_id: tid.value.clone(),
            container_id: paths::new_container_id(),
            task_id: tid.value.clone(),
        };
        let sandbox = self.work.sandbox(&ids);
        let task_volumes = checkpointed::task_volumes(&task.resources);
        fw.tasks.insert(
            tid.clone(),
            Task {
                info: task.clone(),
                ids: ids.clone(),
                sandbox: sandbox.clone(),
                state: TaskState::Staging,
                statuses: Vec::new(),
                pid: None,
                phase: Phase::Launching,
                kill: None,
                volumes: task_volumes.as_ref().cloned().unwrap_or_default(),
            },
        );
        log!(
            "running task {tid} of framework {fid} in container {}",
            ids.container_id
        );
        let prepared = checkpoint::write_json(
            &self.work.framework_info(&ids.agent_id, &ids.framework_id),
            &framework_info,
        )
        .and_then(|()| checkpoint::write_json(&self.work.task_info(&ids), &task))
        .and_then(|()| checkpoint::ensure_dir(&sandbox));
        let fail = |st: &mut State, state, reason, message: String| {
            if let Some(t) = st
                .frameworks
                .get_mut(&fid)
                .and_then(|f| f.tasks.get_mut(&tid))
            {
                t.phase = Phase::Exited;
            }
            log!("task {tid}: {state}: {message}");
            self.update(st, &fid, &tid, state, Some(reason), Some(message));
        };
        if let Err(e) = prepared {
            return fail(
                st,
                TaskState::Failed,
                Reason::ContainerLaunchFailed,
                format!("Failed to prepare the task: {e}"),
            );
        }
        if let Err(r) = task::check_supported(&task) {
            return fail(st, r.state, r.reason, r.message);
        }
        let task_volumes = match task_volumes {
            Ok(v) => v,
            Err(e) => return fail(st, TaskState::Error, Reason::TaskInvalid, e.to_string()),
        };
        // The master only hands out volumes it checkpointed here first; one
        // the agent does not have is a task it cannot run.
        if let Err(message) = checkpointed::check_task_volumes(&st.checkpointed, &task_volumes) {
            return fail(st, TaskState::Error, Reason::ResourcesUnknown, message);
        }
        let hidden = vec![
            self.work.meta(),
            self.cfg.launcher_root.clone(),
            self.volumes.root().to_path_buf(),
        ];
        let ctx = TaskContext {
            framework: &framework_info,
            agent_id: &agent_id.value,
            agent_endpoint: &self.endpoint,
            sandbox: &sandbox,
            hidden_paths: hidden,
            cgroup_parent: &self.cfg.cgroup_parent,
        };
        let req = match task::launch_request(&task, &ctx) {
            Ok(r) => r,
            Err(m) => {
                return fail(
                    st,
                    TaskState::Failed,
                    Reason::ContainerLaunchFailed,
                    format!("Failed to launch container: {m}"),
                )
            }
        };
        self.update(st, &fid, &tid, TaskState::Starting, None, None);
        let opts = CreateOptions {
            id: Some(ids.container_id.clone()),
            sandbox: Some(sandbox.clone()),
            stdout_path: Some(sandbox.join("stdout")),
            stderr_path: Some(sandbox.join("stderr")),
            exe: self.cfg.supervisor_exe.clone(),
            ..Default::default()
        };
        let launcher = self.launcher.clone();
        let tx = self.tx.clone();
        // Mounted once the volume changes queued so far are made.
        let gen = self.volumes.requested();
        let shared = self.clone();
        let prepare = move |req: &mut launcher::spec::LaunchRequest| {
            let mounts = shared.volumes.mounts(gen, &sandbox, &task_volumes)?;
            req.volumes.extend(mounts);
            Ok(())
        };
        let spawned = std::thread::Builder::new()
            .name(format!("task {tid}"))
            .stack_size(256 * 1024)
            .spawn({
                let (fid, tid) = (fid.clone(), tid.clone());
                move || launch_and_wait(&launcher, req, prepare, &opts, fid, tid, &tx)
            });
        if let Err(e) = spawned {
            fail(
                st,
                TaskState::Failed,
                Reason::ContainerLaunchFailed,
                format!("Failed to launch container: no thread: {e}"),
            );
        }
    }

    fn on_launched(
        self: &Arc<Self>,
        st: &mut State,
        fid: &FrameworkID,
        tid: &TaskID,
        result: Result<i32, String>,
    ) {
        let Some(t) = st
            .frameworks
            .get_mut(fid)
            .and_then(|f| f.tasks.get_mut(tid))
        else {
            return;
        };
        match result {
            Ok(pid) => {
                t.pid = Some(pid);
                if t.phase == Phase::Launching {
                    t.phase = Phase::Running;
                }
                if let Some(grace) = t.kill {
                    // Killed while launching: no RUNNING, straight to the kill.
                    let cid = t.ids.container_id.clone();
                    self.signal_and_schedule(fid, tid, &cid, grace);
                } else {
                    self.update(st, fid, tid, TaskState::Running, None, None);
                }
            }
            Err(message) => {
                t.phase = Phase::Exited;
                log!("task {tid}: launch failed: {message}");
                if t.kill.is_some() {
                    self.update(
                        st,
                        fid,
                        tid,
                        TaskState::Killed,
                        Some(Reason::TaskKilledDuringLaunch),
                        Some("Task killed during launch".into()),
                    );
                } else {
                    self.update(
                        st,
                        fid,
                        tid,
                        TaskState::Failed,
                        Some(Reason::ContainerLaunchFailed),
                        Some(format!("Failed to launch container: {message}")),
                    );
                }
                self.after_terminal(st, fid, tid);
            }
        }
    }

    fn on_exited(
        self: &Arc<Self>,
        st: &mut State,
        fid: &FrameworkID,
        tid: &TaskID,
        exit: ExitInfo,
    ) {
        let Some(t) = st
            .frameworks
            .get_mut(fid)
            .and_then(|f| f.tasks.get_mut(tid))
        else {
            return;
        };
        if t.phase == Phase::Exited || t.state.is_terminal() {
            t.phase = Phase::Exited;
            return;
        }
        t.phase = Phase::Exited;
        let o = task::outcome(&exit, t.kill.is_some());
        log!("task {tid}: {}: {}", o.state, o.message);
        self.update(st, fid, tid, o.state, o.reason, Some(o.message));
        self.after_terminal(st, fid, tid);
    }

    /// A task of a framework that is shutting down needs no acknowledgement
    /// (nobody is left to give one): it is complete once its update is out.
    fn after_terminal(self: &Arc<Self>, st: &mut State, fid: &FrameworkID, tid: &TaskID) {
        if st.frameworks.get(fid).is_some_and(|f| f.shutting_down) {
            st.updates.forget(fid, tid);
            self.complete_task(st, fid, tid);
        }
    }

    fn kill_task(
        self: &Arc<Self>,
        st: &mut State,
        fid: &FrameworkID,
        tid: &TaskID,
        policy: Option<KillPolicy>,
    ) {
        if st
            .completed
            .iter()
            .any(|(f, t)| f == fid && &t.info.task_id == tid)
        {
            return;
        }
        let known = st
            .frameworks
            .get(fid)
            .and_then(|f| f.tasks.get(tid))
            .cloned();
        let Some(t) = known else {
            return self.kill_unknown(st, fid, tid);
        };
        if t.phase == Phase::Exited || t.kill.is_some() {
            return;
        }
        let grace = policy
            .and_then(|p| p.grace_period)
            .or_else(|| t.info.kill_policy.as_ref().and_then(|p| p.grace_period))
            .map(|d| Duration::from_nanos(d.nanoseconds.max(0) as u64))
            .unwrap_or(DEFAULT_GRACE);
        let killing_state = st.frameworks.get(fid).is_some_and(|f| {
            f.info
                .has_capability(&FrameworkCapabilityType::TaskKillingState)
        });
        if let Some(t) = st
            .frameworks
            .get_mut(fid)
            .and_then(|f| f.tasks.get_mut(tid))
        {
            t.kill = Some(grace);
        }
        log!(
            "killing task {tid} (grace period {:.1}s)",
            grace.as_secs_f64()
        );
        if killing_state {
            self.update(st, fid, tid, TaskState::Killing, None, None);
        }
        if t.phase == Phase::Running {
            self.signal_and_schedule(fid, tid, &t.ids.container_id, grace);
        }
    }

    /// KILL_TASK for a task this agent does not have: tell the framework it
    /// is gone (TASK_DROPPED for partition-aware frameworks, else TASK_LOST),
    /// so that it does not wait for an update that never comes.
    fn kill_unknown(&self, st: &mut State, fid: &FrameworkID, tid: &TaskID) {
        let partition_aware = st.frameworks.get(fid).is_some_and(|f| {
            f.info
                .has_capability(&FrameworkCapabilityType::PartitionAware)
        });
        let Some(agent_id) = st.agent_id.clone() else {
            return;
        };
        let state = if partition_aware {
            TaskState::Dropped
        } else {
            TaskState::Lost
        };
        log!("KILL_TASK for unknown task {tid} of framework {fid}: {state}");
        let mut status = TaskStatus::new(tid.clone(), state);
        status.message = Some("Cannot kill task: it is unknown to this agent".into());
        status.reason = Some(Reason::TaskUnknown);
        status.source = Some(TaskSource::Agent);
        status.agent_id = Some(agent_id);
        status.timestamp = Some(now_secs());
        status.uuid = Some(encode_base64(&random_uuid()));
        // Not checkpointed: there is no task to recover (as in Mesos).
        match st.updates.update(fid, status, None, Instant::now()) {
            Ok(Some(out)) => self.post_update(st, out),
            Ok(None) => {}
            Err(e) => log!("status update of unknown task {tid}: {e}"),
        }
    }

    /// SIGTERM to every process of the container now, SIGKILL when the
    /// grace period is over (or at once for a zero grace period).
    fn signal_and_schedule(&self, fid: &FrameworkID, tid: &TaskID, cid: &str, grace: Duration) {
        let tx = self.tx.clone();
        let (fid, tid) = (fid.clone(), tid.clone());
        if grace.is_zero() {
            let _ = tx.send(Event::KillDeadline { fid, tid });
            return;
        }
        signal_container(&self.launcher, cid, Signal::SIGTERM);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = tx.send(Event::KillDeadline { fid, tid });
        });
    }

    fn on_kill_deadline(&self, st: &mut State, fid: &FrameworkID, tid: &TaskID) {
        let Some(t) = st.frameworks.get(fid).and_then(|f| f.tasks.get(tid)) else {
            return;
        };
        if t.phase != Phase::Running {
            return;
        }
        let launcher = self.launcher.clone();
        let cid = t.ids.container_id.clone();
        tokio::task::spawn_blocking(move || {
            signal_container(&launcher, &cid, Signal::SIGKILL);
            if let Ok((_, cst, _)) = launcher.load(&cid) {
                if let Some(cg) = &cst.cgroup {
                    let _ = cg.kill_all();
                }
            }
        });
    }

    fn shutdown_framework(self: &Arc<Self>, st: &mut State, fid: &FrameworkID) {
        let Some(fw) = st.frameworks.get_mut(fid) else {
            return;
        };
        log!("shutting down framework {fid}");
        fw.shutting_down = true;
        let tasks: Vec<Task> = fw.tasks.values().cloned().collect();
        if tasks.is_empty() {
            st.frameworks.remove(fid);
            return;
        }
        for t in tasks {
            let tid = t.info.task_id.clone();
            if t.phase == Phase::Exited {
                st.updates.forget(fid, &tid);
                self.complete_task(st, fid, &tid);
            } else if t.kill.is_none() {
                self.kill_task(st, fid, &tid, None);
            }
        }
    }

    // ---------------------------------------------------------------------
    // Recovery

    /// Rebuilds the state a previous run of the agent checkpointed: the
    /// agent id, frameworks, tasks and their update streams; re-adopts the
    /// containers still running and reports those that exited meanwhile.
    /// After a reboot (other boot id) the agent starts afresh, as Mesos does.
    fn recover(self: &Arc<Self>) -> Result<(), AgentError> {
        let mut st = self.lock();
        let old_boot = std::fs::read_to_string(self.work.boot_id())
            .map(|s| s.trim().to_string())
            .ok();
        let latest = std::fs::read_link(self.work.latest())
            .ok()
            .and_then(|p| p.to_str().map(str::to_string));
        checkpoint::write_atomic(&self.work.boot_id(), st.boot_id.as_bytes())?;
        let Some(aid) = latest else {
            return Ok(());
        };
        if old_boot.as_deref() != Some(st.boot_id.as_str()) {
            // The reboot took the containers with it; what the launcher
            // still has of them (state directories, exit records) is stale.
            let mut stale = 0;
            for ids in self.work.checkpointed_runs(&aid) {
                if self.launcher.load(&ids.container_id).is_ok() {
                    match self.launcher.remove(&ids.container_id, true) {
                        Ok(_) => stale += 1,
                        Err(e) => log!(
                            "removing container {} of task {} left from before the reboot: {e}",
                            ids.container_id,
                            ids.task_id
                        ),
                    }
                }
            }
            log!(
                "the host rebooted since agent {aid} ran: registering as a new agent \
                 ({stale} container(s) of its tasks removed)"
            );
            st.previous_agent_id = Some(AgentID::new(&aid));
            let _ = std::fs::remove_file(self.work.latest());
            return Ok(());
        }
        st.agent_id = Some(AgentID::new(&aid));
        let runs = self.work.checkpointed_runs(&aid);
        let mut readopted = 0;
        for ids in runs {
            match self.recover_run(&mut st, &ids) {
                Ok(true) => readopted += 1,
                Ok(false) => {}
                Err(e) => log!(
                    "recovering task {} ({}): {e}",
                    ids.task_id,
                    ids.container_id
                ),
            }
        }
        log!("recovered agent {aid}: {readopted} task(s) to report");
        Ok(())
    }

    /// Recovers one task run; true if the task is still the agent's.
    fn recover_run(&self, st: &mut State, ids: &RunIds) -> Result<bool, String> {
        let fid = FrameworkID::new(&ids.framework_id);
        let tid = TaskID::new(&ids.task_id);
        let info: TaskInfo =
            checkpoint::read_json(&self.work.task_info(ids)).map_err(|e| e.to_string())?;
        let fw_info: FrameworkInfo =
            checkpoint::read_json(&self.work.framework_info(&ids.agent_id, &ids.framework_id))
                .map_err(|e| e.to_string())?;
        let rec = st
            .updates
            .recover(&fid, &tid, &self.work.task_updates(ids))
            .map_err(|e| e.to_string())?;
        let container = self.launcher.load(&ids.container_id).ok();
        if rec.closed {
            // Done before the restart; only its container may be left.
            if container.is_some() {
                let _ = self.launcher.remove(&ids.container_id, true);
            }
            st.updates.forget(&fid, &tid);
            return Ok(false);
        }
        let state = rec
            .updates
            .last()
            .map(|s| s.state)
            .unwrap_or(TaskState::Staging);
        let mut t = Task {
            volumes: checkpointed::task_volumes(&info.resources).unwrap_or_default(),
            info,
            ids: ids.clone(),
            sandbox: self.work.sandbox(ids),
            state,
            statuses: rec.updates.clone(),
            pid: None,
            phase: if state.is_terminal() {
                Phase::Exited
            } else {
                Phase::Running
            },
            kill: (state == TaskState::Killing).then_some(DEFAULT_GRACE),
        };
        let mut exit = None;
        if !state.is_terminal() {
            match container {
                Some((dir, cst, Status::Running)) => {
                    t.pid = cst.init.map(|p| p.pid);
                    let tx = self.tx.clone();
                    let (f2, t2) = (fid.clone(), tid.clone());
                    let _ = std::thread::Builder::new()
                        .name(format!("task {tid}"))
                        .stack_size(256 * 1024)
                        .spawn(move || {
                            let exit = launcher::container::wait_for_exit(&dir, &cst, None)
                                .unwrap_or_else(|| lost("the container's exit was not recorded"));
                            let _ = tx.send(Event::Exited {
                                fid: f2,
                                tid: t2,
                                exit,
                            });
                        });
                }
                Some((dir, _, Status::Stopped)) => {
                    exit = Some(
                        dir.read_exit()
                            .unwrap_or_else(|| lost("the container's exit was not recorded")),
                    );
                }
                Some((_, _, _)) => {
                    // Created but never started: the launch was cut short.
                    let _ = self.launcher.remove(&ids.container_id, true);
                    exit = Some(lost("the agent restarted while launching the container"));
                }
                None => {
                    exit = Some(lost(
                        "the container is gone (lost while the agent was down)",
                    ));
                }
            }
        }
        let fw = st
            .frameworks
            .entry(fid.clone())
            .or_insert_with(|| Framework {
                info: fw_info,
                tasks: BTreeMap::new(),
                shutting_down: false,
            });
        fw.tasks.insert(tid.clone(), t);
        if let Some(exit) = exit {
            let _ = self.tx.send(Event::Exited { fid, tid, exit });
        }
        Ok(true)
    }
}

/// The volumes of tasks that are launching or running.
fn volumes_in_use(st: &State) -> BTreeSet<VolumeKey> {
    st.frameworks
        .values()
        .flat_map(|f| f.tasks.values())
        .filter(|t| t.phase != Phase::Exited)
        .flat_map(|t| t.volumes.iter().map(|v| v.key.clone()))
        .collect()
}

/// An exit the agent did not see happen.
fn lost(why: &str) -> ExitInfo {
    ExitInfo {
        exit_code: 255,
        signal: None,
        oom_killed: false,
        finished_at: launcher::state::now_nanos(),
        note: Some(format!("Container terminated: {why}")),
    }
}

/// Sends `sig` to the container's init and every process in its cgroup
/// (Mesos signals the whole process tree of a command task; init alone
/// would ignore SIGTERM unless it handles it, being pid 1 of its namespace).
fn signal_container(launcher: &Launcher, cid: &str, sig: Signal) {
    let Ok((_, cst, _)) = launcher.load(cid) else {
        return;
    };
    let _ = launcher.kill(cid, sig);
    if let Some(cg) = &cst.cgroup {
        for pid in cg.pids().unwrap_or_default() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }
}

/// The body of a task's thread: create and start the container, report it,
/// then wait for the supervisor to report the exit.
fn launch_and_wait(
    launcher: &Launcher,
    mut req: launcher::spec::LaunchRequest,
    prepare: impl FnOnce(&mut launcher::spec::LaunchRequest) -> Result<(), String>,
    opts: &CreateOptions,
    fid: FrameworkID,
    tid: TaskID,
    tx: &mpsc::UnboundedSender<Event>,
) {
    if let Err(e) = prepare(&mut req) {
        let _ = tx.send(Event::Launched {
            fid,
            tid,
            result: Err(e),
        });
        return;
    }
    let mut created = match launcher.create(&req, opts) {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(Event::Launched {
                fid,
                tid,
                result: Err(e.to_string()),
            });
            return;
        }
    };
    if let Err(e) = launcher.start(&created.id) {
        let _ = launcher.remove(&created.id, true);
        created.wait_supervisor();
        let _ = tx.send(Event::Launched {
            fid,
            tid,
            result: Err(e.to_string()),
        });
        return;
    }
    let _ = tx.send(Event::Launched {
        fid: fid.clone(),
        tid: tid.clone(),
        result: Ok(created.pid),
    });
    let mut exit = None;
    while let Some(report) = created.next_report() {
        if let launcher::supervisor::Report::Exited(e) = report {
            exit = Some(e);
            break;
        }
    }
    created.wait_supervisor();
    let exit = exit
        .or_else(|| launcher.root.container(&created.id).read_exit())
        .unwrap_or_else(|| lost("the supervisor ended without recording the exit"));
    let _ = tx.send(Event::Exited { fid, tid, exit });
}
