//! The agent<->master protocol, version 1.
//!
//! Mesos' agents talk to the master in libprocess messages; nothing outside
//! Berth speaks this link, so it is Berth's own, shaped like the v1 scheduler
//! API that both sides already implement (JSON, RecordIO, one long-lived
//! stream per peer):
//!
//! * The agent `POST`s an [`AgentCall`] of type `REGISTER` to
//!   [`AGENT_API_PATH`]. The master answers `200` with a chunked RecordIO
//!   stream of [`MasterMessage`]s, the first one `REGISTERED` (or `ERROR`,
//!   then the stream ends). The stream carries everything the master asks of
//!   the agent: run or kill a task, a scheduler's acknowledgement, a ping.
//! * Everything the agent tells the master (`STATUS_UPDATE`, `PONG`,
//!   `UNREGISTER`) is a separate `POST` of an [`AgentCall`] carrying
//!   the agent id and the stream id the master gave in `REGISTERED`
//!   (header [`STREAM_ID_HEADER`]); the master answers `202 Accepted`.
//! * Liveness: the master sends `PING` every ping interval; the agent answers
//!   with `PONG`. An agent that misses the configured number of pings is
//!   unreachable. The agent in turn re-registers when its stream ends or it
//!   has not heard a ping for several intervals.
//!
//! Every message is an object with a `type` and the fields of its payload
//! beside it. [`PROTOCOL_VERSION`] is carried in `REGISTER`; a master refuses
//! an agent with another version with `ERROR` and the reason.

use serde::{Deserialize, Serialize};

use crate::attributes::Attribute;
use crate::resources::Resources;
use crate::scheduler::{
    AgentID, FrameworkID, FrameworkInfo, KillPolicy, MasterInfo, TaskID, TaskInfo, TaskState,
    TaskStatus,
};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Where the master serves the agent link.
pub const AGENT_API_PATH: &str = "/masterlink/v1/agent";

/// The header carrying the agent's stream id on calls other than REGISTER.
pub const STREAM_ID_HEADER: &str = "Berth-Agent-Stream-Id";

/// Mesos' `AgentInfo` (the fields Berth uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Host name the agent reports (and offers carry).
    pub hostname: String,
    /// The agent's HTTP port.
    pub port: u16,
    /// The agent's address (IP) its HTTP endpoints listen on.
    pub ip: String,
    /// Total resources, statically reserved ones included.
    #[serde(default)]
    pub resources: Resources,
    /// Attributes from `--attributes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
    /// Set when re-registering: the id the master gave before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<AgentID>,
}

/// One task an agent runs or has run and not yet had acknowledged, as it
/// reports it when re-registering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentTask {
    /// The owning framework.
    pub framework_id: FrameworkID,
    /// The task as launched.
    pub task: TaskInfo,
    /// Its latest state on the agent.
    pub state: TaskState,
    /// The latest status the agent has for it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_status: Option<TaskStatus>,
}

/// `REGISTER`: opens the stream; also used to re-register.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    /// Must equal [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// The agent's Berth version (for the operator API).
    pub version: String,
    /// Who the agent is and what it has.
    pub agent_info: AgentInfo,
    /// `/proc/sys/kernel/random/boot_id` of the agent's host.
    pub boot_id: String,
    /// Tasks the agent knows of (empty for a first registration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<AgentTask>,
    /// FrameworkInfo of every framework those tasks belong to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frameworks: Vec<FrameworkInfo>,
    /// The dynamic reservations and persistent volumes the agent has
    /// checkpointed (the last `CHECKPOINT_RESOURCES` it applied), so that a
    /// master without a record of them (a new registry) can adopt them.
    /// `agent_info.resources` stays the static total from the flags.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub checkpointed_resources: Resources,
    /// Set by an agent that registers anew after its host rebooted: the id
    /// it had before. Its containers died with the reboot, so the master
    /// reports that agent's tasks GONE (LOST to frameworks that are not
    /// PARTITION_AWARE) with REASON_AGENT_RESTARTED at once instead of
    /// waiting for its pings to time out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_agent_id: Option<AgentID>,
}

