//! Offer operations that change resources in place: RESERVE, UNRESERVE,
//! CREATE, DESTROY, GROW_VOLUME and SHRINK_VOLUME, validated as Mesos does
//! (`src/master/validation.cpp`, `src/common/resources_utils.cpp`).
//!
//! Each operation becomes a [`Conversion`]: the resources it consumes and
//! those it produces in their place, with equal scalar quantities. The core
//! checks that the consumed resources are there (in the offer, or available
//! on the agent for the operator API) and applies the conversion to the
//! allocator, the agent's checkpointed resources and the registry. Nothing
//! here touches state: it only decides.

use masterlink::resources::{
    DiskInfo, ReservationType, Resource, ResourceReservation, ResourceValue, VolumeMode,
};
use masterlink::roles;
use masterlink::{Resources, Scalar};

/// What an operation does to resources.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// Leaves the agent's resources.
    pub consumed: Resources,
    /// Takes their place.
    pub produced: Resources,
}

/// Who asks: a framework (through an offer) or an operator.
#[derive(Debug, Clone, Default)]
pub struct Requester<'a> {
    /// The offer's allocation role (frameworks only): reservations must be
    /// for it (a refinement for a descendant of the current owner is also
    /// allowed).
    pub role: Option<&'a str>,
    /// The framework's or operator's principal, if it has one: reservations
    /// and volumes must carry it.
    pub principal: Option<&'a str>,
}

fn invalid(what: impl Into<String>) -> String {
    what.into()
}

/// The resource with its last reservation removed (what RESERVE consumes,
/// what UNRESERVE gives back).
pub fn pop_reservation(r: &Resource) -> Resource {
    let mut out = r.clone();
    out.reservations.pop();
    out
}

/// The resource without its persistent volume (plain reserved disk).
pub fn strip_volume(r: &Resource) -> Resource {
    let mut out = r.clone();
    out.disk = out.disk.and_then(|d| {
        let d = DiskInfo {
            persistence: None,
            volume: None,
            ..d
        };
        (d != DiskInfo::default()).then_some(d)
    });
    out
}

/// What a checkpointed resource (dynamic reservations, a volume) stands in
/// place of among the agent's static resources: every DYNAMIC reservation
/// at the top of its stack removed, and no volume.
pub fn static_counterpart(r: &Resource) -> Resource {
    let mut out = strip_volume(r);
    while out
        .reservations
        .last()
        .is_some_and(|x| x.reservation_type == ReservationType::Dynamic)
    {
        out.reservations.pop();
    }
    out
}

fn check_principal(
    what: &str,
    given: Option<&str>,
    requester: &Requester<'_>,
) -> Result<(), String> {
    if let Some(p) = requester.principal {
        if given != Some(p) {
            return Err(invalid(format!(
                "{what}: principal '{}' does not match the requester's principal '{p}'",
                given.unwrap_or("")
            )));
        }
    }
    Ok(())
}

/// RESERVE: each resource carries the reservation to add as the last entry
/// of its stack (DYNAMIC, for the requester's role).
pub fn reserve(resources: &Resources, req: &Requester<'_>) -> Result<Conversion, String> {
    if resources.is_empty() {
        return Err(invalid("RESERVE: no resources given"));
    }
    let mut consumed = Resources::new();
    let mut produced = Resources::new();
    for r in resources {
        r.validate().map_err(|e| format!("RESERVE: {e}"))?;
        let Some(last) = r.reservations.last() else {
            return Err(invalid(format!(
                "RESERVE: resource {r} is not reserved for any role; give it a \
                 'reservations' entry of type DYNAMIC"
            )));
        };
        if last.reservation_type != ReservationType::Dynamic {
            return Err(invalid(format!(
                "RESERVE: the last reservation of {r} must be DYNAMIC"
            )));
        }
        roles::validate_role(&last.role)
            .map_err(|e| format!("RESERVE: role '{}': {e}", last.role))?;
        if last.role == "*" {
            return Err(invalid("RESERVE: nobody can reserve for role '*'"));
        }
        if r.is_persistent_volume() {
            return Err(invalid(format!(
                "RESERVE: {r} is a persistent volume; reserve plain disk, then CREATE"
            )));
        }
        if let Some(prev) = r.reservations.iter().rev().nth(1) {
            if !roles::is_ancestor(&prev.role, &last.role) {
                return Err(invalid(format!(
                    "RESERVE: refining a reservation of '{}' needs a descendant role, not '{}'",
                    prev.role, last.role
                )));
            }
        }
        if let Some(role) = req.role {
            if last.role != role {
                return Err(invalid(format!(
                    "RESERVE: the reservation's role '{}' is not the offer's role '{role}'",
                    last.role
                )));
            }
        }
        check_principal("RESERVE", last.principal.as_deref(), req)?;
        consumed.push(pop_reservation(r));
        produced.push(r.clone());
    }
    Ok(Conversion { consumed, produced })
}

