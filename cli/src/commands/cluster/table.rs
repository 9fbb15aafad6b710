//! Tables from operator answers (GET_AGENTS, GET_FRAMEWORKS, GET_TASKS in
//! Mesos' JSON mapping, MESOS-API.md §5). Only the fields shown are read, and
//! resources are summed leniently by name, so any resource format (ENDPOINT,
//! PRE- or POST-refinement) and fields a newer master adds are fine.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::commands::human_bytes;

/// An answer that lacks what a table needs.
#[derive(Debug, thiserror::Error)]
#[error("unexpected {call} answer: {message}")]
pub struct Error {
    call: &'static str,
    message: String,
}

fn parse<T: serde::de::DeserializeOwned>(call: &'static str, v: &Json) -> Result<T, Error> {
    T::deserialize(v).map_err(|e| Error {
        call,
        message: e.to_string(),
    })
}

#[derive(Deserialize)]
struct Id {
    value: String,
}

fn id(i: &Option<Id>) -> &str {
    i.as_ref().map_or("-", |i| i.value.as_str())
}

// ---------------------------------------------------------------- agents

#[derive(Deserialize)]
struct AgentsAnswer {
    get_agents: GetAgents,
}

#[derive(Deserialize)]
struct GetAgents {
    #[serde(default)]
    agents: Vec<AgentView>,
}

#[derive(Deserialize)]
struct AgentView {
    agent_info: AgentInfoView,
    #[serde(default)]
    active: bool,
    #[serde(default)]
    total_resources: Vec<Json>,
    #[serde(default)]
    allocated_resources: Vec<Json>,
}

#[derive(Deserialize)]
struct AgentInfoView {
    #[serde(default)]
    id: Option<Id>,
    hostname: String,
    /// What the agent registered with; masters before 1.5 have no
    /// `total_resources`.
    #[serde(default)]
    resources: Vec<Json>,
}

/// The GET_AGENTS table: ID, HOSTNAME, ACTIVE, CPUS, MEM, DISK, the last
/// three as allocated/total.
pub fn agents(answer: &Json) -> Result<String, Error> {
    let a: AgentsAnswer = parse("GET_AGENTS", answer)?;
    let mut agents = a.get_agents.agents;
    agents.sort_by(|x, y| {
        (&x.agent_info.hostname, id(&x.agent_info.id))
            .cmp(&(&y.agent_info.hostname, id(&y.agent_info.id)))
    });
    let rows = agents
        .iter()
        .map(|ag| {
            let total = if ag.total_resources.is_empty() {
                &ag.agent_info.resources
            } else {
                &ag.total_resources
            };
            let used = &ag.allocated_resources;
            vec![
                id(&ag.agent_info.id).to_string(),
                ag.agent_info.hostname.clone(),
                yes_no(ag.active),
                format!(
                    "{}/{}",
                    number(scalar_sum(used, "cpus")),
                    number(scalar_sum(total, "cpus"))
                ),
                format!(
                    "{}/{}",
                    megabytes(scalar_sum(used, "mem")),
                    megabytes(scalar_sum(total, "mem"))
                ),
                format!(
                    "{}/{}",
                    megabytes(scalar_sum(used, "disk")),
                    megabytes(scalar_sum(total, "disk"))
                ),
            ]
        })
        .collect::<Vec<_>>();
    Ok(render(
        &["ID", "HOSTNAME", "ACTIVE", "CPUS", "MEM", "DISK"],
        &rows,
    ))
}

// ---------------------------------------------------------------- frameworks

#[derive(Deserialize)]
struct FrameworksAnswer {
    get_frameworks: GetFrameworks,
}

#[derive(Deserialize)]
struct GetFrameworks {
    #[serde(default)]
    frameworks: Vec<FrameworkView>,
}

#[derive(Deserialize)]
struct FrameworkView {
    framework_info: FrameworkInfoView,
    #[serde(default)]
    active: bool,
}

#[derive(Deserialize)]
struct FrameworkInfoView {
    #[serde(default)]
    id: Option<Id>,
    name: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    role: Option<String>,
}

