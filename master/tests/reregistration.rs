//! An agent that re-registers under its id with other resources (its flags
//! changed and its `--reconfiguration-policy` allowed it): the master takes
//! a total that still holds the agent's running tasks (the allocator and
//! the agent list follow it) and refuses one that does not, with ERROR on
//! the REGISTER stream naming the reason, its view of the agent unchanged.
//! (tests/agent.rs runs the agent's side with real agents.)

mod common;

use std::time::Duration;

use common::*;
use masterlink::recordio::Decoder;
use serde_json::{json, Value as Json};
use tokio::time::timeout;

fn scalar(resources: &Json, name: &str) -> f64 {
    resources
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == name)
        .map(|r| r["scalar"]["value"].as_f64().unwrap())
        .sum()
}

fn register_call(id: &str, resources: &str, tasks: Json) -> Json {
    let resources = masterlink::resources::parse(resources).unwrap();
    json!({
        "type": "REGISTER",
        "protocol_version": masterlink::protocol::PROTOCOL_VERSION,
        "version": "test", "boot_id": "boot",
        "agent_info": {"hostname": "node1", "port": 5051, "ip": "127.0.0.1",
                       "resources": resources, "id": {"value": id}},
        "tasks": tasks,
    })
}

/// The agent's resources as GET_AGENTS lists them.
async fn listed_cpus(addr: std::net::SocketAddr) -> f64 {
    let (_, body) = post_json(addr, "/api/v1", &[], &json!({"type": "GET_AGENTS"})).await;
    let v: Json = serde_json::from_str(&body).unwrap();
    scalar(&v["get_agents"]["agents"][0]["total_resources"], "cpus")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_resources_are_taken_if_they_hold_the_running_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), |c| {
        c.allocation_interval = Duration::from_millis(50);
        c.heartbeat_interval = Duration::from_secs(30);
    })
    .await;
    let addr = master.local_addr();
    let mut agent = LinkedAgent::register(addr, "node1", "cpus:2;mem:1024").await;
    let mut sched = Sched::subscribe(
        addr,
        json!({"user": "root", "name": "f", "roles": ["dev"],
               "capabilities": [{"type": "MULTI_ROLE"}]}),
    )
    .await;
    let offer = sched.next_of("OFFERS").await["offers"]["offers"][0].clone();
    let t1 = json!({
        "name": "t1", "task_id": {"value": "t1"}, "agent_id": {"value": agent.id},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.5}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 128.0}}],
        "command": {"value": "true"}
    });
    sched
        .call(json!({"type": "ACCEPT", "accept": {
            "offer_ids": [offer["id"]],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [t1]}}],
            "filters": {"refuse_seconds": 0}}}))
        .await;
    assert_eq!(agent.next().await.unwrap()["type"], "RUN_TASK");
    agent.update(&sched.id, "t1", "TASK_RUNNING", 1).await;
    let running = json!([{"framework_id": {"value": sched.id}, "task": t1,
                          "state": "TASK_RUNNING"}]);
    assert_eq!(listed_cpus(addr).await, 2.0);

    // One cpu cannot hold the task's 1.5: refused, with the reason.
    let (head, mut conn) = Conn::open(
        addr,
        "POST",
        masterlink::protocol::AGENT_API_PATH,
        &[JSON_CT],
        &register_call(&agent.id, "cpus:1;mem:1024", running.clone()).to_string(),
    )
    .await;
    assert_eq!(head.status, 200);
    let body = timeout(WAIT, conn.body()).await.expect("the refusal");
    let records = Decoder::new().feed(body.as_bytes()).unwrap();
    let error: Json = serde_json::from_slice(&records[0]).unwrap();
    assert_eq!(error["type"], "ERROR", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("no longer hold the resources its running tasks use"),
        "{message}"
    );
    assert!(message.contains("cpus:1"), "{message}");
    // Nothing changed: the agent keeps its total and its stream.
    assert_eq!(listed_cpus(addr).await, 2.0);
    let (status, _) = post_json(
        addr,
        masterlink::protocol::AGENT_API_PATH,
        &[(masterlink::protocol::STREAM_ID_HEADER, &agent.stream_id)],
        &json!({"type": "PONG", "agent_id": {"value": agent.id}, "ping": 0}),
    )
    .await;
    assert_eq!(status, 202);

    // Four cpus hold it: admitted, and 2.5 cpus are offered.
    let again =
        LinkedAgent::register_call(addr, register_call(&agent.id, "cpus:4;mem:1024", running))
            .await;
    assert_eq!(again.id, agent.id);
    assert_eq!(listed_cpus(addr).await, 4.0);
    let offered = timeout(WAIT, async {
        loop {
            let o = sched.next_of("OFFERS").await;
            let cpus = scalar(&o["offers"]["offers"][0]["resources"], "cpus");
            if cpus > 2.0 {
                return cpus;
            }
        }
    })
    .await
    .expect("an offer of the new total");
    assert_eq!(offered, 2.5);
    master.shutdown().await.unwrap();
}
