//! Mesos resources: [`Resource`], the [`Resources`] collection with Mesos
//! arithmetic, the three JSON formats, the agent's `--resources` syntax and host
//! detection.
//!
//! Internally every resource is in the POST-refinement format: its reservations
//! are a stack (`reservations[0]` the base, the last entry the owner), and an
//! unreserved resource has an empty stack. [`Resources::from_json`] upgrades any
//! input format; [`Resources::to_json`] emits the one a peer needs.
//!
//! # Arithmetic
//!
//! Resources that differ only in their value (same name, type, reservation
//! stack, disk info, allocation info, revocable/shared flags) merge when added:
//! scalars sum, ranges and sets unite. Persistent volumes, MOUNT disks and
//! shared resources never merge or split; each copy is kept whole and is
//! subtracted only by an identical resource. Empty resources (scalar 0, no
//! range, no item) are dropped.
//!
//! Subtraction comes in two forms:
//! * [`Resources::checked_sub`] fails with [`SubtractError`] unless the
//!   subtrahend is [contained](Resources::contains) — use it for bookkeeping
//!   that must balance (allocations, offers, operations);
//! * the `-` / `-=` operators saturate as Mesos' `Resources::operator-` does:
//!   whatever is not present is ignored and nothing goes below zero.

mod detect;
mod parse;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::roles::{self, RoleError};
use crate::value::{Ranges, Scalar, Set, TextWire, ValueError, ValueType};

pub use detect::{
    agent_resources, detect, detect_from, disk_mb_for_total, host_info, mem_mb_for_total,
    merge_detected, parse_meminfo_total, HostInfo, DEFAULT_PORTS,
};
pub use parse::{parse, parse_flag, parse_with_default_role};

/// `Resource.ReservationInfo.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationType {
    /// Made by the agent's `--resources` (`cpus(ops):2`).
    Static,
    /// Made through RESERVE operations.
    Dynamic,
}

/// One `{key, value?}` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Label {
    /// The key.
    pub key: String,
    /// The value, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `Labels`: `{labels:[{key,value}]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Labels {
    /// The labels, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Label>,
}

/// One entry of `Resource.reservations`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceReservation {
    /// STATIC or DYNAMIC.
    #[serde(rename = "type")]
    pub reservation_type: ReservationType,
    /// The role the resource is reserved for.
    pub role: String,
    /// Who made a dynamic reservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Labels of a dynamic reservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

impl ResourceReservation {
    /// A STATIC reservation for `role`.
    pub fn static_for(role: impl Into<String>) -> Self {
        ResourceReservation {
            reservation_type: ReservationType::Static,
            role: role.into(),
            principal: None,
            labels: None,
        }
    }

    /// A DYNAMIC reservation for `role`, made by `principal`.
    pub fn dynamic_for(role: impl Into<String>, principal: Option<String>) -> Self {
        ResourceReservation {
            reservation_type: ReservationType::Dynamic,
            role: role.into(),
            principal,
            labels: None,
        }
    }
}

/// Pre-refinement `Resource.reservation` (`{principal?, labels?}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LegacyReservation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    labels: Option<Labels>,
}

/// `DiskInfo.Persistence`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Persistence {
    /// Unique per role per agent.
    pub id: String,
    /// The framework principal that created the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// `Volume.Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VolumeMode {
    /// Read-write.
    Rw,
    /// Read-only.
    Ro,
}

/// The `volume` of a disk resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DiskVolume {
    /// Relative path inside the sandbox.
    pub container_path: String,
    /// RW or RO.
    pub mode: VolumeMode,
}

/// `DiskInfo.Source.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiskSourceType {
    /// A directory on an existing filesystem (shareable, splittable).
    Path,
    /// A whole mounted filesystem (exclusive, never split).
    Mount,
    /// A block device.
    Block,
    /// Raw storage.
    Raw,
}

/// `{root}` of a PATH or MOUNT source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceRoot {
    /// The directory or mount point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

