//! The Mesos v1 scheduler API (`POST /api/v1/scheduler`) as JSON: [`Call`]s
//! from frameworks, [`Event`]s to them, and the core types they carry.
//!
//! Field names and enum values are those of Mesos' v1 protos
//! (`mesos/v1/mesos.proto`, `mesos/v1/scheduler/scheduler.proto`) under Mesos'
//! protobuf↔JSON mapping:
//!
//! * absent optionals and empty repeated fields are omitted on output, but
//!   fields with an explicit proto default are always written
//!   (`FrameworkInfo.failover_timeout`/`checkpoint`, `Filters.refuse_seconds`,
//!   `CommandInfo.shell`, `CommandInfo.URI.extract`, `MasterInfo.port`, ...);
//! * unknown keys are ignored on input (forward compatibility);
//! * numbers and booleans are also accepted as strings (`"100"`, `"true"`);
//! * `bytes` fields (`TaskStatus.uuid`/`data`, `Message.data`, ...) stay
//!   standard padded Base64 strings; [`decode_base64`] reads them;
//! * IDs are `{"value": "..."}` objects.
//!
//! Resources are [`Resources`], which read every Mesos resource format. Serde
//! writes them POST-refinement; to write what a framework expects use
//! [`Event::to_json`] / [`Event::to_record`] with
//! [`ResourceFormat::PreRefinement`] unless the framework has
//! `RESERVATION_REFINEMENT` (see [`FrameworkInfo::resource_format`]).
//!
//! [`Call::parse`] is what the master's HTTP layer calls on a request body: it
//! returns a [`CallError`] whose message names the offending field, fit for a
//! `400 Bad Request` body.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value as Json;

use crate::attributes::Attribute;
use crate::recordio;
use crate::resources::{
    AllocationInfo, Labels, Resource, ResourceFormat, Resources, ResourcesError, VolumeMode,
};
use crate::value::Scalar;

// ---------------------------------------------------------------------------
// Enums

/// An enum string that is not one of the known values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {enum_name} '{value}'")]
pub struct UnknownEnumValue {
    /// The proto enum, e.g. `Call.Type`.
    pub enum_name: &'static str,
    /// The string read.
    pub value: String,
}

/// A proto enum whose unknown values are an error.
macro_rules! closed_enum {
    ($(#[$m:meta])* $name:ident, $proto:literal { $($var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $(#[doc = concat!("`", $s, "`")] $var),+
        }

        impl $name {
            /// Every value, in proto order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The wire name.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownEnumValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($name::$var),)+
                    _ => Err(UnknownEnumValue { enum_name: $proto, value: s.to_string() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(de::Error::custom)
            }
        }
    };
}

/// A proto enum whose unknown values are kept as strings, so that a value
/// added by a later Mesos does not break parsing.
macro_rules! open_enum {
    ($(#[$m:meta])* $name:ident { $($var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $(#[doc = concat!("`", $s, "`")] $var,)+
            /// A value this version does not know, kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// Every known value, in proto order.
            pub const KNOWN: &'static [$name] = &[$($name::$var),+];

            /// The wire name.
            pub fn as_str(&self) -> &str {
                match self { $($name::$var => $s,)+ $name::Unknown(s) => s }
            }

            /// True for [`Self::Unknown`].
            pub fn is_unknown(&self) -> bool {
                matches!(self, $name::Unknown(_))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($s => $name::$var,)+
                    _ => $name::Unknown(s.to_string()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok($name::from(String::deserialize(d)?.as_str()))
            }
        }
    };
}

closed_enum! {
    /// `scheduler.Call.Type`.
    CallType, "Call.Type" {
        Subscribe => "SUBSCRIBE",
        Teardown => "TEARDOWN",
        Accept => "ACCEPT",
        Decline => "DECLINE",
        AcceptInverseOffers => "ACCEPT_INVERSE_OFFERS",
        DeclineInverseOffers => "DECLINE_INVERSE_OFFERS",
        Revive => "REVIVE",
        Kill => "KILL",
        Shutdown => "SHUTDOWN",
        Acknowledge => "ACKNOWLEDGE",
        AcknowledgeOperationStatus => "ACKNOWLEDGE_OPERATION_STATUS",
        Reconcile => "RECONCILE",
        ReconcileOperations => "RECONCILE_OPERATIONS",
        Message => "MESSAGE",
        Request => "REQUEST",
        Suppress => "SUPPRESS",
        UpdateFramework => "UPDATE_FRAMEWORK",
    }
}

impl CallType {
    /// The name of this call's payload field (`accept`, `accept_inverse_offers`, ...).
    pub fn payload_field(&self) -> &'static str {
        match self {
            CallType::Subscribe => "subscribe",
            CallType::Teardown => "teardown",
            CallType::Accept => "accept",
            CallType::Decline => "decline",
            CallType::AcceptInverseOffers => "accept_inverse_offers",
            CallType::DeclineInverseOffers => "decline_inverse_offers",
            CallType::Revive => "revive",
            CallType::Kill => "kill",
            CallType::Shutdown => "shutdown",
            CallType::Acknowledge => "acknowledge",
            CallType::AcknowledgeOperationStatus => "acknowledge_operation_status",
            CallType::Reconcile => "reconcile",
            CallType::ReconcileOperations => "reconcile_operations",
            CallType::Message => "message",
            CallType::Request => "request",
            CallType::Suppress => "suppress",
            CallType::UpdateFramework => "update_framework",
        }
    }

    /// True when the call is invalid without its payload (all but TEARDOWN,
    /// REVIVE and SUPPRESS).
    pub fn requires_payload(&self) -> bool {
        !matches!(
            self,
            CallType::Teardown | CallType::Revive | CallType::Suppress
        )
    }
}

closed_enum! {
    /// `scheduler.Event.Type`.
    EventType, "Event.Type" {
        Subscribed => "SUBSCRIBED",
        Offers => "OFFERS",
        InverseOffers => "INVERSE_OFFERS",
        Rescind => "RESCIND",
        RescindInverseOffer => "RESCIND_INVERSE_OFFER",
        Update => "UPDATE",
        UpdateOperationStatus => "UPDATE_OPERATION_STATUS",
        Message => "MESSAGE",
        Failure => "FAILURE",
        Error => "ERROR",
        Heartbeat => "HEARTBEAT",
    }
}

impl EventType {
    /// The payload field (`type` lower-cased), `None` for HEARTBEAT.
    pub fn payload_field(&self) -> Option<&'static str> {
        Some(match self {
            EventType::Subscribed => "subscribed",
            EventType::Offers => "offers",
            EventType::InverseOffers => "inverse_offers",
            EventType::Rescind => "rescind",
            EventType::RescindInverseOffer => "rescind_inverse_offer",
            EventType::Update => "update",
            EventType::UpdateOperationStatus => "update_operation_status",
            EventType::Message => "message",
            EventType::Failure => "failure",
            EventType::Error => "error",
            EventType::Heartbeat => return None,
        })
    }
}

closed_enum! {
    /// `TaskState`.
    TaskState, "TaskState" {
        Staging => "TASK_STAGING",
        Starting => "TASK_STARTING",
        Running => "TASK_RUNNING",
        Killing => "TASK_KILLING",
        Finished => "TASK_FINISHED",
        Failed => "TASK_FAILED",
        Killed => "TASK_KILLED",
        Error => "TASK_ERROR",
        Lost => "TASK_LOST",
        Dropped => "TASK_DROPPED",
        Unreachable => "TASK_UNREACHABLE",
        Gone => "TASK_GONE",
        GoneByOperator => "TASK_GONE_BY_OPERATOR",
        Unknown => "TASK_UNKNOWN",
    }
}