/// UNRESERVE: each resource as it is reserved now; its last (dynamic)
/// reservation is removed.
pub fn unreserve(resources: &Resources, req: &Requester<'_>) -> Result<Conversion, String> {
    if resources.is_empty() {
        return Err(invalid("UNRESERVE: no resources given"));
    }
    let mut consumed = Resources::new();
    let mut produced = Resources::new();
    for r in resources {
        r.validate().map_err(|e| format!("UNRESERVE: {e}"))?;
        let Some(last) = r.reservations.last() else {
            return Err(invalid(format!("UNRESERVE: {r} is not reserved")));
        };
        if last.reservation_type != ReservationType::Dynamic {
            return Err(invalid(format!(
                "UNRESERVE: {r} is statically reserved (by the agent's flags); only dynamic \
                 reservations can be unreserved"
            )));
        }
        if r.is_persistent_volume() {
            return Err(invalid(format!(
                "UNRESERVE: {r} holds a persistent volume; DESTROY it first"
            )));
        }
        if let Some(role) = req.role {
            if last.role != role {
                return Err(invalid(format!(
                    "UNRESERVE: {r} is reserved for role '{}', not for the offer's role '{role}'",
                    last.role
                )));
            }
        }
        consumed.push(r.clone());
        produced.push(pop_reservation(r));
    }
    Ok(Conversion { consumed, produced })
}

/// Checks a persistent volume's own fields.
fn check_volume(what: &str, v: &Resource, req: &Requester<'_>) -> Result<(), String> {
    v.validate().map_err(|e| format!("{what}: {e}"))?;
    if v.name != "disk" {
        return Err(invalid(format!(
            "{what}: {v} is not a disk resource; volumes are made of disk"
        )));
    }
    if !matches!(v.value, ResourceValue::Scalar(_)) {
        return Err(invalid(format!("{what}: a volume's size must be a scalar")));
    }
    let Some(disk) = &v.disk else {
        return Err(invalid(format!("{what}: {v} has no 'disk' info")));
    };
    let Some(persistence) = &disk.persistence else {
        return Err(invalid(format!(
            "{what}: {v} has no 'disk.persistence' (id)"
        )));
    };
    if persistence.id.is_empty()
        || persistence.id.len() > 255
        || persistence.id.contains(['/', '\\'])
        || persistence.id == "."
        || persistence.id == ".."
        || persistence.id.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "{what}: persistence id '{}' is invalid (non-empty, at most 255 characters, no \
             '/', '\\\\', control characters, not '.' or '..')",
            persistence.id
        )));
    }
    let Some(volume) = &disk.volume else {
        return Err(invalid(format!(
            "{what}: {v} has no 'disk.volume' (container_path, mode)"
        )));
    };
    let path = &volume.container_path;
    if path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(invalid(format!(
            "{what}: container_path '{path}' must be a relative path without '.', '..' or \
             empty components"
        )));
    }
    if volume.mode != VolumeMode::Rw {
        return Err(invalid(format!(
            "{what}: a persistent volume's mode must be RW"
        )));
    }
    if v.is_unreserved() {
        return Err(invalid(format!(
            "{what}: {v} is unreserved; persistent volumes need reserved disk"
        )));
    }
    if let Some(role) = req.role {
        if !v.is_allocatable_to(role) {
            return Err(invalid(format!(
                "{what}: {v} is reserved for '{}', which the offer's role '{role}' cannot use",
                v.owner_role().unwrap_or("*")
            )));
        }
    }
    check_principal(what, persistence.principal.as_deref(), req)?;
    Ok(())
}

