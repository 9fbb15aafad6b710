//! The allocator: weighted DRF allocation of the agents' resources to
//! frameworks, as resource offers (Mesos' hierarchical allocator, simplified).
//!
//! It is event-driven: the master tells it about frameworks (add, remove,
//! roles, suppress, revive), agents (add, remove), weights, and resources that
//! come back ([`Allocator::recover`]); [`Allocator::allocate`] then runs one
//! batch cycle and returns the offers to send. Time is always passed in, so
//! behaviour is deterministic and testable.
//!
//! # Model
//!
//! * Every resource of an agent is either *available* or *allocated* to one
//!   framework in one role (offered or used by tasks: the allocator does not
//!   tell them apart — both count towards shares, and both come back through
//!   [`Allocator::recover`]).
//! * Roles are ordered by a [`Sorter`] (by default [`DrfSorter`]): weighted
//!   dominant share, lowest first. Each role has its own sorter for the
//!   frameworks allocated in it (weight 1). Roles form a flat list here;
//!   `eng/backend` is its own role with its own weight (the hierarchy only
//!   matters for reservations).
//! * Shares are relative to the cluster's total (all agents, reserved or
//!   not) over [`AllocatorConfig::fairness_resources`].
//! * A resource is offerable to a framework in role `R` when it is unreserved
//!   or reserved for `R` or an ancestor of `R` (`eng` reservations reach
//!   `eng/backend`); reservations never go outside their role's subtree.
//! * A framework without the RESERVATION_REFINEMENT capability (see
//!   [`Capabilities`]) is never offered refined reservations: it could not
//!   read them (the pre-refinement format has one role per reservation). The
//!   rest of the role's offer still goes to it; the refined part stays for
//!   the next framework in order.
//! * A framework with allocations in a role it left (see
//!   [`Allocator::update_framework_roles`]) keeps them, and they keep counting,
//!   until they are recovered; it gets no new offers in that role.
//!
//! # Not modelled (yet)
//!
//! Quota, revocable resources, offer constraints, per-framework
//! `min_allocatable_resources`, GPU filtering for frameworks without
//! GPU_RESOURCES, inactive frameworks (use [`Allocator::suppress`]) and agent
//! maintenance.

mod sorter;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use masterlink::resources::{ResourceValue, SubtractError};
use masterlink::roles::{self, RoleError};
use masterlink::{Resource, Resources, ResourcesError};
use serde::{Deserialize, Serialize};

pub use sorter::{DrfIter, DrfSorter, Sorter};

/// A framework's id (`FrameworkID.value`).
pub type FrameworkId = String;
/// An agent's id (`AgentID.value`).
pub type AgentId = String;

/// `Filters.refuse_seconds` when a framework gives none (Mesos: 5 s). The
/// caller applies it; [`Allocator::recover`] takes the filter as given.
pub const DEFAULT_REFUSE: Duration = Duration::from_secs(5);

/// Longest refusal filter; longer ones are cut to this (Mesos: 365 days).
pub const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The weight of a role with none configured.
pub const DEFAULT_WEIGHT: f64 = 1.0;

/// Scalar quantities by resource name (`{"cpus": 0.01}`).
pub type Quantities = BTreeMap<String, f64>;

/// How the allocator shares resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AllocatorConfig {
    /// Role → weight (finite, > 0); roles not listed weigh
    /// [`DEFAULT_WEIGHT`].
    pub weights: BTreeMap<String, f64>,
    /// The scalar resources dominant shares are computed over.
    pub fairness_resources: Vec<String>,
    /// `--min_allocatable_resources`: an offer is made only if it holds, for
    /// at least one entry, at least every quantity of that entry (by name,
    /// whatever the reservation). Empty = any non-empty offer.
    pub min_allocatable: Vec<Quantities>,
}

impl Default for AllocatorConfig {
    /// Weights 1, fairness over `cpus`, `mem`, `disk`, `gpus`, and Mesos'
    /// minimum `cpus:0.01|mem:32`.
    fn default() -> AllocatorConfig {
        AllocatorConfig {
            weights: BTreeMap::new(),
            fairness_resources: ["cpus", "mem", "disk", "gpus"].map(String::from).to_vec(),
            min_allocatable: vec![
                Quantities::from([("cpus".to_string(), 0.01)]),
                Quantities::from([("mem".to_string(), 32.0)]),
            ],
        }
    }
}

impl AllocatorConfig {
    /// Parses Mesos' `--min_allocatable_resources` syntax: alternatives
    /// separated by `|`, each `name:quantity` pairs separated by `;`
    /// (`cpus:0.01|mem:32`, `cpus:1;mem:128`). Only scalars are accepted.
    pub fn parse_min_allocatable(text: &str) -> Result<Vec<Quantities>, AllocatorError> {
        let invalid = |problem: String| AllocatorError::InvalidMinAllocatable {
            text: text.to_string(),
            problem,
        };
        let mut out = Vec::new();
        for alternative in text.split('|') {
            let resources = masterlink::resources::parse(alternative.trim())
                .map_err(|e: ResourcesError| invalid(e.to_string()))?;
            let mut q = Quantities::new();
            for r in &resources {
                match &r.value {
                    ResourceValue::Scalar(s) if r.is_unreserved() => {
                        *q.entry(r.name.clone()).or_default() += s.value();
                    }
                    _ => {
                        return Err(invalid(format!(
                            "\"{r}\" is not an unreserved scalar quantity"
                        )))
                    }
                }
            }
            if q.is_empty() {
                return Err(invalid("an alternative is empty".to_string()));
            }
            out.push(q);
        }
        Ok(out)
    }