/// `STATUS_UPDATE`: a task's status changed. `status.uuid` is set: the agent
/// resends the update until the master relays the framework's
/// acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The sender.
    pub agent_id: AgentID,
    /// The task's framework.
    pub framework_id: FrameworkID,
    /// The status (with uuid, source, agent_id, timestamp).
    pub status: TaskStatus,
}

/// `PONG`: the answer to a `PING`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    /// The sender.
    pub agent_id: AgentID,
    /// The ping answered.
    pub ping: u64,
}

/// `UNREGISTER`: the agent shuts down for good (not a restart); the master
/// removes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unregister {
    /// The sender.
    pub agent_id: AgentID,
}

/// What an agent sends to the master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentCall {
    /// Opens the message stream (see the module docs).
    Register(Register),
    /// A task's status changed.
    StatusUpdate(StatusUpdate),
    /// The answer to a `PING`.
    Pong(Pong),
    /// The agent leaves the cluster.
    Unregister(Unregister),
}

impl AgentCall {
    /// The call's type name as on the wire (for errors and logs).
    pub fn type_name(&self) -> &'static str {
        match self {
            AgentCall::Register(_) => "REGISTER",
            AgentCall::StatusUpdate(_) => "STATUS_UPDATE",
            AgentCall::Pong(_) => "PONG",
            AgentCall::Unregister(_) => "UNREGISTER",
        }
    }

    /// The agent id a call names (`None` for a first REGISTER).
    pub fn agent_id(&self) -> Option<&AgentID> {
        match self {
            AgentCall::Register(r) => r.agent_info.id.as_ref(),
            AgentCall::StatusUpdate(StatusUpdate { agent_id, .. })
            | AgentCall::Pong(Pong { agent_id, .. })
            | AgentCall::Unregister(Unregister { agent_id }) => Some(agent_id),
        }
    }

    /// Parses a call, naming the field at fault. (Serde's internally tagged
    /// enums lose the path of an error, so the payload is read on its own.)
    pub fn parse(body: &[u8]) -> Result<AgentCall, ProtocolError> {
        let value: serde_json::Value = parse_path(body)?;
        let call_type = match value.get("type") {
            Some(serde_json::Value::String(t)) => t.clone(),
            Some(_) => return Err(ProtocolError::new("type", "expecting a string")),
            None => return Err(ProtocolError::new("type", "missing")),
        };
        let payload = serde_json::to_vec(&value).unwrap_or_default();
        Ok(match call_type.as_str() {
            "REGISTER" => AgentCall::Register(parse_path(&payload)?),
            "STATUS_UPDATE" => AgentCall::StatusUpdate(parse_path(&payload)?),
            "PONG" => AgentCall::Pong(parse_path(&payload)?),
            "UNREGISTER" => AgentCall::Unregister(parse_path(&payload)?),
            other => {
                return Err(ProtocolError::new(
                    "type",
                    format!(
                        "unknown agent call '{other}'; expecting REGISTER, STATUS_UPDATE, \
                         PONG or UNREGISTER"
                    ),
                ))
            }
        })
    }
}

/// Deserialises `body`, keeping the JSON path of an error.
fn parse_path<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ProtocolError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| ProtocolError {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// What the master sends an agent on its stream.
// RUN_TASK is much larger than the rest; messages are short-lived (encoded
// or dispatched at once), so boxing it would only complicate construction.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MasterMessage {
    /// The first message of a stream.
    Registered {
        /// The agent's id (new, or the one it re-registered with).
        agent_id: AgentID,
        /// Identifies this stream on the agent's other calls.
        stream_id: String,
        /// The master.
        master_info: MasterInfo,
        /// Seconds between PINGs.
        ping_interval_secs: f64,
    },
    /// Run `task` for the framework.
    RunTask {
        /// The framework (its id is set).
        framework_info: FrameworkInfo,
        /// The task, its resources allocated to the framework's role.
        task: TaskInfo,
    },
    /// Kill a task: SIGTERM, then SIGKILL after the grace period.
    KillTask {
        /// The task's framework.
        framework_id: FrameworkID,
        /// The task.
        task_id: TaskID,
        /// Overrides the task's own kill policy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kill_policy: Option<KillPolicy>,
    },
    /// The framework acknowledged the status update with this uuid.
    Acknowledge {
        /// The task's framework.
        framework_id: FrameworkID,
        /// The task.
        task_id: TaskID,
        /// Base64 of the update's 16 uuid bytes, as in `TaskStatus.uuid`.
        uuid: String,
    },
    /// The complete set of dynamically reserved resources and persistent
    /// volumes on this agent (POST-refinement format), replacing the
    /// previous set. The agent creates the volumes that are new (size =
    /// the disk resource's scalar, in MB), destroys those that are gone,
    /// checkpoints the set, and reports it in its next REGISTER. Sent after
    /// every RESERVE/UNRESERVE/CREATE/DESTROY/GROW/SHRINK the master
    /// applies, and after (re-)registration when the master's registry has
    /// a record for the agent.
    CheckpointResources {
        /// Every dynamic reservation and volume on the agent.
        #[serde(default)]
        resources: Resources,
    },
    /// The framework is gone: kill its tasks and forget it.
    ShutdownFramework {
        /// The framework.
        framework_id: FrameworkID,
    },
    /// Liveness check; answer with `PONG`.
    Ping {
        /// Echoed in the `PONG`.
        id: u64,
    },
    /// The master refuses the agent (the stream ends after it).
    Error {
        /// Why.
        message: String,
    },
}