impl TaskState {
    /// Mesos' `protobuf::isTerminalState`: FINISHED, FAILED, KILLED, ERROR,
    /// LOST, DROPPED, GONE and GONE_BY_OPERATOR. (A LOST task may still come
    /// back as RUNNING after a partition; UNREACHABLE and UNKNOWN are not
    /// terminal.)
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Error
                | TaskState::Lost
                | TaskState::Dropped
                | TaskState::Gone
                | TaskState::GoneByOperator
        )
    }

    /// The state a framework without PARTITION_AWARE sees: DROPPED,
    /// UNREACHABLE, GONE, GONE_BY_OPERATOR and UNKNOWN become LOST.
    pub fn for_partition_unaware(self) -> TaskState {
        match self {
            TaskState::Dropped
            | TaskState::Unreachable
            | TaskState::Gone
            | TaskState::GoneByOperator
            | TaskState::Unknown => TaskState::Lost,
            other => other,
        }
    }
}

closed_enum! {
    /// `TaskStatus.Source`.
    TaskSource, "TaskStatus.Source" {
        Master => "SOURCE_MASTER",
        Agent => "SOURCE_AGENT",
        Executor => "SOURCE_EXECUTOR",
    }
}

open_enum! {
    /// `TaskStatus.Reason`; unknown reasons are kept as strings.
    Reason {
        CommandExecutorFailed => "REASON_COMMAND_EXECUTOR_FAILED",
        ContainerLaunchFailed => "REASON_CONTAINER_LAUNCH_FAILED",
        ContainerLimitation => "REASON_CONTAINER_LIMITATION",
        ContainerLimitationDisk => "REASON_CONTAINER_LIMITATION_DISK",
        ContainerLimitationMemory => "REASON_CONTAINER_LIMITATION_MEMORY",
        ContainerPreempted => "REASON_CONTAINER_PREEMPTED",
        ContainerUpdateFailed => "REASON_CONTAINER_UPDATE_FAILED",
        MaxCompletionTimeReached => "REASON_MAX_COMPLETION_TIME_REACHED",
        ExecutorRegistrationTimeout => "REASON_EXECUTOR_REGISTRATION_TIMEOUT",
        ExecutorReregistrationTimeout => "REASON_EXECUTOR_REREGISTRATION_TIMEOUT",
        ExecutorTerminated => "REASON_EXECUTOR_TERMINATED",
        ExecutorUnregistered => "REASON_EXECUTOR_UNREGISTERED",
        FrameworkRemoved => "REASON_FRAMEWORK_REMOVED",
        GcError => "REASON_GC_ERROR",
        InvalidFrameworkid => "REASON_INVALID_FRAMEWORKID",
        InvalidOffers => "REASON_INVALID_OFFERS",
        IoSwitchboardExited => "REASON_IO_SWITCHBOARD_EXITED",
        MasterDisconnected => "REASON_MASTER_DISCONNECTED",
        Reconciliation => "REASON_RECONCILIATION",
        ResourcesUnknown => "REASON_RESOURCES_UNKNOWN",
        AgentDisconnected => "REASON_AGENT_DISCONNECTED",
        AgentDraining => "REASON_AGENT_DRAINING",
        AgentRemoved => "REASON_AGENT_REMOVED",
        AgentRemovedByOperator => "REASON_AGENT_REMOVED_BY_OPERATOR",
        AgentReregistered => "REASON_AGENT_REREGISTERED",
        AgentRestarted => "REASON_AGENT_RESTARTED",
        AgentUnknown => "REASON_AGENT_UNKNOWN",
        TaskKilledDuringLaunch => "REASON_TASK_KILLED_DURING_LAUNCH",
        TaskCheckStatusUpdated => "REASON_TASK_CHECK_STATUS_UPDATED",
        TaskHealthCheckStatusUpdated => "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
        TaskGroupInvalid => "REASON_TASK_GROUP_INVALID",
        TaskGroupUnauthorized => "REASON_TASK_GROUP_UNAUTHORIZED",
        TaskInvalid => "REASON_TASK_INVALID",
        TaskUnauthorized => "REASON_TASK_UNAUTHORIZED",
        TaskUnknown => "REASON_TASK_UNKNOWN",
    }
}

open_enum! {
    /// `FrameworkInfo.Capability.Type`.
    FrameworkCapabilityType {
        RevocableResources => "REVOCABLE_RESOURCES",
        TaskKillingState => "TASK_KILLING_STATE",
        GpuResources => "GPU_RESOURCES",
        SharedResources => "SHARED_RESOURCES",
        PartitionAware => "PARTITION_AWARE",
        MultiRole => "MULTI_ROLE",
        ReservationRefinement => "RESERVATION_REFINEMENT",
        RegionAware => "REGION_AWARE",
    }
}

open_enum! {
    /// `MasterInfo.Capability.Type`.
    MasterCapabilityType {
        AgentUpdate => "AGENT_UPDATE",
        AgentDraining => "AGENT_DRAINING",
        QuotaV2 => "QUOTA_V2",
    }
}

closed_enum! {
    /// `Offer.Operation.Type`.
    OperationType, "Offer.Operation.Type" {
        Launch => "LAUNCH",
        LaunchGroup => "LAUNCH_GROUP",
        Reserve => "RESERVE",
        Unreserve => "UNRESERVE",
        Create => "CREATE",
        Destroy => "DESTROY",
        GrowVolume => "GROW_VOLUME",
        ShrinkVolume => "SHRINK_VOLUME",
        CreateDisk => "CREATE_DISK",
        DestroyDisk => "DESTROY_DISK",
    }
}

impl OperationType {
    /// The name of the operation's body field.
    pub fn payload_field(&self) -> &'static str {
        match self {
            OperationType::Launch => "launch",
            OperationType::LaunchGroup => "launch_group",
            OperationType::Reserve => "reserve",
            OperationType::Unreserve => "unreserve",
            OperationType::Create => "create",
            OperationType::Destroy => "destroy",
            OperationType::GrowVolume => "grow_volume",
            OperationType::ShrinkVolume => "shrink_volume",
            OperationType::CreateDisk => "create_disk",
            OperationType::DestroyDisk => "destroy_disk",
        }
    }
}

closed_enum! {
    /// `OperationState`.
    OperationState, "OperationState" {
        Unsupported => "OPERATION_UNSUPPORTED",
        Pending => "OPERATION_PENDING",
        Finished => "OPERATION_FINISHED",
        Failed => "OPERATION_FAILED",
        Error => "OPERATION_ERROR",
        Dropped => "OPERATION_DROPPED",
        Unreachable => "OPERATION_UNREACHABLE",
        GoneByOperator => "OPERATION_GONE_BY_OPERATOR",
        Recovering => "OPERATION_RECOVERING",
        Unknown => "OPERATION_UNKNOWN",
    }
}

closed_enum! {
    /// `ExecutorInfo.Type`.
    ExecutorType, "ExecutorInfo.Type" {
        Unknown => "UNKNOWN",
        Default => "DEFAULT",
        Custom => "CUSTOM",
    }
}

closed_enum! {
    /// `ContainerInfo.Type`.
    ContainerType, "ContainerInfo.Type" {
        Docker => "DOCKER",
        Mesos => "MESOS",
    }
}

closed_enum! {
    /// `ContainerInfo.DockerInfo.Network`.
    DockerNetwork, "ContainerInfo.DockerInfo.Network" {
        Host => "HOST",
        Bridge => "BRIDGE",
        None => "NONE",
        User => "USER",
    }
}

closed_enum! {
    /// `Environment.Variable.Type`.
    VariableType, "Environment.Variable.Type" {
        Unknown => "UNKNOWN",
        Value => "VALUE",
        Secret => "SECRET",
    }
}