    /// Checks the weights and the minimum.
    pub fn validate(&self) -> Result<(), AllocatorError> {
        for (role, &weight) in &self.weights {
            check_weight(role, weight)?;
        }
        for q in &self.min_allocatable {
            if let Some((name, v)) = q.iter().find(|(_, v)| !v.is_finite() || **v < 0.0) {
                return Err(AllocatorError::InvalidMinAllocatable {
                    text: format!("{name}:{v}"),
                    problem: "quantities must be finite and not negative".to_string(),
                });
            }
        }
        Ok(())
    }

    /// The weight of `role`.
    pub fn weight(&self, role: &str) -> f64 {
        self.weights.get(role).copied().unwrap_or(DEFAULT_WEIGHT)
    }

    /// True when `offer` is large enough to be offered.
    pub fn is_allocatable(&self, offer: &Resources) -> bool {
        !offer.is_empty()
            && (self.min_allocatable.is_empty()
                || self
                    .min_allocatable
                    .iter()
                    .any(|min| min.iter().all(|(name, &v)| offer.scalar(name).value() >= v)))
    }
}

fn check_weight(role: &str, weight: f64) -> Result<(), AllocatorError> {
    roles::validate_role(role).map_err(|source| AllocatorError::InvalidRole {
        role: role.to_string(),
        source,
    })?;
    if !(weight.is_finite() && weight > 0.0) {
        return Err(AllocatorError::InvalidWeight {
            role: role.to_string(),
            weight,
        });
    }
    Ok(())
}

/// One resource offer: everything on `agent` that `framework` may use in
/// `role`, allocated to it until recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Who gets it.
    pub framework: FrameworkId,
    /// Where the resources are.
    pub agent: AgentId,
    /// The role it is allocated to (`Offer.allocation_info.role`).
    pub role: String,
    /// The resources, each with `allocation_info.role` = `role`.
    pub resources: Resources,
}

/// What the allocator refuses.
#[derive(Debug, thiserror::Error)]
pub enum AllocatorError {
    /// [`Allocator::add_framework`] of a present id.
    #[error("framework \"{0}\" is already added")]
    FrameworkExists(FrameworkId),
    /// A call naming a framework that is not added.
    #[error("unknown framework \"{0}\"")]
    UnknownFramework(FrameworkId),
    /// [`Allocator::add_agent`] of a present id.
    #[error("agent \"{0}\" is already added")]
    AgentExists(AgentId),
    /// A call naming an agent that is not added.
    #[error("unknown agent \"{0}\"")]
    UnknownAgent(AgentId),
    /// A role name Mesos rejects.
    #[error("invalid role \"{role}\": {source}")]
    InvalidRole {
        /// The role.
        role: String,
        /// What is wrong with it.
        source: RoleError,
    },
    /// A role listed twice for one framework.
    #[error("role \"{0}\" is listed more than once")]
    DuplicateRole(String),
    /// A weight that is not finite and > 0.
    #[error(
        "invalid weight {weight} for role \"{role}\": weights must be finite and greater than 0"
    )]
    InvalidWeight {
        /// The role.
        role: String,
        /// The weight given.
        weight: f64,
    },
    /// A bad `min_allocatable`.
    #[error("invalid min_allocatable \"{text}\": {problem}")]
    InvalidMinAllocatable {
        /// The text or entry.
        text: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An agent's total with an invalid resource.
    #[error("invalid resources of agent \"{agent}\": {source}")]
    InvalidResources {
        /// The agent.
        agent: AgentId,
        /// What is wrong.
        source: ResourcesError,
    },
    /// [`Allocator::add_agent`] with used resources not in its total.
    #[error("resources used on agent \"{agent}\" are not part of its total: {source}")]
    UsedExceedsTotal {
        /// The agent.
        agent: AgentId,
        /// The first resource not in the total.
        source: SubtractError,
    },
    /// [`Allocator::recover`] of resources that are not allocated to the framework.
    #[error("framework \"{framework}\" has no such allocation in role \"{role}\" on agent \"{agent}\": {source}")]
    NotAllocated {
        /// The framework.
        framework: FrameworkId,
        /// The agent.
        agent: AgentId,
        /// The allocation role.
        role: String,
        /// The first resource not allocated.
        source: SubtractError,
    },
    /// [`Allocator::update_available`] of resources that are not available.
    #[error("resources on agent \"{agent}\" are not available (offered or in use): {source}")]
    NotAvailable {
        /// The agent.
        agent: AgentId,
        /// The first resource not available.
        source: SubtractError,
    },
    /// A conversion that changes scalar quantities (it would change shares).
    #[error("a conversion must keep the scalar quantities: {from} became {to}")]
    QuantitiesChanged {
        /// What was converted.
        from: String,
        /// What it became.
        to: String,
    },
    /// A resource without `allocation_info.role` where the role is ambiguous.
    #[error("resource \"{resource}\" of framework \"{framework}\" has no allocation role and the framework's role there is ambiguous")]
    MissingAllocationRole {
        /// The framework.
        framework: FrameworkId,
        /// The resource, in text form.
        resource: String,
    },
}

