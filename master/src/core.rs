//! The master's state machine: frameworks, agents, offers and tasks.
//!
//! Everything the master knows lives in one [`Core`], behind one lock, and
//! changes only through its methods: one per scheduler call, agent message or
//! timer. A method never waits: what it has to tell a framework or an agent
//! it queues on that peer's stream ([`Sink`]) at once, so the order of events
//! on a stream is the order of changes here. The transport (`http`) parses
//! requests and turns a [`Refusal`] into a status code; the allocator decides
//! who is offered what; the registry keeps what must survive a restart.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use masterlink::protocol::{AgentInfo, AgentTask, MasterMessage, Register};
use masterlink::resources::AllocationInfo;
use masterlink::scheduler::{
    Accept, Acknowledge, Address, AgentID, Event, ExecutorID, Failure, FrameworkCapabilityType,
    FrameworkID, FrameworkInfo, Kill, MasterInfo, Offer, OfferID, OperationType, Reason, Reconcile,
    TaskID, TaskInfo, TaskSource, TaskState, TaskStatus, Url,
};
use masterlink::{Attribute, ResourceFormat, Resources};
use tokio::sync::{mpsc, Notify};

use crate::allocator::{Allocator, Capabilities, MAX_REFUSE};
use crate::operations::{self, Requester, ResourceOp};
use crate::registry::{AgentRecord, FrameworkRecord, Registry, RegistryError};

/// A peer's event stream: RecordIO records, unbounded so that no event is
/// ever dropped for a slow reader (Mesos queues without bound too).
pub type Sink = mpsc::UnboundedSender<Bytes>;

/// Terminal tasks kept per framework for the APIs (Mesos'
/// `--max_completed_tasks_per_framework` defaults to 1000).
const MAX_COMPLETED_TASKS: usize = 1000;
/// Removed frameworks kept for the APIs (`--max_completed_frameworks`: 50).
const MAX_COMPLETED_FRAMEWORKS: usize = 50;
/// Statuses kept per task.
const MAX_STATUSES: usize = 20;
/// Registry keys of agents' checkpointed resources: prefix + agent id.
pub const CHECKPOINTED_PREFIX: &str = "agent-resources/";

/// How the core behaves; the master's flags.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Time between HEARTBEAT events on a scheduler stream.
    pub heartbeat_interval: Duration,
    /// Time between PINGs to an agent.
    pub agent_ping_interval: Duration,
    /// Missed PINGs after which an agent is unreachable.
    pub max_agent_ping_timeouts: u32,
    /// `--roles`: when set, the only roles frameworks may subscribe to
    /// (Mesos' deprecated whitelist).
    pub roles: Option<BTreeSet<String>>,
    /// Who may reserve, unreserve, create and destroy.
    pub acls: crate::auth::Acls,
    /// After a failover, how long the agents the registry admitted have to
    /// re-register before they are marked unreachable (Mesos'
    /// `--agent_reregister_timeout`).
    pub agent_reregister_timeout: Duration,
}

/// Why a call was refused: the HTTP layer's status code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the call is invalid.
    BadRequest(String),
    /// 403: the framework is known but not subscribed.
    Forbidden(String),
    /// 409: a conflict with the current state.
    Conflict(String),
    /// 503: the registry failed; nothing changed.
    Unavailable(String),
}

/// A framework: subscribed, disconnected (within its failover timeout) or,
/// in `completed_frameworks`, removed.
#[derive(Debug)]
pub struct Framework {
    pub info: FrameworkInfo,
    pub roles: Vec<String>,
    pub format: ResourceFormat,
    /// The open stream, if connected.
    pub stream: Option<Subscriber>,
    pub registered_time: f64,
    pub reregistered_time: Option<f64>,
    pub unregistered_time: Option<f64>,
    /// Active tasks (not yet acknowledged terminal) by task id.
    pub tasks: BTreeMap<String, Task>,
    pub completed_tasks: VecDeque<Task>,
    /// Outstanding offers.
    pub offers: BTreeSet<String>,
    /// Known from an agent's re-registration only (not subscribed since this
    /// master started).
    pub recovered: bool,
}

impl Framework {
    fn has(&self, capability: FrameworkCapabilityType) -> bool {
        self.info.has_capability(&capability)
    }

    /// The state this framework is told (LOST for partition states unless
    /// it is PARTITION_AWARE).
    fn visible(&self, state: TaskState) -> TaskState {
        if self.has(FrameworkCapabilityType::PartitionAware) {
            state
        } else {
            state.for_partition_unaware()
        }
    }

    /// Queues `event` on the stream, if connected.
    fn send(&self, event: &Event) {
        if let Some(sub) = &self.stream {
            match event.to_record(self.format) {
                Ok(record) => {
                    let _ = sub.events.send(Bytes::from(record));
                }
                Err(e) => eprintln!(
                    "berth master: cannot encode an event for framework {}: {e}",
                    self.id()
                ),
            }
        }
    }

    pub fn id(&self) -> &str {
        self.info
            .id
            .as_ref()
            .map(|i| i.value.as_str())
            .unwrap_or("")
    }

    pub fn active(&self) -> bool {
        self.stream.is_some()
    }
}

/// A connected scheduler's stream.
#[derive(Debug)]
pub struct Subscriber {
    pub stream_id: String,
    pub events: Sink,
}

/// A task as the master knows it.
#[derive(Debug, Clone)]
pub struct Task {
    pub info: TaskInfo,
    pub framework_id: String,
    pub agent_id: String,
    /// Latest known state.
    pub state: TaskState,
    pub statuses: Vec<TaskStatus>,
    /// State and uuid of the latest update sent to the framework.
    pub status_update_state: Option<TaskState>,
    pub status_update_uuid: Option<String>,
    /// The allocation role of its resources.
    pub role: String,
    /// Its resources were given back to the allocator.
    pub resources_recovered: bool,
}

/// An agent the master has admitted.
#[derive(Debug)]
pub struct Agent {
    pub id: String,
    pub info: AgentInfo,
    pub version: String,
    pub boot_id: String,
    pub link: Option<AgentLink>,
    pub registered_time: f64,
    pub reregistered_time: Option<f64>,
    /// PINGs sent without a PONG since the last one answered.
    pub missed_pings: u32,
    pub next_ping: u64,
    /// Set when the agent was marked unreachable.
    pub unreachable_time: Option<f64>,
    /// (framework, task) of the tasks on it.
    pub tasks: BTreeSet<(String, String)>,
    /// Its dynamic reservations and persistent volumes (what it was last
    /// told to checkpoint); `info.resources` is the static total.
    pub checkpointed: Resources,
}

impl Agent {
    /// The total the allocator works with: the static resources with the
    /// checkpointed ones in place of what they were made from.
    pub fn total(&self) -> Resources {
        total_with(&self.info.resources, &self.checkpointed)
            .unwrap_or_else(|_| self.info.resources.clone())
    }
}

/// `static_total` with each checkpointed resource in place of its static
/// counterpart; an error names a checkpointed resource the static total
/// does not have (the agent's flags changed).
pub fn total_with(static_total: &Resources, checkpointed: &Resources) -> Result<Resources, String> {
    let mut total = static_total.unallocate();
    for r in checkpointed.iter() {
        let counterpart: Resources = [operations::static_counterpart(r)].into_iter().collect();
        total = total
            .checked_sub(&counterpart)
            .map_err(|e| format!("checkpointed {r} does not fit the agent's resources: {e}"))?;
        total.push(r.clone());
    }
    Ok(total)
}

/// An agent's open stream.
#[derive(Debug)]
pub struct AgentLink {
    pub stream_id: String,
    pub messages: Sink,
}

impl Agent {
    fn send(&self, message: &MasterMessage) {
        if let Some(link) = &self.link {
            let _ = link.messages.send(Bytes::from(message.to_record()));
        }
    }

    pub fn active(&self) -> bool {
        self.link.is_some()
    }

    fn url(&self) -> Url {
        Url {
            scheme: "http".into(),
            address: Address {
                hostname: Some(self.info.hostname.clone()),
                ip: Some(self.info.ip.clone()),
                port: i32::from(self.info.port),
            },
            path: Some("/slave(1)".into()),
            query: Vec::new(),
            fragment: None,
        }
    }
}

/// An agent known from the registry only: admitted by an earlier leader,
/// expected to re-register with this one.
#[derive(Debug, Clone)]
pub struct RecoveredAgent {
    pub record: AgentRecord,
    /// Set once it missed the re-registration deadline.
    pub unreachable_time: Option<f64>,
}

/// An outstanding offer.
#[derive(Debug, Clone)]
pub struct OfferRecord {
    pub id: String,
    pub framework_id: String,
    pub agent_id: String,
    pub role: String,
    /// With allocation info.
    pub resources: Resources,
}

/// Counters for /metrics.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub valid_status_updates: u64,
    pub invalid_status_updates: u64,
    pub agent_registrations: u64,
    pub agent_reregistrations: u64,
    pub agent_removals: u64,
    pub offers_sent: u64,
    pub offers_declined: u64,
    pub offers_accepted: u64,
    pub offers_rescinded: u64,
    pub tasks_launched: u64,
    pub operations: u64,
    pub calls: BTreeMap<String, u64>,
}