/// `DiskInfo.Source`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DiskSource {
    /// PATH, MOUNT, BLOCK or RAW.
    #[serde(rename = "type")]
    pub source_type: DiskSourceType,
    /// For PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<SourceRoot>,
    /// For MOUNT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<SourceRoot>,
    /// Provider-specific id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Provider-specific profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// `Resource.DiskInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Set for persistent volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<Persistence>,
    /// Where a volume is mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<DiskVolume>,
    /// Where the disk comes from (default: the agent's work dir filesystem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DiskSource>,
}

/// `Resource.AllocationInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AllocationInfo {
    /// The role the resource is allocated (offered) to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// The value of a resource (resources cannot be TEXT).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResourceValue {
    /// `SCALAR`.
    Scalar(Scalar),
    /// `RANGES`.
    Ranges(Ranges),
    /// `SET`.
    Set(Set),
}

impl ResourceValue {
    /// SCALAR, RANGES or SET.
    pub fn value_type(&self) -> ValueType {
        match self {
            ResourceValue::Scalar(_) => ValueType::Scalar,
            ResourceValue::Ranges(_) => ValueType::Ranges,
            ResourceValue::Set(_) => ValueType::Set,
        }
    }

    /// Zero, no interval, or no item.
    pub fn is_empty(&self) -> bool {
        match self {
            ResourceValue::Scalar(s) => s.millis() <= 0,
            ResourceValue::Ranges(r) => r.is_empty(),
            ResourceValue::Set(s) => s.is_empty(),
        }
    }

    /// True when `other` is of the same kind and not more than `self`.
    pub fn contains(&self, other: &ResourceValue) -> bool {
        match (self, other) {
            (ResourceValue::Scalar(a), ResourceValue::Scalar(b)) => a >= b,
            (ResourceValue::Ranges(a), ResourceValue::Ranges(b)) => a.contains(b),
            (ResourceValue::Set(a), ResourceValue::Set(b)) => a.contains(b),
            _ => false,
        }
    }

    /// Sum / union; a value of another kind is ignored.
    fn add(&mut self, other: &ResourceValue) {
        match (self, other) {
            (ResourceValue::Scalar(a), ResourceValue::Scalar(b)) => *a += *b,
            (ResourceValue::Ranges(a), ResourceValue::Ranges(b)) => *a = a.union(b),
            (ResourceValue::Set(a), ResourceValue::Set(b)) => *a = a.union(b),
            _ => {}
        }
    }

    /// Saturating difference; a value of another kind is ignored.
    fn subtract(&mut self, other: &ResourceValue) {
        match (self, other) {
            (ResourceValue::Scalar(a), ResourceValue::Scalar(b)) => {
                *a = if *a > *b { *a - *b } else { Scalar::ZERO }
            }
            (ResourceValue::Ranges(a), ResourceValue::Ranges(b)) => *a = a.difference(b),
            (ResourceValue::Set(a), ResourceValue::Set(b)) => *a = a.difference(b),
            _ => {}
        }
    }
}

impl fmt::Display for ResourceValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceValue::Scalar(s) => s.fmt(f),
            ResourceValue::Ranges(r) => r.fmt(f),
            ResourceValue::Set(s) => s.fmt(f),
        }
    }
}

/// One Mesos resource, in the POST-refinement format.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    /// `cpus`, `mem`, `disk`, `ports`, `gpus`, or any custom name.
    pub name: String,
    /// The quantity; its kind is the JSON `type`.
    pub value: ResourceValue,
    /// The reservation stack: base first, refinements after, last = owner.
    /// Empty = unreserved.
    pub reservations: Vec<ResourceReservation>,
    /// Disk details (persistent volumes, sources).
    pub disk: Option<DiskInfo>,
    /// Which role the resource is allocated to (set in offers).
    pub allocation_info: Option<AllocationInfo>,
    /// `revocable:{}`.
    pub revocable: bool,
    /// `shared:{}`.
    pub shared: bool,
}

impl Resource {
    /// An unreserved resource with nothing but a name and a value.
    pub fn new(name: impl Into<String>, value: ResourceValue) -> Resource {
        Resource {
            name: name.into(),
            value,
            reservations: Vec::new(),
            disk: None,
            allocation_info: None,
            revocable: false,
            shared: false,
        }
    }