/// A refusal filter: `resources` (or less) on that agent in `role` are not
/// offered to the framework before `expires`.
#[derive(Debug, Clone)]
struct OfferFilter {
    role: String,
    resources: Resources,
    expires: Instant,
}

/// What a framework can read, from its `FrameworkInfo.capabilities`; only
/// those that change what it may be offered. The default is none, as for a
/// framework that declares no capabilities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RESERVATION_REFINEMENT: it reads reservation stacks.
    pub reservation_refinement: bool,
}

#[derive(Debug, Clone, Default)]
struct Framework {
    /// Subscribed roles.
    roles: BTreeSet<String>,
    capabilities: Capabilities,
    /// Subscribed roles that get no offers.
    suppressed: BTreeSet<String>,
    /// Refusal filters by agent.
    filters: HashMap<AgentId, Vec<OfferFilter>>,
    /// Agents where it has allocations.
    agents: BTreeSet<AgentId>,
    /// Role → number of agents where it has allocations in that role.
    role_allocs: BTreeMap<String, usize>,
    /// Disconnected (its scheduler is gone): keeps its allocations, gets no
    /// offers.
    inactive: bool,
}

impl Framework {
    /// True when a live filter covers `offer` (unallocated) on `agent` in `role`.
    fn filtered(&self, agent: &str, role: &str, offer: &Resources, now: Instant) -> bool {
        self.filters.get(agent).is_some_and(|fs| {
            fs.iter()
                .any(|f| f.role == role && now < f.expires && f.resources.contains(offer))
        })
    }

    /// True when it belongs in `role`'s framework sorter.
    fn tracked_in(&self, role: &str) -> bool {
        self.roles.contains(role) || self.role_allocs.get(role).is_some_and(|n| *n > 0)
    }
}

#[derive(Debug, Clone)]
struct Agent {
    /// Everything the agent has (without allocation info).
    total: Resources,
    /// What is not allocated (without allocation info).
    available: Resources,
    /// Framework → role → allocated resources (with allocation info).
    allocations: BTreeMap<FrameworkId, BTreeMap<String, Resources>>,
    /// Disconnected or draining: its resources are not offered.
    inactive: bool,
}

/// The allocator; see the module docs. `S` orders roles and the frameworks of
/// each role.
#[derive(Debug, Clone)]
pub struct Allocator<S: Sorter = DrfSorter> {
    config: AllocatorConfig,
    agents: BTreeMap<AgentId, Agent>,
    frameworks: HashMap<FrameworkId, Framework>,
    /// Orders the roles that have frameworks (subscribed or with allocations).
    role_sorter: S,
    /// Role → the sorter of its frameworks.
    roles: HashMap<String, S>,
    /// The scalar part of all agents' totals, flattened and unallocated: the
    /// total new sorters start with.
    cluster_total: Resources,
    /// Reused per agent in [`Allocator::allocate`].
    role_order: Vec<Arc<str>>,
}

impl Allocator<DrfSorter> {
    /// A weighted DRF allocator; errors on an invalid `config` (a weight not
    /// finite and > 0, an invalid role name, a negative minimum).
    pub fn new(config: AllocatorConfig) -> Result<Self, AllocatorError> {
        Allocator::with_sorter(config)
    }
}

/// Validates `roles` (valid names, no duplicates).
fn check_roles(roles: &[String]) -> Result<BTreeSet<String>, AllocatorError> {
    let mut out = BTreeSet::new();
    for role in roles {
        roles::validate_role(role).map_err(|source| AllocatorError::InvalidRole {
            role: role.clone(),
            source,
        })?;
        if !out.insert(role.clone()) {
            return Err(AllocatorError::DuplicateRole(role.clone()));
        }
    }
    Ok(out)
}

/// Splits `resources` by allocation role, setting `default_role` on resources
/// without one (an error if there is none).
fn split_by_role(
    framework: &str,
    resources: &Resources,
    default_role: Option<&str>,
) -> Result<BTreeMap<String, Resources>, AllocatorError> {
    let mut out: BTreeMap<String, Resources> = BTreeMap::new();
    for r in resources {
        let role = match r.allocation_info.as_ref().and_then(|a| a.role.as_deref()) {
            Some(role) => {
                roles::validate_role(role).map_err(|source| AllocatorError::InvalidRole {
                    role: role.to_string(),
                    source,
                })?;
                role
            }
            None => default_role.ok_or_else(|| AllocatorError::MissingAllocationRole {
                framework: framework.to_string(),
                resource: r.to_string(),
            })?,
        };
        out.entry(role.to_string())
            .or_default()
            .push(r.clone().allocated_to(role));
    }
    Ok(out)
}

/// Errors unless `from` and `to` have the same scalar quantities by name.
fn check_same_quantities(from: &Resources, to: &Resources) -> Result<(), AllocatorError> {
    let names: BTreeSet<&str> = from.names().union(&to.names()).copied().collect();
    let same = names.iter().all(|n| from.scalar(n) == to.scalar(n));
    if same {
        Ok(())
    } else {
        Err(AllocatorError::QuantitiesChanged {
            from: from.to_string(),
            to: to.to_string(),
        })
    }
}

