//! The operator API (`POST /api/v1`) and the legacy JSON endpoints that
//! Mesos tools read (`/state`, `/slaves`, `/frameworks`, `/tasks`, `/flags`,
//! `/redirect`, `/metrics/snapshot`), plus `/metrics` in the Prometheus text
//! format.
//!
//! Two JSON dialects, as in Mesos: the v1 API maps protos (snake_case field
//! names, resources as arrays of `Resource`), the legacy endpoints are
//! hand-built (`slave` naming, resources as `{"cpus": 2.0, ...}` maps).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use masterlink::resources::ResourceValue;
use masterlink::scheduler::TaskState;
use masterlink::{ResourceFormat, Resources, Value};
use serde_json::{json, Map, Value as Json};

use super::{check_accept, check_content_type, json_response, text, AppState, MESOS_VERSION};
use crate::core::{now_secs, Agent, Core, Framework, Task};
use crate::operations::ResourceOp;

// ---------------------------------------------------------------------------
// Rendering helpers

/// Resources as a legacy map: cpus/gpus/mem/disk always present, ranges and
/// sets in Mesos' text form.
fn resource_map(resources: &Resources) -> Json {
    let mut m = Map::new();
    for name in ["cpus", "gpus", "mem", "disk"] {
        m.insert(name.into(), json!(resources.scalar(name).value()));
    }
    for r in resources {
        let key = if r.revocable {
            format!("{}_revocable", r.name)
        } else {
            r.name.clone()
        };
        match &r.value {
            ResourceValue::Scalar(_) => {
                let v = resources.scalar(&r.name).value();
                m.insert(key, json!(v));
            }
            ResourceValue::Ranges(_) => {
                m.insert(key, json!(resources.ranges(&r.name).to_string()));
            }
            ResourceValue::Set(_) => {
                m.insert(key, json!(resources.set(&r.name).to_string()));
            }
        }
    }
    Json::Object(m)
}

fn resources_json(resources: &Resources) -> Json {
    resources
        .to_json(ResourceFormat::Endpoint)
        .unwrap_or_else(|_| json!([]))
}

/// Attributes as a legacy map (TEXT as a string, SCALAR as a number).
fn attribute_map(agent: &Agent) -> Json {
    let mut m = Map::new();
    for a in Core::attributes_of(agent) {
        let v = match &a.value {
            Value::Text(t) => json!(t),
            Value::Scalar(s) => json!(s.value()),
            other => json!(other.to_string()),
        };
        m.insert(a.name.clone(), v);
    }
    Json::Object(m)
}

/// What is allocated to tasks (non-terminal) on each agent, and per framework.
fn used_by_agent(core: &Core) -> BTreeMap<String, Resources> {
    let mut out: BTreeMap<String, Resources> = BTreeMap::new();
    for fw in core.frameworks.values() {
        for t in fw.tasks.values() {
            if !t.state.is_terminal() {
                *out.entry(t.agent_id.clone()).or_default() += &t.info.resources;
            }
        }
    }
    out
}

fn offered_by_agent(core: &Core) -> BTreeMap<String, Resources> {
    let mut out: BTreeMap<String, Resources> = BTreeMap::new();
    for o in core.offers.values() {
        *out.entry(o.agent_id.clone()).or_default() += &o.resources;
    }
    out
}

fn framework_used(fw: &Framework) -> Resources {
    let mut r = Resources::new();
    for t in fw.tasks.values().filter(|t| !t.state.is_terminal()) {
        r += &t.info.resources;
    }
    r
}

fn framework_offered(core: &Core, fw: &Framework) -> Resources {
    let mut r = Resources::new();
    for id in &fw.offers {
        if let Some(o) = core.offers.get(id) {
            r += &o.resources;
        }
    }
    r
}

/// A v1 `Task`.
fn task_v1(t: &Task) -> Json {
    let mut v = json!({
        "name": t.info.name,
        "task_id": t.info.task_id,
        "framework_id": {"value": t.framework_id},
        "agent_id": {"value": t.agent_id},
        "state": t.state.to_string(),
        "resources": resources_json(&t.info.resources),
        "statuses": t.statuses,
    });
    if let Some(e) = &t.info.executor {
        v["executor_id"] = json!(e.executor_id);
    }
    if let Some(s) = t.status_update_state {
        v["status_update_state"] = json!(s.to_string());
    }
    if let Some(u) = &t.status_update_uuid {
        v["status_update_uuid"] = json!(u);
    }
    if let Some(c) = &t.info.container {
        v["container"] = json!(c);
    }
    if let Some(l) = &t.info.labels {
        v["labels"] = json!(l);
    }
    v
}