closed_enum! {
    /// `HealthCheck.Type`.
    HealthCheckType, "HealthCheck.Type" {
        Unknown => "UNKNOWN",
        Command => "COMMAND",
        Http => "HTTP",
        Tcp => "TCP",
    }
}

// ---------------------------------------------------------------------------
// Lenient scalars: Mesos' JSON→proto also takes numbers and booleans as strings.

mod lenient {
    use serde::{de, Deserialize, Deserializer};
    use serde_json::Value as Json;

    fn number<'de, D: Deserializer<'de>>(v: Json) -> Result<serde_json::Number, D::Error> {
        match v {
            Json::Number(n) => Ok(n),
            Json::String(s) => serde_json::from_str::<serde_json::Number>(s.trim())
                .map_err(|_| de::Error::custom(format!("expected a number, got string '{s}'"))),
            other => Err(de::Error::custom(format!(
                "invalid type: expected a number, got {other}"
            ))),
        }
    }

    pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let n = number::<D>(Json::deserialize(d)?)?;
        n.as_f64()
            .ok_or_else(|| de::Error::custom(format!("{n} is not a double")))
    }

    pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Json::deserialize(d)? {
            Json::Null => Ok(None),
            v => {
                let n = number::<D>(v)?;
                n.as_f64()
                    .map(Some)
                    .ok_or_else(|| de::Error::custom(format!("{n} is not a double")))
            }
        }
    }

    pub fn integer<'de, T: TryFrom<i128>, D: Deserializer<'de>>(v: Json) -> Result<T, D::Error> {
        let n = number::<D>(v)?;
        let i = n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .ok_or_else(|| de::Error::custom(format!("{n} is not an integer")))?;
        T::try_from(i).map_err(|_| de::Error::custom(format!("{n} is out of range")))
    }

    pub fn int<'de, T: TryFrom<i128>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        integer::<T, D>(Json::deserialize(d)?)
    }

    pub fn opt_int<'de, T: TryFrom<i128>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        match Json::deserialize(d)? {
            Json::Null => Ok(None),
            v => integer::<T, D>(v).map(Some),
        }
    }

    fn boolean<'de, D: Deserializer<'de>>(v: Json) -> Result<bool, D::Error> {
        match v {
            Json::Bool(b) => Ok(b),
            Json::String(s) if s == "true" => Ok(true),
            Json::String(s) if s == "false" => Ok(false),
            other => Err(de::Error::custom(format!(
                "invalid type: expected a boolean, got {other}"
            ))),
        }
    }

    pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        boolean::<D>(Json::deserialize(d)?)
    }

    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Json::deserialize(d)? {
            Json::Null => Ok(None),
            v => boolean::<D>(v).map(Some),
        }
    }
}

fn default_true() -> bool {
    true
}

// ---------------------------------------------------------------------------
// IDs

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name {
            /// The ID string.
            pub value: String,
        }

        impl $name {
            /// An ID with this value.
            pub fn new(value: impl Into<String>) -> Self {
                $name { value: value.into() }
            }

            /// The ID string.
            pub fn as_str(&self) -> &str {
                &self.value
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.value)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name::new(s)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name::new(s)
            }
        }
    };
}

id_type!(
    /// `FrameworkID`.
    FrameworkID
);
id_type!(
    /// `AgentID`.
    AgentID
);
id_type!(
    /// `OfferID` (also used for inverse offers).
    OfferID
);
id_type!(
    /// `TaskID`.
    TaskID
);
id_type!(
    /// `ExecutorID`.
    ExecutorID
);
id_type!(
    /// `OperationID`.
    OperationID
);
id_type!(
    /// `ResourceProviderID`.
    ResourceProviderID
);

/// `ContainerID`: `{value, parent?}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerID {
    /// The ID string.
    pub value: String,
    /// The parent of a nested container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Box<ContainerID>>,
}

/// `UUID` message (`{value: <base64 of 16 bytes>}`), used by operation status.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Uuid {
    /// Standard Base64 of the 16 raw bytes.
    pub value: String,
}

/// Checks a client-chosen ID (task, executor, operation): non-empty, at most
/// 255 characters, not `.` or `..`, no `/`, `\` or control characters.
pub fn validate_client_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("ID must not be empty".into());
    }
    if id.chars().count() > 255 {
        return Err("ID must be at most 255 characters long".into());
    }
    if id == "." || id == ".." {
        return Err(format!("'{id}' is disallowed"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| *c == '/' || *c == '\\' || c.is_control())
    {
        return Err(format!("ID contains the invalid character {c:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Base64 (the JSON form of proto `bytes`)

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard padded Base64, as Mesos writes `bytes` fields.
pub fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard Base64 (padding optional, as stout's decoder accepts);
/// `None` on any other character or a bad length.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 || body.len() % 4 == 1 {
        return None;
    }
    if text.len() != body.len() && text.len() & 3 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in body.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Common messages

/// `TimeInfo`: nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeInfo {
    /// Nanoseconds since the epoch.
    #[serde(deserialize_with = "lenient::int")]
    pub nanoseconds: i64,
}

/// `DurationInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DurationInfo {
    /// The duration in nanoseconds.
    #[serde(deserialize_with = "lenient::int")]
    pub nanoseconds: i64,
}

/// `Unavailability`: a maintenance window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unavailability {
    /// When it starts.
    pub start: TimeInfo,
    /// How long it lasts; none = indefinitely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<DurationInfo>,
}

/// `Address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Dotted IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Port.
    #[serde(deserialize_with = "lenient::int")]
    pub port: i32,
}

/// `Parameter`: `{key, value}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// `URL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Url {
    /// `http`.
    pub scheme: String,
    /// Host and port.
    pub address: Address,
    /// `/slave(1)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Query parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<Parameter>,
    /// Fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment: Option<String>,
}

/// `{name}` of a fault domain region or zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainName {
    /// The name.
    pub name: String,
}

/// `DomainInfo.FaultDomain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultDomain {
    /// Region.
    pub region: DomainName,
    /// Zone.
    pub zone: DomainName,
}

/// `DomainInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    /// The fault domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_domain: Option<FaultDomain>,
}

/// `Filters`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    /// Seconds the declined resources are not re-offered (default 5; always
    /// written, as a proto default).
    #[serde(
        default = "Filters::default_refuse_seconds",
        deserialize_with = "lenient::f64"
    )]
    pub refuse_seconds: f64,
}

impl Filters {
    /// Mesos' default refusal: 5 seconds.
    pub const DEFAULT_REFUSE_SECONDS: f64 = 5.0;

    fn default_refuse_seconds() -> f64 {
        Filters::DEFAULT_REFUSE_SECONDS
    }
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            refuse_seconds: Filters::DEFAULT_REFUSE_SECONDS,
        }
    }
}

// ---------------------------------------------------------------------------
// FrameworkInfo, MasterInfo

/// `FrameworkInfo.Capability`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FrameworkCapability {
    /// The capability.
    #[serde(rename = "type")]
    pub capability_type: FrameworkCapabilityType,
}

/// `OfferFilters.ResourceQuantities`: `{quantities:{cpus:{value}}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceQuantities {
    /// Scalar quantity per resource name.
    #[serde(default)]
    pub quantities: BTreeMap<String, Scalar>,
}

/// `OfferFilters.MinAllocatableResources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MinAllocatableResources {
    /// Any one of these bundles is enough.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quantities: Vec<ResourceQuantities>,
}

/// `OfferFilters`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OfferFilters {
    /// Minimum bundle worth offering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_allocatable_resources: Option<MinAllocatableResources>,
}