/// The scalar part of `resources`, without reservations or allocation info.
fn scalar_quantities(resources: &Resources) -> Resources {
    resources
        .iter()
        .filter(|r| matches!(r.value, ResourceValue::Scalar(_)))
        .map(|r| Resource::new(r.name.clone(), r.value.clone()))
        .collect()
}

impl<S: Sorter> Allocator<S> {
    /// An allocator ordering with sorters of type `S`; errors as
    /// [`Allocator::new`].
    pub fn with_sorter(config: AllocatorConfig) -> Result<Self, AllocatorError> {
        config.validate()?;
        let role_sorter = S::with_fairness_resources(&config.fairness_resources);
        Ok(Allocator {
            config,
            agents: BTreeMap::new(),
            frameworks: HashMap::new(),
            role_sorter,
            roles: HashMap::new(),
            cluster_total: Resources::new(),
            role_order: Vec::new(),
        })
    }

    /// The configuration in force (weights updated by [`Allocator::set_weight`]).
    pub fn config(&self) -> &AllocatorConfig {
        &self.config
    }

    /// Adds framework `id` subscribed to `roles` (valid role names, no
    /// duplicates; may be empty, then it gets nothing), unsuppressed and
    /// without filters. Errors, changing nothing, if `id` is already added or
    /// a role is invalid.
    pub fn add_framework(&mut self, id: &str, roles: &[String]) -> Result<(), AllocatorError> {
        if self.frameworks.contains_key(id) {
            return Err(AllocatorError::FrameworkExists(id.to_string()));
        }
        let roles = check_roles(roles)?;
        for role in &roles {
            self.track_role(id, role);
        }
        self.frameworks.insert(
            id.to_string(),
            Framework {
                roles,
                ..Framework::default()
            },
        );
        Ok(())
    }

    /// Removes framework `id`: everything allocated to it on any agent is
    /// available again at once (the caller rescinds its offers and has killed
    /// its tasks), its filters are dropped. Idempotent: an unknown id is
    /// ignored.
    pub fn remove_framework(&mut self, id: &str) {
        let Some(fw) = self.frameworks.remove(id) else {
            return;
        };
        for agent_id in &fw.agents {
            let Some(agent) = self.agents.get_mut(agent_id) else {
                continue;
            };
            for (role, resources) in agent.allocations.remove(id).unwrap_or_default() {
                agent.available += &resources.unallocate();
                self.role_sorter.unallocated(&role, &resources);
                if let Some(s) = self.roles.get_mut(&role) {
                    s.unallocated(id, &resources);
                }
            }
        }
        let roles: BTreeSet<&String> = fw.roles.iter().chain(fw.role_allocs.keys()).collect();
        for role in roles {
            self.untrack_role(id, role);
        }
    }

    /// Replaces the roles of framework `id` (validated as in
    /// [`Allocator::add_framework`]). New roles start unsuppressed; for roles
    /// it leaves, its suppression and filters are dropped, and its allocations
    /// there stay (and count) until recovered, without new offers. Errors,
    /// changing nothing, for an unknown framework or an invalid role.
    pub fn update_framework_roles(
        &mut self,
        id: &str,
        roles: &[String],
    ) -> Result<(), AllocatorError> {
        if !self.frameworks.contains_key(id) {
            return Err(AllocatorError::UnknownFramework(id.to_string()));
        }
        let new_roles = check_roles(roles)?;
        let old_roles = self.frameworks[id].roles.clone();
        for role in new_roles.difference(&old_roles) {
            self.track_role(id, role);
        }
        let fw = self.frameworks.get_mut(id).expect("checked above");
        fw.roles = new_roles.clone();
        fw.suppressed.retain(|r| new_roles.contains(r));
        for filters in fw.filters.values_mut() {
            filters.retain(|f| new_roles.contains(&f.role));
        }
        fw.filters.retain(|_, fs| !fs.is_empty());
        for role in old_roles.difference(&new_roles) {
            if !self.frameworks[id].tracked_in(role) {
                self.untrack_role(id, role);
            }
        }
        Ok(())
    }

    /// Sets what framework `id` can read (given at SUBSCRIBE, may change when
    /// it subscribes again); takes effect from the next cycle. Errors for an
    /// unknown framework.
    pub fn set_capabilities(&mut self, id: &str, caps: Capabilities) -> Result<(), AllocatorError> {
        let fw = self
            .frameworks
            .get_mut(id)
            .ok_or_else(|| AllocatorError::UnknownFramework(id.to_string()))?;
        fw.capabilities = caps;
        Ok(())
    }

    /// Stops every offer to framework `id` (its scheduler disconnected) until
    /// [`Allocator::activate_framework`]; allocations, suppression and
    /// filters are kept. Unknown ids are ignored.
    pub fn deactivate_framework(&mut self, id: &str) {
        if let Some(fw) = self.frameworks.get_mut(id) {
            fw.inactive = true;
        }
    }