/// A legacy `/state` task.
fn task_legacy(t: &Task) -> Json {
    let statuses: Vec<Json> = t
        .statuses
        .iter()
        .map(|s| {
            let mut v =
                json!({"state": s.state.to_string(), "timestamp": s.timestamp.unwrap_or_default()});
            if let Some(c) = &s.container_status {
                v["container_status"] = json!(c);
            }
            v
        })
        .collect();
    json!({
        "id": t.info.task_id.value,
        "name": t.info.name,
        "framework_id": t.framework_id,
        "executor_id": t.info.executor.as_ref().map(|e| e.executor_id.value.clone()).unwrap_or_default(),
        "slave_id": t.agent_id,
        "state": t.state.to_string(),
        "resources": resource_map(&t.info.resources),
        "role": t.role,
        "statuses": statuses,
    })
}

fn agent_v1(core: &Core, a: &Agent, used: &Resources, offered: &Resources) -> Json {
    let mut info = json!({
        "hostname": a.info.hostname,
        "port": a.info.port,
        "resources": resources_json(&a.total()),
        "id": {"value": a.id},
    });
    if !a.info.attributes.is_empty() {
        info["attributes"] = json!(a.info.attributes);
    }
    let _ = core;
    let mut v = json!({
        "agent_info": info,
        "active": a.active(),
        "deactivated": !a.active(),
        "version": a.version,
        "pid": format!("slave(1)@{}:{}", a.info.ip, a.info.port),
        "registered_time": {"nanoseconds": (a.registered_time * 1e9) as i64},
        "total_resources": resources_json(&a.total()),
        "allocated_resources": resources_json(used),
        "offered_resources": resources_json(offered),
        "capabilities": [{"type": "MULTI_ROLE"}, {"type": "HIERARCHICAL_ROLE"}, {"type": "RESERVATION_REFINEMENT"}],
    });
    if let Some(t) = a.reregistered_time {
        v["reregistered_time"] = json!({"nanoseconds": (t * 1e9) as i64});
    }
    v
}

fn agent_legacy(a: &Agent, used: &Resources, offered: &Resources) -> Json {
    let total = a.total();
    let unreserved = total.unreserved();
    let reserved: Map<String, Json> = total
        .reservations_by_role()
        .iter()
        .map(|(role, r)| (role.clone(), resource_map(r)))
        .collect();
    json!({
        "id": a.id,
        "hostname": a.info.hostname,
        "port": a.info.port,
        "attributes": attribute_map(a),
        "pid": format!("slave(1)@{}:{}", a.info.ip, a.info.port),
        "registered_time": a.registered_time,
        "reregistered_time": a.reregistered_time,
        "resources": resource_map(&a.total()),
        "used_resources": resource_map(used),
        "offered_resources": resource_map(offered),
        "reserved_resources": reserved,
        "unreserved_resources": resource_map(&unreserved),
        "active": a.active(),
        "deactivated": !a.active(),
        "version": a.version,
        "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"],
    })
}

fn framework_v1(core: &Core, fw: &Framework) -> Json {
    let mut v = json!({
        "framework_info": fw.info,
        "active": fw.active(),
        "connected": fw.active(),
        "recovered": fw.recovered,
        "registered_time": {"nanoseconds": (fw.registered_time * 1e9) as i64},
        "allocated_resources": resources_json(&framework_used(fw)),
        "offered_resources": resources_json(&framework_offered(core, fw)),
    });
    if let Some(t) = fw.reregistered_time {
        v["reregistered_time"] = json!({"nanoseconds": (t * 1e9) as i64});
    }
    if let Some(t) = fw.unregistered_time {
        v["unregistered_time"] = json!({"nanoseconds": (t * 1e9) as i64});
    }
    let offers: Vec<Json> = fw
        .offers
        .iter()
        .filter_map(|id| core.offers.get(id))
        .map(|o| {
            json!({
                "id": {"value": o.id},
                "framework_id": {"value": o.framework_id},
                "agent_id": {"value": o.agent_id},
                "allocation_info": {"role": o.role},
                "resources": resources_json(&o.resources),
            })
        })
        .collect();
    if !offers.is_empty() {
        v["offers"] = json!(offers);
    }
    v
}

