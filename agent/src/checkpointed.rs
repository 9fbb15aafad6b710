//! The agent's checkpointed resources: the dynamic reservations and
//! persistent volumes the master made on this agent, as the last
//! `CHECKPOINT_RESOURCES` gave them (POST-refinement format).
//!
//! A resource belongs in the set when it is dynamically reserved (the top of
//! its reservation stack is DYNAMIC) or is a persistent volume (disk with
//! `persistence`). A persistent volume is keyed in the volume store by its
//! owner role (the last reservation) and its persistence id; its size is the
//! disk scalar in MB (Mesos' MB are MiB).
//!
//! Durability (files under `<work>/meta/resources/`, see [`crate::paths`]):
//! before the agent changes volumes it writes the new set to
//! `resources.target`; once every change is made it writes what is now on
//! disk to `resources.info` and removes the target. A crash in between
//! leaves the target, and the next start applies it again; every step is
//! idempotent (a volume that exists is not created again, a missing one is
//! not destroyed again). A destroy refused because a running task uses the
//! volume keeps the volume in `resources.info` and the target in place, so
//! the destroy is retried when the task ends or at the next start.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use masterlink::resources::{ReservationType, Resource, ResourceValue, Resources, VolumeMode};
use volumes::VolumeKey;

use crate::checkpoint::{self, CheckpointError};
use crate::paths::WorkDir;

const MIB: u128 = 1024 * 1024;

/// A checkpointed set, or a task's volume, that the agent cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ResourcesError {
    #[error("resource {resource} cannot be checkpointed: it is neither dynamically reserved nor a persistent volume")]
    NotCheckpointable { resource: String },
    #[error("persistent volume {resource}: {reason}")]
    BadVolume { resource: String, reason: String },
    #[error("persistent volume {key} appears twice")]
    DuplicateVolume { key: VolumeKey },
    #[error("checkpointed resource {resource} is not part of the agent's resources ({available})")]
    NotOnAgent { resource: String, available: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// A persistent volume of the checkpointed set, as the store needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub key: VolumeKey,
    pub size_bytes: u64,
}

/// A persistent volume a task uses: where it goes in the sandbox, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskVolume {
    pub key: VolumeKey,
    /// Relative to the sandbox; checked to stay inside it.
    pub container_path: PathBuf,
    pub read_only: bool,
    /// The volume's resource, unallocated (to compare with the agent's set).
    pub resource: Resource,
}

/// Mesos' `needCheckpointing`: dynamically reserved, or a persistent volume.
pub fn needs_checkpointing(r: &Resource) -> bool {
    r.is_persistent_volume()
        || r.reservations
            .last()
            .is_some_and(|x| x.reservation_type == ReservationType::Dynamic)
}

/// The store key and size of a persistent volume resource (`None` for any
/// other resource).
pub fn volume_spec(r: &Resource) -> Option<Result<VolumeSpec, ResourcesError>> {
    let persistence = r.disk.as_ref()?.persistence.as_ref()?;
    let bad = |reason: String| ResourcesError::BadVolume {
        resource: r.to_string(),
        reason,
    };
    Some((|| {
        if r.name != "disk" {
            return Err(bad(format!("a {} resource cannot be a volume", r.name)));
        }
        let Some(role) = r.owner_role() else {
            return Err(bad("a volume needs reserved disk".into()));
        };
        let ResourceValue::Scalar(mb) = r.value else {
            return Err(bad("its size is not a scalar".into()));
        };
        let key = VolumeKey::Persistent {
            role: role.to_string(),
            persistence_id: persistence.id.clone(),
        };
        key.validate().map_err(|e| bad(e.to_string()))?;
        let bytes = mb.millis().max(0) as u128 * MIB / 1000;
        if bytes < volumes::MIN_SIZE as u128 {
            return Err(bad("its size is below 1 MB".into()));
        }
        let size_bytes =
            u64::try_from(bytes).map_err(|_| bad("its size does not fit in 64 bits".into()))?;
        Ok(VolumeSpec { key, size_bytes })
    })())
}

/// Every persistent volume of a checkpointed set, by key.
pub fn volumes_of(set: &Resources) -> Result<BTreeMap<VolumeKey, VolumeSpec>, ResourcesError> {
    let mut out = BTreeMap::new();
    for r in set {
        if let Some(spec) = volume_spec(r) {
            let spec = spec?;
            if out.contains_key(&spec.key) {
                return Err(ResourcesError::DuplicateVolume { key: spec.key });
            }
            out.insert(spec.key.clone(), spec);
        }
    }
    Ok(out)
}