/// `FrameworkInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkInfo {
    /// Unix user tasks run as by default.
    pub user: String,
    /// Framework name.
    pub name: String,
    /// Set when re-subscribing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<FrameworkID>,
    /// Seconds before a disconnected framework is removed (default 0).
    #[serde(default, deserialize_with = "lenient::f64")]
    pub failover_timeout: f64,
    /// Whether agents checkpoint its tasks (default false).
    #[serde(default, deserialize_with = "lenient::bool")]
    pub checkpoint: bool,
    /// Deprecated single role (default `*`); only without MULTI_ROLE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The roles of a MULTI_ROLE framework.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Where the scheduler runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Authentication principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Web UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webui_url: Option<String>,
    /// Capabilities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<FrameworkCapability>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Per-role offer filters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub offer_filters: BTreeMap<String, OfferFilters>,
}

impl FrameworkInfo {
    /// A framework with only a user and a name.
    pub fn new(user: impl Into<String>, name: impl Into<String>) -> FrameworkInfo {
        FrameworkInfo {
            user: user.into(),
            name: name.into(),
            id: None,
            failover_timeout: 0.0,
            checkpoint: false,
            role: None,
            roles: Vec::new(),
            hostname: None,
            principal: None,
            webui_url: None,
            capabilities: Vec::new(),
            labels: None,
            offer_filters: BTreeMap::new(),
        }
    }

    /// True when the framework declares `capability`.
    pub fn has_capability(&self, capability: &FrameworkCapabilityType) -> bool {
        self.capabilities
            .iter()
            .any(|c| &c.capability_type == capability)
    }

    /// The roles the framework subscribes to: `roles` with MULTI_ROLE, else
    /// `role` (default `*`).
    pub fn effective_roles(&self) -> Vec<String> {
        if self.has_capability(&FrameworkCapabilityType::MultiRole) {
            self.roles.clone()
        } else {
            vec![self.role.clone().unwrap_or_else(|| "*".to_string())]
        }
    }

    /// The resource format offers to this framework use: POST-refinement with
    /// RESERVATION_REFINEMENT, PRE-refinement otherwise.
    pub fn resource_format(&self) -> ResourceFormat {
        if self.has_capability(&FrameworkCapabilityType::ReservationRefinement) {
            ResourceFormat::PostRefinement
        } else {
            ResourceFormat::PreRefinement
        }
    }

    /// Mesos' role checks: MULTI_ROLE ⇒ `roles` only, without duplicates;
    /// otherwise `roles` is forbidden; every role must be a valid name.
    /// Mesos reports these as an `ERROR` event, not as a 400.
    pub fn validate_roles(&self) -> Result<(), String> {
        if self.has_capability(&FrameworkCapabilityType::MultiRole) {
            if self.role.is_some() {
                return Err(
                    "'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable"
                        .into(),
                );
            }
            let mut seen = std::collections::BTreeSet::new();
            for r in &self.roles {
                if !seen.insert(r) {
                    return Err(format!(
                        "'FrameworkInfo.roles' contains duplicate role '{r}'"
                    ));
                }
                crate::roles::validate_role(r)
                    .map_err(|e| format!("'FrameworkInfo.roles' contains invalid role: {e}"))?;
            }
        } else {
            if !self.roles.is_empty() {
                return Err(
                    "'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable"
                        .into(),
                );
            }
            if let Some(r) = &self.role {
                crate::roles::validate_role(r)
                    .map_err(|e| format!("'FrameworkInfo.role' is not a valid role: {e}"))?;
            }
        }
        Ok(())
    }
}

/// `MasterInfo.Capability`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MasterCapability {
    /// The capability.
    #[serde(rename = "type")]
    pub capability_type: MasterCapabilityType,
}

/// `MasterInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterInfo {
    /// A random UUID, new at every election.
    pub id: String,
    /// IPv4 in network byte order read as a little-endian integer
    /// (127.0.0.1 → 16777343); see [`MasterInfo::ip_from`].
    #[serde(deserialize_with = "lenient::int")]
    pub ip: u32,
    /// Port (5050).
    #[serde(deserialize_with = "lenient::int")]
    pub port: u32,
    /// `master@ip:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Mesos version claimed (`1.11.0`: dotted integers, pymesos parses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    /// Fault domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainInfo>,
    /// Capabilities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<MasterCapability>,
}

impl MasterInfo {
    /// The `ip` field for an IPv4 address.
    pub fn ip_from(addr: std::net::Ipv4Addr) -> u32 {
        u32::from_le_bytes(addr.octets())
    }

    /// The IPv4 address of the `ip` field.
    pub fn ip_addr(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(self.ip.to_le_bytes())
    }
}

// ---------------------------------------------------------------------------
// Tasks and executors

/// `Environment.Variable`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentVariable {
    /// Name.
    pub name: String,
    /// VALUE (default; always written) or SECRET.
    #[serde(rename = "type", default = "EnvironmentVariable::default_type")]
    pub variable_type: VariableType,
    /// The value of a VALUE variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The `Secret` of a SECRET variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Json>,
}

impl EnvironmentVariable {
    /// A VALUE variable.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        EnvironmentVariable {
            name: name.into(),
            variable_type: VariableType::Value,
            value: Some(value.into()),
            secret: None,
        }
    }

    fn default_type() -> VariableType {
        VariableType::Value
    }
}

/// `Environment`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// Variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<EnvironmentVariable>,
}

/// `CommandInfo.URI`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandUri {
    /// What to fetch.
    pub value: String,
    /// chmod +x after fetching.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    pub executable: Option<bool>,
    /// Extract archives (default true; always written).
    #[serde(default = "default_true", deserialize_with = "lenient::bool")]
    pub extract: bool,
    /// Use the fetcher cache.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    pub cache: Option<bool>,
    /// Name of the fetched file in the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
}

/// `CommandInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// Files to fetch into the sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uris: Vec<CommandUri>,
    /// Environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// `/bin/sh -c value` when true (default; always written), else exec
    /// `value` with `arguments` as the full argv.
    #[serde(default = "default_true", deserialize_with = "lenient::bool")]
    pub shell: bool,
    /// The command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// argv when `shell` is false.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
    /// Unix user to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl CommandInfo {
    /// A shell command.
    pub fn shell(value: impl Into<String>) -> CommandInfo {
        CommandInfo {
            uris: Vec::new(),
            environment: None,
            shell: true,
            value: Some(value.into()),
            arguments: Vec::new(),
            user: None,
        }
    }
}

/// `ContainerInfo.DockerInfo.PortMapping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host port.
    #[serde(deserialize_with = "lenient::int")]
    pub host_port: u32,
    /// Container port.
    #[serde(deserialize_with = "lenient::int")]
    pub container_port: u32,
    /// `tcp` / `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// `ContainerInfo.DockerInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DockerInfo {
    /// Image.
    pub image: String,
    /// Network mode (default HOST; always written).
    #[serde(default = "DockerInfo::default_network")]
    pub network: DockerNetwork,
    /// Port mappings (BRIDGE).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    /// Privileged (default false; always written).
    #[serde(default, deserialize_with = "lenient::bool")]
    pub privileged: bool,
    /// Extra `docker run` parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    /// Always pull.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    pub force_pull_image: Option<bool>,
}

impl DockerInfo {
    fn default_network() -> DockerNetwork {
        DockerNetwork::Host
    }
}

/// `Volume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    /// Path in the container.
    pub container_path: String,
    /// Host path to bind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// RW or RO.
    pub mode: VolumeMode,
    /// Image volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Json>,
    /// `Volume.Source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Json>,
}