fn framework_legacy(core: &Core, fw: &Framework) -> Json {
    let offers: Vec<Json> = fw
        .offers
        .iter()
        .filter_map(|id| core.offers.get(id))
        .map(|o| {
            json!({
                "id": o.id,
                "framework_id": o.framework_id,
                "slave_id": o.agent_id,
                "allocation_info": {"role": o.role},
                "resources": resource_map(&o.resources),
            })
        })
        .collect();
    let used = framework_used(fw);
    let capabilities: Vec<String> = fw
        .info
        .capabilities
        .iter()
        .map(|c| c.capability_type.to_string())
        .collect();
    let mut v = json!({
        "id": fw.id(),
        "name": fw.info.name,
        "user": fw.info.user,
        "hostname": fw.info.hostname.clone().unwrap_or_default(),
        "webui_url": fw.info.webui_url.clone().unwrap_or_default(),
        "active": fw.active(),
        "connected": fw.active(),
        "recovered": fw.recovered,
        "failover_timeout": fw.info.failover_timeout,
        "checkpoint": fw.info.checkpoint,
        "capabilities": capabilities,
        "registered_time": fw.registered_time,
        "unregistered_time": fw.unregistered_time.unwrap_or(0.0),
        "used_resources": resource_map(&used),
        "offered_resources": resource_map(&framework_offered(core, fw)),
        "resources": resource_map(&used),
        "roles": fw.roles,
        "tasks": fw.tasks.values().map(task_legacy).collect::<Vec<_>>(),
        "unreachable_tasks": [],
        "completed_tasks": fw.completed_tasks.iter().map(task_legacy).collect::<Vec<_>>(),
        "offers": offers,
        "executors": [],
    });
    if let Some(p) = &fw.info.principal {
        v["principal"] = json!(p);
    }
    if fw.roles.len() == 1
        && !fw
            .info
            .has_capability(&masterlink::scheduler::FrameworkCapabilityType::MultiRole)
    {
        v["role"] = json!(fw.roles[0]);
    }
    v
}

fn flags_json(shared: &AppState) -> Map<String, Json> {
    let c = &shared.config;
    let mut m = Map::new();
    m.insert("work_dir".into(), json!(c.work_dir.display().to_string()));
    m.insert("hostname".into(), json!(c.hostname));
    m.insert(
        "allocation_interval".into(),
        json!(format!("{}secs", c.allocation_interval.as_secs_f64())),
    );
    m.insert(
        "agent_ping_timeout".into(),
        json!(format!("{}secs", c.agent_ping_interval.as_secs_f64())),
    );
    m.insert(
        "max_agent_ping_timeouts".into(),
        json!(c.max_agent_ping_timeouts.to_string()),
    );
    m.insert(
        "heartbeat_interval".into(),
        json!(format!("{}secs", c.heartbeat_interval.as_secs_f64())),
    );
    let weights: Vec<String> = c
        .allocator
        .weights
        .iter()
        .map(|(r, w)| format!("{r}={w}"))
        .collect();
    if !weights.is_empty() {
        m.insert("weights".into(), json!(weights.join(",")));
    }
    for (k, v) in &c.flags {
        m.insert(k.clone(), json!(v));
    }
    m
}

// ---------------------------------------------------------------------------
// v1 operator API

/// Every reachable agent rendered by `render` with what its tasks use and
/// what is offered of it (the agent lists of GET_AGENTS, /state, /slaves).
fn reachable_agents(
    core: &Core,
    render: impl Fn(&Agent, &Resources, &Resources) -> Json,
) -> Vec<Json> {
    let used = used_by_agent(core);
    let offered = offered_by_agent(core);
    let empty = Resources::new();
    core.agents
        .values()
        .filter(|a| a.unreachable_time.is_none())
        .map(|a| {
            render(
                a,
                used.get(&a.id).unwrap_or(&empty),
                offered.get(&a.id).unwrap_or(&empty),
            )
        })
        .collect()
}

/// Legacy `recovered_slaves`: admitted by an earlier leader, not back yet.
fn legacy_recovered(core: &Core) -> Vec<Json> {
    core.recovered_agents
        .values()
        .filter(|a| a.unreachable_time.is_none())
        .map(|a| {
            json!({
                "id": a.record.id,
                "hostname": a.record.hostname,
                "port": a.record.port,
            })
        })
        .collect()
}

/// Legacy `frameworks` and `completed_frameworks`.
fn legacy_frameworks(core: &Core) -> (Vec<Json>, Vec<Json>) {
    (
        core.frameworks
            .values()
            .map(|f| framework_legacy(core, f))
            .collect(),
        core.completed_frameworks
            .iter()
            .map(|f| framework_legacy(core, f))
            .collect(),
    )
}

fn get_agents(core: &Core) -> Json {
    let agents = reachable_agents(core, |a, used, offered| agent_v1(core, a, used, offered));
    // Admitted by an earlier leader, not re-registered yet (AgentInfo).
    let recovered: Vec<Json> = core
        .recovered_agents
        .values()
        .filter(|a| a.unreachable_time.is_none())
        .map(|a| recovered_agent_info(&a.record))
        .collect();
    json!({"agents": agents, "recovered_agents": recovered})
}

/// A recovered agent as the registry records it (an `AgentInfo`).
fn recovered_agent_info(r: &crate::registry::AgentRecord) -> Json {
    json!({
        "id": {"value": r.id},
        "hostname": r.hostname,
        "port": r.port,
        "resources": r.resources,
        "attributes": r.attributes,
    })
}

