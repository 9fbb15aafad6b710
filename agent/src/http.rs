//! The agent's own HTTP endpoints (Mesos-like, read-only): `/health`,
//! `/version`, `/state` and `/metrics/snapshot`.

use std::sync::Arc;

use axum::extract::State as AxState;
use axum::routing::get;
use axum::{Json, Router};
use masterlink::resources::{ResourceFormat, ResourceValue, Resources};
use masterlink::scheduler::TaskState;
use serde_json::{json, Map, Value};

use crate::agent::{LinkPhase, Shared, Task};

/// The Mesos version the agent claims on /version (as the master does).
pub const MESOS_VERSION: &str = "1.11.0";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(|| async { "" }))
        .route("/version", get(version))
        .route("/state", get(state))
        .route("/slave(1)/state", get(state))
        .route("/metrics/snapshot", get(metrics))
        .with_state(shared)
}

async fn version() -> Json<Value> {
    Json(json!({
        "version": MESOS_VERSION,
        "berth_version": env!("CARGO_PKG_VERSION"),
        "build_date": "",
        "build_time": 0.0,
        "build_user": "",
    }))
}

/// Mesos' resource map: `{"cpus":2.0,"mem":1024.0,"disk":0,"gpus":0,
/// "ports":"[31000-32000]"}`.
pub fn resources_map(r: &Resources) -> Value {
    let mut m = Map::new();
    for name in ["cpus", "gpus", "mem", "disk"] {
        m.insert(name.into(), json!(r.scalar(name).value()));
    }
    for res in r.iter() {
        let v = match &res.value {
            ResourceValue::Scalar(_) => json!(r.scalar(&res.name).value()),
            ResourceValue::Ranges(_) => json!(r.ranges(&res.name).to_string()),
            ResourceValue::Set(_) => json!(r.set(&res.name).to_string()),
        };
        m.insert(res.name.clone(), v);
    }
    Value::Object(m)
}

fn task_json(fid: &str, agent_id: &str, t: &Task) -> Value {
    json!({
        "id": t.info.task_id.value,
        "name": t.info.name,
        "framework_id": fid,
        "executor_id": "",
        "slave_id": agent_id,
        "state": t.state.as_str(),
        "resources": resources_map(&t.info.resources),
        "statuses": t.statuses.iter().map(|s| {
            let mut v = json!({"state": s.state.as_str(), "timestamp": s.timestamp});
            if let Some(c) = &s.container_status {
                v["container_status"] = serde_json::to_value(c).unwrap_or(Value::Null);
            }
            v
        }).collect::<Vec<_>>(),
    })
}

/// The resources of tasks that are not terminal.
fn used(shared: &Shared) -> Resources {
    let st = shared.lock();
    let mut r = Resources::new();
    for fw in st.frameworks.values() {
        for t in fw.tasks.values() {
            if !t.state.is_terminal() {
                r += &t.info.resources;
            }
        }
    }
    r.unallocate()
}

async fn state(AxState(shared): AxState<Arc<Shared>>) -> Json<Value> {
    let used = used(&shared);
    let st = shared.lock();
    let agent_id = st
        .agent_id
        .as_ref()
        .map(|a| a.value.clone())
        .unwrap_or_default();
    let mut frameworks = Vec::new();
    for (fid, fw) in &st.frameworks {
        let executors: Vec<Value> = fw
            .tasks
            .values()
            .map(|t| {
                json!({
                    "id": t.ids.executor_id,
                    "name": format!("Command Executor (Task: {})", t.info.task_id.value),
                    "source": t.info.task_id.value,
                    "container": t.ids.container_id,
                    "directory": t.sandbox.display().to_string(),
                    "resources": resources_map(&t.info.resources),
                    "tasks": if t.state.is_terminal() { vec![] } else { vec![task_json(&fid.value, &agent_id, t)] },
                    "completed_tasks": if t.state.is_terminal() { vec![task_json(&fid.value, &agent_id, t)] } else { vec![] },
                })
            })
            .collect();
        frameworks.push(json!({
            "id": fid.value,
            "name": fw.info.name,
            "user": fw.info.user,
            "role": fw.info.role.clone().unwrap_or_else(|| "*".into()),
            "roles": fw.info.effective_roles(),
            "checkpoint": fw.info.checkpoint,
            "executors": executors,
            "completed_executors": [],
        }));
    }
    let completed: Vec<Value> = st
        .completed
        .iter()
        .map(|(fid, t)| task_json(&fid.value, &agent_id, t))
        .collect();
    let registered = matches!(st.link.phase, LinkPhase::Registered { .. });
    let master = st.link.master.as_ref();
    Json(json!({
        "version": MESOS_VERSION,
        "berth_version": env!("CARGO_PKG_VERSION"),
        "id": agent_id,
        "pid": format!("slave(1)@{}", shared.endpoint),
        "hostname": shared.cfg.hostname,
        "start_time": shared.start_time,
        "registered": registered,
        "master_hostname": master.and_then(|m| m.hostname.clone()),
        "master": shared.cfg.master,
        "resources": resources_map(&st.total),
        "used_resources": resources_map(&used),
        "reserved_resources": st.total.reservations_by_role().iter()
            .map(|(role, r)| (role.clone(), resources_map(r)))
            .collect::<Map<String, Value>>(),
        "unreserved_resources": resources_map(&st.total.unreserved()),
        "reserved_resources_full": st.total.reservations_by_role().iter()
            .map(|(role, r)| (role.clone(), endpoint_json(r)))
            .collect::<Map<String, Value>>(),
        "unreserved_resources_full": endpoint_json(&st.total.unreserved()),
        "checkpointed_resources": endpoint_json(&st.checkpointed),
        "attributes": attributes_map(&shared.cfg.attributes),
        "flags": {
            "work_dir": shared.cfg.work_dir.display().to_string(),
            "launcher_root": shared.cfg.launcher_root.display().to_string(),
            "volume_root": shared.volumes.root().display().to_string(),
            "master": shared.cfg.master,
            "status_update_retry_interval_min": shared.cfg.status_update_retry_min.as_secs_f64(),
            "reconfiguration_policy": shared.cfg.reconfiguration_policy.to_string(),
        },
        "frameworks": frameworks,
        "completed_frameworks": [],
        "completed_tasks": completed,
    }))
}

