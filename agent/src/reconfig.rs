//! What an agent restarted on the same boot may change about itself
//! (Mesos' `--reconfiguration_policy`, `src/slave/compatibility.cpp`).
//!
//! The agent keeps the id the master gave it across a restart, so the master
//! and the frameworks go on believing what they were told about that id: a
//! task placed because of an attribute, resources counted as in use. The
//! policy says how far the agent's flags may move away from what it
//! registered with (its `slave.info`) without breaking that belief:
//!
//! - `equal` (the default): resources, attributes and host name identical;
//! - `additive`: resources may only grow (every old resource is contained in
//!   the new total), attributes may only be added (a scalar one unchanged, a
//!   ranges or set one a superset, a text one unchanged), the host name
//!   identical.
//!
//! Either way the dynamic reservations and persistent volumes the master
//! checkpointed here must still fit the new resources. The port is not
//! compared: `--port 0` picks a new one at every start and the master learns
//! it from the re-registration.

use std::fmt;
use std::str::FromStr;

use masterlink::attributes::Attribute;
use masterlink::protocol::AgentInfo;
use masterlink::resources::Resources;
use masterlink::value::Value;

use crate::checkpointed;

/// The flag, as the CLI spells it (Mesos' `--reconfiguration_policy` is an
/// alias).
pub const FLAG: &str = "--reconfiguration-policy";

/// `--reconfiguration-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReconfigurationPolicy {
    #[default]
    Equal,
    Additive,
}

impl fmt::Display for ReconfigurationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReconfigurationPolicy::Equal => "equal",
            ReconfigurationPolicy::Additive => "additive",
        })
    }
}

impl FromStr for ReconfigurationPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "equal" => Ok(ReconfigurationPolicy::Equal),
            "additive" => Ok(ReconfigurationPolicy::Additive),
            _ => Err(format!("{s:?} is not 'equal' or 'additive'")),
        }
    }
}

/// One difference the policy does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Hostname {
        old: String,
        new: String,
    },
    /// The resources named `name` (all roles) changed.
    Resources {
        name: String,
        old: String,
        new: String,
    },
    /// An attribute was removed or changed.
    Attribute {
        name: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// An attribute was added (refused by `equal` only).
    AttributeAdded {
        attribute: String,
    },
    /// A checkpointed reservation or volume no longer fits.
    Checkpointed {
        reason: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        match self {
            Change::Hostname { old, new } => write!(f, "hostname {old} -> {new}"),
            Change::Resources { name, old, new } => write!(f, "resources '{name}': {old} -> {new}"),
            Change::Attribute { name, old, new } => write!(
                f,
                "attribute '{name}': {} -> {}",
                or_none(old),
                or_none(new)
            ),
            Change::AttributeAdded { attribute } => write!(f, "attribute {attribute} added"),
            Change::Checkpointed { reason } => {
                write!(f, "checkpointed reservations/volumes: {reason}")
            }
        }
    }
}

/// The agent's flags changed in a way its policy refuses: it must not
/// re-register under its old id (its tasks keep running meanwhile).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the agent's configuration changed since it registered as agent {agent_id} and \
     {FLAG}={policy} does not allow it: {}; {}",
    changes.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
    self.hint()
)]
pub struct ReconfigurationError {
    pub agent_id: String,
    pub policy: ReconfigurationPolicy,
    pub changes: Vec<Change>,
    /// The same changes pass under `additive` (so the hint can say so).
    pub additive_allows: bool,
}

impl ReconfigurationError {
    /// What the operator can do about it.
    fn hint(&self) -> String {
        let mut h = format!(
            "restart it with its previous --resources/--attributes/--hostname (recorded in \
             meta/slaves/{}/slave.info)",
            self.agent_id
        );
        if self.additive_allows {
            h.push_str(&format!(
                ", or with {FLAG}=additive to accept resources and attributes that were only added"
            ));
        }
        h.push_str(
            ", or remove meta/slaves/latest from its work dir to register as a new agent \
             (its tasks are then lost)",
        );
        h
    }
}

/// Checks `new` (the agent as its flags say now) against `old` (its
/// slave.info) under `policy`; `checkpointed` is the set of dynamic
/// reservations and volumes that must still fit the new resources.
pub fn check(
    agent_id: &str,
    policy: ReconfigurationPolicy,
    old: &AgentInfo,
    new: &AgentInfo,
    checkpointed: &Resources,
) -> Result<(), ReconfigurationError> {
    let changes = changes(policy, old, new, checkpointed);
    if changes.is_empty() {
        return Ok(());
    }
    Err(ReconfigurationError {
        agent_id: agent_id.to_string(),
        policy,
        additive_allows: policy == ReconfigurationPolicy::Equal
            && self::changes(ReconfigurationPolicy::Additive, old, new, checkpointed).is_empty(),
        changes,
    })
}