/// CREATE: plain reserved disk becomes persistent volumes. Volume
/// container paths must not nest within one request.
pub fn create(volumes: &Resources, req: &Requester<'_>) -> Result<Conversion, String> {
    if volumes.is_empty() {
        return Err(invalid("CREATE: no volumes given"));
    }
    let mut consumed = Resources::new();
    let mut produced = Resources::new();
    let mut paths: Vec<&str> = Vec::new();
    for v in volumes {
        check_volume("CREATE", v, req)?;
        let path = v
            .disk
            .as_ref()
            .and_then(|d| d.volume.as_ref())
            .map(|vol| vol.container_path.as_str())
            .unwrap_or("");
        if let Some(other) = paths.iter().find(|p| {
            path.starts_with(&format!("{p}/")) || p.starts_with(&format!("{path}/")) || **p == path
        }) {
            return Err(invalid(format!(
                "CREATE: container paths '{path}' and '{other}' overlap"
            )));
        }
        paths.push(path);
        consumed.push(strip_volume(v));
        produced.push(v.clone());
    }
    Ok(Conversion { consumed, produced })
}

/// DESTROY: persistent volumes become plain reserved disk.
pub fn destroy(volumes: &Resources) -> Result<Conversion, String> {
    if volumes.is_empty() {
        return Err(invalid("DESTROY: no volumes given"));
    }
    let mut consumed = Resources::new();
    let mut produced = Resources::new();
    for v in volumes {
        if !v.is_persistent_volume() {
            return Err(invalid(format!("DESTROY: {v} is not a persistent volume")));
        }
        consumed.push(v.clone());
        produced.push(strip_volume(v));
    }
    Ok(Conversion { consumed, produced })
}

fn with_size(v: &Resource, mb: f64) -> Result<Resource, String> {
    let mut out = v.clone();
    out.value =
        ResourceValue::Scalar(Scalar::from_f64(mb).map_err(|e| format!("volume size {mb}: {e}"))?);
    Ok(out)
}

fn size(r: &Resource) -> f64 {
    match &r.value {
        ResourceValue::Scalar(s) => s.value(),
        _ => 0.0,
    }
}

/// GROW_VOLUME: `addition` (plain disk with the volume's reservations) joins
/// the volume.
pub fn grow_volume(
    volume: &Resource,
    addition: &Resource,
    req: &Requester<'_>,
) -> Result<Conversion, String> {
    check_volume("GROW_VOLUME", volume, req)?;
    if addition.name != "disk" || addition.is_persistent_volume() || size(addition) <= 0.0 {
        return Err(invalid(
            "GROW_VOLUME: 'addition' must be a positive amount of plain disk",
        ));
    }
    if addition.reservations != volume.reservations {
        return Err(invalid(
            "GROW_VOLUME: 'addition' must carry the same reservations as the volume",
        ));
    }
    let grown = with_size(volume, size(volume) + size(addition))?;
    Ok(Conversion {
        consumed: [volume.clone(), addition.clone()].into_iter().collect(),
        produced: [grown].into_iter().collect(),
    })
}

/// SHRINK_VOLUME: `subtract` MB leave the volume as plain reserved disk.
pub fn shrink_volume(
    volume: &Resource,
    subtract: f64,
    req: &Requester<'_>,
) -> Result<Conversion, String> {
    check_volume("SHRINK_VOLUME", volume, req)?;
    if !(subtract > 0.0 && subtract < size(volume)) {
        return Err(invalid(format!(
            "SHRINK_VOLUME: 'subtract' must be more than 0 and less than the volume's size {}",
            size(volume)
        )));
    }
    let shrunk = with_size(volume, size(volume) - subtract)?;
    let freed = with_size(&strip_volume(volume), subtract)?;
    Ok(Conversion {
        consumed: [volume.clone()].into_iter().collect(),
        produced: [shrunk, freed].into_iter().collect(),
    })
}