/// Checks a set from CHECKPOINT_RESOURCES against the agent's static
/// resources; returns the agent's total with it applied.
pub fn validate(static_total: &Resources, set: &Resources) -> Result<Resources, ResourcesError> {
    if let Some(r) = set.iter().find(|r| !needs_checkpointing(r)) {
        return Err(ResourcesError::NotCheckpointable {
            resource: r.to_string(),
        });
    }
    volumes_of(set)?;
    apply_checkpointed(static_total, set)
}

/// The agent's total: its static resources with the checkpointed ones in
/// place of the plain resources they were made from (Mesos'
/// `applyCheckpointedResources`): each checkpointed resource, stripped of its
/// dynamic reservations, persistence and volume, must be part of the static
/// total, is taken out of it, and the checkpointed resource put in.
pub fn apply_checkpointed(
    static_total: &Resources,
    set: &Resources,
) -> Result<Resources, ResourcesError> {
    let mut total = static_total.clone();
    for r in set {
        let mut base = r.clone();
        // Only unreserved and statically reserved resources come from the
        // agent's flags: keep a STATIC base, drop everything dynamic.
        base.reservations = r
            .reservations
            .first()
            .filter(|x| x.reservation_type == ReservationType::Static)
            .cloned()
            .into_iter()
            .collect();
        if let Some(disk) = &mut base.disk {
            disk.persistence = None;
            disk.volume = None;
            if disk.source.is_none() {
                base.disk = None;
            }
        }
        base.shared = false;
        base.allocation_info = None;
        total =
            total
                .checked_sub(&Resources::from(base))
                .map_err(|e| ResourcesError::NotOnAgent {
                    resource: r.to_string(),
                    available: e.to_string(),
                })?;
        total += r.clone();
    }
    Ok(total)
}

/// What changes between two checkpointed sets, volume-wise.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    pub created: Vec<VolumeSpec>,
    /// (new size, old size).
    pub resized: Vec<(VolumeSpec, u64)>,
    pub destroyed: Vec<VolumeKey>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.resized.is_empty() && self.destroyed.is_empty()
    }
}

/// The volumes `new` adds, resizes and removes relative to `old`.
pub fn diff(old: &Resources, new: &Resources) -> Result<Diff, ResourcesError> {
    let old = volumes_of(old)?;
    let new = volumes_of(new)?;
    let mut d = Diff::default();
    for (k, spec) in &new {
        match old.get(k) {
            None => d.created.push(spec.clone()),
            Some(o) if o.size_bytes != spec.size_bytes => {
                d.resized.push((spec.clone(), o.size_bytes))
            }
            Some(_) => {}
        }
    }
    d.destroyed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    Ok(d)
}

/// The persistent volumes among a task's resources, with where they go.
pub fn task_volumes(task_resources: &Resources) -> Result<Vec<TaskVolume>, ResourcesError> {
    let mut out = Vec::new();
    for r in task_resources.iter().filter(|r| r.is_persistent_volume()) {
        let resource = {
            let mut x = r.clone();
            x.allocation_info = None;
            x
        };
        let spec = volume_spec(&resource).expect("a persistent volume")?;
        let bad = |reason: &str| ResourcesError::BadVolume {
            resource: r.to_string(),
            reason: reason.to_string(),
        };
        let Some(vol) = r.disk.as_ref().and_then(|d| d.volume.as_ref()) else {
            return Err(bad("it has no volume (container_path and mode)"));
        };
        let container_path = relative_path(&vol.container_path).map_err(|e| bad(&e))?;
        out.push(TaskVolume {
            key: spec.key,
            container_path,
            read_only: vol.mode == VolumeMode::Ro,
            resource,
        });
    }
    Ok(out)
}

/// Checks that every volume a task uses is one of the agent's (the same
/// resource: role, id, size, container path and mode); the error names the
/// first that is not.
pub fn check_task_volumes(
    checkpointed: &Resources,
    task_volumes: &[TaskVolume],
) -> Result<(), String> {
    match task_volumes
        .iter()
        .find(|tv| !checkpointed.contains_resource(&tv.resource))
    {
        None => Ok(()),
        Some(tv) => Err(format!(
            "persistent volume {} is not on this agent (its checkpointed resources \
             hold no {})",
            tv.key, tv.resource
        )),
    }
}