/// The GET_FRAMEWORKS table: ID, NAME, ROLES, ACTIVE, TASKS (the framework's
/// tasks in the GET_TASKS answer that are not completed).
pub fn frameworks(answer: &Json, tasks_answer: &Json) -> Result<String, Error> {
    let a: FrameworksAnswer = parse("GET_FRAMEWORKS", answer)?;
    let t: TasksAnswer = parse("GET_TASKS", tasks_answer)?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for task in t
        .get_tasks
        .tasks
        .iter()
        .chain(&t.get_tasks.unreachable_tasks)
    {
        *counts.entry(id(&task.framework_id)).or_default() += 1;
    }
    let mut fws = a.get_frameworks.frameworks;
    fws.sort_by(|x, y| {
        (&x.framework_info.name, id(&x.framework_info.id))
            .cmp(&(&y.framework_info.name, id(&y.framework_info.id)))
    });
    let rows = fws
        .iter()
        .map(|f| {
            let info = &f.framework_info;
            // MULTI_ROLE frameworks have `roles`; others the deprecated
            // `role`, whose default is `*`.
            let roles = if info.roles.is_empty() {
                info.role.clone().unwrap_or_else(|| "*".into())
            } else {
                info.roles.join(",")
            };
            vec![
                id(&info.id).to_string(),
                info.name.clone(),
                roles,
                yes_no(f.active),
                counts.get(id(&info.id)).copied().unwrap_or(0).to_string(),
            ]
        })
        .collect::<Vec<_>>();
    Ok(render(&["ID", "NAME", "ROLES", "ACTIVE", "TASKS"], &rows))
}

// ---------------------------------------------------------------- tasks

#[derive(Deserialize)]
struct TasksAnswer {
    get_tasks: GetTasks,
}

#[derive(Deserialize)]
struct GetTasks {
    /// TaskInfos accepted but not yet sent to an agent (no state).
    #[serde(default)]
    pending_tasks: Vec<TaskView>,
    #[serde(default)]
    tasks: Vec<TaskView>,
    #[serde(default)]
    unreachable_tasks: Vec<TaskView>,
    #[serde(default)]
    completed_tasks: Vec<TaskView>,
}

#[derive(Deserialize)]
struct TaskView {
    task_id: Id,
    #[serde(default)]
    framework_id: Option<Id>,
    #[serde(default)]
    agent_id: Option<Id>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    name: String,
}

/// The GET_TASKS table: ID, FRAMEWORK, AGENT, STATE, NAME of pending, active
/// and unreachable tasks, and completed ones with `all`.
pub fn tasks(answer: &Json, all: bool) -> Result<String, Error> {
    let a: TasksAnswer = parse("GET_TASKS", answer)?;
    let g = a.get_tasks;
    let mut list: Vec<(&TaskView, &str)> = Vec::new();
    // A pending task is what Mesos reports as TASK_STAGING in reconciliation.
    list.extend(g.pending_tasks.iter().map(|t| (t, "TASK_STAGING")));
    list.extend(g.tasks.iter().map(|t| (t, "-")));
    list.extend(g.unreachable_tasks.iter().map(|t| (t, "TASK_UNREACHABLE")));
    if all {
        list.extend(g.completed_tasks.iter().map(|t| (t, "-")));
    }
    list.sort_by(|(x, _), (y, _)| {
        (id(&x.framework_id), &x.task_id.value).cmp(&(id(&y.framework_id), &y.task_id.value))
    });
    let rows = list
        .iter()
        .map(|(t, default_state)| {
            vec![
                t.task_id.value.clone(),
                id(&t.framework_id).to_string(),
                id(&t.agent_id).to_string(),
                t.state.clone().unwrap_or_else(|| default_state.to_string()),
                t.name.clone(),
            ]
        })
        .collect::<Vec<_>>();
    Ok(render(
        &["ID", "FRAMEWORK", "AGENT", "STATE", "NAME"],
        &rows,
    ))
}

// ---------------------------------------------------------------- helpers

/// Sum of the scalar resources named `name` (any reservation, any format).
fn scalar_sum(resources: &[Json], name: &str) -> f64 {
    resources
        .iter()
        .filter(|r| r.get("name").and_then(Json::as_str) == Some(name))
        .filter_map(|r| r.get("scalar")?.get("value")?.as_f64())
        // Not `.sum()`: an empty f64 sum is -0.0, which prints as "-0".
        .fold(0.0, |acc, v| acc + v)
}