fn get_frameworks(core: &Core) -> Json {
    let frameworks: Vec<Json> = core
        .frameworks
        .values()
        .map(|f| framework_v1(core, f))
        .collect();
    let completed: Vec<Json> = core
        .completed_frameworks
        .iter()
        .map(|f| framework_v1(core, f))
        .collect();
    json!({"frameworks": frameworks, "completed_frameworks": completed})
}

fn get_tasks(core: &Core) -> Json {
    let mut tasks = Vec::new();
    let mut unreachable = Vec::new();
    let mut completed = Vec::new();
    for fw in core.frameworks.values() {
        for t in fw.tasks.values() {
            if t.state == TaskState::Unreachable {
                unreachable.push(task_v1(t));
            } else if t.state.is_terminal() {
                completed.push(task_v1(t));
            } else {
                tasks.push(task_v1(t));
            }
        }
        completed.extend(fw.completed_tasks.iter().map(task_v1));
    }
    for fw in &core.completed_frameworks {
        completed.extend(fw.completed_tasks.iter().map(task_v1));
    }
    json!({"tasks": tasks, "unreachable_tasks": unreachable, "completed_tasks": completed})
}

fn get_executors(core: &Core) -> Json {
    let executors: Vec<Json> = core
        .frameworks
        .values()
        .flat_map(|fw| fw.tasks.values())
        .filter_map(|t| {
            t.info
                .executor
                .as_ref()
                .map(|e| json!({"executor_info": e, "agent_id": {"value": t.agent_id}}))
        })
        .collect();
    json!({"executors": executors})
}

fn get_roles(core: &Core) -> Json {
    let mut roles: BTreeMap<String, (Vec<String>, Resources)> = BTreeMap::new();
    for fw in core.frameworks.values() {
        for role in &fw.roles {
            roles
                .entry(role.clone())
                .or_default()
                .0
                .push(fw.id().to_string());
        }
        for t in fw.tasks.values().filter(|t| !t.state.is_terminal()) {
            roles.entry(t.role.clone()).or_default().1 += &t.info.resources;
        }
    }
    for w in core.allocator.config().weights.keys() {
        roles.entry(w.clone()).or_default();
    }
    let list: Vec<Json> = roles
        .into_iter()
        .map(|(name, (frameworks, resources))| {
            json!({
                "name": name,
                "weight": core.allocator.config().weight(&name),
                "frameworks": frameworks.iter().map(|f| json!({"value": f})).collect::<Vec<_>>(),
                "resources": resources_json(&resources),
            })
        })
        .collect();
    json!({"roles": list})
}

fn get_master(core: &Core) -> Json {
    let mut v = json!({
        "master_info": core.master_info,
        "start_time": core.start_time,
    });
    if let Some(t) = core.elected_time {
        v["elected_time"] = json!(t);
    }
    v
}

pub(super) fn version_info() -> Json {
    // Mesos reports when and by whom it was built; Berth has no build
    // stamp, so the date is empty and the time zero (the fields exist, as
    // tools read them).
    json!({
        "version": MESOS_VERSION,
        "build_date": "",
        "build_time": 0.0,
        "build_user": "berth",
        "berth_version": env!("CARGO_PKG_VERSION"),
    })
}

/// Operator call types this master knows but does not implement yet.
const NOT_YET: &[&str] = &[
    "GET_LOGGING_LEVEL",
    "SET_LOGGING_LEVEL",
    "LIST_FILES",
    "READ_FILE",
    "GET_OPERATIONS",
    "UPDATE_WEIGHTS",
    "SUBSCRIBE",
    "GET_MAINTENANCE_STATUS",
    "GET_MAINTENANCE_SCHEDULE",
    "UPDATE_MAINTENANCE_SCHEDULE",
    "START_MAINTENANCE",
    "STOP_MAINTENANCE",
    "DRAIN_AGENT",
    "DEACTIVATE_AGENT",
    "REACTIVATE_AGENT",
    "GET_QUOTA",
    "UPDATE_QUOTA",
    "SET_QUOTA",
    "REMOVE_QUOTA",
    "MARK_AGENT_GONE",
];

fn reply(call: &str, payload: Json) -> Response {
    let key = call.to_ascii_lowercase();
    json_response(&json!({"type": call, key: payload}))
}