    /// An unreserved scalar resource; errors on NaN, infinities and huge values.
    pub fn scalar(name: impl Into<String>, value: f64) -> Result<Resource, ValueError> {
        Ok(Resource::new(
            name,
            ResourceValue::Scalar(Scalar::from_f64(value)?),
        ))
    }

    /// An unreserved ranges resource of one interval.
    pub fn ranges(name: impl Into<String>, begin: u64, end: u64) -> Result<Resource, ValueError> {
        Ok(Resource::new(
            name,
            ResourceValue::Ranges(Ranges::single(begin, end)?),
        ))
    }

    /// An unreserved set resource.
    pub fn set<S: Into<String>>(
        name: impl Into<String>,
        items: impl IntoIterator<Item = S>,
    ) -> Resource {
        Resource::new(name, ResourceValue::Set(items.into_iter().collect()))
    }

    /// This resource with `reservation` pushed on its stack.
    pub fn reserved(mut self, reservation: ResourceReservation) -> Resource {
        self.reservations.push(reservation);
        self
    }

    /// This resource with a STATIC reservation for `role` pushed on its stack.
    pub fn reserved_static(self, role: impl Into<String>) -> Resource {
        self.reserved(ResourceReservation::static_for(role))
    }

    /// This resource allocated to `role`.
    pub fn allocated_to(mut self, role: impl Into<String>) -> Resource {
        self.allocation_info = Some(AllocationInfo {
            role: Some(role.into()),
        });
        self
    }

    /// The kind of the value.
    pub fn value_type(&self) -> ValueType {
        self.value.value_type()
    }

    /// The role owning the resource (the last reservation), `None` if unreserved.
    pub fn owner_role(&self) -> Option<&str> {
        self.reservations.last().map(|r| r.role.as_str())
    }

    /// True when the reservation stack is empty.
    pub fn is_unreserved(&self) -> bool {
        self.reservations.is_empty()
    }

    /// True when the stack has more than one reservation.
    pub fn has_refined_reservations(&self) -> bool {
        self.reservations.len() > 1
    }

    /// True when the resource can be offered to a framework subscribed to `role`:
    /// unreserved, or owned by `role` or one of its ancestors.
    pub fn is_allocatable_to(&self, role: &str) -> bool {
        match self.owner_role() {
            None => true,
            Some(owner) => owner == role || roles::is_ancestor(owner, role),
        }
    }

    /// True for disk with `persistence`.
    pub fn is_persistent_volume(&self) -> bool {
        self.disk.as_ref().is_some_and(|d| d.persistence.is_some())
    }

    /// Persistent volumes, MOUNT disks and shared resources are kept whole.
    fn is_mergeable(&self) -> bool {
        !self.shared
            && !self.is_persistent_volume()
            && !self.disk.as_ref().is_some_and(|d| {
                d.source
                    .as_ref()
                    .is_some_and(|s| s.source_type == DiskSourceType::Mount)
            })
    }

    /// Same everything but the quantity.
    fn same_identity(&self, other: &Resource) -> bool {
        self.name == other.name
            && self.value_type() == other.value_type()
            && self.reservations == other.reservations
            && self.disk == other.disk
            && self.allocation_info == other.allocation_info
            && self.revocable == other.revocable
            && self.shared == other.shared
    }