/// `ContainerInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// MESOS or DOCKER.
    #[serde(rename = "type")]
    pub container_type: ContainerType,
    /// Volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Host name inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// DOCKER details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerInfo>,
    /// MESOS details (`{image:{type, docker:{name}}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesos: Option<Json>,
    /// `NetworkInfo`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_infos: Vec<Json>,
    /// `LinuxInfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_info: Option<Json>,
    /// `RLimitInfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rlimit_info: Option<Json>,
    /// `TTYInfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty_info: Option<Json>,
}

/// `ContainerStatus`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// The container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<ContainerID>,
    /// `NetworkInfo`s with the assigned addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_infos: Vec<Json>,
    /// `CgroupInfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_info: Option<Json>,
    /// The executor's pid.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub executor_pid: Option<u32>,
}

/// `HealthCheck.HTTPCheckInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCheck {
    /// `http` / `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Port.
    #[serde(deserialize_with = "lenient::int")]
    pub port: u32,
    /// Path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Accepted statuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<u32>,
}

/// `HealthCheck.TCPCheckInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpCheck {
    /// Port.
    #[serde(deserialize_with = "lenient::int")]
    pub port: u32,
}

/// `HealthCheck`; the `*_seconds` and `consecutive_failures` defaults are
/// always written, as Mesos does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// COMMAND, HTTP or TCP.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub check_type: Option<HealthCheckType>,
    /// Seconds before the first check (default 15).
    #[serde(default = "HealthCheck::d_delay", deserialize_with = "lenient::f64")]
    pub delay_seconds: f64,
    /// Seconds between checks (default 10).
    #[serde(default = "HealthCheck::d_interval", deserialize_with = "lenient::f64")]
    pub interval_seconds: f64,
    /// Seconds a check may take (default 20).
    #[serde(default = "HealthCheck::d_timeout", deserialize_with = "lenient::f64")]
    pub timeout_seconds: f64,
    /// Failures before the task is killed (default 3).
    #[serde(default = "HealthCheck::d_failures", deserialize_with = "lenient::int")]
    pub consecutive_failures: u32,
    /// Seconds of failures ignored after start (default 10).
    #[serde(default = "HealthCheck::d_grace", deserialize_with = "lenient::f64")]
    pub grace_period_seconds: f64,
    /// COMMAND check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    /// HTTP check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// TCP check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
}

impl HealthCheck {
    fn d_delay() -> f64 {
        15.0
    }
    fn d_interval() -> f64 {
        10.0
    }
    fn d_timeout() -> f64 {
        20.0
    }
    fn d_failures() -> u32 {
        3
    }
    fn d_grace() -> f64 {
        10.0
    }
}

/// `KillPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillPolicy {
    /// Time between SIGTERM and SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<DurationInfo>,
}

/// `ExecutorInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    /// DEFAULT or CUSTOM.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub executor_type: Option<ExecutorType>,
    /// Executor ID.
    pub executor_id: ExecutorID,
    /// Owning framework.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<FrameworkID>,
    /// How to start a CUSTOM executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    /// Container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// Executor's own resources.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Deprecated source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Opaque data (Base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// `DiscoveryInfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Json>,
    /// Grace period of SHUTDOWN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_period: Option<DurationInfo>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

/// `TaskInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Name.
    pub name: String,
    /// Framework-chosen ID.
    pub task_id: TaskID,
    /// The offer's agent.
    pub agent_id: AgentID,
    /// Resources.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// Custom executor (exclusive with `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorInfo>,
    /// Command for the built-in command executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    /// Container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// Health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// `CheckInfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Json>,
    /// Kill policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
    /// Opaque data (Base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// `DiscoveryInfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Json>,
    /// Kill after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_time: Option<DurationInfo>,
    /// `limits: {cpus:{value}, mem:{value}}` (values may be infinite).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Json>,
}

/// `TaskGroupInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskGroupInfo {
    /// The tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskInfo>,
}

/// `TaskResourceLimitation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskResourceLimitation {
    /// The resources that were exceeded.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
}

/// `TaskStatus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task.
    pub task_id: TaskID,
    /// Its state.
    pub state: TaskState,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who generated the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<TaskSource>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Opaque data (Base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The task's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentID>,
    /// The task's executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<ExecutorID>,
    /// Seconds since the epoch.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub timestamp: Option<f64>,
    /// Base64 of 16 raw bytes; present ⇒ the scheduler must acknowledge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Health check result.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    pub healthy: Option<bool>,
    /// `CheckStatusInfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_status: Option<Json>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Container details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_status: Option<ContainerStatus>,
    /// When the agent became unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_time: Option<TimeInfo>,
    /// What limit the task hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limitation: Option<TaskResourceLimitation>,
}

impl TaskStatus {
    /// A status with only a task ID and a state.
    pub fn new(task_id: TaskID, state: TaskState) -> TaskStatus {
        TaskStatus {
            task_id,
            state,
            message: None,
            source: None,
            reason: None,
            data: None,
            agent_id: None,
            executor_id: None,
            timestamp: None,
            uuid: None,
            healthy: None,
            check_status: None,
            labels: None,
            container_status: None,
            unreachable_time: None,
            limitation: None,
        }
    }

    /// The raw uuid bytes, `None` when absent or not valid Base64.
    pub fn uuid_bytes(&self) -> Option<Vec<u8>> {
        self.uuid.as_deref().and_then(decode_base64)
    }
}

// ---------------------------------------------------------------------------
// Offers and operations

/// `Offer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Single-use offer ID.
    pub id: OfferID,
    /// The framework offered to.
    pub framework_id: FrameworkID,
    /// The agent.
    pub agent_id: AgentID,
    /// The agent's host name.
    pub hostname: String,
    /// The agent's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    /// The agent's fault domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainInfo>,
    /// What is offered.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// The agent's attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
    /// This framework's executors on the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executor_ids: Vec<ExecutorID>,
    /// Maintenance window of the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailability: Option<Unavailability>,
    /// The role offered to (MULTI_ROLE frameworks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_info: Option<AllocationInfo>,
}

impl Offer {
    /// The offer's JSON with its resources in `format`.
    pub fn to_json(&self, format: ResourceFormat) -> Result<Json, ResourcesError> {
        let mut v = serde_json::to_value(self).expect("an offer is always serialisable");
        if !self.resources.is_empty() {
            v["resources"] = self.resources.to_json(format)?;
        }
        Ok(v)
    }
}

/// `InverseOffer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InverseOffer {
    /// ID.
    pub id: OfferID,
    /// The agent's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    /// The framework asked.
    pub framework_id: FrameworkID,
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentID>,
    /// The maintenance window.
    pub unavailability: Unavailability,
    /// Empty = everything.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
}

impl InverseOffer {
    /// The inverse offer's JSON with its resources in `format`.
    pub fn to_json(&self, format: ResourceFormat) -> Result<Json, ResourcesError> {
        let mut v = serde_json::to_value(self).expect("an inverse offer is always serialisable");
        if !self.resources.is_empty() {
            v["resources"] = self.resources.to_json(format)?;
        }
        Ok(v)
    }
}

/// `Offer.Operation.Launch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// The tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_infos: Vec<TaskInfo>,
}

/// `Offer.Operation.LaunchGroup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchGroup {
    /// The (default) executor.
    pub executor: ExecutorInfo,
    /// The tasks.
    pub task_group: TaskGroupInfo,
}

/// `Offer.Operation.Reserve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reserve {
    /// Resources to re-reserve from (refinement), if not the offered ones.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub source: Resources,
    /// The reserved resources (with the new reservation).
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
}

/// `Offer.Operation.Unreserve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unreserve {
    /// The reserved resources to release.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
}

/// `Offer.Operation.Create` / `Destroy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volumes {
    /// Persistent volumes.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub volumes: Resources,
}

/// `Offer.Operation.GrowVolume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrowVolume {
    /// The volume.
    pub volume: Resource,
    /// Disk to add.
    pub addition: Resource,
}