pub(super) async fn call(
    State(shared): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(elsewhere) = shared.not_leading(uri.path()) {
        return elsewhere;
    }
    if let Err((status, message)) = check_content_type(&headers) {
        return text(status, message);
    }
    if let Err((status, message)) = check_accept(&headers) {
        return text(status, message);
    }
    let value: Json = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "Failed to parse body into master::Call: malformed JSON at line {} \
                     column {}: {e}",
                    e.line(),
                    e.column()
                ),
            )
        }
    };
    let Some(object) = value.as_object() else {
        return text(
            StatusCode::BAD_REQUEST,
            "Failed to parse body into master::Call: expecting a JSON object",
        );
    };
    let call_type = match object.get("type") {
        None | Some(Json::Null) => {
            return text(StatusCode::BAD_REQUEST, "Expecting 'type' to be present")
        }
        Some(Json::String(t)) => t.clone(),
        Some(_) => return text(StatusCode::BAD_REQUEST, "field 'type': expecting a string"),
    };
    // Health and version stay open (load balancers, pymesos' probe).
    let principal = if matches!(call_type.as_str(), "GET_HEALTH" | "GET_VERSION") {
        None
    } else {
        match super::authenticate(&shared, &headers) {
            Ok(p) => p,
            Err(response) => return *response,
        }
    };
    let mut core = shared.core();
    *core
        .counters
        .calls
        .entry(format!("operator/{call_type}"))
        .or_default() += 1;
    match call_type.as_str() {
        "GET_HEALTH" => reply("GET_HEALTH", json!({"healthy": true})),
        "GET_VERSION" => reply("GET_VERSION", json!({"version_info": version_info()})),
        "GET_FLAGS" => {
            let flags: Vec<Json> = flags_json(&shared)
                .into_iter()
                .map(|(name, value)| json!({"name": name, "value": value.as_str().map(String::from).unwrap_or_else(|| value.to_string())}))
                .collect();
            reply("GET_FLAGS", json!({"flags": flags}))
        }
        "GET_METRICS" => {
            let metrics: Vec<Json> = metrics(&core)
                .into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect();
            reply("GET_METRICS", json!({"metrics": metrics}))
        }
        "GET_MASTER" => reply("GET_MASTER", get_master(&core)),
        "GET_AGENTS" => reply("GET_AGENTS", get_agents(&core)),
        "GET_FRAMEWORKS" => reply("GET_FRAMEWORKS", get_frameworks(&core)),
        "GET_TASKS" => reply("GET_TASKS", get_tasks(&core)),
        "GET_EXECUTORS" => reply("GET_EXECUTORS", get_executors(&core)),
        "GET_ROLES" => reply("GET_ROLES", get_roles(&core)),
        "GET_WEIGHTS" => {
            let weights: Vec<Json> = core
                .allocator
                .config()
                .weights
                .iter()
                .map(|(role, weight)| json!({"role": role, "weight": weight}))
                .collect();
            reply("GET_WEIGHTS", json!({"weight_infos": weights}))
        }
        "GET_STATE" => reply(
            "GET_STATE",
            json!({
                "get_tasks": get_tasks(&core),
                "get_executors": get_executors(&core),
                "get_frameworks": get_frameworks(&core),
                "get_agents": get_agents(&core),
            }),
        ),
        "RESERVE_RESOURCES"
        | "UNRESERVE_RESOURCES"
        | "CREATE_VOLUMES"
        | "DESTROY_VOLUMES"
        | "GROW_VOLUME"
        | "SHRINK_VOLUME" => {
            let field = call_type.to_ascii_lowercase();
            let (agent_id, op) = match resource_op(&call_type, object.get(&field), &field) {
                Ok(x) => x,
                Err(message) => return text(StatusCode::BAD_REQUEST, message),
            };
            match core.operate(&agent_id, op, principal.as_deref()) {
                Ok(()) => StatusCode::ACCEPTED.into_response(),
                Err(r) => super::refusal(r),
            }
        }
        "TEARDOWN" => {
            let id = object
                .get("teardown")
                .and_then(|t| t.get("framework_id"))
                .and_then(|f| f.get("value"))
                .and_then(Json::as_str);
            let Some(id) = id else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "Expecting 'teardown.framework_id.value' to be present",
                );
            };
            if !core.frameworks.contains_key(id) {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("field 'teardown.framework_id': no framework with ID {id}"),
                );
            }
            core.remove_framework(id);
            StatusCode::OK.into_response()
        }
        t if NOT_YET.contains(&t) => text(
            StatusCode::NOT_IMPLEMENTED,
            format!("call type {t} is not supported by this master yet"),
        ),
        t => text(
            StatusCode::BAD_REQUEST,
            format!("field 'type': unknown master::Call.Type '{t}'"),
        ),
    }
}