    /// Checks a resource as Mesos does on input: non-empty name, non-negative
    /// scalar, valid reservation roles (not `*`), valid allocation role.
    pub fn validate(&self) -> Result<(), ResourcesError> {
        let invalid = |problem| ResourcesError::InvalidResource {
            token: self.name.clone(),
            problem,
        };
        if self.name.trim().is_empty() {
            return Err(invalid(ResourceProblem::EmptyName));
        }
        if let ResourceValue::Scalar(s) = self.value {
            if s.is_negative() {
                return Err(invalid(ResourceProblem::Negative));
            }
        }
        for r in &self.reservations {
            roles::validate_reservation_role(&r.role).map_err(|source| {
                ResourcesError::InvalidRole {
                    role: r.role.clone(),
                    token: self.name.clone(),
                    source,
                }
            })?;
        }
        for pair in self.reservations.windows(2) {
            if !roles::is_ancestor(&pair[0].role, &pair[1].role) {
                return Err(invalid(ResourceProblem::BadRefinement {
                    from: pair[0].role.clone(),
                    to: pair[1].role.clone(),
                }));
            }
        }
        if let Some(role) = self.allocation_info.as_ref().and_then(|a| a.role.as_ref()) {
            roles::validate_role(role).map_err(|source| ResourcesError::InvalidRole {
                role: role.clone(),
                token: self.name.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// The JSON of this resource in `format`; errors only for a refined
    /// stack in [`ResourceFormat::PreRefinement`].
    pub fn to_json(&self, format: ResourceFormat) -> Result<serde_json::Value, ResourcesError> {
        let wire = self.to_wire(format)?;
        Ok(serde_json::to_value(wire).expect("resource JSON is always serialisable"))
    }

    /// Reads one resource in any format (see [`Resources::from_json`]).
    pub fn from_json(value: &serde_json::Value) -> Result<Resource, ResourcesError> {
        let wire =
            ResourceWire::deserialize(value).map_err(|e| ResourcesError::Json(e.to_string()))?;
        let r = Resource::from_wire(wire)?;
        r.validate()?;
        Ok(r)
    }

    fn to_wire(&self, format: ResourceFormat) -> Result<ResourceWire, ResourcesError> {
        let mut w = ResourceWire {
            name: self.name.clone(),
            ty: self.value_type(),
            scalar: None,
            ranges: None,
            set: None,
            text: None,
            role: None,
            reservation: None,
            reservations: Vec::new(),
            disk: self.disk.clone(),
            allocation_info: self.allocation_info.clone(),
            revocable: self.revocable.then_some(Empty {}),
            shared: self.shared.then_some(Empty {}),
        };
        match &self.value {
            ResourceValue::Scalar(s) => w.scalar = Some(*s),
            ResourceValue::Ranges(r) => w.ranges = Some(r.clone()),
            ResourceValue::Set(s) => w.set = Some(s.clone()),
        }
        let pre_fields = |w: &mut ResourceWire| match self.reservations.as_slice() {
            [] => w.role = Some(roles::DEFAULT_ROLE.to_string()),
            [only] => {
                w.role = Some(only.role.clone());
                if only.reservation_type == ReservationType::Dynamic {
                    w.reservation = Some(LegacyReservation {
                        principal: only.principal.clone(),
                        labels: only.labels.clone(),
                    });
                }
            }
            // Refined: ENDPOINT carries only `reservations`.
            _ => {}
        };
        match format {
            ResourceFormat::PostRefinement => w.reservations = self.reservations.clone(),
            ResourceFormat::PreRefinement => {
                if self.has_refined_reservations() {
                    return Err(ResourcesError::RefinedReservations {
                        resource: self.to_string(),
                    });
                }
                pre_fields(&mut w);
            }
            ResourceFormat::Endpoint => {
                pre_fields(&mut w);
                w.reservations = self.reservations.clone();
            }
        }
        Ok(w)
    }

    /// Upgrades any format to POST-refinement (Mesos `upgradeResource`).
    fn from_wire(w: ResourceWire) -> Result<Resource, ResourcesError> {
        let invalid = |problem| ResourcesError::InvalidResource {
            token: w.name.clone(),
            problem,
        };
        let value = match w.ty {
            ValueType::Scalar => w.scalar.map(ResourceValue::Scalar),
            ValueType::Ranges => w.ranges.clone().map(ResourceValue::Ranges),
            ValueType::Set => w.set.clone().map(ResourceValue::Set),
            ValueType::Text => return Err(invalid(ResourceProblem::TextType)),
        }
        .ok_or_else(|| invalid(ResourceProblem::MissingValue(w.ty)))?;
        let reservations = if !w.reservations.is_empty() {
            // POST-refinement or ENDPOINT: the stack wins, `role`/`reservation` are dropped.
            w.reservations.clone()
        } else {
            match w.role.as_deref() {
                None | Some(roles::DEFAULT_ROLE) => {
                    if w.reservation.is_some() {
                        return Err(invalid(ResourceProblem::ReservationWithoutRole));
                    }
                    Vec::new()
                }
                Some(role) => vec![match &w.reservation {
                    None => ResourceReservation::static_for(role),
                    Some(legacy) => ResourceReservation {
                        reservation_type: ReservationType::Dynamic,
                        role: role.to_string(),
                        principal: legacy.principal.clone(),
                        labels: legacy.labels.clone(),
                    },
                }],
            }
        };
        Ok(Resource {
            name: w.name,
            value,
            reservations,
            disk: w.disk,
            allocation_info: w.allocation_info,
            revocable: w.revocable.is_some(),
            shared: w.shared.is_some(),
        })
    }
}

impl fmt::Display for Resource {
    /// The `--resources` text: `name(owner-role):value`, plus `[id:path]` for
    /// persistent volumes, `{REV}` for revocable and `<SHARED>` for shared ones.
    /// Only unreserved and singly STATIC-reserved plain resources read back
    /// identically through [`parse`]; the rest is for humans and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(role) = self.owner_role() {
            write!(f, "({role})")?;
        }
        if let Some(p) = self.disk.as_ref().and_then(|d| d.persistence.as_ref()) {
            let path = self
                .disk
                .as_ref()
                .and_then(|d| d.volume.as_ref())
                .map(|v| v.container_path.as_str())
                .unwrap_or("");
            write!(f, "[{}:{}]", p.id, path)?;
        }
        if self.revocable {
            f.write_str("{REV}")?;
        }
        if self.shared {
            f.write_str("<SHARED>")?;
        }
        write!(f, ":{}", self.value)
    }
}

impl Serialize for Resource {
    /// POST-refinement JSON.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_wire(ResourceFormat::PostRefinement)
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Resource {
    /// Any format, upgraded and validated.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = ResourceWire::deserialize(deserializer)?;
        let r = Resource::from_wire(wire).map_err(serde::de::Error::custom)?;
        r.validate().map_err(serde::de::Error::custom)?;
        Ok(r)
    }
}

/// `revocable:{}` / `shared:{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Empty {}

/// Every field any of the three formats uses.
#[derive(Serialize, Deserialize)]
struct ResourceWire {
    name: String,
    #[serde(rename = "type")]
    ty: ValueType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scalar: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ranges: Option<Ranges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    set: Option<Set>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<TextWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reservation: Option<LegacyReservation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reservations: Vec<ResourceReservation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disk: Option<DiskInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allocation_info: Option<AllocationInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revocable: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shared: Option<Empty>,
}

/// The resource JSON formats of `convertResourceFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceFormat {
    /// Only `reservations`; unreserved has neither `role` nor `reservations`.
    /// For RESERVATION_REFINEMENT frameworks and Berth's own state.
    PostRefinement,
    /// Only `role` (`"*"` if unreserved) and, for a DYNAMIC reservation,
    /// `reservation:{principal?,labels?}`. Refined stacks cannot be expressed.
    PreRefinement,
    /// For `/state` and the like: the pre-refinement fields (omitted for
    /// refined stacks, as Mesos does) and `reservations`.
    Endpoint,
}

/// What is wrong with a resource.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResourceProblem {
    /// A malformed value.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// A scalar below zero.
    #[error("scalar values must be non-negative")]
    Negative,
    /// An empty name.
    #[error("resource names must not be empty")]
    EmptyName,
    /// A name with characters the text syntax uses.
    #[error("resource names must not contain whitespace or any of ()[]{{}}:;,")]
    BadName,
    /// No `:` between name and value.
    #[error("expected name[(role)]:value")]
    MissingColon,
    /// `name(role` or `name(role)x`.
    #[error("expected name(role) with the role in parentheses right before ':'")]
    BadRoleSyntax,
    /// `type: TEXT`.
    #[error("resources must be SCALAR, RANGES or SET, not TEXT")]
    TextType,
    /// `type` without its value field.
    #[error("type {0} requires its value field (scalar, ranges or set)")]
    MissingValue(ValueType),
    /// Pre-refinement `reservation` with `role` `*` or no role.
    #[error("\"reservation\" requires a \"role\" other than \"*\"")]
    ReservationWithoutRole,
    /// A refinement that is not for a descendant of the previous owner.
    #[error("reservation for \"{to}\" cannot refine one for \"{from}\": refinements must be for a descendant role")]
    BadRefinement {
        /// The previous owner.
        from: String,
        /// The refining role.
        to: String,
    },
}