/// A container path that stays inside the sandbox: relative, no `..`.
fn relative_path(p: &str) -> Result<PathBuf, String> {
    if p.is_empty() || p.contains('\0') {
        return Err("its container_path is empty or has a NUL".into());
    }
    let path = Path::new(p);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "its container_path {p:?} must be relative to the sandbox"
                ))
            }
            Component::ParentDir => {
                return Err(format!("its container_path {p:?} must not contain '..'"))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("its container_path {p:?} names the sandbox itself"));
    }
    Ok(out)
}

/// What the work dir holds: the set as applied, and the set being applied
/// when an apply did not finish.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpointed {
    pub info: Resources,
    pub target: Option<Resources>,
}

impl Checkpointed {
    /// The set the agent must converge to (and reports to the master).
    pub fn wanted(&self) -> &Resources {
        self.target.as_ref().unwrap_or(&self.info)
    }
}

/// Reads the checkpointed resources (none when never written).
pub fn load(work: &WorkDir) -> Result<Checkpointed, ResourcesError> {
    let read = |path: PathBuf| -> Result<Option<Resources>, ResourcesError> {
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(checkpoint::read_json(&path)?))
    };
    Ok(Checkpointed {
        info: read(work.resources_info())?.unwrap_or_default(),
        target: read(work.resources_target())?,
    })
}

/// Records the set about to be applied.
pub fn write_target(work: &WorkDir, target: &Resources) -> Result<(), ResourcesError> {
    Ok(checkpoint::write_json(&work.resources_target(), target)?)
}