/// `Offer.Operation.ShrinkVolume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShrinkVolume {
    /// The volume.
    pub volume: Resource,
    /// MB to remove.
    pub subtract: Scalar,
}

/// `Offer.Operation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// The operation.
    #[serde(rename = "type")]
    pub operation_type: OperationType,
    /// Request UPDATE_OPERATION_STATUS feedback (not on LAUNCH*).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<OperationID>,
    /// LAUNCH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
    /// LAUNCH_GROUP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_group: Option<LaunchGroup>,
    /// RESERVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve: Option<Reserve>,
    /// UNRESERVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreserve: Option<Unreserve>,
    /// CREATE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<Volumes>,
    /// DESTROY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroy: Option<Volumes>,
    /// GROW_VOLUME.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grow_volume: Option<GrowVolume>,
    /// SHRINK_VOLUME.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrink_volume: Option<ShrinkVolume>,
    /// CREATE_DISK (CSI), kept as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_disk: Option<Json>,
    /// DESTROY_DISK (CSI), kept as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroy_disk: Option<Json>,
}

impl Operation {
    /// An operation of `operation_type` with no body yet.
    pub fn new(operation_type: OperationType) -> Operation {
        Operation {
            operation_type,
            id: None,
            launch: None,
            launch_group: None,
            reserve: None,
            unreserve: None,
            create: None,
            destroy: None,
            grow_volume: None,
            shrink_volume: None,
            create_disk: None,
            destroy_disk: None,
        }
    }

    /// A LAUNCH of `tasks`.
    pub fn launch(tasks: Vec<TaskInfo>) -> Operation {
        Operation {
            launch: Some(Launch { task_infos: tasks }),
            ..Operation::new(OperationType::Launch)
        }
    }

    /// True when the body named by the type is present.
    pub fn has_payload(&self) -> bool {
        match self.operation_type {
            OperationType::Launch => self.launch.is_some(),
            OperationType::LaunchGroup => self.launch_group.is_some(),
            OperationType::Reserve => self.reserve.is_some(),
            OperationType::Unreserve => self.unreserve.is_some(),
            OperationType::Create => self.create.is_some(),
            OperationType::Destroy => self.destroy.is_some(),
            OperationType::GrowVolume => self.grow_volume.is_some(),
            OperationType::ShrinkVolume => self.shrink_volume.is_some(),
            OperationType::CreateDisk => self.create_disk.is_some(),
            OperationType::DestroyDisk => self.destroy_disk.is_some(),
        }
    }
}

/// `OperationStatus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationStatus {
    /// The framework's operation ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<OperationID>,
    /// State.
    pub state: OperationState,
    /// Detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Resources after the operation.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub converted_resources: Resources,
    /// Present ⇒ must be acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<Uuid>,
    /// Agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentID>,
    /// Resource provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_provider_id: Option<ResourceProviderID>,
}

// ---------------------------------------------------------------------------
// Call

/// `Call.Subscribe` (also the body of `Call.UpdateFramework`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    /// The framework.
    pub framework_info: FrameworkInfo,
    /// Roles to start suppressed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed_roles: Vec<String>,
    /// `OfferConstraints`, kept as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_constraints: Option<Json>,
}

/// `Call.Accept`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accept {
    /// Offers used (all from one agent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offer_ids: Vec<OfferID>,
    /// Operations, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<Operation>,
    /// Filter for the unused resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

/// `Call.Decline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decline {
    /// Offers declined.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offer_ids: Vec<OfferID>,
    /// Refusal filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

/// `Call.AcceptInverseOffers` / `Call.DeclineInverseOffers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InverseOffersReply {
    /// The inverse offers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inverse_offer_ids: Vec<OfferID>,
    /// Filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

/// `Call.Revive` / `Call.Suppress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    /// The roles; empty = all the framework's roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// `Call.Kill`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kill {
    /// The task.
    pub task_id: TaskID,
    /// Its agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentID>,
    /// Overrides the task's kill policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
}

/// `Call.Shutdown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shutdown {
    /// The executor.
    pub executor_id: ExecutorID,
    /// Its agent.
    pub agent_id: AgentID,
}

/// `Call.Acknowledge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledge {
    /// The status' agent.
    pub agent_id: AgentID,
    /// The status' task.
    pub task_id: TaskID,
    /// `TaskStatus.uuid`, verbatim (Base64 of 16 bytes).
    pub uuid: String,
}

/// `Call.AcknowledgeOperationStatus`. `uuid` is read from a Base64 string or,
/// leniently (pymesos posts the whole status), from a `{value}` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcknowledgeOperationStatus {
    /// Agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentID>,
    /// Resource provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_provider_id: Option<ResourceProviderID>,
    /// `OperationStatus.uuid.value`.
    #[serde(deserialize_with = "uuid_string_or_object")]
    pub uuid: String,
    /// The operation.
    pub operation_id: OperationID,
}

fn uuid_string_or_object<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Object(Uuid),
    }
    match Either::deserialize(d) {
        Ok(Either::Text(s)) => Ok(s),
        Ok(Either::Object(u)) => Ok(u.value),
        Err(_) => Err(de::Error::custom(
            "expected a Base64 string or a {\"value\": <Base64>} object",
        )),
    }
}

/// One task of `Call.Reconcile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileTask {
    /// The task.
    pub task_id: TaskID,
    /// Its agent, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentID>,
}

/// `Call.Reconcile`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconcile {
    /// Tasks; empty = implicit reconciliation of all tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<ReconcileTask>,
}

/// One operation of `Call.ReconcileOperations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileOperation {
    /// The operation.
    pub operation_id: OperationID,
    /// Its agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentID>,
    /// Its resource provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_provider_id: Option<ResourceProviderID>,
}

/// `Call.ReconcileOperations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileOperations {
    /// Operations; empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<ReconcileOperation>,
}

/// `Call.Message` and `Event.Message`: framework ↔ executor data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The executor's agent.
    pub agent_id: AgentID,
    /// The executor.
    pub executor_id: ExecutorID,
    /// Base64 data.
    pub data: String,
}

/// `Request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRequest {
    /// Agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentID>,
    /// Resources wanted.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
}

/// `Call.Request`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<ResourceRequest>,
}

/// `scheduler.Call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// Required for every call but SUBSCRIBE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<FrameworkID>,
    /// The call.
    #[serde(rename = "type")]
    pub call_type: CallType,
    /// SUBSCRIBE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Subscribe>,
    /// ACCEPT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<Accept>,
    /// DECLINE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline: Option<Decline>,
    /// ACCEPT_INVERSE_OFFERS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_inverse_offers: Option<InverseOffersReply>,
    /// DECLINE_INVERSE_OFFERS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_inverse_offers: Option<InverseOffersReply>,
    /// REVIVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revive: Option<Roles>,
    /// SUPPRESS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress: Option<Roles>,
    /// KILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<Kill>,
    /// SHUTDOWN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<Shutdown>,
    /// ACKNOWLEDGE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge: Option<Acknowledge>,
    /// ACKNOWLEDGE_OPERATION_STATUS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge_operation_status: Option<AcknowledgeOperationStatus>,
    /// RECONCILE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<Reconcile>,
    /// RECONCILE_OPERATIONS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_operations: Option<ReconcileOperations>,
    /// MESSAGE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// REQUEST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
    /// UPDATE_FRAMEWORK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_framework: Option<Subscribe>,
}