/// Reads a resource operation's payload (`reserve_resources: {agent_id,
/// resources}` and the like), naming the field at fault.
fn resource_op(
    call_type: &str,
    payload: Option<&Json>,
    field: &str,
) -> Result<(String, ResourceOp), String> {
    let payload = payload
        .and_then(Json::as_object)
        .ok_or_else(|| format!("Expecting '{field}' to be present"))?;
    let agent_id = payload
        .get("agent_id")
        .and_then(|a| a.get("value"))
        .and_then(Json::as_str)
        .ok_or_else(|| format!("Expecting '{field}.agent_id.value' to be present"))?
        .to_string();
    let list = |key: &str| -> Result<Resources, String> {
        let v = payload
            .get(key)
            .ok_or_else(|| format!("Expecting '{field}.{key}' to be present"))?;
        serde_json::from_value::<Resources>(v.clone())
            .map_err(|e| format!("field '{field}.{key}': {e}"))
    };
    let one = |key: &str| -> Result<masterlink::Resource, String> {
        let v = payload
            .get(key)
            .ok_or_else(|| format!("Expecting '{field}.{key}' to be present"))?;
        masterlink::Resource::from_json(v).map_err(|e| format!("field '{field}.{key}': {e}"))
    };
    let op = match call_type {
        "RESERVE_RESOURCES" => ResourceOp::Reserve(list("resources")?),
        "UNRESERVE_RESOURCES" => ResourceOp::Unreserve(list("resources")?),
        "CREATE_VOLUMES" => ResourceOp::Create(list("volumes")?),
        "DESTROY_VOLUMES" => ResourceOp::Destroy(list("volumes")?),
        "GROW_VOLUME" => ResourceOp::Grow {
            volume: Box::new(one("volume")?),
            addition: Box::new(one("addition")?),
        },
        "SHRINK_VOLUME" => ResourceOp::Shrink {
            volume: Box::new(one("volume")?),
            subtract: payload
                .get("subtract")
                .and_then(|s| s.get("value"))
                .and_then(Json::as_f64)
                .ok_or_else(|| format!("Expecting '{field}.subtract.value' to be a number"))?,
        },
        other => return Err(format!("not a resource operation: {other}")),
    };
    Ok((agent_id, op))
}

// ---------------------------------------------------------------------------
// Legacy endpoints

/// `POST /master/reserve`, `/unreserve`, `/create-volumes`,
/// `/destroy-volumes`: form-encoded `slaveId=<id>&resources=<JSON array>`
/// (`volumes=` for the volume calls), answered 202 / 400 / 409 as Mesos
/// does.
pub(super) async fn legacy_operation(
    State(shared): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(elsewhere) = shared.not_leading(uri.path()) {
        return elsewhere;
    }
    let principal = match super::authenticate(&shared, &headers) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let form: BTreeMap<String, String> = match serde_urlencoded_form(&body) {
        Ok(f) => f,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let endpoint = uri.path().rsplit('/').next().unwrap_or("").to_string();
    let (call, key) = match endpoint.as_str() {
        "reserve" => ("RESERVE_RESOURCES", "resources"),
        "unreserve" => ("UNRESERVE_RESOURCES", "resources"),
        "create-volumes" => ("CREATE_VOLUMES", "volumes"),
        "destroy-volumes" => ("DESTROY_VOLUMES", "volumes"),
        _ => return text(StatusCode::NOT_FOUND, "unknown endpoint"),
    };
    let Some(agent) = form.get("slaveId").or_else(|| form.get("agentId")) else {
        return text(
            StatusCode::BAD_REQUEST,
            "Missing 'slaveId' query parameter in the request body",
        );
    };
    let Some(list) = form.get(key) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("Missing '{key}' query parameter in the request body"),
        );
    };
    let list: Json = match serde_json::from_str(list) {
        Ok(v) => v,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("'{key}': malformed JSON: {e}"),
            )
        }
    };
    let payload = json!({"agent_id": {"value": agent}, key: list});
    let (agent_id, op) = match resource_op(call, Some(&payload), key) {
        Ok(x) => x,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    match shared.core().operate(&agent_id, op, principal.as_deref()) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(r) => super::refusal(r),
    }
}

/// `application/x-www-form-urlencoded` into a map (last value wins).
fn serde_urlencoded_form(body: &[u8]) -> Result<BTreeMap<String, String>, String> {
    axum::extract::Query::<BTreeMap<String, String>>::try_from_uri(
        &format!("/?{}", String::from_utf8_lossy(body))
            .parse()
            .map_err(|e| format!("malformed form body: {e}"))?,
    )
    .map(|q| q.0)
    .map_err(|e| format!("malformed form body: {e}"))
}

pub(super) async fn health() -> StatusCode {
    StatusCode::OK
}

pub(super) async fn version() -> Response {
    json_response(&version_info())
}