    /// Undoes [`Allocator::deactivate_framework`].
    pub fn activate_framework(&mut self, id: &str) {
        if let Some(fw) = self.frameworks.get_mut(id) {
            fw.inactive = false;
        }
    }

    /// Stops offering agent `id`'s resources (it disconnected) until
    /// [`Allocator::activate_agent`]; its allocations stay. Unknown ids are
    /// ignored.
    pub fn deactivate_agent(&mut self, id: &str) {
        if let Some(agent) = self.agents.get_mut(id) {
            agent.inactive = true;
        }
    }

    /// Undoes [`Allocator::deactivate_agent`].
    pub fn activate_agent(&mut self, id: &str) {
        if let Some(agent) = self.agents.get_mut(id) {
            agent.inactive = false;
        }
    }

    /// Stops offers to framework `id` in `roles` (`None` = all its roles)
    /// until [`Allocator::revive`]. Roles it is not subscribed to and unknown
    /// frameworks are ignored. Allocations are untouched.
    pub fn suppress(&mut self, id: &str, roles: Option<&[String]>) {
        let Some(fw) = self.frameworks.get_mut(id) else {
            return;
        };
        let chosen: Vec<String> = match roles {
            None => fw.roles.iter().cloned().collect(),
            Some(rs) => rs
                .iter()
                .filter(|r| fw.roles.contains(*r))
                .cloned()
                .collect(),
        };
        fw.suppressed.extend(chosen);
    }

    /// Resumes offers to framework `id` in `roles` (`None` = all its roles)
    /// and clears its refusal filters for them (on every agent). Roles it is
    /// not subscribed to and unknown frameworks are ignored.
    pub fn revive(&mut self, id: &str, roles: Option<&[String]>) {
        let Some(fw) = self.frameworks.get_mut(id) else {
            return;
        };
        let chosen: BTreeSet<String> = match roles {
            None => fw.roles.clone(),
            Some(rs) => rs
                .iter()
                .filter(|r| fw.roles.contains(*r))
                .cloned()
                .collect(),
        };
        fw.suppressed.retain(|r| !chosen.contains(r));
        for filters in fw.filters.values_mut() {
            filters.retain(|f| !chosen.contains(&f.role));
        }
        fw.filters.retain(|_, fs| !fs.is_empty());
    }

    /// Adds agent `id` with `total` resources (allocation info is ignored),
    /// of which `used` are already allocated, e.g. to tasks that survived a
    /// master failover: `(framework, resources)` pairs, each resource with
    /// `allocation_info.role` or, if it has none, for a framework with exactly
    /// one role, allocated to that role. Frameworks must be added first. The
    /// cluster total grows, so every share is recomputed. Errors, changing
    /// nothing, if `id` exists, a resource is invalid, a framework is unknown,
    /// an allocation role is missing or invalid, or `used` is not within `total`.
    pub fn add_agent(
        &mut self,
        id: &str,
        total: Resources,
        used: &[(FrameworkId, Resources)],
    ) -> Result<(), AllocatorError> {
        if self.agents.contains_key(id) {
            return Err(AllocatorError::AgentExists(id.to_string()));
        }
        for r in &total {
            r.validate()
                .map_err(|source| AllocatorError::InvalidResources {
                    agent: id.to_string(),
                    source,
                })?;
        }
        let total = total.unallocate();
        let mut by_framework: BTreeMap<FrameworkId, BTreeMap<String, Resources>> = BTreeMap::new();
        let mut used_sum = Resources::new();
        for (fw_id, resources) in used {
            let fw = self
                .frameworks
                .get(fw_id)
                .ok_or_else(|| AllocatorError::UnknownFramework(fw_id.clone()))?;
            let default_role = match fw.roles.len() {
                1 => fw.roles.first().map(String::as_str),
                _ => None,
            };
            for (role, res) in split_by_role(fw_id, resources, default_role)? {
                used_sum += &res.unallocate();
                *by_framework
                    .entry(fw_id.clone())
                    .or_default()
                    .entry(role)
                    .or_default() += &res;
            }
        }
        let available =
            total
                .checked_sub(&used_sum)
                .map_err(|source| AllocatorError::UsedExceedsTotal {
                    agent: id.to_string(),
                    source,
                })?;

        self.role_sorter.add_total(&total);
        for s in self.roles.values_mut() {
            s.add_total(&total);
        }
        self.cluster_total += &scalar_quantities(&total);
        for (fw_id, per_role) in &by_framework {
            for (role, res) in per_role {
                self.track_role(fw_id, role);
                self.role_sorter.allocated(role, res);
                if let Some(s) = self.roles.get_mut(role) {
                    s.allocated(fw_id, res);
                }
                let fw = self.frameworks.get_mut(fw_id).expect("checked above");
                fw.agents.insert(id.to_string());
                *fw.role_allocs.entry(role.clone()).or_default() += 1;
            }
        }
        self.agents.insert(
            id.to_string(),
            Agent {
                total,
                available,
                allocations: by_framework,
                inactive: false,
            },
        );
        Ok(())
    }