impl MasterMessage {
    /// One RecordIO record of this message.
    pub fn to_record(&self) -> Vec<u8> {
        // Every field is plain data: serialisation cannot fail.
        let json = serde_json::to_vec(self).expect("a master message is always serialisable");
        crate::recordio::encode(&json)
    }

    /// Parses one record's JSON.
    pub fn parse(body: &[u8]) -> Result<MasterMessage, ProtocolError> {
        parse_path(body)
    }
}

/// A message that does not parse: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field '{path}': {message}")]
pub struct ProtocolError {
    /// JSON path of the offending field (`.` for the whole message).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ProtocolError {
    fn new(path: &str, message: impl Into<String>) -> ProtocolError {
        ProtocolError {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::CommandInfo;

    fn info() -> AgentInfo {
        AgentInfo {
            hostname: "node1".into(),
            port: 5051,
            ip: "127.0.0.1".into(),
            resources: crate::resources::parse("cpus:2;mem:1024").unwrap(),
            attributes: Vec::new(),
            id: None,
        }
    }

    #[test]
    fn register_round_trips_with_type_beside_payload() {
        let call = AgentCall::Register(Register {
            protocol_version: PROTOCOL_VERSION,
            version: "0.1.0".into(),
            agent_info: info(),
            boot_id: "b".into(),
            tasks: Vec::new(),
            frameworks: Vec::new(),
            checkpointed_resources: Resources::new(),
            previous_agent_id: None,
        });
        let json = serde_json::to_value(&call).unwrap();
        assert_eq!(json["type"], "REGISTER");
        assert_eq!(json["agent_info"]["hostname"], "node1");
        let back = AgentCall::parse(json.to_string().as_bytes()).unwrap();
        assert_eq!(back, call);
    }

    #[test]
    fn run_task_record_parses_back() {
        let mut task = TaskInfo {
            name: "t".into(),
            task_id: TaskID::new("t1"),
            agent_id: AgentID::new("a-S0"),
            resources: crate::resources::parse("cpus:0.5;mem:64").unwrap(),
            executor: None,
            command: Some(CommandInfo::shell("true")),
            container: None,
            health_check: None,
            check: None,
            kill_policy: None,
            data: None,
            labels: None,
            discovery: None,
            max_completion_time: None,
            limits: Default::default(),
        };
        task.name = "echo".into();
        let msg = MasterMessage::RunTask {
            framework_info: FrameworkInfo::new("root", "fw"),
            task,
        };
        let record = msg.to_record();
        let mut decoder = crate::recordio::Decoder::new();
        let records = decoder.feed(&record).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(MasterMessage::parse(&records[0]).unwrap(), msg);
    }

    #[test]
    fn bad_calls_name_the_field() {
        let e = AgentCall::parse(br#"{"type":"PONG","agent_id":{"value":"x"},"ping":"no"}"#)
            .unwrap_err();
        assert_eq!(e.path, "ping", "{e}");
        let e = AgentCall::parse(br#"{"type":"DANCE"}"#).unwrap_err();
        assert!(e.message.contains("DANCE"), "{e}");
    }
}