/// Errors of parsing, validating and converting resources.
#[derive(Debug, thiserror::Error)]
pub enum ResourcesError {
    /// A bad resource; `token` is the text entry (`cpus:-1`) or, for JSON, the name.
    #[error("invalid resource \"{token}\": {problem}")]
    InvalidResource {
        /// The offending entry.
        token: String,
        /// What is wrong with it.
        problem: ResourceProblem,
    },
    /// A bad role in a reservation or allocation.
    #[error("invalid role \"{role}\" in \"{token}\": {source}")]
    InvalidRole {
        /// The role.
        role: String,
        /// The entry it appears in.
        token: String,
        /// What is wrong with it.
        source: RoleError,
    },
    /// A text value that is neither number, ranges nor set.
    #[error("unknown value syntax in \"{token}\": expected a number (scalar, e.g. 1.5), [begin-end,...] (ranges) or {{item,...}} (set)")]
    UnknownValueSyntax {
        /// The offending entry.
        token: String,
    },
    /// One name used with two value kinds.
    #[error("resource \"{name}\" is given as both {first} and {second}: a name has a single type")]
    ConflictingTypes {
        /// The resource name.
        name: String,
        /// The kind seen first.
        first: ValueType,
        /// The conflicting kind.
        second: ValueType,
    },
    /// Malformed JSON or JSON not shaped like an array of Resource.
    #[error("invalid resources json: {0}")]
    Json(String),
    /// `file://` that cannot be read.
    #[error("cannot read resources file \"{path}\": {source}")]
    File {
        /// The path after `file://`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// PRE-refinement output of a refined reservation stack.
    #[error("cannot convert \"{resource}\" to the pre-refinement format: refined reservations cannot be downgraded")]
    RefinedReservations {
        /// The resource, in text form.
        resource: String,
    },
}

/// [`Resources::checked_sub`] of something not contained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot subtract \"{wanted}\": only \"{available}\" is available")]
pub struct SubtractError {
    /// The resource that is not (fully) present.
    pub wanted: String,
    /// What matched it (`""` when nothing did).
    pub available: String,
}

/// A collection of resources with Mesos semantics (see the module docs).
/// Equality ignores order.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    items: Vec<Resource>,
}