/// The master's state; see the module docs.
pub struct Core {
    pub config: CoreConfig,
    pub allocator: Allocator,
    pub registry: Box<dyn Registry>,
    pub master_info: MasterInfo,
    pub start_time: f64,
    /// When this master became the leader; `None` while it follows (a
    /// single master without election leads from its start).
    pub elected_time: Option<f64>,
    /// Agents the registry admitted that have not re-registered with this
    /// master since it recovered the registry (Mesos' recovered agents).
    pub recovered_agents: BTreeMap<String, RecoveredAgent>,
    /// When the recovered agents that are still missing are marked
    /// unreachable.
    pub reregister_deadline: Option<f64>,
    pub frameworks: BTreeMap<String, Framework>,
    pub completed_frameworks: VecDeque<Framework>,
    pub agents: BTreeMap<String, Agent>,
    pub offers: BTreeMap<String, OfferRecord>,
    pub counters: Counters,
    next_framework: u64,
    next_agent: u64,
    next_offer: u64,
    /// Wakes the allocation loop.
    pub allocate_now: Arc<Notify>,
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// 16 random bytes from the kernel.
pub fn random_bytes() -> [u8; 16] {
    use std::io::Read;
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        // Never expected on Linux; fall back to the clock and the process id
        // so that ids stay distinct.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = (nanos ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    b
}

/// A random (version 4) UUID in its text form.
pub fn uuid() -> String {
    let mut b = random_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A status generated by the master (no uuid: not acknowledged).
fn master_status(
    task_id: &TaskID,
    agent_id: Option<&str>,
    state: TaskState,
    reason: Reason,
    message: impl Into<String>,
) -> TaskStatus {
    let mut s = TaskStatus::new(task_id.clone(), state);
    s.source = Some(TaskSource::Master);
    s.reason = Some(reason);
    s.message = Some(message.into());
    s.agent_id = agent_id.map(AgentID::new);
    s.timestamp = Some(now_secs());
    s
}

/// Resources without allocation info (for frameworks without MULTI_ROLE).
/// The capabilities the allocator needs to know of a framework.
fn allocator_capabilities(info: &FrameworkInfo) -> Capabilities {
    Capabilities {
        reservation_refinement: info
            .has_capability(&FrameworkCapabilityType::ReservationRefinement),
    }
}

fn strip_allocation(resources: &Resources) -> Resources {
    resources
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.allocation_info = None;
            r
        })
        .collect()
}

impl Core {
    pub fn new(
        config: CoreConfig,
        allocator: Allocator,
        registry: Box<dyn Registry>,
        master_info: MasterInfo,
    ) -> Core {
        let start_time = now_secs();
        Core {
            config,
            allocator,
            registry,
            master_info,
            start_time,
            elected_time: None,
            recovered_agents: BTreeMap::new(),
            reregister_deadline: None,
            frameworks: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            agents: BTreeMap::new(),
            offers: BTreeMap::new(),
            counters: Counters::default(),
            next_framework: 0,
            next_agent: 0,
            next_offer: 0,
            allocate_now: Arc::new(Notify::new()),
        }
    }

    fn wake_allocator(&self) {
        self.allocate_now.notify_one();
    }

    // -----------------------------------------------------------------------
    // Leadership

    /// This master leads from now on and its registry is the truth: the
    /// agents it admitted are expected to re-register (with their tasks and
    /// frameworks) within the re-registration timeout; frameworks stay in
    /// the registry, so their schedulers can subscribe again with their ids.
    /// Checkpointed resources are read per agent as it re-registers.
    pub fn recover(&mut self, now: f64) -> Result<(), RegistryError> {
        let agents = self.registry.agents()?;
        for record in agents {
            if self.agents.contains_key(&record.id) {
                continue;
            }
            self.recovered_agents.insert(
                record.id.clone(),
                RecoveredAgent {
                    record,
                    unreachable_time: None,
                },
            );
        }
        self.elected_time = Some(now);
        if !self.recovered_agents.is_empty() {
            self.reregister_deadline =
                Some(now + self.config.agent_reregister_timeout.as_secs_f64());
        }
        eprintln!(
            "berth master: recovered the registry: {} agent(s) to re-register within {:?}",
            self.recovered_agents.len(),
            self.config.agent_reregister_timeout
        );
        Ok(())
    }

    /// Marks the recovered agents that did not re-register by the deadline
    /// unreachable, as Mesos does: their record stays in the registry, so
    /// they may still come back (and re-register with their tasks).
    pub fn expire_recovered_agents(&mut self, now: f64) {
        match self.reregister_deadline {
            Some(deadline) if now >= deadline => {}
            _ => return,
        }
        self.reregister_deadline = None;
        for (id, agent) in &mut self.recovered_agents {
            if agent.unreachable_time.is_none() {
                eprintln!(
                    "berth master: agent {id} did not re-register within {:?} after the \
                     failover; marking it unreachable",
                    self.config.agent_reregister_timeout
                );
                agent.unreachable_time = Some(now);
                self.counters.agent_removals += 1;
            }
        }
    }

    // -----------------------------------------------------------------------
    // Frameworks

    /// Whether `framework_id` is known (subscribed or disconnected).
    pub fn framework_known(&self, framework_id: &str) -> bool {
        self.frameworks.contains_key(framework_id)
            || self
                .registry
                .frameworks()
                .map(|fs| fs.iter().any(|f| f.id == framework_id))
                .unwrap_or(false)
    }

    /// Checks a non-SUBSCRIBE call's framework and stream id.
    pub fn check_stream(&self, framework_id: &str, stream_id: Option<&str>) -> Result<(), Refusal> {
        let Some(fw) = self.frameworks.get(framework_id) else {
            return Err(if self.framework_known(framework_id) {
                Refusal::Forbidden("Framework is not subscribed".into())
            } else {
                Refusal::BadRequest("Framework cannot be found".into())
            });
        };
        let Some(sub) = &fw.stream else {
            return Err(Refusal::Forbidden("Framework is not subscribed".into()));
        };
        match stream_id {
            None => Err(Refusal::BadRequest(
                "All non-subscribe calls should include the 'Mesos-Stream-Id' header".into(),
            )),
            Some(given) if given == sub.stream_id => Ok(()),
            Some(given) => Err(Refusal::BadRequest(format!(
                "The stream ID '{given}' included in this request didn't match the stream ID \
                 currently associated with framework ID {framework_id} (header 'Mesos-Stream-Id')"
            ))),
        }
    }

    /// SUBSCRIBE: registers or re-registers a framework and opens its
    /// stream. Returns the framework id and the stream id; the SUBSCRIBED
    /// event is already queued on `events`.
    pub fn subscribe(
        &mut self,
        mut info: FrameworkInfo,
        call_framework_id: Option<&FrameworkID>,
        suppressed_roles: &[String],
        events: Sink,
    ) -> Result<(String, String), String> {
        info.validate_roles()?;
        if let Some(allowed) = &self.config.roles {
            if let Some(role) = info
                .effective_roles()
                .into_iter()
                .find(|r| !allowed.contains(r))
            {
                return Err(format!(
                    "Role '{role}' is not present in the master's --roles"
                ));
            }
        }
        let framework_id = match info.id.as_ref().or(call_framework_id) {
            Some(id) => id.value.clone(),
            None => loop {
                let id = format!("{}-{:04}", self.master_info.id, self.next_framework);
                self.next_framework += 1;
                if !self.frameworks.contains_key(&id) {
                    break id;
                }
            },
        };
        if self
            .completed_frameworks
            .iter()
            .any(|f| f.id() == framework_id)
        {
            return Err(format!(
                "Framework {framework_id} has been removed; subscribe without a framework id"
            ));
        }
        info.id = Some(FrameworkID::new(framework_id.clone()));
        let roles = info.effective_roles();
        let format = info.resource_format();

        // The allocator first (it validates the roles), then the registry, so
        // that a refusal changes nothing.
        let known_to_allocator = self.frameworks.contains_key(&framework_id);
        let added = if known_to_allocator {
            self.allocator.update_framework_roles(&framework_id, &roles)
        } else {
            self.allocator.add_framework(&framework_id, &roles)
        };
        added.map_err(|e| e.to_string())?;
        let _ = self
            .allocator
            .set_capabilities(&framework_id, allocator_capabilities(&info));

        let now = now_secs();
        let registered_at = self
            .registry
            .frameworks()
            .ok()
            .and_then(|fs| fs.into_iter().find(|f| f.id == framework_id))
            .map(|f| f.registered_at);
        let record = FrameworkRecord {
            id: framework_id.clone(),
            info: serde_json::to_value(&info).unwrap_or_default(),
            failover_timeout_secs: info.failover_timeout,
            registered_at: registered_at.unwrap_or(now),
            unregistered_at: None,
        };
        if let Err(e) = self.registry.put_framework(&record) {
            if !known_to_allocator {
                self.allocator.remove_framework(&framework_id);
            }
            return Err(format!(
                "Failed to persist the framework in the registry: {e}"
            ));
        }
        self.allocator.activate_framework(&framework_id);
        if !suppressed_roles.is_empty() {
            self.allocator
                .suppress(&framework_id, Some(suppressed_roles));
        }

        let stream_id = uuid();
        let subscriber = Subscriber {
            stream_id: stream_id.clone(),
            events,
        };
        let fw = match self.frameworks.get_mut(&framework_id) {
            Some(fw) => {
                if let Some(old) = fw.stream.take() {
                    // The old stream gets ERROR and ends (its sender drops).
                    if let Ok(r) = Event::error("Framework failed over").to_record(fw.format) {
                        let _ = old.events.send(Bytes::from(r));
                    }
                }
                // Offers made to the old connection are void.
                let offers: Vec<String> = fw.offers.iter().cloned().collect();
                fw.info = info;
                fw.roles = roles;
                fw.format = format;
                fw.reregistered_time = Some(now);
                fw.unregistered_time = None;
                fw.recovered = false;
                fw.stream = Some(subscriber);
                for offer in offers {
                    self.remove_offer(&offer, false);
                }
                self.frameworks.get_mut(&framework_id).expect("present")
            }
            None => {
                let fw = Framework {
                    info,
                    roles,
                    format,
                    stream: Some(subscriber),
                    registered_time: registered_at.unwrap_or(now),
                    reregistered_time: registered_at.map(|_| now),
                    unregistered_time: None,
                    tasks: BTreeMap::new(),
                    completed_tasks: VecDeque::new(),
                    offers: BTreeSet::new(),
                    recovered: false,
                };
                self.frameworks.entry(framework_id.clone()).or_insert(fw)
            }
        };
        fw.send(&Event::subscribed(masterlink::scheduler::Subscribed {
            framework_id: FrameworkID::new(framework_id.clone()),
            heartbeat_interval_seconds: Some(self.config.heartbeat_interval.as_secs_f64()),
            master_info: Some(self.master_info.clone()),
        }));
        self.wake_allocator();
        Ok((framework_id, stream_id))
    }