/// Every change `policy` refuses.
pub fn changes(
    policy: ReconfigurationPolicy,
    old: &AgentInfo,
    new: &AgentInfo,
    checkpointed: &Resources,
) -> Vec<Change> {
    let mut changes = Vec::new();
    if old.hostname != new.hostname {
        changes.push(Change::Hostname {
            old: old.hostname.clone(),
            new: new.hostname.clone(),
        });
    }
    changes.extend(resource_changes(policy, &old.resources, &new.resources));
    changes.extend(attribute_changes(policy, &old.attributes, &new.attributes));
    if !checkpointed.is_empty() {
        if let Err(e) = checkpointed::validate(&new.resources, checkpointed) {
            changes.push(Change::Checkpointed {
                reason: e.to_string(),
            });
        }
    }
    changes
}

/// Compared name by name (every role of a name together), so that the
/// message says which resource moved.
fn resource_changes(
    policy: ReconfigurationPolicy,
    old: &Resources,
    new: &Resources,
) -> Vec<Change> {
    let names: std::collections::BTreeSet<&str> =
        old.names().into_iter().chain(new.names()).collect();
    let mut out = Vec::new();
    for name in names {
        let o = old.filter(|r| r.name == name);
        let n = new.filter(|r| r.name == name);
        let allowed = match policy {
            ReconfigurationPolicy::Equal => o == n,
            ReconfigurationPolicy::Additive => n.contains(&o),
        };
        if !allowed {
            let text = |r: &Resources| {
                if r.is_empty() {
                    "(none)".to_string()
                } else {
                    r.to_string()
                }
            };
            out.push(Change::Resources {
                name: name.to_string(),
                old: text(&o),
                new: text(&n),
            });
        }
    }
    out
}