    /// Removes agent `id` and returns what was allocated there, per framework
    /// (with allocation info), so the caller can rescind those offers and
    /// account for lost tasks. The allocations vanish (they are not made
    /// available anywhere), filters for the agent are dropped and the cluster
    /// total shrinks. Idempotent: an unknown id returns nothing.
    pub fn remove_agent(&mut self, id: &str) -> Vec<(FrameworkId, Resources)> {
        let Some(agent) = self.agents.remove(id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (fw_id, per_role) in agent.allocations {
            let mut sum = Resources::new();
            for (role, res) in per_role {
                self.role_sorter.unallocated(&role, &res);
                if let Some(s) = self.roles.get_mut(&role) {
                    s.unallocated(&fw_id, &res);
                }
                if let Some(fw) = self.frameworks.get_mut(&fw_id) {
                    fw.agents.remove(id);
                    Self::decrement(fw, &role);
                    if !fw.tracked_in(&role) {
                        self.untrack_role(&fw_id, &role);
                    }
                }
                sum += &res;
            }
            out.push((fw_id, sum));
        }
        for fw in self.frameworks.values_mut() {
            fw.filters.remove(id);
        }
        self.role_sorter.remove_total(&agent.total);
        for s in self.roles.values_mut() {
            s.remove_total(&agent.total);
        }
        self.cluster_total -= &scalar_quantities(&agent.total);
        out
    }

    /// Converts resources allocated to `framework` on `agent` in place, as an
    /// offer operation does (RESERVE, UNRESERVE, CREATE, DESTROY,
    /// GROW_VOLUME, SHRINK_VOLUME): `from` (allocated to it in `role`) is
    /// replaced by `to` in the allocation and in the agent's total. Scalar
    /// quantities must be equal, so no share changes. Errors, changing
    /// nothing, for an unknown agent or framework, `from` not allocated, or
    /// different quantities.
    pub fn update_allocation(
        &mut self,
        framework: &str,
        agent: &str,
        role: &str,
        from: &Resources,
        to: &Resources,
    ) -> Result<(), AllocatorError> {
        check_same_quantities(from, to)?;
        if !self.frameworks.contains_key(framework) {
            return Err(AllocatorError::UnknownFramework(framework.to_string()));
        }
        let a = self
            .agents
            .get_mut(agent)
            .ok_or_else(|| AllocatorError::UnknownAgent(agent.to_string()))?;
        let from = from.unallocate().allocate(role);
        let to = to.unallocate().allocate(role);
        let held = a
            .allocations
            .get(framework)
            .and_then(|m| m.get(role))
            .cloned()
            .unwrap_or_default();
        let left = held
            .checked_sub(&from)
            .map_err(|source| AllocatorError::NotAllocated {
                framework: framework.to_string(),
                agent: agent.to_string(),
                role: role.to_string(),
                source,
            })?;
        let total = a.total.checked_sub(&from.unallocate()).map_err(|source| {
            AllocatorError::UsedExceedsTotal {
                agent: agent.to_string(),
                source,
            }
        })?;
        a.total = total;
        a.total += &to.unallocate();
        let slot = a
            .allocations
            .get_mut(framework)
            .and_then(|m| m.get_mut(role))
            .expect("checked above");
        *slot = left;
        *slot += &to;
        Ok(())
    }

    /// Converts unallocated resources of `agent` in place (an operator's
    /// RESERVE_RESOURCES, CREATE_VOLUMES...): `from` must be available;
    /// it is replaced by `to` in the available resources and the total.
    /// Errors, changing nothing, for an unknown agent, `from` not available,
    /// or different quantities.
    pub fn update_available(
        &mut self,
        agent: &str,
        from: &Resources,
        to: &Resources,
    ) -> Result<(), AllocatorError> {
        check_same_quantities(from, to)?;
        let a = self
            .agents
            .get_mut(agent)
            .ok_or_else(|| AllocatorError::UnknownAgent(agent.to_string()))?;
        let from = from.unallocate();
        let to = to.unallocate();
        let available =
            a.available
                .checked_sub(&from)
                .map_err(|source| AllocatorError::NotAvailable {
                    agent: agent.to_string(),
                    source,
                })?;
        let total = a
            .total
            .checked_sub(&from)
            .map_err(|source| AllocatorError::NotAvailable {
                agent: agent.to_string(),
                source,
            })?;
        a.available = available;
        a.available += &to;
        a.total = total;
        a.total += &to;
        Ok(())
    }

    /// Sets the weight of `role` (valid name, weight finite and > 0), in force
    /// at once, also for roles without frameworks yet. Errors, changing
    /// nothing, otherwise.
    pub fn set_weight(&mut self, role: &str, weight: f64) -> Result<(), AllocatorError> {
        check_weight(role, weight)?;
        self.config.weights.insert(role.to_string(), weight);
        if self.role_sorter.contains(role) {
            self.role_sorter.update_weight(role, weight);
        }
        Ok(())
    }

    /// Gives back `resources` allocated to `framework` on `agent` (a declined
    /// offer, the unused part of an accepted one, the resources of a finished
    /// task): they are available again at once. Each resource's
    /// `allocation_info.role` says which allocation it leaves; resources
    /// without one belong to the framework's only allocation role on that
    /// agent. With `refuse` (> 0; cut to [`MAX_REFUSE`]) the framework gets a
    /// filter: in that role, on that agent, it is not offered these resources
    /// or a subset of them before `now + refuse` (a larger offer passes).
    /// `None` or zero means no filter; apply [`DEFAULT_REFUSE`] yourself when
    /// a decline names no filter. Errors, changing nothing, for an unknown
    /// agent or framework (including one already removed, whose allocations
    /// were recovered then), an ambiguous or invalid role, or resources that
    /// are not (all) allocated to the framework there.
    pub fn recover(
        &mut self,
        framework: &str,
        agent: &str,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Instant,
    ) -> Result<(), AllocatorError> {
        let ag = self
            .agents
            .get_mut(agent)
            .ok_or_else(|| AllocatorError::UnknownAgent(agent.to_string()))?;
        let fw = self
            .frameworks
            .get_mut(framework)
            .ok_or_else(|| AllocatorError::UnknownFramework(framework.to_string()))?;
        let empty = BTreeMap::new();
        let allocations = ag.allocations.get(framework).unwrap_or(&empty);
        let default_role = match allocations.len() {
            1 => allocations.keys().next().map(String::as_str),
            _ => None,
        };
        let parts = split_by_role(framework, resources, default_role)?;
        let mut remaining = BTreeMap::new();
        for (role, res) in &parts {
            let held = allocations.get(role).cloned().unwrap_or_default();
            let left = held
                .checked_sub(res)
                .map_err(|source| AllocatorError::NotAllocated {
                    framework: framework.to_string(),
                    agent: agent.to_string(),
                    role: role.clone(),
                    source,
                })?;
            remaining.insert(role.clone(), left);
        }

        let refuse = refuse.filter(|d| !d.is_zero()).map(|d| d.min(MAX_REFUSE));
        let mut emptied = Vec::new();
        for (role, res) in &parts {
            let left = remaining.remove(role).expect("computed above");
            let per_role = ag.allocations.entry(framework.to_string()).or_default();
            if left.is_empty() {
                per_role.remove(role);
                emptied.push(role.clone());
            } else {
                per_role.insert(role.clone(), left);
            }
            let unallocated = res.unallocate();
            ag.available += &unallocated;
            self.role_sorter.unallocated(role, res);
            if let Some(s) = self.roles.get_mut(role) {
                s.unallocated(framework, res);
            }
            if let Some(d) = refuse {
                if fw.roles.contains(role) {
                    // An Instant that cannot hold the end is beyond any horizon.
                    let expires = now.checked_add(d).unwrap_or(now + MAX_REFUSE);
                    fw.filters
                        .entry(agent.to_string())
                        .or_default()
                        .push(OfferFilter {
                            role: role.clone(),
                            resources: unallocated,
                            expires,
                        });
                }
            }
        }
        if ag.allocations.get(framework).is_some_and(|m| m.is_empty()) {
            ag.allocations.remove(framework);
            fw.agents.remove(agent);
        }
        for role in &emptied {
            Self::decrement(fw, role);
        }
        let untrack: Vec<&String> = emptied.iter().filter(|r| !fw.tracked_in(r)).collect();
        for role in untrack {
            self.untrack_role(framework, role);
        }
        Ok(())
    }

    /// One batch allocation cycle at `now`. Agents are visited in id order;
    /// on each, roles are tried in sorter order (lowest weighted dominant
    /// share first). A role gets, as one offer, everything available there
    /// that is unreserved or reserved for it or an ancestor, provided that
    /// meets [`AllocatorConfig::min_allocatable`]; it goes to the first of the
    /// role's frameworks in sorter order that is subscribed to the role, not
    /// suppressed in it and without a live filter covering those resources.
    /// Shares are updated at once, so the next agent sees the new order.
    /// Expired filters are dropped. The offers' resources are allocated until
    /// [`Allocator::recover`]ed (or their agent or framework is removed).
    pub fn allocate(&mut self, now: Instant) -> Vec<Offer> {
        for fw in self.frameworks.values_mut() {
            if !fw.filters.is_empty() {
                for filters in fw.filters.values_mut() {
                    filters.retain(|f| now < f.expires);
                }
                fw.filters.retain(|_, fs| !fs.is_empty());
            }
        }
        let Allocator {
            config,
            agents,
            frameworks,
            role_sorter,
            roles,
            role_order,
            ..
        } = self;
        let mut offers = Vec::new();
        for (agent_id, agent) in agents.iter_mut() {
            if agent.inactive || agent.available.is_empty() {
                continue;
            }
            role_order.clear();
            role_order.extend(role_sorter.sort().cloned());
            for role in role_order.iter() {
                if agent.available.is_empty() {
                    break;
                }
                let role: &str = role;
                if !agent.available.iter().any(|r| r.is_allocatable_to(role)) {
                    continue;
                }
                let Some(fw_sorter) = roles.get_mut(role) else {
                    continue;
                };
                // Usually the role may have everything left: take it whole
                // instead of copying and subtracting.
                let takes_all = agent.available.iter().all(|r| r.is_allocatable_to(role));
                let offer = if takes_all {
                    std::mem::take(&mut agent.available)
                } else {
                    agent.available.allocatable_to(role)
                };
                if !config.is_allocatable(&offer) {
                    if takes_all {
                        agent.available = offer;
                    }
                    continue;
                }
                // Refined reservations are held back from frameworks that
                // cannot read them; the rest of the offer may still go there.
                let has_refined = offer.iter().any(|r| r.has_refined_reservations());
                let mut stripped = None;
                let chosen = fw_sorter
                    .sort()
                    .find(|fw_id| {
                        let Some(fw) = frameworks.get(&***fw_id) else {
                            return false;
                        };
                        if fw.inactive || !fw.roles.contains(role) || fw.suppressed.contains(role) {
                            return false;
                        }
                        if has_refined && !fw.capabilities.reservation_refinement {
                            let readable = stripped.get_or_insert_with(|| {
                                offer.filter(|r| !r.has_refined_reservations())
                            });
                            return config.is_allocatable(readable)
                                && !fw.filtered(agent_id, role, readable, now);
                        }
                        !fw.filtered(agent_id, role, &offer, now)
                    })
                    .cloned();
                let Some(fw_id) = chosen else {
                    if takes_all {
                        agent.available = offer;
                    }
                    continue;
                };
                let offer = match stripped {
                    Some(readable) if !frameworks[&*fw_id].capabilities.reservation_refinement => {
                        if takes_all {
                            agent.available = offer.filter(|r| r.has_refined_reservations());
                        } else {
                            agent.available -= &readable;
                        }
                        readable
                    }
                    _ => {
                        if !takes_all {
                            agent.available -= &offer;
                        }
                        offer
                    }
                };
                let allocated: Resources =
                    offer.into_iter().map(|r| r.allocated_to(role)).collect();
                role_sorter.allocated(role, &allocated);
                fw_sorter.allocated(&fw_id, &allocated);
                let per_role = match agent.allocations.get_mut(&*fw_id) {
                    Some(m) => m,
                    None => agent.allocations.entry(fw_id.to_string()).or_default(),
                };
                match per_role.get_mut(role) {
                    Some(held) => *held += &allocated,
                    None => {
                        per_role.insert(role.to_string(), allocated.clone());
                        let fw = frameworks.get_mut(&*fw_id).expect("found above");
                        if !fw.agents.contains(agent_id) {
                            fw.agents.insert(agent_id.clone());
                        }
                        *fw.role_allocs.entry(role.to_string()).or_default() += 1;
                    }
                }
                offers.push(Offer {
                    framework: fw_id.to_string(),
                    agent: agent_id.clone(),
                    role: role.to_string(),
                    resources: allocated,
                });
            }
        }
        offers
    }

    /// The weighted dominant share of every role that has frameworks, lowest
    /// first (the order the next agent would be offered in), ties by name.
    pub fn shares(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = self
            .role_sorter
            .clients()
            .into_iter()
            .map(|r| (r.to_string(), self.role_sorter.share(r).unwrap_or(0.0)))
            .collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Everything allocated to `framework`, over all agents and roles (with
    /// allocation info); empty for an unknown framework. Ranges and sets of
    /// different agents merge, so read scalars from it.
    pub fn allocated(&self, framework: &str) -> Resources {
        let mut out = Resources::new();
        let Some(fw) = self.frameworks.get(framework) else {
            return out;
        };
        for agent_id in &fw.agents {
            if let Some(per_role) = self
                .agents
                .get(agent_id)
                .and_then(|a| a.allocations.get(framework))
            {
                for res in per_role.values() {
                    out += res;
                }
            }
        }
        out
    }

    /// What is allocated to `framework` on `agent` (with allocation info);
    /// empty when nothing or unknown.
    pub fn allocated_on(&self, framework: &str, agent: &str) -> Resources {
        let mut out = Resources::new();
        if let Some(per_role) = self
            .agents
            .get(agent)
            .and_then(|a| a.allocations.get(framework))
        {
            for res in per_role.values() {
                out += res;
            }
        }
        out
    }

    /// The unallocated resources of `agent`, `None` for an unknown agent.
    pub fn available(&self, agent: &str) -> Option<Resources> {
        self.agents.get(agent).map(|a| a.available.clone())
    }

    /// The total resources of `agent`, `None` for an unknown agent.
    pub fn total(&self, agent: &str) -> Option<Resources> {
        self.agents.get(agent).map(|a| a.total.clone())
    }

    /// Counts one allocation of `fw` in `role` gone.
    fn decrement(fw: &mut Framework, role: &str) {
        if let Some(n) = fw.role_allocs.get_mut(role) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                fw.role_allocs.remove(role);
            }
        }
    }

    /// Puts framework `fw` into `role`'s sorter, creating the role if needed.
    fn track_role(&mut self, fw: &str, role: &str) {
        if !self.roles.contains_key(role) {
            let mut s = S::with_fairness_resources(&self.config.fairness_resources);
            s.add_total(&self.cluster_total);
            self.roles.insert(role.to_string(), s);
            self.role_sorter.add(role, self.config.weight(role));
        }
        if let Some(s) = self.roles.get_mut(role) {
            s.add(fw, 1.0);
        }
    }

    /// Takes framework `fw` out of `role`'s sorter, dropping the role when no
    /// framework is left in it.
    fn untrack_role(&mut self, fw: &str, role: &str) {
        if let Some(s) = self.roles.get_mut(role) {
            s.remove(fw);
            if s.is_empty() {
                self.roles.remove(role);
                self.role_sorter.remove(role);
            }
        }
    }
}