    /// The scheduler's stream `stream_id` ended: the framework is inactive
    /// (no offers; its tasks keep running) until a scheduler subscribes with
    /// its id again, or [`Core::expire_frameworks`] removes it after its
    /// failover timeout (0: removed now, as Mesos does).
    pub fn framework_disconnected(&mut self, framework_id: &str, stream_id: &str) {
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        if fw.stream.as_ref().map(|s| s.stream_id.as_str()) != Some(stream_id) {
            return; // an older stream, already replaced
        }
        fw.stream = None;
        fw.unregistered_time = Some(now_secs());
        let timeout = fw.info.failover_timeout;
        let offers: Vec<String> = fw.offers.iter().cloned().collect();
        self.allocator.deactivate_framework(framework_id);
        for offer in offers {
            self.remove_offer(&offer, false);
        }
        if timeout.is_nan() || timeout <= 0.0 {
            self.remove_framework(framework_id);
        }
    }

    /// Removes every disconnected framework whose failover timeout has
    /// passed (called every second).
    pub fn expire_frameworks(&mut self, now: f64) {
        let expired: Vec<String> = self
            .frameworks
            .iter()
            .filter(|(_, fw)| {
                fw.stream.is_none()
                    && fw
                        .unregistered_time
                        .is_some_and(|t| now >= t + fw.info.failover_timeout.max(0.0))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            eprintln!("berth master: framework {id} did not come back within its failover timeout; removing it");
            self.remove_framework(&id);
        }
    }

    /// TEARDOWN, failover timeout: kills the framework's tasks, drops its
    /// offers and moves it to the completed frameworks.
    pub fn remove_framework(&mut self, framework_id: &str) {
        let Some(mut fw) = self.frameworks.remove(framework_id) else {
            return;
        };
        for offer in std::mem::take(&mut fw.offers) {
            self.offers.remove(&offer);
        }
        let mut agents = BTreeSet::new();
        for task in fw.tasks.values_mut() {
            agents.insert(task.agent_id.clone());
            if let Some(agent) = self.agents.get_mut(&task.agent_id) {
                agent
                    .tasks
                    .remove(&(framework_id.to_string(), task.info.task_id.value.clone()));
            }
            if !task.state.is_terminal() {
                task.state = TaskState::Killed;
            }
        }
        for agent_id in agents {
            if let Some(agent) = self.agents.get(&agent_id) {
                agent.send(&MasterMessage::ShutdownFramework {
                    framework_id: FrameworkID::new(framework_id),
                });
            }
        }
        let tasks = std::mem::take(&mut fw.tasks);
        for (_, task) in tasks {
            push_bounded(&mut fw.completed_tasks, task, MAX_COMPLETED_TASKS);
        }
        self.allocator.remove_framework(framework_id);
        if let Err(e) = self.registry.remove_framework(framework_id) {
            eprintln!(
                "berth master: cannot remove framework {framework_id} from the registry: {e}"
            );
        }
        fw.stream = None; // ends the stream
        fw.unregistered_time = Some(now_secs());
        push_bounded(&mut self.completed_frameworks, fw, MAX_COMPLETED_FRAMEWORKS);
        self.wake_allocator();
    }

    pub fn suppress(&mut self, framework_id: &str, roles: Option<&[String]>) {
        self.allocator.suppress(framework_id, roles);
    }

    pub fn revive(&mut self, framework_id: &str, roles: Option<&[String]>) {
        self.allocator.revive(framework_id, roles);
        self.wake_allocator();
    }

    // -----------------------------------------------------------------------
    // Offers

    /// One allocation cycle: turns the allocator's decisions into OFFERS
    /// events, one event per framework.
    pub fn allocate(&mut self, now: Instant) {
        let decisions = self.allocator.allocate(now);
        let mut by_framework: BTreeMap<String, Vec<Offer>> = BTreeMap::new();
        for d in decisions {
            let (Some(fw), Some(agent)) = (
                self.frameworks.get_mut(&d.framework),
                self.agents.get(&d.agent),
            ) else {
                // Cannot happen (the allocator only knows live ones); give
                // the resources back rather than leak them.
                let _ = self
                    .allocator
                    .recover(&d.framework, &d.agent, &d.resources, None, now);
                continue;
            };
            let id = format!("{}-O{}", self.master_info.id, self.next_offer);
            self.next_offer += 1;
            let multi_role = fw.has(FrameworkCapabilityType::MultiRole);
            let executor_ids: BTreeSet<String> = fw
                .tasks
                .values()
                .filter(|t| t.agent_id == d.agent && t.info.executor.is_some())
                .filter_map(|t| {
                    t.info
                        .executor
                        .as_ref()
                        .map(|e| e.executor_id.value.clone())
                })
                .collect();
            let offer = Offer {
                id: OfferID::new(id.clone()),
                framework_id: FrameworkID::new(d.framework.clone()),
                agent_id: AgentID::new(d.agent.clone()),
                hostname: agent.info.hostname.clone(),
                url: Some(agent.url()),
                domain: None,
                resources: if multi_role {
                    d.resources.clone()
                } else {
                    strip_allocation(&d.resources)
                },
                attributes: agent.info.attributes.clone(),
                executor_ids: executor_ids.into_iter().map(ExecutorID::new).collect(),
                unavailability: None,
                allocation_info: multi_role.then(|| AllocationInfo {
                    role: Some(d.role.clone()),
                }),
            };
            fw.offers.insert(id.clone());
            self.offers.insert(
                id.clone(),
                OfferRecord {
                    id,
                    framework_id: d.framework.clone(),
                    agent_id: d.agent.clone(),
                    role: d.role.clone(),
                    resources: d.resources,
                },
            );
            by_framework.entry(d.framework).or_default().push(offer);
        }
        for (fw_id, offers) in by_framework {
            self.counters.offers_sent += offers.len() as u64;
            if let Some(fw) = self.frameworks.get(&fw_id) {
                fw.send(&Event::offers(offers));
            }
        }
    }

    /// Drops an offer and gives its resources back (no filter). With
    /// `rescind`, the framework is told.
    fn remove_offer(&mut self, offer_id: &str, rescind: bool) {
        let Some(offer) = self.offers.remove(offer_id) else {
            return;
        };
        if let Some(fw) = self.frameworks.get_mut(&offer.framework_id) {
            fw.offers.remove(offer_id);
            if rescind {
                fw.send(&Event::rescind(OfferID::new(offer_id)));
                self.counters.offers_rescinded += 1;
            }
        }
        if let Err(e) = self.allocator.recover(
            &offer.framework_id,
            &offer.agent_id,
            &offer.resources,
            None,
            Instant::now(),
        ) {
            eprintln!("berth master: cannot recover offer {offer_id}: {e}");
        }
        self.wake_allocator();
    }

    /// Rescinds every outstanding offer of `agent_id` (its resources go
    /// back to the allocator).
    fn rescind_offers_on(&mut self, agent_id: &str) {
        let offers: Vec<String> = self
            .offers
            .values()
            .filter(|o| o.agent_id == agent_id)
            .map(|o| o.id.clone())
            .collect();
        for offer in offers {
            self.remove_offer(&offer, true);
        }
    }

    /// `refuse_seconds` as Mesos reads it: 0 → no filter; negative or not a
    /// number → the default 5 s; longer than a year → a year.
    fn refusal(filters: Option<&masterlink::scheduler::Filters>) -> Option<Duration> {
        let secs = filters
            .map(|f| f.refuse_seconds)
            .unwrap_or(masterlink::scheduler::Filters::DEFAULT_REFUSE_SECONDS);
        if secs == 0.0 {
            return None;
        }
        let secs = if secs.is_finite() && secs > 0.0 {
            secs
        } else {
            masterlink::scheduler::Filters::DEFAULT_REFUSE_SECONDS
        };
        Some(Duration::from_secs_f64(secs).min(MAX_REFUSE))
    }

    /// DECLINE.
    pub fn decline(
        &mut self,
        framework_id: &str,
        offer_ids: &[OfferID],
        filters: Option<&masterlink::scheduler::Filters>,
    ) {
        let refuse = Core::refusal(filters);
        for id in offer_ids {
            let Some(offer) = self.offers.get(&id.value) else {
                continue; // rescinded or used: nothing to decline (Mesos)
            };
            if offer.framework_id != framework_id {
                continue;
            }
            let offer = self.offers.remove(&id.value).expect("present");
            if let Some(fw) = self.frameworks.get_mut(framework_id) {
                fw.offers.remove(&id.value);
            }
            self.counters.offers_declined += 1;
            if let Err(e) = self.allocator.recover(
                framework_id,
                &offer.agent_id,
                &offer.resources,
                refuse,
                Instant::now(),
            ) {
                eprintln!(
                    "berth master: cannot recover declined offer {}: {e}",
                    id.value
                );
            }
        }
        self.wake_allocator();
    }

    /// ACCEPT: validates the offers, then applies the operations in order.
    /// Task problems become TASK_ERROR / TASK_LOST updates, as Mesos does;
    /// an operation this master cannot apply refuses the whole call first.
    pub fn accept(&mut self, framework_id: &str, accept: Accept) -> Result<(), Refusal> {
        // Each operation in order: resource operations, or the tasks of a
        // LAUNCH. Anything else is refused before anything changes.
        enum Step {
            Resources(ResourceOp),
            Launch(Vec<TaskInfo>),
        }
        let mut steps = Vec::new();
        for op in &accept.operations {
            if op.operation_type == OperationType::Launch {
                let Some(launch) = &op.launch else {
                    return Err(Refusal::BadRequest(
                        "field 'accept.operations': LAUNCH without 'launch'".into(),
                    ));
                };
                steps.push(Step::Launch(launch.task_infos.clone()));
                continue;
            }
            match ResourceOp::from_offer_operation(op) {
                Ok(Some(r)) => steps.push(Step::Resources(r)),
                Ok(None) => {
                    return Err(Refusal::BadRequest(format!(
                        "field 'accept.operations': operation {} is not supported by this \
                         master (LAUNCH, RESERVE, UNRESERVE, CREATE, DESTROY, GROW_VOLUME and \
                         SHRINK_VOLUME are)",
                        op.operation_type
                    )))
                }
                Err(e) => {
                    return Err(Refusal::BadRequest(format!(
                        "field 'accept.operations': {e}"
                    )))
                }
            }
        }
        let tasks: Vec<TaskInfo> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Launch(t) => Some(t.clone()),
                Step::Resources(_) => None,
            })
            .flatten()
            .collect();