/// Resources as Mesos' endpoints list them (pre-refinement fields and
/// `reservations`, disk info included).
fn endpoint_json(r: &Resources) -> Value {
    // The ENDPOINT format cannot fail (only PRE-refinement can).
    r.to_json(ResourceFormat::Endpoint).unwrap_or(Value::Null)
}

fn attributes_map(attrs: &[masterlink::Attribute]) -> Value {
    let mut m = Map::new();
    for a in attrs {
        let v = match &a.value {
            masterlink::Value::Scalar(s) => json!(s.value()),
            masterlink::Value::Text(t) => json!(t),
            other => json!(other.to_string()),
        };
        m.insert(a.name.clone(), v);
    }
    Value::Object(m)
}

async fn metrics(AxState(shared): AxState<Arc<Shared>>) -> Json<Value> {
    let used = used(&shared);
    let st = shared.lock();
    let mut m = Map::new();
    let registered = matches!(st.link.phase, LinkPhase::Registered { .. });
    m.insert(
        "slave/registered".into(),
        json!(if registered { 1 } else { 0 }),
    );
    m.insert(
        "slave/uptime_secs".into(),
        json!(shared.started.elapsed().as_secs_f64()),
    );
    let mut active = std::collections::BTreeMap::new();
    for fw in st.frameworks.values() {
        for t in fw.tasks.values() {
            *active.entry(t.state).or_insert(0u64) += 1;
        }
    }
    for (name, state) in [
        ("staging", TaskState::Staging),
        ("starting", TaskState::Starting),
        ("running", TaskState::Running),
        ("killing", TaskState::Killing),
    ] {
        m.insert(
            format!("slave/tasks_{name}"),
            json!(active.get(&state).copied().unwrap_or(0)),
        );
    }
    for (name, state) in [
        ("finished", TaskState::Finished),
        ("failed", TaskState::Failed),
        ("killed", TaskState::Killed),
        ("lost", TaskState::Lost),
        ("error", TaskState::Error),
        ("dropped", TaskState::Dropped),
        ("gone", TaskState::Gone),
    ] {
        m.insert(
            format!("slave/tasks_{name}"),
            json!(st.terminal_counts.get(&state).copied().unwrap_or(0)),
        );
    }
    let running_containers = st
        .frameworks
        .values()
        .flat_map(|f| f.tasks.values())
        .filter(|t| !t.state.is_terminal())
        .count();
    m.insert("slave/executors_running".into(), json!(running_containers));
    let total = &st.total;
    for name in ["cpus", "gpus", "mem", "disk"] {
        let t = total.scalar(name).value();
        let u = used.scalar(name).value();
        m.insert(format!("slave/{name}_total"), json!(t));
        m.insert(format!("slave/{name}_used"), json!(u));
        m.insert(
            format!("slave/{name}_percent"),
            json!(if t > 0.0 { u / t } else { 0.0 }),
        );
    }
    Json(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_maps_as_mesos() {
        let r = masterlink::resources::parse("cpus:2;mem:1024;ports:[31000-32000];cpus(ops):1")
            .unwrap();
        let m = resources_map(&r);
        assert_eq!(m["cpus"], 3.0);
        assert_eq!(m["mem"], 1024.0);
        assert_eq!(m["disk"], 0.0);
        assert_eq!(m["gpus"], 0.0);
        assert_eq!(m["ports"], "[31000-32000]");
    }
}