/// Mesos' rules: under `additive` an old attribute must still be there
/// with the same type: a scalar or text unchanged, ranges and sets a
/// superset; new attributes are fine. Under `equal` both lists must hold
/// the same attributes (in any order).
fn attribute_changes(
    policy: ReconfigurationPolicy,
    old: &[Attribute],
    new: &[Attribute],
) -> Vec<Change> {
    let mut out = Vec::new();
    for o in old {
        let n = new
            .iter()
            .find(|n| n.name == o.name && n.value.value_type() == o.value.value_type());
        let kept = match (policy, n) {
            (_, None) => false,
            (ReconfigurationPolicy::Equal, Some(n)) => n.value == o.value,
            (ReconfigurationPolicy::Additive, Some(n)) => match (&o.value, &n.value) {
                (Value::Ranges(a), Value::Ranges(b)) => b.contains(a),
                (Value::Set(a), Value::Set(b)) => b.contains(a),
                (a, b) => a == b,
            },
        };
        if !kept {
            let same_name = new.iter().find(|n| n.name == o.name);
            out.push(Change::Attribute {
                name: o.name.clone(),
                old: Some(o.value.to_string()),
                new: same_name.map(|n| n.value.to_string()),
            });
        }
    }
    if policy == ReconfigurationPolicy::Equal {
        for n in new.iter().filter(|n| !old.iter().any(|o| o.name == n.name)) {
            out.push(Change::AttributeAdded {
                attribute: n.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use masterlink::attributes;

    fn info(resources: &str, attributes: &str) -> AgentInfo {
        AgentInfo {
            hostname: "node1".into(),
            port: 5051,
            ip: "127.0.0.1".into(),
            resources: masterlink::resources::parse(resources).unwrap(),
            attributes: if attributes.is_empty() {
                Vec::new()
            } else {
                attributes::parse(attributes).unwrap()
            },
            id: None,
        }
    }

    use ReconfigurationPolicy::{Additive, Equal};

    #[test]
    fn policy_flag_values() {
        assert_eq!("equal".parse(), Ok(Equal));
        assert_eq!("additive".parse(), Ok(Additive));
        assert!("more".parse::<ReconfigurationPolicy>().is_err());
        assert_eq!(ReconfigurationPolicy::default(), Equal);
    }

    #[test]
    fn equal_refuses_any_change() {
        let old = info("cpus:2;mem:1024", "rack:r1");
        let none = Resources::new();
        assert!(check("a", Equal, &old, &old, &none).is_ok());
        // The order of attributes and resources does not matter, the port
        // neither.
        let mut same = info("mem:1024;cpus:2", "rack:r1");
        same.port = 6000;
        assert!(check("a", Equal, &old, &same, &none).is_ok());

        let e = check("a", Equal, &old, &info("cpus:3;mem:1024", "rack:r1"), &none).unwrap_err();
        assert_eq!(
            e.changes,
            [Change::Resources {
                name: "cpus".into(),
                old: "cpus:2".into(),
                new: "cpus:3".into()
            }]
        );
        assert!(e.additive_allows);
        let msg = e.to_string();
        assert!(
            msg.contains("--reconfiguration-policy=equal does not allow"),
            "{msg}"
        );
        assert!(msg.contains("resources 'cpus': cpus:2 -> cpus:3"), "{msg}");
        assert!(msg.contains("--reconfiguration-policy=additive"), "{msg}");

        let e = check(
            "a",
            Equal,
            &old,
            &info("cpus:2;mem:1024", "rack:r1;zone:a"),
            &none,
        )
        .unwrap_err();
        assert_eq!(
            e.changes,
            [Change::AttributeAdded {
                attribute: "zone:a".into()
            }]
        );
        let mut renamed = old.clone();
        renamed.hostname = "node2".into();
        let e = check("a", Equal, &old, &renamed, &none).unwrap_err();
        assert!(!e.additive_allows);
        assert!(!e.to_string().contains("=additive"), "{e}");
    }

    #[test]
    fn additive_allows_growth_only() {
        let old = info(
            "cpus:2;mem:1024;ports:[31000-32000]",
            "rack:r1;keys:[1-5];tags:{a,b}",
        );
        let none = Resources::new();
        let grown = info(
            "cpus:4;mem:1024;gpus:1;ports:[31000-33000]",
            "rack:r1;keys:[1-9];tags:{a,b,c};zone:z",
        );
        assert!(check("a", Additive, &old, &grown, &none).is_ok());

        let e = check(
            "a",
            Additive,
            &old,
            &info(
                "cpus:1;mem:1024;ports:[31000-32000]",
                "rack:r1;keys:[1-5];tags:{a,b}",
            ),
            &none,
        )
        .unwrap_err();
        assert_eq!(
            e.changes,
            [Change::Resources {
                name: "cpus".into(),
                old: "cpus:2".into(),
                new: "cpus:1".into()
            }]
        );
        assert!(!e.additive_allows);
        assert!(e
            .to_string()
            .contains("--reconfiguration-policy=additive does not allow"));

        // A resource moved to a role is not contained in the old one.
        let moved = info(
            "cpus(ops):2;mem:1024;ports:[31000-32000]",
            "rack:r1;keys:[1-5];tags:{a,b}",
        );
        assert!(check("a", Additive, &old, &moved, &none).is_err());

        // Attributes: changed text, shrunk ranges, lost set items, removed.
        let e = check(
            "a",
            Additive,
            &old,
            &info(
                "cpus:2;mem:1024;ports:[31000-32000]",
                "rack:r2;keys:[1-3];tags:{a}",
            ),
            &none,
        )
        .unwrap_err();
        let names: Vec<_> = e
            .changes
            .iter()
            .map(|c| match c {
                Change::Attribute { name, .. } => name.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["rack", "keys", "tags"]);
        let e = check(
            "a",
            Additive,
            &old,
            &info("cpus:2;mem:1024;ports:[31000-32000]", ""),
            &none,
        )
        .unwrap_err();
        assert_eq!(e.changes.len(), 3);
        assert!(
            e.to_string().contains("attribute 'rack': r1 -> (none)"),
            "{e}"
        );
    }

    #[test]
    fn checkpointed_resources_must_still_fit() {
        let reserved: Resources = serde_json::from_value(serde_json::json!([{
            "name": "cpus", "type": "SCALAR", "scalar": {"value": 2.0},
            "reservations": [{"type": "DYNAMIC", "role": "dev"}]
        }]))
        .unwrap();
        let old = info("cpus:2;mem:1024", "");
        // Equal resources still hold them.
        assert!(check("a", Additive, &old, &old, &reserved).is_ok());
        // cpus grown by a statically reserved one: the dynamic
        // reservation is still made of unreserved cpus that are there.
        let new = info("cpus:2;cpus(ops):1;mem:1024", "");
        assert!(changes(Additive, &old, &new, &Resources::new()).is_empty());
        let e = check("a", Additive, &old, &new, &reserved);
        assert!(e.is_ok(), "{e:?}");
        let shrunk = info("cpus:1;mem:1024", "");
        let e = check("a", Equal, &old, &shrunk, &reserved).unwrap_err();
        assert!(
            e.changes
                .iter()
                .any(|c| matches!(c, Change::Checkpointed { .. })),
            "{e:?}"
        );
    }
}