impl Resources {
    /// No resources.
    pub const fn new() -> Resources {
        Resources { items: Vec::new() }
    }

    /// The resources, merged, in insertion order.
    pub fn iter(&self) -> std::slice::Iter<'_, Resource> {
        self.items.iter()
    }

    /// How many distinct (unmergeable) resources there are.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there is nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds one resource (merging when possible; empty ones are dropped).
    pub fn push(&mut self, r: Resource) {
        if r.value.is_empty() {
            return;
        }
        if r.is_mergeable() {
            if let Some(x) = self
                .items
                .iter_mut()
                .find(|x| x.is_mergeable() && x.same_identity(&r))
            {
                x.value.add(&r.value);
                return;
            }
        }
        self.items.push(r);
    }

    /// Removes `r`; `strict` refuses (without changing anything) unless `r` is
    /// contained, else whatever is missing is ignored.
    fn remove(&mut self, r: &Resource, strict: bool) -> Result<(), SubtractError> {
        if r.value.is_empty() {
            return Ok(());
        }
        let not_there = |available: String| SubtractError {
            wanted: r.to_string(),
            available,
        };
        if !r.is_mergeable() {
            return match self.items.iter().position(|x| x == r) {
                Some(i) => {
                    self.items.remove(i);
                    Ok(())
                }
                None if strict => Err(not_there(String::new())),
                None => Ok(()),
            };
        }
        let Some(i) = self
            .items
            .iter()
            .position(|x| x.is_mergeable() && x.same_identity(r))
        else {
            return if strict {
                Err(not_there(String::new()))
            } else {
                Ok(())
            };
        };
        let x = &mut self.items[i];
        if strict && !x.value.contains(&r.value) {
            return Err(not_there(x.to_string()));
        }
        x.value.subtract(&r.value);
        if x.value.is_empty() {
            self.items.remove(i);
        }
        Ok(())
    }

    /// `self - other`, or an error naming the first resource of `other` that is
    /// not contained in `self`.
    pub fn checked_sub(&self, other: &Resources) -> Result<Resources, SubtractError> {
        let mut out = self.clone();
        for r in &other.items {
            out.remove(r, true)?;
        }
        Ok(out)
    }

    /// True when every resource of `other` is covered by resources of `self`
    /// with the same name, type, reservation stack, disk info, allocation info
    /// and flags (persistent volumes, MOUNT disks and shared resources only by
    /// identical copies, counted).
    pub fn contains(&self, other: &Resources) -> bool {
        self.checked_sub(other).is_ok()
    }

    /// True when `r` is contained.
    pub fn contains_resource(&self, r: &Resource) -> bool {
        self.clone().remove(r, true).is_ok()
    }

    /// The total scalar quantity named `name` over all reservations (0 if none).
    pub fn scalar(&self, name: &str) -> Scalar {
        self.items
            .iter()
            .filter(|r| r.name == name)
            .fold(Scalar::ZERO, |acc, r| match r.value {
                ResourceValue::Scalar(s) => acc + s,
                _ => acc,
            })
    }

    /// The union of the ranges named `name` over all reservations.
    pub fn ranges(&self, name: &str) -> Ranges {
        self.items
            .iter()
            .filter(|r| r.name == name)
            .fold(Ranges::new(), |acc, r| match &r.value {
                ResourceValue::Ranges(x) => acc.union(x),
                _ => acc,
            })
    }

    /// The union of the sets named `name` over all reservations.
    pub fn set(&self, name: &str) -> Set {
        self.items
            .iter()
            .filter(|r| r.name == name)
            .fold(Set::new(), |acc, r| match &r.value {
                ResourceValue::Set(x) => acc.union(x),
                _ => acc,
            })
    }

    /// The distinct names.
    pub fn names(&self) -> BTreeSet<&str> {
        self.items.iter().map(|r| r.name.as_str()).collect()
    }

    /// The resources for which `pred` holds.
    pub fn filter(&self, pred: impl Fn(&Resource) -> bool) -> Resources {
        Resources {
            items: self.items.iter().filter(|r| pred(r)).cloned().collect(),
        }
    }

    /// Unreserved resources.
    pub fn unreserved(&self) -> Resources {
        self.filter(Resource::is_unreserved)
    }

    /// Resources whose owner (last reservation) is exactly `role`.
    pub fn reserved(&self, role: &str) -> Resources {
        self.filter(|r| r.owner_role() == Some(role))
    }

    /// Reserved resources grouped by owner role.
    pub fn reservations_by_role(&self) -> BTreeMap<String, Resources> {
        let mut out: BTreeMap<String, Resources> = BTreeMap::new();
        for r in &self.items {
            if let Some(role) = r.owner_role() {
                out.entry(role.to_string()).or_default().push(r.clone());
            }
        }
        out
    }

    /// What a framework subscribed to `role` may be offered: unreserved
    /// resources and those owned by `role` or one of its ancestors (`eng`
    /// reservations are offerable to `eng/backend`).
    pub fn allocatable_to(&self, role: &str) -> Resources {
        self.filter(|r| r.is_allocatable_to(role))
    }

    /// The same resources with every reservation removed (merged again).
    pub fn flatten(&self) -> Resources {
        self.items
            .iter()
            .map(|r| Resource {
                reservations: Vec::new(),
                ..r.clone()
            })
            .collect()
    }

    /// The same resources with `allocation_info.role` set to `role`.
    pub fn allocate(&self, role: &str) -> Resources {
        self.items
            .iter()
            .map(|r| r.clone().allocated_to(role))
            .collect()
    }

    /// The same resources without `allocation_info`.
    pub fn unallocate(&self) -> Resources {
        self.items
            .iter()
            .map(|r| Resource {
                allocation_info: None,
                ..r.clone()
            })
            .collect()
    }

    /// A JSON array in `format`; PRE-refinement fails on refined stacks.
    pub fn to_json(&self, format: ResourceFormat) -> Result<serde_json::Value, ResourcesError> {
        self.items
            .iter()
            .map(|r| r.to_json(format))
            .collect::<Result<Vec<_>, _>>()
            .map(serde_json::Value::Array)
    }

    /// Reads a JSON array of Resource in any format and upgrades it: `role:"*"`
    /// (or no role) → unreserved, `role:R` → STATIC R, `role:R` + `reservation`
    /// → DYNAMIC R, a non-empty `reservations` stack is kept as is (and
    /// `role`/`reservation` next to it ignored). Every resource is validated.
    pub fn from_json(value: &serde_json::Value) -> Result<Resources, ResourcesError> {
        let arr = value
            .as_array()
            .ok_or_else(|| ResourcesError::Json("expected an array of Resource".into()))?;
        let mut out = Resources::new();
        for (i, v) in arr.iter().enumerate() {
            let r = Resource::from_json(v).map_err(|e| match e {
                ResourcesError::Json(msg) => ResourcesError::Json(format!("resource {i}: {msg}")),
                other => other,
            })?;
            out.push(r);
        }
        Ok(out)
    }

    /// [`Resources::from_json`] of JSON text.
    pub fn from_json_str(text: &str) -> Result<Resources, ResourcesError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ResourcesError::Json(e.to_string()))?;
        Resources::from_json(&v)
    }
}