/// Applies `c` to a set of checkpointed resources (dynamic reservations and
/// volumes): what it consumed leaves, what it produced joins, keeping only
/// what still differs from the static resources.
pub fn apply_to_checkpointed(checkpointed: &Resources, c: &Conversion) -> Resources {
    let is_checkpointed = |r: &Resource| {
        r.is_persistent_volume()
            || r.reservations
                .iter()
                .any(|x| x.reservation_type == ReservationType::Dynamic)
    };
    let mut out = checkpointed.unallocate();
    for r in c
        .consumed
        .unallocate()
        .iter()
        .filter(|r| is_checkpointed(r))
    {
        let one: Resources = [r.clone()].into_iter().collect();
        if let Ok(left) = out.checked_sub(&one) {
            out = left;
        }
    }
    for r in c
        .produced
        .unallocate()
        .iter()
        .filter(|r| is_checkpointed(r))
    {
        out.push(r.clone());
    }
    out
}

/// An operation on resources, from an offer or the operator API.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceOp {
    /// RESERVE / RESERVE_RESOURCES.
    Reserve(Resources),
    /// UNRESERVE / UNRESERVE_RESOURCES.
    Unreserve(Resources),
    /// CREATE / CREATE_VOLUMES.
    Create(Resources),
    /// DESTROY / DESTROY_VOLUMES.
    Destroy(Resources),
    /// GROW_VOLUME.
    Grow {
        /// The volume as it is.
        volume: Box<Resource>,
        /// Plain disk added to it.
        addition: Box<Resource>,
    },
    /// SHRINK_VOLUME.
    Shrink {
        /// The volume as it is.
        volume: Box<Resource>,
        /// MB taken from it.
        subtract: f64,
    },
}

impl ResourceOp {
    /// The operation's name, as Mesos spells the offer operation.
    pub fn name(&self) -> &'static str {
        match self {
            ResourceOp::Reserve(_) => "RESERVE",
            ResourceOp::Unreserve(_) => "UNRESERVE",
            ResourceOp::Create(_) => "CREATE",
            ResourceOp::Destroy(_) => "DESTROY",
            ResourceOp::Grow { .. } => "GROW_VOLUME",
            ResourceOp::Shrink { .. } => "SHRINK_VOLUME",
        }
    }

    /// Validates the operation for `req` and says what it converts.
    pub fn conversion(&self, req: &Requester<'_>) -> Result<Conversion, String> {
        match self {
            ResourceOp::Reserve(r) => reserve(r, req),
            ResourceOp::Unreserve(r) => unreserve(r, req),
            ResourceOp::Create(v) => create(v, req),
            ResourceOp::Destroy(v) => destroy(v),
            ResourceOp::Grow { volume, addition } => grow_volume(volume, addition, req),
            ResourceOp::Shrink { volume, subtract } => shrink_volume(volume, *subtract, req),
        }
    }

    /// The resource operation of an offer operation; `None` for LAUNCH and
    /// the operations that are not about resources; `Err` when the payload
    /// field is missing.
    pub fn from_offer_operation(
        op: &masterlink::scheduler::Operation,
    ) -> Result<Option<ResourceOp>, String> {
        use masterlink::scheduler::OperationType as T;
        let missing = |f: &str| {
            format!(
                "operation {}: expecting '{f}' to be present",
                op.operation_type
            )
        };
        Ok(Some(match op.operation_type {
            T::Reserve => ResourceOp::Reserve(
                op.reserve
                    .as_ref()
                    .ok_or_else(|| missing("reserve"))?
                    .resources
                    .clone(),
            ),
            T::Unreserve => ResourceOp::Unreserve(
                op.unreserve
                    .as_ref()
                    .ok_or_else(|| missing("unreserve"))?
                    .resources
                    .clone(),
            ),
            T::Create => ResourceOp::Create(
                op.create
                    .as_ref()
                    .ok_or_else(|| missing("create"))?
                    .volumes
                    .clone(),
            ),
            T::Destroy => ResourceOp::Destroy(
                op.destroy
                    .as_ref()
                    .ok_or_else(|| missing("destroy"))?
                    .volumes
                    .clone(),
            ),
            T::GrowVolume => {
                let g = op
                    .grow_volume
                    .as_ref()
                    .ok_or_else(|| missing("grow_volume"))?;
                ResourceOp::Grow {
                    volume: Box::new(g.volume.clone()),
                    addition: Box::new(g.addition.clone()),
                }
            }
            T::ShrinkVolume => {
                let s = op
                    .shrink_volume
                    .as_ref()
                    .ok_or_else(|| missing("shrink_volume"))?;
                ResourceOp::Shrink {
                    volume: Box::new(s.volume.clone()),
                    subtract: s.subtract.value(),
                }
            }
            _ => return Ok(None),
        }))
    }
}