pub(super) async fn state(State(shared): State<AppState>) -> Response {
    // Any master answers, followers from their own (empty) state: tools ask
    // any of them who leads (`leader`, `leader_info`), as with Mesos.
    let leader = shared.leader_info();
    let core = shared.core();
    let slaves = reachable_agents(&core, agent_legacy);
    let info = &core.master_info;
    let pid = info.pid.clone().unwrap_or_default();
    let activated = core.agents.values().filter(|a| a.active()).count();
    let unreachable = core
        .agents
        .values()
        .filter(|a| a.unreachable_time.is_some())
        .count();
    let deactivated = core.agents.len() - activated - unreachable;
    let unreachable = unreachable
        + core
            .recovered_agents
            .values()
            .filter(|a| a.unreachable_time.is_some())
            .count();
    let (frameworks, completed) = legacy_frameworks(&core);
    let state = json!({
        "version": MESOS_VERSION,
        "build_user": "berth",
        "build_date": "",
        "build_time": 0,
        "start_time": core.start_time,
        "id": info.id,
        "pid": pid,
        "hostname": info.hostname,
        "capabilities": [],
        "activated_slaves": activated,
        "deactivated_slaves": deactivated,
        "unreachable_slaves": unreachable,
        "flags": flags_json(&shared),
        "slaves": slaves,
        "recovered_slaves": legacy_recovered(&core),
        "frameworks": frameworks,
        "completed_frameworks": completed,
        "orphan_tasks": [],
        "unregistered_frameworks": [],
    });
    let mut state = state;
    // Mesos writes these only when it is elected / knows a leader.
    if let Some(t) = core.elected_time {
        state["elected_time"] = json!(t);
    }
    if let Some(l) = leader {
        let pid = l
            .pid
            .clone()
            .unwrap_or_else(|| format!("master@{}:{}", l.ip_addr(), l.port));
        state["leader"] = json!(pid);
        state["leader_info"] = json!(l);
    }
    json_response(&state)
}

pub(super) async fn slaves(State(shared): State<AppState>) -> Response {
    let core = shared.core();
    json_response(&json!({
        "slaves": reachable_agents(&core, agent_legacy),
        "recovered_slaves": legacy_recovered(&core),
    }))
}

pub(super) async fn frameworks(State(shared): State<AppState>) -> Response {
    let core = shared.core();
    let (frameworks, completed) = legacy_frameworks(&core);
    json_response(&json!({
        "frameworks": frameworks,
        "completed_frameworks": completed,
        "unregistered_frameworks": [],
    }))
}

/// `/tasks?limit=&offset=&order=asc|des&framework_id=&task_id=`.
pub(super) async fn tasks(
    State(shared): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let limit: i64 = match q.get("limit").map(|l| l.parse::<i64>()) {
        None => 100,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return text(
                StatusCode::BAD_REQUEST,
                "query 'limit': expecting an integer",
            )
        }
    };
    let offset: usize = match q.get("offset").map(|l| l.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return text(
                StatusCode::BAD_REQUEST,
                "query 'offset': expecting a non-negative integer",
            )
        }
    };
    let descending = match q.get("order").map(String::as_str) {
        None | Some("des") => true,
        Some("asc") => false,
        Some(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                "query 'order': expecting 'asc' or 'des'",
            )
        }
    };
    let core = shared.core();
    let mut all: Vec<&Task> = core
        .frameworks
        .values()
        .chain(core.completed_frameworks.iter())
        .filter(|f| q.get("framework_id").is_none_or(|id| id == f.id()))
        .flat_map(|f| f.tasks.values().chain(f.completed_tasks.iter()))
        .filter(|t| {
            q.get("task_id")
                .is_none_or(|id| *id == t.info.task_id.value)
        })
        .collect();
    all.sort_by(|a, b| {
        let ta = a
            .statuses
            .first()
            .and_then(|s| s.timestamp)
            .unwrap_or_default();
        let tb = b
            .statuses
            .first()
            .and_then(|s| s.timestamp)
            .unwrap_or_default();
        ta.total_cmp(&tb)
    });
    if descending {
        all.reverse();
    }
    let take = if limit < 0 {
        usize::MAX
    } else {
        limit as usize
    };
    let tasks: Vec<Json> = all
        .into_iter()
        .skip(offset)
        .take(take)
        .map(task_legacy)
        .collect();
    json_response(&json!({"tasks": tasks}))
}

pub(super) async fn flags(State(shared): State<AppState>) -> Response {
    json_response(&json!({"flags": flags_json(&shared)}))
}

/// `/master/redirect`: 307 to the leader's root (`//HOST:PORT`; on the
/// leader, itself), 503 "No leader elected" without one, as in Mesos.
pub(super) async fn redirect(State(shared): State<AppState>) -> Response {
    shared.redirect(None)
}