impl PartialEq for Resources {
    fn eq(&self, other: &Resources) -> bool {
        self.items.len() == other.items.len() && self.contains(other) && other.contains(self)
    }
}

impl Eq for Resources {}

impl FromIterator<Resource> for Resources {
    fn from_iter<I: IntoIterator<Item = Resource>>(iter: I) -> Self {
        let mut out = Resources::new();
        for r in iter {
            out.push(r);
        }
        out
    }
}

impl From<Resource> for Resources {
    fn from(r: Resource) -> Self {
        std::iter::once(r).collect()
    }
}

impl<'a> IntoIterator for &'a Resources {
    type Item = &'a Resource;
    type IntoIter = std::slice::Iter<'a, Resource>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl IntoIterator for Resources {
    type Item = Resource;
    type IntoIter = std::vec::IntoIter<Resource>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl std::ops::AddAssign<Resource> for Resources {
    fn add_assign(&mut self, r: Resource) {
        self.push(r);
    }
}

impl std::ops::AddAssign<&Resources> for Resources {
    fn add_assign(&mut self, other: &Resources) {
        for r in &other.items {
            self.push(r.clone());
        }
    }
}

impl std::ops::Add<&Resources> for &Resources {
    type Output = Resources;
    fn add(self, other: &Resources) -> Resources {
        let mut out = self.clone();
        out += other;
        out
    }
}

impl std::ops::SubAssign<&Resources> for Resources {
    /// Saturating: what is not present is ignored, nothing goes below zero.
    fn sub_assign(&mut self, other: &Resources) {
        for r in &other.items {
            // Non-strict removal never fails.
            let _ = self.remove(r, false);
        }
    }
}

impl std::ops::Sub<&Resources> for &Resources {
    type Output = Resources;
    /// Saturating; see [`Resources::checked_sub`] for the strict form.
    fn sub(self, other: &Resources) -> Resources {
        let mut out = self.clone();
        out -= other;
        out
    }
}

impl fmt::Display for Resources {
    /// `cpus(ops):2;mem:512;ports:[31000-32000]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            r.fmt(f)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Resources {
    type Err = ResourcesError;
    /// The text syntax only (see [`parse`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl Serialize for Resources {
    /// A POST-refinement JSON array.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.items.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Resources {
    /// An array of Resource in any format, upgraded and validated.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<Resource>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}