/// Records what is applied; `done`: it is the whole target, which goes.
pub fn write_info(work: &WorkDir, info: &Resources, done: bool) -> Result<(), ResourcesError> {
    checkpoint::write_json(&work.resources_info(), info)?;
    if done {
        match std::fs::remove_file(work.resources_target()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(CheckpointError::Io {
                    step: "removing",
                    path: work.resources_target(),
                    source,
                }
                .into())
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(v: serde_json::Value) -> Resources {
        serde_json::from_value(v).unwrap()
    }

    fn dynamic(name: &str, value: f64, role: &str) -> serde_json::Value {
        json!({"name": name, "type": "SCALAR", "scalar": {"value": value},
               "reservations": [{"type": "DYNAMIC", "role": role, "principal": "p"}]})
    }

    fn volume(mb: f64, role: &str, id: &str, path: &str, mode: &str) -> serde_json::Value {
        let mut v = dynamic("disk", mb, role);
        v["disk"] = json!({"persistence": {"id": id, "principal": "p"},
                           "volume": {"container_path": path, "mode": mode}});
        v
    }

    fn key(role: &str, id: &str) -> VolumeKey {
        VolumeKey::Persistent {
            role: role.into(),
            persistence_id: id.into(),
        }
    }

    #[test]
    fn volumes_are_keyed_by_owner_role_and_id_with_their_size() {
        let s = set(json!([
            dynamic("cpus", 1.0, "eng"),
            volume(64.0, "eng", "db", "data", "RW")
        ]));
        let v = volumes_of(&s).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[&key("eng", "db")].size_bytes, 64 << 20);
        // A refined reservation: the owner is the last role of the stack.
        let mut refined = volume(2.5, "eng", "x", "d", "RW");
        refined["reservations"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "DYNAMIC", "role": "eng/backend"}));
        let v = volumes_of(&set(json!([refined]))).unwrap();
        assert_eq!(v[&key("eng/backend", "x")].size_bytes, 5 << 19);
        let dup = set(json!([
            volume(64.0, "eng", "db", "a", "RW"),
            volume(32.0, "eng", "db", "b", "RW")
        ]));
        assert!(matches!(
            volumes_of(&dup),
            Err(ResourcesError::DuplicateVolume { .. })
        ));
        assert!(volumes_of(&set(json!([volume(0.5, "eng", "db", "a", "RW")]))).is_err());
    }

    #[test]
    fn diff_creates_resizes_and_destroys() {
        let old = set(json!([
            volume(64.0, "eng", "a", "a", "RW"),
            volume(64.0, "eng", "b", "b", "RW"),
            dynamic("cpus", 1.0, "eng")
        ]));
        let new = set(json!([
            volume(128.0, "eng", "a", "a", "RW"),
            volume(16.0, "ops", "c", "c", "RW")
        ]));
        let d = diff(&old, &new).unwrap();
        assert_eq!(
            d.created,
            vec![VolumeSpec {
                key: key("ops", "c"),
                size_bytes: 16 << 20
            }]
        );
        assert_eq!(
            d.resized,
            vec![(
                VolumeSpec {
                    key: key("eng", "a"),
                    size_bytes: 128 << 20
                },
                64 << 20
            )]
        );
        assert_eq!(d.destroyed, vec![key("eng", "b")]);
        assert!(diff(&new, &new).unwrap().is_empty());
        assert_eq!(diff(&Resources::new(), &old).unwrap().created.len(), 2);
    }

    #[test]
    fn the_total_trades_plain_resources_for_checkpointed_ones() {
        let stat = masterlink::resources::parse("cpus:4;mem:1024;disk:1000;disk(ops):100").unwrap();
        let s = set(json!([
            dynamic("cpus", 1.0, "eng"),
            dynamic("disk", 200.0, "eng"),
            volume(64.0, "eng", "db", "data", "RW")
        ]));
        let total = validate(&stat, &s).unwrap();
        assert_eq!(total.scalar("cpus").value(), 4.0);
        assert_eq!(total.scalar("disk").value(), 1100.0);
        assert_eq!(total.unreserved().scalar("cpus").value(), 3.0);
        assert_eq!(total.unreserved().scalar("disk").value(), 1000.0 - 264.0);
        let eng = &total.reservations_by_role()["eng"];
        assert_eq!(eng.scalar("disk").value(), 264.0);
        assert_eq!(eng.iter().filter(|r| r.is_persistent_volume()).count(), 1);
        // A volume on the static reservation of ops refines its STATIC base.
        let mut on_static = volume(50.0, "ops", "v", "v", "RW");
        on_static["reservations"] = json!([{"type": "STATIC", "role": "ops"},
                                           {"type": "DYNAMIC", "role": "ops/x"}]);
        let total = validate(&stat, &set(json!([on_static]))).unwrap();
        assert_eq!(total.reserved("ops").scalar("disk").value(), 50.0);
        // More than the agent has, or not checkpointable.
        let e = validate(&stat, &set(json!([dynamic("cpus", 5.0, "eng")]))).unwrap_err();
        assert!(matches!(e, ResourcesError::NotOnAgent { .. }), "{e}");
        let e = validate(
            &stat,
            &set(json!([{"name": "cpus", "type": "SCALAR",
            "scalar": {"value": 1.0}}])),
        )
        .unwrap_err();
        assert!(matches!(e, ResourcesError::NotCheckpointable { .. }), "{e}");
    }

    #[test]
    fn task_volumes_have_safe_paths_and_modes() {
        let mut ro = volume(64.0, "eng", "db", "./state/db", "RO");
        ro["allocation_info"] = json!({"role": "eng"});
        let t = set(json!([dynamic("cpus", 1.0, "eng"), ro]));
        let v = task_volumes(&t).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].key, key("eng", "db"));
        assert_eq!(v[0].container_path, PathBuf::from("state/db"));
        assert!(v[0].read_only);
        assert!(v[0].resource.allocation_info.is_none());
        // The agent has the volume (allocation info aside), but not in RO.
        let agent = set(json!([volume(64.0, "eng", "db", "./state/db", "RO")]));
        assert!(check_task_volumes(&agent, &v).is_ok());
        let rw = set(json!([volume(64.0, "eng", "db", "./state/db", "RW")]));
        let e = check_task_volumes(&rw, &v).unwrap_err();
        assert!(
            e.starts_with("persistent volume eng/db is not on this agent"),
            "{e}"
        );
        assert!(check_task_volumes(&Resources::new(), &v).is_err());
        assert!(check_task_volumes(&Resources::new(), &[]).is_ok());
        for bad in ["/abs", "../up", "a/../../b", ".", ""] {
            let t = set(json!([volume(64.0, "eng", "db", bad, "RW")]));
            assert!(task_volumes(&t).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn checkpoint_files_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let w = WorkDir::new(d.path());
        assert_eq!(load(&w).unwrap(), Checkpointed::default());
        let a = set(json!([volume(64.0, "eng", "db", "data", "RW")]));
        let b = set(json!([dynamic("cpus", 1.0, "eng")]));
        write_target(&w, &a).unwrap();
        let c = load(&w).unwrap();
        assert_eq!(c.target.as_ref(), Some(&a));
        assert_eq!(c.wanted(), &a);
        assert!(c.info.is_empty());
        // Applied with a destroy left over: the target stays.
        write_info(&w, &b, false).unwrap();
        assert_eq!(load(&w).unwrap().wanted(), &a);
        write_info(&w, &a, true).unwrap();
        let c = load(&w).unwrap();
        assert_eq!((c.info, c.target), (a.clone(), None));
        assert!(w
            .resources_info()
            .ends_with("meta/resources/resources.info"));
        std::fs::write(w.resources_info(), b"[{").unwrap();
        assert!(load(&w).is_err());
    }
}