/// The `/metrics/snapshot` values.
fn metrics(core: &Core) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let c = &core.counters;
    let elected = if core.elected_time.is_some() {
        1.0
    } else {
        0.0
    };
    m.insert("master/elected".into(), elected);
    m.insert("master/uptime_secs".into(), now_secs() - core.start_time);
    let active = core.agents.values().filter(|a| a.active()).count() as f64;
    let unreachable = core
        .agents
        .values()
        .filter(|a| a.unreachable_time.is_some())
        .count() as f64;
    let total = core.agents.len() as f64;
    m.insert("master/slaves_active".into(), active);
    m.insert("master/slaves_connected".into(), active);
    m.insert(
        "master/slaves_disconnected".into(),
        total - active - unreachable,
    );
    m.insert(
        "master/slaves_inactive".into(),
        total - active - unreachable,
    );
    m.insert("master/slaves_unreachable".into(), unreachable);
    let fw_active = core.frameworks.values().filter(|f| f.active()).count() as f64;
    let fw_total = core.frameworks.len() as f64;
    m.insert("master/frameworks_active".into(), fw_active);
    m.insert("master/frameworks_connected".into(), fw_active);
    m.insert(
        "master/frameworks_disconnected".into(),
        fw_total - fw_active,
    );
    m.insert("master/frameworks_inactive".into(), fw_total - fw_active);
    let mut states: BTreeMap<&'static str, f64> = [
        "staging",
        "starting",
        "running",
        "killing",
        "finished",
        "failed",
        "killed",
        "lost",
        "error",
        "dropped",
        "unreachable",
        "gone",
        "gone_by_operator",
    ]
    .into_iter()
    .map(|s| (s, 0.0))
    .collect();
    let all_tasks = core
        .frameworks
        .values()
        .chain(core.completed_frameworks.iter())
        .flat_map(|f| f.tasks.values().chain(f.completed_tasks.iter()));
    for t in all_tasks {
        let name = t.state.to_string();
        let key = name.trim_start_matches("TASK_").to_ascii_lowercase();
        if let Some(n) = states.get_mut(key.as_str()) {
            *n += 1.0;
        }
    }
    for (s, n) in states {
        m.insert(format!("master/tasks_{s}"), n);
    }
    m.insert("master/outstanding_offers".into(), core.offers.len() as f64);
    let mut total_r = Resources::new();
    for a in core
        .agents
        .values()
        .filter(|a| a.unreachable_time.is_none())
    {
        total_r += &a.total();
    }
    let mut used_r = Resources::new();
    for r in used_by_agent(core).values() {
        used_r += r;
    }
    for name in ["cpus", "gpus", "mem", "disk"] {
        let t = total_r.scalar(name).value();
        let u = used_r.scalar(name).value();
        m.insert(format!("master/{name}_total"), t);
        m.insert(format!("master/{name}_used"), u);
        m.insert(
            format!("master/{name}_percent"),
            if t > 0.0 { u / t } else { 0.0 },
        );
    }
    m.insert(
        "master/valid_status_updates".into(),
        c.valid_status_updates as f64,
    );
    m.insert(
        "master/invalid_status_updates".into(),
        c.invalid_status_updates as f64,
    );
    m.insert(
        "master/slave_registrations".into(),
        c.agent_registrations as f64,
    );
    m.insert(
        "master/slave_reregistrations".into(),
        c.agent_reregistrations as f64,
    );
    m.insert("master/slave_removals".into(), c.agent_removals as f64);
    m.insert("master/offers_sent".into(), c.offers_sent as f64);
    m.insert("master/offers_declined".into(), c.offers_declined as f64);
    m.insert("master/offers_accepted".into(), c.offers_accepted as f64);
    m.insert("master/offers_rescinded".into(), c.offers_rescinded as f64);
    m.insert("master/tasks_launched".into(), c.tasks_launched as f64);
    m.insert("master/dropped_messages".into(), 0.0);
    for (call, n) in &c.calls {
        m.insert(
            format!("master/messages_{}", call.to_ascii_lowercase()),
            *n as f64,
        );
    }
    m
}

pub(super) async fn metrics_snapshot(State(shared): State<AppState>) -> Response {
    let m = metrics(&shared.core());
    json_response(&json!(m))
}

/// The same values in the Prometheus text format (0.0.4): `master/tasks_running`
/// becomes `berth_master_tasks_running`.
pub(super) async fn metrics_prometheus(State(shared): State<AppState>) -> Response {
    let m = metrics(&shared.core());
    let mut out = String::new();
    for (name, value) in m {
        let metric: String = format!("berth_{name}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let kind = if name.contains("uptime")
            || name.ends_with("_total")
            || name.ends_with("_used")
            || name.ends_with("_percent")
            || name.contains("slaves_")
            || name.contains("frameworks_")
            || name.contains("tasks_")
            || name.contains("outstanding")
            || name.ends_with("elected")
        {
            "gauge"
        } else {
            "counter"
        };
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        let _ = writeln!(out, "{metric} {value}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
