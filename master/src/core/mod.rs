//! The master's state machine: frameworks, agents, offers and tasks.
//!
//! Everything the master knows lives in one [`Core`], behind one lock, and
//! changes only through its methods: one per scheduler call, agent message or
//! timer. A method never waits: what it has to tell a framework or an agent
//! it queues on that peer's stream ([`Sink`]) at once, so the order of events
//! on a stream is the order of changes here. The transport (`http`) parses
//! requests and turns a [`Refusal`] into a status code; the allocator decides
//! who is offered what; the registry keeps what must survive a restart.
//!
//! The state and its types are here; the methods are grouped by what they
//! act on: `frameworks`, `offers` (including ACCEPT's operations),
//! `tasks`, `agents` and `recovery` (taking over as leader).

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

mod agents;
mod frameworks;
mod offers;
mod recovery;
mod tasks;

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
}

impl Core {
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