/// Why a scheduler call body was rejected; the message names the field and is
/// meant for a `400 Bad Request` body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The body is not JSON.
    #[error("malformed JSON at line {line} column {column}: {message}")]
    MalformedJson {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// serde_json's description.
        message: String,
    },
    /// The body is JSON but not an object.
    #[error("expecting a JSON object for scheduler::Call, got {0}")]
    NotAnObject(&'static str),
    /// `type` names no known call.
    #[error("field 'type': unknown Call.Type '{0}'")]
    UnknownCallType(String),
    /// A field has the wrong type or a bad value, or a required one is missing
    /// inside a message.
    #[error("field '{field}': {message}")]
    Field {
        /// Dotted path, e.g. `accept.offer_ids[0].value`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A field that this call type needs is absent (Mesos' wording).
    #[error("Expecting '{0}' to be present")]
    Missing(String),
    /// `framework_id` and `subscribe.framework_info.id` disagree.
    #[error("'framework_id' differs from 'subscribe.framework_info.id'")]
    FrameworkIdMismatch,
}

impl CallError {
    /// The field the error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            CallError::UnknownCallType(_) => Some("type"),
            CallError::Field { field, .. } | CallError::Missing(field) => Some(field),
            CallError::FrameworkIdMismatch => Some("framework_id"),
            CallError::MalformedJson { .. } | CallError::NotAnObject(_) => None,
        }
    }

    fn at(field: impl Into<String>, message: impl Into<String>) -> CallError {
        CallError::Field {
            field: field.into(),
            message: message.into(),
        }
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Deserializes `value` reporting the path of a failing field.
fn from_json_with_path<T: serde::de::DeserializeOwned>(
    value: Json,
    prefix: &str,
) -> Result<T, CallError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix.is_empty(), path.as_str()) {
            (true, p) => p.to_string(),
            (false, ".") => prefix.to_string(),
            (false, p) => format!("{prefix}.{p}"),
        };
        CallError::at(field, e.into_inner().to_string())
    })
}

impl Call {
    /// A call of `call_type` with nothing else set.
    pub fn new(call_type: CallType) -> Call {
        Call {
            framework_id: None,
            call_type,
            subscribe: None,
            accept: None,
            decline: None,
            accept_inverse_offers: None,
            decline_inverse_offers: None,
            revive: None,
            suppress: None,
            kill: None,
            shutdown: None,
            acknowledge: None,
            acknowledge_operation_status: None,
            reconcile: None,
            reconcile_operations: None,
            message: None,
            request: None,
            update_framework: None,
        }
    }

    /// A SUBSCRIBE for `framework_info` (with its `id` also as `framework_id`).
    pub fn subscribe(framework_info: FrameworkInfo) -> Call {
        Call {
            framework_id: framework_info.id.clone(),
            subscribe: Some(Subscribe {
                framework_info,
                suppressed_roles: Vec::new(),
                offer_constraints: None,
            }),
            ..Call::new(CallType::Subscribe)
        }
    }

    /// Parses and validates a request body (JSON). Errors name the field:
    /// malformed JSON (with line and column), an unknown `type`, a field of
    /// the wrong type (with its path), a missing payload or `framework_id`.
    /// Unknown fields are ignored.
    pub fn parse(body: &[u8]) -> Result<Call, CallError> {
        let value: Json = serde_json::from_slice(body).map_err(|e| CallError::MalformedJson {
            line: e.line(),
            column: e.column(),
            message: strip_position(&e),
        })?;
        Call::from_json(value)
    }

    /// [`Call::parse`] of already-parsed JSON.
    pub fn from_json(value: Json) -> Result<Call, CallError> {
        let obj = match &value {
            Json::Object(o) => o,
            other => return Err(CallError::NotAnObject(json_kind(other))),
        };
        match obj.get("type") {
            None | Some(Json::Null) => return Err(CallError::Missing("type".into())),
            Some(Json::String(s)) => {
                s.parse::<CallType>()
                    .map_err(|e| CallError::UnknownCallType(e.value))?;
            }
            Some(other) => {
                return Err(CallError::at(
                    "type",
                    format!("expected a string, got {}", json_kind(other)),
                ))
            }
        }
        let call: Call = from_json_with_path(value, "")?;
        call.validate()?;
        Ok(call)
    }

    /// Mesos' `scheduler::call::validation::validate` (structure only): the
    /// payload of the call type is present, `framework_id` is present for all
    /// but SUBSCRIBE (and matches `framework_info.id` there), every ACCEPT
    /// operation has its body, and `bytes` fields are valid Base64.
    pub fn validate(&self) -> Result<(), CallError> {
        let field = self.call_type.payload_field();
        if self.call_type.requires_payload() && !self.has_payload() {
            return Err(CallError::Missing(field.into()));
        }
        if self.call_type == CallType::Subscribe {
            let info = &self
                .subscribe
                .as_ref()
                .expect("checked above")
                .framework_info;
            // Re-subscribing sets both; a first SUBSCRIBE neither.
            if self.framework_id != info.id {
                return Err(CallError::FrameworkIdMismatch);
            }
            return Ok(());
        }
        if self.framework_id.is_none() {
            return Err(CallError::Missing("framework_id".into()));
        }
        match self.call_type {
            CallType::Accept => {
                let accept = self.accept.as_ref().expect("checked above");
                for (i, op) in accept.operations.iter().enumerate() {
                    if !op.has_payload() {
                        return Err(CallError::Missing(format!(
                            "accept.operations[{i}].{}",
                            op.operation_type.payload_field()
                        )));
                    }
                }
            }
            CallType::Acknowledge => {
                let ack = self.acknowledge.as_ref().expect("checked above");
                check_uuid("acknowledge.uuid", &ack.uuid)?;
            }
            CallType::AcknowledgeOperationStatus => {
                let ack = self
                    .acknowledge_operation_status
                    .as_ref()
                    .expect("checked above");
                check_uuid("acknowledge_operation_status.uuid", &ack.uuid)?;
            }
            CallType::Message => {
                let msg = self.message.as_ref().expect("checked above");
                if decode_base64(&msg.data).is_none() {
                    return Err(CallError::at("message.data", "not valid Base64"));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// True when the payload field of `call_type` is set.
    pub fn has_payload(&self) -> bool {
        match self.call_type {
            CallType::Subscribe => self.subscribe.is_some(),
            CallType::Teardown => true,
            CallType::Accept => self.accept.is_some(),
            CallType::Decline => self.decline.is_some(),
            CallType::AcceptInverseOffers => self.accept_inverse_offers.is_some(),
            CallType::DeclineInverseOffers => self.decline_inverse_offers.is_some(),
            CallType::Revive => self.revive.is_some(),
            CallType::Kill => self.kill.is_some(),
            CallType::Shutdown => self.shutdown.is_some(),
            CallType::Acknowledge => self.acknowledge.is_some(),
            CallType::AcknowledgeOperationStatus => self.acknowledge_operation_status.is_some(),
            CallType::Reconcile => self.reconcile.is_some(),
            CallType::ReconcileOperations => self.reconcile_operations.is_some(),
            CallType::Message => self.message.is_some(),
            CallType::Request => self.request.is_some(),
            CallType::Suppress => self.suppress.is_some(),
            CallType::UpdateFramework => self.update_framework.is_some(),
        }
    }

    /// The call as JSON bytes.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a call is always serialisable")
    }
}

fn check_uuid(field: &str, uuid: &str) -> Result<(), CallError> {
    match decode_base64(uuid) {
        None => Err(CallError::at(field, "not valid Base64")),
        Some(b) if b.len() != 16 => Err(CallError::at(
            field,
            format!("not a UUID: expected 16 bytes, got {}", b.len()),
        )),
        Some(_) => Ok(()),
    }
}

/// serde_json's message without its trailing " at line L column C".
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_string()
}

// ---------------------------------------------------------------------------
// Event

/// `Event.Subscribed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The (possibly new) framework ID.
    pub framework_id: FrameworkID,
    /// Seconds between HEARTBEATs.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub heartbeat_interval_seconds: Option<f64>,
    /// The leading master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_info: Option<MasterInfo>,
}

/// `Event.Offers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Offers {
    /// The offers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offers: Vec<Offer>,
}