        // Offer validation: all exist, belong to this framework, one agent.
        let mut problem = None;
        let mut seen = BTreeSet::new();
        for id in &accept.offer_ids {
            match self.offers.get(&id.value) {
                None => problem = Some(format!("Offer {} is no longer valid", id.value)),
                Some(o) if o.framework_id != framework_id => {
                    problem = Some(format!("Offer {} is not for this framework", id.value))
                }
                Some(_) if !seen.insert(id.value.clone()) => {
                    problem = Some(format!("Offer {} appears more than once", id.value))
                }
                Some(_) => {}
            }
        }
        if accept.offer_ids.is_empty() {
            problem = Some("No offers given".into());
        }
        let agents: BTreeSet<String> = accept
            .offer_ids
            .iter()
            .filter_map(|id| self.offers.get(&id.value))
            .map(|o| o.agent_id.clone())
            .collect();
        if agents.len() > 1 {
            problem = Some("Offers are from more than one agent".into());
        }
        if let Some(problem) = problem {
            // The valid offers are given back; every task is lost/dropped.
            for id in &accept.offer_ids {
                if self
                    .offers
                    .get(&id.value)
                    .is_some_and(|o| o.framework_id == framework_id)
                {
                    self.remove_offer(&id.value, false);
                }
            }
            let fw = self
                .frameworks
                .get(framework_id)
                .expect("checked by caller");
            for task in &tasks {
                let state = fw.visible(TaskState::Dropped);
                fw.send(&Event::update(master_status(
                    &task.task_id,
                    Some(&task.agent_id.value),
                    state,
                    Reason::InvalidOffers,
                    format!("Task launched with invalid offers: {problem}"),
                )));
            }
            return Ok(());
        }

        let agent_id = agents.into_iter().next().expect("one agent");
        let mut remaining = Resources::new();
        let mut role = String::new();
        for id in &accept.offer_ids {
            let offer = &self.offers[&id.value];
            remaining += &offer.resources;
            role = offer.role.clone();
        }

        // First pass, on a copy: every resource operation must be valid and
        // find what it consumes (after the steps before it), or the call is
        // refused and nothing changes (offers stay outstanding).
        let principal = self.frameworks[framework_id].info.principal.clone();
        let requester = Requester {
            role: Some(&role),
            principal: principal.as_deref(),
        };
        let mut scratch = remaining.clone();
        let mut conversions = Vec::new();
        for step in &steps {
            let Step::Resources(op) = step else {
                continue;
            };
            self.authorize(principal.as_deref(), op)?;
            let c = op
                .conversion(&requester)
                .map_err(|e| Refusal::BadRequest(format!("field 'accept.operations': {e}")))?;
            let consumed = c.consumed.unallocate().allocate(&role);
            scratch = scratch.checked_sub(&consumed).map_err(|e| {
                Refusal::BadRequest(format!(
                    "field 'accept.operations': {} needs resources that are not in the \
                     offers: {e}",
                    op.name()
                ))
            })?;
            scratch += &c.produced.unallocate().allocate(&role);
            conversions.push(c);
        }
        let checkpointed = conversions.iter().fold(
            self.agents
                .get(&agent_id)
                .map(|a| a.checkpointed.clone())
                .unwrap_or_default(),
            |cp, c| operations::apply_to_checkpointed(&cp, c),
        );
        if !conversions.is_empty() {
            self.persist_checkpointed(&agent_id, &checkpointed)?;
        }

        // The offers are used up.
        for id in &accept.offer_ids {
            self.offers.remove(&id.value);
            if let Some(fw) = self.frameworks.get_mut(framework_id) {
                fw.offers.remove(&id.value);
            }
        }
        self.counters.offers_accepted += accept.offer_ids.len() as u64;

        // The agent applies the new set (creating volumes) before it gets
        // the tasks that use them: messages on its stream keep their order.
        if let Some(agent) = self.agents.get_mut(&agent_id) {
            if agent.checkpointed != checkpointed {
                agent.checkpointed = checkpointed;
                agent.send(&MasterMessage::CheckpointResources {
                    resources: agent.checkpointed.clone(),
                });
            }
        }