/// A dynamic reservation for `role` by `principal`, for building RESERVE
/// requests in tests and tools.
pub fn dynamic(role: &str, principal: Option<&str>) -> ResourceReservation {
    ResourceReservation::dynamic_for(role, principal.map(String::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use masterlink::resources::{DiskVolume, Persistence};

    fn disk(mb: f64) -> Resource {
        Resource::scalar("disk", mb).unwrap()
    }

    fn volume(mb: f64, role: &str, id: &str, path: &str) -> Resource {
        let mut v = disk(mb).reserved(dynamic(role, None));
        v.disk = Some(DiskInfo {
            persistence: Some(Persistence {
                id: id.into(),
                principal: None,
            }),
            volume: Some(DiskVolume {
                container_path: path.into(),
                mode: VolumeMode::Rw,
            }),
            source: None,
        });
        v
    }

    fn one(r: Resource) -> Resources {
        [r].into_iter().collect()
    }

    #[test]
    fn reserve_consumes_the_unreserved_counterpart() {
        let r = disk(100.0).reserved(dynamic("dev", Some("ops")));
        let c = reserve(
            &one(r.clone()),
            &Requester {
                role: Some("dev"),
                principal: Some("ops"),
            },
        )
        .unwrap();
        assert_eq!(c.consumed, one(disk(100.0)));
        assert_eq!(c.produced, one(r.clone()));
        // Wrong role, wrong principal, '*', static: refused with the reason.
        let e = reserve(
            &one(r.clone()),
            &Requester {
                role: Some("eng"),
                principal: None,
            },
        )
        .unwrap_err();
        assert!(e.contains("offer's role"), "{e}");
        let e = reserve(
            &one(r),
            &Requester {
                role: None,
                principal: Some("bob"),
            },
        )
        .unwrap_err();
        assert!(e.contains("principal"), "{e}");
        let e = reserve(
            &one(disk(1.0).reserved(dynamic("*", None))),
            &Requester::default(),
        )
        .unwrap_err();
        assert!(e.contains("\"*\"") || e.contains("'*'"), "{e}");
        let e = reserve(
            &one(disk(1.0).reserved_static("dev")),
            &Requester::default(),
        )
        .unwrap_err();
        assert!(e.contains("DYNAMIC"), "{e}");
        let e = reserve(&one(disk(1.0)), &Requester::default()).unwrap_err();
        assert!(e.contains("not reserved"), "{e}");
    }

    #[test]
    fn refinement_needs_a_descendant() {
        let refined = disk(10.0)
            .reserved(dynamic("eng", None))
            .reserved(dynamic("eng/backend", None));
        let c = reserve(
            &one(refined.clone()),
            &Requester {
                role: Some("eng/backend"),
                principal: None,
            },
        )
        .unwrap();
        assert_eq!(c.consumed, one(disk(10.0).reserved(dynamic("eng", None))));
        let bad = disk(10.0)
            .reserved(dynamic("eng", None))
            .reserved(dynamic("ops", None));
        let e = reserve(&one(bad), &Requester::default()).unwrap_err();
        assert!(e.contains("descendant"), "{e}");
        // UNRESERVE pops back to the previous owner.
        let c = unreserve(&one(refined), &Requester::default()).unwrap();
        assert_eq!(c.produced, one(disk(10.0).reserved(dynamic("eng", None))));
    }

    #[test]
    fn unreserve_refuses_static_and_volumes() {
        let e = unreserve(
            &one(disk(1.0).reserved_static("dev")),
            &Requester::default(),
        )
        .unwrap_err();
        assert!(e.contains("statically"), "{e}");
        let e =
            unreserve(&one(volume(1.0, "dev", "v", "data")), &Requester::default()).unwrap_err();
        assert!(e.contains("DESTROY"), "{e}");
    }

    #[test]
    fn create_and_destroy_are_inverse() {
        let v = volume(64.0, "dev", "v1", "data");
        let c = create(
            &one(v.clone()),
            &Requester {
                role: Some("dev"),
                principal: None,
            },
        )
        .unwrap();
        assert_eq!(c.consumed, one(disk(64.0).reserved(dynamic("dev", None))));
        let d = destroy(&one(v)).unwrap();
        assert_eq!(d.consumed, c.produced);
        assert_eq!(d.produced, c.consumed);
    }

    #[test]
    fn volume_rules() {
        let req = Requester::default();
        for (v, needle) in [
            (volume(1.0, "dev", "", "data"), "persistence id"),
            (volume(1.0, "dev", "a/b", "data"), "persistence id"),
            (volume(1.0, "dev", "v", "/abs"), "relative"),
            (volume(1.0, "dev", "v", "a/../b"), "relative"),
            (strip_volume(&volume(1.0, "dev", "v", "d")), "'disk'"),
        ] {
            let e = create(&one(v), &req).unwrap_err();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let mut unreserved = volume(1.0, "dev", "v", "d");
        unreserved.reservations.clear();
        assert!(create(&one(unreserved), &req)
            .unwrap_err()
            .contains("unreserved"));
        let both: Resources = [
            volume(1.0, "dev", "a", "data"),
            volume(1.0, "dev", "b", "data/x"),
        ]
        .into_iter()
        .collect();
        assert!(create(&both, &req).unwrap_err().contains("overlap"));
    }

    #[test]
    fn grow_and_shrink_keep_quantities() {
        let v = volume(64.0, "dev", "v", "data");
        let add = disk(36.0).reserved(dynamic("dev", None));
        let g = grow_volume(&v, &add, &Requester::default()).unwrap();
        assert_eq!(g.produced.scalar("disk").value(), 100.0);
        assert_eq!(g.consumed.scalar("disk"), g.produced.scalar("disk"));
        let s = shrink_volume(&v, 14.0, &Requester::default()).unwrap();
        assert_eq!(s.consumed.scalar("disk"), s.produced.scalar("disk"));
        assert!(shrink_volume(&v, 64.0, &Requester::default()).is_err());
    }

    #[test]
    fn checkpointed_set_follows_conversions() {
        let reserved = disk(100.0).reserved(dynamic("dev", None));
        let r = reserve(&one(reserved.clone()), &Requester::default()).unwrap();
        let cp = apply_to_checkpointed(&Resources::new(), &r);
        assert_eq!(cp, one(reserved.clone()));
        let v = volume(40.0, "dev", "v", "data");
        let c = create(&one(v.clone()), &Requester::default()).unwrap();
        let cp = apply_to_checkpointed(&cp, &c);
        assert_eq!(cp.scalar("disk").value(), 100.0);
        assert!(cp.iter().any(|x| x.is_persistent_volume()));
        assert_eq!(static_counterpart(&v), disk(40.0));
    }
}