/// A scalar as Mesos shows it: at most 3 decimals, no trailing zeros.
fn number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Mesos' `mem`/`disk` are in MB (MiB); shown with a unit.
fn megabytes(mb: f64) -> String {
    human_bytes((mb.max(0.0) * 1024.0 * 1024.0).round() as u64)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// Left-aligned columns two spaces apart, widths from the content.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A GET_AGENTS answer as Mesos 1.11 writes it (MESOS-API.md §5: the
    /// fields of `get_agents.agents[]`, AgentInfo with its default port,
    /// ENDPOINT-format resources: `role` plus `reservations` on reserved ones,
    /// `allocation_info` on allocated ones), two agents.
    fn get_agents() -> Json {
        json!({
          "type": "GET_AGENTS",
          "get_agents": {
            "agents": [
              {
                "agent_info": {
                  "hostname": "node2", "port": 5051,
                  "id": {"value": "b1d2-S1"},
                  "resources": [
                    {"name": "cpus", "type": "SCALAR", "scalar": {"value": 2.0}, "role": "*"},
                    {"name": "mem", "type": "SCALAR", "scalar": {"value": 1024.0}, "role": "*"}
                  ]
                },
                "active": false, "deactivated": true,
                "version": "1.11.0", "pid": "slave(1)@10.0.0.6:5051",
                "registered_time": {"nanoseconds": 1700000000000000000_i64},
                "total_resources": [
                  {"name": "cpus", "type": "SCALAR", "scalar": {"value": 2.0}, "role": "*"},
                  {"name": "mem", "type": "SCALAR", "scalar": {"value": 1024.0}, "role": "*"},
                  {"name": "disk", "type": "SCALAR", "scalar": {"value": 0.0}, "role": "*"}
                ],
                "capabilities": [{"type": "MULTI_ROLE"}]
              },
              {
                "agent_info": {
                  "hostname": "node1", "port": 5051,
                  "id": {"value": "b1d2-S0"},
                  "attributes": [{"name": "rack", "type": "TEXT", "text": {"value": "r1"}}]
                },
                "active": true, "deactivated": false,
                "version": "1.11.0", "pid": "slave(1)@10.0.0.5:5051",
                "registered_time": {"nanoseconds": 1700000000000000000_i64},
                "total_resources": [
                  {"name": "cpus", "type": "SCALAR", "scalar": {"value": 4.0}, "role": "*"},
                  {"name": "cpus", "type": "SCALAR", "scalar": {"value": 2.0}, "role": "ops",
                   "reservations": [{"type": "STATIC", "role": "ops"}]},
                  {"name": "mem", "type": "SCALAR", "scalar": {"value": 15360.0}, "role": "*"},
                  {"name": "disk", "type": "SCALAR", "scalar": {"value": 40000.0}, "role": "*"},
                  {"name": "ports", "type": "RANGES", "role": "*",
                   "ranges": {"range": [{"begin": 31000, "end": 32000}]}}
                ],
                "allocated_resources": [
                  {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}, "role": "*",
                   "allocation_info": {"role": "dev"}},
                  {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.5}, "role": "ops",
                   "reservations": [{"type": "STATIC", "role": "ops"}],
                   "allocation_info": {"role": "ops"}},
                  {"name": "mem", "type": "SCALAR", "scalar": {"value": 544.0}, "role": "*",
                   "allocation_info": {"role": "dev"}}
                ],
                "offered_resources": [
                  {"name": "mem", "type": "SCALAR", "scalar": {"value": 1024.0}, "role": "*",
                   "allocation_info": {"role": "dev"}}
                ],
                "capabilities": [{"type": "MULTI_ROLE"}, {"type": "RESERVATION_REFINEMENT"}]
              }
            ],
            "recovered_agents": []
          }
        })
    }

    #[test]
    fn agents_table_from_a_get_agents_answer() {
        let out = agents(&get_agents()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "ID       HOSTNAME  ACTIVE  CPUS   MEM               DISK",
                "b1d2-S0  node1     yes     1.6/6  544.0MiB/15.0GiB  0B/39.1GiB",
                "b1d2-S1  node2     no      0/2    0B/1.0GiB         0B/0B",
            ]
        );
    }

    #[test]
    fn an_empty_cluster_is_a_header() {
        // Mesos omits empty repeated fields: no `agents` at all.
        let out = agents(&json!({"type": "GET_AGENTS", "get_agents": {}})).unwrap();
        assert_eq!(out, "ID  HOSTNAME  ACTIVE  CPUS  MEM  DISK\n");
    }

    #[test]
    fn a_wrong_answer_names_the_call() {
        let e = agents(&json!({"type": "GET_AGENTS"})).unwrap_err();
        assert!(
            e.to_string().starts_with("unexpected GET_AGENTS answer"),
            "{e}"
        );
    }

    fn get_tasks() -> Json {
        json!({
          "type": "GET_TASKS",
          "get_tasks": {
            "pending_tasks": [
              {"name": "p", "task_id": {"value": "t0"}, "agent_id": {"value": "b1d2-S0"},
               "command": {"value": "true", "shell": true}}
            ],
            "tasks": [
              {"name": "web", "task_id": {"value": "t2"}, "framework_id": {"value": "b1d2-0001"},
               "agent_id": {"value": "b1d2-S0"}, "state": "TASK_RUNNING",
               "status_update_state": "TASK_RUNNING",
               "statuses": [{"task_id": {"value": "t2"}, "state": "TASK_RUNNING"}]},
              {"name": "db", "task_id": {"value": "t1"}, "framework_id": {"value": "b1d2-0000"},
               "agent_id": {"value": "b1d2-S1"}, "state": "TASK_STARTING"}
            ],
            "completed_tasks": [
              {"name": "old", "task_id": {"value": "t9"}, "framework_id": {"value": "b1d2-0000"},
               "agent_id": {"value": "b1d2-S0"}, "state": "TASK_FINISHED"}
            ]
          }
        })
    }

    #[test]
    fn tasks_table_with_and_without_completed() {
        let out = tasks(&get_tasks(), false).unwrap();
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [
                "ID  FRAMEWORK  AGENT    STATE          NAME",
                "t0  -          b1d2-S0  TASK_STAGING   p",
                "t1  b1d2-0000  b1d2-S1  TASK_STARTING  db",
                "t2  b1d2-0001  b1d2-S0  TASK_RUNNING   web",
            ]
        );
        let out = tasks(&get_tasks(), true).unwrap();
        assert!(
            out.contains("t9  b1d2-0000  b1d2-S0  TASK_FINISHED  old"),
            "{out}"
        );
    }

    #[test]
    fn frameworks_table_counts_active_tasks() {
        let fws = json!({
          "type": "GET_FRAMEWORKS",
          "get_frameworks": {
            "frameworks": [
              {"framework_info": {"user": "root", "name": "marathon", "id": {"value": "b1d2-0000"},
                                  "failover_timeout": 604800.0, "checkpoint": true,
                                  "roles": ["dev", "ops"], "capabilities": [{"type": "MULTI_ROLE"}]},
               "active": true, "connected": true, "recovered": false,
               "registered_time": {"nanoseconds": 1}},
              {"framework_info": {"user": "root", "name": "chronos", "id": {"value": "b1d2-0001"},
                                  "failover_timeout": 0.0, "checkpoint": false},
               "active": false, "connected": false, "recovered": false}
            ],
            "completed_frameworks": [
              {"framework_info": {"user": "root", "name": "gone", "id": {"value": "b1d2-0002"},
                                  "failover_timeout": 0.0, "checkpoint": false}}
            ]
          }
        });
        let out = frameworks(&fws, &get_tasks()).unwrap();
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [
                "ID         NAME      ROLES    ACTIVE  TASKS",
                "b1d2-0001  chronos   *        no      1",
                "b1d2-0000  marathon  dev,ops  yes     1",
            ]
        );
    }

    #[test]
    fn numbers_and_columns() {
        assert_eq!(number(0.1), "0.1");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(1.2345), "1.234");
        assert_eq!(megabytes(32.0), "32.0MiB");
        assert_eq!(
            render(&["A", "LONGER"], &[vec!["wide cell".into(), "x".into()]]),
            "A          LONGER\nwide cell  x\n"
        );
    }
}