/// `Event.InverseOffers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InverseOffers {
    /// The inverse offers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inverse_offers: Vec<InverseOffer>,
}

/// `Event.Rescind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rescind {
    /// The offer withdrawn.
    pub offer_id: OfferID,
}

/// `Event.RescindInverseOffer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RescindInverseOffer {
    /// The inverse offer withdrawn.
    pub inverse_offer_id: OfferID,
}

/// `Event.Update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// The status.
    pub status: TaskStatus,
}

/// `Event.UpdateOperationStatus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateOperationStatus {
    /// The status.
    pub status: OperationStatus,
}

/// `Event.Failure`: agent lost (no executor) or executor exited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The agent (pymesos requires it, always set it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentID>,
    /// The executor that exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<ExecutorID>,
    /// Its wait status.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub status: Option<i32>,
}

/// `Event.Error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventError {
    /// What went wrong.
    pub message: String,
}

/// `scheduler.Event`. HEARTBEAT has no payload (there is no `heartbeat`
/// field in Mesos' proto).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// SUBSCRIBED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed: Option<Subscribed>,
    /// OFFERS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offers: Option<Offers>,
    /// INVERSE_OFFERS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inverse_offers: Option<InverseOffers>,
    /// RESCIND.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescind: Option<Rescind>,
    /// RESCIND_INVERSE_OFFER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescind_inverse_offer: Option<RescindInverseOffer>,
    /// UPDATE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Update>,
    /// UPDATE_OPERATION_STATUS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_operation_status: Option<UpdateOperationStatus>,
    /// MESSAGE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// FAILURE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// ERROR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<EventError>,
}

impl Event {
    /// An event of `event_type` with no payload.
    pub fn new(event_type: EventType) -> Event {
        Event {
            event_type,
            subscribed: None,
            offers: None,
            inverse_offers: None,
            rescind: None,
            rescind_inverse_offer: None,
            update: None,
            update_operation_status: None,
            message: None,
            failure: None,
            error: None,
        }
    }

    /// `HEARTBEAT`.
    pub fn heartbeat() -> Event {
        Event::new(EventType::Heartbeat)
    }

    /// `SUBSCRIBED`.
    pub fn subscribed(subscribed: Subscribed) -> Event {
        Event {
            subscribed: Some(subscribed),
            ..Event::new(EventType::Subscribed)
        }
    }

    /// `OFFERS`.
    pub fn offers(offers: Vec<Offer>) -> Event {
        Event {
            offers: Some(Offers { offers }),
            ..Event::new(EventType::Offers)
        }
    }

    /// `INVERSE_OFFERS`.
    pub fn inverse_offers(inverse_offers: Vec<InverseOffer>) -> Event {
        Event {
            inverse_offers: Some(InverseOffers { inverse_offers }),
            ..Event::new(EventType::InverseOffers)
        }
    }

    /// `RESCIND`.
    pub fn rescind(offer_id: OfferID) -> Event {
        Event {
            rescind: Some(Rescind { offer_id }),
            ..Event::new(EventType::Rescind)
        }
    }

    /// `RESCIND_INVERSE_OFFER`.
    pub fn rescind_inverse_offer(inverse_offer_id: OfferID) -> Event {
        Event {
            rescind_inverse_offer: Some(RescindInverseOffer { inverse_offer_id }),
            ..Event::new(EventType::RescindInverseOffer)
        }
    }

    /// `UPDATE`.
    pub fn update(status: TaskStatus) -> Event {
        Event {
            update: Some(Update { status }),
            ..Event::new(EventType::Update)
        }
    }

    /// `UPDATE_OPERATION_STATUS`.
    pub fn update_operation_status(status: OperationStatus) -> Event {
        Event {
            update_operation_status: Some(UpdateOperationStatus { status }),
            ..Event::new(EventType::UpdateOperationStatus)
        }
    }

    /// `MESSAGE`.
    pub fn message(message: Message) -> Event {
        Event {
            message: Some(message),
            ..Event::new(EventType::Message)
        }
    }

    /// `FAILURE`.
    pub fn failure(failure: Failure) -> Event {
        Event {
            failure: Some(failure),
            ..Event::new(EventType::Failure)
        }
    }

    /// `ERROR` with `message`.
    pub fn error(message: impl Into<String>) -> Event {
        Event {
            error: Some(EventError {
                message: message.into(),
            }),
            ..Event::new(EventType::Error)
        }
    }

    /// True when the payload of the type is present (pymesos drops events
    /// without it).
    pub fn has_payload(&self) -> bool {
        match self.event_type {
            EventType::Subscribed => self.subscribed.is_some(),
            EventType::Offers => self.offers.is_some(),
            EventType::InverseOffers => self.inverse_offers.is_some(),
            EventType::Rescind => self.rescind.is_some(),
            EventType::RescindInverseOffer => self.rescind_inverse_offer.is_some(),
            EventType::Update => self.update.is_some(),
            EventType::UpdateOperationStatus => self.update_operation_status.is_some(),
            EventType::Message => self.message.is_some(),
            EventType::Failure => self.failure.is_some(),
            EventType::Error => self.error.is_some(),
            EventType::Heartbeat => true,
        }
    }

    /// Parses an event (e.g. a RecordIO record), reporting the failing field.
    pub fn parse(body: &[u8]) -> Result<Event, CallError> {
        let value: Json = serde_json::from_slice(body).map_err(|e| CallError::MalformedJson {
            line: e.line(),
            column: e.column(),
            message: strip_position(&e),
        })?;
        let event: Event = from_json_with_path(value, "")?;
        if !event.has_payload() {
            return Err(CallError::Missing(
                event
                    .event_type
                    .payload_field()
                    .expect("HEARTBEAT always has its payload")
                    .into(),
            ));
        }
        Ok(event)
    }

    /// The event's JSON with every resource in `format` (PRE-refinement for
    /// frameworks without RESERVATION_REFINEMENT). Fails only for refined
    /// reservations in PRE-refinement.
    pub fn to_json(&self, format: ResourceFormat) -> Result<Json, ResourcesError> {
        let mut v = serde_json::to_value(self).expect("an event is always serialisable");
        if let Some(offers) = &self.offers {
            for (i, o) in offers.offers.iter().enumerate() {
                v["offers"]["offers"][i] = o.to_json(format)?;
            }
        }
        if let Some(inverse) = &self.inverse_offers {
            for (i, o) in inverse.inverse_offers.iter().enumerate() {
                v["inverse_offers"]["inverse_offers"][i] = o.to_json(format)?;
            }
        }
        if let Some(u) = &self.update_operation_status {
            if !u.status.converted_resources.is_empty() {
                v["update_operation_status"]["status"]["converted_resources"] =
                    u.status.converted_resources.to_json(format)?;
            }
        }
        if let Some(l) = self
            .update
            .as_ref()
            .and_then(|u| u.status.limitation.as_ref())
        {
            if !l.resources.is_empty() {
                v["update"]["status"]["limitation"]["resources"] = l.resources.to_json(format)?;
            }
        }
        Ok(v)
    }

    /// One RecordIO record of [`Event::to_json`], ready for the SUBSCRIBE
    /// stream.
    pub fn to_record(&self, format: ResourceFormat) -> Result<Vec<u8>, ResourcesError> {
        let json = serde_json::to_vec(&self.to_json(format)?).expect("JSON is serialisable");
        Ok(recordio::encode(&json))
    }
}