        // Second pass: apply in order.
        let mut conversions = conversions.into_iter();
        for step in steps {
            match step {
                Step::Resources(op) => {
                    let c = conversions.next().expect("one per resource step");
                    let consumed = c.consumed.unallocate().allocate(&role);
                    let produced = c.produced.unallocate().allocate(&role);
                    if let Err(e) = self.allocator.update_allocation(
                        framework_id,
                        &agent_id,
                        &role,
                        &consumed,
                        &produced,
                    ) {
                        eprintln!("berth master: {} on agent {agent_id}: {e}", op.name());
                    }
                    remaining = remaining.checked_sub(&consumed).unwrap_or_default();
                    remaining += &produced;
                    self.counters.operations += 1;
                }
                Step::Launch(tasks) => {
                    for task in tasks {
                        self.launch_one(framework_id, &agent_id, &role, task, &mut remaining);
                    }
                }
            }
        }
        if !remaining.is_empty() {
            let refuse = Core::refusal(accept.filters.as_ref());
            if let Err(e) =
                self.allocator
                    .recover(framework_id, &agent_id, &remaining, refuse, Instant::now())
            {
                eprintln!("berth master: cannot recover unused resources: {e}");
            }
        }
        self.wake_allocator();
        Ok(())
    }

    /// Validates one task of a LAUNCH against what is left of the offers and
    /// launches it, or answers TASK_ERROR.
    fn launch_one(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        role: &str,
        mut task: TaskInfo,
        remaining: &mut Resources,
    ) {
        // Single-role frameworks send resources without allocation info.
        task.resources = task
            .resources
            .iter()
            .map(|r| {
                if r.allocation_info
                    .as_ref()
                    .and_then(|a| a.role.as_ref())
                    .is_some()
                {
                    r.clone()
                } else {
                    r.clone().allocated_to(role.to_string())
                }
            })
            .collect();
        let fw = self
            .frameworks
            .get(framework_id)
            .expect("checked by caller");
        if let Some(message) = self.validate_task(fw, &task, agent_id, remaining) {
            fw.send(&Event::update(master_status(
                &task.task_id,
                Some(agent_id),
                TaskState::Error,
                Reason::TaskInvalid,
                message,
            )));
            return;
        }
        *remaining -= &task.resources;
        self.launch(framework_id, agent_id, role, task);
    }

    /// Checks the ACLs for every resource `op` touches.
    fn authorize(&self, principal: Option<&str>, op: &ResourceOp) -> Result<(), Refusal> {
        use crate::auth::{Action, Denied};
        let acls = &self.config.acls;
        let check = |action: Action<'_>| {
            acls.authorize(principal, action).map_err(|d| match d {
                Denied::Forbidden(m) | Denied::Unauthenticated(m) => Refusal::Forbidden(m),
            })
        };
        let volume_role = |r: &masterlink::Resource| r.owner_role().unwrap_or("*").to_string();
        match op {
            ResourceOp::Reserve(rs) => rs.iter().try_for_each(|r| {
                check(Action::Reserve {
                    role: r.owner_role().unwrap_or("*"),
                })
            }),
            ResourceOp::Unreserve(rs) => rs.iter().try_for_each(|r| {
                check(Action::Unreserve {
                    reserver: r.reservations.last().and_then(|x| x.principal.as_deref()),
                })
            }),
            ResourceOp::Create(vs) => vs.iter().try_for_each(|v| {
                check(Action::CreateVolume {
                    role: &volume_role(v),
                })
            }),
            ResourceOp::Destroy(vs) => vs.iter().try_for_each(|v| {
                check(Action::DestroyVolume {
                    creator: v
                        .disk
                        .as_ref()
                        .and_then(|d| d.persistence.as_ref())
                        .and_then(|p| p.principal.as_deref()),
                })
            }),
            // Resizing is creating (Mesos' RESIZE_VOLUME ACL is not read).
            ResourceOp::Grow { volume, .. } | ResourceOp::Shrink { volume, .. } => {
                check(Action::CreateVolume {
                    role: &volume_role(volume),
                })
            }
        }
    }

    /// Writes an agent's checkpointed resources to the registry (before the
    /// change is applied or answered).
    fn persist_checkpointed(
        &mut self,
        agent_id: &str,
        resources: &Resources,
    ) -> Result<(), Refusal> {
        let key = format!("{CHECKPOINTED_PREFIX}{agent_id}");
        let value = serde_json::to_vec(resources).unwrap_or_default();
        let version = self
            .registry
            .get(&key)
            .map_err(|e| Refusal::Unavailable(format!("registry: {e}")))?
            .map(|(_, v)| v);
        self.registry
            .put(&key, &value, version)
            .map_err(|e| Refusal::Unavailable(format!("Failed to write the registry: {e}")))?;
        Ok(())
    }

    /// The checkpointed resources the registry has for an agent.
    fn registry_checkpointed(&self, agent_id: &str) -> Option<Resources> {
        let key = format!("{CHECKPOINTED_PREFIX}{agent_id}");
        let (value, _) = self.registry.get(&key).ok()??;
        serde_json::from_slice(&value).ok()
    }

    /// An operator's RESERVE_RESOURCES, UNRESERVE_RESOURCES, CREATE_VOLUMES,
    /// DESTROY_VOLUMES, GROW_VOLUME or SHRINK_VOLUME on `agent_id`. The
    /// agent's outstanding offers are rescinded first so that their
    /// resources can be used; the change is in the registry before this
    /// returns, then the agent is told.
    pub fn operate(
        &mut self,
        agent_id: &str,
        op: ResourceOp,
        principal: Option<&str>,
    ) -> Result<(), Refusal> {
        let reachable = self
            .agents
            .get(agent_id)
            .is_some_and(|a| a.unreachable_time.is_none());
        if !reachable {
            return Err(Refusal::BadRequest(format!(
                "No agent found with specified ID {agent_id}"
            )));
        }
        self.authorize(principal, &op)?;
        let c = op
            .conversion(&Requester {
                role: None,
                principal,
            })
            .map_err(Refusal::BadRequest)?;
        self.rescind_offers_on(agent_id);
        let available = self.allocator.available(agent_id).unwrap_or_default();
        if let Err(e) = available.checked_sub(&c.consumed.unallocate()) {
            return Err(Refusal::Conflict(format!(
                "{}: the agent does not have these resources unused: {e}",
                op.name()
            )));
        }
        let agent = &self.agents[agent_id];
        let checkpointed = operations::apply_to_checkpointed(&agent.checkpointed, &c);
        self.persist_checkpointed(agent_id, &checkpointed)?;
        self.allocator
            .update_available(agent_id, &c.consumed, &c.produced)
            .map_err(|e| Refusal::Conflict(e.to_string()))?;
        let agent = self.agents.get_mut(agent_id).expect("checked above");
        agent.checkpointed = checkpointed;
        agent.send(&MasterMessage::CheckpointResources {
            resources: agent.checkpointed.clone(),
        });
        self.counters.operations += 1;
        self.wake_allocator();
        Ok(())
    }

    /// Why `task` cannot be launched, if it cannot.
    fn validate_task(
        &self,
        fw: &Framework,
        task: &TaskInfo,
        agent_id: &str,
        remaining: &Resources,
    ) -> Option<String> {
        if let Err(e) = masterlink::scheduler::validate_client_id(&task.task_id.value) {
            return Some(format!("Task ID '{}' is invalid: {e}", task.task_id.value));
        }
        if fw.tasks.contains_key(&task.task_id.value) {
            return Some(format!("Task has duplicate ID: {}", task.task_id.value));
        }
        if task.agent_id.value != agent_id {
            return Some(format!(
                "Task uses agent {} but the offers are from agent {agent_id}",
                task.agent_id.value
            ));
        }
        match (&task.command, &task.executor) {
            (Some(_), Some(_)) => {
                return Some("Task should have at most one of CommandInfo or ExecutorInfo".into())
            }
            (None, None) => {
                return Some("Task should have at least one of CommandInfo or ExecutorInfo".into())
            }
            _ => {}
        }
        if task.resources.is_empty() {
            return Some("Task uses no resources".into());
        }
        if let Err(e) = task.resources.iter().try_for_each(|r| r.validate()) {
            return Some(format!("Task uses invalid resources: {e}"));
        }
        if !remaining.contains(&task.resources) {
            return Some(format!(
                "Task uses more resources {} than available {}",
                task.resources, remaining
            ));
        }
        None
    }

    /// Records a valid task as STAGING and sends it to its agent.
    fn launch(&mut self, framework_id: &str, agent_id: &str, role: &str, task: TaskInfo) {
        let fw = self
            .frameworks
            .get_mut(framework_id)
            .expect("checked by caller");
        let task_id = task.task_id.value.clone();
        let message = MasterMessage::RunTask {
            framework_info: fw.info.clone(),
            task: task.clone(),
        };
        fw.tasks.insert(
            task_id.clone(),
            Task {
                info: task,
                framework_id: framework_id.to_string(),
                agent_id: agent_id.to_string(),
                state: TaskState::Staging,
                statuses: Vec::new(),
                status_update_state: None,
                status_update_uuid: None,
                role: role.to_string(),
                resources_recovered: false,
            },
        );
        self.counters.tasks_launched += 1;
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.tasks.insert((framework_id.to_string(), task_id));
            agent.send(&message);
        }
    }

    /// KILL: forwarded to the task's agent; an unknown task is reconciled.
    pub fn kill(&mut self, framework_id: &str, kill: Kill) {
        let fw = self
            .frameworks
            .get(framework_id)
            .expect("checked by caller");
        match fw.tasks.get(&kill.task_id.value) {
            Some(task) => {
                if let Some(agent) = self.agents.get(&task.agent_id) {
                    agent.send(&MasterMessage::KillTask {
                        framework_id: FrameworkID::new(framework_id),
                        task_id: kill.task_id.clone(),
                        kill_policy: kill.kill_policy.clone(),
                    });
                }
            }
            None => self.reconcile(
                framework_id,
                Reconcile {
                    tasks: vec![masterlink::scheduler::ReconcileTask {
                        task_id: kill.task_id,
                        agent_id: kill.agent_id,
                    }],
                },
            ),
        }
    }

    /// RECONCILE (implicit with an empty list, else explicit).
    pub fn reconcile(&mut self, framework_id: &str, reconcile: Reconcile) {
        let fw = self
            .frameworks
            .get(framework_id)
            .expect("checked by caller");
        let reply = |task: &Task| {
            let mut s = task
                .statuses
                .last()
                .cloned()
                .unwrap_or_else(|| TaskStatus::new(task.info.task_id.clone(), task.state));
            s.state = fw.visible(task.state);
            s.uuid = None;
            s.source = Some(TaskSource::Master);
            s.reason = Some(Reason::Reconciliation);
            s.message = Some("Reconciliation: Latest task state".into());
            s.agent_id = Some(AgentID::new(task.agent_id.clone()));
            s.timestamp = Some(now_secs());
            s
        };
        if reconcile.tasks.is_empty() {
            for task in fw.tasks.values() {
                fw.send(&Event::update(reply(task)));
            }
            return;
        }
        for wanted in &reconcile.tasks {
            if let Some(task) = fw.tasks.get(&wanted.task_id.value) {
                fw.send(&Event::update(reply(task)));
                continue;
            }
            // The named agent: admitted and reachable, or unreachable since
            // (partitioned, or missing since a failover), or unknown.
            let unreachable_since = wanted.agent_id.as_ref().and_then(|a| {
                match (
                    self.agents.get(&a.value),
                    self.recovered_agents.get(&a.value),
                ) {
                    (Some(agent), _) => Some(agent.unreachable_time),
                    (None, Some(r)) => Some(r.unreachable_time),
                    (None, None) => None,
                }
            });
            let (state, message) = match unreachable_since {
                Some(Some(_)) => (
                    TaskState::Unreachable,
                    "Reconciliation: Task is unreachable",
                ),
                Some(None)
                    if wanted
                        .agent_id
                        .as_ref()
                        .is_some_and(|a| self.agents.contains_key(&a.value)) =>
                {
                    (
                        TaskState::Gone,
                        "Reconciliation: Task is unknown to the agent",
                    )
                }
                // Unknown, or a recovered agent that may still re-register
                // with it.
                _ => (TaskState::Unknown, "Reconciliation: Task is unknown"),
            };
            let mut s = master_status(
                &wanted.task_id,
                wanted.agent_id.as_ref().map(|a| a.value.as_str()),
                fw.visible(state),
                Reason::Reconciliation,
                message,
            );
            if state == TaskState::Unreachable {
                s.unreachable_time =
                    unreachable_since
                        .flatten()
                        .map(|t| masterlink::scheduler::TimeInfo {
                            nanoseconds: (t * 1e9) as i64,
                        });
            }
            fw.send(&Event::update(s));
        }
    }

    /// ACKNOWLEDGE: relayed to the agent; an acknowledged terminal task
    /// becomes a completed task.
    pub fn acknowledge(&mut self, framework_id: &str, ack: Acknowledge) -> Result<(), Refusal> {
        if !matches!(masterlink::scheduler::decode_base64(&ack.uuid), Some(b) if b.len() == 16) {
            return Err(Refusal::BadRequest(
                "field 'acknowledge.uuid': expecting the Base64 of 16 bytes".into(),
            ));
        }
        let fw = self
            .frameworks
            .get_mut(framework_id)
            .expect("checked by caller");
        if let Some(agent) = self.agents.get(&ack.agent_id.value) {
            agent.send(&MasterMessage::Acknowledge {
                framework_id: FrameworkID::new(framework_id),
                task_id: ack.task_id.clone(),
                uuid: ack.uuid.clone(),
            });
        }
        let done = fw.tasks.get(&ack.task_id.value).is_some_and(|t| {
            t.status_update_uuid.as_deref() == Some(ack.uuid.as_str())
                && t.status_update_state.is_some_and(|s| s.is_terminal())
        });
        if done {
            let task = fw.tasks.remove(&ack.task_id.value).expect("present");
            if let Some(agent) = self.agents.get_mut(&task.agent_id) {
                agent
                    .tasks
                    .remove(&(framework_id.to_string(), task.info.task_id.value.clone()));
            }
            push_bounded(&mut fw.completed_tasks, task, MAX_COMPLETED_TASKS);
        }
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Agents

    /// REGISTER: admits a new agent or takes back a known one, and opens its
    /// stream (REGISTERED is already queued on `messages`). Returns the
    /// agent id and stream id.
    pub fn register_agent(
        &mut self,
        register: Register,
        messages: Sink,
    ) -> Result<(String, String), String> {
        if register.protocol_version != masterlink::protocol::PROTOCOL_VERSION {
            return Err(format!(
                "agent speaks masterlink protocol version {} but this master speaks {}",
                register.protocol_version,
                masterlink::protocol::PROTOCOL_VERSION
            ));
        }
        if let Err(e) = register
            .agent_info
            .resources
            .iter()
            .try_for_each(|r| r.validate())
        {
            return Err(format!("field 'agent_info.resources': {e}"));
        }
        let now = now_secs();
        let mut info = register.agent_info;
        let reregister = info.id.is_some();
        let agent_id = match &info.id {
            Some(id) => id.value.clone(),
            None => loop {
                let id = format!("{}-S{}", self.master_info.id, self.next_agent);
                self.next_agent += 1;
                if !self.agents.contains_key(&id) {
                    break id;
                }
            },
        };
        info.id = Some(AgentID::new(agent_id.clone()));
        if reregister {
            // Before anything changes: a refused agent leaves the master's
            // view of it as it was.
            self.check_changed_agent(
                &agent_id,
                &info,
                &register.tasks,
                &register.checkpointed_resources,
            )?;
        }

        // Frameworks of the reported tasks that this master does not know
        // (it restarted) come back as recovered, inactive frameworks if the
        // registry still has them; a framework it has not (removed, torn
        // down) is shut down on the agent.
        // (Listed only when the agent reports a framework this master does
        // not have: a re-registration is then not O(frameworks).)
        let unknown = register.frameworks.iter().any(|fi| {
            fi.id
                .as_ref()
                .is_some_and(|i| !self.frameworks.contains_key(&i.value))
        });
        let in_registry: Option<BTreeSet<String>> = if unknown {
            self.registry
                .frameworks()
                .ok()
                .map(|fs| fs.into_iter().map(|f| f.id).collect())
        } else {
            None
        };
        let mut shutdown = Vec::new();
        for fi in &register.frameworks {
            let Some(id) = fi.id.as_ref().map(|i| i.value.clone()) else {
                continue;
            };
            if self.frameworks.contains_key(&id) {
                continue;
            }
            if in_registry.as_ref().is_some_and(|r| !r.contains(&id)) {
                shutdown.push(id);
                continue;
            }
            let roles = fi.effective_roles();
            if self.allocator.add_framework(&id, &roles).is_err() {
                continue;
            }
            let _ = self
                .allocator
                .set_capabilities(&id, allocator_capabilities(fi));
            self.allocator.deactivate_framework(&id);
            self.frameworks.insert(
                id,
                Framework {
                    info: fi.clone(),
                    roles,
                    format: fi.resource_format(),
                    stream: None,
                    registered_time: now,
                    reregistered_time: None,
                    // The failover timeout runs from now: its scheduler has
                    // that long to subscribe again.
                    unregistered_time: Some(now),
                    tasks: BTreeMap::new(),
                    completed_tasks: VecDeque::new(),
                    offers: BTreeSet::new(),
                    recovered: true,
                },
            );
        }

        let registered_at = self
            .registry
            .agent(&agent_id)
            .ok()
            .flatten()
            .map(|a| a.registered_at);
        let record = AgentRecord {
            id: agent_id.clone(),
            hostname: info.hostname.clone(),
            port: info.port,
            resources: serde_json::to_value(&info.resources).unwrap_or_default(),
            attributes: serde_json::to_value(&info.attributes).unwrap_or_default(),
            registered_at: registered_at.unwrap_or(now),
        };
        self.registry
            .admit_agent(&record)
            .map_err(|e| format!("Failed to admit the agent in the registry: {e}"))?;

        // A new agent on a host that rebooted: the agent it replaces lost
        // its containers with the reboot. Mesos' agent reports this as
        // REASON_AGENT_RESTARTED; here the master says it for the old agent
        // at once (GONE, or LOST to frameworks that are not
        // PARTITION_AWARE), as it would after the old agent's pings timed
        // out, and forgets it.
        if !reregister {
            if let Some(previous) = register.previous_agent_id.as_ref().map(|a| a.value.clone()) {
                self.replace_rebooted_agent(&previous);
            }
        }
        // A recovered agent is back.
        let recovered_unreachable = self
            .recovered_agents
            .remove(&agent_id)
            .is_some_and(|a| a.unreachable_time.is_some());
        // A known agent: drop the old view (its offers, its allocations) and
        // rebuild it from what the agent reports.
        let old = self.agents.remove(&agent_id);
        // Back from a partition (or from missing the re-registration
        // deadline after a failover): its tasks were reported UNREACHABLE,
        // or LOST to frameworks that are not PARTITION_AWARE.
        let was_unreachable =
            recovered_unreachable || old.as_ref().is_some_and(|a| a.unreachable_time.is_some());
        let old_tasks: BTreeSet<(String, String)> =
            old.as_ref().map(|a| a.tasks.clone()).unwrap_or_default();
        self.rescind_offers_on(&agent_id);
        self.allocator.remove_agent(&agent_id);

        let mut used: BTreeMap<String, Resources> = BTreeMap::new();
        let mut reported = BTreeSet::new();
        // Tasks of frameworks that are not PARTITION_AWARE on an agent back
        // from a partition: the master forgets them and has the agent kill
        // them (below), as Mesos does.
        let mut forgotten = BTreeSet::new();
        let mut shutdown_unaware = BTreeSet::new();
        for AgentTask {
            framework_id,
            task,
            state,
            latest_status,
        } in register.tasks
        {
            let fid = framework_id.value.clone();
            let tid = task.task_id.value.clone();
            reported.insert((fid.clone(), tid.clone()));
            let Some(fw) = self.frameworks.get_mut(&fid) else {
                continue;
            };
            if was_unreachable && !fw.has(FrameworkCapabilityType::PartitionAware) {
                // The framework was told TASK_LOST and may have launched a
                // replacement elsewhere: the task must not come back to it.
                forgotten.insert((fid.clone(), tid.clone()));
                shutdown_unaware.insert(fid.clone());
                if let Some(mut t) = fw.tasks.remove(&tid) {
                    t.state = TaskState::Lost;
                    push_bounded(&mut fw.completed_tasks, t, MAX_COMPLETED_TASKS);
                }
                continue;
            }
            if !state.is_terminal() {
                *used.entry(fid.clone()).or_default() += &task.resources;
            }
            let role = task
                .resources
                .iter()
                .find_map(|r| r.allocation_info.as_ref().and_then(|a| a.role.clone()))
                .unwrap_or_else(|| fw.roles.first().cloned().unwrap_or_else(|| "*".into()));
            let entry = fw.tasks.entry(tid.clone()).or_insert_with(|| Task {
                info: task.clone(),
                framework_id: fid.clone(),
                agent_id: agent_id.clone(),
                state,
                statuses: Vec::new(),
                status_update_state: None,
                status_update_uuid: None,
                role,
                resources_recovered: false,
            });
            entry.state = state;
            entry.resources_recovered = state.is_terminal();
            if let Some(s) = latest_status {
                push_status(&mut entry.statuses, s);
            }
            if was_unreachable {
                // The framework last heard TASK_UNREACHABLE: it is told the
                // task's current state (Mesos' REASON_AGENT_REREGISTERED).
                // No uuid: the agent's own update stream stays the reliable
                // record, this only corrects what the master said.
                let mut s = entry
                    .statuses
                    .iter()
                    .rev()
                    .find(|s| s.source != Some(TaskSource::Master))
                    .cloned()
                    .unwrap_or_else(|| TaskStatus::new(entry.info.task_id.clone(), state));
                s.state = state;
                s.uuid = None;
                s.source = Some(TaskSource::Master);
                s.reason = Some(Reason::AgentReregistered);
                s.message = Some("Agent reregistered".into());
                s.agent_id = Some(AgentID::new(agent_id.clone()));
                s.unreachable_time = None;
                s.timestamp = Some(now);
                push_status(&mut entry.statuses, s.clone());
                fw.send(&Event::update(s));
            }
        }
        if !shutdown_unaware.is_empty() {
            eprintln!(
                "berth master: agent {agent_id} is back from a partition; shutting down the \
                 frameworks on it that are not PARTITION_AWARE: {}",
                shutdown_unaware
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        // Dynamic reservations and volumes: the registry's record wins (it
        // was written before any change was answered); without one (a new
        // registry) the agent's checkpoint is adopted and recorded.
        let (mut checkpointed, recorded) = match self.registry_checkpointed(&agent_id) {
            Some(r) => (r, true),
            None => (register.checkpointed_resources.unallocate(), false),
        };
        let total = match total_with(&info.resources, &checkpointed) {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "berth master: agent {agent_id}: {e}; its dynamic reservations and volumes \
                     are not offered until this is resolved"
                );
                checkpointed = Resources::new();
                info.resources.unallocate()
            }
        };
        if !recorded && !checkpointed.is_empty() {
            if let Err(e) = self.persist_checkpointed(&agent_id, &checkpointed) {
                eprintln!("berth master: agent {agent_id}: {e:?}");
            }
        }
        let used: Vec<(String, Resources)> = used.into_iter().collect();
        if let Err(e) = self.allocator.add_agent(&agent_id, total.clone(), &used) {
            // Reported usage the totals cannot hold: admit the agent with no
            // usage rather than refuse it (its tasks still run).
            eprintln!("berth master: agent {agent_id}: {e}; its reported tasks are not counted");
            let _ = self.allocator.add_agent(&agent_id, total, &[]);
        }

        // Tasks this master had on the agent that it no longer reports.
        for (fid, tid) in old_tasks.difference(&reported) {
            if let Some(fw) = self.frameworks.get_mut(fid) {
                if let Some(mut task) = fw.tasks.remove(tid) {
                    let state = fw.visible(TaskState::Dropped);
                    let status = master_status(
                        &task.info.task_id,
                        Some(&agent_id),
                        state,
                        Reason::Reconciliation,
                        "Task is unknown to the agent after it re-registered",
                    );
                    task.state = state;
                    fw.send(&Event::update(status));
                    push_bounded(&mut fw.completed_tasks, task, MAX_COMPLETED_TASKS);
                }
            }
        }

        let stream_id = uuid();
        let agent = Agent {
            id: agent_id.clone(),
            info,
            version: register.version,
            boot_id: register.boot_id,
            link: Some(AgentLink {
                stream_id: stream_id.clone(),
                messages,
            }),
            registered_time: registered_at.unwrap_or(now),
            reregistered_time: reregister.then_some(now),
            missed_pings: 0,
            next_ping: 0,
            unreachable_time: None,
            tasks: reported.difference(&forgotten).cloned().collect(),
            checkpointed,
        };
        agent.send(&MasterMessage::Registered {
            agent_id: AgentID::new(agent_id.clone()),
            stream_id: stream_id.clone(),
            master_info: self.master_info.clone(),
            ping_interval_secs: self.config.agent_ping_interval.as_secs_f64(),
        });
        if let Some(old) = old.and_then(|a| a.link) {
            let _ = old.messages.send(Bytes::from(
                MasterMessage::Error {
                    message: "the agent registered again on another stream".into(),
                }
                .to_record(),
            ));
        }
        // The agent applies (creates, destroys) what the master recorded.
        agent.send(&MasterMessage::CheckpointResources {
            resources: agent.checkpointed.clone(),
        });
        for framework_id in shutdown.into_iter().chain(shutdown_unaware) {
            agent.send(&MasterMessage::ShutdownFramework {
                framework_id: FrameworkID::new(framework_id),
            });
        }
        self.agents.insert(agent_id.clone(), agent);
        if reregister {
            self.counters.agent_reregistrations += 1;
        } else {
            self.counters.agent_registrations += 1;
        }
        self.wake_allocator();
        Ok((agent_id, stream_id))
    }

    /// A known agent re-registering with other resources than it had (its
    /// flags changed and its `--reconfiguration-policy` allowed it; another
    /// agent implementation may not check): the new total, with its
    /// dynamic reservations and volumes in place, must still hold what its
    /// running tasks use. Otherwise the master refuses the registration
    /// (ERROR on the stream, with the reason): admitting it would leave the
    /// allocator with more in use than the agent has, and the tasks cannot
    /// be un-launched. A new total that does hold them is taken as it is
    /// (the allocator's total and the registry record follow the agent).
    fn check_changed_agent(
        &self,
        agent_id: &str,
        info: &AgentInfo,
        tasks: &[AgentTask],
        reported_checkpointed: &Resources,
    ) -> Result<(), String> {
        let previous = match self.agents.get(agent_id) {
            Some(a) => Some(a.info.resources.clone()),
            None => self
                .recovered_agents
                .get(agent_id)
                .and_then(|a| serde_json::from_value::<Resources>(a.record.resources.clone()).ok()),
        };
        let Some(previous) = previous else {
            return Ok(());
        };
        if previous == info.resources {
            return Ok(());
        }
        let checkpointed = self
            .registry_checkpointed(agent_id)
            .unwrap_or_else(|| reported_checkpointed.unallocate());
        let changed = || {
            format!(
                "Agent {agent_id} re-registered with resources {} (it had {previous})",
                info.resources
            )
        };
        let total = total_with(&info.resources, &checkpointed).map_err(|e| {
            format!(
                "{}, which no longer hold its dynamic reservations and volumes: {e}",
                changed()
            )
        })?;
        let mut used = Resources::new();
        for t in tasks.iter().filter(|t| !t.state.is_terminal()) {
            used += &t.task.resources.unallocate();
        }
        if let Err(e) = total.checked_sub(&used) {
            return Err(format!(
                "{}, which no longer hold the resources its running tasks use ({used}): {e}",
                changed()
            ));
        }
        eprintln!(
            "berth master: agent {agent_id} re-registered with changed resources: {previous} -> {}",
            info.resources
        );
        Ok(())
    }

    /// Checks a non-REGISTER agent call's id and stream id.
    pub fn check_agent(&self, agent_id: &str, stream_id: Option<&str>) -> Result<(), Refusal> {
        let Some(agent) = self.agents.get(agent_id) else {
            return Err(Refusal::BadRequest(format!(
                "Agent {agent_id} is not registered"
            )));
        };
        match (&agent.link, stream_id) {
            (Some(link), Some(given)) if link.stream_id == given => Ok(()),
            (None, _) => Err(Refusal::Forbidden(format!(
                "Agent {agent_id} has no open stream; register again"
            ))),
            _ => Err(Refusal::BadRequest(format!(
                "header '{}' does not match agent {agent_id}'s stream",
                masterlink::protocol::STREAM_ID_HEADER
            ))),
        }
    }

    /// STATUS_UPDATE from an agent.
    pub fn status_update(&mut self, agent_id: &str, framework_id: &str, mut status: TaskStatus) {
        if !matches!(status.uuid_bytes(), Some(b) if b.len() == 16) {
            self.counters.invalid_status_updates += 1;
            return;
        }
        self.counters.valid_status_updates += 1;
        status.agent_id = Some(AgentID::new(agent_id));
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            // The framework is gone: nobody will acknowledge; do it for it so
            // the agent stops retrying.
            if let Some(agent) = self.agents.get(agent_id) {
                agent.send(&MasterMessage::Acknowledge {
                    framework_id: FrameworkID::new(framework_id),
                    task_id: status.task_id.clone(),
                    uuid: status.uuid.clone().unwrap_or_default(),
                });
            }
            return;
        };
        let mut recover = None;
        if let Some(task) = fw.tasks.get_mut(&status.task_id.value) {
            task.state = status.state;
            task.status_update_state = Some(status.state);
            task.status_update_uuid = status.uuid.clone();
            push_status(&mut task.statuses, status.clone());
            if status.state.is_terminal() && !task.resources_recovered {
                task.resources_recovered = true;
                recover = Some(task.info.resources.clone());
            }
        }
        let mut event_status = status;
        event_status.state = fw.visible(event_status.state);
        fw.send(&Event::update(event_status));
        if let Some(resources) = recover {
            if let Err(e) =
                self.allocator
                    .recover(framework_id, agent_id, &resources, None, Instant::now())
            {
                eprintln!("berth master: cannot recover a finished task's resources: {e}");
            }
            self.wake_allocator();
        }
    }

    /// PONG.
    pub fn pong(&mut self, agent_id: &str) {
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.missed_pings = 0;
        }
    }

    /// UNREGISTER: the agent leaves; its tasks are lost.
    pub fn unregister_agent(&mut self, agent_id: &str) {
        self.remove_agent(
            agent_id,
            TaskState::Lost,
            Reason::AgentRemoved,
            "Agent shut down",
        );
        if let Err(e) = self.registry.remove_agent(agent_id) {
            eprintln!("berth master: cannot remove agent {agent_id} from the registry: {e}");
        }
    }

    /// The agent's stream `stream_id` ended: it is deactivated (no offers)
    /// until it registers again or the ping timeout makes it unreachable.
    pub fn agent_disconnected(&mut self, agent_id: &str, stream_id: &str) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        if agent.link.as_ref().map(|l| l.stream_id.as_str()) != Some(stream_id) {
            return;
        }
        agent.link = None;
        self.allocator.deactivate_agent(agent_id);
        self.rescind_offers_on(agent_id);
    }

    /// The ping timer: PINGs every connected agent; an agent that has missed
    /// `max_agent_ping_timeouts` (connected or not) becomes unreachable.
    pub fn ping_agents(&mut self) {
        let max = self.config.max_agent_ping_timeouts;
        let mut lost = Vec::new();
        for agent in self.agents.values_mut() {
            if agent.unreachable_time.is_some() {
                continue;
            }
            if agent.missed_pings >= max {
                lost.push(agent.id.clone());
                continue;
            }
            agent.missed_pings += 1;
            agent.next_ping += 1;
            agent.send(&MasterMessage::Ping {
                id: agent.next_ping,
            });
        }
        for id in lost {
            self.mark_unreachable(&id);
        }
    }

    /// An agent missed its pings: offers rescinded, tasks UNREACHABLE (LOST
    /// for frameworks that are not PARTITION_AWARE), FAILURE sent.
    fn mark_unreachable(&mut self, agent_id: &str) {
        eprintln!("berth master: agent {agent_id} is unreachable (missed its pings)");
        self.remove_agent(
            agent_id,
            TaskState::Unreachable,
            Reason::AgentRemoved,
            "Agent is unreachable",
        );
        // Kept (not forgotten) so that reconciliation answers UNREACHABLE and
        // the agent may come back; it registers again with its id.
    }

    /// Takes an agent out of service: its offers are rescinded, its tasks
    /// get `state`, frameworks get FAILURE. An unreachable agent stays known
    /// (marked); otherwise it is forgotten.
    fn remove_agent(&mut self, agent_id: &str, state: TaskState, reason: Reason, message: &str) {
        self.rescind_offers_on(agent_id);
        self.allocator.remove_agent(agent_id);
        self.counters.agent_removals += 1;
        let now = now_secs();
        let tasks: Vec<(String, String)> = self
            .agents
            .get(agent_id)
            .map(|a| a.tasks.iter().cloned().collect())
            .unwrap_or_default();
        let mut told = BTreeSet::new();
        for (fid, tid) in tasks {
            let Some(fw) = self.frameworks.get_mut(&fid) else {
                continue;
            };
            let shown = fw.visible(state);
            if let Some(task) = fw.tasks.get_mut(&tid) {
                if task.state.is_terminal() {
                    continue;
                }
                // The master keeps the true state (UNREACHABLE, as Mesos'
                // unreachable tasks): reconciliation and the APIs show it,
                // translated for frameworks that are not PARTITION_AWARE,
                // and a re-registration can tell which tasks came back.
                task.state = state;
                task.resources_recovered = true;
                let mut s = master_status(
                    &task.info.task_id,
                    Some(agent_id),
                    shown,
                    reason.clone(),
                    message,
                );
                if shown == TaskState::Unreachable {
                    s.unreachable_time = Some(masterlink::scheduler::TimeInfo {
                        nanoseconds: (now * 1e9) as i64,
                    });
                }
                push_status(&mut task.statuses, s.clone());
                fw.send(&Event::update(s));
                // A removed agent's tasks are over (the update carries no
                // uuid, so no acknowledgement would ever complete them).
                if state.is_terminal() {
                    let task = fw.tasks.remove(&tid).expect("present");
                    push_bounded(&mut fw.completed_tasks, task, MAX_COMPLETED_TASKS);
                }
            }
            if told.insert(fid.clone()) {
                fw.send(&Event::failure(Failure {
                    agent_id: Some(AgentID::new(agent_id)),
                    executor_id: None,
                    status: None,
                }));
            }
        }
        if state == TaskState::Unreachable {
            if let Some(agent) = self.agents.get_mut(agent_id) {
                agent.unreachable_time = Some(now);
                agent.link = None;
            }
        } else {
            self.agents.remove(agent_id);
        }
        self.wake_allocator();
    }

    /// `agent_id`'s host rebooted and its agent registered anew: its tasks
    /// are GONE (LOST for frameworks that are not PARTITION_AWARE) with
    /// REASON_AGENT_RESTARTED, frameworks get FAILURE, and the old agent
    /// leaves the master and the registry (it can never come back: its
    /// work dir now belongs to the new agent).
    fn replace_rebooted_agent(&mut self, agent_id: &str) {
        let known = self.agents.contains_key(agent_id);
        let recovered = self.recovered_agents.remove(agent_id).is_some();
        if !known && !recovered {
            return; // already forgotten (e.g. the REGISTER was retried)
        }
        eprintln!(
            "berth master: agent {agent_id} rebooted and registers as a new agent; its tasks are gone"
        );
        if known {
            self.remove_agent(
                agent_id,
                TaskState::Gone,
                Reason::AgentRestarted,
                "Agent restarted after a reboot of its host: the task's container is gone",
            );
        } else {
            self.counters.agent_removals += 1;
        }
        if let Err(e) = self.registry.remove_agent(agent_id) {
            eprintln!("berth master: cannot remove agent {agent_id} from the registry: {e}");
        }
    }

    /// Attributes of an agent, for the APIs.
    pub fn attributes_of(agent: &Agent) -> &[Attribute] {
        &agent.info.attributes
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, max: usize) {
    if queue.len() >= max {
        queue.pop_front();
    }
    queue.push_back(item);
}

fn push_status(statuses: &mut Vec<TaskStatus>, status: TaskStatus) {
    if statuses.len() >= MAX_STATUSES {
        statuses.remove(0);
    }
    statuses.push(status);
}
